"""A network's taps (the layers one can read or invert): their names in forward order, the aliases of the papers
(the thesis' ``conv1/lin``, M&V's ``l15``, ResNet's ``res2``), feature extractors, the tail of a chain after a
tap, and receptive fields.

Keras forbids ``/`` in layer names, so ``/`` names exist only as aliases.
"""
from __future__ import annotations

import functools
import inspect
from typing import Sequence

import keras
import numpy as np

from .registry import REGISTRY, spec

_SKIP_TAPS = ("_pad",)


def tag(model: keras.Model, net: str, source: str) -> None:
    """Record on the model itself which net it is and where its weights came from (no side tables)."""
    model.tfrestore_net, model.tfrestore_weights = net, source


def weights_source(model: keras.Model) -> str:
    """``"random"`` or the path the model's weights were loaded from (``"unknown"`` for foreign models)."""
    return getattr(model, "tfrestore_weights", "unknown")


def net_of(model: keras.Model) -> str:
    """Registry name of a model built by :func:`tfrestore.nets.build` (falls back to ``model.name``)."""
    return getattr(model, "tfrestore_net", model.name)


def _taps(model: keras.Model) -> list[str]:
    return [l.name for l in model.layers if not isinstance(l, keras.layers.InputLayer)
            and not l.name.endswith(_SKIP_TAPS)]


@functools.cache
def _taps_of(name: str) -> tuple[str, ...]:
    # Taps do not depend on the width: a slim throw-away copy costs a few MB instead of a second full net
    # (+237 MB for AlexNet, issue 15).
    s = spec(name)
    slim = {"width": 1 / 64} if "width" in inspect.signature(s.builder).parameters else {}
    return tuple(_taps(s.builder(image_size=s.input_size, seed=None, **slim)))


def layer_names(name_or_model: str | keras.Model) -> list[str]:
    """Every tap of a network in forward order (pre- and post-ReLU alike)."""
    if isinstance(name_or_model, keras.Model):
        return _taps(name_or_model)
    return list(_taps_of(name_or_model))


def aliases(name: str) -> dict[str, str]:
    """Alias → canonical layer name for a net (thesis names, MatConvNet indices, ResNet stage names)."""
    s, taps = spec(name), layer_names(name)
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
    for i, t in enumerate(s.matconvnet_order, start=1):
        out[f"l{i}"] = t
    out.update(s.stage_aliases)
    return out


def figure_layers(name: str) -> list[str]:
    """The layers a per-layer figure inverts by default: M&V's 20 for the AlexNets, else every conv / ReLU /
    pool / fc / stage tap that is a layer of the paper."""
    s = spec(name)
    if s.figure_layers:
        return list(s.figure_layers)
    return [t for t in layer_names(name) if t.startswith(("conv", "relu", "pool", "fc", "layer"))
            and t not in s.hidden_taps and not t.endswith(".add")]


def resolve_layer(name_or_model: str | keras.Model, layer: str) -> str:
    """Canonical tap name for ``layer`` (or an alias); raises with the list of valid names."""
    net = name_or_model if isinstance(name_or_model, str) else net_of(name_or_model)
    taps = layer_names(name_or_model)
    if layer in taps:
        return layer
    al = aliases(net) if net in REGISTRY else {}
    if layer in al:
        return al[layer]
    raise ValueError(_unknown_layer(net, layer, taps, al))


def _unknown_layer(net: str, layer: str, taps: list[str], al: dict) -> str:
    """One short line: the nearest names, a few main layers and where the full list is (listing every tap and
    alias ran to 1,500 characters on ResNet-18)."""
    import difflib
    near = difflib.get_close_matches(layer, list(taps) + list(al), n=3, cutoff=0.6)
    main = figure_layers(net) if net in REGISTRY else list(taps)
    hint = f"did you mean {' or '.join(near)}?" if near else f"its layers include {', '.join(main[:10])}, …;"
    return (f"unknown layer '{layer}' for net '{net}'; {hint} `python main.py --list` names all {len(taps)} "
            f"layers{' and their aliases' if al else ''}")


def feature_extractor(model: keras.Model, layers: Sequence[str] | str) -> keras.Model:
    """A model mapping network input to ``{layer_name: tensor}`` for the requested taps (names or aliases).

    Only the part of the network up to the deepest requested tap is computed. Keys are the names as requested.
    """
    if isinstance(layers, str):
        layers = [layers]
    outputs = {l: model.get_layer(resolve_layer(model, l)).output for l in layers}
    extractor = keras.Model(model.input, outputs, name=f"{model.name}_features")
    tag(extractor, net_of(model), weights_source(model))
    return extractor


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
    tag(out, net_of(model), weights_source(model))
    return out


def receptive_field(model: keras.Model, layer: str) -> tuple[int, int]:
    """(receptive-field size, stride) in input pixels of a tap, as ``vl_simplenn_display`` reports them.

    Walks the chain of conv / pool layers up to ``layer``; fc layers see the whole input (size = input size)
    and keep the stride of the last map. M&V 2016's jitter is T = max(round(stride / 4), 1).
    """
    from .layers import MaxPool
    target = resolve_layer(model, layer)
    rf, jump = 1, 1
    for l in model.layers:
        if isinstance(l, keras.layers.Conv2D):
            k, s = l.kernel_size[0], l.strides[0]
        elif isinstance(l, MaxPool):
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


def jitter_t(model: keras.Model, layer: str) -> int:
    """M&V 2016 jitter amount T = max(round(s/4), 1), MATLAB rounding (halves away from zero)."""
    _, stride = receptive_field(model, layer)
    return max(int(np.floor(stride / 4 + 0.5)), 1)
