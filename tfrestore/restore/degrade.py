"""Degradation operators A and their adjoints Aᵀ: blur (circular or zero border), the four-factor blur,
down-sampling, pixel masks, additive Gaussian noise.

Each operator maps a batch [N, H, W, C] to a batch, keeps the dtype (float32 for optimisation, float64 for exact
synthesis), is differentiable, and has ``adjoint(y)`` with ⟨A x, y⟩ = ⟨x, Aᵀ y⟩. Operators with no cheap closed
form take the adjoint by automatic differentiation (the gradient of ⟨A x, y⟩ at x = 0). Kernels are NumPy arrays;
``blur`` / ``four_factor_blur`` are the one-call NumPy forms the deconvolution experiments use.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


class LinearOperator:
    """Base: ``__call__(x)`` and ``adjoint(y)``; ``output_shape(input_shape)``."""

    def __call__(self, x):
        raise NotImplementedError

    def output_shape(self, shape):
        return tuple(shape)

    def adjoint(self, y):
        """Aᵀy, by automatic differentiation of ⟨A x, y⟩ (exact for a linear A)."""
        y = tf.convert_to_tensor(y)
        x = tf.zeros(self.input_shape_for(y.shape), y.dtype)
        with tf.GradientTape() as tape:
            tape.watch(x)
            inner = tf.reduce_sum(self(x) * y)
        return tape.gradient(inner, x)

    def input_shape_for(self, output_shape):
        return tuple(output_shape)


def _as_tensor(x):
    x = tf.convert_to_tensor(x)
    return x if x.dtype in (tf.float32, tf.float64) else tf.cast(x, tf.float32)


def _kernel_spectrum(kernel: np.ndarray, h: int, w: int, centred: bool) -> np.ndarray:
    """The kernel zero-padded to H×W (anchored at its middle tap when centred), as its 2-D DFT."""
    k = np.asarray(kernel, np.float64)
    kh, kw = k.shape
    full = np.zeros((h, w))
    full[:kh, :kw] = k
    if centred:
        full = np.roll(full, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return np.fft.fft2(full)


def _spectral(x, spectrum: np.ndarray):
    """Multiply every channel's 2-D DFT by ``spectrum`` (periodic convolution)."""
    x = _as_tensor(x)
    cdtype = tf.complex128 if x.dtype == tf.float64 else tf.complex64
    xc = tf.cast(tf.transpose(x, [0, 3, 1, 2]), cdtype)
    y = tf.signal.ifft2d(tf.signal.fft2d(xc) * tf.constant(spectrum, cdtype))
    return tf.transpose(tf.math.real(y), [0, 2, 3, 1])


