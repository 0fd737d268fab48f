"""Fuzzing the converters as a hostile user would: seeded mutations of small real-format files (slim AlexNet /
CaffeNet / VGG16 Caffe files, slim VGG16-BN and ResNet-18 ONNX graphs in the zoo's and torchvision's layouts).

For every case the outcome must be one of
  - rejected: a ConversionError, and the output folder exactly as it was;
  - verified: a conversion whose layer-by-layer comparison with the reference runtime (OpenCV's Caffe importer,
    onnxruntime) on the *mutated* file passes, every converted weight within ``MAGNITUDE_LIMITS``;
  - refused as huge: a file holding a weight beyond ``MAGNITUDE_LIMITS`` (a flipped exponent bit) refused by
    default with a message naming the layer, the value and the flag — and, converted again with
    ``allow_huge_weights=True``, rejected for another fault or verified like any other file (where finite but huge
    weights make the runtimes' float32 arithmetic disagree, every converted array equals the reference runtime's
    own reading of the file);
never another exception, never a hang (a per-case time limit), never a conversion the reference disagrees with.
The suite runs ``CASES`` seeds per mutation kind and base file (``CI_CASES_OF``: fewer for the costliest kind);
``-m slow`` runs ``SLOW_CASES`` of every kind. Failures are collected and reported together with their kind and
seed, so one run shows every problem.
"""
from __future__ import annotations

import collections
import copy
import os
import re
import signal
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import caffe_files as cf
import onnx_files as of
from tfrestore import nets
from tfrestore.nets import weights
from weights_convert import MAX_MESSAGE, ConversionError, caffe, onnx_convert, verify
from weights_convert.architecture import ALLOW_FLAG, MAGNITUDE_LIMITS
from weights_convert.__main__ import _structure_prototxt
from weights_convert.caffe_proto import NetParameter

pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

CASES = 6            # seeds per mutation kind in CI
CI_CASES_OF = {"exponent_flip": 2}   # fewer in CI where every case converts twice and runs the reference runtime
SLOW_CASES = 40      # with -m slow
WIDTH = 1 / 16
TIME_LIMIT_S = 30
TOL = verify.TOLERANCE


# ---- base files ------------------------------------------------------------------------------------------------

class Base:
    """A valid file (pair) and the slim net it belongs to."""

    def __init__(self, name, fmt, net, files, model):
        self.name, self.fmt, self.net, self.files, self.model = name, fmt, net, files, model


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    d = tmp_path_factory.mktemp("bases")
    out = {}
    models = {n: nets.build(n, weights=None, quiet=True, width=WIDTH)
              for n in ("alexnet", "caffenet", "vgg16", "vgg16_bn", "resnet18")}
    p, m, _ = cf.write(d, cf.alexnet_layers("norm_pool", WIDTH), 227, "V2", False, seed=1, name="alex")
    out["alexnet_v2"] = Base("alexnet_v2", "caffe", "alexnet", {"caffemodel": m, "prototxt": p}, models["alexnet"])
    p, m, _ = cf.write(d, cf.alexnet_layers("pool_norm", WIDTH), 227, "V1", True, seed=2, name="cnet")
    out["caffenet_v1_legacy"] = Base("caffenet_v1_legacy", "caffe", "caffenet", {"caffemodel": m}, models["caffenet"])
    p, m, _ = cf.write(d, cf.vgg16_layers(WIDTH), 224, "V2", False, seed=3, name="vgg")
    out["vgg16_v2"] = Base("vgg16_v2", "caffe", "vgg16", {"caffemodel": m, "prototxt": p}, models["vgg16"])
    for name, graph, net in (("vgg16_bn_zoo", of.vgg16_bn_zoo(WIDTH, seed=4), "vgg16_bn"),
                             ("resnet18_zoo", of.resnet18_zoo(seed=5, width=WIDTH), "resnet18"),
                             ("resnet18_torchvision", of.resnet18_torchvision(seed=6, width=WIDTH), "resnet18")):
        out[name] = Base(name, "onnx", net, {"onnx": of.save(graph, d / f"{name}.onnx")}, models[net])
    return out


# ---- running one case -------------------------------------------------------------------------------------------

class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout(f"no outcome within {TIME_LIMIT_S} s")


HUGE = "refused as huge"


def attempt(base: Base, files: dict, out_dir: Path, reference: dict | None = None) -> str:
    """Convert ``files`` for ``base``'s net into ``out_dir``; the outcome in words (else raises). The reference
    runtime runs ``reference`` (default: the same files) — for a legal re-encoding the runtime cannot read itself
    (float16 weights) it is the same network in the plain encoding.

    A file holding a weight beyond ``MAGNITUDE_LIMITS`` (a flipped exponent bit) must be refused by default, with
    a message naming the layer or node and the flag; converted again with ``allow_huge_weights=True`` it is judged
    like any other file: verified against the reference runtime, or rejected for another fault.
    """
    outcome = _attempt_once(base, files, out_dir, reference, allow_huge=False)
    if outcome != HUGE:
        return outcome
    flagged = _attempt_once(base, files, out_dir, reference, allow_huge=True)
    return f"{HUGE}; {flagged} with the flag"


