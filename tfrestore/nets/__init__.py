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

import warnings
from pathlib import Path

import keras

from . import weights as _weights
from .preprocessing import deprocess, input_scale, mean_rgb, preprocess, to_input
from .registry import GRAM_NET, GRAM_TAPS, REGISTRY, NetSpec, input_size, net_names, spec
from .taps import (aliases, feature_extractor, figure_layers, jitter_t, layer_names, net_of, receptive_field,
                   resolve_layer, tag, tail, weights_source)


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
    s = spec(name)
    size = image_size or s.input_size
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


__all__ = ["NetSpec", "REGISTRY", "GRAM_NET", "GRAM_TAPS", "build", "net_names", "input_size", "spec", "layer_names", "aliases",
           "resolve_layer", "figure_layers", "feature_extractor", "tail", "receptive_field", "jitter_t",
           "weights_source", "net_of", "preprocess", "deprocess", "to_input", "mean_rgb", "input_scale"]
