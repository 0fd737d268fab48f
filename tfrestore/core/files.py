"""Atomic file output: every result file appears whole or not at all, with the user's normal permissions.

``atomic_write(path, write)`` calls ``write(tmp)`` on a temporary file beside ``path`` and renames it onto ``path``
only when ``write`` returned; a crash or Ctrl-C leaves the previous file (or none). The temporary file is created
private (``mkstemp`` uses 0600), so it is given the mode a plain ``open()`` would have given it (0666 minus the
umask) before it is renamed.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def replacing(path: str | Path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``: a crash never leaves a half-written file behind."""
    with replacing(path) as tmp:
        write(tmp)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: Path(p).write_text(text))


def write_json(path: str | Path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=1, default=str))


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    return atomic_write(path, lambda p: np.save(p, np.asarray(array)))


def save_png(path: str | Path, rgb01: np.ndarray, text: dict[str, str] | None = None) -> Path:
    """An image in [0, 1] (H, W) or (H, W, C), clipped and rounded to 8 bits; ``text`` goes into PNG tEXt chunks
    (e.g. the net and whether its weights were random)."""
    from PIL import Image, PngImagePlugin
    img = (np.clip(np.asarray(rgb01), 0, 1) * 255 + 0.5).astype(np.uint8)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(str(k), str(v))
    return atomic_write(path, lambda p: Image.fromarray(img).save(p, format="PNG", pnginfo=info))


def save_keras_weights(path: str | Path, model) -> Path:
    """``model.save_weights`` atomically (Keras insists on a name ending ``.weights.h5``, so the temporary file
    is named so too)."""
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"Keras weight files must end with .weights.h5, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".weights.h5", dir=path.parent)
    os.close(fd)
    try:
        model.save_weights(tmp, overwrite=True)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
