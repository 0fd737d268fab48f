"""Feature inversion on top of the engine: targets, per-layer batched objectives, metrics and run outputs."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfrestore.measure import metrics
from tfrestore import nets
from tfrestore.core import report
from .engine import Result
from .objectives import FeatureLoss, Objective


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
                      masks: Sequence[np.ndarray | None] | None = None, normalise: bool | str = True,
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
    whether the classifier's top-1 label is kept (:mod:`tfrestore.measure.metrics`) — None for the top-1 fields
    when the model stops short of its classifier (``nets.build(up_to=...)`` with random weights)."""
    rows = []
    model = extractors.model
    top0 = top_r = kept = [None] * len(x0)
    if nets.has_classifier(model):
        probs0, probs1 = _predict(model, net, x0), _predict(model, net, recon)
        kept, top0, top_r = metrics.top1_agreement(probs0, probs1), metrics.top1(probs0), metrics.top1(probs1)
    for layer, idx in group_by_layer(layers).items():
        f0 = extractors.features(net, layer, x0[idx])
        f1 = extractors.features(net, layer, recon[idx])
        m = None
        if masks is not None and any(masks[i] is not None for i in idx):
            m = np.stack([np.ones(f0.shape[1:], np.float32) if masks[i] is None else masks[i] for i in idx])
        rel = metrics.rel_sq_error(f0, f1, m)
        img_rel = metrics.rel_sq_error(x0[idx], recon[idx])
        rmse = np.sqrt(metrics.mse(x0[idx], recon[idx]))
        for j, i in enumerate(idx):
            rows.append({"problem": i, "layer": layer, "rel_sq_feature_error": float(rel[j]),
                         "sqrt_rel_feature_error": float(np.sqrt(rel[j])),
                         "image_rel_sq_error": float(img_rel[j]), "image_rmse_255": float(rmse[j]),
                         "top1_original": _maybe(int, top0[i]), "top1_reconstruction": _maybe(int, top_r[i]),
                         "top1_kept": _maybe(bool, kept[i])})
    return sorted(rows, key=lambda r: r["problem"])


def _maybe(kind, value):
    """``kind(value)``, or None for a top-1 field the model cannot give (no classifier)."""
    return None if value is None else kind(value)


def _predict(model, net, x, batch=8):
    if model.output.shape[1:] and None in model.output.shape[1:]:
        return np.zeros((len(x), 1))
    return np.concatenate([np.asarray(model(nets.to_input(net, tf.constant(x[i:i + batch]))))
                           for i in range(0, len(x), batch)])


TABLE_COLUMNS = [("#", "problem", "d"), ("problem", "label", ""), ("rel.sq.feat (2015)", "rel_sq_feature_error", ".4g"),
                 ("sqrt rel (2016)", "sqrt_rel_feature_error", ".4g"), ("img RMSE/255", "image_rmse_255", ".2f"),
                 ("top-1 kept", "top1_kept", "")]
SUMMARY_COLUMNS = [("condition", "condition", ""), ("N", "n", "d"), ("sqrt rel mean", "sqrt_rel_mean", ".4g"),
                   ("± 95 % CI", "sqrt_rel_ci95", ""), ("rel.sq mean", "rel_sq_mean", ".4g")]


def summarise(rows: list[dict], conditions: Sequence[str] | None = None) -> dict:
    """What the protocols report over a run (spec evaluation_protocols.md §2): for each condition — the problems
    that differ only by restart or image (``conditions[i]`` names problem i's; default: its layer) — the mean of
    M&V 2016's √(relative squared feature error) with the half-width of its 95 % confidence interval,
    1.96·std/√N (None for a single problem), and the M&V 2015 relative error's mean; and the share of problems
    whose reconstruction keeps the original's top-1 label, over the whole run (``exp_match_accuracy.m``; None
    when the rows have no top-1 label: a model built without its classifier)."""
    names = list(conditions) if conditions is not None else [r["layer"] for r in rows]
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for r, name in zip(rows, names):
        groups.setdefault(name, []).append(r)
    out = []
    for name, members in groups.items():
        mean, half = metrics.mean_ci95([r["sqrt_rel_feature_error"] for r in members])
        out.append({"condition": name, "layer": members[0]["layer"], "problems": [r["problem"] for r in members],
                    "n": len(members), "sqrt_rel_mean": mean, "sqrt_rel_ci95": None if np.isnan(half) else half,
                    "rel_sq_mean": float(np.mean([r["rel_sq_feature_error"] for r in members]))})
    if rows and any(r["top1_kept"] is None for r in rows):
        return {"conditions": out, "top1_kept": None, "problems": len(rows), "top1_kept_share": None}
    kept = [bool(r["top1_kept"]) for r in rows]
    return {"conditions": out, "top1_kept": int(sum(kept)), "problems": len(kept),
            "top1_kept_share": float(np.mean(kept)) if kept else float("nan")}


