"""The paper networks by name: build, tap layers, preprocess.

>>> model = build("caffenet")                       # converted weights if present, else seeded random (warns)
>>> feats = feature_extractor(model, ["conv3", "relu3"])(preprocess("caffenet", images))

Images going into :func:`preprocess` are RGB on the 0–255 scale (uint8, or float in 0–255), shaped (H, W, 3) or
(N, H, W, 3). The output is the network's own input space (BGR − mean for the Caffe nets, RGB mean/std for the
ONNX / torchvision nets).

Layer names are the originals' (``conv1``, ``relu1``, ``norm1``, ``pool1``, …, ``fc8``, ``prob``; ``conv1_1`` …;
``layer1.0.conv1`` …). Aliases also resolve: the thesis code's ``conv1/lin`` (pre-ReLU) and ``conv1/relu``,
``lrn1``, ``fc6/lin``, ``softmax``; M&V's 1-based MatConvNet layer indices as ``"l7"`` (e.g. ``l15`` = pool5); and for
ResNet the stage names ``layer1`` … ``layer4`` and the study's ``res2`` (= ``layer2``) and ``middle2`` (the first conv
of stage 2, ``layer2.0.conv1``). Keras forbids ``/`` in layer names, so ``/`` names exist only as aliases.
"""
from __future__ import annotations

import dataclasses
import inspect
import warnings
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from .. import weights as _weights
from . import builders


@dataclasses.dataclass(frozen=True)
class NetSpec:
    """What the registry knows about a network."""
    builder: Callable[..., keras.Model]
    input_size: int
    channel_order: str            # "BGR" (Caffe) or "RGB"
    mean: tuple[float, float, float]   # in RGB order, on the scale the net sees before dividing by std
    std: tuple[float, float, float] | None   # None: no division (Caffe); else RGB std on 0–1 scale
    original: str                 # the original weight file
    description: str
    family: str                   # "alexnet", "vgg" or "resnet": keys per-family tables of the papers
    matconvnet_order: tuple[str, ...] = ()   # M&V's 1-based layer indices (l1 … l20)
    figure_layers: tuple[str, ...] = ()      # the per-layer figures' layers (default: every conv/relu/pool/fc tap)
    hidden_taps: tuple[str, ...] = ()        # taps that are plumbing, not layers of the paper (never a default)
    stage_aliases: dict = dataclasses.field(default_factory=dict)   # extra alias -> tap (ResNet stages)
    layer_group: dict = dataclasses.field(default_factory=dict)     # M&V's three layer groups: tap -> 0, 1, 2
    logits: str = "fc8"                      # the classification layer (pre-softmax): what attacks and labels use

    @property
    def scale01(self) -> bool:
        return self.std is not None


_ALEX_MCN = ("conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2", "conv3", "relu3", "conv4",
             "relu4", "conv5", "relu5", "pool5", "fc6", "relu6", "fc7", "relu7", "fc8", "prob")
_CAFFENET_MCN = ("conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2") + _ALEX_MCN[8:]
_VGG_MCN = tuple(n for b, k, _ in builders.VGG_BLOCKS for n in
                 [x for i in range(1, k + 1) for x in (f"conv{b}_{i}", f"relu{b}_{i}")] + [f"pool{b}"]) + \
    ("fc6", "relu6", "fc7", "relu7", "fc8", "prob")

# Caffe per-channel means, RGB order. AlexNet/CaffeNet: the per-channel average of ilsvrc_2012_mean.npy.
_ALEX_MEAN = (122.67891434, 116.66876762, 104.00698793)
_VGG_MEAN = (123.68, 116.779, 103.939)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)



def _alex_groups(order: tuple[str, ...]) -> dict[str, int]:
    """M&V 2015's layer groups by MatConvNet index: l1–l6 → 0, l7–l12 → 1, l13–l20 → 2."""
    return {layer: 0 if i <= 6 else 1 if i <= 12 else 2 for i, layer in enumerate(order[:20], start=1)}


def _vgg_groups() -> dict[str, int]:
    """The thesis' analogous VGG split: blocks 1–2 → 0, blocks 3–4 → 1, block 5 and the fc layers → 2."""
    return {n: 0 if b <= 2 else 1 if b <= 4 else 2 for b, k, _ in builders.VGG_BLOCKS
            for n in [x for i in range(1, k + 1) for x in (f"conv{b}_{i}", f"relu{b}_{i}")] + [f"pool{b}"]}


_RESNET_STAGES = {f"{kind}{s}": (f"layer{s}.0.conv1" if kind == "middle" else f"layer{s}.1")
                  for s in range(1, 5) for kind in ("layer", "res", "middle")}

