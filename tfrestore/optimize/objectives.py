"""Objective terms that add and scale like algebra.

    objective = feature_loss("conv3", target) + 0.5 * tv(beta=2) + 2.16e8 * alpha_norm(6)

An :class:`Objective` maps a :class:`Context` (the batch of N independent problems being optimised) to a loss vector
of shape [N]; problems never interact, so the sum over N has per-problem gradients. Weights may be scalars or
length-N vectors (a different λ per problem, as in a per-layer figure). Every term reports its own (unweighted)
value to the logs under its name.

Images seen by the terms live in tfrestore's *image space*: RGB, 0–255 scale, mean-subtracted (M&V's x). The
context converts to the network's input space (:func:`tfrestore.nets.to_input`).

Writing a new term (patch priors, autoencoder priors, …) means subclassing :class:`Term` and implementing
``value(ctx) -> [N]``; see :class:`CustomTerm` for the one-function form.
"""
from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf


class Context:
    """What the terms of one optimisation step see.

    Attributes:
        image: [N, H, W, 3] the window the network sees (image space).
        canvas: [N, Hc, Wc, 3] the whole optimised canvas (regularisers act on it); equals ``image`` without jitter.
        mask: [N, Hc, Wc, 1] 1 where the canvas belongs to the problem (problems with smaller jitter use less of a
            shared canvas), or None for all ones.
        to_input: image space → network input space.
    """

    def __init__(self, image, canvas=None, mask=None, to_input: Callable = lambda x: x):
        self.image, self.canvas, self.mask, self.to_input = image, image if canvas is None else canvas, mask, to_input
        self._features: dict = {}

    @property
    def n(self) -> int:
        return self.image.shape[0]

    def features(self, extractor: keras.Model, problems: tf.Tensor | None):
        """Features of ``extractor`` on the given problems' windows (computed once per step)."""
        key = (id(extractor), id(problems))
        if key not in self._features:
            x = self.image if problems is None else tf.gather(self.image, problems)
            feats = extractor(self.to_input(x))
            # a network under a mixed-precision policy (float16 compute) hands back float16 maps: the objective
            # (targets, norms, sums over many elements) stays float32
            self._features[key] = tf.nest.map_structure(lambda f: tf.cast(f, tf.float32), feats)
        return self._features[key]

    def pixel_mask(self) -> tf.Tensor:
        if self.mask is None:
            return tf.ones_like(self.canvas[..., :1])
        return self.mask


class Objective:
    """A weighted sum of terms. Supports ``+``, ``-``, ``*`` by a scalar or a length-N vector."""

    __array_ufunc__ = None   # make numpy defer to __rmul__ for `np.array([...]) * term`

    def __init__(self, parts: Sequence[tuple[object, "Term"]]):
        self.parts = list(parts)

    def __add__(self, other: "Objective") -> "Objective":
        if other == 0:
            return self
        return Objective(self.parts + _as_objective(other).parts)

    __radd__ = __add__

    def __mul__(self, w) -> "Objective":
        return Objective([(_mul(w, pw), t) for pw, t in self.parts])

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return self * -1.0

    def __sub__(self, other) -> "Objective":
        return self + (-_as_objective(other))

    @property
    def terms(self) -> list["Term"]:
        return [t for _, t in self.parts]

    def __call__(self, ctx: Context) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Returns (loss [N], {term name: unweighted value [N]})."""
        total, values = 0.0, {}
        for name, (w, term) in zip(self.names(), self.parts):
            v = term.value(ctx)
            values[name] = v
            total = total + tf.cast(w, tf.float32) * v
        return total, values

    def names(self) -> list[str]:
        """The terms' names as the values report them (a repeated name gets a trailing "_")."""
        out: list[str] = []
        for _, term in self.parts:
            name = term.name
            while name in out:
                name += "_"
            out.append(name)
        return out

    def applicability(self, n: int) -> dict[str, np.ndarray]:
        """{term name (as in the values): [n] bool} — False where a problem's weight is 0 or the term is restricted
        to other problems (its value there is a constant 0; logs leave it out)."""
        out: dict[str, np.ndarray] = {}
        for name, (w, term) in zip(self.names(), self.parts):
            on = np.broadcast_to(np.asarray(w, np.float32) != 0, (n,)).copy()
            problems = getattr(term, "problems", None)
            if problems is not None:
                mask = np.zeros(n, bool)
                mask[np.asarray(problems)] = True
                on &= mask
            out[name] = on
        return out

    def __repr__(self):
        return " + ".join(f"{_fmt(w)}·{t.name}" for w, t in self.parts)


def _fmt(w):
    return f"{w:g}" if np.isscalar(w) else f"[{len(w)} weights]"


def _mul(a, b):
    if np.isscalar(a) and np.isscalar(b):
        return float(a) * float(b)
    return np.asarray(a, np.float32) * np.asarray(b, np.float32)


def _as_objective(x) -> Objective:
    if isinstance(x, Objective):
        return x
    raise TypeError(f"cannot combine an Objective with {type(x).__name__}")


