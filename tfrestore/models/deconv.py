"""A learnable DFT deconvolution layer (``ml_masters_uct``; ``shared/spec/deconv_layer.md``); blur synthesis is in
:mod:`tfrestore.restore.degrade`.

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
