"""The representation-inversion study (``seeds/004``): L2 feature inversion of VGG16-BN (ONNX weights) and ResNet-18.

Each question of the study is a ready setting; all its variants run as one batched optimisation:

- ``lr_schedules`` (Q1): constant 1e-3 (the study's baseline) versus constant 1e-2 and a step decay 1e-1 → 1e-2 → 1e-3.
- ``tv_sweep`` (Q2.1, Q2.2): TV weight 0 / 1e-3 / 1e-2 / 1e-1 with the step-decay schedule.
- ``feature_weight`` (Q2.3): the feature loss's portion raised (× 1 / 10 / 100) against Q2.2's largest TV weight
  (the study names no values; these are tfrestore's, stated in the outputs).
- ``layers`` (Q3): ``conv1_1`` vs ``pool5`` vs ``conv3_1`` + ``fc6`` together.
- ``resnet`` (Q4): ResNet-18 ``layer2`` (the second residual stage, "res2") and ``layer2.0.conv1`` (a block's first
  conv, "middle2").

Loss: ‖Φ(x) − Φ0‖²/‖Φ0‖² summed over the problem's layers + w·TV₂ (per-pixel mean), Adam (Keras ε placement),
every variant of a question starting from the same Gaussian noise (std 0.1 in the study's units).
Learning rates, the TV weight and the initial noise are in the study's units: its code optimised the ImageNet-
normalised tensor ((x/255 − mean)/std) of VGG16-BN; tfrestore optimises image space (0–255), so they are converted
with ImageNet's std (:data:`STUDY_INPUT_SCALE`) — for every net, so a step is the same number of grey levels on
VGG16-BN, ResNet-18 or AlexNet. The study does not name its baseline layer; tfrestore uses ``relu3_3``.

The study's layers are VGG16-BN's and ResNet-18's; :data:`LAYERS` also names AlexNet's counterparts (relu3, conv1,
pool5, conv3 + fc6), so ``--net=alexnet`` (or caffenet) runs Q1–Q3 in the same code, about 8× faster.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from tfrestore import nets
from tfrestore.optimize import objectives as O
from tfrestore.optimize import optim as optimizers
from tfrestore.optimize import param
from tfrestore.optimize.engine import Problem
from tfrestore.optimize.inversion import Extractors, image_space

from . import common, paper

DESCRIPTION = "representation-inversion study: VGG16-BN / ResNet-18 L2 inversion (lr, TV, feature weight, layers, resnet)"
STEPS = 300
LOG_EVERY = 10               # the study saves the image every 10 epochs
ADAM_EPSILON = 1e-7          # Keras' default, as the study's code used
INIT_STD = 0.1               # initial noise, in the study's (normalised) input units
BASELINE_LR = 1e-3           # Q1: the study's constant baseline
CONSTANT_LR = 1e-2           # Q1: a larger constant rate
STEP_DECAY_LRS = (1e-1, 1e-2, 1e-3)   # Q1: thirds of the run; the schedule of every other question
DEFAULT_TV = 1e-2            # TV weight of Q3 / Q4 and of a --layers run
TV_SWEEP = (0.0, 1e-3, 1e-2, 1e-1)    # Q2.1 / Q2.2
FEATURE_WEIGHTS = (1.0, 10.0, 100.0)  # Q2.3: "increase the portion of feature loss" (tfrestore's values)
FEATURE_WEIGHT_TV = TV_SWEEP[-1]       # Q2.3 against Q2.2's increased TV
IMAGENET_STD = (0.229, 0.224, 0.225)
STUDY_INPUT_SCALE = float(np.mean(1.0 / (255.0 * np.asarray(IMAGENET_STD))))   # normalised units per grey level

# The layers of each question's variants ("roles") by net family: VGG16-BN's and ResNet-18's from the study,
# AlexNet's counterparts. The study does not name Q1/Q2's layer: relu3_3 (VGG), relu3 (AlexNet).
LAYERS = {
    "vgg": {"baseline": ("relu3_3",), "shallow": ("conv1_1",), "deep": ("pool5",), "multi": ("conv3_1", "fc6")},
    "alexnet": {"baseline": ("relu3",), "shallow": ("conv1",), "deep": ("pool5",), "multi": ("conv3", "fc6")},
    "resnet": {"res2": ("res2",), "middle2": ("middle2",)},
}
BASELINE_LAYER = LAYERS["vgg"]["baseline"][0]


def constant(lr: float) -> Callable[[int], optimizers.Schedule]:
    return lambda n: optimizers.Schedule([optimizers.Stage(n, lr)])


def step_decay(n: int) -> optimizers.Schedule:
    """1e-1 → 1e-2 → 1e-3 in thirds of the run (exactly n steps, :meth:`~tfrestore.optimize.optim.Schedule.scaled`)."""
    return optimizers.Schedule([optimizers.Stage(1, lr) for lr in STEP_DECAY_LRS]).scaled(n)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One problem of a study question: its label (``{layers}`` is replaced by the layers it uses), the role of
    its layers in :data:`LAYERS`, its schedule (a function of the run length), its TV weight and the weight of its
    feature loss."""
    label: str
    role: str
    schedule: Callable[[int], optimizers.Schedule] = step_decay
    tv: float = DEFAULT_TV
    feature: float = 1.0