class Term(Objective):
    """One named term; subclasses implement ``value(ctx) -> [N]``."""

    name = "term"

    def __init__(self):
        super().__init__([(1.0, self)])

    def value(self, ctx: Context) -> tf.Tensor:
        raise NotImplementedError


class CustomTerm(Term):
    """Wrap ``fn(ctx) -> [N]`` as a term — the open interface for priors defined elsewhere."""

    def __init__(self, name: str, fn: Callable[[Context], tf.Tensor]):
        self.name, self._fn = name, fn
        super().__init__()

    def value(self, ctx):
        return self._fn(ctx)


def _scatter(values: tf.Tensor, problems, n: int) -> tf.Tensor:
    if problems is None:
        return values
    return tf.scatter_nd(problems[:, None], values, [n])


def _reduce(x):
    return tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


class FeatureLoss(Term):
    """‖mask ⊙ (Φ_l(x) − Φ0)‖² / ‖mask ⊙ Φ0‖² (M&V 2015 / 2016 data term, normalised by the target's energy).

    ``problems`` restricts the term to some of the N problems (others get 0): a per-layer figure is a sum of one
    FeatureLoss per layer, each over its own problems, so every problem only runs the network up to its layer.
    ``normalise=False`` gives the plain squared error; ``mean=True`` divides by the element count instead (the
    representation study's L2 / MSE loss). ``normalise="dot"`` divides by Σ mask ⊙ Φ0 ⊙ Φ_l(x), the target's
    inner product with the *current* features (the thesis code's ``NormedMSELoss``, spec mv2016 §9.1; its
    gradient includes the denominator's).
    """

    def __init__(self, extractor: keras.Model, layer: str, target, mask=None, problems=None,
                 normalise: bool | str = True, mean=False):
        if normalise not in (True, False, "dot"):
            raise ValueError(f"normalise must be True, False or 'dot', got {normalise!r}")
        self.extractor, self.layer = extractor, layer
        self.target = tf.constant(target, tf.float32)
        self.mask = None if mask is None else tf.constant(mask, tf.float32)
        self.problems = None if problems is None else tf.constant(problems, tf.int32)
        self.normalise, self.mean = normalise, mean
        self.name = f"feature/{layer}"
        masked = self.target if self.mask is None else self.target * self.mask
        self._norm = _reduce(tf.square(masked)) if normalise is True else tf.ones([self.target.shape[0]])
        super().__init__()

    def features(self, ctx: Context) -> tf.Tensor:
        feats = ctx.features(self.extractor, self.problems)
        return feats[self.layer] if isinstance(feats, dict) else feats

    def value(self, ctx):
        diff = self.features(ctx) - self.target
        if self.mask is not None:
            diff = diff * self.mask
        err = _reduce(tf.square(diff))
        if self.mean:
            err = err / float(np.prod(self.target.shape[1:]))
        if self.normalise == "dot":
            masked = self.target if self.mask is None else self.target * self.mask
            return _scatter(err / _reduce(masked * self.features(ctx)), self.problems, ctx.n)
        return _scatter(err / self._norm, self.problems, ctx.n)


class InnerProduct(Term):
    """−⟨w, Φ_l(x)⟩: minimising it maximises the inner product (activation maximisation, caricature)."""

    def __init__(self, extractor: keras.Model, layer: str, weight_tensor, problems=None):
        self.extractor, self.layer = extractor, layer
        self.w = tf.constant(weight_tensor, tf.float32)
        self.problems = None if problems is None else tf.constant(problems, tf.int32)
        self.name = f"inner/{layer}"
        super().__init__()

    def value(self, ctx):
        feats = ctx.features(self.extractor, self.problems)
        feats = feats[self.layer] if isinstance(feats, dict) else feats
        return _scatter(-_reduce(self.w * feats), self.problems, ctx.n)


class AlphaNorm(Term):
    """M&V 2015 α-norm: Σ over pixels and channels of |x|^α (x in image space)."""

    def __init__(self, alpha: float = 6.0):
        self.alpha, self.name = alpha, f"alpha_norm{alpha:g}"
        super().__init__()

    def value(self, ctx):
        return _reduce(_abs_power(ctx.canvas, self.alpha) * ctx.pixel_mask())


