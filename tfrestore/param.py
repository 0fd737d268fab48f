"""Image parameterisations, transforms and constraints — separate, composable pieces.

A :class:`Canvas` holds the optimised variable for N problems. ``scale`` is the 2015 σ trick (the variable is
x̃ and the image is σ·x̃, which makes a step of lr on x̃ equal to M&V's step of lr·σ² in image units).
``jitter`` gives each problem its own T: the variable is an (H+Tmax−1)² canvas, problem i uses its top-left
(H+T_i−1)² part, and every step the network sees an H×W window at a random offset in {0…T_i−1}² (M&V 2016).
With jitter switched off (a schedule stage with ``jitter=False``) the window sits at the centre offset
(T_i−1)//2 and only that window belongs to the problem.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def _per_problem(v, n, dtype=np.int32):
    v = np.asarray(v, dtype)
    return np.full(n, v, dtype) if v.ndim == 0 else v


class Canvas:
    """The optimised image(s). ``init`` is [N, Hc, Wc, 3] in image space (0–255, mean-subtracted)."""

    def __init__(self, init: np.ndarray, size: int | tuple[int, int], jitter=1, scale: float = 1.0):
        init = np.asarray(init, np.float32)
        self.n = init.shape[0]
        self.h, self.w = (size, size) if isinstance(size, int) else size
        self.t = _per_problem(jitter, self.n)
        if (self.t < 1).any():
            raise ValueError(f"jitter T must be ≥ 1 (1 = no jitter), got {self.t}")
        tmax = int(self.t.max())
        want = (self.n, self.h + tmax - 1, self.w + tmax - 1, 3)
        if init.shape != want:
            raise ValueError(f"Canvas init must have shape {want} for size {self.h}×{self.w} and T={tmax}, "
                             f"got {init.shape}")
        self.scale = float(scale)
        self.var = tf.Variable(init / self.scale, name="canvas")
        self._t = tf.constant(self.t)
        self._centre = tf.constant((self.t - 1) // 2)

    @property
    def shape(self):
        return tuple(self.var.shape)

    def image(self) -> tf.Tensor:
        """The whole canvas in image space."""
        return self.var * self.scale

    def offsets(self, jitter_on, seed) -> tf.Tensor:
        """[N, 2] window offsets: uniform in {0…T_i−1} (stateless in ``seed``) or the centre when off."""
        u = tf.random.stateless_uniform([self.n, 2], seed=seed)
        rand = tf.minimum(tf.cast(tf.floor(u * tf.cast(self._t[:, None], tf.float32)), tf.int32),
                          self._t[:, None] - 1)
        centre = tf.tile(self._centre[:, None], [1, 2])
        return tf.where(tf.cast(jitter_on, tf.bool), rand, centre)

    def window(self, canvas: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
        """Crop each problem's H×W window at its own offset (differentiable gather)."""
        rows = offsets[:, :1] + tf.range(self.h)[None]
        cols = offsets[:, 1:] + tf.range(self.w)[None]
        x = tf.gather(canvas, rows, axis=1, batch_dims=1)
        return tf.gather(x, cols, axis=2, batch_dims=1)

    def mask(self, jitter_on) -> tf.Tensor | None:
        """[N, Hc, Wc, 1] which canvas pixels belong to each problem (None when all do)."""
        if (self.t == self.t.max()).all() and self.t.max() == 1:
            return None
        hc, wc = self.shape[1], self.shape[2]
        ys, xs = tf.range(hc)[None, :], tf.range(wc)[None, :]
        t = self._t[:, None]
        c = self._centre[:, None]
        on = tf.cast(jitter_on, tf.bool)
        lo_y = tf.where(on, 0, c)
        hi_y = tf.where(on, self.h + t - 1, c + self.h)
        hi_x = tf.where(on, self.w + t - 1, c + self.w)
        my = tf.cast((ys >= lo_y) & (ys < hi_y), tf.float32)
        mx = tf.cast((xs >= lo_y) & (xs < hi_x), tf.float32)
        return (my[:, :, None] * mx[:, None, :])[..., None]

    def result(self) -> np.ndarray:
        """[N, H, W, 3] the reconstructions in image space: the centre window of each problem's canvas."""
        return self.window(self.image(), self.offsets(False, [0, 0])).numpy()


def project_colour_norm(x: tf.Tensor, bound: float, centre=None) -> tf.Tensor:
    """Rescale every pixel whose colour vector (minus ``centre``) is longer than ``bound`` back onto the ball
    (M&V 2016's B+ = 160 constraint)."""
    c = 0.0 if centre is None else tf.constant(centre, tf.float32)
    d = x - c
    norm = tf.sqrt(tf.reduce_sum(tf.square(d), axis=-1, keepdims=True))
    return c + d * tf.minimum(1.0, bound / tf.maximum(norm, 1e-12))


def clip_box(x: tf.Tensor, low, high) -> tf.Tensor:
    """Clip to a box, e.g. to keep x + mean inside [0, 255]."""
    return tf.clip_by_value(x, low, high)


def init_mv2015(n: int, size: int, sigma: float, seed: int) -> np.ndarray:
    """White Gaussian noise rescaled to total L2 norm σ per problem (M&V 2015 ``invert_nn.m``)."""
    x = np.random.default_rng(seed).standard_normal((n, size, size, 3)).astype(np.float32)
    return x * (sigma / np.sqrt((x.astype(np.float64) ** 2).sum(axis=(1, 2, 3))))[:, None, None, None]


def init_mv2016(n: int, canvas: int, bound: float, seed: int) -> np.ndarray:
    """Uniform noise in [−1, 1] divided by its 95th percentile, times B/√3, per problem (``nnpreimage.m``)."""
    x = np.random.default_rng(seed).uniform(-1, 1, (n, canvas, canvas, 3)).astype(np.float32)
    p95 = np.percentile(x.reshape(n, -1), 95, axis=1)   # prctile(x(:), 95) ≈ 0.9
    return x / p95[:, None, None, None] * bound / np.sqrt(3)