@dataclasses.dataclass(frozen=True)
class Study:
    net: str
    variants: tuple[Variant, ...]

    @property
    def description(self) -> str:
        layers = LAYERS[nets.spec(self.net).family]
        return ", ".join(v.label.format(layers="+".join(layers[v.role])) for v in self.variants) + f" on {self.net}"


STUDIES = {
    "lr_schedules": Study("vgg16_bn", (Variant("const 1e-3 (baseline)", "baseline", constant(BASELINE_LR), 0.0),
                                       Variant("const 1e-2", "baseline", constant(CONSTANT_LR), 0.0),
                                       Variant("step 1e-1/1e-2/1e-3", "baseline", step_decay, 0.0))),
    "tv_sweep": Study("vgg16_bn", tuple(Variant(f"tv {w:g}", "baseline", step_decay, w) for w in TV_SWEEP)),
    "feature_weight": Study("vgg16_bn", tuple(Variant(f"feature ×{f:g}, tv {FEATURE_WEIGHT_TV:g}", "baseline",
                                                      step_decay, FEATURE_WEIGHT_TV, f) for f in FEATURE_WEIGHTS)),
    "layers": Study("vgg16_bn", (Variant("{layers}", "shallow"), Variant("{layers}", "deep"),
                                 Variant("{layers}", "multi"))),
    "resnet": Study("resnet18", (Variant("res2 (layer2)", "res2"), Variant("middle2 (layer2.0.conv1)", "middle2"))),
}
EXPERIMENTS = {name: s.description for name, s in STUDIES.items()}
DEFAULT_EXPERIMENT = "layers"


def variant_layers(net: str, variant: Variant) -> tuple[str, ...]:
    family = nets.spec(net).family
    roles = LAYERS.get(family, {})
    if variant.role not in roles:
        raise ValueError(f"the study's '{variant.role}' layers are named for the {', '.join(sorted(LAYERS))} "
                         f"families, and not for '{variant.role}' on {net} ({family}); pass --layers")
    return roles[variant.role]


