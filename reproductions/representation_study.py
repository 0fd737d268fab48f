"""The representation-inversion study (``seeds/004``): L2 feature inversion of VGG16-BN (ONNX weights) and ResNet-18.

Each question of the study is a ready setting; all its variants run as one batched optimisation:

- ``lr_schedules`` (Q1): constant 1e-3 (the study's baseline) versus constant 1e-2 and a step decay 1e-1 → 1e-2 → 1e-3.
- ``tv_sweep`` (Q2): TV weight 0 / 1e-3 / 1e-2 / 1e-1 with the step-decay schedule.
- ``layers`` (Q3): ``conv1_1`` vs ``pool5`` vs ``conv3_1`` + ``fc6`` together.
- ``resnet`` (Q4): ResNet-18 ``layer2`` (the second residual stage, "res2") and ``layer2.0.conv1`` (a block's first
  conv, "middle2").

Loss: ‖Φ(x) − Φ0‖²/‖Φ0‖² summed over the problem's layers + w·TV₂ (per-pixel mean, in the network's normalised
input units), Adam (Keras ε placement). Learning rates are in the network's input units like the study's code (which
optimised the normalised tensor); tfrestore optimises image space, so they are divided by the input scale.
The study does not name its baseline layer; tfrestore uses ``relu3_3``.
"""
from __future__ import annotations

import numpy as np

from tfrestore import nets
from tfrestore import objectives as O
from tfrestore import optim as optimizers
from tfrestore import param
from tfrestore.inversion import image_space

from . import common

DESCRIPTION = "representation-inversion study: VGG16-BN / ResNet-18 L2 inversion (lr, TV, layers, resnet)"
STEPS = 300
BASELINE_LAYER = "relu3_3"


def _const(lr):
    return lambda n: optimizers.Schedule([optimizers.Stage(n, lr)])


def _decay(n):
    a, b = n // 3, n // 3
    return optimizers.Schedule([optimizers.Stage(a, 1e-1), optimizers.Stage(b, 1e-2), optimizers.Stage(n - a - b, 1e-3)])


# experiment -> (net, [(label, layers, schedule factory, tv weight)])
EXPERIMENTS_TABLE = {
    "lr_schedules": ("vgg16_bn", [("const 1e-3 (baseline)", [BASELINE_LAYER], _const(1e-3), 0.0),
                                  ("const 1e-2", [BASELINE_LAYER], _const(1e-2), 0.0),
                                  ("step 1e-1/1e-2/1e-3", [BASELINE_LAYER], _decay, 0.0)]),
    "tv_sweep": ("vgg16_bn", [(f"tv {w:g}", [BASELINE_LAYER], _decay, w) for w in (0.0, 1e-3, 1e-2, 1e-1)]),
    "layers": ("vgg16_bn", [("conv1_1", ["conv1_1"], _decay, 1e-2), ("pool5", ["pool5"], _decay, 1e-2),
                            ("conv3_1+fc6", ["conv3_1", "fc6"], _decay, 1e-2)]),
    "resnet": ("resnet18", [("res2 (layer2)", ["res2"], _decay, 1e-2), ("middle2 (layer2.0.conv1)", ["middle2"], _decay, 1e-2)]),
}
EXPERIMENTS = {k: ", ".join(p[0] for p in v[1]) + f" on {v[0]}" for k, v in EXPERIMENTS_TABLE.items()}


def build(net: str, image_rgb: np.ndarray, experiment: str, layers, extractors, seed: int, steps: int | None,
          optimizer: str | None):
    _, table = EXPERIMENTS_TABLE[experiment]
    if layers:   # --layers replaces the layer sets: one problem per given layer, step-decay schedule
        table = [(l, [l], _decay, 1e-2) for l in layers]
    n, size, total = len(table), image_rgb.shape[0], steps or STEPS
    scale = nets.input_scale(net)
    x0 = np.repeat(image_space(net, image_rgb[None]), n, axis=0)
    parts, first_layer = [], []
    for i, (_, lays, _, _) in enumerate(table):
        lays = common.resolve_layers(net, lays)
        first_layer.append(lays[0])
        for l in lays:
            tgt = extractors.features(net, l, x0[i:i + 1])
            parts.append(O.feature_loss(extractors(l), l, tgt, problems=[i] if n > 1 else None))
    tv_w = np.array([row[3] for row in table], np.float32) * scale ** 2
    objective = sum(parts, 0) + tv_w * O.tv(2.0, mean=True)
    schedules = [optimizers.Schedule([optimizers.Stage(st.steps, st.lr / scale, st.jitter)
                                      for st in row[2](total).stages]) for row in table]
    rng = np.random.default_rng(seed)
    init = rng.normal(0, 1.0 / scale * 0.1, (n, size, size, 3)).astype(np.float32)
    opt = common.pick_optimizer(optimizer, optimizers.Adam(epsilon=1e-7, epsilon_form="tf1"))
    return dict(objective=objective, canvas=param.Canvas(init, size), optimizer=opt, schedule=schedules,
                labels=[row[0] for row in table], layers=first_layer, x0=x0)


def run(net: str | None = None, layers=None, image: str = "chelsea", weights: str = "auto", out=None, logdir=None,
        steps=None, seed: int = 0, optimizer=None, experiment: str = "layers", resume: bool = False,
        jit_compile: bool = False, progress: bool = True, **_unused) -> dict:
    if experiment not in EXPERIMENTS_TABLE:
        raise ValueError(f"unknown experiment '{experiment}' for representation_study; valid: "
                         f"{', '.join(EXPERIMENTS_TABLE)}")
    net = net or EXPERIMENTS_TABLE[experiment][0]
    s = common.setup("representation_study", net, experiment, weights, out, logdir, seed)
    img = common.load(net, image)
    p = build(net, img, experiment, layers, s.extractors, seed, steps, optimizer)
    config = {"paper": "representation_study", "experiment": experiment, "image": image, "labels": p["labels"],
              "steps": p["schedule"][0].total}
    return common.optimise(s, p, img, config, f"Representation study {experiment} — {net}", 10, resume,
                           jit_compile, progress)