def _attempt_once(base: Base, files: dict, out_dir: Path, reference: dict | None, allow_huge: bool) -> str:
    before = sorted(os.listdir(out_dir))
    out = out_dir / "w.weights.h5"
    model = base.model
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT_S)
    try:
        try:
            source = str(files.get("caffemodel") or files.get("onnx"))
            with weights.array_writer(out, base.net, source) as write:
                if base.fmt == "caffe":
                    _, info = caffe.convert(model, files["caffemodel"], files.get("prototxt"), progress=False,
                                            sink=write, allow_huge_weights=allow_huge)
                else:
                    arrays, info = onnx_convert.convert(model, files["onnx"], allow_huge_weights=allow_huge)
                    for layer, ws in arrays.items():
                        write(layer, ws)
        except ConversionError as e:
            message = str(e)
            assert "\n" not in message and len(message) <= MAX_MESSAGE, message
            assert sorted(os.listdir(out_dir)) == before, "a failed conversion left files behind"
            if ALLOW_FLAG not in message:
                return "rejected"
            assert not allow_huge, f"refused as huge although allow_huge_weights=True: {message}"
            named = r"(layer|node) '[^']+' .*\d+ of \d+ values exceed ±\S+ .*\(largest \S+ at index"
            assert re.search(named, message), message
            return HUGE
        weights.load_weights(model, out)
        beyond = _beyond_limits(model)
        if not allow_huge:
            assert not beyond, f"converted by default although it holds weights beyond the limits: {beyond[:3]}"
        rows = _reference_rows(base, reference or files, info)
        bad = [(layer, err) for layer, err in rows if not err <= TOL]
        if rows and not bad:
            return "verified"
        # A flipped exponent can leave finite but huge weights (−1.4e4 or 1e12 among He-scaled values below 1),
        # accepted only with allow_huge_weights: the runtimes' float32 algorithms then disagree by more than any
        # tolerance (OpenCV's LRN is 34 % off the exact formula at inputs of 1.5e6, where tfrestore's is within
        # 1e-7; Winograd convolutions lose the small values next to a huge one). The conversion is then judged
        # exactly: every converted array must equal the reference runtime's own reading of the file.
        assert _extreme(model) and _weights_equal_reference(base, reference or files, info), \
            f"converted, but the reference runtime disagrees: {bad[:3]}"
        return "verified (weights; activations overflow)"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        if out.exists():
            out.unlink()


def _beyond_limits(model) -> list[tuple[str, str, float]]:
    """(layer, weight, largest |value|) of every converted array holding a value beyond its role's limit."""
    found = []
    for layer in model.layers:
        for w in layer.weights:
            role = w.path.split("/")[-1]
            largest = float(np.max(np.abs(w.numpy()))) if np.size(w.numpy()) else 0.0
            if largest > MAGNITUDE_LIMITS[role].limit:
                found.append((layer.name, role, largest))
    return found


def _extreme(model) -> bool:
    """A weight far outside the base files' He-scaled range (|w| < 1): only a flipped exponent makes one."""
    return max(float(np.max(np.abs(w.numpy()))) for w in model.weights) > 10


def _weights_equal_reference(base, files, info) -> bool:
    """Every converted array (conv / fc kernels and biases, BatchNorm parameters) against the parameters the
    reference reader loads itself (OpenCV's Caffe importer: ``getParam``; ONNX: the initializers and Constant
    values the mapped nodes read, via onnx's own numpy_helper)."""
    theirs = _caffe_reference_params(base, files) if base.fmt == "caffe" else _onnx_reference_params(base, files, info)
    if theirs is None:
        return False
    for layer in base.model.layers:
        for w in layer.weights:
            role = w.path.split("/")[-1]
            ours = np.asarray(w.numpy())
            if role == "kernel":          # Keras (kh, kw, in, out), (in, out) → the file's (out, in, kh, kw), (out, in)
                ours = ours.transpose(3, 2, 0, 1) if ours.ndim == 4 else ours.T
            ref = theirs.get((layer.name, role))
            if ref is None or not np.array_equal(np.asarray(ref, np.float32).ravel(), ours.ravel()):
                return False
    return True


def _caffe_reference_params(base, files) -> dict:
    import cv2
    import keras
    proto = files.get("prototxt") or _structure_prototxt(Path(files["caffemodel"]), 227)
    net = cv2.dnn.readNetFromCaffe(str(proto), str(files["caffemodel"]))
    out = {}
    for layer in base.model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            lid = net.getLayerId(layer.name)
            out[(layer.name, "kernel")] = net.getParam(lid, 0)
            if layer.use_bias:
                out[(layer.name, "bias")] = net.getParam(lid, 1)
    return out


