"""Mahendran & Vedaldi 2016, "Visualizing Deep CNNs Using Natural Pre-Images" (``nnpreimage``).

Energy in image space x (mean-colour-subtracted, 0–255) on a jittered canvas:

    E(x) = C·‖Φ(x) − Φ0‖²/‖Φ0‖²  +  (1/HW)·Σ_uv (‖x_uv‖/B)^6  +  (1/HW)·Σ (d_w² + d_h²)/V²,   ‖x_uv‖ ≤ B+

B = 80, V = B/6.5, B+ = 160. AdaGrad-with-momentum (ρ 0.9) with η_t = H·W·LR_t, LR = 0.05·B²/6 = 53.33;
300 jittered steps, then (inversion only) 50 steps at 0.1·LR without jitter, momentum zeroed and the squared
gradient accumulator kept at the change. Jitter T per layer = max(round(stride/4), 1), derived from the model
(it reproduces the spec's AlexNet and VGG16 tables). Constants: ``shared/spec/mv2016.md``.

``--optimizer=adam`` gives the thesis code's variant (Adam, lr 10.67 → 3.2 → 1.067 at steps 1000/2000 scaled to
the run length, value clip 100, initialised from the target image) as a documented alternative.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from tfrestore import data, nets
from tfrestore import objectives as O
from tfrestore import optim as optimizers
from tfrestore import param, transforms
from tfrestore.engine import Problem
from tfrestore.inversion import Extractors, feature_objective, group_by_layer, image_space

from . import common

DESCRIPTION = "M&V 2016 natural pre-images: inversion (300 jittered + 50), activation maximisation, caricature"

B, B_PLUS, ALPHA, BETA = 80.0, 160.0, 6.0, 2.0
V = B / 6.5
LR = 0.05 * B ** 2 / ALPHA               # 53.33; the step used is η_t = H·W·LR_t
RHO = 0.9
JITTER_STEPS, PLAIN_STEPS = 300, 50
C_SWEEP = (1.0, 20.0, 100.0, 300.0)

# The thesis code's one-C-per-layer choice (third-party, spec §6.1/§6.2; the paper sweeps C), by net family.
# Layers not listed (pool5 onward) get 1.
_ALEX_300 = ("conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2", "conv3", "relu3")
_VGG_300 = tuple(f"{k}{b}_{i}" for b in range(1, 5) for i in range(1, 4) for k in ("conv", "relu")) + \
    ("pool1", "pool2", "pool3")
C_TABLES = {
    "alexnet": {**dict.fromkeys(_ALEX_300, 300.0), "conv4": 100.0, "relu4": 100.0, "conv5": 20.0, "relu5": 20.0},
    "vgg": {**dict.fromkeys(_VGG_300, 300.0), **dict.fromkeys(("pool4", "conv5_1", "relu5_1"), 100.0),
            **dict.fromkeys(("conv5_2", "relu5_2", "conv5_3", "relu5_3"), 20.0)},
}
# fc8 units of the paper's activation-maximisation figure
CATEGORIES = {"black swan": 100, "goose": 99, "tree frog": 31, "cheeseburger": 933, "coffee mug": 504,
              "comic book": 917, "vending machine": 886}


def c_for(net: str, layer: str) -> float:
    return C_TABLES.get(nets.spec(net).family, {}).get(layer, 1.0)


# ---- the three data terms: (net, layers, extractors, x0, image) -> (objective, labels, layer per problem) -------

def _inversion(net, layers, extractors, x0_one, image_rgb, raw_target=False):
    x0 = np.repeat(x0_one, len(layers), axis=0)
    data_term, _ = feature_objective(extractors, net, layers, x0)
    return data_term, list(layers), list(layers)


def _max_response(extractors, net, layer, size) -> np.ndarray:
    """A unit's largest response over the embedded sample photos: the stand-in for M&V's ImageNet max_k."""
    imgs = np.stack([data.load_image(n, size) for n in data.sample_image_names()])
    f = extractors.features(net, layer, image_space(net, imgs))
    return np.maximum(f.max(axis=tuple(range(f.ndim - 1))), 1e-3)


def _maximization(net, layers, extractors, x0_one, image_rgb, raw_target=False):
    layer = layers[0]
    shape = extractors(layer).output[layer].shape[1:]
    w = np.zeros((len(CATEGORIES),) + tuple(shape), np.float32)
    for j, unit in enumerate(CATEGORIES.values()):
        if len(shape) == 3:
            w[j, shape[0] // 2, shape[1] // 2, unit] = 1.0
        else:
            w[j, unit] = 1.0
    rf, _ = nets.receptive_field(extractors.model, layer)
    # (10000/rf²)/(#filters)/max_k, max_k estimated on the embedded photos (ImageNet statistics are not here)
    w *= 10000.0 / rf ** 2 / 1.0 / _max_response(extractors, net, layer, image_rgb.shape[0])
    labels = [f"{layer}:{name}" for name in CATEGORIES]
    return O.inner_product(extractors(layer), layer, w), labels, [layer] * len(CATEGORIES)


def _caricature(net, layers, extractors, x0_one, image_rgb, raw_target=False):
    parts = []
    for layer, idx in group_by_layer(layers).items():
        src = extractors.features(net, layer, image_rgb[None].astype(np.float32) if raw_target else x0_one)
        pos = np.maximum(src, 0)
        w = np.repeat(pos / np.sum(pos ** 2), len(idx), axis=0)
        parts.append(O.inner_product(extractors(layer), layer, w, problems=None if len(idx) == len(layers) else idx))
    return sum(parts, 0), list(layers), list(layers)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One experiment: its data term, default layers (None: the net's figure layers), a C sweep (each layer once
    per C) or the per-layer C table, whether the 50-step plain stage follows, and whether the canvas starts at the
    image (caricature) or at M&V's scaled noise."""
    description: str
    data_term: Callable
    layers: tuple[str, ...] | None = None
    c_sweep: tuple[float, ...] | None = None
    plain_stage: bool = False
    init_from_image: bool = False


