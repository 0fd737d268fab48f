"""The registry: every network tfrestore knows, with the facts the rest of the code asks about it (input size,
preprocessing, family, M&V's layer order and groups, figure layers, hidden taps, stage aliases, the logits layer).
Nothing outside this registry tests a network's name."""
from __future__ import annotations

import dataclasses
from typing import Callable

import keras

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
    weight_format: str | None = None         # "caffe" / "onnx": the `python -m weights_convert` command for `original`
    gram_taps: tuple[str, ...] = ()          # the taps a Gram (VGG) score reads from this net (GRAM_NET's: GRAM_TAPS)
    inverters: str | None = None             # the learned inverters' module set (tfrestore.models.inverters.CATALOGUE key)

    @property
    def scale01(self) -> bool:
        return self.std is not None


_ALEX_MCN = ("conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2", "conv3", "relu3", "conv4",
             "relu4", "conv5", "relu5", "pool5", "fc6", "relu6", "fc7", "relu7", "fc8", "prob")
_CAFFENET_MCN = ("conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2") + _ALEX_MCN[8:]


def _vgg_taps(blocks) -> list[tuple[int, str]]:
    """(block, tap) for a Caffe VGG's conv / ReLU / pool taps in forward order."""
    return [(b, n) for b, k, _ in blocks
            for n in [x for i in range(1, k + 1) for x in (f"conv{b}_{i}", f"relu{b}_{i}")] + [f"pool{b}"]]


def _vgg_mcn(blocks) -> tuple[str, ...]:
    """MatConvNet's layer order of a Caffe VGG import (dropout removed; networks.md §4: VGG16's l31 = pool5)."""
    return tuple(n for _, n in _vgg_taps(blocks)) + ("fc6", "relu6", "fc7", "relu7", "fc8", "prob")


_VGG_MCN = _vgg_mcn(builders.VGG_BLOCKS)
_VGG19_MCN = _vgg_mcn(builders.VGG19_BLOCKS)

# Caffe per-channel means, RGB order. AlexNet/CaffeNet: the per-channel average of ilsvrc_2012_mean.npy.
_ALEX_MEAN = (122.67891434, 116.66876762, 104.00698793)
_VGG_MEAN = (123.68, 116.779, 103.939)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _alex_groups(order: tuple[str, ...]) -> dict[str, int]:
    """M&V 2015's layer groups by MatConvNet index: l1–l6 → 0, l7–l12 → 1, l13–l20 → 2."""
    return {layer: 0 if i <= 6 else 1 if i <= 12 else 2 for i, layer in enumerate(order[:20], start=1)}


def _vgg_groups(blocks=builders.VGG_BLOCKS) -> dict[str, int]:
    """The thesis' analogous VGG split: blocks 1–2 → 0, blocks 3–4 → 1, block 5 and the fc layers → 2."""
    return {n: 0 if b <= 2 else 1 if b <= 4 else 2 for b, n in _vgg_taps(blocks)}


# The thesis' VGG score (evaluation_protocols.md §4.2): VGG19 with max pooling (networks.md §12.3), the ReLU outputs
# of conv1_1, conv2_1, conv3_1, conv4_1 and conv5_1. The score code asks for them as spec(GRAM_NET).gram_taps.
GRAM_NET = "vgg19"
GRAM_TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

_RESNET_STAGES = {f"{kind}{s}": (f"layer{s}.0.conv1" if kind == "middle" else f"layer{s}.1")
                  for s in range(1, 5) for kind in ("layer", "res", "middle")}

REGISTRY: dict[str, NetSpec] = {
    "alexnet": NetSpec(builders.alexnet, 227, "BGR", _ALEX_MEAN, None, "bvlc_alexnet.caffemodel",
                       "BVLC AlexNet, conv→ReLU→LRN→pool (Krizhevsky order; M&V 2016)", "alexnet", _ALEX_MCN,
                       figure_layers=_ALEX_MCN[:20], hidden_taps=("pool5_flat",),
                       layer_group=_alex_groups(_ALEX_MCN), weight_format="caffe", inverters="alexnet"),
    "caffenet": NetSpec(builders.caffenet, 227, "BGR", _ALEX_MEAN, None, "bvlc_reference_caffenet.caffemodel",
                        "BVLC reference CaffeNet, conv→ReLU→pool→LRN (M&V 2015)", "alexnet", _CAFFENET_MCN,
                        figure_layers=_CAFFENET_MCN[:20], hidden_taps=("pool5_flat",),
                        layer_group=_alex_groups(_CAFFENET_MCN), weight_format="caffe", inverters="alexnet"),
    "vgg16": NetSpec(builders.vgg16, 224, "BGR", _VGG_MEAN, None, "VGG_ILSVRC_16_layers.caffemodel",
                     "Caffe VGG16 (configuration D)", "vgg", _VGG_MCN, hidden_taps=("pool5_flat",),
                     layer_group=_vgg_groups(), weight_format="caffe", inverters="vgg16"),
    "vgg19": NetSpec(builders.vgg19, 224, "BGR", _VGG_MEAN, None, "VGG_ILSVRC_19_layers.caffemodel",
                     "Caffe VGG19 (configuration E, max pooling; the thesis' VGG score)", "vgg", _VGG19_MCN,
                     hidden_taps=("pool5_flat",), layer_group=_vgg_groups(builders.VGG19_BLOCKS),
                     weight_format="caffe", gram_taps=GRAM_TAPS),
    "vgg16_bn": NetSpec(builders.vgg16_bn, 224, "RGB", _IMAGENET_MEAN, _IMAGENET_STD, "vgg16-bn-7.onnx",
                        "ONNX-zoo VGG16-BN (MXNet Gluon export)", "vgg", hidden_taps=("pool5_flat",),
                        layer_group=_vgg_groups(), weight_format="onnx"),
    "resnet18": NetSpec(builders.resnet18, 224, "RGB", _IMAGENET_MEAN, _IMAGENET_STD,
                        "resnet18-v1-7.onnx (or a torchvision export)", "ResNet-18 v1, torchvision layout", "resnet",
                        stage_aliases=_RESNET_STAGES, logits="fc", weight_format="onnx"),
    "resnet18_v2": NetSpec(builders.resnet18_v2, 224, "RGB", _IMAGENET_MEAN, _IMAGENET_STD, "resnet18-v2-7.onnx",
                           "ResNet-18 v2 (pre-activation: BN→ReLU→conv; a BN on the input), ONNX-zoo MXNet layout",
                           "resnet", stage_aliases=_RESNET_STAGES, logits="fc", weight_format="onnx"),
    "digits": NetSpec(builders.digits, 28, "RGB", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "none: trained by tfrestore",
                      "small CNN for the embedded 28×28 digits, trained here (tfrestore.models.classifier)", "digits",
                      hidden_taps=("pool2_flat",), logits="fc4", inverters="digits"),
}


def spec(name: str) -> NetSpec:
    """The registry entry of a net (raises with the list of valid nets)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown net '{name}'; valid nets: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def net_names() -> list[str]:
    return sorted(REGISTRY)


def input_size(name: str) -> int:
    """Standard square input size in pixels (227 for the Caffe AlexNets, 224 otherwise)."""
    return spec(name).input_size
