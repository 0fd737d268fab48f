"""The weight files: converted weights as ``<net>.weights.h5`` under ``$TFRESTORE_HOME/weights``, installed there
from the artifact store (``converted/<net>/<digest>/``, one per converted original file; the digits classifier's
``classifier/digits/<digest>/``) by :func:`install`.

File layout (HDF5, written atomically): one group per Keras layer name holding one dataset per weight
(``kernel``, ``bias``, ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``), plus root attributes ``net`` and
``source`` (where the weights came from). The layout is independent of Keras' own ``save_weights`` format so that
a mismatch can be reported by layer and shape.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from pathlib import Path

import h5py
import keras
import numpy as np

from tfrestore.core import log, store
from tfrestore.core.files import replacing

LOG = log.logger(__name__)


class WeightsMismatchError(ValueError):
    """A weight file that does not fit the architecture it is loaded into."""


def home() -> Path:
    """``$TFRESTORE_HOME`` (default ``~/.tfrestore``)."""
    return Path(os.environ.get("TFRESTORE_HOME", Path.home() / ".tfrestore"))


def weight_path(net: str) -> Path:
    """Where ``weights='auto'`` looks for a network's converted weights."""
    return home() / "weights" / f"{net}.weights.h5"


def _short(weight) -> str:
    return weight.path.split("/")[-1] if hasattr(weight, "path") else weight.name.split("/")[-1].split(":")[0]


def model_weights(model: keras.Model) -> dict[str, dict[str, np.ndarray]]:
    """``{layer_name: {weight_name: array}}`` for every layer that has weights."""
    return {layer.name: {_short(w): np.asarray(w.numpy()) for w in layer.weights}
            for layer in model.layers if layer.weights}


@contextlib.contextmanager
def array_writer(path: str | Path, net: str, source: str):
    """Write a store file layer by layer: ``with array_writer(p, net, src) as write: write(layer, {w: arr})``.

    The file appears at ``path`` only when the block ends without an exception (temporary file, then rename).
    """
    with replacing(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["net"], f.attrs["source"], f.attrs["format"] = net, source, "tfrestore-weights-1"

        def write(layer: str, ws: dict[str, np.ndarray]):
            g = f.create_group(layer)
            for wname, arr in ws.items():
                g.create_dataset(wname, data=np.asarray(arr, dtype=np.float32))
        yield write


def save_arrays(arrays: dict[str, dict[str, np.ndarray]], path: str | Path, net: str, source: str) -> Path:
    """Write ``{layer: {weight: array}}`` to ``path`` atomically."""
    with array_writer(path, net, source) as write:
        for layer, ws in arrays.items():
            write(layer, ws)
    return Path(path)


def save_weights(model: keras.Model, path: str | Path, source: str = "tfrestore") -> Path:
    """Save a model's weights to the store format."""
    return save_arrays(model_weights(model), path, model.name, source)


def read_arrays(path: str | Path) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Read a store file: ``({layer: {weight: array}}, attrs)``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weight file {path} does not exist; convert the original weights with "
                                f"`python -m weights_convert ...` (see README.md)")
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            arrays = {layer: {w: np.asarray(f[layer][w]) for w in f[layer]} for layer in f}
    except OSError as e:
        raise WeightsMismatchError(f"{path} is not a readable tfrestore weight file ({e})") from None
    return arrays, attrs


def load_weights(model: keras.Model, path: str | Path) -> dict:
    """Load a store file into ``model``, checking every layer and shape first; returns the file's attributes.

    Raises :class:`WeightsMismatchError` naming the first layer that does not fit, with both shapes.
    """
    arrays, attrs = read_arrays(path)
    plan = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in arrays:
            raise WeightsMismatchError(
                f"{path}: no weights for layer '{layer.name}' of {model.name} (file was written for "
                f"net '{attrs.get('net', '?')}'; it has layers {sorted(arrays)[:8]}...)")
        for w in layer.weights:
            name = _short(w)
            if name not in arrays[layer.name]:
                raise WeightsMismatchError(f"{path}: layer '{layer.name}' has no weight '{name}' "
                                           f"(file has {sorted(arrays[layer.name])})")
            got = arrays[layer.name][name]
            if tuple(got.shape) != tuple(w.shape):
                raise WeightsMismatchError(
                    f"{path}: layer '{layer.name}' weight '{name}' has shape {tuple(got.shape)} in the file but "
                    f"{model.name} expects {tuple(w.shape)} (file written for net '{attrs.get('net', '?')}')")
            plan.append((w, got))
    extra = sorted(set(arrays) - {l.name for l in model.layers})
    if extra:
        raise WeightsMismatchError(f"{path}: layers {extra} are not part of {model.name}; wrong net?")
    for w, value in plan:
        w.assign(value)
    return attrs


# ---- installing a stored artifact's weights where nets.build(net) looks ----------------------------------------------

def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def installed(net: str, kinds: tuple[str, ...] = ("converted", "classifier")) -> store.Artifact | None:
    """The stored artifact (converted weights, a trained classifier) whose ``<net>.weights.h5`` is the one installed
    at :func:`weight_path` (matched by SHA-256), or None: nothing installed, or weights from elsewhere."""
    path = weight_path(net)
    if not path.exists():
        return None
    digest = file_sha256(path)
    for entry in (e for kind in kinds for e in store.entries(kind)):
        if entry.get("name") == net and entry.get("files", {}).get(f"{net}.weights.h5", {}).get("sha256") == digest:
            return store.Artifact(store.Key(entry["kind"], net, entry["config"]), Path(entry["path"]), entry)
    return None


def install(art: store.Artifact, net: str) -> Path:
    """Put ``art``'s ``<net>.weights.h5`` where ``nets.build(net)`` looks (a hard link where the file system allows,
    else an atomic copy). Weights already there that are no stored artifact's — a user's own — are kept aside as
    ``<net>.own-<k>.weights.h5``, never overwritten."""
    src, dst = art.file(f"{net}.weights.h5"), weight_path(net)
    if dst.exists():
        if file_sha256(dst) == art.manifest["files"][f"{net}.weights.h5"]["sha256"]:
            return dst
        if installed(net) is None:
            k = 1
            while dst.with_name(f"{net}.own-{k}.weights.h5").exists():
                k += 1
            aside = dst.with_name(f"{net}.own-{k}.weights.h5")
            dst.rename(aside)
            log.say(LOG, f"{dst} was not one of the store's {net} weights: kept as {aside}", logging.WARNING)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with replacing(dst) as tmp:
        os.unlink(tmp)
        try:
            os.link(src, tmp)              # the store's file, not a second copy of hundreds of megabytes
        except OSError:
            shutil.copyfile(src, tmp)
    log.say(LOG, f"{net} weights installed: {dst} = {art.key}")
    return dst
