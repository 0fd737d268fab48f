"""Adversarial restoration with learned priors (Harder's thesis, last chapter; spec ``adversarial.md``).

- :class:`Classifier`: a tfrestore net on RGB 0–255 images, classifying from its registry ``logits`` layer (``fc8``
  for the ImageNet nets — never the softmax of a ReLU, the original's bug 7).
- Attacks from foolbox 3 (:func:`attack`), each an :class:`AttackSetting` (:data:`ATTACKS`: the thesis' foolbox 1
  keys): L2 DeepFool, FGSM and iterative FGSM / PGD as minimal-perturbation searches over an ε grid (foolbox 1's
  line search) or at a fixed ε, and a targeted iterative FGSM; bounds (0, 255). Foolbox 3 has neither of the
  thesis' other two, so they are foolbox 1's algorithms written here: :class:`LBFGSSetting` (:func:`lbfgs_attack`,
  Szegedy et al.'s box-constrained L-BFGS with a search over c, SciPy's L-BFGS-B) and :class:`SaliencySetting`
  (:func:`saliency_attack`, foolbox 1's saliency map: one input element per step, a compiled loop); both untargeted
  ones aim at the class foolbox 1's gradient attack reaches (:func:`gradient_attack_targets`).
- Defences (differentiable maps RGB → RGB): :class:`PriorDefence` (n unrolled Adam / SGD steps on the weighted
  prior energy alone, each input with its own optimiser state; dropout priors with dropout off unless masks are
  given, or a fresh mask per step with ``test_dropout``: spec §5's test-time dropout) and :class:`MeanFilter`
  (the weighted mean-filter baseline). :class:`Defended` and :class:`Ensemble`
  put a classifier behind them; attacking those is the adaptive (white-box) attack.
- Statistics: :func:`stability_statistics` (spec §3) and :func:`adaptive_summary` (``read_adaptive_log``).
- The baseline every restoration count needs (:func:`same_norm_noise`, :func:`noise_labels`): a seeded random
  perturbation with the L2 norm of the defence's change. DeepFool's minimal examples sit just across the boundary,
  and almost any change of that size restores them; a defence shows its worth only against this baseline.
- Example files: ``{folder}/{attack}_{kind}/{stem}_t{src}_f{fooled}.npy`` (float RGB 0–255), reused by later runs.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from tfrestore.core import files
from tfrestore import nets
from tfrestore.priors import PatchPrior, unrolled_descent

BOUNDS = (0.0, 255.0)
# The unrolled defence's Adam: TF's rule with β1 0.9, β2 0.999, ε 1e-8 (spec §4)
ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8
NOISE_SEED = 0                 # the same-norm noise baselines' directions


@dataclasses.dataclass(frozen=True)
class AttackSetting:
    """One attack as the thesis called it in foolbox 1 (spec §2), run with foolbox 3.

    ``kind``: ``deepfool`` (L2; ``steps``, ``candidates`` — foolbox 1's ``subsample`` — and ``overshoot``),
    ``fgsm`` (one step along the sign of the loss gradient), ``itfgsm`` (``steps`` sign steps of ε/steps each:
    foolbox 1's iterative gradient sign, which never leaves the ε-box), ``pgd`` (L∞ PGD, ``steps``, random start;
    not the thesis') and ``targeted`` (iterative gradient sign towards a target class). The gradient-sign kinds keep
    the smallest successful ε of the grid ε_k = k/``epsilons``·255, k = 1 … ``epsilons`` (foolbox 1's line
    search, walked upwards until every sample is fooled), or run at one fixed ``epsilon`` (0–255 units) when set.
    """
    kind: str
    steps: int | None = None
    epsilons: int | None = None
    epsilon: float | None = None
    candidates: int = 10
    overshoot: float = 0.02        # foolbox 1's and 3's DeepFool default

    def __post_init__(self):
        if self.kind not in ATTACK_KINDS:
            raise ValueError(f"unknown attack kind '{self.kind}'; valid: {', '.join(ATTACK_KINDS)}")
        if self.kind != "deepfool" and self.epsilons is None and self.epsilon is None:
            raise ValueError(f"a {self.kind} attack needs an ε grid size (epsilons=…) or a fixed epsilon=…")
        if self.kind != "fgsm" and not self.steps:
            raise ValueError(f"a {self.kind} attack needs steps=… (a positive count)")

    def grid(self) -> list[float]:
        """The ε values tried, smallest first (0–255 units)."""
        if self.epsilon is not None:
            return [float(self.epsilon)]
        return [BOUNDS[1] * k / self.epsilons for k in range(1, self.epsilons + 1)]

    def describe(self) -> str:
        if self.kind == "deepfool":
            return f"DeepFool L2, {self.steps} steps, {self.candidates} candidates, overshoot {self.overshoot:g}"
        eps = (f"ε = {self.epsilon:g}" if self.epsilon is not None
               else f"smallest successful ε of {self.epsilons} (k/{self.epsilons}·255)")
        return f"{self.kind}{f', {self.steps} steps' if self.steps else ''}, {eps}"


@dataclasses.dataclass(frozen=True)
class LBFGSSetting:
    """foolbox 1's ``LBFGSAttack`` (Szegedy et al. 2014; spec §2: epsilon 1e-5, num_random_targets 0, maxiter 150).

    Per image, SciPy's box-constrained L-BFGS-B (memory ``memory``, ``maxiter`` iterations) minimises
    1e10·(d(x) + c·CE(x, target)), d the mean squared difference to the image in units of the pixel range, CE the
    cross-entropy of the logits towards the target. c starts at 2·``epsilon`` and doubles (at most ``doublings``
    times) until the result is adversarial, then a bisection narrows c to ``epsilon``. As foolbox 1's
    ``Adversarial`` object did, every in-bounds point evaluated on the way that is labelled the target counts, and
    the closest one is the example. Untargeted (no targets given): the target is the class foolbox 1's gradient
    attack reaches (num_random_targets 0)."""
    epsilon: float = 1e-5
    maxiter: int = 150
    memory: int = 15            # foolbox 1's m
    doublings: int = 30
    kind: str = "lbfgs"

    def describe(self) -> str:
        return (f"L-BFGS-B (foolbox 1), c from {2 * self.epsilon:g} to resolution {self.epsilon:g}, "
                f"maxiter {self.maxiter}")


@dataclasses.dataclass(frozen=True)
class SaliencySetting:
    """foolbox 1's ``SaliencyMapAttack`` (spec §2: max_iter 2000, theta 0.1, max_perturbations_per_pixel 7, fast).

    Each step changes the one input element (a pixel's channel) of extreme saliency by −sign(α)·θ·255, α the
    gradient of the target's cross-entropy (masked); ``fast``: the other classes' term β is −1, so the saliency
    |α|·|β|·sign(αβ) is −α and the element of largest positive α is lowered (foolbox 1's behaviour: the fast map
    only ever lowers elements). An element leaves the search once it reaches a bound or has been changed
    ``max_perturbations_per_pixel`` times; the attack stops at the first misclassified state. Target: the class
    foolbox 1's gradient attack reaches."""
    max_iter: int = 2000
    theta: float = 0.1
    max_perturbations_per_pixel: int = 7
    fast: bool = True
    kind: str = "saliency"

    def __post_init__(self):
        if not self.fast:
            raise ValueError("only the fast saliency map (the thesis' setting, fast=True) is implemented")

    def describe(self) -> str:
        return (f"saliency map (foolbox 1, fast), θ {self.theta:g}, ≤ {self.max_perturbations_per_pixel} changes per "
                f"element, ≤ {self.max_iter} steps")


ATTACK_KINDS = ("deepfool", "fgsm", "itfgsm", "pgd", "targeted")
# The thesis' settings (spec §2). DeepFool: §2's text gives 300 steps for the oblivious examples; the notes' table
# (steps 100, subsample 10) is foolbox 1's default, which the adaptive attack ran with (§4, bug 4): ADAPTIVE_DEEPFOOL.
ATTACKS: dict[str, AttackSetting | LBFGSSetting | SaliencySetting] = {
    "deepfool": AttackSetting("deepfool", steps=300, candidates=10),
    "fgsm": AttackSetting("fgsm", epsilons=1000),                  # gradient sign: epsilons 1000
    "itfgsm": AttackSetting("itfgsm", steps=10, epsilons=100),     # iterative gradient sign: epsilons 100, steps 10
    "targeted": AttackSetting("targeted", steps=50, epsilons=1000),    # targeted itgradientsign: 1000, steps 50
    "pgd": AttackSetting("pgd", steps=40, epsilons=100),           # not the thesis': L∞ PGD on the same grid
    "lbfgs": LBFGSSetting(),                                       # epsilon 1e-5, num_random_targets 0, maxiter 150
    "saliency": SaliencySetting(),                                 # max_iter 2000, theta 0.1, 7 per pixel, fast
}
ADAPTIVE_DEEPFOOL = AttackSetting("deepfool", steps=100, candidates=10)


class Classifier:
    """Logits of a tfrestore net for RGB 0–255 images [N, H, W, 3]."""

    def __init__(self, model):
        self.model, self.net = model, nets.net_of(model)
        self.layer = nets.spec(self.net).logits
        self.extractor = nets.feature_extractor(model, [self.layer])

    def __call__(self, x_rgb) -> tf.Tensor:
        return self.extractor(nets.preprocess(self.net, tf.convert_to_tensor(x_rgb, tf.float32)))[self.layer]

    def labels(self, x_rgb: np.ndarray, batch: int = 64) -> np.ndarray:
        return np.concatenate([np.argmax(np.asarray(self(x_rgb[i:i + batch])), -1)
                               for i in range(0, len(x_rgb), batch)])


# ---- defences ---------------------------------------------------------------------------------------------------
def mean_filter(x, k: int, w: float) -> tf.Tensor:
    """The weighted k×k mean filter per channel: centre tap w/k² + 1 − w, every other tap w/k², REFLECT padding of
    floor((k−1)/2) before and ceil((k−1)/2) after (for k = 2 the pixel, its right and lower neighbours).
    w = 0 is the identity, w = 1 the plain box filter."""
    x = tf.convert_to_tensor(x, tf.float32)
    before, after = (k - 1) // 2, k // 2
    kernel = np.full((k, k), w / k ** 2, np.float32)
    kernel[before, before] += 1.0 - w
    c = x.shape[-1]
    padded = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]], mode="REFLECT")
    return tf.nn.depthwise_conv2d(padded, tf.constant(np.repeat(kernel[:, :, None, None], c, 2)), [1, 1, 1, 1],
                                  "VALID")