def _onnx_reference_params(base, files, info) -> dict | None:
    """{(Keras layer, weight): the ONNX file's values}: Conv / Gemm inputs 1 and 2, BatchNormalization inputs 1–4; a
    BatchNorm folded into a conv (torchvision export) is the identity BN(γ=1, β=conv bias, μ=0, σ²=1−ε)."""
    import keras
    m = onnx.load(str(files["onnx"]))
    values = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Constant":
            a = n.attribute[0]
            values[n.output[0]] = numpy_helper.to_array(a.t) if a.name == "value" else \
                np.asarray(helper.get_attribute_value(a), np.float32)
    producer = {o: n for n in m.graph.node for o in n.output}
    tensor_of = info["tensor_of_layer"]
    bn_after = {l.input._keras_history.operation.name: l for l in base.model.layers
                if isinstance(l, keras.layers.BatchNormalization)}
    out = {}
    for layer in base.model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            folded_bn = getattr(bn_after.get(layer.name), "name", "")    # a folded conv is mapped through its BN
            node = producer.get(tensor_of.get(layer.name) or tensor_of.get(folded_bn))
        elif isinstance(layer, (keras.layers.Dense, keras.layers.BatchNormalization)):
            node = producer.get(tensor_of.get(layer.name))
        else:
            continue
        if node is None:
            return None
        if isinstance(layer, keras.layers.BatchNormalization):
            if node.op_type == "BatchNormalization":
                out.update({(layer.name, r): values[node.input[k]] for k, r in
                            enumerate(("gamma", "beta", "moving_mean", "moving_variance"), start=1)})
            else:                     # folded into the conv before it
                c = layer.gamma.shape[0]
                out.update({(layer.name, "gamma"): np.ones(c), (layer.name, "beta"): _input(values, node, 2, c),
                            (layer.name, "moving_mean"): np.zeros(c),
                            (layer.name, "moving_variance"): np.full(c, 1.0 - layer.epsilon, np.float32)})
            continue
        out[(layer.name, "kernel")] = values[node.input[1]]
        if layer.use_bias:
            out[(layer.name, "bias")] = _input(values, node, 2, layer.kernel.shape[-1])
    return out


def _input(values, node, k, size):
    """A node's optional input ``k`` (a bias), zeros where the node has none."""
    return values[node.input[k]] if len(node.input) > k and node.input[k] else np.zeros(size, np.float32)


def _reference_rows(base, files, info):
    if base.fmt == "onnx":
        return verify.compare_onnx(base.model, base.net, files["onnx"], info["tensor_of_layer"])
    proto = files.get("prototxt")
    if proto is not None:
        return verify.compare_caffe(base.model, base.net, proto, files["caffemodel"])
    proto = _structure_prototxt(Path(files["caffemodel"]), int(base.model.input.shape[1]))
    try:
        return verify.compare_caffe(base.model, base.net, proto, files["caffemodel"])
    finally:
        proto.unlink()


# ---- Caffe mutations: each returns the files of one case (or None when the seed gives nothing new) --------------

def _net(path) -> NetParameter:
    net = NetParameter()
    net.ParseFromString(Path(path).read_bytes())
    return net


def _layers(net):
    return net.layer if len(net.layer) else net.layers


def _weighted(net):
    return [l for l in _layers(net) if len(l.blobs)]


def _save_net(net, d: Path, name="m.caffemodel") -> Path:
    p = d / name
    p.write_bytes(net.SerializeToString())
    return p


def _with(files, **changes):
    return {**files, **changes}


def c_truncate(base, rng, d):
    raw = Path(base.files["caffemodel"]).read_bytes()
    p = d / "t.caffemodel"
    p.write_bytes(raw[:int(rng.integers(1, len(raw)))])
    return _with(base.files, caffemodel=p)


def c_byte_flip(base, rng, d):
    raw = bytearray(Path(base.files["caffemodel"]).read_bytes())
    for _ in range(int(rng.integers(1, 4))):
        # bias towards the framing and parameters (the first kB of each layer), not only the float payload
        i = int(rng.integers(0, min(len(raw), 4096))) if rng.random() < 0.5 else int(rng.integers(0, len(raw)))
        raw[i] ^= int(rng.integers(1, 256))
    p = d / "f.caffemodel"
    p.write_bytes(bytes(raw))
    return _with(base.files, caffemodel=p)


def c_prototxt_byte_flip(base, rng, d):
    if "prototxt" not in base.files:
        return None
    raw = bytearray(Path(base.files["prototxt"]).read_bytes())
    i = int(rng.integers(0, len(raw)))
    raw[i] ^= int(rng.integers(1, 256))
    p = d / "f.prototxt"
    p.write_bytes(bytes(raw))
    return _with(base.files, prototxt=p)


def _blob(net, rng):
    layer = _weighted(net)[int(rng.integers(0, len(_weighted(net))))]
    return layer, layer.blobs[int(rng.integers(0, len(layer.blobs)))]


def _dims(blob) -> list[int]:
    if blob.HasField("shape"):
        return list(blob.shape.dim)
    return [blob.num, blob.channels, blob.height, blob.width]


