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

import numpy as np

from tfrestore import nets
from tfrestore import objectives as O
from tfrestore import optim as optimizers
from tfrestore import param
from tfrestore.inversion import feature_objective, image_space, group_by_layer

from . import common

DESCRIPTION = "M&V 2016 natural pre-images: inversion (300 jittered + 50), activation maximisation, caricature"

B, B_PLUS, ALPHA, BETA = 80.0, 160.0, 6.0, 2.0
V = B / 6.5
LR = 0.05 * B ** 2 / ALPHA               # 53.33; the step used is η_t = H·W·LR_t
RHO = 0.9
JITTER_STEPS, PLAIN_STEPS = 300, 50

# The thesis code's one-C-per-layer choice (third-party; the paper sweeps C ∈ {1, 20, 100, 300}).
C_ALEXNET = {**{l: 300.0 for l in ("conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2",
                                   "conv3", "relu3")}, "conv4": 100.0, "relu4": 100.0, "conv5": 20.0, "relu5": 20.0}
C_SWEEP = (1.0, 20.0, 100.0, 300.0)

EXPERIMENTS = {
    "inversion": "all 20 layers, thesis C per layer, 300 jittered + 50 plain steps (default)",
    "c_sweep": "one layer (default pool5) with C ∈ {1, 20, 100, 300}",
    "maximization": "activation maximisation of fc8 units (the paper's categories) on a canvas",
    "caricature": "caricatures of conv5 / fc8 codes, initialised from the image",
}
CATEGORIES = {"black swan": 100, "goose": 99, "tree frog": 31, "cheeseburger": 933, "coffee mug": 504,
              "comic book": 917, "vending machine": 886}


def c_for(net: str, layer: str) -> float:
    if net in ("alexnet", "caffenet"):
        return C_ALEXNET.get(layer, 1.0)
    if layer.startswith(("conv", "relu")) and layer[4:5].isdigit():
        b, i = int(layer[4]), int(layer.split("_")[1]) if "_" in layer else 0
        return 300.0 if b <= 4 else 100.0 if i == 1 else 20.0
    if layer.startswith("pool") and layer[4:].isdigit():
        return 300.0 if int(layer[4:]) <= 3 else 100.0 if layer == "pool4" else 1.0
    return 1.0


def default_layers(net: str) -> list[str]:
    if net in ("alexnet", "caffenet"):
        return list(nets.REGISTRY[net].matconvnet_order[:20])
    return [l for l in nets.layer_names(net) if l.startswith(("conv", "relu", "pool", "fc", "layer"))
            and l != "pool5_flat" and not l.endswith((".add",))]


def schedule(experiment: str, steps: int | None) -> optimizers.Schedule:
    stages = [optimizers.Stage(JITTER_STEPS, LR, jitter=True)]
    if experiment in ("inversion", "c_sweep"):
        stages.append(optimizers.Stage(PLAIN_STEPS, 0.1 * LR, jitter=False))
    s = optimizers.Schedule(stages)
    return s.scaled(steps) if steps else s


def thesis_schedule(total: int) -> optimizers.Schedule:
    """Thesis Adam: (0: 1e-2·f), (1000: 3e-3·f), (2000: 1e-3·f) of 3,500, f = B²/α, scaled to ``total``."""
    f = B ** 2 / ALPHA
    base = optimizers.Schedule([optimizers.Stage(1000, 1e-2 * f), optimizers.Stage(1000, 3e-3 * f),
                                optimizers.Stage(1500, 1e-3 * f)])
    return base.scaled(total)


