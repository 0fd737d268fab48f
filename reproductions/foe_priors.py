"""Harder's thesis, "Fields of Experts for network inversion": learned patch priors as inversion regularisers
(``frhrdr/deep_restoration``; spec ``patch_priors.md`` §5–§8, scores ``evaluation_protocols.md`` §4).

Experiments:
- ``image_rec`` (default): every layer inverted in two phases — pure feature MSE, then MSE + the prior (default
  ``full512``) from that result with a fresh Adam state — beside M&V 2016 on the same image and total budget. The
  thesis engine: Adam (TF1, ε 1e-8) at a constant lr (AlexNet 1.0 / VGG16 0.3), gradients clipped at 1e4, jitter
  per layer on for the first ``jitter_steps`` of each phase (AlexNet 3,200 of 5,000 + 5,000: off at 3,200 and
  8,200; VGG16 6,900 of 10,000 + 15,000: off at 6,900 and 16,900), initial image N(114.8, 1.1) clipped to
  [100, 155]. A layer's reported reconstruction is its iterate at the thesis' chosen step (VGG16: pools 25k, fc6
  21k, fc7 and fc8 23k, counted from the start of the MSE phase; otherwise the end), recorded as ``result_step``.
  Scores per layer: MSE, NMSE (Σ(t − r)²/Σ(t·r)) and the Gram/VGG score, on the reconstructions clipped to
  [0, 255], with the thesis' recorded ``full512`` numbers beside ours.
- ``featmap_inv``: the conv1/lin map itself is the variable (from N(0, 0.1)), matched through conv2/lin (MSE), then
  regularised by a feature-map prior (default ``fullc1l6000``): 10,000 + 10,000 Adam steps at lr 1.0.
- ``legacy_c2_to_c1``: the thesis' normalised MSE Σ(t − r)²/Σ(t·r) on conv2/lin, conv1/lin optimised directly with
  each regulariser of the thesis' comparison (none, TV, 3×3 slim, channel-wise, both, 8×8 full), Adam lr 0.3 for
  500 steps and a restart for 19,500.
- ``train``: train (or continue training) a catalogue prior (``--prior``, ``--data``, ``--steps``, ``--overwrite``).
- ``feature_stats``: per-layer feature statistics over the first 200 images of ``--data`` (default: the embedded
  photos; evaluation_protocols §4.4): channel mean / sdev, L2 norm and Gini index per image, average Gram matrix,
  channel covariance and its pseudo-inverse (rank stated), beside the thesis diary's sdev ranges.

``--steps`` rescales a run: every phase, the jitter-on length and the result steps by the same factor (at least
one step per phase). ``--optimizer=lbfgs`` runs every phase of the three inversions with L-BFGS instead of the
thesis engine's Adam (its other optimiser, mv2016.md §9.2: SciPy's L-BFGS-B with maxiter = the iterations, no
jitter): a step is one L-BFGS iteration, memory 10 pairs and gradient tolerance 1e-5 (SciPy's defaults, which the
thesis left unchanged), no gradient clipping; tfrestore restarts it every ``LBFGS_RESTART`` iterations (its log
points and checkpoints), which drops the curvature memory there. The M&V 2016 comparison of ``image_rec`` keeps
M&V's own optimiser. Priors come from the artifact store (``$TFRESTORE_HOME/prior/<net>/<name>/<digest>/``, keyed by
data, steps and seed) and are trained there first when missing (``--data`` for your own images; ``--prior_steps``
picks or trains a prior of that length; without it any stored length is used, named in one line). ``train``
reuses a stored prior of its settings unless ``--overwrite``. A dropout prior with test-time
dropout draws the thesis' seeded mask afresh at every optimisation step (seed (42, step)). Differences from the
thesis: jitter is M&V 2016's canvas jitter with T = t + 1 offsets (the thesis zero-padded and cropped); the VGG
score uses tfrestore's VGG16 (relu1_1 … relu5_1) where the thesis used VGG19.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from tfrestore.optimize import callbacks
from tfrestore.measure import metrics
from tfrestore import nets
from tfrestore.core import report
from tfrestore.core.loop import TensorBoard
from tfrestore.measure import feature_stats as fstats
from tfrestore.optimize import objectives as O
from tfrestore.optimize import optim as optimizers
from tfrestore.optimize import param, transforms
from tfrestore.data import image_folder, load_image, sample_image_names
from tfrestore.optimize.engine import Optimization, Problem
from tfrestore.optimize.inversion import (evaluate, feature_objective, image_space, outputs, table,
                                         vgg16_gram_features)
from tfrestore.priors import PriorTerm, catalogue

from . import common, mv2016, paper

DESCRIPTION = "thesis FoE / ICA patch priors: prior-regularised inversion vs pure MSE vs M&V 2016; prior training"
NETS = ("alexnet", "vgg16")

# The thesis engine (NetInversion.train_pre_featmap, spec §7.1 and mv2016.md §9.2).
GRAD_CLIP = 1e4                                    # gradients clipped by value
INIT_MEAN, INIT_STD, INIT_RANGE = 114.8, 1.1, (100.0, 155.0)     # image init N(114.8, 1.1) clipped, RGB 0–255
ADAM_EPSILON = 1e-8                                # TF1's AdamOptimizer default (ε inside the bias correction)
# --optimizer: the thesis engine's Adam, or its L-BFGS-B (mv2016.md §9.2: maxiter = the iterations, no jitter) with
# SciPy's defaults, which the thesis left as they were: 10 correction pairs (maxcor), gradient tolerance 1e-5 (gtol).
OPTIMIZERS = ("adam", "lbfgs")
LBFGS_MEMORY, LBFGS_GTOL = 10, 1e-5
LBFGS_RESTART = 100                                # tfrestore's: log points / checkpoints, where the memory restarts
INVERSIONS = ("image_rec", "featmap_inv", "legacy_c2_to_c1")     # the experiments --optimizer applies to


# The thesis' data terms as FeatureLoss options: MSELoss (the mean squared error) and NormedMSELoss Σ(t − r)²/Σ(t·r)
DATA_TERMS = {"mse": dict(normalise=False, mean=True), "normed_dot": dict(normalise="dot", mean=False)}


@dataclasses.dataclass(frozen=True)
class ImageRec:
    """One net's two-phase image reconstruction (spec §7.1)."""
    lr: float                          # Adam, constant in both phases; data term: DATA_TERMS[data_term]
    phase_steps: tuple[int, int]       # (pure MSE, MSE + prior); each phase starts with a fresh Adam state
    jitter_steps: int                  # jitter is on for the first jitter_steps of each phase
    result_steps: dict                 # layer -> the step (counted from the MSE phase's start) of its reported
    #                                    reconstruction; layers not listed: the last step
    data_term: str = "mse"             # MSELoss on the layer (weight 1)


