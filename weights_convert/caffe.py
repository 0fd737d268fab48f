"""Caffe ``.caffemodel`` (+ optional ``deploy.prototxt``) → tfrestore weights, without Caffe installed.

Reads V2 (``layer``, string types), V1 (``layers``, enum types) and V0 (parameters inside V1's ``layer`` field)
nets; blobs with ``shape`` or with the legacy ``num/channels/height/width`` (leading singleton axes are accepted
down to each blob's natural rank: inner-product weights (1,1,out,in), biases (1,1,1,out)), float ``data`` or
``double_data`` (converted to float32 and reported).

Validate, then convert: the structure (the prototxt's, else the layer parameters stored in the caffemodel) is
compared layer by layer with the tfrestore net — names, order, and every geometric parameter — and every blob is
checked (rank, shape, finite values, magnitudes a trained network has: ``architecture.MAGNITUDE_LIMITS``, waived
by ``allow_huge_weights=True`` / ``--allow-huge-weights``) in a first streaming pass; only then does a second pass
hand the arrays to the writer. Weights are mapped to the Keras model by layer
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
from .architecture import Architecture, check_magnitude, finite_float32
from .framing import Framing, existing_file, fields
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
    blobs: list      # of np.ndarray float32, shapes as stored (explicit, or legacy num/channels/height/width)
    legacy: list = dataclasses.field(default_factory=list)   # per blob: stored as legacy num/channels/height/width


def _blob_array(blob, where: str, converted: list | None = None) -> np.ndarray:
    """A blob's values as float32 in its stored shape; ``double_data`` converted (and recorded), values that do not
    fill the declared shape, empty blobs and NaN / Inf refused."""
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = tuple(int(d) for d in (blob.num, blob.channels, blob.height, blob.width))
    if any(d < 0 for d in shape):
        raise ConversionError(f"{where}: blob shape {shape} has a negative dimension")
    if len(blob.data):
        arr = np.asarray(blob.data, dtype=np.float32)
    elif len(blob.double_data):
        arr = finite_float32(np.asarray(blob.double_data, dtype=np.float64), where, converted)
    else:
        raise ConversionError(f"{where}: the blob holds no values (declared shape {shape})")
    expected = int(np.prod(shape, dtype=np.int64))
    if expected != arr.size:
        raise ConversionError(f"{where}: blob declares shape {shape} ({expected} values) but holds {arr.size} values")
    return finite_float32(arr.reshape(shape), where)


def _pair(repeated, h, w, default):
    """Caffe's (h, w) of a kernel / stride / pad / dilation: explicit _h/_w, else one or two repeated values."""
    if h or w:
        return int(h), int(w)
    vals = list(repeated) if hasattr(repeated, "__len__") else ([repeated] if repeated else [])
    if not vals:
        return default, default
    if len(vals) > 2:
        return tuple(int(v) for v in vals)
    return (int(vals[0]), int(vals[-1]))


def _params(layer, kind: str) -> dict:
    """Normalised layer parameters from a V2/V1 layer (``kind`` = V2 type); sizes as (h, w)."""
    p = {}
    if kind == "Convolution":
        c = layer.convolution_param
        p = {"num_output": int(c.num_output), "kernel": _pair(c.kernel_size, c.kernel_h, c.kernel_w, 0),
             "stride": _pair(c.stride, c.stride_h, c.stride_w, 1), "pad": _pair(c.pad, c.pad_h, c.pad_w, 0),
             "dilation": _pair(c.dilation, 0, 0, 1), "group": int(c.group), "bias": bool(c.bias_term)}
    elif kind == "InnerProduct":
        c = layer.inner_product_param
        p = {"num_output": int(c.num_output), "bias": bool(c.bias_term), "axis": int(c.axis),
             "transpose": bool(c.transpose)}
    elif kind == "Pooling":
        c = layer.pooling_param
        p = {"pool": int(c.pool), "kernel": _pair(c.kernel_size, c.kernel_h, c.kernel_w, 0),
             "stride": _pair(c.stride, c.stride_h, c.stride_w, 1), "pad": _pair(c.pad, c.pad_h, c.pad_w, 0),
             "global": bool(c.global_pooling), "round_mode": int(c.round_mode)}
    elif kind == "ReLU":
        p = {"negative_slope": float(layer.relu_param.negative_slope)}
    elif kind == "LRN":
        c = layer.lrn_param
        p = {"local_size": int(c.local_size), "alpha": float(c.alpha), "beta": float(c.beta), "k": float(c.k),
             "region": int(c.norm_region)}
    return p


