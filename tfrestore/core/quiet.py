"""TensorFlow started without its C++ start-up notices, for the command lines (``main.py``, ``python -m
weights_convert``): README promises a run prints its own progress and results only (``--verbose`` / ``--debug``
keep the notices)."""
from __future__ import annotations

import os
import sys
import tempfile

# Lines TensorFlow's C++ runtime writes to stderr while it loads and looks for devices, before absl's logging is
# initialised (so TF_CPP_MIN_LOG_LEVEL does not hold them back on a CPU-only machine).
NATIVE_NOISE = ("cudart_stub.cc", "absl::InitializeLog", "cuInit", "cuda_platform.cc", "cpu_feature_guard.cc",
                "rebuild TensorFlow with the appropriate compiler flags", "Could not find cuda drivers",
                "oneDNN custom operations are on")


def start_tensorflow() -> None:
    """Import TensorFlow and initialise its devices with stderr captured; the start-up notices above are dropped
    and any other line written meanwhile is passed on. Call before anything imports TensorFlow."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as buf:
        os.dup2(buf.fileno(), 2)
        try:
            import tensorflow as tf
            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            buf.seek(0)
            for line in buf.read().decode(errors="replace").splitlines(keepends=True):
                if not any(n in line for n in NATIVE_NOISE):
                    sys.stderr.write(line)