EXPERIMENT_SETTINGS = {
    "inversion": Setting("all 20 layers, thesis C per layer, 300 jittered + 50 plain steps", _inversion,
                         plain_stage=True),
    "c_sweep": Setting("one layer (default pool5) with C ∈ {1, 20, 100, 300}", _inversion, layers=("pool5",),
                       c_sweep=C_SWEEP, plain_stage=True),
    "maximization": Setting("activation maximisation of fc8 units (the paper's categories) on a canvas",
                            _maximization, layers=("fc8",)),
    "caricature": Setting("caricatures of conv5 / fc8 codes, initialised from the image", _caricature,
                          layers=("conv5", "fc8"), init_from_image=True),
}
EXPERIMENTS = {name: s.description for name, s in EXPERIMENT_SETTINGS.items()}
DEFAULT_EXPERIMENT = "inversion"


def schedule(setting: Setting, steps: int | None) -> optimizers.Schedule:
    stages = [optimizers.Stage(JITTER_STEPS, LR, jitter=True)]
    if setting.plain_stage:
        stages.append(optimizers.Stage(PLAIN_STEPS, 0.1 * LR, jitter=False))
    s = optimizers.Schedule(stages)
    return s.scaled(steps) if steps else s


def thesis_schedule(total: int) -> optimizers.Schedule:
    """Thesis Adam: (0: 1e-2·f), (1000: 3e-3·f), (2000: 1e-3·f) of 3,500, f = B²/α, scaled to ``total``."""
    f = B ** 2 / ALPHA
    base = optimizers.Schedule([optimizers.Stage(1000, 1e-2 * f), optimizers.Stage(1000, 3e-3 * f),
                                optimizers.Stage(1500, 1e-3 * f)])
    return base.scaled(total)