@dataclasses.dataclass(frozen=True)
class MeanFilter:
    k: int = 2
    w: float = 0.2

    def __call__(self, x) -> tf.Tensor:
        return mean_filter(x, self.k, self.w)

    def describe(self) -> str:
        return f"{self.k}×{self.k} mean filter, w = {self.w:g}"


@dataclasses.dataclass(frozen=True)
class PriorDefence:
    """``steps`` of Adam (TF's rule, β 0.9 / 0.999, ε 1e-8) or SGD at ``lr`` on weight·energy(x), from the input.
    ``mask``: a component mask [K] for dropout priors (default: all components, i.e. dropout off)."""
    prior: PatchPrior
    steps: int = 5
    lr: float = 0.6
    weight: float = 1.0
    optimizer: str = "adam"
    mask: np.ndarray | None = None
    test_dropout: bool = False     # a fresh dropout mask at every step (spec §5, §7.2 "test-time dropout on")

    def __post_init__(self):
        if self.test_dropout and (self.prior.config.kind != "dropout" or self.mask is not None):
            raise ValueError("test-time dropout needs a dropout prior and no fixed mask")

    def _mask(self):
        if self.mask is not None:
            return tf.constant(self.mask, tf.float32)
        if self.prior.config.kind == "dropout":       # dropout off inside the defence
            return tf.ones([self.prior.config.components])
        return None

    def _descent(self, x, observe=None, mask=None):
        if self.test_dropout and mask is None:
            return dropout_descent(self.prior, x, steps=self.steps, lr=self.lr, weight=self.weight,
                                   optimizer=self.optimizer, observe=observe)
        return unrolled_descent(self.prior, x, steps=self.steps, lr=self.lr, weight=self.weight,
                                optimizer=self.optimizer, beta1=ADAM_BETA1, beta2=ADAM_BETA2, epsilon=ADAM_EPSILON,
                                mask=self._mask() if mask is None else mask, observe=observe)

    def masked(self, x, mask) -> tf.Tensor:
        """The defence with component mask ``mask`` [K] (a tensor: one traced graph serves every mask)."""
        return self._descent(x, mask=mask)

    def __call__(self, x) -> tf.Tensor:
        return self._descent(x)

    def labels_per_step(self, x, classifier: Classifier) -> tuple[tf.Tensor, tf.Tensor]:
        """(restored x, labels [steps + 1, N]: before the first step and after each)."""
        return self._descent(x, observe=lambda z: tf.argmax(classifier(z), -1))

    def history(self, x, classifier: Classifier) -> tuple[np.ndarray, np.ndarray]:
        """(labels [steps + 1, N], ‖x_t − x‖₂ [steps + 1, N]) before the first step and after each: the labels and
        how far the defence has moved each input (the size of the same-norm noise baseline)."""
        return self.recorder(classifier)(x)

    def recorder(self, classifier: Classifier) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """:meth:`history` as one compiled graph, for many calls (batches; clean and adversarial sets): the
        unrolled loop run eagerly costs ~5× more."""
        def observed(x):
            def observe(z):       # both in one float [N, 2] record (labels < 2²⁴ are exact in float32)
                change = tf.sqrt(tf.reduce_sum(tf.square(z - x), axis=[1, 2, 3]))
                return tf.stack([tf.cast(tf.argmax(classifier(z), -1), tf.float32), change], -1)
            return self._descent(x, observe=observe)[1]
        compiled = tf.function(observed, reduce_retracing=True)

        def record(x) -> tuple[np.ndarray, np.ndarray]:
            seen = compiled(tf.convert_to_tensor(x, tf.float32)).numpy()
            return seen[..., 0].astype(np.int64), seen[..., 1].astype(np.float64)
        return record

    def describe(self) -> str:
        return (f"{self.steps} {self.optimizer} steps at lr {self.lr:g} on the prior"
                + (", test-time dropout (a mask per step)" if self.test_dropout else ""))


