"""Mahendran & Vedaldi 2015, "Understanding Deep Image Representations by Inverting Them" (``deep-goggle``).

Objective, in image space x (mean-subtracted, 0–255), with σ = 27098.1 and ν = ‖Φ0 ⊙ mask‖:

    E(x) = ‖mask ⊙ (Φ(x) − Φ0)‖²/ν² + [(λTV/2)·TV_β(x) + (λL2/2)·Σx⁶] / σ²

optimised as x = σ·x̃ with heavy-ball momentum 0.9 on x̃ (identical to the original's lr·σ² step in image units),
momentum zeroed at every learning-rate change, 400 steps (0.004 ×100, 0.0004 ×200, 0.00004 ×100), random Gaussian
initialisation of total norm σ, no clipping. Constants and tables: ``shared/spec/mv2015.md``.

Each CNN figure of ``experiment_cnn.m`` is one experiment (:data:`FIGURES`: layers, restarts, λTV, β, masks,
schedule, and the images the paper used — recorded, since tfrestore runs ``--image``); Fig. 7 (``restarts``: pool5,
relu6, relu7, fc8 with their own λTV) and Fig. 11 (``diversity``: pool5 at λTV 100) are separate experiments.

Deviations that cannot be avoided here: the original subtracted CaffeNet's full mean *image*; tfrestore subtracts
its per-channel mean colour (the mean image is not shipped). Images are the embedded sample photos unless
``--image`` points at the ILSVRC validation JPEGs the paper used.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tfrestore import nets
from tfrestore.optimize import objectives as O
from tfrestore.optimize import optim as optimizers
from tfrestore.optimize import param
from tfrestore.optimize.engine import Problem
from tfrestore.optimize.inversion import Extractors, feature_objective, image_space

from . import common, paper
from . import mv2015_shallow as shallow_experiments

DESCRIPTION = "M&V 2015 inversion (CaffeNet by default; alexnet, vgg16 too): all 20 layers, σ, λ tables, 400 steps"
NETS = ("caffenet", "alexnet", "vgg16")

SIGMA = 27098.11571533        # experiments/x0_sigma.mat
LAMBDA_L2 = 8e-10             # code constant; paper λ_α = (λL2/2)·σ⁴ ≈ 2.16e8
ALPHA = 6
MOMENTUM = 0.9
RESET_MOMENTUM_ON_LR_CHANGE = True   # m ← 0 whenever the learning rate changes, including at iteration 1
GRADIENT_CLIP = None          # the 2015 code neither clips nor bounds x
SCHEDULE = optimizers.Schedule([optimizers.Stage(100, 0.004), optimizers.Stage(200, 0.0004),
                                optimizers.Stage(100, 0.00004)])
NEIGHBOURHOOD_SCHEDULE = optimizers.Schedule([optimizers.Stage(200, 0.0004), optimizers.Stage(200, 0.00004),
                                              optimizers.Stage(200, 0.000004)])
LOG_EVERY = 25                # iterates saved at t = 1, 26, …, 376 (the released PNGs show t = 376)

# λTV by M&V's layer group (experiment_cnn.m over experiment_init.m): l1–l6, l7–l12, l13–l20 on the AlexNets;
# the registry holds each net's groups (nets.NetSpec.layer_group). Layers outside the table get the last group's.
LAMBDA_TV_BY_GROUP = (1.0, 10.0, 100.0)


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure of experiment_cnn.m: its layers (M&V 1-based indices; other nets use their figure layers),
    restarts, λTV (None: the per-layer table; several: one problem each; ``lambda_tv_by_layer``: one per figure
    layer, aligned with ``layers``), TV β values, the data-term mask kinds, the schedule, and the images the paper
    used (a record: tfrestore runs ``--image``)."""
    description: str
    layers: tuple[int, ...]
    repeats: int = 1
    lambda_tv: tuple[float, ...] | None = None
    lambda_tv_by_layer: tuple[float, ...] | None = None
    beta: tuple[float, ...] = (2,)
    mask: tuple[str | None, ...] = (None,)
    schedule: optimizers.Schedule = SCHEDULE
    paper_images: tuple[str, ...] = ()


