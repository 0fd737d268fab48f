"""Patch data for the priors: extraction from images or from any tap of a net, normalisation, whitening, all kept
in one HDF5 file so that no later step re-extracts (spec patch_priors §1).

``extract(...)`` streams the images with ``tf.data`` (an image folder, or the embedded sample photos — a
demonstration set), computes each image's map once (the image itself in RGB 0–255, or a tap's features), and takes
``ceil(count / images)`` random patches per image, round robin over the images as the thesis walked its image list.
Validation patches come from images that give no training patch (the last ``val_fraction`` of the list);
``legacy_validation_overlap=True`` takes them from the training images, as the thesis did. Patch offsets run over
0 … H − p inclusive (``legacy_offsets=True``: the thesis' exclusive upper bound).

``prepare(path, config)`` fits the normalisation and whitening on the training patches (float64, streamed) and
stores them and the whitened training and validation sets in the same file, under a key naming the modes.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import tensorflow as tf

from tfrestore import data, nets
from tfrestore.core import files, log
from .model import PriorConfig
from .whitening import Normalisation, Whitening, fit_normalisation, fit_whitening, second_moment

CHUNK = 4096


def sources(folder: str | None = None) -> list[str]:
    """Image paths in ``folder`` (sorted), or the embedded sample photos' names."""
    return [str(p) for p in data.image_folder(folder)] if folder else data.sample_image_names()


def checked_images(paths: Sequence[str], size: int, *, folder: str, say=log.status) -> list[str]:
    """The readable images of ``paths`` (files of an image folder), reading only each file's header; one line
    for the unreadable ones (skipped) and one for those smaller than ``size`` × ``size`` (extraction resizes every
    image to that, so these are enlarged and their patches partly interpolation). None readable: ValueError."""
    from PIL import Image
    readable, bad, small = [], [], 0
    for p in paths:
        try:
            if p.endswith(".npy"):
                h, w = np.load(p, mmap_mode="r").shape[:2]
            else:
                with Image.open(p) as im:
                    w, h = im.size
        except Exception as e:               # PIL's and numpy's errors on a damaged or foreign file
            try:                             # what PIL cannot open, the loader (imageio) still may
                h, w = data.load_image(p).shape[:2]
            except (ValueError, OSError):
                bad.append((Path(p).name, type(e).__name__))
                continue
        readable.append(p)
        small += h < size or w < size
    if not readable:
        raise ValueError(f"--data {folder}: none of its {len(paths)} image files can be read (e.g. {bad[0][0]}: "
                         f"{bad[0][1]}); give a folder of PNG, JPEG, BMP, TIFF, GIF or WebP images")
    if bad:
        say(f"warning: --data {folder}: {len(bad)} of {len(paths)} image files cannot be read and are skipped "
            f"(e.g. {bad[0][0]})")
    if small:
        say(f"warning: --data {folder}: {small} of {len(readable)} images are smaller than {size}×{size}; they are "
            f"enlarged to {size}×{size}, so their patches are partly interpolation")
    return readable


def _maps(image_sources: Sequence[str], size: int, net: str | None, tap: str | None, model, batch: int):
    """Yield (index, map [H, W, C] float32) per image, loading and resizing through tf.data (arrays given as
    sources are used as they are: RGB 0–255 images, e.g. the digits)."""
    if len(image_sources) and isinstance(image_sources[0], np.ndarray):
        if tap:
            raise ValueError("feature-map patches need image files or names, not arrays")
        for i, m in enumerate(image_sources):
            yield i, np.asarray(m, np.float32)
        return

    def load(src):
        return data.load_image(src.decode(), size).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices(list(image_sources))
    ds = ds.map(lambda s: tf.numpy_function(load, [s], tf.float32), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch).prefetch(2)
    extractor = nets.feature_extractor(model, [tap]) if tap else None
    i = 0
    for imgs in ds:
        maps = imgs if extractor is None else extractor(nets.preprocess(net, imgs))[tap]
        for m in np.asarray(maps):
            yield i, m
            i += 1


def _sample(maps, per_image: int, patch: int, rng, legacy_offsets: bool):
    """[images, per_image, C·P] patches, (c, h, w) order."""
    out = []
    for _, m in maps:
        h, w, c = m.shape
        if h < patch or w < patch:
            raise ValueError(f"a {h}×{w} map has no {patch}×{patch} patch")
        hi_y, hi_x = (h - patch, w - patch) if legacy_offsets else (h - patch + 1, w - patch + 1)
        ys, xs = rng.integers(0, max(hi_y, 1), per_image), rng.integers(0, max(hi_x, 1), per_image)
        windows = np.lib.stride_tricks.sliding_window_view(m, (patch, patch), axis=(0, 1))   # [y, x, C, p, p]
        out.append(windows[ys, xs].reshape(per_image, -1))
    return np.stack(out)


def _round_robin(per_image_patches: np.ndarray, count: int) -> np.ndarray:
    """Patch j of every image, then patch j + 1 …: the order of a walk over the image list, cut at ``count``."""
    return per_image_patches.transpose(1, 0, 2).reshape(-1, per_image_patches.shape[-1])[:count]


