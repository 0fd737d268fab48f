"""Between pictures and a network's input: RGB 0–255 images → the net's own input space (BGR − mean for the Caffe
nets, RGB standardised with mean / std for the ONNX / torchvision nets) and back, and tfrestore's *image space*
(RGB, 0–255, mean-subtracted: M&V's x) → input space, differentiably."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from .registry import spec


def _as_float_batch(images) -> tuple[tf.Tensor, bool]:
    x = tf.convert_to_tensor(images)
    single = x.shape.rank == 3
    if single:
        x = x[None]
    if x.shape.rank != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be (H, W, 3) or (N, H, W, 3) RGB, got shape {x.shape}")
    return tf.cast(x, tf.float32), single


def preprocess(name: str, images) -> tf.Tensor:
    """RGB 0–255 images (uint8 or float) → the network's input space, float32, same rank as given."""
    s = spec(name)
    x, single = _as_float_batch(images)
    if s.scale01:
        x = (x / 255.0 - s.mean) / s.std
    else:
        x = x - s.mean
    if s.channel_order == "BGR":
        x = tf.reverse(x, [-1])     # a reversed slice costs ~6 ms more per AlexNet step (issue 15)
    return x[0] if single else x


def deprocess(name: str, x) -> tf.Tensor:
    """Inverse of :func:`preprocess`: network input space → RGB float on the 0–255 scale (not clipped)."""
    s = spec(name)
    x, single = _as_float_batch(x)
    if s.channel_order == "BGR":
        x = tf.reverse(x, [-1])
    if s.scale01:
        x = (x * s.std + s.mean) * 255.0
    else:
        x = x + s.mean
    return x[0] if single else x


def to_input(name: str, x):
    """Image space (RGB, 0–255, mean-subtracted: M&V's x) → the network's input space. Differentiable."""
    s = spec(name)
    if s.scale01:
        x = x / (255.0 * tf.constant(s.std, tf.float32))
    if s.channel_order == "BGR":
        x = tf.reverse(x, [-1])
    return x


def mean_rgb(name: str) -> np.ndarray:
    """The net's mean colour on the 0–255 RGB scale (what image space subtracts)."""
    s = spec(name)
    return np.asarray(s.mean, np.float32) * (255.0 if s.scale01 else 1.0)


def input_scale(name: str) -> float:
    """How many network-input units one 0–255 grey level is (1 for Caffe nets, 1/(255·std) otherwise, averaged)."""
    s = spec(name)
    return 1.0 if s.std is None else float(np.mean(1.0 / (255.0 * np.asarray(s.std))))