def _v0_params(l0, kind: str) -> dict:
    if kind == "Convolution":
        return {"num_output": int(l0.num_output), "kernel": (int(l0.kernelsize),) * 2, "stride": (int(l0.stride),) * 2,
                "pad": (int(l0.pad),) * 2, "dilation": (1, 1), "group": int(l0.group), "bias": bool(l0.biasterm)}
    if kind == "InnerProduct":
        return {"num_output": int(l0.num_output), "bias": bool(l0.biasterm), "axis": 1, "transpose": False}
    if kind == "Pooling":
        return {"pool": int(l0.pool), "kernel": (int(l0.kernelsize),) * 2, "stride": (int(l0.stride),) * 2,
                "pad": (int(l0.pad),) * 2, "global": False, "round_mode": 0}
    if kind == "ReLU":
        return {"negative_slope": 0.0}
    if kind == "LRN":
        return {"local_size": int(l0.local_size), "alpha": float(l0.alpha), "beta": float(l0.beta), "k": float(l0.k),
                "region": 0}
    return {}


def layers_of(net, path: str, with_blobs: bool = True, converted: list | None = None) -> tuple[list[CaffeLayer], str]:
    """Normalised layers of a NetParameter (V2, V1 or V0) and the format it was in."""
    def blobs(name, protos):
        return [_blob_array(b, f"{path}: layer '{name}' blob {i}", converted) for i, b in enumerate(protos)] \
            if with_blobs else []

    def legacy(protos):
        return [not b.HasField("shape") for b in protos]
    out = []
    if len(net.layer):
        fmt = "V2"
        for l in net.layer:
            out.append(CaffeLayer(l.name, l.type, list(l.bottom), list(l.top), _params(l, l.type),
                                  blobs(l.name, l.blobs), legacy(l.blobs)))
    else:
        fmt = "V1"
        for l in net.layers:
            if l.HasField("layer"):       # V0 inside V1
                fmt = "V0"
                l0 = l.layer
                kind = _V0_TO_V2.get(l0.type, l0.type)
                out.append(CaffeLayer(l0.name, kind, list(l.bottom), list(l.top), _v0_params(l0, kind),
                                      blobs(l0.name, l0.blobs), legacy(l0.blobs)))
                continue
            enum_name = _V1_NAMES.get(l.type, str(l.type))
            kind = _V1_TO_V2.get(enum_name, enum_name)
            out.append(CaffeLayer(l.name, kind, list(l.bottom), list(l.top), _params(l, kind), blobs(l.name, l.blobs),
                                  legacy(l.blobs)))
    return out, fmt


