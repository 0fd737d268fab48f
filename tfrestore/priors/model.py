"""Patch priors: Field-of-Experts (Student-t) and ICA (log-cosh) energies over whitened patches (spec §2–§4).

For a normalised patch x (flattened (c, h, w)), y_k = w_kᵀ·(whiten·x) with unit-norm columns w_k and expert weights
α_k = softplus(a_k); the patch energy is Σ_k α_k·ρ(y_k) with ρ(y) = log(1 + y²/2) (``student``) or log cosh y
(``logistic``). A whole image or feature map gets the **mean over its patches** (an MRF with patch cliques):

- global normalisation (mean and sdev both ``gc`` / ``gf``): one VALID convolution with the mixing filters
  M = whitenᵀ·W, the normalisation folded into kernel and bias — only patches entirely inside the map;
- any other modes: every pixel owns a patch of the map reflect-padded by (p−1)//2 before and p//2 after, gathered,
  normalised per patch and multiplied by M.

For an objective (``energy(x, path="fast")``, what :class:`~tfrestore.priors.PriorTerm` uses) the same value comes
from :func:`strip_energy`: the normalisation folded into the filters (gc / gf as a shift and a bias, lc / lf as
filters of zero mean per channel / overall, sdev as a scale), one convolution per strip of output rows, and a
hand-written first-order gradient (∂/∂x by a matmul to patch columns and overlap-adds) formed strip by strip — the
responses [N, H, W, K] and the patches [N, H, W, C·P] never exist whole (``full512`` on the 8 AlexNet image_rec
canvases of 235²: 0.85 GB per response tensor otherwise). Speed and peak against TensorFlow's autodiff of the whole
convolution: ``benchmarks/prior_phase.py`` and BUILD.md's benchmark section.

Kinds: ``full``; ``dropout`` (component columns dropped with keep 0.5 and the survivors ×2, in training and/or at
inference, or with explicit masks for ensembles); ``channelwise`` (an independent prior per channel, energy summed
over patches and divided by C·K, as the thesis); ``separable`` (W[c, p, k] = Σ_m D[p, c, m]·P[c·M + m, k], depthwise
then pointwise, unwhitened data).

Dropout masks (spec §4.4: ``tf.nn.dropout(W, keep_prob=0.5, noise_shape=[1, K], seed=42)``) are stateless draws keyed
by (42, step): TF1's seeded op drew a fresh mask at every run of the graph, so training draws one per training step
and inference one per optimisation step (``energy(x, step=t)``; :class:`~tfrestore.priors.PriorTerm` passes the
engine's step). Keyed by the step, a resumed run sees the masks the uninterrupted one would.

Score matching (Hyvärinen 2005) on whitened samples, per sample t:
    j_t = Σ_k α_k g′(y_kt) + ½ (α ⊙ g_t)ᵀ (WᵀW) (α ⊙ g_t) = Σ_k α_k g′(y_kt) + ½ ‖W (α ⊙ g_t)‖²,   J = mean_t j_t
with g = −ρ′. With a dropout mask m the model's filters are w̃_k = m_k·w_k, so ‖w̃_k‖² = m_k² and
    j_t = Σ_k α_k m_k² g′(m_k y_kt) + ½ ‖W (α ⊙ m ⊙ g(m ⊙ y_t))‖²
(a dropped column contributes nothing). ``legacy_broadcast=True`` gives the thesis code's first term
(Σ_k α_k)·(Σ_l g′(ỹ_lt)) on the masked responses ỹ = m ⊙ y (spec §9 item 2), where a dropped column adds
(Σ α)·g′(0) = −Σ α and so rewards large α.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import keras
import numpy as np
import tensorflow as tf

from tfrestore.core import files
from .whitening import Normalisation, Whitening, check_modes

EXPERTS = ("student", "logistic")
KINDS = ("full", "dropout", "channelwise", "separable")
INIT_A_STD, INIT_W_STD = 1.0, 1e-3   # a ~ N(0, 1) (α = softplus(a)), W ~ N(0, 0.001) before normalisation (§3)
DROPOUT_KEEP = 0.5           # keep probability of a component column (spec §4.4)
DROPOUT_SEED = 42            # the thesis' op seed: masks are keyed by (DROPOUT_SEED, step)


def dropout_seed(step) -> tf.Tensor:
    """The stateless seed [2] of the dropout mask at ``step`` (a training or optimisation step)."""
    return tf.stack([tf.constant(DROPOUT_SEED, tf.int32), tf.cast(step, tf.int32)])


@dataclasses.dataclass(frozen=True)
class PriorConfig:
    """What a prior is: patch side, channels, components K, whitened dimension, expert, normalisation and
    whitening modes, kind and its options."""
    patch: int = 8
    channels: int = 3
    components: int = 512
    n_white: int = 191                 # per channel for the channel-wise kind
    expert: str = "student"
    mean_mode: str = "gc"
    sdev_mode: str | float = "gc"
    whiten_mode: str = "pca"
    kind: str = "full"
    dropout_train: bool = False        # dropout kind: drop component columns during score matching
    dropout_test: bool = False         # ... and when the energy is evaluated
    dim_multiplier: int = 1            # separable kind: M depthwise filters per channel
    shared_depthwise: bool = False     # separable kind: one depthwise filter bank for all channels

    def __post_init__(self):
        if self.expert not in EXPERTS:
            raise ValueError(f"expert '{self.expert}' is not one of {', '.join(EXPERTS)}")
        if self.kind not in KINDS:
            raise ValueError(f"kind '{self.kind}' is not one of {', '.join(KINDS)}")
        check_modes(self.mean_mode, self.sdev_mode, self.whiten_mode)
        if self.kind == "separable" and self.whiten_mode != "none":
            raise ValueError("the separable prior works on normalised, unwhitened patches: whiten_mode='none'")

    @property
    def positions(self) -> int:
        return self.patch * self.patch

    @property
    def features(self) -> int:
        return self.channels * self.positions

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def rho(y, expert: str):
    """Expert energy ρ(y)."""
    if expert == "student":
        return tf.math.log1p(0.5 * tf.square(y))
    a = tf.abs(y)                       # log cosh y, stably
    return a + tf.math.log1p(tf.exp(-2.0 * a)) - np.log(2.0).astype(np.float32)


def g(y, expert: str):
    """g = −ρ′."""
    return -2.0 * y / (tf.square(y) + 2.0) if expert == "student" else -tf.tanh(y)


def g_prime(y, expert: str):
    if expert == "student":
        y2 = tf.square(y)
        return 2.0 * (y2 - 2.0) / tf.square(y2 + 2.0)
    return -1.0 / tf.square(tf.cosh(tf.clip_by_value(y, -40.0, 40.0)))


STRIP_BYTES = 8 * 2 ** 20    # one strip of responses [N, rows, W', J] float32: small enough to stay in cache
KERNEL_STRIP_FACTOR = 4      # ... but ≥ 4× the kernel: each strip's convolution repacks it (fullc1l6000: 147 MB)
DEPTHWISE_STRIP_BYTES = 128 * 2 ** 20   # channel-wise: TF's depthwise kernels pay per call; few, large strips
LOG2 = float(np.log(2.0))


def _rho_and_slope(y, expert: str):
    """ρ(y) and ρ′(y) = −g(y), sharing their work (one pass over a strip)."""
    if expert == "student":
        t = 0.5 * tf.square(y)
        return tf.math.log1p(t), y / (1.0 + t)
    a = tf.abs(y)
    return a + tf.math.log1p(tf.exp(-2.0 * a)) - LOG2, tf.tanh(y)


def strip_energy(x, kernel, bias, alpha, *, expert: str, scale: float, depthwise: bool = False,
                 rows: int | None = None) -> tf.Tensor:
    """e_n = scale · Σ_pixels Σ_j α_j ρ(y_nj) with y = conv_VALID(x, kernel) + bias, one strip of output rows at a
    time, so the responses [N, H', W', J] never exist whole (memory: one strip, ``STRIP_BYTES``).

    x [N, H, W, C] (H, W, C static), kernel [p, p, C, J] (``depthwise``: [p, p, C, K] and J = C·K in (c, k)
    order), bias and alpha [J]; ``rows`` per strip (default: a strip of ``STRIP_BYTES``, or of
    ``KERNEL_STRIP_FACTOR`` kernels, or ``DEPTHWISE_STRIP_BYTES``, whichever is most). → [N].

    The gradient is written by hand and first order only: the forward pass also forms ∂e/∂x — per strip the
    transposed convolution of ρ′(y) with α folded into the kernel — so nothing of a strip outlives it; ∂e/∂α
    comes from the per-strip sums of ρ; ∂e/∂kernel and ∂e/∂bias recompute the strips, and only when asked for (in
    a graph, an unused gradient is pruned: an objective of the image costs one pass).
    """
    p = kernel.shape[0]
    _, h, w, c = x.shape
    ho = h - p + 1
    j = alpha.shape[0]
    if rows is None:
        budget = max(STRIP_BYTES, KERNEL_STRIP_FACTOR * 4 * int(np.prod(kernel.shape)),
                     DEPTHWISE_STRIP_BYTES if depthwise else 0)
        rows = max(1, min(ho, budget // (4 * (x.shape[0] or 1) * (w - p + 1) * j)))
    full, tail = divmod(ho, rows)

    def conv(xs, k):
        if depthwise:
            return tf.nn.depthwise_conv2d(xs, k, [1, 1, 1, 1], "VALID")
        return tf.nn.conv2d(xs, k, 1, "VALID")

    def conv_t(g, k, xs):
        """The transposed convolution (∂/∂x), [N, r, W', J] → [N, r + p − 1, W, C]. Not TF's
        Conv2DBackpropInput, 6–10× slower than the forward convolution here (J = 512 → C = 3): one matmul to
        the patch columns [N, r, W', p, p, C], then two overlap-adds (over the columns, then the rows)."""
        if depthwise:
            return tf.compat.v1.nn.depthwise_conv2d_native_backprop_input(tf.shape(xs), k, g, [1, 1, 1, 1], "VALID")
        n, r = tf.shape(g)[0], g.shape[1]
        cols = tf.matmul(tf.reshape(g, [-1, j]), k)                                  # k: [J, C·p·p], (c, i, j)
        cols = tf.reshape(cols, tf.stack([n, r, w - p + 1, c, p, p]))
        # (c, i, j) columns: the transpose moves runs of p contiguous floats, not single channels
        rows_ = tf.signal.overlap_and_add(tf.transpose(cols, [0, 1, 3, 4, 2, 5]), 1)  # [N, r, C, p, W]
        full_ = tf.signal.overlap_and_add(tf.transpose(rows_, [0, 2, 4, 1, 3]), 1)    # [N, C, W, r + p − 1]
        return tf.transpose(full_, [0, 3, 2, 1])

    def conv_f(xs, g, k):
        if depthwise:
            return tf.compat.v1.nn.depthwise_conv2d_native_backprop_filter(xs, tf.shape(k), g, [1, 1, 1, 1], "VALID")
        return tf.compat.v1.nn.conv2d_backprop_filter(xs, tf.shape(k), g, [1, 1, 1, 1], "VALID")

    def strip(x, i):
        xs = x[:, i * rows:i * rows + rows + p - 1]
        xs.set_shape([x.shape[0], rows + p - 1, w, c])
        return xs

    def strips(x, fn, state):
        """Fold ``fn(state, strip_input)`` over the strips: the whole ones in a while loop (one at a time: strips
        in flight together would share the cache), then the shorter last one."""
        state = tf.while_loop(lambda i, *_: i < full, lambda i, *s: (i + 1,) + tuple(fn(s, strip(x, i))),
                              (tf.constant(0),) + tuple(state), parallel_iterations=1)[1:]
        return fn(state, x[:, full * rows:]) if tail else state

    @tf.custom_gradient
    def energy(x, kernel, bias, alpha):
        k_alpha = kernel * tf.reshape(alpha, kernel.shape[2:] if depthwise else [j])   # ∂/∂x: α in the filters
        if not depthwise:
            k_alpha = tf.reshape(tf.transpose(k_alpha, [3, 2, 0, 1]), [j, c * p * p])    # the matmul's [J, (c, i, j)]

        def forward(xs):
            """A strip's Σ ρ per map and channel [N, J] and its ∂/∂x [N, r + p − 1, W, C]."""
            rho_, slope = _rho_and_slope(conv(xs, kernel) + bias, expert)
            return tf.reduce_sum(rho_, [1, 2]), conv_t(slope, k_alpha, xs)

        def body(i, r_sum, parts):
            r, d = forward(strip(x, i))
            return i + 1, r_sum + r, parts.write(i, d)
        parts = tf.TensorArray(tf.float32, size=full, element_shape=[x.shape[0], rows + p - 1, w, c])
        _, r_sum, parts = tf.while_loop(lambda i, *_: i < full, body,
                                        (0, tf.zeros(tf.stack([tf.shape(x)[0], j])), parts), parallel_iterations=1)
        # the strips' ∂/∂x overlap by p − 1 rows: one overlap-add at the end, not a full-size add per strip
        dx = tf.signal.overlap_and_add(tf.transpose(parts.stack(), [1, 3, 4, 0, 2]), rows)  # [N, W, C, rows·full + p − 1]
        dx = tf.pad(tf.transpose(dx, [0, 3, 1, 2]), [[0, 0], [0, tail], [0, 0], [0, 0]])
        if tail:
            r, d = forward(x[:, full * rows:])
            r_sum = r_sum + r
            dx = dx + tf.pad(d, [[0, 0], [full * rows, 0], [0, 0], [0, 0]])
        e = scale * tf.linalg.matvec(r_sum, alpha)

        def grad(up):
            s = scale * up                                                            # [N]

            def weight_grads(state, xs):               # ∂/∂kernel and ∂/∂bias: the strips once more
                _, slope = _rho_and_slope(conv(xs, kernel) + bias, expert)
                g = slope * alpha * s[:, None, None, None]
                return state[0] + conv_f(xs, g, kernel), state[1] + tf.reduce_sum(g, [0, 1, 2])
            dk, db = strips(x, weight_grads, (tf.zeros_like(kernel), tf.zeros_like(bias)))
            return s[:, None, None, None] * dx, dk, db, tf.linalg.matvec(r_sum, s, transpose_a=True)
        return e, grad

    return energy(tf.convert_to_tensor(x, tf.float32), kernel, bias, alpha)


class PatchPrior(keras.Model):
    """A learned patch prior. ``energy(x)`` of maps [N, H, W, C] → [N]; ``score_matching_loss(x_white)``."""

    def __init__(self, config: PriorConfig, normalisation: Normalisation | None = None,
                 whitening: Whitening | list[Whitening] | None = None, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.config = cfg = config
        rng = np.random.default_rng(seed)
        d, k = cfg.features, cfg.components
        norm = normalisation or Normalisation(cfg.channels, cfg.positions, cfg.mean_mode, cfg.sdev_mode,
                                              np.zeros(d), np.ones(d))
        self.mean = self.add_weight(shape=(d,), initializer="zeros", trainable=False, name="mean")
        self.sdev = self.add_weight(shape=(d,), initializer="ones", trainable=False, name="sdev")
        self.mean.assign(norm.mean.astype(np.float32))
        self.sdev.assign(norm.sdev.astype(np.float32))
        if cfg.kind == "channelwise":
            c, p, nw = cfg.channels, cfg.positions, cfg.n_white
            wh = np.stack([w.whiten for w in whitening]) if whitening else np.tile(np.eye(nw, p), (c, 1, 1))
            self.whiten = self._const("whiten", wh)
            self.a = self._var("a", rng.normal(0, INIT_A_STD, (c, k)))
            self.w = self._var("w", rng.normal(0, INIT_W_STD, (c, nw, k)))
        elif cfg.kind == "separable":
            cd = 1 if cfg.shared_depthwise else cfg.channels
            self.whiten = self._const("whiten", np.eye(d))
            self.depthwise = self._var("depthwise", rng.normal(0, 0.1, (cfg.patch, cfg.patch, cd, cfg.dim_multiplier)))
            self.pointwise = self._var("pointwise", rng.normal(0, 0.1, (cfg.channels * cfg.dim_multiplier, k)))
            self.a = self._var("a", rng.normal(0, INIT_A_STD, (k,)))
        else:
            wh = whitening.whiten if whitening is not None else np.eye(cfg.n_white, d)
            if wh.shape != (cfg.n_white, d):
                raise ValueError(f"whitening has shape {wh.shape}, the prior needs ({cfg.n_white}, {d})")
            self.whiten = self._const("whiten", wh)
            self.a = self._var("a", rng.normal(0, INIT_A_STD, (k,)))
            self.w = self._var("w", rng.normal(0, INIT_W_STD, (cfg.n_white, k)))
        self.unwhiten = None
        if whitening is not None and not isinstance(whitening, list):
            self.unwhiten = self._const("unwhiten", whitening.unwhiten)

    def _const(self, name, value):
        v = self.add_weight(shape=np.shape(value), initializer="zeros", trainable=False, name=name)
        v.assign(np.asarray(value, np.float32))
        return v

    def _var(self, name, value):
        v = self.add_weight(shape=np.shape(value), initializer="zeros", trainable=True, name=name)
        v.assign(np.asarray(value, np.float32))
        return v

    # ---- parameters ------------------------------------------------------------------------------------------
    def alpha(self) -> tf.Tensor:
        return tf.nn.softplus(self.a)

    def filters(self) -> tf.Tensor:
        """Unit-norm columns W in whitened space: [n_white, K] ([C, n_fpc, K] channel-wise; [D, K] separable)."""
        if self.config.kind == "separable":
            cfg = self.config
            dw = tf.reshape(self.depthwise, [cfg.positions, -1, cfg.dim_multiplier])        # [P, Cd, M]
            dw = tf.broadcast_to(dw, [cfg.positions, cfg.channels, cfg.dim_multiplier])
            pw = tf.reshape(self.pointwise, [cfg.channels, cfg.dim_multiplier, -1])         # [C, M, K]
            w = tf.reshape(tf.einsum("pcm,cmk->cpk", dw, pw), [cfg.features, -1])
        else:
            w = self.w
        return w / tf.norm(w, axis=-2, keepdims=True)

    def dropout_mask(self, seed) -> tf.Tensor:
        """[K] keep-0.5 column mask with survivors ×1/keep = ×2 (stateless in the seed pair ``seed``; the
        thesis' masks: ``seed=dropout_seed(step)``)."""
        keep = tf.random.stateless_uniform([self.config.components], seed=seed) < DROPOUT_KEEP
        return tf.cast(keep, tf.float32) / DROPOUT_KEEP

    def mixing(self, mask=None) -> tf.Tensor:
        """M = whitenᵀ·W: filters on normalised patches, [D, K] (times a column mask [K] or [E, K] → [E, D, K])."""
        m = tf.matmul(self.whiten, self.filters(), transpose_a=True)
        if mask is None:
            return m
        mask = tf.convert_to_tensor(mask, tf.float32)
        return m * (mask[:, None, :] if mask.shape.rank == 2 else mask[None, :])

    # ---- energies -----------------------------------------------------------------------------------------------
    def patch_energy(self, y) -> tf.Tensor:
        """Σ_k α_k ρ(y_k) over the last axis."""
        return tf.reduce_sum(self.alpha() * rho(y, self.config.expert), axis=-1)

    def _reflect_pad(self, x):
        """The map padded by reflection, (p−1)//2 before and p//2 after, so that every pixel owns a patch."""
        p = self.config.patch
        return tf.pad(x, [[0, 0], [(p - 1) // 2, p // 2], [(p - 1) // 2, p // 2], [0, 0]], mode="REFLECT")

    def _patches(self, x):
        """Every pixel's patch of the reflect-padded map: [N, H, W, C·P] in (c, h, w) order."""
        p = self.config.patch
        x = self._reflect_pad(x)
        pt = tf.image.extract_patches(x, [1, p, p, 1], [1, 1, 1, 1], [1, 1, 1, 1], "VALID")   # (h, w, c) order
        shape = tf.shape(pt)
        pt = tf.reshape(pt, [shape[0], shape[1], shape[2], p, p, self.config.channels])
        pt = tf.transpose(pt, [0, 1, 2, 5, 3, 4])
        return tf.reshape(pt, [shape[0], shape[1], shape[2], self.config.features])

    def _normalise(self, pt):
        """Per-patch normalisation of [..., C·P] patches, as fitted."""
        cfg = self.config
        if cfg.mean_mode in ("gc", "gf"):
            pt = pt - self.mean
        elif cfg.mean_mode == "lc":
            r = tf.reshape(pt, tf.concat([tf.shape(pt)[:-1], [cfg.channels, cfg.positions]], 0))
            pt = tf.reshape(r - tf.reduce_mean(r, -1, keepdims=True), tf.shape(pt))
        elif cfg.mean_mode == "lf":
            pt = pt - tf.reduce_mean(pt, -1, keepdims=True)
        if cfg.sdev_mode == "lf":
            return pt / tf.maximum(tf.math.reduce_std(pt, -1, keepdims=True), 1e-8)
        return pt / self.sdev

    def _global(self) -> bool:
        cfg = self.config
        return cfg.kind != "channelwise" and cfg.mean_mode in ("gc", "gf") and cfg.sdev_mode in ("gc", "gf")

    def _foldable(self) -> bool:
        """The normalisation is one affine map of each feature (no per-patch statistics): it folds into filters."""
        return self.config.mean_mode in ("gc", "gf", "none") and self.config.sdev_mode != "lf"

    def energy(self, x, mask=None, path: str = "auto", step=0) -> tf.Tensor:
        """[N] prior energy of maps x [N, H, W, C] (the mean patch energy; channel-wise: see the module doc).

        ``mask``: a component mask [K] or an ensemble of masks [E, K] (dropout kind; then [E, N]). Without one, a
        dropout prior with ``dropout_test`` uses the thesis' mask of optimisation step ``step`` (seed (42, step)).
        ``path``: ``"auto"`` (VALID convolution for global normalisation, reflect-padded patches otherwise;
        channel-wise priors: always reflect-padded, computed by convolution where the normalisation folds into
        it), ``"conv"`` or ``"patches"``; these are differentiable to any order. ``"fast"``: the same value (the
        patches of ``"auto"``) by strips of rows with the normalisation folded into the filters and a hand-written
        first-order gradient (:func:`strip_energy`): memory of one strip, no [N, H, W, C·P] patch tensor; for
        optimisation objectives (:class:`~tfrestore.priors.PriorTerm`), not for differentiating a gradient; ``"auto"``
        takes it for a NumPy ``x`` (a reported energy: 8 AlexNet canvases by the whole convolution peak at +2.5 GB). It
        falls back to ``"auto"`` for a per-patch sdev (``lf``), a channel-wise prior with mean ``lf`` and maps of
        unknown height or width.
        """
        cfg = self.config
        if path == "auto" and isinstance(x, np.ndarray):
            path = "fast"                 # nothing can differentiate by a NumPy array: the value in one strip's memory
        x = tf.convert_to_tensor(x, tf.float32)
        if path == "fast" and not self._fast_ok(x):
            path = "auto"                                     # per-patch sdev, channel-wise lf, unknown map size
        if cfg.kind == "channelwise":
            return self._fast_energy(x, self._fold()) if path == "fast" else self._channelwise_energy(x, path)
        if mask is None and cfg.kind == "dropout" and cfg.dropout_test:
            mask = self.dropout_mask(dropout_seed(step))
        if path == "fast":
            folded = self._fold()
            if mask is not None and tf.convert_to_tensor(mask).shape.rank == 2:
                return tf.stack([self._fast_energy(x, folded, mask[e]) for e in range(mask.shape[0])])
            return self._fast_energy(x, folded, mask)
        m = self.mixing(mask)                                 # [D, K] or [E, D, K]
        use_conv = self._global() if path == "auto" else path == "conv"
        if use_conv:
            if not self._global():
                raise ValueError("the convolution path needs global normalisation (mean and sdev gc / gf)")
            return self._conv_energy(x, m)
        pt = self._normalise(self._patches(x))               # [N, H, W, D]
        y = tf.einsum("nhwd,...dk->...nhwk", pt, m)
        return tf.reduce_mean(self.patch_energy(y), axis=[-2, -1])

    def _conv_energy(self, x, m):
        cfg = self.config
        folded = m / self.sdev[:, None]                      # normalisation folded into kernel and bias
        bias = -tf.einsum("d,...dk->...k", self.mean / self.sdev, m)

        def one(mix, b):
            kernel = tf.transpose(tf.reshape(mix, [cfg.channels, cfg.patch, cfg.patch, -1]), [1, 2, 0, 3])
            y = tf.nn.conv2d(x, kernel, 1, "VALID") + b
            return tf.reduce_mean(self.patch_energy(y), axis=[1, 2])
        if folded.shape.rank == 3:
            return tf.stack([one(folded[e], bias[e]) for e in range(folded.shape[0])])
        return one(folded, bias)

    def _channelwise_energy(self, x, path: str = "auto"):
        """Every pixel's reflect-padded patch, per channel: by a depthwise convolution with the normalisation
        folded into kernel and bias (``"auto"`` when it folds: the same numbers as gathering the C·P-feature
        patches, far cheaper for C = 96), else (``"patches"``, per-patch modes) by gathering them."""
        cfg = self.config
        c, p, k = cfg.channels, cfg.patch, cfg.components
        mixing = tf.einsum("cfp,cfk->cpk", self.whiten, self.filters())   # per channel M_c = whiten_cᵀ W_c
        if path == "conv" and not self._foldable():
            raise ValueError("the convolution path needs per-feature normalisation (mean gc / gf / none, sdev not lf)")
        if path == "patches" or not self._foldable():
            pt = self._normalise(self._patches(x))               # [N, H, W, C·P]
            s = tf.shape(pt)
            y = tf.einsum("nhwcp,cpk->nhwck", tf.reshape(pt, [s[0], s[1], s[2], c, cfg.positions]), mixing)
        else:
            mean, sdev = tf.reshape(self.mean, [c, -1]), tf.reshape(self.sdev, [c, -1])
            kernel = tf.transpose(tf.reshape(mixing / sdev[..., None], [c, p, p, k]), [1, 2, 0, 3])  # [p, p, C, K]
            y = tf.nn.depthwise_conv2d(self._reflect_pad(x), kernel, [1, 1, 1, 1], "VALID")         # [N, H, W, C·K]
            s = tf.shape(y)
            y = tf.reshape(y, [s[0], s[1], s[2], c, k]) - tf.einsum("cp,cpk->ck", mean / sdev, mixing)
        e = self.alpha() * rho(y, cfg.expert)               # [N, H, W, C, K]
        return tf.reduce_sum(e, axis=[1, 2, 3, 4]) / float(cfg.channels * cfg.components)

    # ---- the fast path: folded filters, strips of rows -------------------------------------------------------
    def _fast_ok(self, x) -> bool:
        cfg = self.config
        if cfg.sdev_mode == "lf" or (cfg.kind == "channelwise" and cfg.mean_mode == "lf"):
            return False                                  # a per-patch divisor / a cross-channel mean: not linear
        return x.shape.rank == 4 and None not in x.shape[1:]

    def _fold(self):
        """The normalisation folded into filters on the raw map: kernel [p, p, C, K], bias [J] and the shift
        [1, 1, 1, C] taken from the map first (J = K, or C·K in (c, k) order for a channel-wise prior). The fold
        acts on the whitening (float64, then float32): sdev as a scale of its columns, lc / lf as its columns
        centred per channel / overall, gc / gf as the shift (the fitted per-channel mean) and a bias for the rest —
        then one float32 product with the filters, as ``mixing`` costs. Centring the whitening before the product
        matters with ZCA after local centring: whitenᵀ·W is large along the constant direction that the centring
        removes, and centring the product in float32 would keep that direction's rounding error."""
        cfg = self.config
        c, q = cfg.channels, cfg.positions
        cw = cfg.kind == "channelwise"
        wh = tf.cast(self.whiten, tf.float64)                                  # [nw, D] or [C, nw, P]
        wh = tf.reshape(wh, [c, -1, q]) if cw else tf.reshape(wh, [-1, c, q])  # [C, nw, P] / [nw, C, P]
        sdev = tf.reshape(tf.cast(self.sdev, tf.float64), [c, q])
        mu = tf.reshape(tf.cast(self.mean, tf.float64), [c, q])
        wh = wh / (sdev[:, None, :] if cw else sdev[None])
        shift, v = tf.zeros([1, 1, 1, c]), None
        if cfg.mean_mode in ("gc", "gf"):
            ref = tf.reduce_mean(mu, 1)                                        # [C]
            shift = tf.cast(ref, tf.float32)[None, None, None, :]
            rest = mu - ref[:, None]                                           # gf: the mean's spread over positions
            v = tf.einsum("cwp,cp->cw", wh, rest) if cw else tf.einsum("wcp,cp->w", wh, rest)
        elif cfg.mean_mode == "lc":                                            # Σ_p M(x_cp − x̄_c) = Σ_p (M − M̄_c) x_cp
            wh = wh - tf.reduce_mean(wh, -1, keepdims=True)
        elif cfg.mean_mode == "lf":
            wh = wh - tf.reduce_mean(wh, [1, 2], keepdims=True)
        wh, w = tf.cast(wh, tf.float32), self.filters()
        mix = tf.einsum("cwp,cwk->cpk", wh, w) if cw else tf.einsum("wcp,wk->cpk", wh, w)        # [C, P, K]
        kernel = tf.transpose(tf.reshape(mix, [c, cfg.patch, cfg.patch, -1]), [1, 2, 0, 3])    # [p, p, C, K]
        if v is None:
            bias = tf.zeros([c * cfg.components if cw else cfg.components])
        else:
            v = tf.cast(v, tf.float32)
            bias = -tf.reshape(tf.einsum("cw,cwk->ck", v, w), [-1]) if cw else -tf.linalg.matvec(w, v, transpose_a=True)
        return kernel, bias, shift

    def _fast_energy(self, x, folded, mask=None) -> tf.Tensor:
        """[N] energy by :func:`strip_energy` (``folded``: :meth:`_fold`; ``mask``: a [K] column mask)."""
        cfg = self.config
        channelwise = cfg.kind == "channelwise"
        kernel, bias, shift = folded
        if mask is not None:
            mask = tf.cast(mask, tf.float32)
            kernel, bias = kernel * mask, bias * mask
        if cfg.mean_mode == "lc":
            shift = tf.stop_gradient(tf.reduce_mean(x, [1, 2], keepdims=True))      # y does not depend on it
        elif cfg.mean_mode == "lf":
            shift = tf.stop_gradient(tf.reduce_mean(x, [1, 2, 3], keepdims=True))
        x = x - shift
        if not self._global():
            x = self._reflect_pad(x)
        alpha = tf.reshape(self.alpha(), [-1])                                # [J]: channel-wise (c, k) order
        ho, wo = x.shape[1] - cfg.patch + 1, x.shape[2] - cfg.patch + 1
        scale = 1.0 / (cfg.channels * cfg.components) if channelwise else 1.0 / (ho * wo)
        return strip_energy(x, kernel, bias, alpha, expert=cfg.expert, scale=scale, depthwise=channelwise)

    # ---- score matching -----------------------------------------------------------------------------------------
    def score_matching_terms(self, xw, legacy_broadcast: bool = False, mask=None) -> tf.Tensor:
        """Per-sample score-matching objective j_t ([T]) on whitened samples [T, n_white] (channel-wise:
        [T, C, n_fpc], summed over channels). ``mask``: a [K] column mask (e.g. ``dropout_mask(dropout_seed(t))``):
        the objective of the masked model (module doc). ``legacy_broadcast``: the thesis' first term (spec §9
        item 2)."""
        cfg = self.config
        xw = tf.convert_to_tensor(xw, tf.float32)
        w, alpha = self.filters(), self.alpha()
        if cfg.kind == "channelwise":
            y = tf.einsum("tcf,cfk->tck", xw, w)
            ag = alpha * g(y, cfg.expert)                                         # [T, C, K]
            first = tf.reduce_sum(alpha * g_prime(y, cfg.expert), axis=-1)
            score = tf.einsum("cfk,tck->tcf", w, ag)                              # ψ = W(α ⊙ g): [T, C, n_fpc]
            return tf.reduce_sum(first + 0.5 * tf.reduce_sum(tf.square(score), axis=-1), axis=-1)
        # a dropout mask m scales the columns: w̃_k = m_k w_k, responses m_k y_k, ‖w̃_k‖² = m_k² (1 unmasked)
        m = tf.ones_like(alpha) if mask is None else tf.convert_to_tensor(mask, tf.float32)
        y = tf.matmul(xw, w) * m                                                  # [T, K] masked responses
        gp = g_prime(y, cfg.expert)
        first = (tf.reduce_sum(alpha) * tf.reduce_sum(gp, axis=-1) if legacy_broadcast
                 else tf.reduce_sum(alpha * tf.square(m) * gp, axis=-1))
        # ½ (α⊙g)ᵀ W̃ᵀW̃ (α⊙g) = ½ ‖W̃ (α⊙g)‖²: the score ψ(x) = W̃(α⊙g) costs T·n_white·K, not n_white·K²
        score = tf.matmul(alpha * m * g(y, cfg.expert), w, transpose_b=True)      # [T, n_white]
        return first + 0.5 * tf.reduce_sum(tf.square(score), axis=-1)

    def score_matching_loss(self, xw, legacy_broadcast: bool = False, mask=None) -> tf.Tensor:
        """The mean of :meth:`score_matching_terms` over the samples."""
        return tf.reduce_mean(self.score_matching_terms(xw, legacy_broadcast, mask))

    def whiten_patches(self, normalised: np.ndarray) -> np.ndarray:
        """Normalised [T, C·P] patches → the training space ([T, n_white]; channel-wise [T, C, n_fpc])."""
        cfg = self.config
        wh = self.whiten.numpy().astype(np.float64)
        if cfg.kind == "channelwise":
            return np.einsum("tcp,cfp->tcf", normalised.reshape(len(normalised), cfg.channels, cfg.positions), wh)
        return normalised @ wh.T

    # ---- visualisation and storage -------------------------------------------------------------------------------
    def filter_images(self) -> tuple[np.ndarray, np.ndarray]:
        """The learned components mapped back to (normalised) patch space through the unwhitening — [K, p, p, C] —
        sorted by expert weight, and the sorted weights."""
        cfg = self.config
        if cfg.kind == "channelwise":
            raise ValueError("filter_images is for full, dropout and separable priors")
        w = self.filters().numpy()
        back = (self.unwhiten.numpy().T @ w) if self.unwhiten is not None else self.mixing().numpy()
        order = np.argsort(-self.alpha().numpy())
        imgs = back.T[order].reshape(-1, cfg.channels, cfg.patch, cfg.patch).transpose(0, 2, 3, 1)
        return imgs, self.alpha().numpy()[order]

    def save(self, folder: str | Path) -> Path:
        """``prior.json`` (the config) and ``prior.h5`` (every weight), each written atomically."""
        folder = Path(folder)
        weights = {v.path.split("/")[-1]: np.asarray(v.numpy()) for v in self.weights}

        def write(p):
            with h5py.File(p, "w") as f:
                for k, v in weights.items():
                    f.create_dataset(k, data=v)
        files.atomic_write(folder / "prior.h5", write)
        files.write_json(folder / "prior.json", self.config.to_json())
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "PatchPrior":
        folder = Path(folder)
        if not (folder / "prior.json").exists():
            raise FileNotFoundError(f"no prior in {folder} (prior.json missing); train one first")
        cfg = PriorConfig(**json.loads((folder / "prior.json").read_text()))
        with h5py.File(folder / "prior.h5", "r") as f:
            arrays = {k: np.asarray(f[k]) for k in f}
        prior = cls(cfg)
        if "unwhiten" in arrays:
            prior.unwhiten = prior._const("unwhiten", arrays["unwhiten"])
        for v in prior.weights:
            name = v.path.split("/")[-1]
            if name not in arrays or tuple(arrays[name].shape) != tuple(v.shape):
                raise ValueError(f"{folder}/prior.h5: weight '{name}' missing or of the wrong shape")
            v.assign(arrays[name])
        return prior