def table(rows: list[dict], labels: Sequence[str], net: str = "", weights: str = "",
          summary: dict | None = None) -> str:
    """The per-problem table every inversion prints, headed by the net and where its weights came from, and —
    given a :func:`summarise` summary — the per-condition √rel means with their 95 % CI (where a condition has
    several problems) and the run's share of top-1 labels kept. With random weights the classifier's label means
    nothing (a random AlexNet gives every input the same class), so top-1 says n/a instead of a trivially true
    value."""
    random = weights == "random"
    shown = [{**r, "label": lab, "top1_kept": "n/a" if random or r["top1_kept"] is None else r["top1_kept"]}
             for r, lab in zip(rows, labels)]
    head = f"net: {net}   weights: " + ("RANDOM (seeded) — the method, not the paper's network; top-1 n/a"
                                         if random else weights)
    text = head + "\n" + report.table(shown, TABLE_COLUMNS)
    if summary is None:
        return text
    if any(c["n"] > 1 for c in summary["conditions"]):
        shown = [{**c, "sqrt_rel_ci95": "—" if c["sqrt_rel_ci95"] is None else f"{c['sqrt_rel_ci95']:.3g}"}
                 for c in summary["conditions"]]
        text += "\nM&V 2016 error over the problems of each condition (mean ± 1.96·std/√N):\n" + \
            report.table(shown, SUMMARY_COLUMNS)
    share = "n/a (random weights)" if random else "n/a (no classifier)" if summary["top1_kept"] is None else \
        f"{summary['top1_kept']}/{summary['problems']} ({100 * summary['top1_kept_share']:.1f} %)"
    return text + f"\ntop-1 label kept over the run: {share}"


def write_outputs(out: str | Path, result: Result, labels: Sequence[str], originals_rgb: np.ndarray | None,
                  mean_rgb: np.ndarray, rows: list[dict], config: dict, title: str, table_text: str = "",
                  summary: dict | None = None) -> Path:
    """Reconstructions (stretched and clipped PNG, raw .npy), the saved iterate, a figure grid, metrics.json
    (with the run's :func:`summarise` summary under ``"summary"`` when given). ``originals_rgb=None``: the
    problems have no target image (activation maximisation), so the figure shows neither an "original" panel
    nor a feature error."""
    return report.write(out, **outputs(result, labels, originals_rgb, mean_rgb, rows, config, title,
                                       table_text=table_text, summary=summary))


def distinct_rows(images: np.ndarray) -> list[np.ndarray]:
    """The distinct images of a stack (N, ...) as flat rows, in ``np.unique(x.reshape(N, -1), axis=0)``'s order
    (lexicographic over the pixels). Why not that call: ``np.unique(axis=0)`` views each row as one structured
    scalar with a field per pixel, and that dtype costs ~400 bytes a field — 60 MB for 227² RGB images, the peak
    of a 20-layer AlexNet run (issue 24 item 5). Here rows are told apart by their bytes and only the few
    distinct ones sorted."""
    flat = np.asarray(images).reshape(len(images), -1)
    seen: dict[bytes, np.ndarray] = {}
    for row in flat:
        seen.setdefault(row.tobytes(), row)
    rows = list(seen.values())
    return sorted(rows, key=lambda r: r.tolist()) if len(rows) > 1 else rows