def _set_dims(blob, dims):
    if blob.HasField("shape"):
        del blob.shape.dim[:]
        blob.shape.dim.extend(dims)
    else:
        blob.num, blob.channels, blob.height, blob.width = dims


def c_blob_shape(base, rng, d):
    net = _net(base.files["caffemodel"])
    _, blob = _blob(net, rng)
    dims = _dims(blob)
    i = int(rng.integers(0, len(dims)))
    dims[i] = max(0, dims[i] + int(rng.choice([-1, 1, 2])))
    _set_dims(blob, dims)
    return _with(base.files, caffemodel=_save_net(net, d))


def c_blob_permute(base, rng, d):
    net = _net(base.files["caffemodel"])
    _, blob = _blob(net, rng)
    dims = _dims(blob)
    _set_dims(blob, list(rng.permutation(dims)))
    return _with(base.files, caffemodel=_save_net(net, d))


def c_blob_rank(base, rng, d):
    """Explicit shapes with extra or missing axes: (1, out, in) for an fc weight, (out, in, 1, 1), (out·in,)."""
    net = _net(base.files["caffemodel"])
    _, blob = _blob(net, rng)
    dims = _dims(blob)
    n = int(np.prod(dims))
    form = int(rng.integers(0, 4))
    new = [[1] + dims, dims + [1, 1], [n], [1, 1] + dims][form]
    blob.ClearField("num"), blob.ClearField("channels"), blob.ClearField("height"), blob.ClearField("width")
    blob.shape.ClearField("dim")
    blob.shape.dim.extend(new)
    return _with(base.files, caffemodel=_save_net(net, d))


def c_blob_split(base, rng, d):
    net = _net(base.files["caffemodel"])
    layer, blob = _blob(net, rng)
    values = list(blob.data)
    half = len(values) // 2
    extra = layer.blobs.add()
    extra.shape.dim.append(len(values) - half)
    extra.data.extend(values[half:])
    del blob.data[half:]
    blob.ClearField("shape")
    blob.shape.dim.append(half)
    return _with(base.files, caffemodel=_save_net(net, d))


def c_double_data(base, rng, d):
    """Legal: a blob stored as double_data (and a near-float32 value range)."""
    net = _net(base.files["caffemodel"])
    _, blob = _blob(net, rng)
    values = list(blob.data)
    blob.ClearField("data")
    blob.double_data.extend(values)
    # OpenCV reads float data only: the reference runs the original (the same values, exactly)
    return _with(base.files, caffemodel=_save_net(net, d)), dict(base.files)


def c_non_finite(base, rng, d):
    net = _net(base.files["caffemodel"])
    _, blob = _blob(net, rng)
    i = int(rng.integers(0, len(blob.data)))
    blob.data[i] = [np.nan, np.inf, -np.inf][int(rng.integers(0, 3))]
    return _with(base.files, caffemodel=_save_net(net, d))


def _flip_exponent(value: float) -> float:
    """``value`` as float32 with the top bit of its exponent flipped (bit 30): ×2^128 for |value| < 1 (a weight of
    1e-2 becomes 3.4e36), Inf or NaN for 1 ≤ |value| < 2, ×2^-128 above."""
    bits = np.array([value], np.float32).view(np.uint32) ^ np.uint32(1 << 30)
    return float(bits.view(np.float32)[0])


def c_exponent_flip(base, rng, d):
    """One weight value with a flipped exponent bit: huge (refused unless allowed) or non-finite (refused)."""
    net = _net(base.files["caffemodel"])
    _, blob = _blob(net, rng)
    i = int(rng.integers(0, len(blob.data)))
    blob.data[i] = _flip_exponent(blob.data[i])
    return _with(base.files, caffemodel=_save_net(net, d))


def c_duplicate_layer(base, rng, d):
    net = _net(base.files["caffemodel"])
    layers = _layers(net)
    src = layers[int(rng.integers(0, len(layers)))]
    layers.add().CopyFrom(src)
    return _with(base.files, caffemodel=_save_net(net, d))


def c_rename_layer(base, rng, d):
    net = _net(base.files["caffemodel"])
    layers = _layers(net)
    target = layers[int(rng.integers(0, len(layers)))]
    if "layer" in target.DESCRIPTOR.fields_by_name and target.HasField("layer"):    # V0 inside V1
        target = target.layer
    target.name = target.name + "_x"
    return _with(base.files, caffemodel=_save_net(net, d))


def c_drop_layer(base, rng, d):
    net = _net(base.files["caffemodel"])
    layers = _layers(net)
    del layers[int(rng.integers(0, len(layers)))]
    return _with(base.files, caffemodel=_save_net(net, d))


def c_swap_layers(base, rng, d):
    net = _net(base.files["caffemodel"])
    layers = _layers(net)
    i, j = sorted(rng.choice(len(layers), 2, replace=False))
    a, b = copy.deepcopy(layers[int(i)]), copy.deepcopy(layers[int(j)])
    layers[int(i)].CopyFrom(b)
    layers[int(j)].CopyFrom(a)
    new = _with(base.files, caffemodel=_save_net(net, d))
    new.pop("prototxt", None)          # the structure then comes from the caffemodel itself
    return new


