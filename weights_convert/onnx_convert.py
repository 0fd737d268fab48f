"""ONNX → tfrestore weights by following the graph (not by guessing initializer names).

Supported layouts: the ONNX zoo's ``vgg16-bn-7.onnx``, ``resnet18-v1-7.onnx`` and ``resnet18-v2-7.onnx`` (MXNet
Gluon exports, opset 7, BatchNormalization with the legacy ``spatial = 0`` attribute, which is ignored: the stored
parameters are per-channel vectors; v2's pre-activation blocks and its input BatchNorm without scale or centre,
whose stored γ = 1, β = 0 are checked, not kept), and torchvision exports of ResNet-18 (any opset; BatchNorm
possibly folded into the conv biases by constant folding, which is undone as BN(γ=1, β=bias, μ=0, σ²=1−ε)).

Both graphs are reduced to ordered *units* — a Conv with the BatchNormalization that consumes it, a standalone
BatchNormalization, a Gemm / MatMul+Add — and matched one to one, every shape and stride checked. ResNet's 1×1
downsample unit is placed after the second conv of its block on both sides, found from the Add node it feeds (in
v1 it reads the block input, in the pre-activation v2 the first BN-ReLU's output: either way the shallower branch).

Every weight is checked before anything is returned: float, finite, and no larger than a trained network of these
families holds (``architecture.MAGNITUDE_LIMITS``, per role: parameters, BatchNorm running means, running
variances), unless ``allow_huge_weights=True`` (the CLI's ``--allow-huge-weights``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import ConversionError
from .architecture import Architecture, check_magnitude, finite_float32
from .framing import Framing, existing_file, fields

ALLOWED_OPS = {"Conv", "BatchNormalization", "Relu", "MaxPool", "Add", "GlobalAveragePool", "Flatten", "Gemm",
               "Dropout", "Reshape", "Constant", "Identity", "Shape", "Gather", "Unsqueeze", "Concat", "MatMul",
               "Squeeze"}
_CONSTANT_FORMS = ("value", "value_float", "value_floats", "value_int", "value_ints")


def _attrs(node) -> dict:
    import onnx
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _framing_damage(raw: bytes) -> str:
    """Where the protobuf framing of a ModelProto breaks: " at byte N: what" (model, graph and graph-entry levels),
    or "" when the framing is whole and the damage is inside a message."""
    import io

    def walk(data: bytes, base: int, depth: int) -> str:
        try:
            for field, start, prefix, box in fields(io.BytesIO(data), len(data)):
                payload = box.pop()
                if depth == 0 and field == 7 or depth == 1 and field in (1, 5):   # graph; its nodes, initializers
                    found = walk(payload, base + start + len(prefix), depth + 1)
                    if found:
                        return found
        except Framing as e:
            return f" at byte {base + e.offset}: {e.what}"
        return ""
    return walk(raw, 0, 0)


def _check_text(model, path) -> None:
    """Every name and string attribute must be UTF-8 (protobuf's Python reader defers the check to first use)."""
    g = model.graph
    try:
        for n in g.node:           # reading a string field is the check
            [n.name, n.op_type, n.domain, *n.input, *n.output]
            [a.name for a in n.attribute] + [a.s for a in n.attribute] + [x for a in n.attribute for x in a.strings]
        [t.name for t in [*g.initializer, *g.input, *g.output]]
        [(e.key, e.value) for t in g.initializer for e in t.external_data]
    except UnicodeDecodeError as e:
        raise ConversionError(f"{path}: a name in the graph is not valid UTF-8 ({e.reason} at byte {e.start} of "
                              "the name); the file is corrupt") from None


class Graph:
    """An ONNX file checked as a graph: readable, acyclic, every node's inputs produced, arities and attribute types
    as the ONNX schema says, weights float and finite and (unless ``allow_huge_weights``) of a trained network's
    magnitude when they are read (:func:`_need`); nodes in topological order whatever the file's order."""

    def __init__(self, path: Path, *, allow_huge_weights: bool = False):
        import onnx
        raw = existing_file(path, "ONNX").read_bytes()
        try:
            self.model = onnx.load_model_from_string(raw)
        except Exception as e:   # DecodeError, truncated files, …
            raise ConversionError(f"{path}: not a readable ONNX model (truncated or corrupt"
                                  f"{_framing_damage(raw)}; {type(e).__name__}: {e})") from None
        del raw
        self.path = path
        self.allow_huge_weights = allow_huge_weights
        _check_text(self.model, path)
        self.converted: list[str] = []
        g = self.model.graph
        if not len(g.node):
            raise ConversionError(f"{path}: the ONNX graph has no nodes")
        self._load_external(g)
        self.opset = next((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), None)
        if self.opset is None:
            raise ConversionError(f"{path}: the model imports no version of the standard ONNX operator set")
        self.init = self._initializers(g)
        bad = sorted({n.op_type for n in g.node} - ALLOWED_OPS)
        if bad:
            node = next(n for n in g.node if n.op_type in bad)
            raise ConversionError(f"{path}: unsupported op {bad[0]} (node '{node.name}'); supported: "
                                  f"{', '.join(sorted(ALLOWED_OPS))}")
        for n in g.node:
            self._check_schema(n)
            if n.op_type == "Constant":
                self.init[n.output[0]] = self._constant(n)
        self.nodes = self._topological(g)
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    # ---- checks --------------------------------------------------------------------------------------------------
    def _load_external(self, g) -> None:
        """External tensor data is read only from files next to the model (no absolute paths, no ``..``)."""
        from onnx import external_data_helper
        base = self.path.parent.resolve()
        external = [t for t in g.initializer if t.data_location == 1]        # TensorProto.EXTERNAL
        for t in external:
            entry = {e.key: e.value for e in t.external_data}
            loc = entry.get("location", "")
            target = (base / loc).resolve()
            if not loc or Path(loc).is_absolute() or base not in target.parents or not target.is_file():
                raise ConversionError(f"{self.path}: initializer '{t.name}' keeps its data in '{loc}', which is not a "
                                      "file next to the model; external data is read only from the model's folder")
        if external:
            try:
                external_data_helper.load_external_data_for_model(self.model, str(base))
            except Exception as e:
                raise ConversionError(f"{self.path}: external data cannot be read ({type(e).__name__}: {e})") from None

    def _initializers(self, g) -> dict:
        from onnx import numpy_helper
        out = {}
        for t in g.initializer:
            if t.name in out:
                raise ConversionError(f"{self.path}: two initializers are named '{t.name}'")
            try:
                out[t.name] = numpy_helper.to_array(t)
            except Exception as e:
                raise ConversionError(f"{self.path}: initializer '{t.name}' cannot be read ({type(e).__name__}: "
                                      f"{e}); the file is corrupt") from None
        return out

    def _check_schema(self, n) -> None:
        import onnx
        where = f"{self.path}: node '{n.name}' ({n.op_type})"
        try:
            schema = onnx.defs.get_schema(n.op_type, self.opset, "")
        except Exception:
            raise ConversionError(f"{where}: no {n.op_type} in ONNX opset {self.opset}") from None
        n_in, n_out = len(n.input), len(n.output)
        if not schema.min_input <= n_in <= schema.max_input:
            raise ConversionError(f"{where}: {n_in} inputs; the ONNX schema (opset {self.opset}) allows "
                                  f"{schema.min_input}–{schema.max_input}")
        if not schema.min_output <= n_out <= schema.max_output or not n.output or not n.output[0]:
            raise ConversionError(f"{where}: {n_out} outputs; the ONNX schema (opset {self.opset}) allows "
                                  f"{schema.min_output}–{schema.max_output}")
        if n.op_type in ("Conv", "BatchNormalization", "Gemm", "MatMul", "Add", "Relu", "MaxPool") and \
                any(not i for i in n.input[:schema.min_input]):
            raise ConversionError(f"{where}: a required input is empty")
        for a in n.attribute:
            spec = schema.attributes.get(a.name)
            if spec is None:
                raise ConversionError(f"{where}: attribute '{a.name}' is not an attribute of {n.op_type} in opset "
                                      f"{self.opset}")
            if int(spec.type) != int(a.type):
                raise ConversionError(f"{where}: attribute '{a.name}' is {onnx.AttributeProto.AttributeType.Name(a.type)}"
                                      f", the ONNX schema says {spec.type.name}")

    def _constant(self, n) -> np.ndarray:
        from onnx import numpy_helper
        forms = [a for a in n.attribute if a.name in _CONSTANT_FORMS]
        if len(n.attribute) != 1 or len(forms) != 1:
            raise ConversionError(f"{self.path}: Constant node '{n.name}' must hold exactly one of "
                                  f"{', '.join(_CONSTANT_FORMS)} (strings and sparse tensors are not weights)")
        a = forms[0]
        if a.name == "value":
            try:
                return numpy_helper.to_array(a.t)
            except Exception as e:
                raise ConversionError(f"{self.path}: Constant node '{n.name}' cannot be read ({e})") from None
        if a.name == "value_float":
            return np.asarray(a.f, np.float32)
        if a.name == "value_floats":
            return np.asarray(list(a.floats), np.float32)
        if a.name == "value_int":
            return np.asarray(a.i, np.int64)
        return np.asarray(list(a.ints), np.int64)

    def _topological(self, g) -> list:
        """The nodes in an order where every input is produced first (Kahn); refuses cycles, tensors produced
        twice and inputs nobody produces."""
        weights = {t.name for t in g.initializer}
        images = [i.name for i in g.input if i.name not in weights]
        if len(images) != 1:
            raise ConversionError(f"{self.path}: the graph has {len(images)} inputs besides its initializers "
                                  f"({', '.join(repr(n) for n in images[:4])}); a network takes one image input")
        available = {i.name for i in g.input} | weights | {""}
        producer = {}
        for n in g.node:
            for o in n.output:
                if o in producer or o in available - {""}:
                    raise ConversionError(f"{self.path}: tensor '{o}' is produced twice (node '{n.name}'); ONNX "
                                          "graphs assign every tensor once")
                producer[o] = n
        for n in g.node:
            for i in n.input:
                if i not in available and i not in producer:
                    raise ConversionError(f"{self.path}: node '{n.name}' ({n.op_type}) reads '{i}', which no node "
                                          "produces and which is neither a graph input nor an initializer")
        order, waiting = [], list(g.node)
        ready = set(available)
        while waiting:
            still = [n for n in waiting if not all(i in ready for i in n.input)]
            done = [n for n in waiting if all(i in ready for i in n.input)]
            if not done:
                raise ConversionError(f"{self.path}: the graph has a cycle through node '{still[0].name}' "
                                      f"({still[0].op_type}); a network graph must be acyclic")
            for n in done:
                order.append(n)
                ready.update(n.output)
            waiting = still
        return order

    def only_consumer(self, tensor, op=None):
        c = self.consumers.get(tensor, [])
        if len(c) == 1 and (op is None or c[0].op_type == op):
            return c[0]
        return None

    def units(self) -> list[dict]:
        """Ordered parameter units of the graph."""
        units, used = [], set()
        for idx, n in enumerate(self.nodes):
            if id(n) in used:
                continue
            if n.op_type == "Conv":
                bn = self.only_consumer(n.output[0], "BatchNormalization")
                if bn is not None:
                    used.add(id(bn))
                units.append({"kind": "conv", "conv": n, "bn": bn, "pos": float(idx),
                              "out": (bn or n).output[0]})
            elif n.op_type == "BatchNormalization":
                units.append({"kind": "bn", "conv": None, "bn": n, "pos": float(idx), "out": n.output[0]})
            elif n.op_type == "Gemm":
                units.append({"kind": "dense", "node": n, "pos": float(idx), "out": n.output[0]})
            elif n.op_type == "MatMul" and n.input[1] in self.init:
                add = self.only_consumer(n.output[0], "Add")
                if add is not None:
                    used.add(id(add))
                units.append({"kind": "dense", "node": n, "add": add, "pos": float(idx),
                              "out": (add or n).output[0]})
        by_out = {u["out"]: u for u in units}
        for n in self.nodes:   # residual Add: put a conv-unit branch that is shallower after the deeper one
            if n.op_type != "Add" or not all(i in by_out for i in n.input[:2]):
                continue
            a, b = by_out[n.input[0]], by_out[n.input[1]]
            short, deep = (a, b) if self._depth(a) < self._depth(b) else (b, a)
            short["pos"] = deep["pos"] + 0.5
        return sorted(units, key=lambda u: u["pos"])

    def _depth(self, unit) -> int:
        """Convs between this unit and the nearest tensor with several consumers (the block input)."""
        depth, t = 0, (unit["conv"].input[0] if unit.get("conv") else None)
        while t is not None and len(self.consumers.get(t, [])) == 1 and t in self.producer:
            p = self.producer[t]
            depth += p.op_type == "Conv"
            t = p.input[0] if p.input else None
        return depth


def _keras_units(model) -> list[dict]:
    import keras
    layers = model.layers
    consumer_bn = {}
    for l in layers:
        if isinstance(l, keras.layers.BatchNormalization):
            src = l.input._keras_history.operation
            consumer_bn[src.name] = l
    units, used = [], set()
    for l in layers:
        if l.name in used or not l.weights:
            continue
        if isinstance(l, keras.layers.Conv2D):
            bn = consumer_bn.get(l.name)
            if bn is not None:
                used.add(bn.name)
            units.append({"kind": "conv", "conv": l, "bn": bn})
        elif isinstance(l, keras.layers.BatchNormalization):
            units.append({"kind": "bn", "conv": None, "bn": l})
        elif isinstance(l, keras.layers.Dense):
            units.append({"kind": "dense", "dense": l})
        else:
            raise ConversionError(f"no ONNX mapping for Keras layer {l.name} ({type(l).__name__})")
    return units


_ROLE = {"weight": "kernel"}      # an input's name in the messages → the Keras weight it becomes (else the same)


def _need(graph: Graph, node, i: int, what: str):
    """Input ``i`` of ``node`` as a checked float32 weight (dtype, finite, magnitude), or None when it is absent."""
    if len(node.input) <= i or not node.input[i]:
        return None
    name = node.input[i]
    if name not in graph.init:
        raise ConversionError(f"{graph.path}: node '{node.name}' ({node.op_type}) input '{name}' ({what}) is not an "
                              f"initializer; only constant weights are supported")
    place = f"node '{node.name}' {what} '{name}'"
    array = finite_float32(graph.init[name], f"{graph.path}: {place}", graph.converted)
    check_magnitude(array, _ROLE.get(what, what), f"{graph.path}: {place}", graph.allow_huge_weights)
    return array


def _check(path, what, got, want):
    if tuple(got.shape) != tuple(want):
        raise ConversionError(f"{path}: {what} has shape {tuple(got.shape)} but the Keras layer expects "
                              f"{tuple(want)}")


def convert(model, onnx_path: str | Path, *, allow_huge_weights: bool = False) -> tuple[dict, dict]:
    """Map an ONNX file onto a tfrestore model. Returns ({layer: {weight: array}}, info) where
    ``info["tensor_of_layer"]`` maps Keras taps to ONNX tensor names (for layer-by-layer verification).

    A weight larger than any trained net of these families holds (``architecture.MAGNITUDE_LIMITS``: a flipped
    exponent bit) is a :class:`ConversionError` unless ``allow_huge_weights`` (the CLI's ``--allow-huge-weights``).
    """
    path = Path(onnx_path)
    g = Graph(path, allow_huge_weights=allow_huge_weights)
    ounits, kunits = g.units(), _keras_units(model)
    if len(ounits) != len(kunits):
        raise ConversionError(
            f"{path}: the graph has {len(ounits)} parameter units (conv/BN/dense) but {model.name} has "
            f"{len(kunits)}: {'missing' if len(ounits) < len(kunits) else 'unexpected extra'} layers — wrong --net?")
    _check_folding(g, ounits, kunits)
    arch = Architecture(model)
    arrays, tmap = {}, {}
    for ou, ku in zip(ounits, kunits):
        oname = (ou.get("conv") or ou.get("bn") or ou.get("node")).name
        kname = (ku.get("conv") or ku.get("bn") or ku.get("dense")).name
        if ou["kind"] != ku["kind"]:
            raise ConversionError(f"{path}: node '{oname}' is a {ou['kind']} unit but Keras layer '{kname}' is a "
                                  f"{ku['kind']} unit")
        where = f"node '{oname}' → layer '{kname}'"
        if ku["kind"] == "conv":
            _map_conv(g, ou, ku, arrays, tmap, where, arch)
        elif ku["kind"] == "bn":
            arrays[ku["bn"].name] = _bn_arrays(g, ou["bn"], ku["bn"], where)
            tmap[ku["bn"].name] = ou["bn"].output[0]
        else:
            _map_dense(g, ou, ku["dense"], arrays, tmap, where)
    _check_pools(g, model, arch)
    _map_activations(g, model, tmap)
    return arrays, {"tensor_of_layer": tmap, "units": len(ounits), "converted": g.converted,
                    "opset": [o.version for o in g.model.opset_import]}


def _check_folding(g, ounits, kunits) -> None:
    """A conv without its BatchNormalization is a torchvision export with the BN folded into the conv bias — legal
    only where the net's conv has no bias of its own (ResNet), and only if the whole graph is folded; anything
    else is a graph with a BN missing (converting it would apply a bias twice)."""
    pairs = [(ou, ku) for ou, ku in zip(ounits, kunits) if ku["kind"] == "conv" and ku["bn"] is not None]
    folded = [(ou, ku) for ou, ku in pairs if ou["kind"] == "conv" and ou["bn"] is None]
    if not folded:
        return
    ou, ku = folded[0]
    if ku["conv"].use_bias:
        raise ConversionError(f"{g.path}: conv node '{ou['conv'].name}' has no BatchNormalization after it, but "
                              f"layer '{ku['bn'].name}' of the net needs one (its conv has its own bias, so the BN "
                              "cannot have been folded into it)")
    kept = next((o for o, _ in pairs if o["kind"] == "conv" and o["bn"] is not None), None)
    if kept is not None:
        raise ConversionError(f"{g.path}: conv node '{ou['conv'].name}' has its BatchNormalization folded but "
                              f"node '{kept['conv'].name}' has not; a graph is exported folded or not, so a BN "
                              "node is missing")


def _pads(a: dict, where: str) -> tuple[int, int]:
    pads = tuple(int(p) for p in a.get("pads", (0, 0, 0, 0)))
    if len(pads) != 4 or pads[:2] != pads[2:]:
        raise ConversionError(f"{where}: pads {pads}; only symmetric 2-D padding (top, left, bottom, right with "
                              "top = bottom, left = right) is supported")
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID") or \
            (a.get("auto_pad") in (b"VALID", "VALID") and any(pads)):
        raise ConversionError(f"{where}: auto_pad {a.get('auto_pad')!r}; only explicit pads are supported")
    return pads[:2]


def _check_pools(g, model, arch) -> None:
    """Every MaxPool node against the net's max-pool layers, in order: kernel, stride, pads, ceil mode."""
    ours = arch.of_kind("pool")
    theirs = [n for n in g.nodes if n.op_type == "MaxPool"]
    if len(ours) != len(theirs):
        raise ConversionError(f"{g.path}: the graph has {len(theirs)} MaxPool nodes, {model.name} has {len(ours)} "
                              "max-pool layers")
    for spec, node in zip(ours, theirs):
        a = _attrs(node)
        where = f"{g.path}: MaxPool node '{node.name}' → layer '{spec.name}'"
        if any(int(d) != 1 for d in a.get("dilations", ())) or int(a.get("storage_order", 0)):
            raise ConversionError(f"{where}: dilations {a.get('dilations')} / storage_order; only plain max pooling")
        arch.check(spec.name, "pool", {"kernel": tuple(a.get("kernel_shape", ())), "stride": tuple(a.get("strides", (1, 1))),
                                       "pad": _pads(a, where), "ceil_mode": bool(a.get("ceil_mode", 0))}, where)


def _map_conv(g, ou, ku, arrays, tmap, where, arch):
    conv, kconv, kbn = ou["conv"], ku["conv"], ku["bn"]
    a = _attrs(conv)
    w = _need(g, conv, 1, "weight")
    b = _need(g, conv, 2, "bias")
    if w.ndim != 4:
        raise ConversionError(f"{g.path}: {where}: the weight has shape {w.shape}; a 2-D convolution's is 4-D "
                              "(out, in/group, kh, kw)")
    geometry = {"kernel": tuple(a.get("kernel_shape", w.shape[2:])), "stride": tuple(a.get("strides", (1, 1))),
                "pad": _pads(a, f"{g.path}: {where}"), "dilation": tuple(a.get("dilations", (1, 1))),
                "group": int(a.get("group", 1))}
    arch.check(kconv.name, "conv", geometry, f"{g.path}: {where}")
    if tuple(w.shape[2:]) != geometry["kernel"]:
        raise ConversionError(f"{g.path}: {where}: kernel_shape {geometry['kernel']} but the weight is "
                              f"{tuple(w.shape[2:])}")
    if b is not None and b.shape != (w.shape[0],):
        raise ConversionError(f"{g.path}: {where}: the bias has shape {b.shape}; the conv has {w.shape[0]} outputs")
    kernel = np.transpose(w, (2, 3, 1, 0))
    _check(g.path, f"{where} weight", kernel, kconv.kernel.shape)
    arrays[kconv.name] = {"kernel": kernel}
    tmap[kconv.name] = conv.output[0]
    if kconv.use_bias:
        if b is None:
            raise ConversionError(f"{g.path}: {where}: the Keras conv has a bias, the ONNX conv none")
        arrays[kconv.name]["bias"] = b
    if kbn is not None:
        if ou["bn"] is not None:
            arrays[kbn.name] = _bn_arrays(g, ou["bn"], kbn, where)
            tmap[kbn.name] = ou["bn"].output[0]
            if not kconv.use_bias and b is not None:
                raise ConversionError(f"{g.path}: {where}: conv bias before a BatchNorm is not supported")
        else:   # BN folded into the conv (torchvision export with constant folding)
            c = kernel.shape[-1]
            arrays[kbn.name] = {"gamma": np.ones(c, np.float32), "beta": (b if b is not None else np.zeros(c)).astype(np.float32),
                                "moving_mean": np.zeros(c, np.float32),
                                "moving_variance": np.full(c, 1.0 - kbn.epsilon, np.float32)}
            tmap.pop(kconv.name)
            tmap[kbn.name] = conv.output[0]
    elif ou["bn"] is not None:
        raise ConversionError(f"{g.path}: {where}: the ONNX conv is followed by BatchNormalization, the Keras conv not")


# A BatchNorm without scale (γ) or centre (β) — MXNet's ``BatchNorm(scale=False, center=False)`` on ResNet-18 v2's
# input (networks.md §6.2) — still stores γ and β in the ONNX file, frozen at these values.
_FIXED_BN = {"gamma": ("scale", 1.0), "beta": ("center", 0.0)}


def _bn_arrays(g, node, kbn, where):
    """A BatchNormalization node's four vectors as the Keras layer's weights. Where the layer has no scale / no centre
    (``scale=False`` / ``center=False``), the file's γ / β must hold exactly 1 / 0 and are not stored."""
    a = _attrs(node)
    eps = float(a.get("epsilon", 1e-5))
    if not np.isfinite(eps) or eps <= 0:
        raise ConversionError(f"{g.path}: {where}: BatchNorm epsilon {eps}; it must be finite and positive")
    if abs(eps - kbn.epsilon) > 1e-9:
        raise ConversionError(f"{g.path}: {where}: BatchNorm epsilon {eps} in the file, {kbn.epsilon} in Keras")
    channels = (int(kbn.moving_mean.shape[0]),)
    out = {}
    for i, k in ((1, "gamma"), (2, "beta"), (3, "moving_mean"), (4, "moving_variance")):
        v = _need(g, node, i, k)
        v = v.reshape(-1)
        _check(g.path, f"{where} {k}", v, channels)
        if k in _FIXED_BN and not getattr(kbn, _FIXED_BN[k][0]):
            _check_fixed(g, node, where, k, v, kbn)
            continue
        out[k] = v
    return out


def _check_fixed(g, node, where, role, values, kbn) -> None:
    """γ / β of a BatchNorm the net builds without scale / centre: exactly the fixed value, else refused."""
    attr, fixed = _FIXED_BN[role]
    off = np.flatnonzero(values != np.float32(fixed))
    if off.size:
        name = node.input[1 if role == "gamma" else 2]
        raise ConversionError(f"{g.path}: {where}: {role} '{name}' holds {off.size} of {values.size} values other than "
                              f"{fixed:g} (e.g. {float(values[off[0]]):.6g} at index {int(off[0])}), but layer "
                              f"'{kbn.name}' of the net has no {role} ({attr}=False: a BatchNorm with fixed {role} = "
                              f"{fixed:g}) — wrong --net or a damaged file?")


def _map_dense(g, ou, kd, arrays, tmap, where):
    node = ou["node"]
    if node.op_type == "Gemm":
        a = _attrs(node)
        if a.get("transA", 0) or float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0:
            raise ConversionError(f"{g.path}: {where}: Gemm with transA/alpha/beta other than 0/1/1 is not supported")
        w = _need(g, node, 1, "weight")
        kernel = w.T if a.get("transB", 0) else w
        bias = _need(g, node, 2, "bias")
    else:   # MatMul (+ Add)
        kernel = _need(g, node, 1, "weight")
        add = ou.get("add")
        bias = None if add is None else _need(g, add, _constant_input(g, add, where), "bias")
    _check(g.path, f"{where} weight", kernel, kd.kernel.shape)
    bias = np.zeros(kernel.shape[1], np.float32) if bias is None else bias.reshape(-1)
    _check(g.path, f"{where} bias", bias, kd.bias.shape)
    arrays[kd.name] = {"kernel": kernel, "bias": bias}
    tmap[kd.name] = ou["out"]


def _constant_input(g, add, where) -> int:
    """The index of the bias an Add after a MatMul adds: its one initializer input."""
    constant = [k for k, i in enumerate(add.input) if i in g.init]
    if len(constant) != 1:
        raise ConversionError(f"{g.path}: {where}: the Add node '{add.name}' after the MatMul adds {len(constant)} "
                              "constant inputs; a dense layer's bias is exactly one")
    return constant[0]


def _map_activations(g, model, tmap):
    """Extend the tap ↔ tensor map to ReLUs, pools and residual adds (verification only)."""
    import keras
    from tfrestore.nets.layers import MaxPool
    kcons = {}
    for l in model.layers:
        for inbound in getattr(l, "_inbound_nodes", [])[:1]:
            for t in inbound.input_tensors:
                kcons.setdefault(t._keras_history.operation.name, []).append(l)
    changed = True
    while changed:
        changed = False
        for kname, tname in list(tmap.items()):
            ks, os_ = kcons.get(kname, []), g.consumers.get(tname, [])
            if len(ks) == 1 and len(os_) == 1 and ks[0].name not in tmap:
                kl, on = ks[0], os_[0]
                if (isinstance(kl, keras.layers.ReLU) and on.op_type == "Relu") or \
                        (isinstance(kl, MaxPool) and on.op_type == "MaxPool") or \
                        (isinstance(kl, keras.layers.GlobalAveragePooling2D) and on.op_type == "GlobalAveragePool"):
                    tmap[kl.name] = on.output[0]
                    changed = True
                elif isinstance(kl, keras.layers.ZeroPadding2D):
                    kcons[kname] = kcons.get(kl.name, [])
                    changed = True
            if len(ks) == 1 and isinstance(ks[0], keras.layers.Add) and ks[0].name not in tmap and len(os_) == 1 \
                    and os_[0].op_type == "Add":
                tmap[ks[0].name] = os_[0].output[0]
                changed = True
