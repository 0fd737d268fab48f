"""Caffe ``.caffemodel`` (+ optional ``deploy.prototxt``) → tfrestore weights, without Caffe installed.

Reads V2 (``layer``, string types), V1 (``layers``, enum types) and V0 (parameters inside V1's ``layer`` field)
nets; blobs with ``shape`` or with the legacy ``num/channels/height/width`` (whose leading singleton axes are
stripped: inner-product weights (1,1,out,in), biases (1,1,1,out)). Weights are mapped to the Keras model by layer
name, every shape is checked, conv kernels are transposed OIHW → HWIO (a group-2 kernel (O, I/2, kh, kw) becomes the
Keras grouped kernel (kh, kw, I/2, O), halves in the same order), inner-product weights out×in → in×out. The
Keras Caffe nets flatten pool5 channel-major like Caffe, so fc6 needs no reordering, and they take BGR input like
the original, so conv1 is not flipped.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from . import ConversionError
from .caffe_proto import V1_LAYER_TYPES, NetParameter

_V1_NAMES = {v: k for k, v in V1_LAYER_TYPES.items()}
# V1 enum / V0 string → V2 type string
_V1_TO_V2 = {"CONVOLUTION": "Convolution", "INNER_PRODUCT": "InnerProduct", "POOLING": "Pooling", "LRN": "LRN",
             "RELU": "ReLU", "DROPOUT": "Dropout", "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss",
             "DATA": "Data", "SPLIT": "Split", "FLATTEN": "Flatten", "CONCAT": "Concat", "ACCURACY": "Accuracy"}
_V0_TO_V2 = {"conv": "Convolution", "innerproduct": "InnerProduct", "pool": "Pooling", "lrn": "LRN",
             "relu": "ReLU", "dropout": "Dropout", "softmax": "Softmax", "data": "Data", "softmax_loss":
             "SoftmaxWithLoss", "flatten": "Flatten", "split": "Split"}
SUPPORTED = {"Input", "Data", "Convolution", "InnerProduct", "Pooling", "LRN", "ReLU", "Dropout", "Softmax",
             "Split", "Flatten"}
IGNORED = {"SoftmaxWithLoss", "Accuracy"}   # training-only layers of a train_val net carry no weights


@dataclasses.dataclass
class CaffeLayer:
    name: str
    type: str
    bottom: list
    top: list
    params: dict
    blobs: list      # of np.ndarray, shapes as stored (legacy singleton axes stripped)


def _blob_array(blob, where: str) -> np.ndarray:
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = tuple(int(d) for d in (blob.num, blob.channels, blob.height, blob.width))
    data = blob.data if len(blob.data) else blob.double_data
    arr = np.array(data, dtype=np.float32)
    if int(np.prod(shape)) != arr.size:
        raise ConversionError(f"{where}: blob declares shape {shape} ({int(np.prod(shape))} values) but holds "
                              f"{arr.size} values — the file is truncated or corrupt")
    if not blob.HasField("shape"):    # legacy 4-D: fc (1,1,out,in) → (out,in), bias (1,1,1,out) → (out,)
        while len(shape) > 1 and shape[0] == 1:
            shape = shape[1:]
    return arr.reshape(shape)


def _params(layer, kind: str) -> dict:
    """Normalised layer parameters from a V2/V1 layer (``kind`` = V2 type)."""
    p = {}
    if kind == "Convolution":
        c = layer.convolution_param
        k = c.kernel_h or (c.kernel_size[0] if len(c.kernel_size) else 0)
        p = {"num_output": c.num_output, "kernel": k, "stride": c.stride_h or (c.stride[0] if len(c.stride) else 1),
             "pad": c.pad_h or (c.pad[0] if len(c.pad) else 0), "group": c.group, "bias": c.bias_term}
    elif kind == "InnerProduct":
        p = {"num_output": layer.inner_product_param.num_output, "bias": layer.inner_product_param.bias_term}
    elif kind == "Pooling":
        c = layer.pooling_param
        p = {"pool": c.pool, "kernel": c.kernel_h or c.kernel_size, "stride": c.stride_h or c.stride,
             "pad": c.pad_h or c.pad}
    elif kind == "LRN":
        c = layer.lrn_param
        p = {"local_size": c.local_size, "alpha": c.alpha, "beta": c.beta, "k": c.k, "region": c.norm_region}
    return p


def _v0_params(l0, kind: str) -> dict:
    if kind == "Convolution":
        return {"num_output": l0.num_output, "kernel": l0.kernelsize, "stride": l0.stride, "pad": l0.pad,
                "group": l0.group, "bias": l0.biasterm}
    if kind == "InnerProduct":
        return {"num_output": l0.num_output, "bias": l0.biasterm}
    if kind == "Pooling":
        return {"pool": l0.pool, "kernel": l0.kernelsize, "stride": l0.stride, "pad": l0.pad}
    if kind == "LRN":
        return {"local_size": l0.local_size, "alpha": l0.alpha, "beta": l0.beta, "k": l0.k, "region": 0}
    return {}


def layers_of(net, path: str, with_blobs: bool = True) -> tuple[list[CaffeLayer], str]:
    """Normalised layers of a NetParameter (V2, V1 or V0) and the format it was in."""
    out = []
    if len(net.layer):
        fmt = "V2"
        for l in net.layer:
            out.append(CaffeLayer(l.name, l.type, list(l.bottom), list(l.top), _params(l, l.type),
                                  [_blob_array(b, f"{path}: layer '{l.name}' blob {i}") for i, b in enumerate(l.blobs)]
                                  if with_blobs else []))
    else:
        fmt = "V1"
        for l in net.layers:
            if l.HasField("layer"):       # V0 inside V1
                fmt = "V0"
                l0 = l.layer
                kind = _V0_TO_V2.get(l0.type, l0.type)
                blobs = l0.blobs
                out.append(CaffeLayer(l0.name, kind, list(l.bottom), list(l.top), _v0_params(l0, kind),
                                      [_blob_array(b, f"{path}: layer '{l0.name}' blob {i}")
                                       for i, b in enumerate(blobs)] if with_blobs else []))
                continue
            enum_name = _V1_NAMES.get(l.type, str(l.type))
            kind = _V1_TO_V2.get(enum_name, enum_name)
            out.append(CaffeLayer(l.name, kind, list(l.bottom), list(l.top), _params(l, kind),
                                  [_blob_array(b, f"{path}: layer '{l.name}' blob {i}") for i, b in enumerate(l.blobs)]
                                  if with_blobs else []))
    return out, fmt


def _read_varint(f) -> tuple[int, bytes]:
    """One varint from a file: (value, its raw bytes). Raises ConversionError at a premature end."""
    raw, result, shift = b"", 0, 0
    while True:
        b = f.read(1)
        if not b:
            raise ConversionError("truncated" if raw else "eof")
        raw += b
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result, raw
        shift += 7
        if shift > 63:
            raise ConversionError("bad varint")


def _top_level_fields(f, size: int):
    """Yield (field number, framing bytes, [payload bytes]) of NetParameter's top-level fields, read sequentially.

    The payload comes in a one-element list that the consumer empties, so this generator's frame holds no
    reference to it while a large layer is parsed.

    Only the framing (tag and length varints) is read here; every message is parsed by protobuf.
    """
    while True:
        try:
            tag, raw = _read_varint(f)
        except ConversionError as e:
            if str(e) == "eof":
                return
            raise
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise ConversionError("field number 0")
        if wire == 2:
            length, lraw = _read_varint(f)
            if length > size:
                raise ConversionError(f"a field claims {length} bytes in a {size}-byte file")
            payload = f.read(length)
            if len(payload) != length:
                raise ConversionError("truncated")
            box = [payload]
            del payload
            yield field, raw + lraw, box
        elif wire == 0:
            _, vraw = _read_varint(f)
            yield field, raw, [vraw]
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            payload = f.read(n)
            if len(payload) != n:
                raise ConversionError("truncated")
            yield field, raw, [payload]
        else:
            raise ConversionError(f"unexpected wire type {wire}")


def iter_caffemodel(path: str | Path, progress: bool = True, info: dict | None = None):
    """Yield the layers of a binary caffemodel one at a time (blobs as numpy arrays, stored layout).

    The file is read sequentially, one top-level field at a time; a layer's protobuf message is dropped as soon as
    its blobs are numpy arrays. ``info`` (if given) receives "format" (V2 / V1 / V0) and "name".
    """
    from tqdm import tqdm
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"{path}: no such caffemodel file")
    size = path.stat().st_size
    if size == 0:
        raise ConversionError(f"{path}: the caffemodel is empty")
    info = {} if info is None else info
    header, count = NetParameter(), 0
    with open(path, "rb") as f, \
            tqdm(total=size, unit="B", unit_scale=True, desc=f"reading {path.name}", disable=not progress) as bar:
        try:
            for field, prefix, box in _top_level_fields(f, size):
                payload = box.pop()
                n_bytes = len(prefix) + len(payload)
                part = NetParameter()
                if field in (2, 100):    # parse the layer message in place: no second copy of its bytes
                    (part.layer if field == 100 else part.layers).add().ParseFromString(payload)
                else:
                    part.MergeFromString(prefix + payload)
                del payload
                if field in (2, 100):
                    ls, fmt = layers_of(part, str(path))
                    info.setdefault("format", fmt)
                    del part
                    bar.update(n_bytes)
                    count += len(ls)
                    yield from ls
                else:
                    header.MergeFrom(part)
                    bar.update(n_bytes)
        except (DecodeError, RuntimeError, ValueError) as e:
            raise ConversionError(f"{path}: not a readable caffemodel (truncated or corrupt protobuf: {e})") from None
        except ConversionError as e:
            if str(e).startswith(str(path)):
                raise
            raise ConversionError(f"{path}: not a readable caffemodel (truncated or corrupt: {e})") from None
    info["name"] = header.name
    if not count:
        raise ConversionError(f"{path}: parsed, but holds no layers — not a caffemodel (or an empty net)")


def read_caffemodel(path: str | Path, progress: bool = True) -> tuple[list[CaffeLayer], str, dict]:
    """All layers of a caffemodel at once: (layers, format, header)."""
    info: dict = {}
    layers = list(iter_caffemodel(path, progress, info))
    return layers, info["format"], {"name": info["name"]}


def read_prototxt(path: str | Path):
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"{path}: no such prototxt file")
    net = NetParameter()
    try:
        text_format.Parse(path.read_text(), net, allow_unknown_field=True)
    except text_format.ParseError as e:
        raise ConversionError(f"{path}: not a valid prototxt ({e})") from None
    return net


def convert(model, caffemodel: str | Path, prototxt: str | Path | None = None, progress: bool = True,
            sink=None):
    """Map a caffemodel's blobs onto ``model`` (a tfrestore Caffe net). Returns ({layer: {weight: array}}, info).

    Single pass: each layer is read, checked, transposed and handed on before the next is read. With ``sink``
    (a callable ``sink(layer_name, {weight: array})``, e.g. a :func:`tfrestore.weights.array_writer`) nothing is
    kept, so memory stays near three times the largest layer rather than twice the file. Checks that need the whole
    net (missing layers, LRN/pool order) run at the end; the caller writes to a temporary file that is removed on
    :class:`ConversionError`.
    """
    caffemodel = Path(caffemodel)
    structure, sfile = None, caffemodel
    if prototxt is not None:
        structure, _ = layers_of(read_prototxt(prototxt), str(prototxt), with_blobs=False)
        sfile = Path(prototxt)
        for l in structure:
            _check_type(l, sfile)
        _check_order(model, structure, sfile)
    params = {l.name: l.params for l in structure or []}
    keras_weighted = {l.name: l for l in model.layers if l.weights}
    arrays, seen, info = {}, [], {}
    for cl in iter_caffemodel(caffemodel, progress, info):
        if structure is None:
            _check_type(cl, caffemodel)
        seen.append(dataclasses.replace(cl, blobs=[]))
        if not cl.blobs:
            continue
        info.setdefault("blob_shapes", {})[cl.name] = [list(b.shape) for b in cl.blobs]
        if cl.name not in keras_weighted:
            raise ConversionError(f"{caffemodel}: layer '{cl.name}' ({cl.type}) carries weights but {model.name} has "
                                  f"no such layer — wrong --net? ({model.name} layers: {sorted(keras_weighted)})")
        mapped = _map_layer(keras_weighted[cl.name], cl, params.get(cl.name) or cl.params, caffemodel)
        cl.blobs = []
        if sink is not None:
            sink(cl.name, mapped)
            arrays[cl.name] = None
        else:
            arrays[cl.name] = mapped
        del mapped
    if structure is None:
        _check_order(model, seen, caffemodel)
    missing = [n for n in keras_weighted if n not in arrays]
    if missing:
        raise ConversionError(f"{caffemodel}: no weights for layer '{missing[0]}' of {model.name} "
                              f"(the file has weighted layers {list(info.get('blob_shapes', {}))})")
    info["layers"] = list(info.get("blob_shapes", {}))
    return arrays, info


def _check_type(layer, where):
    if layer.type not in SUPPORTED | IGNORED:
        raise ConversionError(f"{where}: layer '{layer.name}' has unsupported type '{layer.type}' "
                              f"(supported: {', '.join(sorted(SUPPORTED))})")


def _check_order(model, structure, sfile):
    """AlexNet and CaffeNet have identical weights but a different LRN/pool order; refuse the wrong one."""
    names = [l.name for l in structure]
    keras_names = [l.name for l in model.layers]
    for a, b in (("norm1", "pool1"), ("norm2", "pool2")):
        if a in names and b in names and a in keras_names and b in keras_names:
            if (names.index(a) < names.index(b)) != (keras_names.index(a) < keras_names.index(b)):
                order = "LRN before pool (AlexNet)" if names.index(a) < names.index(b) else "pool before LRN (CaffeNet)"
                raise ConversionError(f"{sfile}: the file's net has {order} at {a}/{b}, which is not the order of "
                                      f"{model.name}; use --net {'alexnet' if 'AlexNet' in order else 'caffenet'}")


def _map_layer(kl, cl: CaffeLayer, params: dict, path) -> dict:
    import keras
    want = {w.path.split("/")[-1]: tuple(w.shape) for w in kl.weights}
    blobs = cl.blobs
    where = f"{path}: layer '{cl.name}'"
    if isinstance(kl, keras.layers.Conv2D):
        if cl.type != "Convolution":
            raise ConversionError(f"{where} is {cl.type} in the file but a convolution in the model")
        w = blobs[0]
        kh, kw, kin, kout = want["kernel"]
        if w.ndim < 4 and w.size == kh * kw * kin * kout:   # legacy dims stripped of a singleton out axis
            w = w.reshape(kout, kin, kh, kw)
        if w.ndim != 4:
            raise ConversionError(f"{where}: convolution weights must be 4-D (out, in/group, kh, kw), got {w.shape}")
        group = int(params.get("group", 1) or 1)
        if group != kl.groups:
            raise ConversionError(f"{where}: group {group} in the file, {kl.groups} in the model")
        kernel = np.transpose(w, (2, 3, 1, 0))
        out = {"kernel": kernel}
        if "bias" in want:
            if len(blobs) < 2:
                raise ConversionError(f"{where}: the model expects a bias blob, the file has none")
            out["bias"] = blobs[1].reshape(-1)
    elif isinstance(kl, keras.layers.Dense):
        if cl.type != "InnerProduct":
            raise ConversionError(f"{where} is {cl.type} in the file but an inner product in the model")
        w = blobs[0].reshape(blobs[0].shape[-2], blobs[0].shape[-1]) if blobs[0].ndim >= 2 else blobs[0]
        out = {"kernel": w.T, "bias": blobs[1].reshape(-1) if len(blobs) > 1 else None}
    else:
        raise ConversionError(f"{where}: no converter for Keras layer type {type(kl).__name__}")
    for k, shape in want.items():
        got = out.get(k)
        if got is None or tuple(got.shape) != shape:
            stored = [tuple(b.shape) for b in blobs]
            raise ConversionError(f"{where}: weight '{k}' should have Keras shape {shape}, the file's blobs "
                                  f"{stored} give {None if got is None else tuple(got.shape)}")
    return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items() if k in want}