_PARAM_EDITS = [("convolution_param", "num_output", +2), ("convolution_param", "stride", None),
                ("convolution_param", "pad", None), ("convolution_param", "kernel_size", None),
                ("convolution_param", "group", +1), ("convolution_param", "dilation", None),
                ("pooling_param", "pool", 1), ("pooling_param", "stride", +1), ("pooling_param", "kernel_size", +1),
                ("pooling_param", "pad", +1), ("lrn_param", "local_size", +2), ("lrn_param", "alpha", 2.0),
                ("inner_product_param", "num_output", +1)]


def _edit_param(layer, rng):
    candidates = [(f, k, v) for f, k, v in _PARAM_EDITS if layer.HasField(f)]
    if not candidates:
        return False
    field, key, change = candidates[int(rng.integers(0, len(candidates)))]
    msg = getattr(layer, field)
    value = getattr(msg, key)
    if hasattr(value, "append"):             # repeated (kernel_size, stride, pad, dilation of a convolution)
        old = value[0] if len(value) else (1 if key in ("stride", "dilation") else 0)
        del value[:]
        value.append(old + 1)
    elif isinstance(change, float):
        setattr(msg, key, value * change)
    elif key == "pool":
        setattr(msg, key, change)
    else:
        setattr(msg, key, value + change)
    return True


def c_change_param(base, rng, d):
    """A geometric parameter changed, in the prototxt when there is one (the structure), else in the caffemodel."""
    if "prototxt" in base.files:
        from google.protobuf import text_format
        net = NetParameter()
        text_format.Parse(Path(base.files["prototxt"]).read_text(), net)
        layers = [l for l in _layers(net) if l.type in ("Convolution", "Pooling", "LRN", "InnerProduct")]
        if not _edit_param(layers[int(rng.integers(0, len(layers)))], rng):
            return None
        p = d / "e.prototxt"
        p.write_text(text_format.MessageToString(net))
        return _with(base.files, prototxt=p)
    net = _net(base.files["caffemodel"])
    layers = [l for l in _layers(net) if not ("layer" in l.DESCRIPTOR.fields_by_name and l.HasField("layer"))]
    for _ in range(20):
        if _edit_param(layers[int(rng.integers(0, len(layers)))], rng):
            return _with(base.files, caffemodel=_save_net(net, d))
    return None


def c_nested_prototxt(base, rng, d):
    if "prototxt" not in base.files:
        return None
    depth = int(rng.integers(100, 20000))
    p = d / "n.prototxt"
    p.write_text("layer { convolution_param " + "{ " * depth + "}" * depth + " }\n")
    return _with(base.files, prototxt=p)


def c_not_a_file(base, rng, d):
    key = ["caffemodel", "prototxt"][int(rng.integers(0, 2))] if "prototxt" in base.files else "caffemodel"
    folder = d / "a_folder"
    folder.mkdir(exist_ok=True)
    choice = int(rng.integers(0, 3))
    target = [folder, d / "missing.bin", d / "empty.bin"][choice]
    if choice == 2:
        target.write_bytes(b"")
    return _with(base.files, **{key: target})


def c_junk(base, rng, d):
    p = d / "junk.caffemodel"
    p.write_bytes(rng.bytes(int(rng.integers(1, 20000))))
    return _with(base.files, caffemodel=p)


def c_wrong_pairing(base, rng, d, all_bases):
    """A caffemodel of another net with this net's prototxt (or alone for this net)."""
    other = [b for b in all_bases.values() if b.fmt == "caffe" and b.net != base.net]
    o = other[int(rng.integers(0, len(other)))]
    return _with(base.files, caffemodel=o.files["caffemodel"])


CAFFE_MUTATIONS = {f.__name__[2:]: f for f in (
    c_truncate, c_byte_flip, c_prototxt_byte_flip, c_blob_shape, c_blob_permute, c_blob_rank, c_blob_split,
    c_double_data, c_non_finite, c_exponent_flip, c_duplicate_layer, c_rename_layer, c_drop_layer, c_swap_layers,
    c_change_param, c_nested_prototxt, c_not_a_file, c_junk, c_wrong_pairing)}


# ---- ONNX mutations ---------------------------------------------------------------------------------------------

def _graph(base) -> onnx.ModelProto:
    return onnx.load(str(base.files["onnx"]))


def _save_onnx(m, d: Path, name="m.onnx") -> Path:
    p = d / name
    p.write_bytes(m.SerializeToString())
    return p


def _weight_inits(m):
    """Initializers that are weights (read by Conv / BatchNormalization / Gemm)."""
    used = {i for n in m.graph.node if n.op_type in ("Conv", "BatchNormalization", "Gemm") for i in n.input[1:]}
    return [t for t in m.graph.initializer if t.name in used]


def _pick(seq, rng):
    return seq[int(rng.integers(0, len(seq)))]