def dropout_descent(prior: PatchPrior, x0, *, steps: int, lr: float, weight: float = 1.0, optimizer: str = "adam",
                    observe=None):
    """:func:`~tfrestore.priors.unrolled_descent` with the dropout prior's test-time dropout on: step t (0-based)
    descends the energy under the thesis' mask of that step, ``prior.dropout_mask(dropout_seed(t))`` (TF1's
    seeded dropout op drew a fresh mask at every run of the graph, one per Adam step; spec §5, patch_priors §4.4).
    The same masks for every input of the batch. Returns x, or (x, observations [steps + 1, N]) with
    ``observe``."""
    from tfrestore.optimize import optim
    from tfrestore.priors.model import dropout_seed
    rule = (optim.Adam(ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON, epsilon_form="tf1") if optimizer == "adam"
            else optim.SGD())
    x0 = tf.convert_to_tensor(x0, tf.float32)

    def body(t, x, m, v, seen):
        with tf.GradientTape() as tape:
            tape.watch(x)
            e = weight * tf.reduce_sum(prior.energy(x, mask=prior.dropout_mask(dropout_seed(t))))
        x, slots = rule.update(x, tape.gradient(e, x), {"m": m, "v": v}, lr, False, t)
        return t + 1, x, slots["m"], slots["v"], seen if observe is None else seen.write(t + 1, observe(x))

    seen = (tf.TensorArray(tf.convert_to_tensor(observe(x0)).dtype, size=steps + 1).write(0, observe(x0))
            if observe is not None else tf.constant(0))
    zeros = tf.zeros_like(x0)
    _, x, _, _, seen = tf.while_loop(lambda t, *_: t < steps, body, (tf.constant(0), x0, zeros, zeros, seen))
    return x if observe is None else (x, seen.stack())