def build(net: str, image_rgb: np.ndarray, experiment: str, layers, extractors, seed: int, steps: int | None,
          optimizer: str | None, c_values=None, raw_caricature_target: bool = False):
    size = image_rgb.shape[0]
    x0_one = image_space(net, image_rgb[None])
    if experiment == "maximization":
        layer = common.resolve_layers(net, layers or ["fc8"])[0]
        units = list(CATEGORIES.items())
        labels = [f"{layer}:{name}" for name, _ in units]
        layer_of = [layer] * len(units)
    else:
        layer_of = common.resolve_layers(net, layers) if layers else (
            ["pool5"] if experiment == "c_sweep" else
            ["conv5", "fc8"] if experiment == "caricature" else default_layers(net))
        if experiment == "c_sweep":
            layer_of = [l for l in layer_of for _ in C_SWEEP]
        labels = list(layer_of)
    n = len(layer_of)
    t = np.array([nets.jitter_t(extractors.model, l) for l in layer_of])
    if experiment == "c_sweep":
        c = np.array(C_SWEEP * (n // len(C_SWEEP)), np.float32)
        labels = [f"{l} C{ci:g}" for l, ci in zip(layer_of, c)]
    else:
        c = np.array(c_values or [c_for(net, l) for l in layer_of], np.float32)
    x0 = np.repeat(x0_one, n, axis=0)

    if experiment in ("inversion", "c_sweep"):
        data_term, _ = feature_objective(extractors, net, layer_of, x0)
        data_term = c * data_term
    else:
        parts = []
        for layer, idx in group_by_layer(layer_of).items():
            shape = extractors(layer).output[layer].shape[1:]
            if experiment == "maximization":
                w = np.zeros((len(idx),) + tuple(shape), np.float32)
                for j, i in enumerate(idx):
                    unit = units[i][1]
                    if len(shape) == 3:
                        w[j, shape[0] // 2, shape[1] // 2, unit] = 1.0
                    else:
                        w[j, unit] = 1.0
                rf, _ = nets.receptive_field(extractors.model, layer)
                # (10000/rf²)/(#filters)/max_k; max_k (ImageNet statistics) is not available: estimated as the
                # unit's largest response over the embedded sample photos.
                w *= 10000.0 / rf ** 2 / 1.0 / _max_response(extractors, net, layer, size)
            else:
                src = extractors.features(net, layer, (image_rgb[None].astype(np.float32) if raw_caricature_target
                                                       else x0_one))
                pos = np.maximum(src, 0)
                w = np.repeat(pos / np.sum(pos ** 2), len(idx), axis=0)
            parts.append(O.inner_product(extractors(layer), layer, w,
                                         problems=None if len(idx) == n else idx))
        data_term = c * sum(parts, 0)
    objective = data_term + O.bounded_range(ALPHA, B) + O.tv(BETA, mean=True, scale=V)

    tmax = int(t.max())
    if experiment == "caricature":
        init = np.zeros((n, size + tmax - 1, size + tmax - 1, 3), np.float32)
        off = (tmax - 1) // 2
        init[:, off:off + size, off:off + size] = x0
    else:
        init = param.init_mv2016(n, size + tmax - 1, B, seed)
    if optimizer == "adam":   # thesis variant: start at the target image, Adam, value clip 100
        init = np.zeros_like(init)
        init[:, :size, :size] = x0
        opt = optimizers.Adam(clip_value=100.0)
        sched = thesis_schedule(steps or 3500)
    else:
        opt = common.pick_optimizer(optimizer, optimizers.AdaGradMomentum(RHO))
        sched = schedule(experiment, steps)
        if isinstance(opt, optimizers.AdaGradMomentum):   # η_t = H·W·LR_t
            sched = optimizers.Schedule([optimizers.Stage(st.steps, st.lr * size * size, st.jitter)
                                         for st in sched.stages])
    canvas = param.Canvas(init, size, jitter=t)
    return dict(objective=objective, canvas=canvas, optimizer=opt, schedule=sched, labels=labels, layers=layer_of,
                x0=x0, c=c.tolist(), jitter=t.tolist(),
                project=lambda x: param.project_colour_norm(x, B_PLUS))


_MAX_CACHE: dict = {}


def _max_response(extractors, net, layer, size) -> np.ndarray:
    key = (id(extractors.model), layer)
    if key not in _MAX_CACHE:
        from tfrestore import data
        imgs = np.stack([data.load_image(n, size) for n in data.sample_image_names()])
        f = extractors.features(net, layer, image_space(net, imgs))
        m = f.max(axis=tuple(range(f.ndim - 1)))
        _MAX_CACHE[key] = np.maximum(m, 1e-3)
    return _MAX_CACHE[key]


def run(net: str = "alexnet", layers=None, image: str = "chelsea", weights: str = "auto", out=None, logdir=None,
        steps=None, seed: int = 0, optimizer=None, experiment: str = "inversion", resume: bool = False,
        jit_compile: bool = False, progress: bool = True, **_unused) -> dict:
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment '{experiment}' for mv2016; valid: {', '.join(EXPERIMENTS)}")
    s = common.setup("mv2016", net, experiment, weights, out, logdir, seed)
    img = common.load(net, image)
    p = build(net, img, experiment, layers, s.extractors, seed, steps, optimizer)
    config = {"paper": "mv2016", "experiment": experiment, "image": image, "B": B, "B_plus": B_PLUS, "V": V,
              "alpha": ALPHA, "beta": BETA, "C": p["c"], "jitter_T": p["jitter"], "layers": p["layers"],
              "steps": p["schedule"].total}
    print(f"jitter T={p['jitter']}, {p['schedule']}", flush=True)
    return common.optimise(s, p, img, config, f"M&V 2016 {experiment} — {net}", 20, resume, jit_compile, progress)