def _set_attribute(node, key, value):
    for a in [a for a in node.attribute if a.name == key]:
        node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(key, value))


def o_truncate(base, rng, d):
    raw = Path(base.files["onnx"]).read_bytes()
    p = d / "t.onnx"
    p.write_bytes(raw[:int(rng.integers(1, len(raw)))])
    return {"onnx": p}


def o_byte_flip(base, rng, d):
    raw = bytearray(Path(base.files["onnx"]).read_bytes())
    for _ in range(int(rng.integers(1, 4))):
        raw[int(rng.integers(0, len(raw)))] ^= int(rng.integers(1, 256))
    p = d / "f.onnx"
    p.write_bytes(bytes(raw))
    return {"onnx": p}


def o_init_shape(base, rng, d):
    m = _graph(base)
    t = _pick(_weight_inits(m), rng)
    i = int(rng.integers(0, len(t.dims)))
    t.dims[i] = max(1, t.dims[i] + int(rng.choice([-1, 1])))
    return {"onnx": _save_onnx(m, d)}


def o_init_permute(base, rng, d):
    m = _graph(base)
    t = _pick([t for t in _weight_inits(m) if len(t.dims) > 1], rng)
    dims = list(t.dims)
    del t.dims[:]
    t.dims.extend(int(x) for x in rng.permutation(dims))
    return {"onnx": _save_onnx(m, d)}


def o_dtype(base, rng, d):
    """float16 / float64 weights are legal (converted, reported); integer, bool and string weights are not."""
    m, ref = _graph(base), _graph(base)
    k = int(rng.integers(0, len(_weight_inits(m))))
    t, tr = _weight_inits(m)[k], _weight_inits(ref)[k]
    arr = numpy_helper.to_array(t)
    kind = _pick(["float16", "float64", "int32", "bool", "string"], rng)
    if kind == "string":
        new = helper.make_tensor(t.name, TensorProto.STRING, list(arr.shape), [b"x"] * arr.size)
    else:
        new = numpy_helper.from_array(arr.astype(kind), t.name)
    t.CopyFrom(new)
    if kind == "float16":          # the reference runs the same rounded values as float32
        tr.CopyFrom(numpy_helper.from_array(arr.astype(np.float16).astype(np.float32), tr.name))
    return {"onnx": _save_onnx(m, d)}, {"onnx": _save_onnx(ref, d, "ref.onnx")}


def o_drop_input(base, rng, d):
    m = _graph(base)
    n = _pick([n for n in m.graph.node if len(n.input) > 1], rng)
    del n.input[-1]
    return {"onnx": _save_onnx(m, d)}


def o_empty_input(base, rng, d):
    m = _graph(base)
    n = _pick([n for n in m.graph.node if n.input], rng)
    n.input[int(rng.integers(0, len(n.input)))] = ""
    return {"onnx": _save_onnx(m, d)}


def o_drop_output(base, rng, d):
    m = _graph(base)
    n = _pick(list(m.graph.node), rng)
    del n.output[:]
    return {"onnx": _save_onnx(m, d)}


def o_constant_forms(base, rng, d):
    """Legal: a weight given by a Constant node (``value``; from opset 12 also ``value_floats``) instead of an
    initializer."""
    m = _graph(base)
    opset = m.opset_import[0].version
    t = _pick([t for t in _weight_inits(m) if len(t.dims) == 1], rng)
    arr = numpy_helper.to_array(t)
    if opset >= 12 and rng.random() < 0.5:
        node = helper.make_node("Constant", [], [t.name], name=f"const_{t.name}", value_floats=arr.tolist())
    else:
        node = helper.make_node("Constant", [], [t.name], name=f"const_{t.name}",
                                value=numpy_helper.from_array(arr, f"{t.name}_value"))
    m.graph.initializer.remove(t)
    for i in [i for i in m.graph.input if i.name == t.name]:
        m.graph.input.remove(i)
    m.graph.node.insert(0, node)
    return {"onnx": _save_onnx(m, d)}


def o_shuffle_nodes(base, rng, d):
    """Legal: the same graph with its nodes listed in another order."""
    m = _graph(base)
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(nodes[int(i)] for i in rng.permutation(len(nodes)))
    return {"onnx": _save_onnx(m, d)}, dict(base.files)


def o_cycle(base, rng, d):
    m = _graph(base)
    nodes = list(m.graph.node)
    adds = [k for k, n in enumerate(nodes) if n.op_type == "Add"]
    if adds and rng.random() < 0.5:          # a residual Add that feeds back into its own branch
        j = _pick(adds, rng)
        i = max(0, j - int(rng.integers(1, 4)))
    else:
        i, j = sorted(int(x) for x in rng.choice(len(nodes), 2, replace=False))
    nodes[i].input[0] = nodes[j].output[0]
    return {"onnx": _save_onnx(m, d)}