REGISTRY: dict[str, NetSpec] = {
    "alexnet": NetSpec(builders.alexnet, 227, "BGR", _ALEX_MEAN, None, "bvlc_alexnet.caffemodel",
                       "BVLC AlexNet, conv→ReLU→LRN→pool (Krizhevsky order; M&V 2016)", "alexnet", _ALEX_MCN,
                       figure_layers=_ALEX_MCN[:20], hidden_taps=("pool5_flat",),
                       layer_group=_alex_groups(_ALEX_MCN)),
    "caffenet": NetSpec(builders.caffenet, 227, "BGR", _ALEX_MEAN, None, "bvlc_reference_caffenet.caffemodel",
                        "BVLC reference CaffeNet, conv→ReLU→pool→LRN (M&V 2015)", "alexnet", _CAFFENET_MCN,
                        figure_layers=_CAFFENET_MCN[:20], hidden_taps=("pool5_flat",),
                        layer_group=_alex_groups(_CAFFENET_MCN)),
    "vgg16": NetSpec(builders.vgg16, 224, "BGR", _VGG_MEAN, None, "VGG_ILSVRC_16_layers.caffemodel",
                     "Caffe VGG16 (configuration D)", "vgg", _VGG_MCN, hidden_taps=("pool5_flat",),
                     layer_group=_vgg_groups()),
    "vgg16_bn": NetSpec(builders.vgg16_bn, 224, "RGB", _IMAGENET_MEAN, _IMAGENET_STD, "vgg16-bn-7.onnx",
                        "ONNX-zoo VGG16-BN (MXNet Gluon export)", "vgg", hidden_taps=("pool5_flat",),
                        layer_group=_vgg_groups()),
    "resnet18": NetSpec(builders.resnet18, 224, "RGB", _IMAGENET_MEAN, _IMAGENET_STD,
                        "resnet18-v1-7.onnx (or a torchvision export)", "ResNet-18 v1, torchvision layout", "resnet",
                        stage_aliases=_RESNET_STAGES, logits="fc"),
    "digits": NetSpec(builders.digits, 28, "RGB", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "none: trained by tfrestore",
                      "small CNN for the embedded 28×28 digits, trained here (tfrestore.classifier)", "digits",
                      hidden_taps=("pool2_flat",), logits="fc4"),
}

_SKIP_TAPS = ("_pad",)