def ensemble_masks(prior: PatchPrior, members: int = 10, seed: int = 0) -> np.ndarray:
    """[members, K] fixed keep-0.5 dropout masks (survivors ×2) for a dropout ensemble."""
    return np.stack([prior.dropout_mask(tf.constant([seed, i])).numpy() for i in range(members)])


class Defended:
    """classifier(defence(x)): the model an adaptive attacker differentiates through."""

    def __init__(self, classifier: Classifier, defence: Callable):
        self.classifier, self.defence = classifier, defence
        # one compiled graph (the unrolled loop as a While op, differentiable twice); eager would walk it in Python
        self._fn = tf.function(lambda x: self.classifier(self.defence(x)), reduce_retracing=True)

    def __call__(self, x) -> tf.Tensor:
        return self._fn(tf.convert_to_tensor(x, tf.float32))


class Ensemble:
    """The dropout ensemble: the mean over fixed masks of log-softmax(classifier(defence_m(x)))."""

    def __init__(self, classifier: Classifier, defence: PriorDefence, masks: np.ndarray):
        self.classifier = classifier
        self.members = [dataclasses.replace(defence, mask=m) for m in masks]
        self.masks = tf.constant(np.asarray(masks, np.float32))
        # one compiled member graph, called once per mask: one graph holding all ten unrolled descents takes
        # ~20 s to build and differentiate on the digits net, this one graph ~2 s
        self._member = tf.function(lambda x, mask: tf.nn.log_softmax(self.classifier(defence.masked(x, mask))),
                                   reduce_retracing=True)

    def __call__(self, x) -> tf.Tensor:
        x = tf.convert_to_tensor(x, tf.float32)
        return tf.add_n([self._member(x, self.masks[i]) for i in range(len(self.members))]) / len(self.members)


# ---- attacks ---------------------------------------------------------------------------------------------------
class SourceProbabilityBelow:
    """foolbox criterion: adversarial when the softmax probability of the source label falls below ``p`` (foolbox
    1's ``OriginalClassProbability``; the original never passed ``p``, bug 5)."""

    def __init__(self, labels, p: float):
        import eagerpy as ep
        from foolbox.criteria import Criterion

        class _C(Criterion):
            def __repr__(self):
                return f"SourceProbabilityBelow(p={p})"

            def __call__(self, perturbed, outputs):
                outputs_, restore = ep.astensor_(outputs)
                probs = ep.softmax(outputs_, axis=-1)
                labels_ = ep.astensor(tf.constant(labels, tf.int64))
                return restore(probs[range(len(labels)), labels_] < p)

        self.criterion = _C()