_ATTR_EDITS = {"Conv": [("dilations", [2, 2]), ("strides", [2, 2]), ("pads", [2, 2, 2, 2]), ("pads", [0, 1, 0, 1]),
                        ("kernel_shape", [5, 5]), ("group", 2), ("auto_pad", "SAME_UPPER")],
               "MaxPool": [("strides", [1, 1]), ("kernel_shape", [2, 2]), ("pads", [1, 1, 1, 1]),
                           ("ceil_mode", 1)],
               "Gemm": [("transA", 1), ("alpha", 2.0)]}


def o_attribute(base, rng, d):
    m = _graph(base)
    n = _pick([n for n in m.graph.node if n.op_type in _ATTR_EDITS], rng)
    _set_attribute(n, *_pick(_ATTR_EDITS[n.op_type], rng))
    return {"onnx": _save_onnx(m, d)}


def o_attribute_as_list(base, rng, d):
    m = _graph(base)
    n = _pick([n for n in m.graph.node if n.op_type in ("Conv", "BatchNormalization")], rng)
    key = "group" if n.op_type == "Conv" else "epsilon"
    _set_attribute(n, key, [1] if key == "group" else [1e-5])
    return {"onnx": _save_onnx(m, d)}


def o_non_finite(base, rng, d):
    m = _graph(base)
    t = _pick(_weight_inits(m), rng)
    arr = numpy_helper.to_array(t).copy()
    arr.flat[int(rng.integers(0, arr.size))] = _pick([np.nan, np.inf, -np.inf], rng)
    t.CopyFrom(numpy_helper.from_array(arr, t.name))
    return {"onnx": _save_onnx(m, d)}


def o_exponent_flip(base, rng, d):
    """One weight value (conv, BatchNorm, Gemm) with a flipped exponent bit: huge or non-finite."""
    m = _graph(base)
    t = _pick(_weight_inits(m), rng)
    arr = numpy_helper.to_array(t).copy()
    i = int(rng.integers(0, arr.size))
    arr.flat[i] = _flip_exponent(float(arr.flat[i]))
    t.CopyFrom(numpy_helper.from_array(arr, t.name))
    return {"onnx": _save_onnx(m, d)}


def o_bn_epsilon(base, rng, d):
    m = _graph(base)
    bns = [n for n in m.graph.node if n.op_type == "BatchNormalization"]
    if not bns:
        return None
    _set_attribute(_pick(bns, rng), "epsilon", _pick([float("nan"), -1e-5, 0.0, 1e-3, float("inf")], rng))
    return {"onnx": _save_onnx(m, d)}


def o_duplicate_initializer(base, rng, d):
    m = _graph(base)
    t = _pick(list(m.graph.initializer), rng)
    dup = m.graph.initializer.add()
    dup.CopyFrom(t)
    return {"onnx": _save_onnx(m, d)}


def o_remove_bn(base, rng, d):
    """A BatchNormalization taken out, its consumers rewired to its input."""
    m = _graph(base)
    bns = [n for n in m.graph.node if n.op_type == "BatchNormalization"]
    if not bns:
        return None
    n = _pick(bns, rng)
    for c in m.graph.node:
        for k, i in enumerate(c.input):
            if i == n.output[0]:
                c.input[k] = n.input[0]
    m.graph.node.remove(n)
    return {"onnx": _save_onnx(m, d)}


def o_bias_length(base, rng, d):
    m = _graph(base)
    convs = [n for n in m.graph.node if n.op_type == "Conv" and len(n.input) > 2]
    if not convs:
        return None
    name = _pick(convs, rng).input[2]
    t = next(t for t in m.graph.initializer if t.name == name)
    arr = numpy_helper.to_array(t)
    t.CopyFrom(numpy_helper.from_array(arr[:-1] if rng.random() < 0.5 else np.append(arr, 0.1), name))
    return {"onnx": _save_onnx(m, d)}


def o_inputs_listing(base, rng, d):
    """Legal: initializers listed among the graph inputs, or not."""
    m = _graph(base)
    listed = {i.name for i in m.graph.input}
    inits = [t for t in m.graph.initializer]
    if any(t.name in listed for t in inits):
        for i in [i for i in m.graph.input if i.name in {t.name for t in inits}]:
            m.graph.input.remove(i)
        m.ir_version = max(m.ir_version, 4)
    else:
        m.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits)
    return {"onnx": _save_onnx(m, d)}, dict(base.files)


