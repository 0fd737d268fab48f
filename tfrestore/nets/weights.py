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


def _open(path: str | Path) -> h5py.File:
    """The store file at ``path`` open for reading; a missing or unreadable file is a clear error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weight file {path} does not exist; convert the original weights with "
                                f"`python -m weights_convert ...` (see README.md)")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise WeightsMismatchError(f"{path} is not a readable tfrestore weight file ({e})") from None


def read_arrays(path: str | Path) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Read a store file: ``({layer: {weight: array}}, attrs)`` — every array in memory at once (the converters'
    and tests' view of a file; :func:`load_weights` reads one array at a time instead)."""
    with _open(path) as f:
        return {layer: {w: np.asarray(f[layer][w]) for w in f[layer]} for layer in f}, dict(f.attrs)


def layer_shapes(model: keras.Model) -> dict[str, dict[str, tuple[int, ...]]]:
    """``{layer_name: {weight_name: shape}}`` for every layer of ``model``, ``{}`` for those without weights:
    what a weight file for it must hold (:func:`check`). Reads shapes only, so it also works on a model whose
    variables were never given values (built in a ``keras.StatelessScope``)."""
    return {layer.name: {_short(w): tuple(int(d) for d in w.shape) for w in layer.weights} for layer in model.layers}


def check(expected: dict[str, dict[str, tuple[int, ...]]], found: dict[str, dict[str, tuple[int, ...]]],
          attrs: dict, path: str | Path, net: str) -> None:
    """Refuse a file whose layers and shapes (``found``: :func:`file_shapes`) do not fit the architecture
    (``expected``: :func:`layer_shapes` of the whole net): a layer with weights missing, a weight missing, a shape
    that differs, or a layer the net does not have. Raises :class:`WeightsMismatchError` naming the first."""
    written = attrs.get("net", "?")
    for layer, ws in expected.items():
        if ws and layer not in found:
            raise WeightsMismatchError(
                f"{path}: no weights for layer '{layer}' of {net} (file was written for net '{written}'; it has "
                f"layers {sorted(found)[:8]}...)")
        for name, shape in ws.items():
            if name not in found[layer]:
                raise WeightsMismatchError(f"{path}: layer '{layer}' has no weight '{name}' "
                                           f"(file has {sorted(found[layer])})")
            if tuple(found[layer][name]) != tuple(shape):
                raise WeightsMismatchError(
                    f"{path}: layer '{layer}' weight '{name}' has shape {tuple(found[layer][name])} in the file "
                    f"but {net} expects {tuple(shape)} (file written for net '{written}')")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise WeightsMismatchError(f"{path}: layers {extra} are not part of {net}; wrong net?")


def file_shapes(f: h5py.File) -> dict[str, dict[str, tuple[int, ...]]]:
    """``{layer: {weight: shape}}`` of an open store file, from the HDF5 metadata: no array is read."""
    return {layer: {w: tuple(f[layer][w].shape) for w in f[layer]} for layer in f}


# The most of one array held in memory at a time while loading: a larger one (AlexNet's fc6 kernel, 151 MB) is
# copied into its variable in slices of rows, so loading adds ~2 × this to the variables, not 2 × the array.
_SLICE_BYTES = 16 << 20


def _assign(variable, dataset: h5py.Dataset) -> None:
    """Copy ``dataset`` into ``variable`` (same shape, checked before), a slice of leading rows at a time."""
    row_bytes = dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64))
    if dataset.ndim == 0 or dataset.shape[0] * row_bytes <= _SLICE_BYTES:
        variable.assign(np.asarray(dataset, np.float32))
        return
    step = max(1, _SLICE_BYTES // row_bytes)
    target = variable.value            # the backend's tf.Variable: its slices assign in place
    for i in range(0, dataset.shape[0], step):
        target[i:i + step].assign(np.asarray(dataset[i:i + step], np.float32))


def load_weights(model: keras.Model, path: str | Path,
                 whole: dict[str, dict[str, tuple[int, ...]]] | None = None) -> dict:
    """Load a store file into ``model``, checking every layer and shape first; returns the file's attributes.

    The check reads only the file's metadata (layer names, shapes); then each array is read and copied into its
    variable one at a time (the largest in 16 MB slices), so loading holds the model's variables and little
    more — not the whole file (244 MB for AlexNet) beside them as a read-everything-then-assign did.

    Args:
        model: the net, or the part of it :func:`tfrestore.nets.build` made with ``up_to`` (its layers a prefix
            of the whole net's, with the same names and shapes).
        path: the ``.weights.h5`` file.
        whole: :func:`layer_shapes` of the whole net when ``model`` is a part of it: the file is checked against
            the whole net all the same (a file missing ``fc8`` or with a wrong ``fc6`` is refused even when only up
            to ``conv5`` is built), and only ``model``'s layers are read. None: ``model`` is the whole net.

    Raises :class:`WeightsMismatchError` naming the first layer that does not fit, with both shapes.
    """
    with _open(path) as f:
        attrs = dict(f.attrs)
        check(layer_shapes(model) if whole is None else whole, file_shapes(f), attrs, path, model.name)
        for layer in model.layers:
            for w in layer.weights:
                _assign(w, f[layer.name][_short(w)])
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
