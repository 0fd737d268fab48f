"""Mahendran & Vedaldi 2016, "Visualizing Deep CNNs Using Natural Pre-Images" (``nnpreimage``).

Energy in image space x (mean-colour-subtracted, 0–255) on a jittered canvas:

    E(x) = w·D(x)  +  (1/HW)·Σ_uv (‖x_uv‖/B)^6  +  (1/HW)·Σ (d_w² + d_h²)/V²,   ‖x_uv‖ ≤ B+

with the data term D = ‖Φ(x) − Φ0‖²/‖Φ0‖² weighted by C for inversion, and D = −⟨w, Φ(x)⟩ with weight 1 for
activation maximisation and caricatures (spec mv2016.md §1.5, §5). B = 80, V = B/6.5, B+ = 160.
AdaGrad-with-momentum (ρ 0.9) with η_t = H·W·LR_t, LR = 0.05·B²/6 = 53.33; 300 jittered steps, then (inversion
only) 50 steps at 0.1·LR without jitter. Jitter T per layer = max(round(stride/4), 1), derived from the model (it
reproduces the spec's AlexNet and VGG16 tables). Constants: ``shared/spec/mv2016.md``.

The stage change restarts the optimiser's state — m *and* the squared-gradient accumulator G — because the
released inversion runs its two stages as two chained ``nnpreimage`` calls (``exp_inversion.m``, spec §4), each
with fresh state; inside one call the code also meant to clear G (the §2 typo).
``problem(..., choices=Choices(keep_accumulator=True))`` keeps G instead (spec §2 / §8's "reset m, keep G", the
typo's behaviour as if both stages ran in one call); the choice is recorded in the run's config
(``optimizer.reset_accumulator``).

Activation maximisation works at any layer: the classification layer (fc8) takes category numbers, every other
layer channel indices (``units``; one-hot at the spatial centre of the channel, spec §5). The ``mosaic`` experiment
is the paper's 25-filter mosaic (``exp_maximization.m``): one neuron of each of 25 channels, each at the centre of
its cell of a 5 × 5 lattice (cell ≈ 1.1·rf/stride output positions, at least 4, made odd), all in one image whose
size is the input that gives the layer exactly the lattice's map (:mod:`tfrestore.nets.lattice`). Every neuron's
weight is (10000/rf²)/(number of filters)/max_k, max_k the channel's largest response over images and positions
(``get_neuron_stats.m``): over ``--data``'s images, else over the embedded photos (the output says which).
``Choices(max_k_of_filter_count=True)`` reproduces the released code's indexing slip (``innerWeight(k)``, k the number
of filters: every neuron scaled by channel k's max_k).

``--optimizer=adam`` runs the thesis code's variant of the inversion benchmark instead (spec §9.2–§9.4), every
difference of §9.4 that tfrestore can reproduce:

- Adam (TF1 ε 1e-8), gradients clipped by value at 100; learning rates f·(1e-2, 3e-3, 1e-3) with f = B²/α from
  breakpoints (0, 1000, 2000) that the thesis engine applies *after* a step (step c runs at the rate of the last
  breakpoint ≤ c − 1), 3,500 steps; every step count scales with ``--steps``.
- Jitter: zero-pad and crop (:class:`tfrestore.optimize.transforms.PadCropJitter`, offsets {0…t} with the thesis' per-layer
  t table), switched off after step 2,750. The thesis padded its RGB image with zeros, i.e. black.
- Data term C·Σ(Φ0 − Φ(x))²/Σ(Φ0·Φ(x)) (``NormedMSELoss``; C: the thesis' per-layer table, or the C sweep).
- Initialisation: the target image itself, as the un-jittered window reads it.
- SoftRange: (1/(HW·B^α))·Σ_uv ‖y_uv − ȳ‖^α on the thesis' normalised input y = RGB − the thesis' network mean
  (scalar 114.799 for AlexNet, the RGB vector for VGG), ȳ the scalar mean of y over all axes; TV as above.
- Range: every pixel pulled back into the radius-160 ball around μ_RGB = (123.68, 116.779, 103.939), for AlexNet
  too.
What it cannot reproduce: the thesis' network (TF AlexNet with scalar mean and SAME conv1 in its partial build) and
its min–max-stretched PNG scoring; tfrestore uses the registry's nets.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfrestore import data, nets
from tfrestore.nets import lattice
from tfrestore.optimize import objectives as O
from tfrestore.optimize import optim as optimizers
from tfrestore.optimize import param, transforms
from tfrestore.optimize.engine import Problem
from tfrestore.optimize.inversion import Extractors, feature_objective, group_by_layer, image_space

from . import common, paper

DESCRIPTION = "M&V 2016 natural pre-images: inversion (300 jittered + 50), activation maximisation, caricature"

B, B_PLUS, ALPHA, BETA = 80.0, 160.0, 6.0, 2.0
V = B / 6.5
LR = 0.05 * B ** 2 / ALPHA               # 53.33; the step used is η_t = H·W·LR_t
RHO = 0.9
JITTER_STEPS, PLAIN_STEPS = 300, 50
PLAIN_LR_FACTOR = 0.1                    # the second (inversion) stage runs at 0.1·LR
RESET_ACCUMULATOR_AT_STAGE_CHANGE = True   # two chained nnpreimage calls (exp_inversion.m, §4): fresh G and m
C_SWEEP = (1.0, 20.0, 100.0, 300.0)
RESTARTS = 4                 # evaluation_protocols.md §2.3: "4 random restarts" (figure_mean_variation_in_relative_error.m)
LOG_EVERY = 20                           # iterates saved every 20 iterations (§3)

# The thesis code's one-C-per-layer choice (third-party, spec §6.1/§6.2/§9.3; the paper sweeps C), by net family.
# Layers not listed (pool5 onward) get 1.
_ALEX_300 = ("conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2", "conv3", "relu3")
_VGG_300 = tuple(f"{k}{b}_{i}" for b in range(1, 5) for i in range(1, 4) for k in ("conv", "relu")) + \
    ("pool1", "pool2", "pool3")
C_TABLES = {
    "alexnet": {**dict.fromkeys(_ALEX_300, 300.0), "conv4": 100.0, "relu4": 100.0, "conv5": 20.0, "relu5": 20.0},
    "vgg": {**dict.fromkeys(_VGG_300, 300.0), **dict.fromkeys(("pool4", "conv5_1", "relu5_1"), 100.0),
            **dict.fromkeys(("conv5_2", "relu5_2", "conv5_3", "relu5_3"), 20.0)},
}
# Default layers per experiment and net family. Caricatures: conv5 and fc8 on the AlexNets, VGG16 layers 29 and 36
# (conv5_3, fc8) in exp_enhance.m (§6.2).
CARICATURE_LAYERS = {"alexnet": ("conv5", "fc8"), "vgg": ("conv5_3", "fc8")}
MAXIMIZATION_LAYERS = {"alexnet": ("fc8",), "vgg": ("fc8",)}
C_SWEEP_LAYERS = {"alexnet": ("pool5",), "vgg": ("pool5",)}
# fc8 units of the paper's activation-maximisation figure (exp_all.m)
CATEGORIES = {"black swan": 100, "goose": 99, "tree frog": 31, "cheeseburger": 933, "coffee mug": 504,
              "comic book": 917, "vending machine": 886}
MAXIMIZATION_CHANNELS = tuple(range(len(CATEGORIES)))   # default channels at any other layer
# w = one-hot × (10000/rf²)/(number of filters)/max_k (§5); one filter per image for `maximization`, 25 for `mosaic`
NEURON_SCALE, FILTERS_PER_IMAGE = 10000.0, 1
MOSAIC_FILTERS = 25                      # filters 1:25 of a layer in one lattice (exp_all.m setup_maximization)
MOSAIC_LAYERS = {"alexnet": ("conv1",), "vgg": ("conv1_1",)}     # one layer per run: its lattice sets the size
MAX_K_FLOOR = 1e-3           # a channel that never fires on the data (max_k 0) would get an infinite weight
MAX_K_BATCH = 16             # images per forward pass of the max_k statistics (get_neuron_stats.m: 16)

# ---- the thesis code's variant (--optimizer=adam; spec §9.2–§9.4) -------------------------------------------------
THESIS_OPTIMIZER = "adam"
THESIS_STEPS = 3500
THESIS_LR_FACTOR = B ** 2 / ALPHA        # f = 1066.67
THESIS_LR_BREAKPOINTS = ((0, 1e-2), (1000, 3e-3), (2000, 1e-3))   # (iteration, lr / f), applied after a step
THESIS_JITTER_STOP = 2750                # steps 1 … 2,750 jittered
THESIS_GRAD_CLIP = 100.0
THESIS_ADAM_EPSILON = 1e-8               # tf.train.AdamOptimizer's default
THESIS_DATA_NORMALISATION = "dot"        # NormedMSELoss: Σ(t − r)²/Σ(t·r) (§9.1)
THESIS_RANGE_CENTRE = (123.68, 116.779, 103.939)                  # μ_RGB, for AlexNet too
THESIS_NETWORK_MEAN = {"alexnet": (114.799,) * 3, "vgg": THESIS_RANGE_CENTRE}   # NormModule offsets, RGB
# get_jitter_and_mse_weight's jitter t (offsets 0…t): (first layer of a run of layers, t), in forward order
THESIS_JITTER_T = {"alexnet": (("conv1", 1), ("pool1", 2), ("pool2", 4), ("pool5", 8)),
                   "vgg": (("conv1_1", 0), ("pool2", 1), ("pool3", 2), ("pool4", 4), ("pool5", 8))}


def c_for(net: str, layer: str) -> float:
    """The thesis' per-layer inversion constant C."""
    return C_TABLES.get(nets.spec(net).family, {}).get(layer, 1.0)


