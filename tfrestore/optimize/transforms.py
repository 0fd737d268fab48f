"""Small composable pieces that act between the parameterisation and the objective.

- :class:`Jitter` (M&V 2016): each problem i owns the top-left (H+T_i−1)² part of a shared canvas and every step
  the network sees an H×W window of it at a random offset in {0…T_i−1}². With jitter off (a schedule stage with
  ``jitter=False``) the window sits at the centre offset (T_i−1)//2 and only that window belongs to the problem.
  Offsets come from a stateless RNG keyed by (seed, step), so a resumed run sees the same windows.
- :class:`PadCropJitter` (the thesis code's "new jitter", spec mv2016.md §9.2): the variable is the H×W image
  itself, padded with a fixed fill (t//2 before, t − t//2 after) and cropped at offsets in {0…t}²; the
  regularisers see the image, never the padding.
- Projections, applied in image space after every update: :func:`project_colour_norm` (M&V 2016's B+ ball),
  :func:`clip_box`.

Nothing here holds a variable; every function maps tensors to tensors and is safe inside ``tf.function``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf


class Jitter:
    """Per-problem jitter windows on a canvas of (H+Tmax−1, W+Tmax−1) pixels.

    Args:
        size: the window (network input) size, an int or (H, W).
        t: jitter amount T ≥ 1 (1 = none), one for all problems or one per problem.
        n: number of problems.
    """

    def __init__(self, size: int | tuple[int, int], t: int | Sequence[int], n: int):
        self.h, self.w = (size, size) if isinstance(size, int) else tuple(size)
        t = np.asarray(t, np.int32)
        self.t = np.full(n, t, np.int32) if t.ndim == 0 else t
        if len(self.t) != n:
            raise ValueError(f"jitter needs one T per problem ({n}), got {len(self.t)}")
        if (self.t < 1).any():
            raise ValueError(f"jitter T must be ≥ 1 (1 = no jitter), got {self.t.tolist()}")
        self.n = n
        self._t = tf.constant(self.t)
        self._centre = tf.constant((self.t - 1) // 2)

    @property
    def margin(self) -> int:
        """How many pixels larger than the window the canvas is (Tmax − 1)."""
        return int(self.t.max()) - 1

    def canvas_size(self) -> tuple[int, int]:
        return self.h + self.margin, self.w + self.margin

    def check(self, canvas_shape: Sequence[int]) -> None:
        want = (self.n, *self.canvas_size())
        if tuple(canvas_shape[:3]) != want:
            raise ValueError(f"a canvas for {self.h}×{self.w} windows with T={int(self.t.max())} must have shape "
                             f"{want} + (channels,), got {tuple(canvas_shape)}")

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

    def centre(self, canvas: tf.Tensor) -> tf.Tensor:
        """Each problem's centre window: its reconstruction."""
        return self.window(canvas, self.offsets(False, [0, 0]))

    def mask(self, jitter_on) -> tf.Tensor | None:
        """[N, Hc, Wc, 1]: which canvas pixels belong to each problem (None when all do)."""
        if self.t.max() == 1:
            return None
        hc, wc = self.canvas_size()
        ys, xs = tf.range(hc)[None, :], tf.range(wc)[None, :]
        t, c = self._t[:, None], self._centre[:, None]
        on = tf.cast(jitter_on, tf.bool)
        lo = tf.where(on, 0, c)
        hi_y = tf.where(on, self.h + t - 1, c + self.h)
        hi_x = tf.where(on, self.w + t - 1, c + self.w)
        my = tf.cast((ys >= lo) & (ys < hi_y), tf.float32)
        mx = tf.cast((xs >= lo) & (xs < hi_x), tf.float32)
        return (my[:, :, None] * mx[:, None, :])[..., None]