def o_external_data(base, rng, d):
    """External tensor data: legal next to the model; refused from anywhere else."""
    m = _graph(base)
    sub = d / f"ext{int(rng.integers(0, 1 << 30))}"
    sub.mkdir()
    onnx.save_model(m, str(sub / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.data", size_threshold=0)
    if rng.random() < 0.5:
        return {"onnx": sub / "m.onnx"}, dict(base.files)
    m2 = onnx.load(str(sub / "m.onnx"), load_external_data=False)
    bad = _pick([str(sub / "m.data"), "../m.data", "missing.data"], rng)
    for t in m2.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = bad
    return {"onnx": _save_onnx(m2, sub, "bad.onnx")}


def o_unknown_op(base, rng, d):
    m = _graph(base)
    _pick([n for n in m.graph.node if n.op_type == "Relu"], rng).op_type = _pick(["LeakyRelu", "Elu", "Custom"], rng)
    return {"onnx": _save_onnx(m, d)}


def o_not_a_file(base, rng, d):
    folder = d / "a_folder.onnx"
    folder.mkdir(exist_ok=True)
    choice = int(rng.integers(0, 4))
    if choice == 3:
        (d / "empty.onnx").write_bytes(b"")
        return {"onnx": d / "empty.onnx"}
    if choice == 2:
        (d / "junk.onnx").write_bytes(rng.bytes(int(rng.integers(1, 5000))))
        return {"onnx": d / "junk.onnx"}
    return {"onnx": [folder, d / "missing.onnx"][choice]}


def o_wrong_net(base, rng, d, all_bases):
    other = [b for b in all_bases.values() if b.fmt == "onnx" and b.net != base.net]
    return dict(_pick(other, rng).files)


ONNX_MUTATIONS = {f.__name__[2:]: f for f in (
    o_truncate, o_byte_flip, o_init_shape, o_init_permute, o_dtype, o_drop_input, o_empty_input, o_drop_output,
    o_constant_forms, o_shuffle_nodes, o_cycle, o_attribute, o_attribute_as_list, o_non_finite, o_exponent_flip,
    o_bn_epsilon,
    o_duplicate_initializer, o_remove_bn, o_bias_length, o_inputs_listing, o_external_data, o_unknown_op,
    o_not_a_file, o_wrong_net)}


# ---- the tests ------------------------------------------------------------------------------------------------

def run_fuzz(bases, tmp_path, mutations, fmt, cases, cases_of=None) -> collections.Counter:
    """Every mutation kind × base file of ``fmt`` × ``cases`` seeds (``cases_of[kind]`` where given)."""
    counts, failures = collections.Counter(), []
    for kind, mutate in mutations.items():
        for base in (b for b in bases.values() if b.fmt == fmt):
            for seed in range((cases_of or {}).get(kind, cases)):
                rng = np.random.default_rng([seed, len(kind), sum(map(ord, kind + base.name))])
                d = tmp_path / f"{kind}_{base.name}_{seed}"
                d.mkdir()
                out_dir = tmp_path / f"out_{kind}_{base.name}_{seed}"
                out_dir.mkdir()
                (out_dir / "keep.txt").write_text("a user's file")
                try:
                    made = mutate(base, rng, d, bases) if "all_bases" in mutate.__code__.co_varnames \
                        else mutate(base, rng, d)
                    if made is None:
                        continue
                    files, reference = made if isinstance(made, tuple) else (made, None)
                    outcome = attempt(base, files, out_dir, reference)
                except Exception as e:       # anything but a clean rejection or a verified conversion
                    failures.append(f"{kind}/{base.name}/seed {seed}: {type(e).__name__}: {str(e)[:300]}")
                    outcome = "FAILED"
                counts[(kind, outcome)] += 1
    _report(fmt, counts)
    assert not failures, f"{len(failures)} failing cases:\n" + "\n".join(failures)
    return counts


CONVERTED = ("verified", "verified (weights; activations overflow)")
OUTCOMES = ("rejected", *CONVERTED, *(f"{HUGE}; {o} with the flag" for o in ("rejected", *CONVERTED)), "FAILED")


def _report(fmt, counts):
    kinds = sorted({k for k, _ in counts})
    print(f"\n{fmt} fuzz: {sum(counts.values())} cases")
    for k in kinds:
        print(f"  {k:<24}" + "  ".join(f"{o} {counts[(k, o)]}" for o in OUTCOMES if counts[(k, o)]))


def _huge_outcomes_seen(counts, kind="exponent_flip") -> None:
    """The kind's cases include files refused as huge by default that convert, and match the reference, with the
    flag."""
    flagged = sum(counts[(kind, f"{HUGE}; {o} with the flag")] for o in CONVERTED)
    assert flagged > 0, {o: n for (k, o), n in counts.items() if k == kind}


def test_fuzz_caffe(bases, tmp_path):
    counts = run_fuzz(bases, tmp_path, CAFFE_MUTATIONS, "caffe", CASES, CI_CASES_OF)
    assert counts[("double_data", "verified")] > 0 and counts[("truncate", "rejected")] > 0
    _huge_outcomes_seen(counts)


def test_fuzz_onnx(bases, tmp_path):
    counts = run_fuzz(bases, tmp_path, ONNX_MUTATIONS, "onnx", CASES, CI_CASES_OF)
    assert counts[("shuffle_nodes", "verified")] > 0 and counts[("cycle", "rejected")] > 0
    _huge_outcomes_seen(counts)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["caffe", "onnx"])
def test_fuzz_large(bases, tmp_path, fmt):
    counts = run_fuzz(bases, tmp_path, CAFFE_MUTATIONS if fmt == "caffe" else ONNX_MUTATIONS, fmt, SLOW_CASES)
    _huge_outcomes_seen(counts)
