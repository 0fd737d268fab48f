"""Feature inversion on top of the engine: targets, per-layer batched objectives, metrics and run outputs."""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from . import nets
from .engine import Result, stretch
from .objectives import FeatureLoss, Objective
from .weights import atomic_write


def image_space(net: str, images: np.ndarray) -> np.ndarray:
    """RGB 0–255 images → image space (mean-subtracted, RGB, 0–255)."""
    return np.asarray(images, np.float32) - nets.mean_rgb(net)


class Extractors:
    """One feature extractor per layer, sharing the model's weights; each computes only up to its layer."""

    def __init__(self, model: keras.Model):
        self.model, self._cache = model, {}

    def __call__(self, layer: str) -> keras.Model:
        if layer not in self._cache:
            self._cache[layer] = nets.feature_extractor(self.model, [layer])
        return self._cache[layer]

    def features(self, net: str, layer: str, x_image_space: np.ndarray, batch: int = 8) -> np.ndarray:
        ext = self(layer)
        out = [ext(nets.to_input(net, tf.constant(x_image_space[i:i + batch])))[layer].numpy()
               for i in range(0, len(x_image_space), batch)]
        return np.concatenate(out)


def group_by_layer(layers: Sequence[str]) -> "OrderedDict[str, list[int]]":
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for i, l in enumerate(layers):
        groups.setdefault(l, []).append(i)
    return groups


def feature_objective(extractors: Extractors, net: str, layers: Sequence[str], x0: np.ndarray,
                      masks: Sequence[np.ndarray | None] | None = None, normalise: bool = True,
                      mean: bool = False) -> tuple[Objective, dict[str, np.ndarray]]:
    """Σ over distinct layers of FeatureLoss(layer, Φ_layer(x0), problems=those using it).

    ``layers[i]`` is problem i's layer, ``x0[i]`` its original (image space). Returns the objective and the
    targets by layer.
    """
    parts, targets = [], {}
    for layer, idx in group_by_layer(layers).items():
        tgt = extractors.features(net, layer, x0[idx])
        targets[layer] = tgt
        mask = None
        if masks is not None and any(masks[i] is not None for i in idx):
            mask = np.stack([np.ones(tgt.shape[1:], np.float32) if masks[i] is None else masks[i] for i in idx])
        parts.append(FeatureLoss(extractors(layer), layer, tgt, mask=mask,
                                 problems=None if len(idx) == len(layers) else idx, normalise=normalise,
                                 mean=mean))
    return sum(parts, 0), targets


def evaluate(extractors: Extractors, net: str, layers: Sequence[str], x0: np.ndarray, recon: np.ndarray,
             masks=None) -> list[dict]:
    """Per problem: M&V 2015 relative squared feature error, its square root (M&V 2016), image-space errors and
    whether the classifier's top-1 label is kept."""
    rows = []
    model = extractors.model
    probs0 = _predict(model, net, x0)
    probs1 = _predict(model, net, recon)
    for layer, idx in group_by_layer(layers).items():
        f0 = extractors.features(net, layer, x0[idx])
        f1 = extractors.features(net, layer, recon[idx])
        for j, i in enumerate(idx):
            m = 1.0 if masks is None or masks[i] is None else masks[i]
            rel = float(np.sum((m * (f1[j] - f0[j])) ** 2) / max(np.sum((m * f0[j]) ** 2), 1e-30))
            d = recon[i].astype(np.float64) - x0[i]
            rows.append({"problem": i, "layer": layer, "rel_sq_feature_error": rel,
                         "sqrt_rel_feature_error": float(np.sqrt(rel)),
                         "image_rel_sq_error": float(np.sum(d ** 2) / max(np.sum(x0[i].astype(np.float64) ** 2),
                                                                         1e-30)),
                         "image_rmse_255": float(np.sqrt(np.mean(d ** 2))),
                         "top1_original": int(np.argmax(probs0[i])), "top1_reconstruction": int(np.argmax(probs1[i])),
                         "top1_kept": bool(np.argmax(probs0[i]) == np.argmax(probs1[i]))})
    return sorted(rows, key=lambda r: r["problem"])


