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
        up_to: the deepest layer (name or alias) the caller reads. On a net whose builder can stop early (the
            Caffe nets) the model ends there: the layers after it are never created (AlexNet up to conv5: no
            fc6–fc8, 234 MB less). With seeded random weights the layers made hold the whole net's weights bit
            for bit; with a weight file they hold the file's, and the file is still checked against the WHOLE
            net — every layer name and shape, read from its metadata — so a file missing ``fc8`` or with a
            wrong ``fc6`` is refused as it is without ``up_to``, and only the layers made are read. The whole
            net's shapes come from a build in a ``keras.StatelessScope`` that gives no variable a value (no
            memory for fc6–fc8), not from a table that could drift from the builders. Other nets are built
            whole. :func:`has_classifier` tells a cut model from a whole one (a cut one gives no top-1 label).
        builder_kwargs: passed to the builder (e.g. ``width=1/16`` for a slim VGG of the same topology).
    """
    s = spec(name)
    size = image_size or s.input_size
    cut = up_to is not None and "up_to" in inspect.signature(s.builder).parameters
    whole_kwargs = dict(builder_kwargs)
    if cut:
        builder_kwargs["up_to"] = resolve_layer(name, up_to)
    try:
        model = s.builder(image_size=size, seed=seed, **builder_kwargs)
    except ValueError as e:
        raise ValueError(f"{name} cannot be built at {size}×{size}: {e}") from None
    path = weight_file(name, weights)
    if path is not None:
        # A cut model's file is checked against the whole net's layers and shapes all the same.
        _weights.load_weights(model, path, _whole_shapes(name, size, seed, whole_kwargs) if cut else None)
    elif weights == "auto" and not quiet:
        warnings.warn(f"\n{'!' * 78}\n  No converted weights for '{name}' at {_weights.weight_path(name)}.\n  Using "
                      f"SEEDED RANDOM weights (seed {seed}): results show the method, not the paper's network.\n  "
                      f"Convert {s.original} with `python -m weights_convert` (README.md).\n{'!' * 78}",
                      stacklevel=2)
    source = "random" if path is None else str(path if weights == "auto" else weights)
    tag(model, name, source)
    return model


def weight_file(name: str, weights: str | Path | None = "auto") -> Path | None:
    """The file :func:`build` ``(name, weights=weights)`` loads, or None where it gives seeded random weights
    (``None``, ``"random"``, or ``"auto"`` with nothing at :func:`weights.weight_path`)."""
    if weights in (None, "random"):
        return None
    if weights == "auto":
        path = _weights.weight_path(name)
        return path if path.exists() else None
    return Path(weights)


def _whole_shapes(name: str, size: int, seed: int, builder_kwargs: dict) -> dict[str, dict[str, tuple[int, ...]]]:
    """The whole net's ``{layer: {weight: shape}}`` (:func:`weights.layer_shapes`), without memory for its weights.

    Built in a ``keras.StatelessScope(initialize_variables=False)``, where Keras gives a new variable a shape and an
    initialiser but no value, and registers it in a global list of variables to initialise when the next stateless
    scope ends. That list is put back as it was: otherwise the next ``compute_output_spec`` (which opens such a
    scope) would initialise this throw-away net's fc6–fc8 (234 MB for AlexNet) after all.
    """
    from keras.src.backend.common import global_state     # Keras 3's own registry of uninitialised variables
    pending = list(global_state.get_global_attribute("uninitialized_variables", None) or [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            whole = spec(name).builder(image_size=size, seed=seed, **builder_kwargs)
        return _weights.layer_shapes(whole)
    except ValueError as e:
        raise ValueError(f"{name} cannot be built at {size}×{size}: {e}") from None
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)


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
           "weights_source", "weight_file", "net_of", "has_classifier", "preprocess", "deprocess", "to_input", "mean_rgb", "input_scale"]