def outputs(result: Result, labels: Sequence[str], originals_rgb: np.ndarray | None, mean_rgb: np.ndarray,
            rows: list[dict], config: dict, title: str, *, table_text: str = "", summary: dict | None = None) -> dict:
    """What :func:`write_outputs` writes, in memory: the keyword arguments of :func:`tfrestore.core.report.write`
    (``title``, ``metrics``, ``table``, ``figure_panels``, ``pngs``, ``arrays``, ``png_text``), so that a run can
    keep its results until it writes them once, at the end."""
    rgb = result.images + mean_rgb                   # RGB 0–255, unclipped
    pngs, stretched = {}, []
    for i, lab in enumerate(labels):
        stretched.append(report.stretch(rgb[i]))     # the PNG and the figure's panel: one array, not two copies
        pngs[f"rec_{i:02d}_{report.safe_name(lab)}"] = stretched[i]
        pngs[f"rec_{i:02d}_{report.safe_name(lab)}_clipped"] = rgb[i] / 255.0
    arrays = {"reconstructions": rgb.astype(np.float32)}
    if result.saved_iterate is not None:
        arrays["saved_iterate"] = (result.saved_iterate + mean_rgb).astype(np.float32)
    panels = []
    if originals_rgb is not None:
        panels = [(o.reshape(rgb.shape[1:]) / 255.0, "original") for o in distinct_rows(originals_rgb)]
    panels += [(stretched[i], labels[i] if originals_rgb is None else
                f"{labels[i]}\nerr {rows[i]['rel_sq_feature_error']:.3g}") for i in range(len(rgb))]
    payload = {"config": config, "steps": result.steps, "seconds": result.seconds,
               "seconds_total": result.seconds_total, "interrupted": result.interrupted,
               "seconds_per_step": result.seconds_per_step, "saved_iterate_step": result.saved_step,
               "final_loss": result.loss.tolist(), "terms": {k: v.tolist() for k, v in result.values.items()},
               "problems": [{"label": lab, **r} for lab, r in zip(labels, rows)]}
    if summary is not None:
        payload["summary"] = summary
    png_text = {"Title": title, "net": str(config.get("net", "")), "weights": str(config.get("weights", ""))}
    return dict(title=title, metrics=payload, table=table_text, figure_panels=panels, pngs=pngs, arrays=arrays,
                png_text=png_text)


def gram_features(model: keras.Model, net: str, layers: Sequence[str]):
    """``images (RGB 0–255) -> {layer: features}`` for :func:`tfrestore.measure.metrics.gram_score` (the thesis used
    VGG19's relu1_1 … relu5_1; with ``net="vgg16"`` and those taps this is the VGG16 version).

    Features are float32 ``[N, H, W, C]`` per layer. The extractor runs as one ``tf.function`` (one trace for
    any batch size): a Keras functional model called eagerly keeps every intermediate map alive until the call
    returns — all of VGG16's up to relu5_1, ~110 MB an image at 224² — where the graph frees each after its
    last use (issue 24 item 4)."""
    extractor = nets.feature_extractor(model, list(layers))
    run = tf.function(lambda x: extractor(x, training=False), reduce_retracing=True)

    def features(images_rgb):
        x = nets.preprocess(net, np.asarray(images_rgb, np.float32))
        return {k: v.numpy() for k, v in run(tf.convert_to_tensor(x)).items()}
    return features


def vgg16_gram_features(taps: Sequence[str] = nets.GRAM_TAPS):
    """The Gram / VGG score's ``images -> {tap: features}`` (:func:`gram_features`): tfrestore's VGG16 (converted
    weights if installed, else seeded random, seed 0) ending at the deepest tap — the score never reads the fc head.

    Random weights: built only up to that tap (``nets.build(up_to=...)``, the kernels the whole net's bit for bit);
    the whole 224² net held ~0.85 GB more (the fc head and its initialiser's copies) next to the inverted net and
    the prior, the peak of a foe_priors image_rec run (issue 24 item 4). Converted weights: the file is checked
    against the whole net, so that is built and loaded, then cut after the tap (:func:`nets.lattice.conv_trunk`)."""
    from tfrestore.nets import lattice
    deepest = max(taps, key=nets.layer_names("vgg16").index)
    model = nets.build("vgg16", weights="auto", quiet=True, up_to=deepest)
    if nets.has_classifier(model):                      # the whole net: keep copies of the trunk's kernels only
        model = lattice.conv_trunk(model, deepest, nets.input_size("vgg16"))
    return gram_features(model, "vgg16", list(taps))
