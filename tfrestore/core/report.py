"""Outputs every paper shares: the display stretch, figure grids, text tables and one atomic output writer.

    report.write(out, title=..., metrics={...}, table=text, figure=[(image01, caption), ...],
                 pngs={"rec_00_conv1": image01}, arrays={"reconstructions": array})

Every file is written atomically (:mod:`tfrestore.core.files`): a crash leaves the previous version or nothing.
"""
from __future__ import annotations

import contextlib

from pathlib import Path
from typing import Sequence

import numpy as np

from . import files


def stretch(images: np.ndarray) -> np.ndarray:
    """M&V display (VLFeat ``vl_imsc``): joint min–max over all pixels and channels of each image, to [0, 1].
    A batch [N, H, W, C] is stretched per image."""
    x = np.asarray(images, np.float64)
    axes = tuple(range(1, x.ndim)) if x.ndim == 4 else None
    lo = x.min(axis=axes, keepdims=True)
    hi = (x - lo).max(axis=axes, keepdims=True)
    return (x - lo) / np.maximum(hi, 1e-12)


def safe_name(label: str) -> str:
    """A label as a file-name fragment (letters, digits, '.', '_', '-')."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in label)


def table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """A fixed-width text table, each column as wide as its widest cell. ``columns``: (header, row key, format
    spec such as ``".4g"``); the first column is left-aligned, the others right-aligned."""
    def cell(v, fmt):
        if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
            return format(v, fmt)
        return str(v)
    cells = [[cell(r.get(key, ""), fmt) for _, key, fmt in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) + 2 for i, (h, _, _) in enumerate(columns)]

    def line(values):
        return "".join(f"{v:<{w}}" if i == 0 else f"{v:>{w}}" for i, (v, w) in enumerate(zip(values, widths)))
    head = line([h for h, _, _ in columns])
    return "\n".join([head, "-" * len(head)] + [line(c) for c in cells])


def figure(path: str | Path, panels: Sequence[tuple[np.ndarray, str]], title: str, ncols: int | None = None,
           panel_size: float = 2.0) -> Path:
    """A grid of images in [0, 1] ([H, W], [H, W, 1] or [H, W, 3]) with captions, written atomically as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(panels)
    ncols = ncols or min(n, 7)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, (panel_size + 0.25) * nrows + 0.4),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (img, cap) in zip(axes.flat, panels):
        img = np.clip(np.asarray(img), 0, 1)
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(cap, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    files.atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return Path(path)


@contextlib.contextmanager
def plot(path: str | Path, figsize=(5.0, 4.0), ncols: int = 1):
    """``with plot(path) as (fig, axes): ...`` — a matplotlib figure (Agg) with ``ncols`` axes (one axis when 1),
    laid out and written atomically as PNG when the block ends."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=figsize, squeeze=ncols == 1)
    try:
        yield fig, (axes if ncols == 1 else axes[0])
        fig.tight_layout()
        files.atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    finally:
        plt.close(fig)


def write(out: str | Path, *, title: str, metrics: dict, table: str = "",
          figure_panels: Sequence[tuple[np.ndarray, str]] = (), figure_columns: int | None = None,
          pngs: dict[str, np.ndarray] | None = None, arrays: dict[str, np.ndarray] | None = None,
          png_text: dict[str, str] | None = None) -> Path:
    """Write a run's outputs to ``out``: ``<name>.png`` for each image in [0, 1], ``<name>.npy`` for each array,
    ``figure.png``, ``metrics.json`` (with ``title``) and ``table.txt``; ``png_text`` is written into every PNG."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, img in (pngs or {}).items():
        files.save_png(out / f"{name}.png", img, png_text)
    for name, arr in (arrays or {}).items():
        files.save_npy(out / f"{name}.npy", arr)
    if figure_panels:
        figure(out / "figure.png", figure_panels, title, figure_columns)
    files.write_json(out / "metrics.json", {"title": title, **metrics})
    if table:
        files.write_text(out / "table.txt", table + "\n")
    return out
