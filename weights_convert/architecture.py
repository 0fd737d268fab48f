"""What a tfrestore net *is*, as the converters compare it with a file: its layers in order, with the geometry of
each convolution, pooling, fc, LRN and batch-norm layer read off the Keras model (nothing duplicated by hand).

    arch = Architecture(model)
    arch.layers            # [Spec(name, kind, geometry)] in forward order; kinds: conv, fc, pool, lrn, bn, relu
    arch.check(name, "conv", {"kernel": (3, 3), "stride": (1, 1), …}, where)   # raises ConversionError on a mismatch

and the checks every weight array passes: :func:`finite_float32` (float dtype, no NaN / Inf) and
:func:`check_magnitude` (no value larger than a trained network of these families holds, ``MAGNITUDE_LIMITS``).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import ConversionError


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    kind: str            # conv, fc, pool, lrn, bn, relu
    geometry: dict


def _conv_pad(layer, previous) -> tuple[int, int]:
    import keras
    if layer.padding == "same":                  # tfrestore uses "same" only for stride 1, odd kernels
        return tuple(k // 2 for k in layer.kernel_size)
    if isinstance(previous, keras.layers.ZeroPadding2D):
        (top, _), (left, _) = previous.padding
        return int(top), int(left)
    return 0, 0


def _describe(layer, previous) -> Spec | None:
    import keras
    from tfrestore.nets.layers import CaffeLRN, MaxPool
    if isinstance(layer, keras.layers.Conv2D):
        return Spec(layer.name, "conv", {
            "num_output": int(layer.filters), "kernel": tuple(layer.kernel_size), "stride": tuple(layer.strides),
            "pad": _conv_pad(layer, previous), "dilation": tuple(layer.dilation_rate), "group": int(layer.groups),
            "bias": bool(layer.use_bias)})
    if isinstance(layer, keras.layers.Dense):
        return Spec(layer.name, "fc", {"num_output": int(layer.units), "bias": bool(layer.use_bias)})
    if isinstance(layer, MaxPool):
        return Spec(layer.name, "pool", {"kernel": (layer.pool_size,) * 2, "stride": (layer.strides,) * 2,
                                         "pad": (layer.pad,) * 2, "ceil_mode": bool(layer.ceil_mode)})
    if isinstance(layer, CaffeLRN):
        return Spec(layer.name, "lrn", {"local_size": int(layer.local_size), "alpha": float(layer.alpha),
                                        "beta": float(layer.beta), "k": float(layer.k)})
    if isinstance(layer, keras.layers.BatchNormalization):
        return Spec(layer.name, "bn", {"epsilon": float(layer.epsilon)})
    if isinstance(layer, keras.layers.ReLU):
        return Spec(layer.name, "relu", {})
    return None


class Architecture:
    def __init__(self, model):
        self.model_name = model.name
        self.layers: list[Spec] = []
        previous = None
        for layer in model.layers:
            spec = _describe(layer, previous)
            if spec is not None:
                self.layers.append(spec)
            previous = layer
        self.by_name = {s.name: s for s in self.layers}

    def of_kind(self, *kinds: str) -> list[Spec]:
        return [s for s in self.layers if s.kind in kinds]

    def check(self, name: str, kind: str, found: dict, where: str) -> None:
        """Compare a file's parameters of layer ``name`` with the net's; every key of ``found`` must match."""
        spec = self.by_name.get(name)
        if spec is None or spec.kind != kind:
            what = "no such layer" if spec is None else f"a {spec.kind} layer"
            raise ConversionError(f"{where}: a {kind} layer '{name}' in the file, {what} in {self.model_name}")
        for key, value in found.items():
            want = spec.geometry[key]
            if not _same(value, want):
                raise ConversionError(f"{where}: {key} is {_fmt(value)} in the file, {self.model_name} has "
                                      f"{_fmt(want)}")


def _same(a, b) -> bool:
    if isinstance(b, float) or isinstance(a, float):
        a, b = float(a), float(b)
        return bool(np.isfinite(a)) and abs(a - b) <= 1e-6 * max(abs(b), 1e-12)
    if isinstance(b, tuple):
        return tuple(int(x) for x in np.atleast_1d(a)) == tuple(b)
    return a == b


def _fmt(v) -> str:
    return str(tuple(v)) if isinstance(v, (list, tuple, np.ndarray)) else str(v)


# ---- values no trained network holds ------------------------------------------------------------------------------

ALLOW_FLAG = "--allow-huge-weights"          # the CLI flag that accepts them anyway …
ALLOW_KEYWORD = "allow_huge_weights"         # … and the converters' keyword argument that does the same


@dataclasses.dataclass(frozen=True)
class MagnitudeLimit:
    """The largest |value| a tensor of one role may hold in a trained network of these families."""
    limit: float
    what: str            # the role in words, for the message


# Why these numbers. Trained AlexNet / CaffeNet / VGG16 / VGG16-BN / ResNet-18 parameters are O(1): weight decay
# (5e-4 for the Caffe nets, 1e-4 for ResNet) keeps conv and fc weights well below 1 in magnitude, the Caffe nets'
# biases start at 0, 0.1 or 1 and stay of that order, and BatchNorm's scale and shift (γ, β) are O(1) too. A
# torchvision export with BatchNorm folded into the convolutions multiplies a kernel by γ/√(σ² + ε), at most
# γ/√ε ≈ 316·γ for a dead channel (ε = 1e-5), and its bias is β − γμ/√(σ² + ε): still far below 1e4. BatchNorm's
# running statistics are in activation units, not parameter units, and can legitimately be large: a BatchNorm on
# raw 0–255 input (MXNet's `bn_data`, a detector's stem) holds means near 100 and variances near 5e3, one after a
# first convolution on such input means up to 1e3–1e4 and variances up to their square. So parameters are limited
# at 1e4, running means at 1e6 and running variances at 1e12 (= 1e6²): a margin of 100× or more over anything
# these families hold. The damage the limits catch is a flipped exponent bit: the exponent's top bit multiplies a
# weight by 2^128 (1e-2 → 3e36), and a random byte written over the top byte of a float lands on an exponent above
# 2^13 (≈ 1e4) in ~45 % of cases.
MAGNITUDE_LIMITS = {
    "kernel": MagnitudeLimit(1e4, "conv / fc weights"),
    "bias": MagnitudeLimit(1e4, "biases"),
    "gamma": MagnitudeLimit(1e4, "BatchNorm scales (gamma)"),
    "beta": MagnitudeLimit(1e4, "BatchNorm shifts (beta)"),
    "moving_mean": MagnitudeLimit(1e6, "BatchNorm running means"),
    "moving_variance": MagnitudeLimit(1e12, "BatchNorm running variances"),
}


def check_magnitude(array: np.ndarray, role: str, where: str, allow_huge: bool = False) -> None:
    """Refuse a weight array (float32, finite) holding values no trained network has.

    ``role`` is the Keras weight it becomes (a key of ``MAGNITUDE_LIMITS``); ``where`` names the file, layer and
    blob / initializer. A running variance below zero is refused whatever ``allow_huge`` says (no average of
    variances is negative). Raises :class:`ConversionError` naming the count, the largest value and its index,
    the limit and the flag that accepts the values anyway.
    """
    a, where = np.asarray(array), _elide(where)
    if role == "moving_variance" and a.size and float(a.min()) < 0:
        negative = int(np.count_nonzero(a < 0))
        at = np.unravel_index(int(np.argmin(a)), a.shape)
        raise ConversionError(f"{where}: {negative} of {a.size} BatchNorm running variances are negative (smallest "
                              f"{float(a[at]):.3g} at index {_index(at)}); a variance cannot be below zero — the file "
                              "is damaged")
    if allow_huge or not a.size:
        return
    rule = MAGNITUDE_LIMITS[role]
    over = int(np.count_nonzero(np.abs(a) > rule.limit))
    if not over:
        return
    at = np.unravel_index(int(np.argmax(np.abs(a))), a.shape)
    raise ConversionError(f"{where}: {over} of {a.size} values exceed ±{rule.limit:.0e}, the most any trained "
                          f"network holds in {rule.what} (largest {float(a[at]):.6g} at index {_index(at)}); the "
                          f"file is most likely damaged (a flipped exponent bit) — to convert it anyway pass "
                          f"{ALLOW_FLAG} ({ALLOW_KEYWORD}=True in Python)")


def _index(at: tuple) -> str:
    return str(tuple(int(i) for i in at)) if len(at) != 1 else str(int(at[0]))


def _elide(text: str, keep: int = 250) -> str:
    """``text`` whole, or with its middle elided when longer than ``keep`` characters (a long path or layer name
    must not push a message's advice past ``MAX_MESSAGE``)."""
    return text if len(text) <= keep else f"{text[:keep // 3]}…{text[-(keep - keep // 3 - 1):]}"


def finite_float32(array: np.ndarray, where: str, converted: list | None = None) -> np.ndarray:
    """A weight array as float32: float32 kept, float16 / float64 converted (and recorded in ``converted``),
    integers, bools and strings refused; NaN / Inf refused with their count."""
    a = np.asarray(array)
    if a.dtype.kind != "f":
        kind = {"b": "booleans", "i": "integers", "u": "integers"}.get(a.dtype.kind, "strings or objects")
        raise ConversionError(f"{where}: weights are {kind} ({a.dtype}); only floating point (float16 / float32 / "
                              "float64) weights can be converted")
    if a.dtype != np.float32:
        if converted is not None:
            converted.append(f"{where}: {a.dtype} → float32")
        a = a.astype(np.float32)
    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise ConversionError(f"{where}: {bad} of {a.size} values are NaN or infinite")
    return a
