"""What a tfrestore net *is*, as the converters compare it with a file: its layers in order, with the geometry of
each convolution, pooling, fc, LRN and batch-norm layer read off the Keras model (nothing duplicated by hand).

    arch = Architecture(model)
    arch.layers            # [Spec(name, kind, geometry)] in forward order; kinds: conv, fc, pool, lrn, bn, relu
    arch.check(name, "conv", {"kernel": (3, 3), "stride": (1, 1), …}, where)   # raises ConversionError on a mismatch
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