_VGG_RESULT_STEPS = {**{f"pool{b}": 25000 for b in range(1, 6)}, "fc6": 21000, "fc7": 23000, "fc8": 23000}
IMAGE_REC = {"alexnet": ImageRec(lr=1.0, phase_steps=(5000, 5000), jitter_steps=3200, result_steps={}),  # rec_10000
             "vgg16": ImageRec(lr=0.3, phase_steps=(10000, 15000), jitter_steps=6900,
                               result_steps=_VGG_RESULT_STEPS)}

# get_imagerec_jitter_and_prior_weight: per-layer prior weight and jitter t (offsets 0…t).
ALEX_WEIGHT = {"conv1": 1e-6, "relu1": 1e-4, "norm1": 3e-4, "pool1": 1e-3, "conv2": 3e-3, "relu2": 3e-3,
               "norm2": 3e-3, "pool2": 1e-3, "conv3": 1e-3, "relu3": 1e-3}            # later layers: 1e-4
ALEX_JITTER = {"conv1": 0, "relu1": 0, "norm1": 1, "pool1": 2, "conv2": 2, "relu2": 2, "norm2": 2}  # pool2…relu5: 4
VGG_JITTER_BY_BLOCK = {1: 0, 2: 0, 3: 1, 4: 2, 5: 4}                   # pool_b uses block b + 1's; pool5 on: 8
VGG_WEIGHT, VGG_POOL_WEIGHT = 1e-4, 1e-3                               # conv, relu, fc, prob: 1e-4; pool1–5: 1e-3
DEFAULT_LAYERS = {"alexnet": ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"),
                  "vgg16": ("pool1", "pool2", "pool3", "pool4", "pool5", "fc6", "fc7", "fc8")}

# Recorded full512 image reconstructions, AlexNet, mean over the thesis' subset10 images (spec §8.1), and the
# thesis M&V 2016 benchmark's VGG scores (mv2016.md §9.7).
RECORDED_FULL512 = {"alexnet": {
    "conv1": (9.5155e-6, 2.7856, 2.2975e-4), "conv2": (0.21567, 543.155, 0.044630),
    "conv3": (0.37127, 923.226, 0.073392), "conv4": (0.43931, 1334.41, 0.10048),
    "conv5": (0.59910, 2317.36, 0.17614), "fc6": (0.84566, 4882.86, 0.40931),
    "fc7": (0.93710, 5157.54, 0.43728), "fc8": (0.95888, 5241.95, 0.44052)}}         # (VGG score, MSE, NMSE)
RECORDED_MV2016_VGG = {"alexnet": {"conv1": 0.1800, "conv2": 0.4450, "conv3": 0.5295, "conv4": 0.6470,
                                   "conv5": 0.7292}}


@dataclasses.dataclass(frozen=True)
class MapInversion:
    """A feature map as the variable (spec §7.2, §7.3): the ``target`` map from N(0, init_std), matched through
    ``match`` by the data term, Adam at ``lr`` through ``phases`` (each with a fresh Adam state); the prior joins
    from phase ``prior_from`` on."""
    match: str
    target: str
    phases: tuple[int, ...]
    lr: float
    init_std: float
    data_term: str                     # "mse": mean squared error; "normed_dot": Σ(t − r)²/Σ(t·r) (NormedMSELoss)
    prior_from: int


FEATMAP_INV = MapInversion(match="conv2", target="conv1", phases=(10000, 10000), lr=1.0, init_std=0.1,
                           data_term="mse", prior_from=1)
LEGACY = MapInversion(match="conv2", target="conv1", phases=(500, 19500), lr=0.3, init_std=0.1,
                      data_term="normed_dot", prior_from=0)
# (label, ((catalogue prior, weight or None for the catalogue's), …)) — spec §7.3
LEGACY_VARIANTS = (("none", ()), ("TV β2 1e-9", (("tv_prior", 1e-9),)), ("slim 3×3", (("slimc1l2000", 1e-9),)),
                   ("channel", (("chanpriorc1l150", None),)),
                   ("slim + channel", (("slimc1l2000", 1e-9), ("chanpriorc1l150", None))),
                   ("full 8×8", (("fullc1l6000", 1e-10),)))


def prior_weight(net: str, layer: str) -> float:
    """The thesis' prior weight of a layer (get_imagerec_jitter_and_prior_weight)."""
    if nets.spec(net).family == "alexnet":
        return ALEX_WEIGHT.get(layer, 1e-4)
    return VGG_POOL_WEIGHT if layer.startswith("pool") else VGG_WEIGHT


def jitter_t(net: str, layer: str) -> int:
    """The thesis' jitter t (offsets 0…t) of a layer: 8 from pool5 on."""
    order = nets.spec(net).matconvnet_order
    if order.index(layer) >= order.index("pool5"):
        return 8
    if nets.spec(net).family == "alexnet":
        return ALEX_JITTER.get(layer, 4)                    # pool2 … conv5/relu: 4
    block = int(layer[4])                                   # conv{b}_{i}, relu{b}_{i}, pool{b}
    return VGG_JITTER_BY_BLOCK[block + 1 if layer.startswith("pool") else block]


def thesis_init(n: int, size: int, net: str, seed: int) -> np.ndarray:
    """N(114.8, 1.1) clipped to [100, 155] in RGB, as image space."""
    x = np.random.default_rng(seed).normal(INIT_MEAN, INIT_STD, (n, size, size, 3)).clip(*INIT_RANGE)
    return (x - nets.mean_rgb(net)).astype(np.float32)


def thesis_adam() -> optimizers.Adam:
    """The thesis engine's optimiser: TF1's Adam (ε 1e-8), gradients clipped by value at 1e4."""
    return optimizers.Adam(epsilon=ADAM_EPSILON, epsilon_form="tf1", clip_value=GRAD_CLIP)


def inversion_optimizer(name: str | None) -> optimizers.Optimizer:
    """``--optimizer``: None or "adam" → :func:`thesis_adam`; "lbfgs" → the engine's batched L-BFGS (each problem
    its own; one step = one iteration; learning rates and jitter are not used) with SciPy's L-BFGS-B defaults."""
    if name in (None, "adam"):
        return thesis_adam()
    if name == "lbfgs":
        return optimizers.LBFGS(num_correction_pairs=LBFGS_MEMORY, restart_every=LBFGS_RESTART, tolerance=LBFGS_GTOL)
    raise ValueError(f"unknown --optimizer={name!r} for foe_priors; valid: {', '.join(OPTIMIZERS)}")


