"""Layer-by-layer comparison of a converted Keras model with the original file run in its own runtime.

Caffe files run in OpenCV's Caffe importer (``cv2.dnn.readNetFromCaffe``, OpenCV 4.x; layer fusion off so every
layer's own output is visible); ONNX files in onnxruntime with every intermediate tensor exposed as an output.
The error of a layer is max|keras − reference| / max|reference| (float32). Softmax outputs are measured as the
relative logit error that explains them (see :func:`_rel_softmax`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tfrestore import data, nets

TOLERANCE = 1e-5


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """max|a − b| / max|b| over the finite entries; ∞ when the shapes or the non-finite entries differ (weights
    that are finite but huge overflow to inf / NaN in both runtimes alike: that is agreement, not an error)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        return float("inf")
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(fa, fb) or not np.array_equal(np.isnan(a), np.isnan(b)) or \
            not np.array_equal(a[np.isinf(a)], b[np.isinf(b)]):
        return float("inf")
    if not fb.any():
        return 0.0
    a, b = a[fb], b[fb]
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _nchw(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, (0, 3, 1, 2)) if x.ndim == 4 else x


def sample_input(net: str, size: int, image: str = "chelsea") -> np.ndarray:
    """A natural image in the net's input space, NHWC float32."""
    return nets.preprocess(net, data.load_image(image, size)[None]).numpy()


def keras_taps(model, layers, x):
    ext = nets.feature_extractor(model, layers)
    return {k: np.asarray(v) for k, v in ext(x).items()}


def caffe_reference(prototxt: str | Path, caffemodel: str | Path, x_nhwc: np.ndarray, layers) -> dict:
    import cv2
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.enableFusion(False)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.setInput(np.ascontiguousarray(_nchw(x_nhwc)))
    known = set(net.getLayerNames())
    names = [l for l in layers if l in known]
    outs = net.forward(names)
    return dict(zip(names, outs))


def compare_caffe(model, net_name: str, prototxt, caffemodel, image: str = "chelsea") -> list[tuple[str, float]]:
    size = int(model.input.shape[1])
    x = sample_input(net_name, size, image)
    taps = [l for l in nets.layer_names(model) if l not in nets.spec(net_name).hidden_taps]
    ref = caffe_reference(prototxt, caffemodel, x, taps)
    ours = keras_taps(model, list(ref), x)
    return [(l, _rel_softmax(ours[l], ref[l], ref["fc8"]) if l == "prob" and "fc8" in ref
             else _rel(_nchw(ours[l]), ref[l])) for l in ref]


def _rel_softmax(p: np.ndarray, q: np.ndarray, logits: np.ndarray) -> float:
    """Softmax outputs: the relative logit error that would explain the probability difference.

    The softmax Jacobian diag(q) − qqᵀ has ∞-norm ≤ 1/2, so |Δp|∞ ≤ ½·|Δz|∞; the returned number is
    max|p − q| / (½·max|z|), comparable with the other layers' relative errors (plain relative error on p would
    grow with the logits' magnitude and measure the softmax, not the conversion).
    """
    if not np.all(np.isfinite(logits)) or not np.all(np.isfinite(q)):
        return _rel(p, q)
    d = np.max(np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)))
    return float(d / max(0.5 * np.max(np.abs(logits)), 1e-30))


def onnx_reference(onnx_path: str | Path, x_nhwc: np.ndarray, tensors) -> dict:
    """Run an ONNX file in onnxruntime, returning the named intermediate tensors (NCHW)."""
    import onnx
    import onnxruntime as ort
    model = onnx.load(str(onnx_path))
    for node in model.graph.node:   # MXNet's legacy BatchNormalization spatial=0 holds per-channel vectors
        for a in list(node.attribute):
            if node.op_type == "BatchNormalization" and a.name == "spatial":
                node.attribute.remove(a)
    present = {o.name for o in model.graph.output}
    for t in tensors:
        if t not in present:
            model.graph.output.append(onnx.ValueInfoProto(name=t))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name
    outs = sess.run(list(tensors), {inp: np.ascontiguousarray(_nchw(x_nhwc))})
    return dict(zip(tensors, outs))


def compare_onnx(model, net_name: str, onnx_path, tensor_of_layer: dict, image: str = "chelsea"):
    size = int(model.input.shape[1])
    x = sample_input(net_name, size, image)
    ref = onnx_reference(onnx_path, x, list(tensor_of_layer.values()))
    ours = keras_taps(model, list(tensor_of_layer), x)
    return [(l, _rel(_nchw(ours[l]), ref[t])) for l, t in tensor_of_layer.items()]


def print_table(rows, runtime: str) -> bool:
    print(f"{'layer':<26}{'max rel. error vs ' + runtime:>34}")
    ok = True
    for name, err in rows:
        flag = "" if err <= TOLERANCE else "   > tolerance"
        ok &= err <= TOLERANCE
        print(f"{name:<26}{err:>34.3e}{flag}")
    print(f"{len(rows)} layers compared; worst {max(e for _, e in rows):.3e} (tolerance {TOLERANCE:g})")
    return ok