_VAL = "ILSVRC2012_val_{:08d}".format
FIGURES = {
    "layers": Figure("Fig. 6: all 20 layers, one reconstruction each, λTV table", tuple(range(1, 21)),
                     paper_images=(_VAL(13),)),
    "teaser": Figure("Fig. 1: fc8 (l20), 6 reconstructions, λTV 100", (20,), repeats=6, lambda_tv=(100.0,),
                     paper_images=(_VAL(24),)),
    "beta": Figure("Fig. 2: norm/pool layer l4, λTV 100, TV β = 1 versus β = 2", (4,), lambda_tv=(100.0,),
                   beta=(1, 2), paper_images=(_VAL(43),)),
    "restarts": Figure("Fig. 7: pool5 (λTV 1), relu6 (λTV 10), relu7 and fc8 (λTV 100), 6 reconstructions each",
                       (15, 17, 19, 20), repeats=6, lambda_tv_by_layer=(1.0, 10.0, 100.0, 100.0),
                       paper_images=(_VAL(43), "stock_abstract.jpg")),
    "lambda": Figure("Fig. 8: fc8, λTV ∈ {1, 10, 100}", (20,), lambda_tv=(1.0, 10.0, 100.0),
                     paper_images=(_VAL(43),)),
    "neighbourhood": Figure("Fig. 9: data term on a 5×5 window of code positions, l1–l15, λTV 100, 600 steps",
                            tuple(range(1, 16)), lambda_tv=(100.0,), mask=("neigh5",),
                            schedule=NEIGHBOURHOOD_SCHEDULE, paper_images=(_VAL(13),)),
    "filter_groups": Figure("Fig. 10: first vs second half of the channels, l1, l4, l8, λTV 1", (1, 4, 8),
                            lambda_tv=(1.0,), mask=("group1", "group2"),
                            paper_images=("stock_abstract.jpg", "stock_fish.jpg")),
    # Fig. 11 shows one pool5 reconstruction of each of five validation images (numRepeats: experiment_init.m's 1);
    # those images are not here, so it runs on --image.
    "diversity": Figure("Fig. 11: pool5 (l15), λTV 100, one reconstruction (paper: val 11, 14, 18, 23, 33)", (15,),
                        lambda_tv=(100.0,), paper_images=tuple(_VAL(i) for i in (11, 14, 18, 23, 33))),
}
# §6's shallow representations (HOG, HOGb, DSIFT on a grey canvas): reproductions/mv2015_shallow.py
EXPERIMENTS = {**{name: fig.description for name, fig in FIGURES.items()},
               **{name: exp.description for name, exp in shallow_experiments.EXPERIMENTS.items()}}
DEFAULT_EXPERIMENT = "layers"
NEIGHBOURHOOD = 5          # Fig. 9: the data term covers a 5×5 window of code positions (neigh = 5)


def lambda_tv_for(net: str, layer: str) -> float:
    """λTV of the per-layer table."""
    return LAMBDA_TV_BY_GROUP[nets.spec(net).layer_group.get(layer, len(LAMBDA_TV_BY_GROUP) - 1)]


def _neigh5(shape) -> np.ndarray | None:
    """The NEIGHBOURHOOD × NEIGHBOURHOOD window of code positions around the centre, all channels (none for an fc
    code: the whole code counts)."""
    if len(shape) == 1:
        return None
    m = np.zeros(shape, np.float32)
    cy, cx, half = shape[0] // 2, shape[1] // 2, NEIGHBOURHOOD // 2
    m[max(cy - half, 0):cy + half + 1, max(cx - half, 0):cx + half + 1] = 1
    return m