def iter_caffemodel(path: str | Path, progress: bool = True, info: dict | None = None, desc: str = "reading",
                    leave: bool = True):
    """Yield the layers of a binary caffemodel one at a time (blobs as float32 numpy arrays, stored layout);
    ``leave=False``: the progress bar is erased when done (a first pass, followed by the second's bar).

    The file is read sequentially, one top-level field at a time; a layer's protobuf message is dropped as soon as
    its blobs are numpy arrays. ``info`` (if given) receives "format" (V2 / V1 / V0), "name" and "converted"
    (blobs stored as doubles).
    """
    from tqdm import tqdm
    path = existing_file(path, "caffemodel")
    size = path.stat().st_size
    if size == 0:
        raise ConversionError(f"{path}: the caffemodel is empty")
    info = {} if info is None else info
    converted = info.setdefault("converted", [])
    header, count, last, start = NetParameter(), 0, None, 0
    after = lambda: f"after layer '{last}'" if last else "before the first layer"
    with open(path, "rb") as f, \
            tqdm(total=size, unit="B", unit_scale=True, desc=f"{desc} {path.name}", disable=not progress,
                 leave=leave) as bar:
        try:
            for field, start, prefix, box in fields(f, size):
                payload = box.pop()
                n_bytes = len(prefix) + len(payload)
                part = NetParameter()
                if field in (2, 100):    # parse the layer message in place: no second copy of its bytes
                    (part.layer if field == 100 else part.layers).add().ParseFromString(payload)
                else:
                    part.MergeFromString(prefix + payload)
                del payload
                if field in (2, 100):
                    ls, fmt = layers_of(part, str(path), converted=converted)
                    info.setdefault("format", fmt)
                    del part
                    bar.update(n_bytes)
                    count += len(ls)
                    for layer in ls:
                        last = layer.name
                        yield layer
                else:
                    header.MergeFrom(part)
                    bar.update(n_bytes)
        except Framing as e:
            raise ConversionError(f"{path}: truncated or corrupt at byte {e.offset} of {size}: {e.what} "
                                  f"({after()})") from None
        except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as e:
            raise ConversionError(f"{path}: the message at byte {start} of {size} does not parse ({after()}): "
                                  f"{type(e).__name__}: {e}") from None
    info["name"] = header.name
    if not count:
        raise ConversionError(f"{path}: parsed, but holds no layers — not a caffemodel (or an empty net)")


def read_caffemodel(path: str | Path, progress: bool = True) -> tuple[list[CaffeLayer], str, dict]:
    """All layers of a caffemodel at once: (layers, format, header)."""
    info: dict = {}
    layers = list(iter_caffemodel(path, progress, info))
    return layers, info["format"], {"name": info["name"]}


def read_prototxt(path: str | Path):
    path = existing_file(path, "prototxt")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConversionError(f"{path}: not UTF-8 text (byte {e.start} is 0x{raw[e.start]:02x}); a prototxt is a "
                              "text file — was a binary file given?") from None
    net = NetParameter()
    try:
        text_format.Parse(text, net, allow_unknown_field=True)
    except text_format.ParseError as e:
        raise ConversionError(f"{path}: not a valid prototxt ({e})") from None
    except (RecursionError, ValueError, TypeError) as e:
        raise ConversionError(f"{path}: not a valid prototxt ({type(e).__name__}: {e})") from None
    return net


# ---- validate, then convert -----------------------------------------------------------------------------------

_KIND = {"Convolution": "conv", "InnerProduct": "fc", "Pooling": "pool", "LRN": "lrn", "ReLU": "relu"}
_DATA = ("Input", "Data")


def convert(model, caffemodel: str | Path, prototxt: str | Path | None = None, progress: bool = True,
            sink=None, *, allow_huge_weights: bool = False):
    """Map a caffemodel's blobs onto ``model`` (a tfrestore Caffe net). Returns ({layer: {weight: array}}, info).

    Validate, then convert: the structure (``prototxt``'s, else the caffemodel's own layer parameters) and every
    blob are checked in a first streaming pass — a blob holding a value larger than any trained net of these
    families has (``architecture.MAGNITUDE_LIMITS``: a flipped exponent bit) is refused unless
    ``allow_huge_weights`` (the CLI's ``--allow-huge-weights``); nothing reaches ``sink`` (a callable
    ``sink(layer_name, {weight: array})``, e.g. a :func:`tfrestore.nets.weights.array_writer`) unless it all passes.
    With a sink the blobs are read a second time and handed on one layer at a time, so memory stays near three
    times the largest layer rather than twice the file; without one the arrays are returned.
    """
    caffemodel = existing_file(caffemodel, "caffemodel")
    arch = Architecture(model)
    structure, sfile = None, caffemodel
    if prototxt is not None:
        sfile = Path(prototxt)
        structure, _ = layers_of(read_prototxt(prototxt), str(prototxt), with_blobs=False)
        _check_structure(arch, structure, sfile)
    keep = sink is None
    arrays, info, seen = _validate(model, arch, caffemodel, structure, keep=keep, progress=progress,
                                   allow_huge_weights=allow_huge_weights)
    if structure is None:
        _check_structure(arch, seen, caffemodel)
    if sink is not None:
        params = {l.name: l.params for l in structure or seen}
        for cl in iter_caffemodel(caffemodel, progress, {}, desc="2/2 converting"):
            if cl.blobs and cl.name in arch.by_name:
                sink(cl.name, _map_layer(model.get_layer(cl.name), cl, params[cl.name], caffemodel))
            cl.blobs = []
        arrays = {name: None for name in info["layers"]}
    return arrays, info