def attack(model: Callable, images: np.ndarray, labels: np.ndarray, setting: AttackSetting | str = "deepfool", *,
           targets: np.ndarray | None = None, steps: int | None = None, epsilons: int | None = None,
           criterion=None, chunk: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Adversarial examples for RGB 0–255 ``images`` [N, H, W, 3] against ``model`` (logits), untargeted away from
    ``labels`` (the clean predictions) or, for ``targeted``, towards ``targets``. Returns (examples, success [N]).

    ``setting``: an :class:`AttackSetting`, :class:`LBFGSSetting`, :class:`SaliencySetting` or a name in
    :data:`ATTACKS`; ``steps`` / ``epsilons`` override an :class:`AttackSetting`'s own. FGSM with ``targets``: one
    step against the sign of the targets' cross-entropy gradient, the smallest ε of the grid reaching the target.
    ``criterion``: a foolbox criterion replacing misclassification (e.g. :class:`SourceProbabilityBelow`).
    Grid attacks try ``chunk`` ε values at a time and stop once every sample is fooled; a sample never fooled gets
    the largest ε's example.
    """
    import foolbox as fb
    if isinstance(setting, str):
        if setting not in ATTACKS:
            raise ValueError(f"unknown attack '{setting}'; valid: {', '.join(ATTACKS)}")
        setting = ATTACKS[setting]
    if isinstance(setting, LBFGSSetting):
        return lbfgs_attack(model, images, labels, setting, targets=targets)
    if isinstance(setting, SaliencySetting):
        return saliency_attack(model, images, labels, setting, targets=targets)[:2]
    setting = dataclasses.replace(setting, steps=steps or setting.steps, epsilons=epsilons or setting.epsilons)
    fmodel = fb.TensorFlowModel(model, bounds=BOUNDS)
    x = tf.constant(np.asarray(images, np.float32))
    if setting.kind == "targeted":
        if targets is None:
            raise ValueError("the targeted attack needs targets")
        crit = fb.criteria.TargetedMisclassification(tf.constant(targets, tf.int64))
    else:
        crit = criterion or fb.criteria.Misclassification(tf.constant(labels, tf.int64))
    if setting.kind == "deepfool":
        att = fb.attacks.L2DeepFoolAttack(steps=setting.steps, candidates=setting.candidates,
                                          overshoot=setting.overshoot)
        _, adv, ok = att(fmodel, x, crit, epsilons=None)
        return adv.numpy(), ok.numpy()
    if setting.kind == "fgsm":
        if targets is not None:
            crit = fb.criteria.TargetedMisclassification(tf.constant(targets, tf.int64))
        tries = _fgsm_tries(model, x, labels if targets is None else targets, crit, toward=targets is not None)
    else:
        # foolbox 1's iterative gradient sign: steps of ε/steps (never leaving the ε-box, so foolbox 3's projection
        # is idle); PGD with foolbox 3's own step and random start
        sign_steps = lambda: fb.attacks.LinfBasicIterativeAttack(steps=setting.steps,                # noqa: E731
                                                                 rel_stepsize=1.0 / setting.steps)
        att = {"itfgsm": sign_steps, "targeted": sign_steps,
               "pgd": lambda: fb.attacks.LinfPGD(steps=setting.steps)}[setting.kind]()

        def tries(eps):
            _, advs, oks = att(fmodel, x, crit, epsilons=eps)
            return [a.numpy() for a in advs], np.asarray([o.numpy() for o in oks])
    return _smallest_successful(tries, setting.grid(), len(images), chunk)


def _fgsm_tries(model, x, labels, crit, toward: bool = False):
    """FGSM along one gradient sign (of the cross-entropy of the clean labels) at any ε: clip(x + ε·sign(∇));
    ``toward``: ``labels`` are targets, clip(x − ε·sign(∇))."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.keras.losses.sparse_categorical_crossentropy(tf.constant(labels, tf.int64),
                                                                                model(x), from_logits=True))
    direction = tf.sign(tape.gradient(loss, x)) * (-1.0 if toward else 1.0)

    def tries(eps):
        advs = [tf.clip_by_value(x + e * direction, *BOUNDS) for e in eps]
        return [a.numpy() for a in advs], np.asarray([crit(a, model(a)).numpy() for a in advs])
    return tries