def extract(path: str | Path, *, image_sources: Sequence[str], patch: int, count: int, val_count: int,
            net: str | None = None, tap: str | None = None, model=None, image_size: int | None = None,
            val_fraction: float = 0.2, seed: int = 0, batch: int = 16, legacy_validation_overlap: bool = False,
            legacy_offsets: bool = False) -> Path:
    """Extract training and validation patches into a new HDF5 file at ``path`` (written atomically)."""
    image_sources = list(image_sources)
    if len(image_sources) < 2:
        raise ValueError("patch extraction needs at least two images (training and validation ones)")
    n_val = max(1, int(round(len(image_sources) * val_fraction)))
    train_src = image_sources[:-n_val]
    val_src = train_src if legacy_validation_overlap else image_sources[-n_val:]
    if tap and model is None:
        model = nets.build(net, weights="auto")
    size = image_size or (nets.input_size(net) if net else 227)
    rng = np.random.default_rng(seed)
    train = _round_robin(_sample(_maps(train_src, size, net, tap, model, batch), -(-count // len(train_src)),
                                 patch, rng, legacy_offsets), count)
    val = _round_robin(_sample(_maps(val_src, size, net, tap, model, batch), -(-val_count // len(val_src)),
                               patch, rng, legacy_offsets), val_count)
    channels = train.shape[1] // (patch * patch)

    def write(p):
        with h5py.File(p, "w") as f:
            f.create_dataset("train", data=train.astype(np.float32), chunks=(min(CHUNK, len(train)), train.shape[1]))
            f.create_dataset("val", data=val.astype(np.float32))
            f.attrs.update({"patch": patch, "channels": channels, "net": net or "", "tap": tap or "image",
                            "image_size": size, "seed": seed, "train_images": len(train_src),
                            "val_images": len(val_src), "validation_overlap": legacy_validation_overlap,
                            "weights": nets.weights_source(model) if model is not None else ""})
    return files.atomic_write(path, write)


@dataclasses.dataclass
class Prepared:
    """Normalisation, whitening and the whitened sets ([T, n_white]; channel-wise [T, C, n_fpc])."""
    normalisation: Normalisation
    whitening: Whitening | list[Whitening]
    train: np.ndarray
    val: np.ndarray


def mode_key(cfg: PriorConfig, legacy_uncentred: bool = False) -> str:
    cw = "_channelwise" if cfg.kind == "channelwise" else ""
    return (f"mean_{cfg.mean_mode}_sdev_{cfg.sdev_mode}_whiten_{cfg.whiten_mode}_{cfg.n_white}{cw}"
            + ("_legacy_uncentred" if legacy_uncentred else ""))


def prepare(path: str | Path, cfg: PriorConfig, legacy_uncentred_training_data: bool = False) -> Prepared:
    """Fit (or read back) normalisation and whitening for ``cfg`` and the whitened sets; cached in ``path``."""
    path = Path(path)
    key = mode_key(cfg, legacy_uncentred_training_data)
    with h5py.File(path, "r") as f:
        if (f.attrs["patch"], f.attrs["channels"]) != (cfg.patch, cfg.channels):
            raise ValueError(f"{path} holds {f.attrs['patch']}×{f.attrs['patch']}×{f.attrs['channels']} patches; "
                             f"the prior wants {cfg.patch}×{cfg.patch}×{cfg.channels}")
        if key in f:
            return _read(f[key], cfg)
        n = len(f["train"])

        def batches():
            for i in range(0, n, CHUNK):
                yield f["train"][i:i + CHUNK]
        norm = fit_normalisation(batches, cfg.channels, cfg.positions, cfg.mean_mode, cfg.sdev_mode)
        val_raw = f["val"][:]
        if cfg.kind == "channelwise":
            covs = second_moment_channels(batches, norm, cfg)
            whitening = [fit_whitening(c, cfg.whiten_mode, cfg.n_white) for c in covs]
        else:
            whitening = fit_whitening(second_moment(norm.apply(b) for b in batches()), cfg.whiten_mode,
                                      cfg.n_white)
        train_w = np.concatenate([_whiten(norm.apply(b, legacy_uncentred_training_data), whitening, cfg)
                                  for b in batches()])
        val_w = _whiten(norm.apply(val_raw), whitening, cfg)
    with h5py.File(path, "a") as f:               # the cache: a later run of any step reads it back
        g = f.create_group(key)
        g["mean"], g["sdev"] = norm.mean, norm.sdev
        ws = whitening if isinstance(whitening, list) else [whitening]
        g["whiten"] = np.stack([w.whiten for w in ws])
        g["unwhiten"] = np.stack([w.unwhiten for w in ws])
        g["train"], g["val"] = train_w.astype(np.float32), val_w.astype(np.float32)
    return Prepared(norm, whitening, train_w.astype(np.float32), val_w.astype(np.float32))


def second_moment_channels(batches, norm: Normalisation, cfg: PriorConfig) -> list[np.ndarray]:
    acc, n = 0.0, 0
    for b in batches():
        z = norm.apply(b).reshape(len(b), cfg.channels, cfg.positions)
        acc, n = acc + np.einsum("tcp,tcq->cpq", z, z), n + len(b)
    return list(acc / (n - 1))


def _whiten(x, whitening, cfg):
    if isinstance(whitening, list):
        z = x.reshape(len(x), cfg.channels, cfg.positions)
        return np.stack([z[:, c] @ w.whiten.T for c, w in enumerate(whitening)], axis=1)
    return x @ whitening.whiten.T


def _read(g, cfg) -> Prepared:
    norm = Normalisation(cfg.channels, cfg.positions, cfg.mean_mode, cfg.sdev_mode, g["mean"][:], g["sdev"][:])
    ws = [Whitening(cfg.whiten_mode, a, b) for a, b in zip(g["whiten"][:], g["unwhiten"][:])]
    return Prepared(norm, ws if cfg.kind == "channelwise" else ws[0], g["train"][:], g["val"][:])