def _validate(model, arch: Architecture, caffemodel: Path, structure, *, keep: bool, progress: bool,
              allow_huge_weights: bool):
    """Pass 1: read every layer, check names, types and blobs (values' magnitudes too, unless
    ``allow_huge_weights``); keep the mapped arrays only if ``keep``."""
    params = {l.name: l.params for l in structure} if structure is not None else None
    kinds = {l.name: l.type for l in structure} if structure is not None else None
    weighted = {s.name for s in arch.layers if s.kind in ("conv", "fc")}
    arrays, seen, names, info = {}, [], set(), {}
    passes = "1/1 checking" if keep else "1/2 checking"     # with a sink a converting pass follows
    for cl in iter_caffemodel(caffemodel, progress, info, desc=passes, leave=keep):
        if cl.name in names:
            raise ConversionError(f"{caffemodel}: two layers are named '{cl.name}'; layer names must be unique")
        names.add(cl.name)
        if structure is None:
            _check_type(cl, caffemodel)
        seen.append(dataclasses.replace(cl, blobs=[]))
        if not cl.blobs:
            continue
        info.setdefault("blob_shapes", {})[cl.name] = [list(b.shape) for b in cl.blobs]
        if cl.name not in weighted:
            raise ConversionError(f"{caffemodel}: layer '{cl.name}' ({cl.type}) carries weights but {model.name} has "
                                  f"no such layer — wrong --net? ({model.name} layers: {sorted(weighted)})")
        if params is not None:
            if cl.name not in params:
                raise ConversionError(f"{caffemodel}: layer '{cl.name}' carries weights but the prototxt has no "
                                      "layer of that name — the files do not belong together")
            if kinds[cl.name] != cl.type and cl.type in _KIND:
                raise ConversionError(f"{caffemodel}: layer '{cl.name}' is {cl.type} in the caffemodel but "
                                      f"{kinds[cl.name]} in the prototxt")
        mapped = _map_layer(model.get_layer(cl.name), cl, (params or {}).get(cl.name) or cl.params, caffemodel)
        for i, (blob, role) in enumerate(zip(cl.blobs, ("kernel", "bias"))):
            check_magnitude(blob, role, f"{caffemodel}: layer '{cl.name}' blob {i} "
                                        f"({'weights' if role == 'kernel' else 'bias'})", allow_huge_weights)
        if keep:
            arrays[cl.name] = mapped
        cl.blobs = []
    missing = [s.name for s in arch.layers if s.name in weighted and s.name not in info.get("blob_shapes", {})]
    if missing:
        raise ConversionError(f"{caffemodel}: no weights for layer '{missing[0]}' of {model.name} "
                              f"(the file has weighted layers {list(info.get('blob_shapes', {}))})")
    info["layers"] = list(info.get("blob_shapes", {}))
    return arrays, info, seen


def _check_type(layer, where):
    if layer.type not in SUPPORTED | IGNORED:
        raise ConversionError(f"{where}: layer '{layer.name}' has unsupported type '{layer.type}' "
                              f"(supported: {', '.join(sorted(SUPPORTED))})")


