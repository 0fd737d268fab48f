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

import numpy as np

from tfrestore import nets
from tfrestore import objectives as O
from tfrestore import optim as optimizers
from tfrestore import param
from tfrestore.inversion import feature_objective, image_space

from . import common

DESCRIPTION = "M&V 2015 inversion (CaffeNet by default; alexnet, vgg16 too): all 20 layers, σ, λ tables, 400 steps"

SIGMA = 27098.11571533        # experiments/x0_sigma.mat
LAMBDA_L2 = 8e-10             # code constant; paper λ_α = (λL2/2)·σ⁴ ≈ 2.16e8
ALPHA = 6
MOMENTUM = 0.9
SCHEDULE = optimizers.Schedule([optimizers.Stage(100, 0.004), optimizers.Stage(200, 0.0004),
                                optimizers.Stage(100, 0.00004)])
NEIGHBOURHOOD_SCHEDULE = optimizers.Schedule([optimizers.Stage(200, 0.0004), optimizers.Stage(200, 0.00004),
                                              optimizers.Stage(200, 0.000004)])
LOG_EVERY = 25                # iterates saved at t = 1, 26, …, 376 (the released PNGs show t = 376)

# λTV by MatConvNet layer index (1-based, l1 … l20), experiment_cnn.m over experiment_init.m.
LAMBDA_TV_BY_INDEX = {**{i: 1.0 for i in range(1, 7)}, **{i: 10.0 for i in range(7, 13)},
                      **{i: 100.0 for i in range(13, 21)}}

# Figures of experiment_cnn.m as data: layers (M&V indices), repeats, λTV (None: the per-layer table), TV β,
# data-term mask ("neigh5", "group1", "group2") and schedule.
EXPERIMENTS = {
    "layers": "Fig. 6: all 20 layers, one reconstruction each, λTV table (default)",
    "teaser": "Fig. 1: fc8 (l20), 6 reconstructions, λTV 100",
    "beta": "Fig. 2: norm/pool layer l4, λTV 100, TV β = 1 versus β = 2",
    "lambda": "Fig. 8: fc8, λTV ∈ {1, 10, 100}",
    "diversity": "Fig. 7/11: pool5 (l15), 6 restarts, λTV 100",
    "neighbourhood": "Fig. 9: data term on a 5×5 window of code positions, l1–l15, λTV 100, 600 steps",
    "filter_groups": "Fig. 10: first vs second half of the channels, l1, l4, l8, λTV 1",
}
FIGURES = {
    "layers": dict(layers=list(range(1, 21)), repeats=1, lambda_tv=None, beta=(2,), mask=None),
    "teaser": dict(layers=[20], repeats=6, lambda_tv=100.0, beta=(2,), mask=None),
    "beta": dict(layers=[4], repeats=1, lambda_tv=100.0, beta=(1, 2), mask=None),
    "lambda": dict(layers=[20], repeats=1, lambda_tv=(1.0, 10.0, 100.0), beta=(2,), mask=None),
    "diversity": dict(layers=[15], repeats=6, lambda_tv=100.0, beta=(2,), mask=None),
    "neighbourhood": dict(layers=list(range(1, 16)), repeats=1, lambda_tv=100.0, beta=(2,), mask="neigh5",
                          schedule=NEIGHBOURHOOD_SCHEDULE),
    "filter_groups": dict(layers=[1, 4, 8], repeats=1, lambda_tv=1.0, beta=(2,), mask=("group1", "group2")),
}


def layer_for_index(net: str, index: int) -> str:
    """M&V layer index → tap; for VGG16 the thesis split l1–l18 conv/relu/pool, then fc6, relu6 … fc8."""
    if net in ("alexnet", "caffenet"):
        return nets.resolve_layer(net, f"l{index}")
    raise ValueError("use layer names for vgg16")


def lambda_tv_for(net: str, layer: str) -> float:
    """λTV of the per-layer table; for VGG16 the thesis's analogous split (conv1–2: 1, conv3–4: 10, conv5/fc: 100)."""
    if net in ("alexnet", "caffenet"):
        order = nets.REGISTRY[net].matconvnet_order
        return LAMBDA_TV_BY_INDEX[order.index(layer) + 1] if layer in order else 100.0
    block = layer[len("conv"):].split("_")[0] if layer.startswith(("conv", "relu", "pool")) else "fc"
    block = "".join(c for c in block if c.isdigit()) or "9"
    return 1.0 if int(block) <= 2 else 10.0 if int(block) <= 4 else 100.0