class PadCropJitter:
    """The thesis engine's jitter (``NetInversion``, spec mv2016.md §9.2): pad each problem's H×W image with
    ``fill`` — t//2 rows / columns in front, t − t//2 behind — and cut out the H×W window at offsets (jy, jx)
    drawn uniformly from {0, …, t}² every step (t + 1 positions per axis; t = 0: none). With jitter off the
    network sees the image itself (offset t//2). The padding is fixed, not optimised, and the regularisers see
    only the image: the canvas *is* the image (no margin, no mask). Same interface as :class:`Jitter`.

    Args:
        size: the image (and window) size, an int or (H, W).
        t: jitter amount t ≥ 0, one for all problems or one per problem.
        n: number of problems.
        fill: the padding value in image space, a scalar or a per-channel vector (the thesis padded its RGB
            0–255 image with zeros: black, i.e. −mean colour in tfrestore's mean-subtracted image space).
    """

    margin = 0

    def __init__(self, size: int | tuple[int, int], t: int | Sequence[int], n: int, fill=0.0):
        self.h, self.w = (size, size) if isinstance(size, int) else tuple(size)
        t = np.asarray(t, np.int32)
        self.t = np.full(n, t, np.int32) if t.ndim == 0 else t
        if len(self.t) != n:
            raise ValueError(f"jitter needs one t per problem ({n}), got {len(self.t)}")
        if (self.t < 0).any():
            raise ValueError(f"pad-and-crop jitter t must be ≥ 0 (0 = no jitter), got {self.t.tolist()}")
        self.n, self.pad = n, int(self.t.max())
        p = self.pad
        outside = 1.0 - np.pad(np.ones((1, self.h, self.w, 1), np.float32), [[0, 0], [p, p], [p, p], [0, 0]])
        self._padding = tf.constant(outside * np.asarray(fill, np.float32))     # fill outside the image, 0 inside
        self._positions = tf.constant(self.t + 1)
        self._front = tf.constant(self.t // 2)

    def canvas_size(self) -> tuple[int, int]:
        return self.h, self.w

    def check(self, canvas_shape: Sequence[int]) -> None:
        want = (self.n, self.h, self.w)
        if tuple(canvas_shape[:3]) != want:
            raise ValueError(f"pad-and-crop jitter optimises the {self.h}×{self.w} images themselves: the variable "
                             f"must have shape {want} + (channels,), got {tuple(canvas_shape)}")

    def offsets(self, jitter_on, seed) -> tf.Tensor:
        """[N, 2] offsets into each problem's padded image: uniform in {0…t_i} or t_i//2 (the image) when off."""
        u = tf.random.stateless_uniform([self.n, 2], seed=seed)
        positions = tf.cast(self._positions[:, None], tf.float32)
        rand = tf.minimum(tf.cast(tf.floor(u * positions), tf.int32), self._positions[:, None] - 1)
        return tf.where(tf.cast(jitter_on, tf.bool), rand, tf.tile(self._front[:, None], [1, 2]))

    def window(self, canvas: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
        """The H×W windows of the padded images at ``offsets`` (differentiable; the padding reads ``fill``)."""
        p = self.pad
        padded = tf.pad(canvas, [[0, 0], [p, p], [p, p], [0, 0]]) + self._padding
        start = p - self._front[:, None] + offsets          # problem i's padded image starts at p − t_i//2
        rows = start[:, :1] + tf.range(self.h)[None]
        cols = start[:, 1:] + tf.range(self.w)[None]
        x = tf.gather(padded, rows, axis=1, batch_dims=1)
        return tf.gather(x, cols, axis=2, batch_dims=1)

    def centre(self, canvas: tf.Tensor) -> tf.Tensor:
        """The reconstruction: the image itself."""
        return canvas

    def mask(self, jitter_on) -> None:
        """Every canvas pixel belongs to its problem (the canvas is the image)."""
        return None


def project_colour_norm(x: tf.Tensor, bound: float, centre=None) -> tf.Tensor:
    """Rescale every pixel whose colour vector (minus ``centre``) is longer than ``bound`` back onto the ball
    (M&V 2016's B+ = 160 constraint). Works for any channel count."""
    c = 0.0 if centre is None else tf.constant(centre, tf.float32)
    d = x - c
    norm = tf.sqrt(tf.reduce_sum(tf.square(d), axis=-1, keepdims=True))
    return c + d * tf.minimum(1.0, bound / tf.maximum(norm, 1e-12))


def clip_box(x: tf.Tensor, low, high) -> tf.Tensor:
    """Clip to a box, e.g. ``clip_box(x, -mean, 255 - mean)`` keeps x + mean inside [0, 255]."""
    return tf.clip_by_value(x, low, high)