def thesis_jitter_t(net: str, layer: str) -> int:
    """The thesis' jitter t of a layer: the value of the last run of layers that starts at or before it."""
    family = nets.spec(net).family
    if family not in THESIS_JITTER_T:
        raise ValueError(f"the thesis variant (--optimizer={THESIS_OPTIMIZER}) has jitter tables for the "
                         f"{' and '.join(THESIS_JITTER_T)} families, not for {net} ({family}); use another optimizer")
    order = nets.layer_names(net)
    position = order.index(layer)
    return [t for start, t in THESIS_JITTER_T[family] if order.index(start) <= position][-1]


class ThesisSoftRange(O.Term):
    """The thesis' SoftRangeLoss with its weight: (1/(HW·B^α))·Σ_uv (Σ_c (y_uvc − ȳ)²)^{α/2}, where
    y = canvas + ``offset`` is the thesis' NormModule output (RGB − its network mean; ``offset`` maps tfrestore's
    image space there) and ȳ is the scalar mean of y over pixels and channels (spec mv2016.md §9.1, §9.3)."""

    def __init__(self, alpha: float, bound: float, offset):
        self.alpha, self.bound, self.name = alpha, bound, f"soft_range{alpha:g}"
        self.offset = tf.constant(offset, tf.float32)
        super().__init__()

    def value(self, ctx):
        y = ctx.canvas + self.offset
        y = y - tf.reduce_mean(y, axis=[1, 2, 3], keepdims=True)
        n2 = tf.reduce_sum(tf.square(y / self.bound), axis=-1)
        return tf.reduce_mean(tf.pow(n2, self.alpha / 2), axis=[1, 2])