class Blur(LinearOperator):
    """Convolution with a 2-D kernel, per channel.

    ``boundary="circular"``: periodic (through the DFT). ``boundary="zero"``: linear with a zero border, the
    output the same size (``conv2d 'same'``; centred kernels only). ``centred=True`` anchors the kernel at its
    middle tap; ``False`` at its top-left tap, as notebook 06 stored its Gaussian (which also translates the
    image by (size−1)/2 pixels).
    """

    def __init__(self, kernel: np.ndarray, boundary: str = "circular", centred: bool = True):
        if boundary not in ("circular", "zero"):
            raise ValueError(f"boundary must be 'circular' or 'zero', got {boundary!r}")
        if boundary == "zero" and not centred:
            raise ValueError("boundary='zero' supports centred kernels only")
        self.kernel, self.boundary, self.centred = np.asarray(kernel, np.float64), boundary, centred

    def _depthwise(self, x, kernel):
        c = x.shape[-1]
        k = tf.constant(np.repeat(kernel[:, :, None, None], c, axis=2), x.dtype)
        kh, kw = kernel.shape
        # 'same' with the middle tap as anchor: pad (k−1)//2 before, k//2 after for a true convolution
        x = tf.pad(x, [[0, 0], [kh // 2, (kh - 1) // 2], [kw // 2, (kw - 1) // 2], [0, 0]])
        return tf.nn.depthwise_conv2d(x, k, [1, 1, 1, 1], "VALID")

    def __call__(self, x):
        x = _as_tensor(x)
        if self.boundary == "circular":
            return _spectral(x, _kernel_spectrum(self.kernel, x.shape[1], x.shape[2], self.centred))
        return self._depthwise(x, self.kernel[::-1, ::-1])      # correlation with the flipped kernel

    def adjoint(self, y):
        y = _as_tensor(y)
        if self.boundary == "circular":
            return _spectral(y, np.conj(_kernel_spectrum(self.kernel, y.shape[1], y.shape[2], self.centred)))
        return super().adjoint(y)


class FourFactorBlur(LinearOperator):
    """Notebook 01's periodic blur: the spectrum times H(k)·H(−k1,k2)·H(k1,−k2)·H(−k), a zero-phase (real,
    non-negative) response, so the operator is self-adjoint."""

    def __init__(self, h: np.ndarray):
        self.h = np.asarray(h, np.float64)

    def spectrum(self, height: int, width: int) -> np.ndarray:
        full = np.zeros((height, width))
        full[:self.h.shape[0], :self.h.shape[1]] = self.h
        H = np.fft.fft2(full)
        neg = lambda A, ax: np.roll(np.flip(A, ax), 1, ax)
        return H * neg(H, 0) * neg(H, 1) * neg(neg(H, 0), 1)

    def __call__(self, x):
        x = _as_tensor(x)
        return _spectral(x, self.spectrum(x.shape[1], x.shape[2]))

    def adjoint(self, y):
        return self(y)


class Downsample(LinearOperator):
    """Down-sampling by an integer ``factor``: ``"box"`` (the mean of each factor×factor block; adjoint: each
    value spread back over its block / factor²) or ``"lanczos"`` / ``"bicubic"`` (``tf.image.resize`` with
    antialiasing; adjoint by automatic differentiation)."""

    def __init__(self, factor: int, method: str = "box"):
        if method not in ("box", "lanczos", "bicubic"):
            raise ValueError(f"method must be 'box', 'lanczos' or 'bicubic', got {method!r}")
        self.factor, self.method = int(factor), method

    def output_shape(self, shape):
        n, h, w, c = shape
        if h % self.factor or w % self.factor:
            raise ValueError(f"image size {h}×{w} is not divisible by the factor {self.factor}")
        return n, h // self.factor, w // self.factor, c

    def input_shape_for(self, shape):
        n, h, w, c = shape
        return n, h * self.factor, w * self.factor, c

    def __call__(self, x):
        x = _as_tensor(x)
        _, h, w, _ = self.output_shape(tuple(x.shape))
        if self.method == "box":
            return tf.nn.avg_pool2d(x, self.factor, self.factor, "VALID")
        name = "lanczos3" if self.method == "lanczos" else "bicubic"
        # the resize kernels (and their gradients) exist in float32 only
        return tf.cast(tf.image.resize(tf.cast(x, tf.float32), (h, w), name, antialias=True), x.dtype)

    def adjoint(self, y):
        if self.method != "box":
            return super().adjoint(y)
        y = _as_tensor(y)
        f = self.factor
        up = tf.repeat(tf.repeat(y, f, axis=1), f, axis=2)
        return up / (f * f)


class Mask(LinearOperator):
    """Keep the pixels where ``mask`` is 1 (a pixel mask [H, W], [N, H, W] or [N, H, W, C]); self-adjoint."""

    def __init__(self, mask: np.ndarray):
        m = np.asarray(mask, np.float32)
        self.mask = m[None, ..., None] if m.ndim == 2 else m[..., None] if m.ndim == 3 else m

    def __call__(self, x):
        x = _as_tensor(x)
        return x * tf.cast(self.mask, x.dtype)

    def adjoint(self, y):
        return self(y)


class GaussianNoise(LinearOperator):
    """Additive white Gaussian noise of standard deviation ``sigma``: the operator is the identity, the noise is
    drawn by :meth:`corrupt` (seeded)."""

    def __init__(self, sigma: float):
        self.sigma = float(sigma)

    def __call__(self, x):
        return _as_tensor(x)

    def adjoint(self, y):
        return _as_tensor(y)

    def corrupt(self, x, seed: int = 0) -> np.ndarray:
        x = np.asarray(x)
        return x + np.random.default_rng(seed).normal(0.0, self.sigma, x.shape).astype(x.dtype)


# ---- masks --------------------------------------------------------------------------------------------------------

def random_mask(shape: tuple[int, int], fraction_missing: float, seed: int = 0) -> np.ndarray:
    """[H, W] of 0/1 with ``fraction_missing`` of the pixels dropped at random."""
    return (np.random.default_rng(seed).random(shape) >= fraction_missing).astype(np.float32)


def block_mask(shape: tuple[int, int], block: int, count: int = 1, seed: int = 0) -> np.ndarray:
    """[H, W] with ``count`` missing square blocks of side ``block`` at random places."""
    rng = np.random.default_rng(seed)
    m = np.ones(shape, np.float32)
    for _ in range(count):
        y, x = rng.integers(0, shape[0] - block + 1), rng.integers(0, shape[1] - block + 1)
        m[y:y + block, x:x + block] = 0
    return m


def stroke_mask(shape: tuple[int, int], strokes: int = 20, width: int = 3, seed: int = 0) -> np.ndarray:
    """[H, W] with text-like strokes missing: random short line segments of the given width."""
    import skimage.draw
    rng = np.random.default_rng(seed)
    m = np.ones(shape, np.float32)
    h, w = shape
    for _ in range(strokes):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        length, angle = rng.uniform(0.05, 0.2) * max(h, w), rng.uniform(0, np.pi)
        y1 = int(np.clip(y0 + length * np.sin(angle), 0, h - 1))
        x1 = int(np.clip(x0 + length * np.cos(angle), 0, w - 1))
        for d in range(-(width // 2), width - width // 2):
            rr, cc = skimage.draw.line(int(np.clip(y0 + d, 0, h - 1)), x0, int(np.clip(y1 + d, 0, h - 1)), x1)
            m[rr, cc] = 0
    return m


# ---- kernels and the NumPy one-call forms -------------------------------------------------------------------------

def four_factor_kernel(h: np.ndarray) -> np.ndarray:
    """b = h ⊛ h(−n1, n2) ⊛ h(n1, −n2) ⊛ h(−n1, −n2), shape (4kh−3, 4kw−3), centred on its middle tap."""
    from scipy.signal import convolve2d
    h = np.asarray(h, np.float64)
    return convolve2d(convolve2d(h, h[::-1, :]), convolve2d(h[:, ::-1], h[::-1, ::-1]))


def box_kernel(size: int = 3) -> np.ndarray:
    return np.full((size, size), 1.0 / size ** 2)


def gaussian_kernel(size: int = 5, sigma: float = 1.0) -> np.ndarray:
    """Normalised Gaussian, centred on the middle tap (odd size)."""
    if size % 2 != 1:
        raise ValueError("gaussian_kernel needs an odd size so it can be centred")
    r = np.arange(size) - size // 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def blur(images: np.ndarray, kernel: np.ndarray, mode: str = "circular", centred: bool = True) -> np.ndarray:
    """NumPy float64 in and out: :class:`Blur` applied to NHWC images (``mode`` is the boundary)."""
    return Blur(kernel, mode, centred)(np.asarray(images, np.float64)).numpy()


def four_factor_blur(images: np.ndarray, h: np.ndarray) -> np.ndarray:
    """NumPy float64 in and out: :class:`FourFactorBlur` applied to NHWC images."""
    return FourFactorBlur(h)(np.asarray(images, np.float64)).numpy()