def _predict(model, net, x, batch=8):
    if model.output.shape[1:] and None in model.output.shape[1:]:
        return np.zeros((len(x), 1))
    return np.concatenate([np.asarray(model(nets.to_input(net, tf.constant(x[i:i + batch]))))
                           for i in range(0, len(x), batch)])


def print_table(rows: list[dict], labels: Sequence[str]) -> str:
    head = f"{'#':>3} {'problem':<26}{'rel.sq.feat (2015)':>20}{'sqrt rel (2016)':>17}{'img RMSE/255':>14}{'top-1 kept':>12}"
    lines = [head, "-" * len(head)]
    for r, lab in zip(rows, labels):
        lines.append(f"{r['problem']:>3} {lab:<26}{r['rel_sq_feature_error']:>20.4g}{r['sqrt_rel_feature_error']:>17.4g}"
                     f"{r['image_rmse_255']:>14.2f}{str(r['top1_kept']):>12}")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def _png(path: Path, rgb01: np.ndarray):
    import skimage.io
    img = (np.clip(rgb01, 0, 1) * 255 + 0.5).astype(np.uint8)
    atomic_write(path, lambda p: skimage.io.imsave(p, img, check_contrast=False))


def write_outputs(out: str | Path, result: Result, labels: Sequence[str], originals_rgb: np.ndarray,
                  mean_rgb: np.ndarray, rows: list[dict], config: dict, title: str, ncols: int | None = None,
                  table: str = "") -> Path:
    """Reconstructions (stretched and clipped PNG, raw .npy), the saved iterate, a figure grid, metrics.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rgb = result.images + mean_rgb                   # RGB 0–255, unclipped
    for i, lab in enumerate(labels):
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in lab)
        _png(out / f"rec_{i:02d}_{safe}.png", stretch(rgb[i]))
        _png(out / f"rec_{i:02d}_{safe}_clipped.png", rgb[i] / 255.0)
    atomic_write(out / "reconstructions.npy", lambda p: np.save(p, rgb.astype(np.float32)))
    atomic_write(out / "saved_iterate.npy", lambda p: np.save(p, (result.saved_iterate + mean_rgb).astype(np.float32)))
    figure(out / "figure.png", rgb, labels, originals_rgb, rows, title, ncols)
    metrics = {"title": title, "config": config, "steps": result.steps, "seconds": result.seconds,
               "seconds_per_step": result.seconds_per_step, "saved_iterate_step": result.saved_step,
               "final_loss": result.loss.tolist(),
               "terms": {k: v.tolist() for k, v in result.values.items()},
               "problems": [{"label": lab, **r} for lab, r in zip(labels, rows)]}
    atomic_write(out / "metrics.json", lambda p: Path(p).write_text(json.dumps(metrics, indent=1, default=str)))
    if table:
        atomic_write(out / "table.txt", lambda p: Path(p).write_text(table + "\n"))
    return out


def figure(path: Path, rgb: np.ndarray, labels, originals_rgb, rows, title, ncols=None):
    """A grid like the papers': the original(s) first, then every reconstruction (each min–max stretched)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    originals = np.unique(np.asarray(originals_rgb).reshape(len(originals_rgb), -1), axis=0)
    n = len(rgb) + len(originals)
    ncols = ncols or min(n, 7)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.0 * ncols, 2.25 * nrows + 0.4), squeeze=False)
    panels = [(o.reshape(rgb.shape[1:]) / 255.0, "original") for o in originals]
    panels += [(stretch(rgb[i]), f"{labels[i]}\nerr {rows[i]['rel_sq_feature_error']:.3g}")
               for i in range(len(rgb))]
    for ax in axes.flat:
        ax.axis("off")
    for ax, (img, cap) in zip(axes.flat, panels):
        ax.imshow(np.clip(img, 0, 1))
        ax.set_title(cap, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