def scaled_phases(phases: Sequence[int], steps: int | None) -> tuple[int, ...]:
    """The phases' step counts stretched or squeezed to ``steps`` in total (each phase ≥ 1 step)."""
    if steps is None:
        return tuple(phases)
    if steps < len(phases):
        raise ValueError(f"--steps={steps} is too few for {len(phases)} phases: give at least {len(phases)}")
    ends = np.round(np.cumsum(phases) * steps / sum(phases)).astype(int)
    ends = np.maximum(ends, np.arange(1, len(phases) + 1))                          # every phase at least 1 step
    ends = np.minimum(ends, steps - np.arange(len(phases) - 1, -1, -1))
    return tuple(int(e) for e in np.diff(np.concatenate([[0], ends])))


@dataclasses.dataclass(frozen=True)
class Plan:
    """An image reconstruction's step counts after ``--steps``: the phases, the jitter-on steps of each phase and
    each layer's result step (counted from the MSE phase's start)."""
    phase_steps: tuple[int, int]
    jitter_steps: tuple[int, int]
    result_steps: tuple[int, ...]


def image_rec_plan(net: str, layers: Sequence[str], steps: int | None = None) -> Plan:
    """The thesis schedule of ``net`` (``IMAGE_REC``), rescaled to ``steps`` by one factor (spec §7.1)."""
    s = IMAGE_REC[net]
    total = sum(s.phase_steps)
    phases = scaled_phases(s.phase_steps, steps)
    f = 1.0 if steps is None else steps / total
    jitter = tuple(min(p, max(1, int(round(s.jitter_steps * f)))) for p in phases)
    results = tuple(min(sum(phases), max(phases[0] + 1, int(round(s.result_steps.get(l, total) * f))))
                    for l in layers)
    return Plan(phases, jitter, results)


def phase_schedule(lr: float, steps: int, jitter_steps: int) -> optimizers.Schedule:
    """One phase: Adam at a constant ``lr``, jitter on for the first ``jitter_steps`` of its ``steps``."""
    stages = [optimizers.Stage(jitter_steps, lr, jitter=True)]
    if steps > jitter_steps:
        stages.append(optimizers.Stage(steps - jitter_steps, lr, jitter=False))
    return optimizers.Schedule(stages)


# ---- image reconstruction ---------------------------------------------------------------------------------------

class ResultSteps(callbacks.Callback):
    """Each problem's reported reconstruction is its iterate at its own step (the thesis' chosen checkpoints,
    spec §7.1), not necessarily the last. The iterates are kept at those steps (checkpointed with the run, so a
    resumed run keeps them) and become the result's images at the end; a problem whose step was not reached
    (an interrupted run) keeps its last iterate. ``steps``: one per problem, counted within this run (1…total).

    The steps must be log points: :meth:`log_steps` names them and the loop adds them."""

    def __init__(self, steps: Sequence[int]):
        self.steps = np.asarray(steps, np.int64)
        self.images: tf.Variable | None = None

    def log_steps(self) -> set[int]:
        return set(self.steps.tolist())

    def setup(self, loop):
        if self.images is None:
            self.images = tf.Variable(tf.zeros_like(loop.stepper.images()), name="result_images")

    def state(self) -> dict:
        return {"result_images": self.images} if self.images is not None else {}

    def on_log_point(self, loop, point):
        due = self.steps == point.step
        if due.any():
            self.images.assign(tf.where(due[:, None, None, None], loop.stepper.images(), self.images))

    def on_run_end(self, loop, result):
        reached = (self.steps <= result.steps)[:, None, None, None]
        result.images = np.where(reached, self.images.numpy(), result.images)


class _Optimization(Optimization):
    """The engine, with prior terms told the step being taken (``PriorTerm.step``: a dropout prior's mask is keyed
    by it)."""

    def follow_steps(self, objective: O.Objective) -> None:
        for term in objective.terms:
            if isinstance(term, PriorTerm):
                term.step = self.iteration


def _solve_with_result_steps(problem: Problem, s: common.Setup, how: common.Reporting,
                             result_steps: Sequence[int]) -> paper.Result:
    """``common.solve`` for one batch, each problem's result taken at its own step (:class:`ResultSteps`); the
    outputs stay in memory."""
    config = {**how.config, **problem.settings, "layers": problem.layers, "steps": problem.total_steps,
              "weights": s.weights, "net": s.net, "seed": s.seed}
    run = _Optimization.from_problem(problem, to_input=lambda x: nets.to_input(s.net, x),
                                     display_offset=nets.mean_rgb(s.net), seed=s.seed, log_every=how.log_every,
                                     jit_compile=how.jit_compile, config=config)
    run.follow_steps(problem.objective)
    print(f"{how.title}: {len(problem.labels)} problems, objective {problem.objective!r}", flush=True)
    cbs = callbacks.standard(s.out, s.logdir, how.resume, how.progress, saved_every=how.log_every) + \
        [ResultSteps(result_steps)]
    try:
        result = run.run(cbs)
    except KeyboardInterrupt as e:
        raise KeyboardInterrupt(f"{e}; continue with --resume --out={s.out}") from None
    rows = evaluate(s.extractors, s.net, problem.layers, problem.x0, result.images, problem.masks)
    text = table(rows, problem.labels, s.net, s.weights)
    print(text, flush=True)
    originals = np.repeat(how.image_rgb[None], len(problem.labels), 0)
    return paper.Result(**outputs(result, problem.labels, originals, nets.mean_rgb(s.net), rows, config,
                                  f"{how.title} ({_weights_word(s)})", table_text=text))


