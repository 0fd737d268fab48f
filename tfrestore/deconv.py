"""A learnable DFT deconvolution layer and blur synthesis (``ml_masters_uct``; ``shared/spec/deconv_layer.md``).

What the layer can undo: it applies, in the DFT domain of the (optionally padded) input, the exact *circular*
inverse of a blur by a small monic kernel h (h[0,0] = 1). In the default four-factor form the response is

    G(k) = 1 / ( |H(k1, k2)|² · |H(−k1, k2)|² ),   H = DFT of h zero-padded to the input size,

which is real, positive and even in each frequency index: a **zero-phase** filter. It exactly inverts a circular
blur by b = h ⊛ h(−n1, n2) ⊛ h(n1, −n2) ⊛ h(−n1, −n2). What it cannot undo: any shift or other phase (a blur
kernel stored off-centre translates the image, and no zero-phase filter moves it back); blurs whose spectrum
vanishes (a 3×3 box has exact zeros — there G explodes); and linear (zero-boundary) blurs are only approximated,
better with ``pad_fraction`` > 0. ``four_factor=False`` gives G = 1/H, the causal (phase-preserving) inverse.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def _negate_axis(a, axis):
    """A[k] → A[−k mod N] along ``axis`` (reverse, then roll by one)."""
    return tf.roll(tf.reverse(a, [axis]), 1, axis=axis)


@keras.saving.register_keras_serializable(package="tfrestore")
class DeconvDFT2D(keras.layers.Layer):
    """Learnable inverse of a small blur, applied in the frequency domain. NHWC in, NHWC out.

    Args:
        kernel_size: (kh, kw) of the monic kernel h, anchored at the top-left tap.
        filters: None → one filter shared by all channels (the Feb-2023 layer of notebooks 01–11: channels are
            filtered identically, never mixed, no bias by default). An int → a filter per (output, input) channel
            pair, y_o = Σ_i F⁻¹[G_oi·F[x_i]] / √C_in + b_o (the final, HEAD version).
        four_factor: the symmetrised zero-phase form (default) or the single factor 1/H.
        first_tap_trainable: learn h[0,0] too (it starts at 1 and is never re-normalised).
        use_bias: add a bias per output channel (default: True with ``filters``, False when shared).
        learnable_scale: multiply the output by a learnable scalar starting at ``scale_init`` (0.5, notebook 05).
        pad_fraction: zero-pad int(p·H), int(p·W) on every side before filtering and crop back afterwards, so the
            circular operation approximates a linear one (0 disables; a margin of 0 pixels is handled).
        kernel_init: "zeros" (h = δ: the layer starts as the identity, the stable choice), "head"
            (N(0,1)/(kh·kw·(C_in+C_out))) or "uniform" (U(0,1), the TF notebooks; may put zeros into H).
    """

    def __init__(self, kernel_size=(4, 4), filters: int | None = None, four_factor: bool = True,
                 first_tap_trainable: bool = False, use_bias: bool | None = None, learnable_scale: bool = False,
                 scale_init: float = 0.5, pad_fraction: float = 0.0, kernel_init: str = "zeros",
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = tuple(int(k) for k in (kernel_size if np.ndim(kernel_size) else (kernel_size,) * 2))
        self.filters, self.four_factor, self.first_tap_trainable = filters, four_factor, first_tap_trainable
        self.use_bias = (filters is not None) if use_bias is None else use_bias
        self.learnable_scale, self.scale_init, self.pad_fraction = learnable_scale, scale_init, pad_fraction
        if kernel_init not in ("zeros", "head", "uniform"):
            raise ValueError(f"kernel_init must be 'zeros', 'head' or 'uniform', got {kernel_init!r}")
        self.kernel_init, self.seed = kernel_init, seed

    def build(self, input_shape):
        c_in = int(input_shape[-1])
        self.c_in = c_in
        self.c_out = c_in if self.filters is None else int(self.filters)
        kh, kw = self.kernel_size
        lead = () if self.filters is None else (self.c_out, c_in)
        n_taps = kh * kw if self.first_tap_trainable else kh * kw - 1
        rng = np.random.default_rng(self.seed)
        if self.kernel_init == "zeros":
            init = np.zeros(lead + (n_taps,))
        elif self.kernel_init == "head":
            init = rng.standard_normal(lead + (n_taps,)) / (kh * kw * (c_in + self.c_out))
        else:
            init = rng.uniform(0, 1, lead + (n_taps,))
        if self.first_tap_trainable:
            init[..., 0] = 1.0
        self.taps = self.add_weight(name="taps", shape=init.shape,
                                    initializer=keras.initializers.Constant(init.astype("float32")))
        if self.use_bias:
            b = rng.uniform(-0.5, 0.5, self.c_out) if self.kernel_init == "head" else np.zeros(self.c_out)
            self.bias = self.add_weight(name="bias", shape=(self.c_out,),
                                        initializer=keras.initializers.Constant(b.astype("float32")))
        if self.learnable_scale:
            self.scale = self.add_weight(name="scale", shape=(), initializer=keras.initializers.Constant(self.scale_init))

    def kernel(self) -> tf.Tensor:
        """The full monic kernel(s) h, shape [..., kh, kw] (row-major taps, h[0,0] = 1 unless trainable)."""
        kh, kw = self.kernel_size
        taps = tf.convert_to_tensor(self.taps)
        if not self.first_tap_trainable:
            one = tf.ones_like(taps[..., :1])
            taps = tf.concat([one, taps], axis=-1)
        return tf.reshape(taps, tf.concat([tf.shape(taps)[:-1], [kh, kw]], 0))

    def response(self, height: int, width: int) -> tf.Tensor:
        """G(k) on a height×width DFT grid, complex, shape [..., H, W]."""
        kh, kw = self.kernel_size
        h = self.kernel()
        rank = len(h.shape)
        pad = [[0, 0]] * (rank - 2) + [[0, height - kh], [0, width - kw]]
        H = tf.signal.fft2d(tf.complex(tf.pad(h, pad), tf.zeros_like(tf.pad(h, pad))))
        if not self.four_factor:
            return 1.0 / H
        mag = tf.square(tf.abs(H)) * tf.square(tf.abs(_negate_axis(H, rank - 2)))
        return tf.complex(1.0 / mag, tf.zeros_like(mag))

    def call(self, x):
        ph = pw = 0
        if self.pad_fraction:
            ph, pw = int(self.pad_fraction * x.shape[1]), int(self.pad_fraction * x.shape[2])
            x = tf.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]])
        height, width = x.shape[1], x.shape[2]
        X = tf.signal.fft2d(tf.complex(tf.transpose(x, [0, 3, 1, 2]), tf.zeros_like(tf.transpose(x, [0, 3, 1, 2]))))
        G = self.response(height, width)
        if self.filters is None:
            Y = X * G[None, None]
        else:   # sum over input channels in the frequency domain: one inverse FFT per output channel
            Y = tf.einsum("oihw,bihw->bohw", G, X) / tf.cast(np.sqrt(self.c_in), G.dtype)
        y = tf.transpose(tf.math.real(tf.signal.ifft2d(Y)), [0, 2, 3, 1])
        if self.use_bias:
            y = y + self.bias
        if self.learnable_scale:
            y = y * self.scale
        if ph or pw:
            y = y[:, ph:height - ph, pw:width - pw]
        return y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.c_out if hasattr(self, "c_out") else (self.filters or input_shape[-1]),)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "filters": self.filters,
                "four_factor": self.four_factor, "first_tap_trainable": self.first_tap_trainable,
                "use_bias": self.use_bias, "learnable_scale": self.learnable_scale, "scale_init": self.scale_init,
                "pad_fraction": self.pad_fraction, "kernel_init": self.kernel_init, "seed": self.seed}


# ---- blur synthesis --------------------------------------------------------------------------------------------

def four_factor_kernel(h: np.ndarray) -> np.ndarray:
    """b = h ⊛ h(−n1, n2) ⊛ h(n1, −n2) ⊛ h(−n1, −n2), shape (4kh−3, 4kw−3), centred on its middle tap."""
    from scipy.signal import convolve2d
    h = np.asarray(h, np.float64)
    b = convolve2d(convolve2d(h, h[::-1, :]), convolve2d(h[:, ::-1], h[::-1, ::-1]))
    return b


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
    """Convolve NHWC float images with a 2-D kernel, per channel.

    ``mode="circular"``: periodic, through the FFT. ``mode="zero"``: linear with a zero border (``conv2d 'same'``).
    ``centred=True`` anchors the kernel at its middle tap (no shift). ``centred=False`` anchors it at the top-left
    tap, as notebook 06 stored its Gaussian — which also translates the image by (size−1)/2 pixels.
    """
    x = np.asarray(images, np.float64)
    k = np.asarray(kernel, np.float64)
    kh, kw = k.shape
    n, h, w, c = x.shape
    if mode == "circular":
        full = np.zeros((h, w))
        full[:kh, :kw] = k
        if centred:
            full = np.roll(full, (-(kh // 2), -(kw // 2)), axis=(0, 1))
        K = np.fft.fft2(full)
        X = np.fft.fft2(np.moveaxis(x, -1, 1))
        return np.moveaxis(np.real(np.fft.ifft2(X * K)), 1, -1)
    if mode == "zero":
        from scipy.signal import convolve2d
        if not centred:
            raise ValueError("mode='zero' supports centred kernels only")
        out = np.empty_like(x)
        for i in range(n):
            for j in range(c):
                out[i, :, :, j] = convolve2d(x[i, :, :, j], k, mode="same", boundary="fill")
        return out
    raise ValueError(f"mode must be 'circular' or 'zero', got {mode!r}")


def four_factor_blur(images: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The periodic four-factor blur of notebook 01: multiply the spectrum by H(k)·H(−k1,k2)·H(k1,−k2)·H(−k)."""
    x = np.asarray(images, np.float64)
    hh, ww = x.shape[1:3]
    full = np.zeros((hh, ww))
    full[:h.shape[0], :h.shape[1]] = h
    H = np.fft.fft2(full)
    neg = lambda A, ax: np.roll(np.flip(A, ax), 1, ax)
    F = H * neg(H, 0) * neg(H, 1) * neg(neg(H, 0), 1)
    X = np.fft.fft2(np.moveaxis(x, -1, 1))
    return np.moveaxis(np.real(np.fft.ifft2(X * F)), 1, -1)
