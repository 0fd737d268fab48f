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

Notebooks 12 and 13 ran early multi-filter versions whose four-factor reversals hit the wrong axes (§1.6):
``reversal="nb12"`` (filter and row axes) and ``reversal="nb13"`` (output- and input-channel axes) re-create them;
the default ``"spatial"`` is the correct form. :class:`DeconvDFT1D` is the 1-D (two-factor) layer (§1.10) and
:func:`dct2` the orthonormal 2-D DCT-II of the "DCT-MSE" loss (§4.3).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def _negate_axis(a, axis):
    """A[k] → A[−k mod N] along ``axis`` (reverse, then roll by one)."""
    return tf.roll(tf.reverse(a, [axis]), 1, axis=axis)


# the axes of the [C_out, C_in, H, W] response that the four-factor reversals negate: the correct spatial ones, or
# the notebooks' buggy ones (nb12's 03-20 layer: its filter axis and the row axis; nb13's 03-21 layer: the output-
# and input-channel axes, so with one input channel G_o = 1/(H_o²·H_{−o}²), which has phase)
REVERSALS = {"spatial": (2, 3), "nb12": (0, 2), "nb13": (0, 1)}
REDUCTIONS = ("sqrt", "sum", "mean")      # over input channels: Σ/√C_in (HEAD), Σ (nb13, 03-21), mean (05-01)
KERNEL_INITS = ("zeros", "head", "uniform", "normalised")


