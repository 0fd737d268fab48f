"""What every long job shares, whatever it computes: the one `Loop` (log points, checkpoints, signals), the
artifact store, atomic files, the output writer and the command lines' quiet start-up. Imports nothing of the
project."""
