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
of stage 2, ``layer2.0.conv1``).

The package: :mod:`.registry` (each net's facts), :mod:`.builders` and :mod:`.layers` (the Keras networks),
:mod:`.taps` (layer names, aliases, extractors, receptive fields), :mod:`.preprocessing` (input spaces); here
:func:`build`, which also loads weights.
"""
from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import keras

from . import weights as _weights
from .preprocessing import deprocess, input_scale, mean_rgb, preprocess, to_input
from .registry import GRAM_NET, GRAM_TAPS, REGISTRY, NetSpec, input_size, net_names, spec
from .taps import (aliases, feature_extractor, figure_layers, jitter_t, layer_names, net_of, receptive_field,
                   resolve_layer, tag, tail, weights_source)


def build(name: str, weights: str | Path | None = "auto", image_size: int | None = None, seed: int = 0,
          quiet: bool = False, up_to: str | None = None, **builder_kwargs) -> keras.Model:
    """Build a registered network.

    Args:
        name: one of :func:`net_names`.
        weights: ``"auto"`` loads ``$TFRESTORE_HOME/weights/<name>.weights.h5`` when present and otherwise uses
            seeded random weights with a loud warning; a path loads that file (shape-checked); ``None`` or
            ``"random"`` gives seeded random weights silently.
        image_size: square input size (default :func:`input_size`). Nets with fc layers need the standard size.
        seed: seed for random weights.
        up_to: the deepest layer (name or alias) the caller reads. With seeded random weights, on a net whose
            builder can stop early (the Caffe nets), the model ends there: the layers after it are never created
            (AlexNet up to conv5: no fc6–fc8, 234 MB less) and the layers made hold the whole net's weights, bit
            for bit. A weight file is checked against the whole net, so with one the whole net is built, as it
            is on the other nets. :func:`has_classifier` tells the two apart.
        builder_kwargs: passed to the builder (e.g. ``width=1/16`` for a slim VGG of the same topology).
    """
    s = spec(name)
    size = image_size or s.input_size
    if up_to is not None and _stops_early(name, weights):
        builder_kwargs["up_to"] = resolve_layer(name, up_to)
    try:
        model = s.builder(image_size=size, seed=seed, **builder_kwargs)
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
                          f"{s.original} with `python -m weights_convert` (README.md).\n{'!' * 78}",
                          stacklevel=2)
    elif weights not in (None, "random"):
        _weights.load_weights(model, weights)
        source = str(weights)
    tag(model, name, source)
    return model


def _stops_early(name: str, weights: str | Path | None) -> bool:
    """Whether :func:`build` with ``up_to`` may leave the layers after it out: the builder takes ``up_to`` and
    the weights are seeded random ones (none will be loaded and checked against the whole net)."""
    if "up_to" not in inspect.signature(spec(name).builder).parameters:
        return False
    return weights in (None, "random") or (weights == "auto" and not _weights.weight_path(name).exists())


def has_classifier(model: keras.Model) -> bool:
    """Whether ``model`` ends in its net's classifier (a whole net), not at a feature layer (built with
    ``up_to``): only then do its outputs name a class."""
    last = model.layers[-1].name
    net = net_of(model)
    if net not in REGISTRY:
        return True
    return last == layer_names(net)[-1]


__all__ = ["NetSpec", "REGISTRY", "GRAM_NET", "GRAM_TAPS", "build", "net_names", "input_size", "spec", "layer_names", "aliases",
           "resolve_layer", "figure_layers", "feature_extractor", "tail", "receptive_field", "jitter_t",
           "weights_source", "net_of", "has_classifier", "preprocess", "deprocess", "to_input", "mean_rgb", "input_scale"]