# ---- the three data terms ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Inputs:
    """What a data term is built from: the net, one layer per requested problem (maximisation: per layer), the
    extractors, the image (image space [1, H, W, 3] and RGB), the units to maximise, whether the caricature's
    target is the raw image (exp_enhance.m's quirk), the inversion's normalisation, and for maximisation each
    layer's per-channel max_k (None: over the embedded photos) and whether to index it as the released code did."""
    net: str
    layers: tuple[str, ...]
    extractors: Extractors
    x0: np.ndarray
    image_rgb: np.ndarray
    units: tuple[int, ...] | None = None
    raw_target: bool = False
    normalise: bool | str = True
    max_k: Mapping[str, np.ndarray] | None = None
    max_k_of_filter_count: bool = False


DataTerm = tuple[O.Objective, list[str], list[str]]      # (objective, labels, layer per problem)


def _inversion(inp: Inputs) -> DataTerm:
    x0 = np.repeat(inp.x0, len(inp.layers), axis=0)
    term, _ = feature_objective(inp.extractors, inp.net, inp.layers, x0, normalise=inp.normalise)
    return term, list(inp.layers), list(inp.layers)


def max_responses(extractors: Extractors, net: str, layers: Sequence[str],
                  images: Sequence[str]) -> dict[str, np.ndarray]:
    """max_k (spec mv2016.md §5, ``get_neuron_stats.m``): per layer, each channel's largest response over all images
    and positions, as a running maximum that starts at 0 (a channel that never fires gets 0), floored at
    ``MAX_K_FLOOR`` so its weight stays finite. ``images``: sample names or files, each resized (anisotropically,
    as every M&V input here) to the extractors' input size and read ``MAX_K_BATCH`` at a time. Returns
    {layer: [channels] float32}."""
    size = int(extractors.model.input.shape[1])
    out = {layer: 0.0 for layer in layers}
    for i in range(0, len(images), MAX_K_BATCH):
        batch = image_space(net, np.stack([data.load_image(n, size) for n in images[i:i + MAX_K_BATCH]]))
        for layer in layers:
            f = extractors.features(net, layer, batch)
            out[layer] = np.maximum(out[layer], f.max(axis=tuple(range(f.ndim - 1))))
    return {layer: np.maximum(m, MAX_K_FLOOR).astype(np.float32) for layer, m in out.items()}