def _smallest_successful(tries: Callable, grid: list[float], n: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Walk ``grid`` upwards ``chunk`` values at a time (``tries(eps) -> (examples [E] of [N, …], success [E, N])``);
    per sample, the example at the smallest successful ε (else at the largest)."""
    best, found = None, np.zeros(n, bool)
    for at in range(0, len(grid), chunk):
        advs, oks = tries(grid[at:at + chunk])
        for adv, ok in zip(advs, oks):
            best = adv.copy() if best is None else best
            new = ok & ~found
            best[new] = adv[new]
            found |= new
        if found.all():
            break
    if not found.all():
        best[~found] = advs[-1][~found]
    return best, found


# ---- foolbox 1's L-BFGS and saliency-map attacks (foolbox 3 has neither) ----------------------------------------
def _cross_entropy_fn(model: Callable):
    """A compiled (x [N, H, W, C], labels [N]) → (logits [N, classes], CE [N], ∇ₓ ΣCE): foolbox 1's model
    gradient (of the softmax cross-entropy towards ``labels``)."""
    @tf.function(reduce_retracing=True)
    def fn(x, labels):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model(x)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            total = tf.reduce_sum(ce)
        return logits, ce, tape.gradient(total, x)
    return fn


def gradient_attack_targets(model: Callable, images: np.ndarray, labels: np.ndarray, epsilons: int = 1000,
                            batch: int = 256) -> np.ndarray:
    """[N] the class foolbox 1's ``GradientAttack`` reaches: how its L-BFGS and saliency attacks choose a target
    when ``num_random_targets`` is 0. Along the gradient of the clean label's cross-entropy scaled to RMS 255 (the
    pixel range), the label at the smallest ε of k/``epsilons``, k = 1 … ``epsilons``, that is not ``labels``;
    found among the first 20, the search repeats on 20 steps up to that ε (foolbox 1's ``decrease_if_first``).
    Never misclassified (foolbox 1 then drew a random target): the clean image's second most likely class."""
    x = tf.constant(np.asarray(images, np.float32))
    labels = np.asarray(labels, np.int64)
    logits, _, g = _cross_entropy_fn(model)(x, tf.constant(labels))
    rms = tf.sqrt(tf.reduce_mean(tf.square(g), axis=list(range(1, x.shape.rank)), keepdims=True))
    d = g / (rms + 1e-8) * (BOUNDS[1] - BOUNDS[0])

    @tf.function(reduce_retracing=True)
    def along(xs, ds, eps):                # labels [E, n] of clip(xs + ε·ds), every ε in one batch
        z = tf.clip_by_value(xs[None] + tf.reshape(eps, [-1, 1, 1, 1, 1]) * ds[None], *BOUNDS)
        lab = tf.argmax(model(tf.reshape(z, tf.concat([[-1], tf.shape(xs)[1:]], 0))), -1)
        return tf.reshape(lab, [tf.shape(eps)[0], tf.shape(xs)[0]])

    def first_fooled(xs, ds, src, eps):    # (index of the first misclassifying ε or −1, its label) per sample
        lab = along(xs, ds, tf.constant(eps, tf.float32)).numpy()
        fooled = lab != src[None]
        first = fooled.argmax(0)
        return np.where(fooled.any(0), first, -1), lab[first, np.arange(len(src))]

    grid = np.linspace(0, 1, epsilons + 1)[1:]
    at, target = np.full(len(labels), -1), np.argsort(np.asarray(logits), -1)[:, -2]
    chunk = max(1, batch // len(labels))               # ε values per forward pass of ≤ ``batch`` images
    for start in range(0, len(grid), chunk):
        todo = np.flatnonzero(at < 0)
        i, lab = first_fooled(tf.gather(x, todo), tf.gather(d, todo), labels[todo], grid[start:start + chunk])
        hit = i >= 0
        at[todo[hit]], target[todo[hit]] = start + i[hit], lab[hit]
        if (at >= 0).all():
            break
    for j in np.flatnonzero((at >= 0) & (at < 20)):
        i, lab = first_fooled(x[j:j + 1], d[j:j + 1], labels[j:j + 1], np.linspace(0, grid[at[j]], 21)[1:])
        target[j] = lab[0] if i[0] >= 0 else target[j]
    return target


def lbfgs_attack(model: Callable, images: np.ndarray, labels: np.ndarray, setting: LBFGSSetting = LBFGSSetting(),
                 *, targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:class:`LBFGSSetting`'s attack on each of ``images`` [N, H, W, C] (RGB 0–255) towards ``targets`` [N]
    (default: :func:`gradient_attack_targets` away from ``labels``). Returns (examples, success [N]); a failed
    sample keeps its image. One SciPy L-BFGS-B run per image and c (its loss and gradient one compiled call)."""
    images = np.asarray(images, np.float32)
    if targets is None:
        targets = gradient_attack_targets(model, images, labels)
    fn = _cross_entropy_fn(model)
    out, ok = images.copy(), np.zeros(len(images), bool)
    for i in range(len(images)):
        found = _lbfgs_one(fn, images[i], int(targets[i]), setting)
        if found is not None:
            out[i], ok[i] = found, True
    return out, ok


def _lbfgs_one(fn, image: np.ndarray, target: int, setting: LBFGSSetting) -> np.ndarray | None:
    """foolbox 1's ``LBFGSAttack._optimize`` for one image: the closest in-bounds point labelled ``target`` seen
    while c doubles from 2ε and is then bisected to ε (None if none)."""
    import scipy.optimize as so
    lo, hi = BOUNDS
    span, shape = hi - lo, image.shape
    x0 = image.astype(np.float64).ravel()
    n, tgt = x0.size, tf.constant([target], tf.int64)
    best = {"d": np.inf, "x": None}

    def evaluate(xf):      # (d, ∇d, CE, ∇CE, hit); every in-bounds point labelled the target counts
        logits, ce, g = fn(tf.constant(xf.reshape(1, *shape), tf.float32), tgt)
        d = float(np.sum((xf - x0) ** 2)) / (n * span ** 2)        # foolbox 1's MeanSquaredDistance
        hit = int(np.argmax(logits[0])) == target
        if hit and lo <= xf.min() and xf.max() <= hi and d < best["d"]:
            best.update(d=d, x=xf.copy())
        return d, 2 * (xf - x0) / (n * span ** 2), float(ce[0]), g.numpy().ravel().astype(np.float64), hit

    def loss(xf, c):       # ×1e10 as foolbox 1 (it sets the scale L-BFGS-B's tolerances see)
        d, gd, ce, gce, _ = evaluate(xf)
        return 1e10 * (d + c * ce), 1e10 * (gd + c * gce)

    def adversarial_at(c) -> bool:
        xf, _, _ = so.fmin_l_bfgs_b(loss, x0, args=(c,), bounds=[(lo, hi)] * n, m=setting.memory,
                                    maxiter=setting.maxiter)
        return evaluate(np.clip(xf, lo, hi))[4]

    c = setting.epsilon
    for _ in range(setting.doublings):
        c *= 2
        if adversarial_at(c):
            break
    else:
        return None if best["x"] is None else best["x"].reshape(shape).astype(np.float32)
    c_low, c_high = 0.0, c
    while c_high - c_low >= setting.epsilon:
        c_half = (c_low + c_high) / 2
        if adversarial_at(c_half):
            c_high = c_half
        else:
            c_low = c_half
    return best["x"].reshape(shape).astype(np.float32)


def saliency_attack(model: Callable, images: np.ndarray, labels: np.ndarray,
                    setting: SaliencySetting = SaliencySetting(), *,
                    targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:class:`SaliencySetting`'s attack on ``images`` [N, H, W, C] (RGB 0–255), untargeted away from ``labels``
    (stopping at the first misclassification, foolbox 1's criterion) towards ``targets`` (default:
    :func:`gradient_attack_targets`). Returns (examples, success [N], changes per element [N, H, W, C] (ints),
    steps taken [N]); one compiled loop over the batch, a sample frozen once misclassified."""
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int64)
    if targets is None:
        targets = gradient_attack_targets(model, images, labels)
    fn = _cross_entropy_fn(model)
    step_size = setting.theta * (BOUNDS[1] - BOUNDS[0])
    lo, hi = BOUNDS
    n = len(images)

    @tf.function
    def run(x, src, tgt):
        flat = tf.reshape(x, [n, -1])

        def body(t, p, mask, counts, steps, going):
            logits, _, g = fn(tf.reshape(p, tf.shape(x)), tgt)
            # not yet misclassified (and steps left): take a step
            active = (tf.argmax(logits, -1) == src) & (t < setting.max_iter)
            alpha = tf.reshape(g, [n, -1]) * mask
            idx = tf.argmin(-alpha, axis=-1, output_type=tf.int32)    # salience −α (fast: β = −1)
            hot = tf.one_hot(idx, tf.shape(p)[1]) * tf.cast(active, tf.float32)[:, None]
            p = p - hot * tf.sign(alpha) * step_size
            counts = counts + hot
            off = (hot > 0) & ((p <= lo) | (p >= hi) | (counts >= setting.max_perturbations_per_pixel))
            mask = tf.where(off, 0.0, mask)
            return (t + 1, tf.clip_by_value(p, lo, hi), mask, counts, steps + tf.cast(active, tf.int32),
                    tf.reduce_any(active))

        def go_on(t, p, mask, counts, steps, going):    # one last pass finds every sample misclassified
            return (t <= setting.max_iter) & going

        init = (tf.constant(0), flat, tf.ones_like(flat), tf.zeros_like(flat), tf.zeros([n], tf.int32),
                tf.constant(True))
        _, p, _, counts, steps, _ = tf.while_loop(go_on, body, init)
        return tf.reshape(p, tf.shape(x)), tf.reshape(counts, tf.shape(x)), steps

    adv, counts, steps = run(tf.constant(images), tf.constant(labels), tf.constant(np.asarray(targets, np.int64)))
    adv = adv.numpy()
    ok = np.argmax(np.asarray(model(adv)), -1) != labels
    return adv, ok, counts.numpy().astype(np.int64), steps.numpy()


# ---- example files ---------------------------------------------------------------------------------------------
_NAME = re.compile(r"^(?P<stem>.+)_t(?P<src>\d+)_f(?P<fooled>\d+)$")


def example_folder(root: str | Path, attack_kind: str, kind: str = "oblivious") -> Path:
    return Path(root) / f"{attack_kind}_{kind}"


def save_example(folder: str | Path, stem: str, image: np.ndarray, src: int, fooled: int) -> Path:
    """``{folder}/{stem}_t{src}_f{fooled}.npy`` (float32 RGB 0–255), written atomically."""
    return files.save_npy(Path(folder) / f"{stem}_t{int(src)}_f{int(fooled)}.npy", np.asarray(image, np.float32))


def load_examples(folder: str | Path) -> dict[str, tuple[np.ndarray, int, int]]:
    """``{stem: (image, src, fooled)}`` for every example file in ``folder``."""
    out = {}
    for f in sorted(Path(folder).glob("*.npy")):
        m = _NAME.match(f.stem)
        if m:
            out[m["stem"]] = (np.load(f), int(m["src"]), int(m["fooled"]))
    return out


# ---- statistics ------------------------------------------------------------------------------------------------
def stability_statistics(image_labels: np.ndarray, adversarial_labels: np.ndarray, src: np.ndarray) -> dict:
    """Spec §3's table from label histories [P, n + 1] (column 0 before any step) of the clean images and their
    adversarials, and the source labels [P]. Series per step t = 1 … n: ``changes_images`` /
    ``changes_adversarials`` (labels that differ from step t − 1), ``first_changes_images`` /
    ``first_changes_adversarials`` (samples whose label first changes at t), ``first_returns`` (adversarials
    first labelled src at t); per t = 0 … n: ``preserved`` (clean images labelled src), ``restored``
    (adversarials labelled src)."""
    img, adv, src = np.asarray(image_labels), np.asarray(adversarial_labels), np.asarray(src)[:, None]
    n = img.shape[1] - 1

    def changes(h):
        return (h[:, 1:] != h[:, :-1]).sum(0)

    def first(events):          # events [P, n] bool → count of samples whose first event is at each step
        has = events.any(1)
        idx = events.argmax(1)
        return np.bincount(idx[has], minlength=n)[:n]

    return {"steps": n, "pairs": len(src),
            "changes_images": changes(img).tolist(), "changes_adversarials": changes(adv).tolist(),
            "first_changes_images": first(img[:, 1:] != img[:, :1]).tolist(),
            "first_changes_adversarials": first(adv[:, 1:] != adv[:, :1]).tolist(),
            "first_returns": first(adv[:, 1:] == src).tolist(),
            "preserved": (img == src).sum(0).tolist(), "restored": (adv == src).sum(0).tolist()}


def adaptive_summary(oblivious: np.ndarray, adaptive: np.ndarray, src_invariant: np.ndarray | None = None,
                     bins: int = 20) -> dict:
    """``read_adaptive_log``: per-sample L2 norms of (image − oblivious example) and (image − adaptive example),
    ``inf`` where no adversarial was found and ``−inf`` where the attack raised. Counts, means, adaptive max / min,
    mean and median of the difference (adaptive − oblivious) and ratio, how many adaptive norms are larger /
    smaller, and log-binned histograms — over the samples where both attacks succeeded."""
    ob, ad = np.asarray(oblivious, np.float64), np.asarray(adaptive, np.float64)
    ok = np.isfinite(ob) & np.isfinite(ad) & (ob > 0) & (ad > 0)
    o, a = ob[ok], ad[ok]
    out = {"samples": int(len(ad)), "failed": int(np.sum(ad == np.inf)), "errors": int(np.sum(ad == -np.inf)),
           "successful": int(np.sum(np.isfinite(ad))), "compared": int(ok.sum())}
    if src_invariant is not None:
        out["correct_with_defence"] = int(np.sum(src_invariant))
    if ok.any():
        diff, ratio = a - o, a / o
        lo, hi = min(o.min(), a.min()), max(o.max(), a.max())
        edges = np.logspace(np.log10(lo), np.log10(hi), bins + 1)
        edges[0], edges[-1] = lo, hi              # exactly: the rounding of 10^log10 would drop the extremes
        out.update({"mean_oblivious": float(o.mean()), "mean_adaptive": float(a.mean()),
                    "max_adaptive": float(a.max()), "min_adaptive": float(a.min()),
                    "diff_mean": float(diff.mean()), "diff_median": float(np.median(diff)),
                    "ratio_mean": float(ratio.mean()), "ratio_median": float(np.median(ratio)),
                    "adaptive_larger": int(np.sum(a > o)), "adaptive_smaller": int(np.sum(a < o)),
                    "histogram_edges": edges.tolist(), "histogram_oblivious": np.histogram(o, edges)[0].tolist(),
                    "histogram_adaptive": np.histogram(a, edges)[0].tolist()})
    return out


def l2_norms(images: np.ndarray, examples: np.ndarray, success: np.ndarray) -> np.ndarray:
    """‖image − example‖₂ per sample, ``inf`` where the attack failed."""
    d = np.sqrt(((np.asarray(examples, np.float64) - images) ** 2).reshape(len(images), -1).sum(1))
    return np.where(success, d, np.inf)


# ---- the same-norm noise baseline ------------------------------------------------------------------------------
def same_norm_noise(images: np.ndarray, norms: np.ndarray, seed: int = NOISE_SEED, first: int = 0) -> np.ndarray:
    """``images`` [N, H, W, C] plus a random perturbation of L2 norm ``norms`` [N] each (0–255 units): a Gaussian
    direction per sample (sample i's seeded by (seed, first + i)), scaled. ``norms`` [N, T] gives
    [N, T, H, W, C]: the same direction at each norm. Not clipped to the pixel bounds, like the prior defence's own
    output. The baseline a restoration must beat: a change as large as the defence's that knows nothing of images."""
    x = np.asarray(images, np.float64)
    norms = np.asarray(norms, np.float64)
    out = np.empty(norms.shape + x.shape[1:], np.float32)
    for i in range(len(x)):
        u = np.random.default_rng([seed, first + i]).standard_normal(x.shape[1:])
        u /= np.sqrt(np.sum(u ** 2))
        out[i] = x[i] + norms[i].reshape(*norms.shape[1:], *[1] * u.ndim) * u
    return out


def noise_labels(classifier: Callable, images: np.ndarray, norms: np.ndarray, seed: int = NOISE_SEED,
                 batch: int = 256) -> np.ndarray:
    """Labels [N, T] of ``same_norm_noise(images, norms, seed)`` for norms [N, T] (e.g. the defence's change after
    each step: the noise baseline's label history), ``batch`` images at a time."""
    norms = np.asarray(norms, np.float64)
    per = max(1, batch // norms.shape[1])                   # samples per block
    out = []
    for at in range(0, len(images), per):
        noisy = same_norm_noise(images[at:at + per], norms[at:at + per], seed, first=at)
        out.append(np.argmax(np.asarray(classifier(noisy.reshape(-1, *noisy.shape[2:]))), -1)
                   .reshape(noisy.shape[:2]))
    return np.concatenate(out)