def _mask(kind: str | None, shape) -> np.ndarray | None:
    if kind is None:
        return None
    m = np.zeros(shape, np.float32)
    if kind == "neigh5":
        if len(shape) == 1:
            return None
        h, w = shape[0], shape[1]
        cy, cx = h // 2, w // 2
        m[max(cy - 2, 0):cy + 3, max(cx - 2, 0):cx + 3] = 1
    elif kind in ("group1", "group2"):
        c = shape[-1]
        m[..., :c // 2] = 1 if kind == "group1" else 0
        m[..., c // 2:] = 0 if kind == "group1" else 1
    return m


def problems(net: str, experiment: str, layers: list[str] | None):
    """The batch of problems of a figure: per problem (label, layer, λTV, β, mask kind)."""
    fig = FIGURES[experiment]
    if layers:
        names = common.resolve_layers(net, layers)
    elif net in ("alexnet", "caffenet"):
        names = [layer_for_index(net, i) for i in fig["layers"]]
    else:
        names = [l for l in nets.layer_names(net) if l.startswith(("conv", "relu", "pool", "fc"))
                 and l != "pool5_flat"]
    out = []
    for layer in names:
        lams = fig["lambda_tv"]
        lams = (lambda_tv_for(net, layer),) if lams is None else (lams if isinstance(lams, tuple) else (lams,))
        masks = fig["mask"] if isinstance(fig["mask"], tuple) else (fig["mask"],)
        for lam in lams:
            for beta in fig["beta"]:
                for mask in masks:
                    for r in range(fig["repeats"]):
                        label = layer + (f" λ{lam:g}" if len(lams) > 1 else "") + \
                            (f" β{beta}" if len(fig["beta"]) > 1 else "") + (f" {mask}" if mask else "") + \
                            (f" #{r}" if fig["repeats"] > 1 else "")
                        out.append((label, layer, lam, beta, mask))
    return out


def build(net: str, image_rgb: np.ndarray, experiment: str, layers, extractors, seed: int, steps: int | None,
          optimizer: str | None):
    """Objective, canvas, optimiser and schedule of one figure (no I/O) — what tests and benchmarks call."""
    probs = problems(net, experiment, layers)
    n, size = len(probs), image_rgb.shape[0]
    labels = [p[0] for p in probs]
    layer_of = [p[1] for p in probs]
    x0 = np.repeat(image_space(net, image_rgb[None]), n, axis=0)
    shapes = {l: extractors(l).output[l].shape[1:] for l in set(layer_of)}
    masks = [_mask(p[4], shapes[p[1]]) for p in probs]
    data_term, _ = feature_objective(extractors, net, layer_of, x0, masks=masks)
    lam = np.array([p[2] for p in probs], np.float32)
    reg = 0
    for beta in sorted({p[3] for p in probs}):
        on = np.array([p[3] == beta for p in probs], np.float32)
        reg = reg + (on * lam / 2 / SIGMA ** 2) * O.tv(beta=beta)
    objective = data_term + reg + (LAMBDA_L2 / 2 / SIGMA ** 2) * O.alpha_norm(ALPHA)
    schedule = FIGURES[experiment].get("schedule", SCHEDULE)
    if steps:
        schedule = schedule.scaled(steps)
    canvas = param.Canvas(param.init_mv2015(n, size, SIGMA, seed), size, jitter=1, scale=SIGMA)
    opt = common.pick_optimizer(optimizer, optimizers.Momentum(MOMENTUM, reset_on_change=True))
    return dict(objective=objective, canvas=canvas, optimizer=opt, schedule=schedule, labels=labels,
                layers=layer_of, x0=x0, masks=masks, lambdas=lam.tolist())


def run(net: str = "caffenet", layers=None, image: str = "chelsea", weights: str = "auto", out=None, logdir=None,
        steps=None, seed: int = 0, optimizer=None, experiment: str = "layers", resume: bool = False,
        jit_compile: bool = False, progress: bool = True, **_unused) -> dict:
    if experiment not in FIGURES:
        raise ValueError(f"unknown experiment '{experiment}' for mv2015; valid: {', '.join(FIGURES)}")
    if net not in ("caffenet", "alexnet", "vgg16"):
        raise ValueError(f"mv2015 runs on caffenet (the paper's), alexnet or vgg16, not '{net}'")
    s = common.setup("mv2015", net, experiment, weights, out, logdir, seed)
    img = common.load(net, image)
    p = build(net, img, experiment, layers, s.extractors, seed, steps, optimizer)
    config = {"paper": "mv2015", "experiment": experiment, "image": image, "sigma": SIGMA, "lambda_l2": LAMBDA_L2,
              "alpha": ALPHA, "lambda_tv": p["lambdas"], "layers": p["layers"], "steps": p["schedule"].total}
    print(f"schedule {p['schedule']}", flush=True)
    return common.optimise(s, p, img, config, f"M&V 2015 {experiment} — {net}", LOG_EVERY, resume, jit_compile,
                           progress)