def problem(study: Study, *, net: str, image_rgb: np.ndarray, extractors: Extractors, layers=None, seed: int = 0,
            steps: int | None = None, optimizer: str | None = None) -> Problem:
    """``layers`` replaces the study's variants: one step-decay problem per given layer."""
    if layers:
        variants = [(Variant(l, "given"), (l,)) for l in layers]
    else:
        variants = [(v, variant_layers(net, v)) for v in study.variants]
    n, size, total = len(variants), image_rgb.shape[0], steps or STEPS
    scale = STUDY_INPUT_SCALE
    x0 = np.repeat(image_space(net, image_rgb[None]), n, axis=0)
    parts, first_layer, labels = [], [], []
    for i, (v, names) in enumerate(variants):
        lays = common.resolve_layers(net, names)
        first_layer.append(lays[0])
        labels.append(v.label.format(layers="+".join(lays)))
        for l in lays:
            tgt = extractors.features(net, l, x0[i:i + 1])
            term = O.feature_loss(extractors(l), l, tgt, problems=[i] if n > 1 else None)
            parts.append(term if v.feature == 1.0 else v.feature * term)
    tv = np.array([v.tv for v, _ in variants], np.float32)
    weights = [v.feature for v, _ in variants]
    objective = sum(parts, 0) + tv * scale ** 2 * O.tv(2.0, mean=True)
    study_schedules = [v.schedule(total) for v, _ in variants]
    schedules = [optimizers.Schedule([dataclasses.replace(st, lr=st.lr / scale) for st in sch.stages])
                 for sch in study_schedules]
    # every variant starts from the same noise, so a question's comparison isolates what it varies
    noise = np.random.default_rng(seed).normal(0, INIT_STD / scale, (1, size, size, 3)).astype(np.float32)
    init = np.repeat(noise, n, axis=0)
    opt = common.pick_optimizer(optimizer, optimizers.Adam(epsilon=ADAM_EPSILON, epsilon_form="tf1"))
    return Problem(objective=objective, param=param.Pixels(init), optimizer=opt, schedule=schedules,
                   labels=labels, layers=first_layer, x0=x0,
                   settings={"tv": tv.tolist(), "schedule": [repr(sch) for sch in study_schedules],
                             **({"feature_weight": weights} if any(w != 1.0 for w in weights) else {}),
                             "loss_layers": ["+".join(common.resolve_layers(net, names)) for _, names in variants]})


@dataclasses.dataclass(frozen=True)
class Flags:
    """The command-line flags of ``--paper=representation_study``."""
    net: str | None = paper.flag(None, "the network (default: the question's, vgg16_bn or resnet18; alexnet and "
                                 "caffenet run Q1–Q3 too)", source="seeds/004")
    layers: tuple[str, ...] | None = paper.flag(None, "layers to invert instead of the question's variants (one "
                                                "step-decay problem each)")
    image: str = paper.flag("chelsea", "the image to invert (a sample name or a file)")
    weights: str = paper.weights_flag()
    steps: int | None = paper.flag(None, "optimisation steps", source="seeds/004: 300")
    optimizer: str | None = paper.flag(None, "replace the study's Adam", source="seeds/004")
    experiment: str = paper.flag(DEFAULT_EXPERIMENT, "the study's question (see --list)")

    def __post_init__(self) -> None:
        if self.experiment not in STUDIES:
            raise ValueError(f"unknown experiment '{self.experiment}' for representation_study; valid: "
                             f"{', '.join(STUDIES)}")

    @property
    def network(self) -> str:
        """The net the run uses: ``net``, or the question's own."""
        return self.net or STUDIES[self.experiment].net


def default_out(flags: Flags) -> str:
    return f"runs/representation_study_{flags.network}_{flags.experiment}"


def run(flags: Flags, ctx: paper.RunContext) -> dict:
    """Run one question of the study (``flags.experiment``) and write its outputs into ``ctx.out``; returns the
    metrics. (XLA: build the problem with :func:`problem` and run it with ``common.solve``,
    ``Reporting(jit_compile=True)``.)"""
    net, experiment = flags.network, flags.experiment
    s = common.setup(paper="representation_study", net=net, experiment=experiment, weights=flags.weights,
                     out=ctx.out, logdir=ctx.logdir, seed=ctx.seed)
    img = common.load(net, flags.image)
    p = problem(STUDIES[experiment], net=net, image_rgb=img, extractors=s.extractors, layers=flags.layers,
                seed=ctx.seed, steps=flags.steps, optimizer=flags.optimizer)
    config = {"paper": "representation_study", "experiment": experiment, "image": flags.image, "labels": p.labels}
    how = common.Reporting(image_rgb=img, config=config, title=f"Representation study {experiment} — {net}",
                           log_every=LOG_EVERY, resume=ctx.resume, progress=ctx.progress)
    return common.finish(common.solve(p, s, how), s)