def _check_structure(arch: Architecture, structure, sfile) -> None:
    """The file's conv / fc / pool / LRN layers against the net's: the same names in the same order, and every
    geometric parameter equal (kernel, stride, pad, dilation, group, num_output, bias, pooling method, LRN
    constants)."""
    names = [l.name for l in structure]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConversionError(f"{sfile}: two layers are named '{dupes[0]}'; layer names must be unique")
    for l in structure:
        _check_type(l, sfile)
    _check_chain(structure, sfile)
    ours = [(s.name, s.kind) for s in arch.layers if s.kind in ("conv", "fc", "pool", "lrn", "relu")]
    theirs = [(l.name, _KIND[l.type]) for l in structure if l.type in _KIND]
    if ours != theirs:
        _explain_order(arch, ours, theirs, sfile)
    for l in structure:
        if l.type not in _KIND:
            continue
        where = f"{sfile}: layer '{l.name}' ({l.type})"
        p = l.params
        if l.type == "Convolution":
            arch.check(l.name, "conv", {k: p[k] for k in ("num_output", "kernel", "stride", "pad", "dilation",
                                                           "group", "bias")}, where)
        elif l.type == "InnerProduct":
            if p.get("axis", 1) != 1 or p.get("transpose"):
                raise ConversionError(f"{where}: axis {p.get('axis')} / transpose {p.get('transpose')}; only the "
                                      "standard axis 1, untransposed inner product is supported")
            arch.check(l.name, "fc", {"num_output": p["num_output"], "bias": p["bias"]}, where)
        elif l.type == "Pooling":
            if p["round_mode"] != 0:
                raise ConversionError(f"{where}: round_mode FLOOR; Caffe nets pool with CEIL rounding")
            if p["pool"] != 0 or p["global"]:
                raise ConversionError(f"{where}: {'global ' if p['global'] else ''}pooling method "
                                      f"{['MAX', 'AVE', 'STOCHASTIC'][p['pool']] if p['pool'] < 3 else p['pool']}; "
                                      "the net has MAX pooling there")
            arch.check(l.name, "pool", {k: p[k] for k in ("kernel", "stride", "pad")}, where)
        elif l.type == "ReLU":
            if p["negative_slope"] != 0:
                raise ConversionError(f"{where}: negative_slope {p['negative_slope']} (a leaky ReLU); the net has a "
                                      "plain ReLU there")
        elif l.type == "LRN":
            if p["region"] != 0:
                raise ConversionError(f"{where}: WITHIN_CHANNEL normalisation; the net normalises ACROSS_CHANNELS")
            arch.check(l.name, "lrn", {k: p[k] for k in ("local_size", "alpha", "beta", "k")}, where)


def _check_chain(structure, sfile) -> None:
    """The tfrestore Caffe nets are chains: every layer reads the blob the layer before it wrote (in-place ReLU /
    Dropout write the blob they read). A layer reading anything else — a blob written later, or skipping a layer —
    is a different network, however its parameters look."""
    current = None
    for l in structure:
        if l.type in _DATA:
            current = l.top[0] if l.top else current
            continue
        if l.type in IGNORED:
            continue
        if len(l.bottom) != 1 or len(l.top) != 1:
            raise ConversionError(f"{sfile}: layer '{l.name}' ({l.type}) has {len(l.bottom)} inputs and {len(l.top)} "
                                  "outputs; the net is a chain of one-input, one-output layers")
        if current is not None and l.bottom[0] != current:
            raise ConversionError(f"{sfile}: layer '{l.name}' reads blob '{l.bottom[0]}', but the layer before it "
                                  f"wrote '{current}'; the layers are not the chain of the net (out of order or "
                                  "rewired)")
        current = l.top[0]


