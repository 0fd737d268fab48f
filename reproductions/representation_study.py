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

import dataclasses
from typing import Callable

import numpy as np

from tfrestore import nets
from tfrestore import objectives as O
from tfrestore import optim as optimizers
from tfrestore import param
from tfrestore.engine import Problem
from tfrestore.inversion import Extractors, image_space

from . import common

DESCRIPTION = "representation-inversion study: VGG16-BN / ResNet-18 L2 inversion (lr, TV, layers, resnet)"
STEPS = 300
BASELINE_LAYER = "relu3_3"
ADAM_EPSILON = 1e-7          # Keras' default, as the study's code used
INIT_STD = 0.1               # initial noise, in network input units


def constant(lr: float) -> Callable[[int], optimizers.Schedule]:
    return lambda n: optimizers.Schedule([optimizers.Stage(n, lr)])


def step_decay(n: int) -> optimizers.Schedule:
    """1e-1 → 1e-2 → 1e-3 in thirds of the run."""
    a = b = n // 3
    return optimizers.Schedule([optimizers.Stage(a, 1e-1), optimizers.Stage(b, 1e-2),
                                optimizers.Stage(n - a - b, 1e-3)])


@dataclasses.dataclass(frozen=True)
class Variant:
    """One problem of a study question: its label, the layers its loss sums over, its schedule (a function of the
    run length) and its TV weight."""
    label: str
    layers: tuple[str, ...]
    schedule: Callable[[int], optimizers.Schedule] = step_decay
    tv: float = 1e-2


@dataclasses.dataclass(frozen=True)
class Study:
    net: str
    variants: tuple[Variant, ...]

    @property
    def description(self) -> str:
        return ", ".join(v.label for v in self.variants) + f" on {self.net}"


STUDIES = {
    "lr_schedules": Study("vgg16_bn", (Variant("const 1e-3 (baseline)", (BASELINE_LAYER,), constant(1e-3), 0.0),
                                       Variant("const 1e-2", (BASELINE_LAYER,), constant(1e-2), 0.0),
                                       Variant("step 1e-1/1e-2/1e-3", (BASELINE_LAYER,), step_decay, 0.0))),
    "tv_sweep": Study("vgg16_bn", tuple(Variant(f"tv {w:g}", (BASELINE_LAYER,), step_decay, w)
                                        for w in (0.0, 1e-3, 1e-2, 1e-1))),
    "layers": Study("vgg16_bn", (Variant("conv1_1", ("conv1_1",)), Variant("pool5", ("pool5",)),
                                 Variant("conv3_1+fc6", ("conv3_1", "fc6")))),
    "resnet": Study("resnet18", (Variant("res2 (layer2)", ("res2",)), Variant("middle2 (layer2.0.conv1)", ("middle2",)))),
}
EXPERIMENTS = {name: s.description for name, s in STUDIES.items()}
DEFAULT_EXPERIMENT = "layers"


def problem(study: Study, *, net: str, image_rgb: np.ndarray, extractors: Extractors, layers=None, seed: int = 0,
            steps: int | None = None, optimizer: str | None = None) -> Problem:
    """``layers`` replaces the study's variants: one step-decay problem per given layer."""
    variants = [Variant(l, (l,)) for l in layers] if layers else list(study.variants)
    n, size, total = len(variants), image_rgb.shape[0], steps or STEPS
    scale = nets.input_scale(net)
    x0 = np.repeat(image_space(net, image_rgb[None]), n, axis=0)
    parts, first_layer = [], []
    for i, v in enumerate(variants):
        lays = common.resolve_layers(net, v.layers)
        first_layer.append(lays[0])
        for l in lays:
            tgt = extractors.features(net, l, x0[i:i + 1])
            parts.append(O.feature_loss(extractors(l), l, tgt, problems=[i] if n > 1 else None))
    tv_w = np.array([v.tv for v in variants], np.float32) * scale ** 2
    objective = sum(parts, 0) + tv_w * O.tv(2.0, mean=True)
    schedules = [optimizers.Schedule([optimizers.Stage(st.steps, st.lr / scale, st.jitter)
                                      for st in v.schedule(total).stages]) for v in variants]
    init = np.random.default_rng(seed).normal(0, 1.0 / scale * INIT_STD, (n, size, size, 3)).astype(np.float32)
    opt = common.pick_optimizer(optimizer, optimizers.Adam(epsilon=ADAM_EPSILON, epsilon_form="tf1"))
    return Problem(objective=objective, param=param.Pixels(init), optimizer=opt, schedule=schedules,
                   labels=[v.label for v in variants], layers=first_layer, x0=x0)


def run(*, net: str | None = None, layers: list[str] | None = None, image: str = "chelsea", weights: str = "auto",
        out: str | None = None, logdir: str | None = None, steps: int | None = None, seed: int = 0,
        optimizer: str | None = None, experiment: str = DEFAULT_EXPERIMENT, resume: bool = False,
        jit_compile: bool = False, progress: bool = True) -> dict:
    if experiment not in STUDIES:
        raise ValueError(f"unknown experiment '{experiment}' for representation_study; valid: {', '.join(STUDIES)}")
    net = net or STUDIES[experiment].net
    s = common.setup(paper="representation_study", net=net, experiment=experiment, weights=weights, out=out,
                     logdir=logdir, seed=seed)
    img = common.load(net, image)
    p = problem(STUDIES[experiment], net=net, image_rgb=img, extractors=s.extractors, layers=layers, seed=seed,
                steps=steps, optimizer=optimizer)
    config = {"paper": "representation_study", "experiment": experiment, "image": image, "labels": p.labels}
    return common.optimise(p, s, image_rgb=img, config=config, title=f"Representation study {experiment} — {net}",
                           log_every=10, resume=resume, jit_compile=jit_compile, progress=progress)
