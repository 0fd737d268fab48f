"""Learned patch priors (Harder's thesis: Fields of Experts / ICA for network inversion).

- :mod:`.whitening` — normalisation modes and PCA / ZCA whitening;
- :mod:`.patches` — patch extraction from images or taps into HDF5, normalisation and whitening cached there;
- :mod:`.model` — :class:`PatchPrior` (full, dropout, channel-wise, separable; Student-t or log-cosh experts) with
  ``energy(x)`` and the score-matching objective;
- :mod:`.train` — :class:`PriorTrainer`, score matching under a ``tf.distribute`` strategy;
- :mod:`.tv` — :class:`TVPrior`, total variation with a prior's interface (the catalogue's ``tv_prior``);
- :mod:`.catalogue` — the thesis' default priors as data, trained on demand and stored under
  ``$TFRESTORE_HOME/priors/<net>/<name>/``.

Here: :class:`PriorTerm`, a prior's energy as an objective term, and :func:`unrolled_descent`, n differentiable
steps of SGD or Adam on a weighted prior energy (the adversarial defence).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfrestore.optimize import optim
from tfrestore.optimize.objectives import Context, Term
from .model import PatchPrior, PriorConfig
from .tv import TVPrior


class PriorTerm(Term):
    """The prior energy [N] of the optimised canvas (``extractor=None``; image priors see RGB 0–255, so
    ``offset`` — the net's mean colour — is added to image space) or of a tap's features of the network input.
    ``problems`` restricts it to some of the N problems (the others get 0 and cost nothing).

    A :class:`PatchPrior` is evaluated by ``energy(path="fast")`` (strips of rows, memory of one strip, a
    first-order gradient): an objective term is differentiated once.

    ``step``: the optimisation step a dropout prior's test-time mask is keyed by (a fresh mask per step, seed
    (42, step): spec §4.4). A context that carries the step (``ctx.step``) gives it; otherwise this variable does
    (e.g. the engine's ``Optimization.iteration``, which holds the step being taken), else step 0.
    """

    def __init__(self, prior: PatchPrior, name: str = "prior", extractor: keras.Model | None = None,
                 tap: str | None = None, offset=0.0, problems=None, step: tf.Variable | None = None):
        self.prior, self.extractor, self.tap, self.step = prior, extractor, tap, step
        self.offset = tf.constant(offset, tf.float32)
        self.problems = None if problems is None else tf.constant(problems, tf.int32)
        self.name = name
        super().__init__()

    def current_step(self, ctx: Context):
        """The step this evaluation belongs to (see the class doc)."""
        step = getattr(ctx, "step", None)
        if step is None:
            step = 0 if self.step is None else self.step
        return step

    def value(self, ctx: Context) -> tf.Tensor:
        step = self.current_step(ctx)
        # a learned prior by its fast path: strips of rows, first-order gradient (the engine needs no more)
        kw = {"path": "fast"} if isinstance(self.prior, PatchPrior) else {}
        if self.extractor is None:
            x = ctx.canvas if self.problems is None else tf.gather(ctx.canvas, self.problems)
            e = self.prior.energy(x + self.offset, step=step, **kw)
        else:
            feats = ctx.features(self.extractor, self.problems)
            e = self.prior.energy(feats[self.tap] if isinstance(feats, dict) else feats, step=step, **kw)
        return e if self.problems is None else tf.scatter_nd(self.problems[:, None], e, [ctx.n])


def unrolled_descent(prior: PatchPrior, x0, *, steps: int, lr: float, weight: float = 1.0, optimizer: str = "adam",
                     beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8, mask=None,
                     observe=None):
    """``steps`` of descent on weight·energy(x) from x0 [N, H, W, C], each problem with its own Adam state, as one
    differentiable ``tf.while_loop`` (gradients flow back to x0 and to the prior's weights).

    The step is :class:`tfrestore.optimize.optim.Adam`'s update with TF's ε placement (``epsilon_form="tf1"``):
    x ← x − lr·√(1−β2ᵗ)/(1−β1ᵗ)·m/(√v + ε) (spec §4.5); ``optimizer="sgd"``: :class:`tfrestore.optimize.optim.SGD`,
    x ← x − lr·g. ``mask``: a fixed component mask for dropout priors ([K]; the defence runs with dropout off by
    default). ``observe``: ``fn(x) -> [N]`` recorded before the first step and after every step; then the result
    is ``(x, observations [steps + 1, N])`` (e.g. the classifier's label after each step of the defence).
    """
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    rule = optim.Adam(beta1, beta2, epsilon, epsilon_form="tf1") if optimizer == "adam" else optim.SGD()
    x0 = tf.convert_to_tensor(x0, tf.float32)

    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            e = weight * tf.reduce_sum(prior.energy(x, mask=mask, path="auto"))
        return tape.gradient(e, x)

    def body(t, x, m, v):
        # the optimiser's own rule at step t (0-based; Adam's bias correction uses t + 1); SGD keeps m, v as zeros
        x, slots = rule.update(x, grad(x), {"m": m, "v": v}, lr, False, t)
        return t + 1, x, slots["m"], slots["v"]

    zeros = tf.zeros_like(x0)
    if observe is None:
        _, x, _, _ = tf.while_loop(lambda t, *_: t < steps, body, (tf.constant(0), x0, zeros, zeros))
        return x

    def observed(t, x, m, v, seen):
        t, x, m, v = body(t, x, m, v)
        return t, x, m, v, seen.write(t, observe(x))

    seen = tf.TensorArray(tf.convert_to_tensor(observe(x0)).dtype, size=steps + 1).write(0, observe(x0))
    _, x, _, _, seen = tf.while_loop(lambda t, *_: t < steps, observed, (tf.constant(0), x0, zeros, zeros, seen))
    return x, seen.stack()


__all__ = ["PatchPrior", "PriorConfig", "PriorTerm", "TVPrior", "unrolled_descent"]