def _explain_order(arch, ours, theirs, sfile):
    ours_n, theirs_n = [n for n, _ in ours], [n for n, _ in theirs]
    for a, b in (("norm1", "pool1"), ("norm2", "pool2")):
        if {a, b} <= set(ours_n) and {a, b} <= set(theirs_n) and \
                (theirs_n.index(a) < theirs_n.index(b)) != (ours_n.index(a) < ours_n.index(b)):
            order = "LRN before pool (AlexNet)" if theirs_n.index(a) < theirs_n.index(b) else "pool before LRN (CaffeNet)"
            raise ConversionError(f"{sfile}: the file's net has {order} at {a}/{b}, which is not the order of "
                                  f"{arch.model_name}; use --net {'alexnet' if 'AlexNet' in order else 'caffenet'}")
    missing = [n for n in ours_n if n not in theirs_n]
    extra = [n for n in theirs_n if n not in ours_n]
    if missing or extra:
        raise ConversionError(f"{sfile}: the file's layers do not match {arch.model_name}: "
                              + (f"missing {missing[:5]}" if missing else "")
                              + ("; " if missing and extra else "")
                              + (f"unexpected {extra[:5]}" if extra else "") + " — wrong --net or wrong file?")
    for (n, k), (m, j) in zip(ours, theirs):
        if (n, k) != (m, j):
            raise ConversionError(f"{sfile}: layer '{m}' ({j}) comes where {arch.model_name} has '{n}' ({k}); the "
                                  "layers are out of order")


def _natural(arr: np.ndarray, legacy: bool, rank: int, where: str, what: str) -> np.ndarray:
    """A blob in its natural rank, by Caffe's own rule (``Blob::ShapeEquals``): an explicit ``shape`` must have
    exactly that rank; legacy num/channels/height/width are the shape padded with leading 1s to four axes."""
    shape = arr.shape
    if legacy:
        if len(shape) != 4 or any(d != 1 for d in shape[:4 - rank]):
            raise ConversionError(f"{where}: the {what} blob has legacy dims {shape}; for this blob they must be "
                                  f"{(1,) * (4 - rank) + ('…',) * rank} (leading 1s, then the {rank}-D shape)")
        return arr.reshape(shape[4 - rank:])
    if len(shape) != rank:
        raise ConversionError(f"{where}: the {what} blob has shape {shape}; it must have exactly {rank} "
                              "dimensions")
    return arr


def _map_layer(kl, cl: CaffeLayer, params: dict, path) -> dict:
    """One Caffe layer's blobs → the Keras layer's arrays (every shape checked)."""
    import keras
    want = {w.path.split("/")[-1]: tuple(w.shape) for w in kl.weights}
    blobs, legacy = cl.blobs, cl.legacy or [False] * len(cl.blobs)
    where = f"{path}: layer '{cl.name}'"
    n_blobs = 1 + ("bias" in want)
    if len(blobs) != n_blobs:
        raise ConversionError(f"{where}: {len(blobs)} blobs in the file, {n_blobs} expected (weights"
                              f"{' and bias' if n_blobs == 2 else ''})")
    if isinstance(kl, keras.layers.Conv2D):
        if cl.type != "Convolution":
            raise ConversionError(f"{where} is {cl.type} in the file but a convolution in the model")
        group = int(params.get("group", 1) or 1)
        if group != kl.groups:
            raise ConversionError(f"{where}: group {group} in the file, {kl.groups} in the model")
        w = _natural(blobs[0], legacy[0], 4, where, "convolution weight (out, in/group, kh, kw)")
        out = {"kernel": np.transpose(w, (2, 3, 1, 0))}
    elif isinstance(kl, keras.layers.Dense):
        if cl.type != "InnerProduct":
            raise ConversionError(f"{where} is {cl.type} in the file but an inner product in the model")
        out = {"kernel": _natural(blobs[0], legacy[0], 2, where, "inner-product weight (out, in)").T}
    else:
        raise ConversionError(f"{where}: no converter for Keras layer type {type(kl).__name__}")
    if "bias" in want:
        out["bias"] = _natural(blobs[1], legacy[1], 1, where, "bias")
    for k, shape in want.items():
        got = out[k]
        if tuple(got.shape) != shape:
            stored = [tuple(b.shape) for b in blobs]
            raise ConversionError(f"{where}: weight '{k}' should have Keras shape {shape}, the file's blobs "
                                  f"{stored} give {tuple(got.shape)}")
    return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}
