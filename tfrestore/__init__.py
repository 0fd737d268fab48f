"""tfrestore: what a CNN keeps of an image, and image restoration with learned priors (TF2 / Keras 3).

Importing tfrestore changes no environment variable and no logger; ``main.py`` quiets TensorFlow for the command
line.
"""
__version__ = "0.1.0"