def _spec(name: str) -> NetSpec:
    if name not in REGISTRY:
        raise ValueError(f"unknown net '{name}'; valid nets: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def net_names() -> list[str]:
    return sorted(REGISTRY)


def input_size(name: str) -> int:
    """Standard square input size in pixels (227 for the Caffe AlexNets, 224 otherwise)."""
    return _spec(name).input_size


def build(name: str, weights: str | Path | None = "auto", image_size: int | None = None, seed: int = 0,
          quiet: bool = False, **builder_kwargs) -> keras.Model:
    """Build a registered network.

    Args:
        name: one of :func:`net_names`.
        weights: ``"auto"`` loads ``$TFRESTORE_HOME/weights/<name>.weights.h5`` when present and otherwise uses
            seeded random weights with a loud warning; a path loads that file (shape-checked); ``None`` or
            ``"random"`` gives seeded random weights silently.
        image_size: square input size (default :func:`input_size`). Nets with fc layers need the standard size.
        seed: seed for random weights.
        builder_kwargs: passed to the builder (e.g. ``width=1/16`` for a slim VGG of the same topology).
    """
    spec = _spec(name)
    size = image_size or spec.input_size
    try:
        model = spec.builder(image_size=size, seed=seed, **builder_kwargs)
    except ValueError as e:
        raise ValueError(f"{name} cannot be built at {size}×{size}: {e}") from None
    source = "random"
    if weights == "auto":
        path = _weights.weight_path(name)
        if path.exists():
            _weights.load_weights(model, path)
            source = str(path)
        elif not quiet:
            warnings.warn(f"\n{'!' * 78}\n  No converted weights for '{name}' at {path}.\n  Using SEEDED RANDOM "
                          f"weights (seed {seed}): results show the method, not the paper's network.\n  Convert "
                          f"{spec.original} with `python -m weights_convert` (README.md).\n{'!' * 78}",
                          stacklevel=2)
    elif weights not in (None, "random"):
        _weights.load_weights(model, weights)
        source = str(weights)
    _tag(model, name, source)
    _TAP_CACHE.setdefault(name, _taps(model))
    return model


def _tag(model: keras.Model, net: str, source: str) -> None:
    """Record on the model itself which net it is and where its weights came from (no side tables)."""
    model.tfrestore_net, model.tfrestore_weights = net, source


def weights_source(model: keras.Model) -> str:
    """``"random"`` or the path the model's weights were loaded from (``"unknown"`` for foreign models)."""
    return getattr(model, "tfrestore_weights", "unknown")


def net_of(model: keras.Model) -> str:
    """Registry name of a model built by :func:`build` (falls back to ``model.name``)."""
    return getattr(model, "tfrestore_net", model.name)


def _taps(model: keras.Model) -> list[str]:
    return [l.name for l in model.layers if not isinstance(l, keras.layers.InputLayer)
            and not l.name.endswith(_SKIP_TAPS)]


_TAP_CACHE: dict[str, list[str]] = {}


def layer_names(name_or_model: str | keras.Model) -> list[str]:
    """Every tap of a network in forward order (pre- and post-ReLU alike)."""
    if isinstance(name_or_model, keras.Model):
        return _taps(name_or_model)
    if name_or_model not in _TAP_CACHE:
        # Taps do not depend on the width: a slim throw-away copy costs a few MB instead of a second full net
        # (+237 MB for AlexNet, issue 15). build() fills the cache from the real model anyway.
        spec = _spec(name_or_model)
        slim = {"width": 1 / 64} if "width" in inspect.signature(spec.builder).parameters else {}
        _TAP_CACHE[name_or_model] = _taps(spec.builder(image_size=spec.input_size, seed=None, **slim))
    return list(_TAP_CACHE[name_or_model])


def aliases(name: str) -> dict[str, str]:
    """Alias → canonical layer name for a net (thesis names, MatConvNet indices, ResNet stage names)."""
    spec, taps = _spec(name), layer_names(name)
    out: dict[str, str] = {}
    for t in taps:
        if t.startswith("conv") and not t.endswith(("_pad",)) and "." not in t:
            out[f"{t}/lin"] = t
            relu = "relu" + t[4:]
            if relu in taps:
                out[f"{t}/relu"] = relu
        if t.startswith("fc") and t[2:].isdigit():
            out[f"{t}/lin"] = t
            if f"relu{t[2:]}" in taps:
                out[f"{t}/relu"] = f"relu{t[2:]}"
        if t.startswith("norm"):
            out[f"lrn{t[4:]}"] = t
    if "prob" in taps:
        out["softmax"] = "prob"
    for i, t in enumerate(spec.matconvnet_order, start=1):
        out[f"l{i}"] = t
    out.update(spec.stage_aliases)
    return out


def figure_layers(name: str) -> list[str]:
    """The layers a per-layer figure inverts by default: M&V's 20 for the AlexNets, else every conv / ReLU /
    pool / fc / stage tap that is a layer of the paper."""
    spec = _spec(name)
    if spec.figure_layers:
        return list(spec.figure_layers)
    return [t for t in layer_names(name) if t.startswith(("conv", "relu", "pool", "fc", "layer"))
            and t not in spec.hidden_taps and not t.endswith(".add")]


def resolve_layer(name_or_model: str | keras.Model, layer: str) -> str:
    """Canonical tap name for ``layer`` (or an alias); raises with the list of valid names."""
    net = name_or_model if isinstance(name_or_model, str) else net_of(name_or_model)
    taps = layer_names(name_or_model)
    if layer in taps:
        return layer
    al = aliases(net) if net in REGISTRY else {}
    if layer in al:
        return al[layer]
    raise ValueError(f"unknown layer '{layer}' for net '{net}'. Valid layers: {', '.join(taps)}"
                     + (f". Aliases: {', '.join(al)}" if al else ""))


def feature_extractor(name_or_model: str | keras.Model, layers: Sequence[str] | str) -> keras.Model:
    """A model mapping network input to ``{layer_name: tensor}`` for the requested taps (names or aliases).

    Only the part of the network up to the deepest requested tap is computed. Keys are the names as requested.
    """
    model = build(name_or_model) if isinstance(name_or_model, str) else name_or_model
    if isinstance(layers, str):
        layers = [layers]
    outputs = {l: model.get_layer(resolve_layer(model, l)).output for l in layers}
    extractor = keras.Model(model.input, outputs, name=f"{model.name}_features")
    _tag(extractor, net_of(model), weights_source(model))
    return extractor


def _as_float_batch(images) -> tuple[tf.Tensor, bool]:
    x = tf.convert_to_tensor(images)
    single = x.shape.rank == 3
    if single:
        x = x[None]
    if x.shape.rank != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be (H, W, 3) or (N, H, W, 3) RGB, got shape {x.shape}")
    return tf.cast(x, tf.float32), single


def preprocess(name: str, images) -> tf.Tensor:
    """RGB 0–255 images (uint8 or float) → the network's input space, float32, same rank as given."""
    spec = _spec(name)
    x, single = _as_float_batch(images)
    if spec.scale01:
        x = (x / 255.0 - spec.mean) / spec.std
    else:
        x = x - spec.mean
    if spec.channel_order == "BGR":
        x = tf.reverse(x, [-1])     # a reversed slice costs ~6 ms more per AlexNet step (issue 15)
    return x[0] if single else x


def deprocess(name: str, x) -> tf.Tensor:
    """Inverse of :func:`preprocess`: network input space → RGB float on the 0–255 scale (not clipped)."""
    spec = _spec(name)
    x, single = _as_float_batch(x)
    if spec.channel_order == "BGR":
        x = tf.reverse(x, [-1])
    if spec.scale01:
        x = (x * spec.std + spec.mean) * 255.0
    else:
        x = x + spec.mean
    return x[0] if single else x


def input_scale(name: str) -> float:
    """How many network-input units one 0–255 grey level is (1 for Caffe nets, 1/(255·std) otherwise, averaged)."""
    spec = _spec(name)
    return 1.0 if spec.std is None else float(np.mean(1.0 / (255.0 * np.asarray(spec.std))))


__all__ = ["NetSpec", "REGISTRY", "build", "net_names", "input_size", "layer_names", "aliases", "resolve_layer",
           "feature_extractor", "preprocess", "deprocess", "weights_source", "net_of", "input_scale"]


def to_input(name: str, x):
    """Image space (RGB, 0–255, mean-subtracted: M&V's x) → the network's input space. Differentiable."""
    spec = _spec(name)
    if spec.scale01:
        x = x / (255.0 * tf.constant(spec.std, tf.float32))
    if spec.channel_order == "BGR":
        x = tf.reverse(x, [-1])
    return x


def mean_rgb(name: str) -> np.ndarray:
    """The net's mean colour on the 0–255 RGB scale (what image space subtracts)."""
    spec = _spec(name)
    return np.asarray(spec.mean, np.float32) * (255.0 if spec.scale01 else 1.0)


__all__ += ["to_input", "mean_rgb"]


def receptive_field(name_or_model: str | keras.Model, layer: str) -> tuple[int, int]:
    """(receptive-field size, stride) in input pixels of a tap, as ``vl_simplenn_display`` reports them.

    Walks the chain of conv / pool layers up to ``layer``; fc layers see the whole input (size = input size)
    and keep the stride of the last map. M&V 2016's jitter is T = max(round(stride / 4), 1).
    """
    from .layers import MaxPool as _MaxPool
    model = build(name_or_model, weights=None, quiet=True) if isinstance(name_or_model, str) else name_or_model
    target = resolve_layer(model, layer)
    rf, jump = 1, 1
    for l in model.layers:
        if isinstance(l, keras.layers.Conv2D):
            k, s = l.kernel_size[0], l.strides[0]
        elif isinstance(l, _MaxPool):
            k, s = l.pool_size, l.strides
        elif isinstance(l, (keras.layers.Dense, keras.layers.GlobalAveragePooling2D)):
            rf = max(rf, int(model.input.shape[1]))
            k, s = 1, 1
        else:
            k, s = 1, 1
        rf += (k - 1) * jump
        jump *= s
        if l.name == target:
            return rf, jump
    raise ValueError(f"layer {layer} not found")


def jitter_t(name_or_model, layer: str) -> int:
    """M&V 2016 jitter amount T = max(round(s/4), 1), MATLAB rounding (halves away from zero)."""
    _, stride = receptive_field(name_or_model, layer)
    return max(int(np.floor(stride / 4 + 0.5)), 1)


__all__ += ["receptive_field", "jitter_t", "figure_layers", "spec"]


def spec(name: str) -> NetSpec:
    """The registry entry of a net (raises with the list of valid nets)."""
    return _spec(name)


def tail(model: keras.Model, start: str, end: str) -> keras.Model:
    """The part of a chain network after tap ``start`` up to and including tap ``end``, as a model taking
    ``start``'s output (the weights are shared). Used when a feature map, not the image, is optimised."""
    start, end = resolve_layer(model, start), resolve_layer(model, end)
    names = [l.name for l in model.layers]
    i, j = names.index(start), names.index(end)
    if j <= i:
        raise ValueError(f"'{end}' does not come after '{start}' in {net_of(model)}")
    chain = model.layers[i + 1:j + 1]
    for prev, layer in zip(model.layers[i:j], chain):
        inbound = [t._keras_history[0].name for t in keras.tree.flatten(layer.input)]
        if inbound != [prev.name]:
            raise ValueError(f"{net_of(model)} is not a chain between '{start}' and '{end}' (layer '{layer.name}' "
                             f"reads {inbound}); a tail needs a sequential part of the network")
    inp = keras.Input(model.get_layer(start).output.shape[1:], name=f"{start}_map")
    x = inp
    for layer in chain:
        x = layer(x)
    out = keras.Model(inp, {end: x}, name=f"{model.name}_{start}_to_{end}")
    _tag(out, net_of(model), weights_source(model))
    return out


__all__ += ["tail"]