def image_rec_problems(*, net: str, image_rgb: np.ndarray, extractors, prior, layers, seed: int, plan: Plan,
                       optimizer: str | None = None) -> tuple[Problem, Callable[[np.ndarray], Problem]]:
    """Phase 1 (pure MSE) and a function of phase 1's canvas that builds phase 2 (MSE + prior); each phase with a
    fresh optimiser (:func:`inversion_optimizer` of ``optimizer``)."""
    n, size = len(layers), image_rgb.shape[0]
    x0 = np.repeat(image_space(net, image_rgb[None]), n, axis=0)
    mse, _ = feature_objective(extractors, net, layers, x0, **DATA_TERMS[IMAGE_REC[net].data_term])
    t = np.array([jitter_t(net, l) + 1 for l in layers])
    jitter = transforms.Jitter(size, t, n)
    hc = size + jitter.margin
    lr = IMAGE_REC[net].lr
    settings = {"prior_weight": [prior_weight(net, l) for l in layers], "jitter_t": (t - 1).tolist(),
                "adam_lr": [lr] * n, "phase_steps": [list(plan.phase_steps)] * n,
                "jitter_steps": [list(plan.jitter_steps)] * n, "result_step": list(plan.result_steps),
                "optimizer": [optimizer or "adam"] * n}
    phase1 = Problem(objective=mse, param=param.Pixels(thesis_init(n, hc, net, seed)),
                     optimizer=inversion_optimizer(optimizer),
                     schedule=phase_schedule(lr, plan.phase_steps[0], plan.jitter_steps[0]), labels=list(layers),
                     jitter=jitter, layers=list(layers), x0=x0, settings=settings)
    weights = np.array(settings["prior_weight"], np.float32)

    def phase2(canvas: np.ndarray) -> Problem:
        term = PriorTerm(prior, name="prior", offset=nets.mean_rgb(net))
        return dataclasses.replace(phase1, objective=mse + weights * term, param=param.Pixels(canvas),
                                   optimizer=inversion_optimizer(optimizer),
                                   schedule=phase_schedule(lr, plan.phase_steps[1], plan.jitter_steps[1]))
    return phase1, phase2


def _scores(net, image_rgb, recs: dict[str, np.ndarray], layers, vgg) -> list[dict]:
    """Per layer and method: MSE, NMSE, VGG score of the clipped reconstructions, with the recorded numbers."""
    rows = []
    originals = np.repeat(image_rgb[None].astype(np.float64), len(layers), 0)
    for method, rec in recs.items():
        rec = np.clip(rec, 0, 255)
        mse, nmse = metrics.mse(originals, rec), metrics.nmse_dot(originals, rec)
        vgg_score = metrics.gram_score(vgg, image_rgb[None], rec)     # one original: its Grams once
        for i, layer in enumerate(layers):
            rows.append({"layer": layer, "method": method, "mse": float(mse[i]), "nmse": float(nmse[i]),
                         "vgg": float(vgg_score[i])})
    recorded, recorded_mv = RECORDED_FULL512.get(net, {}), RECORDED_MV2016_VGG.get(net, {})
    for layer in layers:
        if layer in recorded:
            v, m, nm = recorded[layer]
            rows.append({"layer": layer, "method": "full512 (thesis, recorded)", "mse": m, "nmse": nm, "vgg": v})
        if layer in recorded_mv:
            rows.append({"layer": layer, "method": "M&V 2016 (thesis, recorded)", "vgg": recorded_mv[layer]})
    return sorted(rows, key=lambda r: (layers.index(r["layer"]), r["method"]))


SCORE_COLUMNS = [("layer", "layer", ""), ("method", "method", ""), ("MSE", "mse", ".4g"), ("NMSE", "nmse", ".4g"),
                 ("VGG score", "vgg", ".4g")]


def _sub(s: common.Setup, name: str) -> common.Setup:
    return dataclasses.replace(s, out=s.out / name, logdir=s.logdir / name)