def problem(setting: Setting, *, net: str, image_rgb: np.ndarray, extractors: Extractors, layers=None,
            seed: int = 0, steps: int | None = None, optimizer: str | None = None, c_values=None,
            raw_caricature_target: bool = False) -> Problem:
    size = image_rgb.shape[0]
    x0_one = image_space(net, image_rgb[None])
    chosen = common.resolve_layers(net, layers) if layers else (
        list(setting.layers) if setting.layers else nets.figure_layers(net))
    if setting.c_sweep:
        chosen = [l for l in chosen for _ in setting.c_sweep]
    data_term, labels, layer_of = setting.data_term(net, chosen, extractors, x0_one, image_rgb,
                                                    raw_target=raw_caricature_target)
    n = len(layer_of)
    if setting.c_sweep:
        c = np.array(setting.c_sweep * (n // len(setting.c_sweep)), np.float32)
        labels = [f"{l} C{ci:g}" for l, ci in zip(layer_of, c)]
    else:
        c = np.array(c_values or [c_for(net, l) for l in layer_of], np.float32)
    objective = c * data_term + O.bounded_range(ALPHA, B) + O.tv(BETA, mean=True, scale=V)
    t = np.array([nets.jitter_t(extractors.model, l) for l in layer_of])
    jitter = transforms.Jitter(size, t, n)
    hc = size + jitter.margin
    x0 = np.repeat(x0_one, n, axis=0)
    if setting.init_from_image:
        init = np.zeros((n, hc, hc, 3), np.float32)
        off = jitter.margin // 2
        init[:, off:off + size, off:off + size] = x0
    else:
        init = param.init_mv2016(n, hc, B, seed)
    if optimizer == "adam":   # the thesis variant: start at the target image, Adam, value clip 100
        init = np.zeros_like(init)
        init[:, :size, :size] = x0
        opt, sched = optimizers.Adam(clip_value=100.0), thesis_schedule(steps or 3500)
    else:
        opt = common.pick_optimizer(optimizer, optimizers.AdaGradMomentum(RHO))
        sched = schedule(setting, steps)
        if isinstance(opt, optimizers.AdaGradMomentum):   # η_t = H·W·LR_t
            sched = optimizers.Schedule([optimizers.Stage(st.steps, st.lr * size * size, st.jitter)
                                         for st in sched.stages])
    return Problem(objective=objective, param=param.Pixels(init), optimizer=opt, schedule=sched, labels=labels,
                   jitter=jitter, project=lambda x: transforms.project_colour_norm(x, B_PLUS), layers=layer_of,
                   x0=x0, settings={"C": c.tolist(), "jitter_T": t.tolist()})


def run(*, net: str = "alexnet", layers: list[str] | None = None, image: str = "chelsea", weights: str = "auto",
        out: str | None = None, logdir: str | None = None, steps: int | None = None, seed: int = 0,
        optimizer: str | None = None, experiment: str = DEFAULT_EXPERIMENT, resume: bool = False,
        jit_compile: bool = False, progress: bool = True) -> dict:
    if experiment not in EXPERIMENT_SETTINGS:
        raise ValueError(f"unknown experiment '{experiment}' for mv2016; valid: {', '.join(EXPERIMENT_SETTINGS)}")
    s = common.setup(paper="mv2016", net=net, experiment=experiment, weights=weights, out=out, logdir=logdir,
                     seed=seed)
    img = common.load(net, image)
    p = problem(EXPERIMENT_SETTINGS[experiment], net=net, image_rgb=img, extractors=s.extractors, layers=layers,
                seed=seed, steps=steps, optimizer=optimizer)
    config = {"paper": "mv2016", "experiment": experiment, "image": image, "B": B, "B_plus": B_PLUS, "V": V,
              "alpha": ALPHA, "beta": BETA}
    print(f"jitter T={p.settings['jitter_T']}, {p.schedule}", flush=True)
    return common.optimise(p, s, image_rgb=img, config=config, title=f"M&V 2016 {experiment} — {net}",
                           log_every=20, resume=resume, jit_compile=jit_compile, progress=progress)