def _channel_half(first: bool):
    def mask(shape):
        m = np.zeros(shape, np.float32)
        c = shape[-1]
        m[..., :c // 2] = 1 if first else 0
        m[..., c // 2:] = 0 if first else 1
        return m
    return mask


MASKS = {None: lambda shape: None, "neigh5": _neigh5, "group1": _channel_half(True), "group2": _channel_half(False)}


def _figure_layers(net: str, fig: Figure, layers) -> list[str]:
    if layers:
        return common.resolve_layers(net, layers)
    order = nets.spec(net).matconvnet_order
    if nets.spec(net).figure_layers:        # the AlexNets: the figure's own M&V indices
        return [order[i - 1] for i in fig.layers]
    return nets.figure_layers(net)


def _lambdas(net: str, fig: Figure, layer: str) -> tuple[float, ...]:
    """The λTV values a layer runs with in a figure: the figure's per-layer value where it gives one for this
    layer (on the AlexNets, whose M&V indices name it), else its sweep, else the per-layer table of §4."""
    spec = nets.spec(net)
    if fig.lambda_tv_by_layer and spec.figure_layers:
        by_layer = {spec.matconvnet_order[i - 1]: lam for i, lam in zip(fig.layers, fig.lambda_tv_by_layer)}
        if layer in by_layer:
            return (by_layer[layer],)
    return fig.lambda_tv or (lambda_tv_for(net, layer),)


def problem(fig: Figure, *, net: str, image_rgb: np.ndarray, extractors: Extractors, layers=None, seed: int = 0,
            steps: int | None = None, optimizer: str | None = None) -> Problem:
    """The batch of one figure: a problem per (layer, λTV, β, mask, restart)."""
    rows = []
    for layer in _figure_layers(net, fig, layers):
        lams = _lambdas(net, fig, layer)
        for lam in lams:
            for beta in fig.beta:
                for mask in fig.mask:
                    for r in range(fig.repeats):
                        label = layer + (f" λ{lam:g}" if len(lams) > 1 else "") + \
                            (f" β{beta}" if len(fig.beta) > 1 else "") + (f" {mask}" if mask else "") + \
                            (f" #{r}" if fig.repeats > 1 else "")
                        rows.append((label, layer, lam, beta, mask))
    n, size = len(rows), image_rgb.shape[0]
    layer_of = [r[1] for r in rows]
    x0 = np.repeat(image_space(net, image_rgb[None]), n, axis=0)
    shapes = {l: extractors(l).output[l].shape[1:] for l in set(layer_of)}
    masks = [MASKS[r[4]](shapes[r[1]]) for r in rows]
    data_term, _ = feature_objective(extractors, net, layer_of, x0, masks=masks)
    lam = np.array([r[2] for r in rows], np.float32)
    reg = 0
    for beta in sorted({r[3] for r in rows}):
        on = np.array([r[3] == beta for r in rows], np.float32)
        reg = reg + (on * lam / 2 / SIGMA ** 2) * O.tv(beta=beta)
    objective = data_term + reg + (LAMBDA_L2 / 2 / SIGMA ** 2) * O.alpha_norm(ALPHA)
    schedule = fig.schedule.scaled(steps) if steps else fig.schedule
    momentum = optimizers.Momentum(MOMENTUM, reset_on_change=RESET_MOMENTUM_ON_LR_CHANGE, clip_value=GRADIENT_CLIP)
    return Problem(objective=objective, param=param.Pixels(param.init_mv2015(n, size, SIGMA, seed), scale=SIGMA),
                   optimizer=common.pick_optimizer(optimizer, momentum),
                   schedule=schedule, labels=[r[0] for r in rows], layers=layer_of, x0=x0, masks=masks,
                   settings={"lambda_tv": lam.tolist(), "tv_beta": [float(r[3]) for r in rows],
                             "mask": [r[4] for r in rows]})


@dataclasses.dataclass(frozen=True)
class Flags:
    """The command-line flags of ``--paper=mv2015``."""
    net: str = paper.flag("caffenet", "the network: caffenet (the paper's), alexnet or vgg16",
                          source="mv2015.md §3")
    layers: tuple[str, ...] | None = paper.flag(None, "layers to invert (default: the figure's layers)")
    image: str = paper.flag("chelsea", "the image to invert (a sample name or a file)")
    weights: str = paper.weights_flag()
    steps: int | None = paper.flag(None, "optimisation steps; the figure's schedule (400 or 600) is rescaled",
                                   source="mv2015.md §2, §5")
    optimizer: str | None = paper.flag(None, "replace the paper's momentum 0.9 (e.g. adam)", source="mv2015.md §2")
    experiment: str = paper.flag(DEFAULT_EXPERIMENT, "the figure of experiment_cnn.m, or shallow / shallow_lambda "
                                 "(§6: HOG, HOGb, DSIFT; --net, --layers, --weights do not apply) (see --list)")
    data: str | None = paper.flag(None, "shallow: a folder of images for Table 1 (its first 100 by name; the paper: "
                                  "the first 100 ILSVRC-2012 validation images; default: the embedded photos)",
                                  source="evaluation_protocols.md §1.2")
    sigma: float | None = paper.flag(None, "shallow: M&V's σ (start norm, data-term scale); default 27098.1, the "
                                     "code's constant for any canvas, stable at ILSVRC sizes; images under ~250 px "
                                     "diverge with it: give 68.9·√(H·W), its per-pixel RMS", source="mv2015.md §1.4")

    def __post_init__(self) -> None:
        if self.experiment not in EXPERIMENTS:
            raise ValueError(f"unknown experiment '{self.experiment}' for mv2015; valid: {', '.join(EXPERIMENTS)}")
        if self.experiment in shallow_experiments.EXPERIMENTS and (self.layers or self.weights != "auto"):
            raise ValueError(f"--experiment={self.experiment} inverts HOG / HOGb / DSIFT, which have no --layers and "
                             "no weights; leave --layers and --weights out")
        if self.data is not None and self.experiment != "shallow":
            raise ValueError("--data is Table 1's image folder: it goes with --experiment=shallow (the CNN figures "
                             "and shallow_lambda invert --image)")
        if self.sigma is not None and self.experiment not in shallow_experiments.EXPERIMENTS:
            raise ValueError("--sigma sets σ of the shallow experiments (shallow, shallow_lambda); the CNN figures "
                             "use the code's constant 27098.1")
        if self.data is not None and not Path(self.data).is_dir():
            raise ValueError(f"--data={self.data} is not a folder: give a folder of images")
        if self.net not in NETS:
            raise ValueError(f"mv2015 runs on caffenet (the paper's), alexnet or vgg16, not '{self.net}'")


def default_out(flags: Flags) -> str:
    if flags.experiment in shallow_experiments.EXPERIMENTS:
        return f"runs/mv2015_{flags.experiment}"
    return f"runs/mv2015_{flags.net}_{flags.experiment}"


def run(flags: Flags, ctx: paper.RunContext) -> dict:
    """Run one figure (``flags.experiment``) and write its outputs into ``ctx.out``; returns the metrics.
    (XLA: build the problem with :func:`problem` and run it with ``common.solve``,
    ``Reporting(jit_compile=True)``.)"""
    if flags.experiment in shallow_experiments.EXPERIMENTS:     # no CNN: a grey canvas through HOG / DSIFT
        return shallow_experiments.run(flags, ctx)
    net, experiment, fig = flags.net, flags.experiment, FIGURES[flags.experiment]
    layers = _figure_layers(net, fig, flags.layers)
    # the net only as deep as the deepest layer inverted (with random weights: AlexNet's conv5 needs no fc6–fc8)
    s = common.setup(paper="mv2015", net=net, experiment=experiment, weights=flags.weights, out=ctx.out,
                     logdir=ctx.logdir, seed=ctx.seed, layers=layers)
    img = common.load(net, flags.image)
    # one graph per M&V layer group: as fast as one graph of every layer, less memory (common.layer_groups)
    parts = [problem(fig, net=net, image_rgb=img, extractors=s.extractors, layers=group, seed=ctx.seed + k,
                     steps=flags.steps, optimizer=flags.optimizer)
             for k, group in enumerate(common.layer_groups(net, layers))]
    config = {"paper": "mv2015", "experiment": experiment, "image": flags.image, "sigma": SIGMA,
              "lambda_l2": LAMBDA_L2, "alpha": ALPHA, "paper_images": list(fig.paper_images)}
    if fig.paper_images and Path(flags.image).stem not in {Path(name).stem for name in fig.paper_images}:
        print(f"the paper's {fig.description.split(':')[0]} used {', '.join(fig.paper_images)}; this run "
              f"inverts '{flags.image}' (--image)", flush=True)
    print(f"schedule {parts[0].schedule}", flush=True)
    how = common.Reporting(image_rgb=img, config=config, title=f"M&V 2015 {experiment} — {net}",
                           log_every=LOG_EVERY, resume=ctx.resume, progress=ctx.progress)
    return common.finish(common.solve(parts, s, how), s)