def _image_rec_runs(s: common.Setup, flags: "Flags", ctx: paper.RunContext, plan: Plan, img: np.ndarray, prior,
                    layers: list[str]) -> dict[str, paper.Result]:
    """The three inversions of every layer, in memory: pure MSE, MSE + the prior from its canvas, M&V 2016."""
    p1, phase2 = image_rec_problems(net=s.net, image_rgb=img, extractors=s.extractors, prior=prior, layers=layers,
                                    seed=s.seed, plan=plan, optimizer=flags.optimizer)
    config = {"paper": "foe_priors", "experiment": "image_rec", "image": flags.image, "prior": flags.prior_name,
              "optimizer": flags.optimizer or "adam"}
    how = common.Reporting(image_rgb=img, config=config, title=f"pure MSE — {s.net}{_by(flags)}",
                           log_every=max(1, min(100, plan.phase_steps[0] // 4)), resume=ctx.resume,
                           progress=ctx.progress)
    runs = {"pure_mse": common.solve(p1, _sub(s, "pure_mse"), how)}
    # phase 2 counts its steps on from phase 1's: a result step g is step g − phase 1 of this run
    runs[flags.prior_name] = _solve_with_result_steps(
        phase2(runs["pure_mse"].arrays["canvas"]), _sub(s, flags.prior_name),
        dataclasses.replace(how, title=f"MSE + {flags.prior_name} — {s.net}{_by(flags)}"),
        result_steps=[r - plan.phase_steps[0] for r in plan.result_steps])
    mv = mv2016.problem(mv2016.EXPERIMENT_SETTINGS["inversion"], net=s.net, image_rgb=img, extractors=s.extractors,
                        layers=layers, seed=s.seed, steps=sum(plan.phase_steps))
    runs["mv2016"] = common.solve(mv, _sub(s, "mv2016"), dataclasses.replace(
        how, config={**config, "method": "mv2016"}, title=f"M&V 2016 — {s.net}"))
    return runs


def image_rec(s: common.Setup, flags: "Flags", ctx: paper.RunContext) -> dict:
    net, prior_name = s.net, flags.prior_name
    img = common.load(net, flags.image)
    layers = common.resolve_layers(net, flags.layers) if flags.layers else list(DEFAULT_LAYERS[net])
    plan = image_rec_plan(net, layers, flags.steps)
    prior = catalogue.get(prior_name, net, data=flags.data, steps=flags.prior_steps, seed=s.seed)
    runs = _image_rec_runs(s, flags, ctx, plan, img, prior, layers)
    recs = {m: r.arrays["reconstructions"] for m, r in runs.items()}
    energies = {m: prior.energy(np.clip(r, 0, 255)).numpy().tolist() for m, r in recs.items()}
    rows = _scores(net, img, recs, layers, vgg16_gram_features())
    result_step = dict(zip(layers, plan.result_steps))
    text = (_header(s) + "   (VGG score: tfrestore's VGG16, random unless converted)\n"
            + f"steps: {plan.phase_steps[0]} pure MSE + {plan.phase_steps[1]} with {prior_name}{_by(flags)}, "
            + ("no jitter (L-BFGS)" if flags.optimizer == "lbfgs" else
               f"jitter on for the first {plan.jitter_steps[0]} / {plan.jitter_steps[1]}")
            + f"; {prior_name} result of each layer from step "
            + ", ".join(f"{l} {r}" for l, r in result_step.items()) + "\n" + report.table(rows, SCORE_COLUMNS))
    text += "\n\nprior energy of the clipped reconstructions (" + prior_name + "):\n" + "\n".join(
        f"  {m:<12} " + "  ".join(f"{l} {e:.4g}" for l, e in zip(layers, es)) for m, es in energies.items())
    print(text, flush=True)
    for name, r in runs.items():                           # each inversion's outputs, written once
        if name == prior_name:
            r.write(s.out / name)
        else:
            common.finish(r, _sub(s, name))                 # with its wall-time line
    panels = [p for m in recs for p in [(img / 255.0, f"original / {m}")] +
              [(np.clip(recs[m][i], 0, 255) / 255.0, f"{m}\n{l}") for i, l in enumerate(layers)]]   # a row each
    report.write(s.out, title=f"FoE prior inversion — {net} ({_weights_word(s)})", table=text,
                 figure_panels=panels, figure_columns=len(layers) + 1,
                 metrics={"net": net, "weights": s.weights, "prior": prior_name, "layers": layers,
                          "optimizer": flags.optimizer or "adam",
                          "steps": list(plan.phase_steps), "jitter_steps": list(plan.jitter_steps),
                          "result_step": result_step, "scores": rows, "prior_energy": energies})
    return {"scores": rows, "prior_energy": energies, "result_step": result_step}


def _by(flags: "Flags") -> str:
    """" (L-BFGS)" in titles and lines when --optimizer=lbfgs."""
    return " (L-BFGS)" if flags.optimizer == "lbfgs" else ""


def _weights_word(s) -> str:
    return "random weights" if s.weights == "random" else "converted weights"


def _header(s) -> str:
    return f"net: {s.net}   weights: " + ("RANDOM (seeded) — the method, not the paper's network" if s.weights ==
                                            "random" else s.weights)


# ---- feature-map inversions ----------------------------------------------------------------------------------------

def _map_problem(s: common.Setup, *, image_rgb, setting: MapInversion, n: int, seed: int):
    """The target map as the variable: (the true target map, the data objective through the tail model target →
    match, the initial maps [n, ...])."""
    model = s.model
    x0 = image_space(s.net, image_rgb[None])
    feats = nets.feature_extractor(model, [setting.target, setting.match])(nets.to_input(s.net, x0))
    true_map, true_match = np.asarray(feats[setting.target]), np.asarray(feats[setting.match])
    tail = nets.tail(model, setting.target, setting.match)
    data = O.feature_loss(tail, setting.match, np.repeat(true_match, n, 0), **DATA_TERMS[setting.data_term])
    init = np.random.default_rng(seed).normal(0, setting.init_std, (n,) + true_map.shape[1:]).astype(np.float32)
    return true_map, data, init


@dataclasses.dataclass(frozen=True)
class PhaseEngine:
    """How a map inversion's phases step: Adam at ``lr`` (the thesis engine) or, with ``optimizer="lbfgs"``,
    L-BFGS (:func:`inversion_optimizer`; ``lr`` unused)."""
    lr: float
    optimizer: str | None = None
    progress: bool = True


def _run_phases(s, objective_phases, init, labels, engine: PhaseEngine, title, name):
    """Optimise the map through successive phases, each with a fresh optimiser state; returns the final map and
    the last phase's result (its term values at the end)."""
    x, result = init, None
    for k, (objective, n_steps) in enumerate(objective_phases):
        run = Optimization(objective, param.Pixels(x), inversion_optimizer(engine.optimizer),
                           optimizers.Schedule([optimizers.Stage(n_steps, engine.lr)]), labels=labels, seed=s.seed,
                           log_every=max(1, n_steps // 4), config={"title": title, "phase": k,
                                                                   "optimizer": engine.optimizer or "adam"})
        print(f"{title}: phase {k + 1} of {len(objective_phases)}, {n_steps} steps"
              + (" of L-BFGS" if engine.optimizer == "lbfgs" else ""), flush=True)
        result = run.run(logdir=s.logdir / name / f"phase{k + 1}", progress=engine.progress)
        x = run.images()
    return x, result


def featmap_inv(s: common.Setup, flags: "Flags", ctx: paper.RunContext) -> dict:
    setting, prior_name = FEATMAP_INV, flags.prior_name
    if flags.layers:
        match, target = common.resolve_layers(s.net, flags.layers)[:2]
        setting = dataclasses.replace(setting, match=match, target=target)
    img = common.load(s.net, flags.image)
    prior = catalogue.get(prior_name, s.net, data=flags.data, steps=flags.prior_steps, seed=s.seed)
    e = catalogue.entry(prior_name)
    if isinstance(e, catalogue.Entry) and nets.resolve_layer(s.net, e.tap) != setting.target:
        raise ValueError(f"prior '{prior_name}' models {e.tap}, but the variable here is {setting.target}")
    true_map, data_term, init = _map_problem(s, image_rgb=img, setting=setting, n=1, seed=s.seed)
    phases = scaled_phases(setting.phases, flags.steps)
    with_prior = data_term + e.weight * PriorTerm(prior, name=prior_name)
    objectives = [with_prior if k >= setting.prior_from else data_term for k in range(len(phases))]
    engine = PhaseEngine(setting.lr, flags.optimizer, ctx.progress)
    mse_only, _ = _run_phases(s, list(zip(objectives[:setting.prior_from], phases)), init, ["mse"], engine,
                              "feature-map inversion", "mse_only")
    final, _ = _run_phases(s, list(zip(objectives, phases))[setting.prior_from:], mse_only, [prior_name], engine,
                           "feature-map inversion", prior_name)
    target = setting.target
    rows = []
    for label, m in (("initial map", init), ("MSE only", mse_only), (f"MSE + {prior_name}", final)):
        rows.append({"method": label, f"{target}_mse": float(metrics.mse(true_map, m)[0]),
                     f"{target}_rel": float(metrics.rel_sq_error(true_map, m)[0]),
                     "prior_energy": float(prior.energy(m).numpy()[0])})
    cols = [("method", "method", ""), (f"{target} MSE", f"{target}_mse", ".4g"),
            (f"{target} rel. sq.", f"{target}_rel", ".4g"), ("prior energy", "prior_energy", ".4g")]
    text = _header(s) + f"\n{target} map recovered from {setting.match}{_by(flags)}\n" + report.table(rows, cols)
    print(text, flush=True)
    ch = lambda m: report.stretch(m[0, ..., :3])
    report.write(s.out, title=f"{target} from {setting.match} — {s.net} ({_weights_word(s)})", table=text,
                 metrics={"rows": rows, "steps": list(phases), "prior": prior_name, "weight": e.weight,
                          "optimizer": flags.optimizer or "adam",
                          "setting": dataclasses.asdict(setting), "weights": s.weights},
                 figure_panels=[(ch(true_map), f"true {target} (channels 0–2)"), (ch(mse_only), "MSE only"),
                                (ch(final), f"+ {prior_name}")],
                 arrays={"true_map": true_map, "mse_only": mse_only, "with_prior": final})
    return {"rows": rows}


def _legacy_weights(name: str) -> np.ndarray:
    """[variants] the weight of regulariser ``name`` in each legacy variant (None: the catalogue's; 0: unused)."""
    out = []
    for _, regs in LEGACY_VARIANTS:
        w = dict(regs).get(name, 0.0)
        out.append(catalogue.entry(name).weight if w is None else w)
    return np.array(out, np.float32)


def legacy_c2_to_c1(s: common.Setup, flags: "Flags", ctx: paper.RunContext) -> dict:
    setting = LEGACY
    img = common.load(s.net, flags.image)
    n = len(LEGACY_VARIANTS)
    true_map, data_term, init = _map_problem(s, image_rgb=img, setting=setting, n=n, seed=s.seed)
    objective = data_term
    for name in sorted({name for _, regs in LEGACY_VARIANTS for name, _ in regs}):
        w = _legacy_weights(name)
        prior = catalogue.get(name, s.net, data=flags.data, steps=flags.prior_steps, seed=s.seed)
        term = PriorTerm(prior, name=name,
                         problems=np.flatnonzero(w).tolist())      # evaluated only where a variant uses it
        objective = objective + w * term
    phases = scaled_phases(setting.phases, flags.steps)     # the thesis: 500, then a restart for 19,500
    labels = [v[0] for v in LEGACY_VARIANTS]
    rec, result = _run_phases(s, [(objective, k) for k in phases], init, labels,
                              PhaseEngine(setting.lr, flags.optimizer, ctx.progress),
                              f"{setting.match}/lin → {setting.target}/lin", "variants")
    truth = np.repeat(true_map, n, 0)
    data_name = f"feature/{setting.match}"
    rows = [{"variant": lab, f"{setting.match}_nmse": float(d), "conv1_mse": float(m), "conv1_rel": float(r)}
            for lab, d, m, r in zip(labels, result.values[data_name], metrics.mse(truth, rec),
                                    metrics.rel_sq_error(truth, rec))]
    text = _header(s) + (f"\n{setting.target}/lin recovered from {setting.match}/lin (normalised MSE "
                         f"Σ(t − r)²/Σ(t·r)), " + ("L-BFGS" if flags.optimizer == "lbfgs" else f"Adam {setting.lr:g}")
                         + f": {' + restart '.join(map(str, phases))} steps\n") + \
        report.table(rows, [("regulariser", "variant", ""), (f"{setting.match} NMSE", f"{setting.match}_nmse", ".4g"),
                            ("conv1 MSE", "conv1_mse", ".4g"), ("conv1 rel. sq.", "conv1_rel", ".4g")])
    print(text, flush=True)
    report.write(s.out, title=f"conv2/lin → conv1/lin — {s.net} ({_weights_word(s)})", table=text,
                 metrics={"rows": rows, "steps": list(phases), "weights": s.weights,
                          "optimizer": flags.optimizer or "adam",
                          "setting": dataclasses.asdict(setting)},
                 figure_panels=[(report.stretch(true_map[0, ..., :3]), "true conv1 (ch 0–2)")] +
                 [(report.stretch(rec[i, ..., :3]), lab) for i, lab in enumerate(labels)],
                 arrays={"true_map": true_map, "initial": init, "reconstructions": rec})
    return {"rows": rows}


def train_prior(flags: "Flags", ctx: paper.RunContext) -> dict:
    """Train a catalogue prior into the store (no inversion, so no network is built unless its tap needs one). An
    artifact of the same settings is reused (one line names it) unless ``ctx.overwrite``; an interrupted training
    of them continues where it stopped."""
    net, prior_name = flags.net, flags.prior_name
    _, summary = catalogue.train(prior_name, net, data=flags.data, steps=flags.steps or flags.prior_steps,
                                 seed=ctx.seed, overwrite=ctx.overwrite, progress=ctx.progress)
    if not summary["reused"]:
        print(f"prior {prior_name} for {net}: {summary['steps']} steps in {summary['seconds']:.0f} s "
              f"({summary['patches_per_s']:,.0f} patches/s), final train "
              f"{summary['final'].get('train_loss', 0):.5g}, validation {summary['final'].get('val_loss', 0):.5g}; "
              f"stored in {summary['path']} (filters.png)", flush=True)
    return summary


# ---- feature statistics (evaluation_protocols.md §4.4, the thesis' utils/feature_statistics.py) ---------------------

STATS_IMAGES = 200                     # the thesis' statistics run over 200 images (e.g. VGG16 pool5)
STATS_LAYERS = {"alexnet": ("conv1", "conv2", "conv3", "conv4", "conv5", "pool5"),
                "vgg16": ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1", "pool5")}
# Per-channel sdevs the thesis diary records (trained VGG16): the image layer and two conv layers' ranges.
DIARY_SDEV = {"image": (20.0, 30.0), "conv": ((2.0, 70.0), (12.0, 300.0))}
DIARY_LABEL = "thesis diary, trained VGG16"
STATS_BATCH = 8                        # images per forward pass (memory only; the sums are the same)
STATS_SAVE_MAX_C = 1024                # Gram / covariance / inverse saved as .npy up to this many channels


def _stats_images(data_dir: str | None) -> tuple[list[str], str]:
    """(image names or paths, a line saying where they come from): the first STATS_IMAGES of ``--data`` by name,
    else the embedded photos."""
    if data_dir is None:
        names = sample_image_names()
        return names, (f"no --data: the {len(names)} embedded photos (the thesis used {STATS_IMAGES} ImageNet "
                       "images; give a folder with --data)")
    try:
        paths = image_folder(data_dir)
    except NotADirectoryError:
        raise ValueError(f"--data={data_dir} is not a folder: give a folder of images") from None
    used = paths[:STATS_IMAGES]
    return [str(p) for p in used], f"{len(used)} of the {len(paths)} images in {data_dir} (the first by name)"


def _stream_stats(s: common.Setup, layers: Sequence[str], images: Sequence[str]) -> dict:
    """{"image": …, layer: …} → feature_stats.Summary over ``images``, a batch at a time (centre crop at the net's
    input size, the thesis' loading); "image" is the mean-subtracted RGB input (0–255)."""
    size = nets.input_size(s.net)
    extract = tf.function(nets.feature_extractor(s.model, list(layers)), reduce_retracing=True)
    acc = {name: fstats.FeatureStats() for name in ["image", *layers]}
    for i in range(0, len(images), STATS_BATCH):
        x = image_space(s.net, np.stack([load_image(p, size, crop="center") for p in images[i:i + STATS_BATCH]]))
        acc["image"].update(x)
        feats = extract(nets.to_input(s.net, x))
        for layer in layers:
            acc[layer].update(feats[layer].numpy())
    return {name: a.result() for name, a in acc.items()}


def _diary_range(layer: str) -> str:
    if layer == "image":
        return "~{:g}–{:g}".format(*DIARY_SDEV["image"])
    return " / ".join("{:g}–{:g}".format(*r) for r in DIARY_SDEV["conv"]) if layer.startswith("conv") else ""


def _stats_rows(summaries: dict) -> list[dict]:
    rows = []
    for layer, m in summaries.items():
        rows.append({"layer": layer, "channels": len(m.sdev), "samples": m.samples, "sdev_min": float(m.sdev.min()),
                     "sdev_median": float(np.median(m.sdev)), "sdev_max": float(m.sdev.max()),
                     "norm_mean": float(m.norms.mean()), "norm_sd": float(m.norms.std()),
                     "gini_mean": float(m.gini.mean()), "gini_sd": float(m.gini.std()),
                     "cov_rank": m.rank, "diary_sdev": _diary_range(layer)})
    return rows


STATS_COLUMNS = [("layer", "layer", ""), ("C", "channels", "d"), ("samples", "samples", "d"),
                 ("sdev min", "sdev_min", ".3g"), ("median", "sdev_median", ".3g"), ("max", "sdev_max", ".3g"),
                 ("L2 norm", "norm_mean", ".4g"), ("± sd", "norm_sd", ".3g"), ("Gini", "gini_mean", ".3f"),
                 ("± sd", "gini_sd", ".3f"), ("cov rank", "cov_rank", "d"),
                 (f"sdev ({DIARY_LABEL})", "diary_sdev", "")]


def _sdev_plot(summaries: dict, title: str) -> Callable:
    """channel_sdevs.png: a box plot of each layer's per-channel sdevs (log scale), the diary's ranges as bands."""
    def write(path):
        with report.plot(path, figsize=(1.1 * len(summaries) + 3.5, 4.0)) as (fig, ax):
            ax.boxplot([m.sdev for m in summaries.values()], whis=(0, 100))     # whiskers: the full range
            ax.set_xticks(range(1, len(summaries) + 1), list(summaries), rotation=30, fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel("per-channel sdev (images × positions)")
            ax.axhspan(*DIARY_SDEV["image"], color="tab:green", alpha=0.2, label=f"image ~20–30 ({DIARY_LABEL})")
            for r, c in zip(DIARY_SDEV["conv"], ("tab:orange", "tab:purple")):
                ax.axhspan(*r, color=c, alpha=0.12, label=f"conv {r[0]:g}–{r[1]:g} ({DIARY_LABEL})")
            ax.legend(fontsize=7)
            ax.set_title(title, fontsize=9)
    return write


def _stats_tensorboard(logdir, summaries: dict) -> None:
    """TensorBoard: each layer's channel-sdev histogram and its norm / Gini / rank scalars (step 0)."""
    with TensorBoard.once(logdir):
        for layer, m in summaries.items():
            tf.summary.histogram(f"{layer}/channel_sdev", m.sdev, step=0)
            for name, v in (("norm_mean", m.norms.mean()), ("gini_mean", m.gini.mean()), ("cov_rank", m.rank)):
                tf.summary.scalar(f"{layer}/{name}", float(v), step=0)


def _stats_result(s: common.Setup, summaries: dict, rows: list[dict], text: str, source: str) -> paper.Result:
    shown = [l for l in summaries if l != "image"]
    shown = shown[:1] + shown[-1:] if len(shown) > 1 else shown                # the first and the last layer
    show = lambda m: report.stretch(np.sign(m) * np.sqrt(np.abs(m)))          # signed √: the diagonal dominates
    panels = [(show(getattr(summaries[l], k)), f"{l}: {k} (signed √)") for l in shown for k in ("gram", "cov")]
    arrays = {f"{k}_{report.safe_name(l)}": getattr(m, k) for l, m in summaries.items()
              for k in ("mean", "sdev", "gram", "cov", "inv_cov") if k in ("mean", "sdev") or
              len(m.sdev) <= STATS_SAVE_MAX_C}
    metrics = {"net": s.net, "weights": s.weights, "images": source, "layers": rows,
               "channel_sdev": {l: m.sdev.tolist() for l, m in summaries.items()},
               "diary_sdev": {"label": DIARY_LABEL, **DIARY_SDEV}}
    title = f"feature statistics — {s.net} ({_weights_word(s)})"
    return paper.Result(title=title, metrics=metrics, table=text, figure_panels=panels, figure_columns=2,
                        arrays=arrays, plots={"channel_sdevs.png": _sdev_plot(summaries, title)})


def feature_stats(s: common.Setup, flags: "Flags", ctx: paper.RunContext) -> dict:
    """Per layer over the images: per-channel mean and sdev, the map's L2 norm per image, the Gini index, the
    average Gram matrix, the channel covariance and its pseudo-inverse (rank stated); the diary's sdev ranges
    beside."""
    layers = common.resolve_layers(s.net, flags.layers) if flags.layers else list(STATS_LAYERS[s.net])
    images, source = _stats_images(flags.data)
    print(f"feature statistics: {source}", flush=True)
    summaries = _stream_stats(s, layers, images)
    rows = _stats_rows(summaries)
    text = (_header(s) + f"\nimages: {source}\nper-channel sdev over images × positions (population); L2 norm and "
            "Gini (Hurley & Rickard) per image, mean ± sd; cov rank: of the C × C channel covariance (inv_cov is "
            "its pseudo-inverse when rank < C)\n" + report.table(rows, STATS_COLUMNS))
    if s.weights == "random":
        text += "\n(random weights: the layers' statistics are the method's, not the trained VGG16 the diary measured)"
    print(text, flush=True)
    _stats_tensorboard(s.logdir, summaries)
    _stats_result(s, summaries, rows, text, source).write(s.out)
    return {"rows": rows, "summaries": summaries}


@dataclasses.dataclass(frozen=True)
class Experiment:
    description: str
    runner: Callable
    prior: str | None           # the default --prior (None: the experiment uses no prior)
    trains: bool = False        # the experiment trains --prior (so it must be a learned one)


EXPERIMENT_TABLE = {
    "image_rec": Experiment("layers inverted: pure MSE, then + the prior; M&V 2016 beside; MSE / NMSE / VGG score",
                            image_rec, "full512"),
    "featmap_inv": Experiment("the conv1/lin map as the variable, matched through conv2/lin, + a feature-map prior",
                              featmap_inv, "fullc1l6000"),
    "legacy_c2_to_c1": Experiment("conv2/lin → conv1/lin with none / TV / slim / channel / both / full priors",
                                  legacy_c2_to_c1, "fullc1l6000"),
    "train": Experiment("train a catalogue prior (--prior, --data, --steps)", train_prior, "full512", trains=True),
    "feature_stats": Experiment("per-layer channel sdevs, L2 norms, Gini sparsity, Gram / covariance / inverse "
                                "(--net, --layers, --data: a folder of images, --weights)", feature_stats, None),
}
EXPERIMENTS = {k: v.description for k, v in EXPERIMENT_TABLE.items()}
DEFAULT_EXPERIMENT = "image_rec"


def _check_prior_fits(experiment: str, name: str, e) -> None:
    """image_rec regularises the image: an image prior (or tv_prior); featmap_inv a feature map: not an image
    prior (which map, --layers decides: checked when the net is built)."""
    tap = getattr(e, "tap", None)                    # None: tv_prior, which fits any map
    if experiment == "image_rec" and tap not in (None, "image"):
        images = [n for n, x in catalogue.CATALOGUE.items() if getattr(x, "tap", "image") == "image"
                  and getattr(x, "source", "photos") == "photos"]
        raise ValueError(f"--prior={name} models {tap} feature maps; image_rec regularises the image: give one of "
                         f"{', '.join(images)}")
    if experiment in ("featmap_inv", "legacy_c2_to_c1") and tap == "image":
        raise ValueError(f"--prior={name} is an image prior; --experiment={experiment} optimises a feature map: "
                         "give a feature-map prior (e.g. fullc1l6000, c1l_5x5_gcgc)")


@dataclasses.dataclass(frozen=True)
class Flags:
    """The command-line flags of foe_priors (main.py builds them from these fields)."""
    net: str = paper.flag("alexnet", "alexnet or vgg16 (the thesis'); --experiment=train also digits",
                          source="patch_priors.md §7.1")
    experiment: str = paper.flag(DEFAULT_EXPERIMENT, "image_rec, featmap_inv, legacy_c2_to_c1, train or "
                                 "feature_stats")
    prior: str | None = paper.flag(None, "a catalogue prior (default: the experiment's: full512 / fullc1l6000)",
                                   source="patch_priors.md §6, §7")
    layers: tuple[str, ...] | None = paper.flag(None, "layers inverted (image_rec; default: the thesis' eight), "
                                                "match,target (featmap_inv) or the layers measured (feature_stats)",
                                                source="patch_priors.md §7.1, §7.2; evaluation_protocols.md §4.4")
    image: str = paper.flag("chelsea", "embedded sample image name or an image file")
    weights: str = paper.flag("auto", "'auto', 'random' or a .weights.h5 file of the inverted net")
    steps: int | None = paper.flag(None, "rescales every phase, jitter length and result step (train: the prior's "
                                   "training steps)", source="patch_priors.md §7.1")
    prior_steps: int | None = paper.flag(None, "training steps of a prior that is trained first (default: any "
                                         "stored length, else the thesis schedule)", source="patch_priors.md §5")
    data: str | None = paper.flag(None, "a folder of images the priors are trained on, or feature_stats "
                                  "measures (its first 200 by name; default: the embedded ones)")
    optimizer: str | None = paper.flag(None, "the inversions' optimiser: adam (the thesis engine's, default) or "
                                       "lbfgs (L-BFGS, memory 10, no jitter; a step is one iteration)",
                                       source="mv2016.md §9.2")

    def __post_init__(self):
        if self.experiment not in EXPERIMENT_TABLE:
            raise ValueError(f"unknown experiment '{self.experiment}' for foe_priors; valid: "
                             f"{', '.join(EXPERIMENT_TABLE)}")
        exp = EXPERIMENT_TABLE[self.experiment]
        if self.net not in NETS and not (exp.trains and self.net == "digits"):     # the digits priors train here
            raise ValueError(f"foe_priors runs on {' or '.join(NETS)}, not '{self.net}'")
        if self.experiment == "feature_stats" and self.data is not None and not Path(self.data).is_dir():
            raise ValueError(f"--data={self.data} is not a folder: give a folder of images")   # before any net
        if self.prior_name is not None:
            e = (catalogue.trained_entry if exp.trains else catalogue.entry)(self.prior_name)   # a clear error first
            _check_prior_fits(self.experiment, self.prior_name, e)
        if self.optimizer is not None:
            inversion_optimizer(self.optimizer)                 # an unknown one: the valid ones listed
            if self.experiment not in INVERSIONS:
                raise ValueError(f"--optimizer picks the inversions' optimiser ({', '.join(INVERSIONS)}); "
                                 f"--experiment={self.experiment} optimises no image or map: leave it out")

    @property
    def prior_name(self) -> str | None:
        """--prior, or the experiment's default prior."""
        return self.prior or EXPERIMENT_TABLE[self.experiment].prior


def default_out(flags: Flags) -> str:
    return f"runs/foe_priors_{flags.net}_{flags.experiment}"


def run(flags: Flags, ctx: paper.RunContext) -> dict:
    """Runs ``flags.experiment``; ``train`` trains its prior into the store (anew with ``ctx.overwrite``, replacing
    a stored one of the same settings once the new one is complete), the others write into ``ctx.out``."""
    exp = EXPERIMENT_TABLE[flags.experiment]
    if exp.trains:
        return exp.runner(flags, ctx)                   # an interruption resumes
    s = common.setup(paper="foe_priors", net=flags.net, experiment=flags.experiment, weights=flags.weights,
                     out=str(ctx.out), logdir=str(ctx.logdir), seed=ctx.seed)
    return exp.runner(s, flags, ctx)
