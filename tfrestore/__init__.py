"""tfrestore: what a CNN keeps of an image, and image restoration with learned priors (TF2 / Keras 3)."""
import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


def _quiet_tf() -> None:
    """Keras' grouped convolution is a jit-compiled tf.function per call shape; its retracing notice is noise."""
    import logging
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


_quiet_tf()
