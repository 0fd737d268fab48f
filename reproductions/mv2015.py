"""Mahendran & Vedaldi 2015, "Understanding Deep Image Representations by Inverting Them" (``deep-goggle``).

Objective, in image space x (mean-subtracted, 0–255), with σ = 27098.1 and ν = ‖Φ0 ⊙ mask‖:

    E(x) = ‖mask ⊙ (Φ(x) − Φ0)‖²/ν² + [(λTV/2)·TV_β(x) + (λL2/2)·Σx⁶] / σ²

optimised as x = σ·x̃ with heavy-ball momentum 0.9 on x̃ (identical to the original's lr·σ² step in image units),
momentum zeroed at every learning-rate change, 400 steps (0.004 ×100, 0.0004 ×200, 0.00004 ×100), random Gaussian
initialisation of total norm σ, no clipping. Constants and tables: ``shared/spec/mv2015.md``.

Deviations that cannot be avoided here: the original subtracted CaffeNet's full mean *image*; tfrestore subtracts
its per-channel mean colour (the mean image is not shipped). Images are the embedded sample photos unless
``--image`` points at the ILSVRC validation JPEGs the paper used.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from tfrestore import nets
from tfrestore import objectives as O
from tfrestore import optim as optimizers
from tfrestore import param
from tfrestore.engine import Problem
from tfrestore.inversion import Extractors, feature_objective, image_space

from . import common

DESCRIPTION = "M&V 2015 inversion (CaffeNet by default; alexnet, vgg16 too): all 20 layers, σ, λ tables, 400 steps"
NETS = ("caffenet", "alexnet", "vgg16")

SIGMA = 27098.11571533        # experiments/x0_sigma.mat
LAMBDA_L2 = 8e-10             # code constant; paper λ_α = (λL2/2)·σ⁴ ≈ 2.16e8
ALPHA = 6
MOMENTUM = 0.9
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
    restarts, λTV (None: the per-layer table; several: one problem each), TV β values, the data-term mask kinds
    and the schedule."""
    description: str
    layers: tuple[int, ...]
    repeats: int = 1
    lambda_tv: tuple[float, ...] | None = None
    beta: tuple[float, ...] = (2,)
    mask: tuple[str | None, ...] = (None,)
    schedule: optimizers.Schedule = SCHEDULE


FIGURES = {
    "layers": Figure("Fig. 6: all 20 layers, one reconstruction each, λTV table", tuple(range(1, 21))),
    "teaser": Figure("Fig. 1: fc8 (l20), 6 reconstructions, λTV 100", (20,), repeats=6, lambda_tv=(100.0,)),
    "beta": Figure("Fig. 2: norm/pool layer l4, λTV 100, TV β = 1 versus β = 2", (4,), lambda_tv=(100.0,),
                   beta=(1, 2)),
    "lambda": Figure("Fig. 8: fc8, λTV ∈ {1, 10, 100}", (20,), lambda_tv=(1.0, 10.0, 100.0)),
    "diversity": Figure("Fig. 7/11: pool5 (l15), 6 restarts, λTV 100", (15,), repeats=6, lambda_tv=(100.0,)),
    "neighbourhood": Figure("Fig. 9: data term on a 5×5 window of code positions, l1–l15, λTV 100, 600 steps",
                            tuple(range(1, 16)), lambda_tv=(100.0,), mask=("neigh5",),
                            schedule=NEIGHBOURHOOD_SCHEDULE),
    "filter_groups": Figure("Fig. 10: first vs second half of the channels, l1, l4, l8, λTV 1", (1, 4, 8),
                            lambda_tv=(1.0,), mask=("group1", "group2")),
}
EXPERIMENTS = {name: fig.description for name, fig in FIGURES.items()}
DEFAULT_EXPERIMENT = "layers"


def lambda_tv_for(net: str, layer: str) -> float:
    """λTV of the per-layer table."""
    return LAMBDA_TV_BY_GROUP[nets.spec(net).layer_group.get(layer, len(LAMBDA_TV_BY_GROUP) - 1)]


def _neigh5(shape) -> np.ndarray | None:
    """The 5×5 window of code positions around the centre (none for an fc code: the whole code counts)."""
    if len(shape) == 1:
        return None
    m = np.zeros(shape, np.float32)
    cy, cx = shape[0] // 2, shape[1] // 2
    m[max(cy - 2, 0):cy + 3, max(cx - 2, 0):cx + 3] = 1
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


def problem(fig: Figure, *, net: str, image_rgb: np.ndarray, extractors: Extractors, layers=None, seed: int = 0,
            steps: int | None = None, optimizer: str | None = None) -> Problem:
    """The batch of one figure: a problem per (layer, λTV, β, mask, restart)."""
    rows = []
    for layer in _figure_layers(net, fig, layers):
        lams = fig.lambda_tv or (lambda_tv_for(net, layer),)
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
    return Problem(objective=objective, param=param.Pixels(param.init_mv2015(n, size, SIGMA, seed), scale=SIGMA),
                   optimizer=common.pick_optimizer(optimizer, optimizers.Momentum(MOMENTUM, reset_on_change=True)),
                   schedule=schedule, labels=[r[0] for r in rows], layers=layer_of, x0=x0, masks=masks,
                   settings={"lambda_tv": lam.tolist()})


def run(*, net: str = "caffenet", layers: list[str] | None = None, image: str = "chelsea", weights: str = "auto",
        out: str | None = None, logdir: str | None = None, steps: int | None = None, seed: int = 0,
        optimizer: str | None = None, experiment: str = DEFAULT_EXPERIMENT, resume: bool = False,
        jit_compile: bool = False, progress: bool = True) -> dict:
    if experiment not in FIGURES:
        raise ValueError(f"unknown experiment '{experiment}' for mv2015; valid: {', '.join(FIGURES)}")
    if net not in NETS:
        raise ValueError(f"mv2015 runs on caffenet (the paper's), alexnet or vgg16, not '{net}'")
    s = common.setup(paper="mv2015", net=net, experiment=experiment, weights=weights, out=out, logdir=logdir,
                     seed=seed)
    img = common.load(net, image)
    fig = FIGURES[experiment]
    # one graph per M&V layer group: as fast as one graph of every layer, less memory (common.layer_groups)
    parts = [problem(fig, net=net, image_rgb=img, extractors=s.extractors, layers=group, seed=seed + k,
                     steps=steps, optimizer=optimizer)
             for k, group in enumerate(common.layer_groups(net, _figure_layers(net, fig, layers)))]
    config = {"paper": "mv2015", "experiment": experiment, "image": image, "sigma": SIGMA, "lambda_l2": LAMBDA_L2,
              "alpha": ALPHA}
    print(f"schedule {parts[0].schedule}", flush=True)
    return common.optimise(parts, s, image_rgb=img, config=config, title=f"M&V 2015 {experiment} — {net}",
                           log_every=LOG_EVERY, resume=resume, jit_compile=jit_compile, progress=progress)
