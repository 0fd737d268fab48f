"""ONNX → tfrestore weights by following the graph (not by guessing initializer names).

Supported layouts: the ONNX zoo's ``vgg16-bn-7.onnx`` and ``resnet18-v1-7.onnx`` (MXNet Gluon exports, opset 7,
BatchNormalization with the legacy ``spatial = 0`` attribute, which is ignored: the stored parameters are
per-channel vectors), and torchvision exports of ResNet-18 (any opset; BatchNorm possibly folded into the conv
biases by constant folding, which is undone as BN(γ=1, β=bias, μ=0, σ²=1−ε)).

Both graphs are reduced to ordered *units* — a Conv with the BatchNormalization that consumes it, a standalone
BatchNormalization, a Gemm / MatMul+Add — and matched one to one, every shape and stride checked. ResNet's 1×1
downsample unit is placed after the second conv of its block on both sides, found from the Add node it feeds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import ConversionError

ALLOWED_OPS = {"Conv", "BatchNormalization", "Relu", "MaxPool", "Add", "GlobalAveragePool", "Flatten", "Gemm",
               "Dropout", "Reshape", "Constant", "Identity", "Shape", "Gather", "Unsqueeze", "Concat", "MatMul",
               "Squeeze"}


def _attrs(node) -> dict:
    import onnx
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class Graph:
    def __init__(self, path: Path):
        import onnx
        from onnx import numpy_helper
        if not path.exists():
            raise ConversionError(f"{path}: no such ONNX file")
        try:
            self.model = onnx.load(str(path))
        except Exception as e:   # DecodeError, truncated files, …
            raise ConversionError(f"{path}: not a readable ONNX model (truncated or corrupt: "
                                  f"{type(e).__name__}: {e})") from None
        g = self.model.graph
        if not len(g.node):
            raise ConversionError(f"{path}: the ONNX graph has no nodes")
        self.path = path
        try:
            self.init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        except Exception as e:
            raise ConversionError(f"{path}: an initializer cannot be read ({e}); the file is corrupt") from None
        for n in g.node:
            if n.op_type == "Constant":
                self.init[n.output[0]] = numpy_helper.to_array(_attrs(n)["value"])
        self.nodes = list(g.node)
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        bad = sorted({n.op_type for n in self.nodes} - ALLOWED_OPS)
        if bad:
            node = next(n for n in self.nodes if n.op_type in bad)
            raise ConversionError(f"{path}: unsupported op {bad[0]} (node '{node.name}'); supported: "
                                  f"{', '.join(sorted(ALLOWED_OPS))}")

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


def _need(graph: Graph, node, i: int, what: str):
    if len(node.input) <= i or not node.input[i]:
        return None
    name = node.input[i]
    if name not in graph.init:
        raise ConversionError(f"{graph.path}: node '{node.name}' ({node.op_type}) input '{name}' ({what}) is not an "
                              f"initializer; only constant weights are supported")
    return graph.init[name].astype(np.float32)


def _check(path, what, got, want):
    if tuple(got.shape) != tuple(want):
        raise ConversionError(f"{path}: {what} has shape {tuple(got.shape)} but the Keras layer expects "
                              f"{tuple(want)}")


def convert(model, onnx_path: str | Path) -> tuple[dict, dict]:
    """Map an ONNX file onto a tfrestore model. Returns ({layer: {weight: array}}, info) where
    ``info["tensor_of_layer"]`` maps Keras taps to ONNX tensor names (for layer-by-layer verification)."""
    path = Path(onnx_path)
    g = Graph(path)
    ounits, kunits = g.units(), _keras_units(model)
    if len(ounits) != len(kunits):
        raise ConversionError(
            f"{path}: the graph has {len(ounits)} parameter units (conv/BN/dense) but {model.name} has "
            f"{len(kunits)}: {'missing' if len(ounits) < len(kunits) else 'unexpected extra'} layers — wrong --net?")
    arrays, tmap = {}, {}
    for ou, ku in zip(ounits, kunits):
        oname = (ou.get("conv") or ou.get("bn") or ou.get("node")).name
        kname = (ku.get("conv") or ku.get("bn") or ku.get("dense")).name
        if ou["kind"] != ku["kind"]:
            raise ConversionError(f"{path}: node '{oname}' is a {ou['kind']} unit but Keras layer '{kname}' is a "
                                  f"{ku['kind']} unit")
        where = f"node '{oname}' → layer '{kname}'"
        if ku["kind"] == "conv":
            _map_conv(g, ou, ku, arrays, tmap, where)
        elif ku["kind"] == "bn":
            arrays[ku["bn"].name] = _bn_arrays(g, ou["bn"], ku["bn"], where)
            tmap[ku["bn"].name] = ou["bn"].output[0]
        else:
            _map_dense(g, ou, ku["dense"], arrays, tmap, where)
    _map_activations(g, model, tmap)
    return arrays, {"tensor_of_layer": tmap, "units": len(ounits),
                    "opset": [o.version for o in g.model.opset_import]}


def _map_conv(g, ou, ku, arrays, tmap, where):
    conv, kconv, kbn = ou["conv"], ku["conv"], ku["bn"]
    a = _attrs(conv)
    w = _need(g, conv, 1, "weight")
    b = _need(g, conv, 2, "bias")
    if int(a.get("group", 1)) != kconv.groups:
        raise ConversionError(f"{g.path}: {where}: group {a.get('group', 1)} vs {kconv.groups}")
    strides = tuple(a.get("strides", (1, 1)))
    if strides != tuple(kconv.strides):
        raise ConversionError(f"{g.path}: {where}: strides {strides} vs Keras {tuple(kconv.strides)}")
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


def _bn_arrays(g, node, kbn, where):
    a = _attrs(node)
    eps = float(a.get("epsilon", 1e-5))
    if abs(eps - kbn.epsilon) > 1e-9:
        raise ConversionError(f"{g.path}: {where}: BatchNorm epsilon {eps} in the file, {kbn.epsilon} in Keras")
    out = {}
    for i, k in ((1, "gamma"), (2, "beta"), (3, "moving_mean"), (4, "moving_variance")):
        v = _need(g, node, i, k)
        v = v.reshape(-1)
        _check(g.path, f"{where} {k}", v, (kbn.gamma.shape[0],))
        out[k] = v
    return out


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
        bias = None if add is None else next(g.init[i] for i in add.input if i in g.init).astype(np.float32)
    _check(g.path, f"{where} weight", kernel, kd.kernel.shape)
    bias = np.zeros(kernel.shape[1], np.float32) if bias is None else bias.reshape(-1)
    _check(g.path, f"{where} bias", bias, kd.bias.shape)
    arrays[kd.name] = {"kernel": kernel, "bias": bias}
    tmap[kd.name] = ou["out"]


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