def max_k_statistics(extractors: Extractors, net: str, layers: Sequence[str],
                     folder: str | None) -> tuple[dict[str, np.ndarray], str]:
    """(max_k by layer, where it came from): over the images of ``folder`` (``--data``), else over the embedded
    photos — a stand-in for the paper's 1/1000 subsample of ImageNet's training set, said so in the source text."""
    if folder:
        files = [str(f) for f in data.image_folder(folder)]
        return max_responses(extractors, net, layers, files), f"{len(files)} images in {folder}"
    names = data.sample_image_names()
    return max_responses(extractors, net, layers, names), (
        f"the {len(names)} embedded photos (no --data; the paper used a 1/1000 subsample of ImageNet's training set)")


def _neuron_scales(inp: Inputs, layer: str, channels: Sequence[int], rf: int) -> np.ndarray:
    """(10000/rf²)/(number of filters)/max_k per filter (§5). max_k: ``inp.max_k[layer]``, else over the embedded
    photos at the image's size; with ``max_k_of_filter_count`` every filter takes channel k's (k = the number of
    filters, 1-based) as the released code's ``innerWeight(k)`` does."""
    if inp.max_k is not None and layer in inp.max_k:
        max_k = np.asarray(inp.max_k[layer], np.float32)
    else:
        max_k = max_responses(inp.extractors, inp.net, [layer], data.sample_image_names())[layer]
    k = len(channels)
    idx = [k - 1] * k if inp.max_k_of_filter_count else list(channels)
    return NEURON_SCALE / rf ** 2 / k / max_k[idx]


def _unit_names(net: str, layer: str, units: Sequence[int] | None) -> list[tuple[int, str]]:
    """(unit, label) pairs: category numbers at the classification layer, channel indices elsewhere."""
    if layer == nets.spec(net).logits:
        names = {u: name for name, u in CATEGORIES.items()}
        return [(u, names.get(u, f"category {u}")) for u in (units or CATEGORIES.values())]
    return [(u, f"channel {u}") for u in (units or MAXIMIZATION_CHANNELS)]


