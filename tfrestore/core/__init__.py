"""What every long job shares, whatever it optimises: the loop and its callbacks (:mod:`.loop`)."""
