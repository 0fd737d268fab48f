"""Adversarial restoration with learned priors (Harder's thesis, last chapter; spec ``adversarial.md``).

- :class:`Classifier`: a tfrestore net on RGB 0–255 images, classifying from its registry ``logits`` layer (``fc8``
  for the ImageNet nets — never the softmax of a ReLU, the original's bug 7).
- Attacks from foolbox 3 (:func:`attack`): L2 DeepFool, FGSM and iterative FGSM / PGD as minimal-perturbation
  searches over an ε grid (foolbox 1's line search), and a targeted iterative FGSM; bounds (0, 255).
- Defences (differentiable maps RGB → RGB): :class:`PriorDefence` (n unrolled Adam / SGD steps on the weighted
  prior energy alone, each input with its own optimiser state; dropout priors with dropout off unless masks are
  given) and :class:`MeanFilter` (the weighted mean-filter baseline). :class:`Defended` and :class:`Ensemble`
  put a classifier behind them; attacking those is the adaptive (white-box) attack.
- Statistics: :func:`stability_statistics` (spec §3) and :func:`adaptive_summary` (``read_adaptive_log``).
- Example files: ``{folder}/{attack}_{kind}/{stem}_t{src}_f{fooled}.npy`` (float RGB 0–255), reused by later runs.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from . import files, nets
from .priors import PatchPrior, unrolled_descent

BOUNDS = (0.0, 255.0)
DEEPFOOL_STEPS, DEEPFOOL_CANDIDATES = 300, 10      # oblivious examples (spec §2); "subsample 10"
ADAPTIVE_DEEPFOOL_STEPS = 100                      # the notes' DeepFool setting, now passed explicitly (bug 4)
EPSILON_GRID = 100                                 # FGSM line search: ε = k/100 · 255, smallest successful kept
ITERATIVE_STEPS, TARGETED_STEPS = 10, 50


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

    def _mask(self):
        if self.mask is not None:
            return tf.constant(self.mask, tf.float32)
        if self.prior.config.kind == "dropout":       # dropout off inside the defence
            return tf.ones([self.prior.config.components])
        return None

    def __call__(self, x) -> tf.Tensor:
        return unrolled_descent(self.prior, x, steps=self.steps, lr=self.lr, weight=self.weight,
                                optimizer=self.optimizer, mask=self._mask())

    def labels_per_step(self, x, classifier: Classifier) -> tuple[tf.Tensor, tf.Tensor]:
        """(restored x, labels [steps + 1, N]: before the first step and after each)."""
        return unrolled_descent(self.prior, x, steps=self.steps, lr=self.lr, weight=self.weight,
                                optimizer=self.optimizer, mask=self._mask(),
                                observe=lambda z: tf.argmax(classifier(z), -1))

    def describe(self) -> str:
        return f"{self.steps} {self.optimizer} steps at lr {self.lr:g} on the prior"


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

        self._fn = tf.function(lambda x: tf.add_n([tf.nn.log_softmax(self.classifier(m(x)))
                                                    for m in self.members]) / len(self.members),
                               reduce_retracing=True)

    def __call__(self, x) -> tf.Tensor:
        return self._fn(tf.convert_to_tensor(x, tf.float32))


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


ATTACKS = ("deepfool", "fgsm", "itfgsm", "pgd", "targeted")


def attack(model: Callable, images: np.ndarray, labels: np.ndarray, kind: str = "deepfool", *,
           targets: np.ndarray | None = None, steps: int | None = None, criterion=None,
           epsilons: int = EPSILON_GRID) -> tuple[np.ndarray, np.ndarray]:
    """Adversarial examples for RGB 0–255 ``images`` [N, H, W, 3] against ``model`` (logits), untargeted away from
    ``labels`` (the clean predictions) or, for ``"targeted"``, towards ``targets``. Returns (examples, success [N]).

    ``deepfool``: L2 DeepFool (``steps``, default 300; 10 candidate classes; overshoot 0.02). ``fgsm`` /
    ``itfgsm`` (10 steps) / ``pgd`` (L∞, 40 steps, random start): the smallest successful ε of a grid of
    ``epsilons`` values k/epsilons · 255. ``targeted``: iterative FGSM towards ``targets`` (50 steps) on the grid.
    """
    import foolbox as fb
    if kind not in ATTACKS:
        raise ValueError(f"unknown attack '{kind}'; valid: {', '.join(ATTACKS)}")
    fmodel = fb.TensorFlowModel(model, bounds=BOUNDS)
    x = tf.constant(np.asarray(images, np.float32))
    if kind == "targeted":
        if targets is None:
            raise ValueError("the targeted attack needs targets")
        crit = fb.criteria.TargetedMisclassification(tf.constant(targets, tf.int64))
    else:
        crit = criterion or fb.criteria.Misclassification(tf.constant(labels, tf.int64))
    if kind == "deepfool":
        att = fb.attacks.L2DeepFoolAttack(steps=steps or DEEPFOOL_STEPS, candidates=DEEPFOOL_CANDIDATES)
        _, adv, ok = att(fmodel, x, crit, epsilons=None)
        return adv.numpy(), ok.numpy()
    att = {"fgsm": lambda: fb.attacks.FGSM(),
           "itfgsm": lambda: fb.attacks.LinfBasicIterativeAttack(steps=steps or ITERATIVE_STEPS),
           "pgd": lambda: fb.attacks.LinfPGD(steps=steps or 40),
           "targeted": lambda: fb.attacks.LinfBasicIterativeAttack(steps=steps or TARGETED_STEPS)}[kind]()
    grid = [BOUNDS[1] * k / epsilons for k in range(1, epsilons + 1)]
    _, advs, oks = att(fmodel, x, crit, epsilons=grid)
    oks = np.asarray([o.numpy() for o in oks])                          # [E, N]
    first = np.where(oks.any(0), oks.argmax(0), len(grid) - 1)          # the smallest successful ε per sample
    out = np.stack([advs[e].numpy()[i] for i, e in enumerate(first)])
    return out, oks.any(0)


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