def _maximization(inp: Inputs) -> DataTerm:
    """−⟨w, Φ(x)⟩ with w one-hot at the spatial centre of a channel (or at a unit of a vector code), scaled by
    (10000/rf²)/(number of filters)/max_k (§5); one problem per (layer, unit)."""
    layers = list(dict.fromkeys(inp.layers))
    per_layer = [_unit_names(inp.net, layer, inp.units) for layer in layers]
    n = sum(len(u) for u in per_layer)
    parts, labels, layer_of = [], [], []
    for layer, units in zip(layers, per_layer):
        shape = tuple(inp.extractors(layer).output[layer].shape[1:])
        channels = shape[-1]
        bad = [u for u, _ in units if not 0 <= u < channels]
        if bad:
            what = "category numbers" if layer == nets.spec(inp.net).logits else "channel indices"
            raise ValueError(f"units {bad} are out of range for {inp.net} {layer}, which has {channels} "
                             f"{what} (0…{channels - 1}); pass units in that range")
        w = np.zeros((len(units),) + shape, np.float32)
        centre = tuple(s // 2 for s in shape[:-1])
        rf, _ = nets.receptive_field(inp.extractors.model, layer)
        for j, (u, _) in enumerate(units):        # one filter per image (FILTERS_PER_IMAGE)
            w[(j, *centre, u)] = _neuron_scales(inp, layer, [u], rf)[0]
        first = len(labels)
        problems = None if len(units) == n else list(range(first, first + len(units)))
        parts.append(O.inner_product(inp.extractors(layer), layer, w, problems=problems))
        labels += [f"{layer}:{name}" for _, name in units]
        layer_of += [layer] * len(units)
    return sum(parts, 0), labels, layer_of


def _mosaic(inp: Inputs) -> DataTerm:
    """−⟨w, Φ(x)⟩ with w one neuron per filter on M&V's lattice (§5, exp_maximization.m), one image per layer;
    filters: ``inp.units`` or channels 0 … 24. The layer's map must be the lattice's (the net built at
    :func:`tfrestore.nets.lattice.find_image_size`'s size: :func:`mosaic_setup`)."""
    parts, labels = [], []
    for j, layer in enumerate(inp.layers):
        shape = tuple(inp.extractors(layer).output[layer].shape[1:])
        channels = list(inp.units) if inp.units else list(range(min(MOSAIC_FILTERS, shape[-1])))
        if len(shape) != 3 or not all(0 <= c < shape[-1] for c in channels):
            raise ValueError(f"a mosaic needs a convolutional layer and channels in 0…{shape[-1] - 1}; "
                             f"{inp.net} {layer} has a map of shape {shape}")
        rf, stride = nets.receptive_field(inp.extractors.model, layer)
        spacing = lattice.lattice_spacing(rf, stride, len(channels))
        w = lattice.lattice_weights(shape, channels, _neuron_scales(inp, layer, channels, rf), spacing)
        parts.append(O.inner_product(inp.extractors(layer), layer, w,
                                     problems=None if len(inp.layers) == 1 else [j]))
        labels.append(f"{layer}: channels {channels[0]}…{channels[-1]} on a {spacing}-wide lattice")
    return sum(parts, 0), labels, list(inp.layers)


def _caricature(inp: Inputs) -> DataTerm:
    """−⟨w, Φ(x)⟩ with w = max(Φ(x0), 0)/‖max(Φ(x0), 0)‖² (§5)."""
    parts = []
    source = inp.image_rgb[None].astype(np.float32) if inp.raw_target else inp.x0
    for layer, idx in group_by_layer(inp.layers).items():
        pos = np.maximum(inp.extractors.features(inp.net, layer, source), 0)
        w = np.repeat(pos / np.sum(pos ** 2), len(idx), axis=0)
        parts.append(O.inner_product(inp.extractors(layer), layer, w,
                                     problems=None if len(idx) == len(inp.layers) else idx))
    return sum(parts, 0), list(inp.layers), list(inp.layers)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One experiment: its data term, default layers by net family (None: the net's figure layers), a C sweep (each
    layer once per C), whether the data term is weighted by C (inversion) or by 1 (−⟨w, Φ⟩), whether the 50-step
    plain stage follows, and whether the canvas starts at the image (caricature) or at M&V's scaled noise."""
    description: str
    data_term: Callable[[Inputs], DataTerm]
    layers: Mapping[str, tuple[str, ...]] | None = None
    c_sweep: tuple[float, ...] | None = None
    restarts: int = 1
    weighted_by_c: bool = True
    plain_stage: bool = False
    init_from_image: bool = False


EXPERIMENT_SETTINGS = {
    "inversion": Setting("all 20 layers, thesis C per layer, 300 jittered + 50 plain steps", _inversion,
                         plain_stage=True),
    "c_sweep": Setting("one layer (default pool5) with C ∈ {1, 20, 100, 300}", _inversion, layers=C_SWEEP_LAYERS,
                       c_sweep=C_SWEEP, plain_stage=True),
    "restarts": Setting(f"variability across restarts: each layer {RESTARTS}× from its own noise, batched in one "
                        "graph; per layer the mean √rel error ± 95 % CI over the restarts", _inversion,
                        restarts=RESTARTS, plain_stage=True),
    "maximization": Setting("activation maximisation: fc8 categories (the paper's), or channels of any layer",
                            _maximization, layers=MAXIMIZATION_LAYERS, weighted_by_c=False),
    "mosaic": Setting("the paper's 25-filter mosaic: one neuron of each of channels 0…24 on a 5 × 5 lattice in one "
                      "image sized to the lattice (find_image_size); one layer per run, max_k from --data",
                      _mosaic, layers=MOSAIC_LAYERS, weighted_by_c=False),
    "caricature": Setting("caricatures of conv5 / fc8 codes (VGG16: conv5_3 / fc8), initialised from the image",
                          _caricature, layers=CARICATURE_LAYERS, weighted_by_c=False, init_from_image=True),
}
EXPERIMENTS = {name: s.description for name, s in EXPERIMENT_SETTINGS.items()}
MAX_K_EXPERIMENTS = ("maximization", "mosaic")          # the experiments whose weights divide by max_k
DEFAULT_EXPERIMENT = "inversion"


def schedule(setting: Setting, steps: int | None) -> optimizers.Schedule:
    """300 jittered steps at LR, then (inversion) 50 without jitter at 0.1·LR; scaled to ``steps``."""
    stages = [optimizers.Stage(JITTER_STEPS, LR, jitter=True)]
    if setting.plain_stage:
        stages.append(optimizers.Stage(PLAIN_STEPS, PLAIN_LR_FACTOR * LR, jitter=False))
    s = optimizers.Schedule(stages)
    return s.scaled(steps) if steps else s


def authors_schedule(setting: Setting, steps: int | None, size: int) -> optimizers.Schedule:
    """:func:`schedule` with AdaGrad-momentum's step η_t = H·W·LR_t for a size × size window (§2)."""
    return optimizers.Schedule([dataclasses.replace(st, lr=st.lr * size * size)
                                for st in schedule(setting, steps).stages])


def thesis_schedule(total: int | None = None) -> optimizers.Schedule:
    """The thesis engine's schedule, scaled to ``total`` steps: step c (1-based) runs at f × the rate of the last
    breakpoint with iteration ≤ c − 1 (``lr_lower_points`` are applied after a step, §9.2), jittered while
    c ≤ 2,750."""
    cuts = sorted({it for it, _ in THESIS_LR_BREAKPOINTS if it > 0} | {THESIS_JITTER_STOP, THESIS_STEPS})
    stages, done = [], 0
    for cut in cuts:
        rate = [lr for it, lr in THESIS_LR_BREAKPOINTS if it <= done][-1]
        stages.append(optimizers.Stage(cut - done, rate * THESIS_LR_FACTOR, jitter=done < THESIS_JITTER_STOP))
        done = cut
    s = optimizers.Schedule(stages)
    return s.scaled(total) if total and total != s.total else s


def default_layers(setting: Setting, net: str) -> list[str]:
    if setting.layers is None:
        return nets.figure_layers(net)
    family = nets.spec(net).family
    if family not in setting.layers:
        raise ValueError(f"this M&V 2016 experiment has default layers for the {', '.join(setting.layers)} "
                         f"families, not for {net} ({family}); pass --layers")
    return list(setting.layers[family])


@dataclasses.dataclass(frozen=True)
class Choices:
    """What a problem may change from the paper's defaults: ``optimizer`` (``"adam"``: the thesis variant, §9;
    another name replaces AdaGrad-momentum), ``c_values`` (one inversion constant C per problem instead of the
    thesis table), ``units`` (maximisation's category numbers at the classification layer, channel indices
    elsewhere; the mosaic's filters), ``raw_caricature_target`` (the caricature's target computed from the raw RGB
    image, exp_enhance.m's quirk), ``keep_accumulator`` (keep AdaGrad's G at the stage change; see the module
    docstring), ``max_k`` (maximisation: per layer, each channel's max response, :func:`max_k_statistics`; default:
    over the embedded photos) and ``max_k_of_filter_count`` (the released code's ``innerWeight(k)`` slip)."""
    optimizer: str | None = None
    c_values: Sequence[float] | None = None
    units: Sequence[int] | None = None
    raw_caricature_target: bool = False
    keep_accumulator: bool = not RESET_ACCUMULATOR_AT_STAGE_CHANGE
    max_k: Mapping[str, np.ndarray] | None = None
    max_k_of_filter_count: bool = False


@dataclasses.dataclass(frozen=True)
class _Batch:
    """What either variant (authors' or thesis') builds its problem from, besides the weighted data term: one layer
    and one label per problem, the data-term settings recorded in the config, and the run's choices."""
    net: str
    image_rgb: np.ndarray
    extractors: Extractors
    setting: Setting
    layer_of: list[str]
    labels: list[str]
    settings: dict
    seed: int
    steps: int | None
    choices: Choices


def problem(setting: Setting, *, net: str, image_rgb: np.ndarray, extractors: Extractors, layers=None,
            seed: int = 0, steps: int | None = None, choices: Choices = Choices()) -> Problem:
    """The batch of one experiment: a problem per layer (per layer and C for the sweep, per layer and unit for
    maximisation). ``choices``: what differs from the paper's defaults (:class:`Choices`);
    ``choices.optimizer="adam"``: the thesis variant (inversion experiments only)."""
    chosen = common.resolve_layers(net, layers) if layers else default_layers(setting, net)
    if setting.c_sweep:
        chosen = [l for l in chosen for _ in setting.c_sweep]
    chosen = [l for l in chosen for _ in range(setting.restarts)]      # each restart starts from its own noise
    thesis = choices.optimizer == THESIS_OPTIMIZER
    if thesis and not setting.weighted_by_c:
        raise ValueError(f"--optimizer={THESIS_OPTIMIZER} is the thesis' inversion benchmark (spec mv2016.md §9); "
                         "maximisation and caricatures run M&V's AdaGrad-momentum (leave --optimizer unset)")
    inputs = Inputs(net, tuple(chosen), extractors, image_space(net, image_rgb[None]), image_rgb,
                    tuple(choices.units) if choices.units else None, choices.raw_caricature_target,
                    THESIS_DATA_NORMALISATION if thesis else True, choices.max_k, choices.max_k_of_filter_count)
    data_term, labels, layer_of = setting.data_term(inputs)
    n = len(layer_of)
    settings: dict = {}
    if setting.weighted_by_c:
        if setting.c_sweep:
            weight = np.array(setting.c_sweep * (n // len(setting.c_sweep)), np.float32)
            labels = [f"{l} C{ci:g}" for l, ci in zip(layer_of, weight)]
        else:
            weight = np.array(choices.c_values or [c_for(net, l) for l in layer_of], np.float32)
        if setting.restarts > 1:
            labels = [f"{l} r{i % setting.restarts + 1}" for i, l in enumerate(layer_of)]
        settings["C"] = weight.tolist()
    else:
        weight = np.ones(n, np.float32)
    settings["data_weight"] = weight.tolist()
    batch = _Batch(net, image_rgb, extractors, setting, layer_of, labels, settings, seed, steps, choices)
    return (_thesis_problem if thesis else _authors_problem)(weight * data_term, batch)


def _authors_problem(data_term: O.Objective, b: _Batch) -> Problem:
    """nnpreimage: canvas jitter, bounded range, AdaGrad-momentum with η = H·W·LR."""
    n, size = len(b.layer_of), b.image_rgb.shape[0]
    objective = data_term + O.bounded_range(ALPHA, B) + O.tv(BETA, mean=True, scale=V)
    t = np.array([nets.jitter_t(b.extractors.model, l) for l in b.layer_of])
    jitter = transforms.Jitter(size, t, n)
    canvas = size + jitter.margin
    x0 = np.repeat(image_space(b.net, b.image_rgb[None]), n, axis=0)
    if b.setting.init_from_image:        # each image in the middle of its own canvas, where its centre window is
        init = param.place_in_canvas(x0, canvas, (t - 1) // 2)
    else:
        init = param.init_mv2016(n, canvas, B, b.seed)
    opt = common.pick_optimizer(b.choices.optimizer,
                                optimizers.AdaGradMomentum(RHO, reset_accumulator=not b.choices.keep_accumulator))
    adagrad = isinstance(opt, optimizers.AdaGradMomentum)
    sched = authors_schedule(b.setting, b.steps, size) if adagrad else schedule(b.setting, b.steps)
    return Problem(objective=objective, param=param.Pixels(init), optimizer=opt, schedule=sched, labels=b.labels,
                   jitter=jitter, project=lambda x: transforms.project_colour_norm(x, B_PLUS), layers=b.layer_of,
                   x0=x0, settings={**b.settings, "jitter_T": t.tolist()})


def _thesis_problem(data_term: O.Objective, b: _Batch) -> Problem:
    """The thesis' mv2016 benchmark (§9.3): pad-and-crop jitter, SoftRange, Adam from the target image."""
    n, size = len(b.layer_of), b.image_rgb.shape[0]
    mean = nets.mean_rgb(b.net)
    family = nets.spec(b.net).family
    t = np.array([thesis_jitter_t(b.net, l) for l in b.layer_of])
    soft_range = ThesisSoftRange(ALPHA, B, offset=mean - np.asarray(THESIS_NETWORK_MEAN[family], np.float32))
    objective = data_term + soft_range + O.tv(BETA, mean=True, scale=V)
    x0 = np.repeat(image_space(b.net, b.image_rgb[None]), n, axis=0)
    centre = np.asarray(THESIS_RANGE_CENTRE, np.float32) - mean          # μ_RGB in image space
    opt = optimizers.Adam(epsilon=THESIS_ADAM_EPSILON, epsilon_form="tf1", clip_value=THESIS_GRAD_CLIP)
    return Problem(objective=objective, param=param.Pixels(x0.copy()), optimizer=opt,
                   schedule=thesis_schedule(b.steps), labels=b.labels,
                   jitter=transforms.PadCropJitter(size, t, n, fill=-mean),
                   project=lambda x: transforms.project_colour_norm(x, B_PLUS, centre=centre), layers=b.layer_of,
                   x0=x0, settings={**b.settings, "jitter_t": t.tolist()})


@dataclasses.dataclass(frozen=True)
class Flags:
    """The command-line flags of ``--paper=mv2016``."""
    net: str = paper.flag("alexnet", "the network (the paper's AlexNet; VGG16 and the other nets too)",
                          source="mv2016.md §6, §7")
    layers: tuple[str, ...] | None = paper.flag(None, "layers (default: the experiment's)")
    image: str = paper.flag("chelsea", "the image (a sample name or a file)")
    weights: str = paper.weights_flag()
    steps: int | None = paper.flag(None, "optimisation steps; the 300 jittered (+ 50 plain) steps are rescaled",
                                   source="mv2016.md §4")
    optimizer: str | None = paper.flag(None, "replace AdaGrad-momentum; 'adam': the thesis variant",
                                       source="mv2016.md §2, §9")
    experiment: str = paper.flag(DEFAULT_EXPERIMENT, "inversion, c_sweep, restarts, maximization, mosaic or "
                                 "caricature", source="mv2016.md §5")
    data: str | None = paper.flag(None, "maximization / mosaic: a folder of images for max_k (each channel's "
                                  "largest response); default: the embedded photos", source="mv2016.md §5")

    def __post_init__(self) -> None:
        if self.experiment not in EXPERIMENT_SETTINGS:
            raise ValueError(f"unknown experiment '{self.experiment}' for mv2016; valid: "
                             f"{', '.join(EXPERIMENT_SETTINGS)}")
        if self.net not in nets.REGISTRY:
            raise ValueError(f"unknown net '{self.net}'; valid nets: {', '.join(nets.net_names())}")
        if self.data is not None and self.experiment not in MAX_K_EXPERIMENTS:
            raise ValueError(f"--data is the image folder of max_k, which only --experiment="
                             f"{' or '.join(MAX_K_EXPERIMENTS)} uses; leave it out for {self.experiment}")
        if self.data is not None and not Path(self.data).expanduser().is_dir():
            raise FileNotFoundError(f"--data folder '{self.data}' does not exist or is not a folder; give a folder "
                                    "of images for max_k, or leave --data out to use the embedded photos")


def default_out(flags: Flags) -> str:
    return f"runs/mv2016_{flags.net}_{flags.experiment}"


def mosaic_setup(s: common.Setup, layers: Sequence[str],
                 filters: int = MOSAIC_FILTERS) -> tuple[common.Setup, int]:
    """The run's setup for a mosaic of ``filters`` filters at one layer: the network up to the layer at the input
    size whose map there is the lattice (:func:`tfrestore.nets.lattice.find_image_size`, weights copied), and that
    size."""
    if len(layers) != 1:
        raise ValueError(f"the mosaic runs one layer at a time (its lattice sets the image size), got {len(layers)}: "
                         f"{', '.join(layers)}; pass one --layers value per run")
    layer = layers[0]
    rf, stride = nets.receptive_field(s.model, layer)
    k = min(filters, int(s.extractors(layer).output[layer].shape[-1]))
    side, _ = lattice.lattice(k, lattice.lattice_spacing(rf, stride, k))
    size = lattice.find_image_size(s.model, layer, side)
    trunk = lattice.conv_trunk(s.model, layer, size)
    return dataclasses.replace(s, model=trunk, extractors=Extractors(trunk)), size


def _max_k(flags: Flags, s: common.Setup) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """max_k for the maximisation experiments (over ``--data`` or the embedded photos, at the network's input
    size, said on the output); (None, None) for the others."""
    if flags.experiment not in MAX_K_EXPERIMENTS:
        return None, None
    setting = EXPERIMENT_SETTINGS[flags.experiment]
    layers = common.resolve_layers(flags.net, flags.layers) if flags.layers else default_layers(setting, flags.net)
    max_k, source = max_k_statistics(s.extractors, flags.net, layers, flags.data)
    print(f"max_k: each channel's largest response over {source}", flush=True)
    return max_k, source


def run(flags: Flags, ctx: paper.RunContext) -> dict:
    """Run one experiment (``flags.experiment``) and write its outputs into ``ctx.out``; returns the metrics.
    (Other units to maximise, the accumulator kept, XLA: build the problem with :func:`problem` and
    :class:`Choices`, and run it with ``common.solve``.)"""
    net, experiment = flags.net, flags.experiment
    s = common.setup(paper="mv2016", net=net, experiment=experiment, weights=flags.weights, out=ctx.out,
                     logdir=ctx.logdir, seed=ctx.seed)
    max_k, source = _max_k(flags, s)
    size = None
    if experiment == "mosaic":
        layers = common.resolve_layers(net, flags.layers) if flags.layers else \
            default_layers(EXPERIMENT_SETTINGS[experiment], net)
        s, size = mosaic_setup(s, layers)
        print(f"mosaic: {net} {layers[0]} at {size}×{size} pixels (its map is the lattice)", flush=True)
    img = common.load(net, flags.image, size)
    p = problem(EXPERIMENT_SETTINGS[experiment], net=net, image_rgb=img, extractors=s.extractors,
                layers=flags.layers, seed=ctx.seed, steps=flags.steps,
                choices=Choices(optimizer=flags.optimizer, max_k=max_k))
    variant = "thesis (§9)" if flags.optimizer == THESIS_OPTIMIZER else "authors (nnpreimage)"
    config = {"paper": "mv2016", "experiment": experiment, "image": flags.image, "B": B, "B_plus": B_PLUS, "V": V,
              "alpha": ALPHA, "beta": BETA, "variant": variant, "optimizer": p.optimizer.config()}
    if max_k is not None:
        config.update(max_k_source=source, max_k={k: v.tolist() for k, v in max_k.items()},
                      image_size=img.shape[0])
    jitter = {k: p.settings[k] for k in ("jitter_T", "jitter_t") if k in p.settings}
    print(f"{variant}: jitter {jitter}, {p.schedule}", flush=True)
    how = common.Reporting(image_rgb=img, config=config, title=f"M&V 2016 {experiment} — {net}",
                           log_every=LOG_EVERY, resume=ctx.resume, progress=ctx.progress,
                           has_target=experiment not in MAX_K_EXPERIMENTS)
    return common.finish(common.solve(p, s, how), s)