def _initial_taps(init: str, lead: tuple, *, kh: int, kw: int, c_in: int, c_out: int, first_trainable: bool,
                  rng: np.random.Generator) -> np.ndarray:
    """The starting taps, shape lead + (kh·kw,) with the leading tap learnable, else lead + (kh·kw − 1,)."""
    n_taps = kh * kw if first_trainable else kh * kw - 1
    if init == "normalised":     # nb12 / nb13: U(0,1) / (C_in · the filter's own total), then h[0,0] := 1
        full = rng.uniform(0, 1, lead + (kh * kw,))
        full = full / (c_in * full.sum(-1, keepdims=True))
        full[..., 0] = 1.0
        return full if first_trainable else full[..., 1:]
    if init == "zeros":
        init_ = np.zeros(lead + (n_taps,))
    elif init == "head":
        init_ = rng.standard_normal(lead + (n_taps,)) / (kh * kw * (c_in + c_out))
    else:
        init_ = rng.uniform(0, 1, lead + (n_taps,))
    if first_trainable:
        init_[..., 0] = 1.0
    return init_


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
            (N(0,1)/(kh·kw·(C_in+C_out))), "uniform" (U(0,1), the TF notebooks; may put zeros into H) or
            "normalised" (nb12 / nb13: U(0,1) divided by C_in times the filter's sum, then h[0,0] := 1).
        reversal: which axes the four-factor index negations act on: "spatial" (correct, default), or the
            notebooks' bugs "nb12" (the filter axis and the row axis; needs ``filters`` and one input channel) and
            "nb13" (the output- and input-channel axes; needs ``filters``). Documented in ``deconv_layer.md`` §1.6.
        reduction: how ``filters`` layers combine input channels: "sqrt" (Σ/√C_in, HEAD), "sum" (nb12 / nb13)
            or "mean".
    """

    def __init__(self, kernel_size=(4, 4), filters: int | None = None, four_factor: bool = True,
                 first_tap_trainable: bool = False, use_bias: bool | None = None, learnable_scale: bool = False,
                 scale_init: float = 0.5, pad_fraction: float = 0.0, kernel_init: str = "zeros",
                 seed: int | None = None, reversal: str = "spatial", reduction: str = "sqrt", **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = tuple(int(k) for k in (kernel_size if np.ndim(kernel_size) else (kernel_size,) * 2))
        self.filters, self.four_factor, self.first_tap_trainable = filters, four_factor, first_tap_trainable
        self.use_bias = (filters is not None) if use_bias is None else use_bias
        self.learnable_scale, self.scale_init, self.pad_fraction = learnable_scale, scale_init, pad_fraction
        if kernel_init not in KERNEL_INITS:
            raise ValueError(f"kernel_init must be one of {', '.join(KERNEL_INITS)}, got {kernel_init!r}")
        if reversal not in REVERSALS:
            raise ValueError(f"reversal must be one of {', '.join(REVERSALS)}, got {reversal!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        if reversal != "spatial" and filters is None:
            raise ValueError(f"reversal={reversal!r} is a multi-filter layer's bug: give filters too")
        self.kernel_init, self.seed, self.reversal, self.reduction = kernel_init, seed, reversal, reduction

    def build(self, input_shape):
        c_in = int(input_shape[-1])
        if self.reversal == "nb12" and c_in != 1:
            raise ValueError(f"reversal='nb12' is the 03-20 layer, which takes one input channel; got {c_in}")
        self.c_in = c_in
        self.c_out = c_in if self.filters is None else int(self.filters)
        kh, kw = self.kernel_size
        lead = () if self.filters is None else (self.c_out, c_in)
        rng = np.random.default_rng(self.seed)
        init = _initial_taps(self.kernel_init, lead, kh=kh, kw=kw, c_in=c_in, c_out=self.c_out,
                             first_trainable=self.first_tap_trainable, rng=rng)
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
        if self.reversal != "spatial":     # the notebooks' reversals: G1·N_a(G1)·N_b(G1)·N_a(N_b(G1)), complex
            a, b = REVERSALS[self.reversal]
            g1 = 1.0 / H
            return g1 * _negate_axis(g1, a) * _negate_axis(g1, b) * _negate_axis(_negate_axis(g1, b), a)
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
            norm = {"sqrt": np.sqrt(self.c_in), "sum": 1.0, "mean": float(self.c_in)}[self.reduction]
            Y = tf.einsum("oihw,bihw->bohw", G, X) / tf.cast(norm, G.dtype)
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
                "pad_fraction": self.pad_fraction, "kernel_init": self.kernel_init, "seed": self.seed,
                "reversal": self.reversal, "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="tfrestore")
class DeconvDFT1D(keras.layers.Layer):
    """The 1-D layer (HEAD ``Deconv1D``, ``deconv_layer.md`` §1.10): a monic filter per (output, input) channel
    pair, applied circularly along time. NLC in ([B, L, C_in]), NLC out ([B, L, filters]).

    y_o = Σ_i Re F⁻¹[G_oi · F[x_i]] / √C_in + b_o, with the "two-factor" G_oi(k) = G1(k)·G1(−k), G1 = 1/H_oi
    (``mode="deconv"``, so G = 1/|H|², zero-phase) or G1 = H_oi (``mode="conv"``, G = |H|²); ``two_factor=False``
    keeps G = G1.

    Args:
        kernel_size: taps of h (h[0] = 1 unless ``first_tap_trainable``).
        filters: output channels.
        channel_fft: the HEAD bug: ``fft2`` over the (C_in, L) axes of filter and input, so the channel axis is
            Fourier-transformed with time (y_o = Re F⁻¹_L[G'_o(k)·Σ_i X_i(k)] / √C_in + b_o, G' built from
            S_o = Σ_i H_oi). With one input channel it changes nothing. Off (correct) by default.
        kernel_init: "head" (N(0,1)/(k·(C_in + C_out)), the HEAD layer) or "zeros" (the identity filter δ).
        use_bias: a bias per output channel, U(−0.5, 0.5) at the start (HEAD); AudioDNN ran without.
    """

    def __init__(self, kernel_size: int = 2, filters: int = 1, two_factor: bool = True, mode: str = "deconv",
                 first_tap_trainable: bool = False, use_bias: bool = True, channel_fft: bool = False,
                 kernel_init: str = "head", seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("deconv", "conv"):
            raise ValueError(f"mode must be 'deconv' or 'conv', got {mode!r}")
        if kernel_init not in ("head", "zeros"):
            raise ValueError(f"kernel_init must be 'head' or 'zeros', got {kernel_init!r}")
        self.kernel_size, self.filters, self.two_factor, self.mode = int(kernel_size), int(filters), two_factor, mode
        self.first_tap_trainable, self.use_bias, self.channel_fft = first_tap_trainable, use_bias, channel_fft
        self.kernel_init, self.seed = kernel_init, seed

    def build(self, input_shape):
        self.c_in = int(input_shape[-1])
        rng = np.random.default_rng(self.seed)
        init = _initial_taps(self.kernel_init, (self.filters, self.c_in), kh=1, kw=self.kernel_size, c_in=self.c_in,
                             c_out=self.filters, first_trainable=self.first_tap_trainable, rng=rng)
        self.taps = self.add_weight(name="taps", shape=init.shape,
                                    initializer=keras.initializers.Constant(init.astype("float32")))
        if self.use_bias:
            b = rng.uniform(-0.5, 0.5, self.filters) if self.kernel_init == "head" else np.zeros(self.filters)
            self.bias = self.add_weight(name="bias", shape=(self.filters,),
                                        initializer=keras.initializers.Constant(b.astype("float32")))

    def kernel(self) -> tf.Tensor:
        """The monic kernels h, shape [C_out, C_in, k]."""
        taps = tf.convert_to_tensor(self.taps)
        if not self.first_tap_trainable:
            taps = tf.concat([tf.ones_like(taps[..., :1]), taps], axis=-1)
        return taps

    def call(self, x):
        length = x.shape[1]
        h = self.kernel()
        h = tf.pad(h, [[0, 0], [0, 0], [0, length - self.kernel_size]])
        xc = tf.transpose(x, [0, 2, 1])                                        # [B, C_in, L]
        fft = tf.signal.fft2d if self.channel_fft else tf.signal.fft
        H = fft(tf.complex(h, tf.zeros_like(h)))                               # [C_out, C_in, L]
        X = fft(tf.complex(xc, tf.zeros_like(xc)))
        g1 = 1.0 / H if self.mode == "deconv" else H
        G = g1 * _negate_axis(g1, 2) if self.two_factor else g1
        if self.channel_fft:       # the bug: multiply the (channel, time) spectra, sum the inverse over channels
            y = tf.reduce_sum(tf.math.real(tf.signal.ifft2d(G[None] * X[:, None])), axis=2)
        else:
            y = tf.math.real(tf.signal.ifft(tf.einsum("oil,bil->bol", G, X)))
        y = tf.transpose(y, [0, 2, 1]) / float(np.sqrt(self.c_in))
        return y + self.bias if self.use_bias else y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "filters": self.filters,
                "two_factor": self.two_factor, "mode": self.mode, "first_tap_trainable": self.first_tap_trainable,
                "use_bias": self.use_bias, "channel_fft": self.channel_fft, "kernel_init": self.kernel_init,
                "seed": self.seed}


def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix, [n, n]: C[k, m] = w_k·cos(π(2m + 1)k / 2n), w_0 = √(1/n), w_k = √(2/n)."""
    k, m = np.arange(n)[:, None], np.arange(n)[None, :]
    c = np.cos(np.pi * (2 * m + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    return c


def dct2(x: tf.Tensor) -> tf.Tensor:
    """Orthonormal 2-D DCT-II over the spatial axes of NHWC ``x`` (``LossModules.DCT``, §4.3; scipy's
    ``dctn(norm='ortho')`` on axes 1, 2). Being orthonormal it preserves Euclidean distances, so an MSE of DCT
    coefficients equals the pixel MSE; separable matrices here, not the notebook's [M, N, M, N] basis."""
    ch = tf.constant(dct_matrix(x.shape[1]), x.dtype)
    cw = tf.constant(dct_matrix(x.shape[2]), x.dtype)
    return tf.einsum("kh,bhwc,lw->bklc", ch, x, cw)