def _abs_power(x: tf.Tensor, alpha: float) -> tf.Tensor:
    """|x|^α; an even integer α as products of x² (M&V's α = 6: x²·x²·x²), whose gradient is cheaper than
    ``pow``'s (log, select) — about 1 ms of an AlexNet step (issue 15)."""
    if float(alpha).is_integer() and alpha % 2 == 0 and 2 <= alpha <= 16:
        x2 = tf.square(x)
        out = x2
        for _ in range(int(alpha) // 2 - 1):
            out = out * x2
        return out
    return tf.pow(tf.abs(x), alpha)


class BoundedRange(Term):
    """M&V 2016 bounded range: (1/HW) Σ_uv (‖x_uv‖ / B)^α, ‖x_uv‖ the colour-vector norm of pixel uv."""

    def __init__(self, alpha: float = 6.0, bound: float = 80.0):
        self.alpha, self.bound, self.name = alpha, bound, f"bounded_range{alpha:g}"
        super().__init__()

    def value(self, ctx):
        m = ctx.pixel_mask()
        n2 = tf.reduce_sum(tf.square(ctx.canvas / self.bound), axis=-1, keepdims=True)
        return _reduce(tf.pow(n2, self.alpha / 2) * m) / _reduce(m)


class TotalVariation(Term):
    """TV^β: Σ per pixel and channel of (d_w² + d_h²)^{β/2}, forward differences, replicated last row / column.

    ``mean=False``: summed (M&V 2015). ``mean=True``: divided by the pixel count H·W (M&V 2016). ``scale``
    divides the differences first (2016's V = B/6.5, i.e. weight (1/V)^β). For β < 2 the base is floored at
    ``eps`` so the gradient exists at flat regions (the originals floor v at 1e-5 / 1e-6 in the gradient).
    """

    def __init__(self, beta: float = 2.0, mean: bool = False, scale: float = 1.0, eps: float = 1e-6):
        self.beta, self.mean, self.scale, self.eps = beta, mean, scale, eps
        self.name = f"tv{beta:g}"
        super().__init__()

    def value(self, ctx):
        x = ctx.canvas / self.scale
        m = ctx.pixel_mask()
        dw, dh = _forward_pairs(x, tf.subtract)
        if ctx.mask is not None:   # a difference counts only when both pixels belong to the problem
            mw, mh = _forward_pairs(m, tf.multiply)
            dw, dh = dw * mw, dh * mh
        d2 = tf.square(dw) + tf.square(dh)
        v = d2 if self.beta == 2 else tf.pow(tf.maximum(d2, self.eps), self.beta / 2)
        total = _reduce(v * m)
        return total / _reduce(m) if self.mean else total


def _shifted(x: tf.Tensor, axis: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(x without its first, x without its last) row (axis 1) or column (axis 2). ``tf.slice``, not ``x[:, 1:]``:
    the gradient of a slice is a pad, of a strided slice a much slower scatter (~4 ms of an AlexNet step)."""
    begin, size = [0, 0, 0, 0], [-1, -1, -1, -1]
    begin[axis] = 1
    size[axis] = x.shape[axis] - 1 if x.shape[axis] is not None else tf.shape(x)[axis] - 1
    return tf.slice(x, begin, size), tf.slice(x, [0, 0, 0, 0], size)


def _forward_pairs(x: tf.Tensor, combine) -> tuple[tf.Tensor, tf.Tensor]:
    """(along w, along h): ``combine(next pixel, pixel)``, zero in the last column / row (the replicated-border
    convention). With ``tf.subtract`` the forward differences d_w, d_h; with ``tf.multiply`` on a mask, 1 where
    both pixels of a difference are in it."""
    right, left = _shifted(x, 2)
    below, above = _shifted(x, 1)
    return (tf.pad(combine(right, left), [[0, 0], [0, 0], [0, 1], [0, 0]]),
            tf.pad(combine(below, above), [[0, 0], [0, 1], [0, 0], [0, 0]]))


class ImageL2(Term):
    """Σ (x − x_ref)² in image space (e.g. an image-domain fidelity term)."""

    def __init__(self, reference):
        self.ref, self.name = tf.constant(reference, tf.float32), "image_l2"
        super().__init__()

    def value(self, ctx):
        return _reduce(tf.square(ctx.image - self.ref))


class DataTerm(Term):
    """‖m ⊙ (A(x) − y)‖² / (2σ²) per problem: the restoration data term for an observation y of the image
    through a degradation A (any callable on [N, H, W, C], e.g. :mod:`tfrestore.restore.degrade`'s operators) under
    Gaussian noise of standard deviation σ (image units). ``mask`` (broadcastable to y) marks the observed
    entries (inpainting); A's output and y must have the same shape."""

    def __init__(self, observation, operator: Callable | None = None, sigma: float = 1.0, mask=None,
                 name: str = "data"):
        if sigma <= 0:
            raise ValueError(f"the noise level sigma must be positive, got {sigma}")
        self.y = tf.constant(observation, tf.float32)
        self.operator = operator if operator is not None else (lambda x: x)
        self.mask = None if mask is None else tf.constant(mask, tf.float32)
        self.sigma, self.name = float(sigma), name
        super().__init__()

    def value(self, ctx):
        r = self.operator(ctx.canvas) - self.y
        if self.mask is not None:
            r = r * self.mask
        return _reduce(tf.square(r)) / (2.0 * self.sigma ** 2)


# lower-case constructors, Lucid style
feature_loss = FeatureLoss
inner_product = InnerProduct
alpha_norm = AlphaNorm
bounded_range = BoundedRange
tv = TotalVariation
image_l2 = ImageL2
data_term = DataTerm
custom = CustomTerm
