"""Every score the papers use, as plain NumPy functions of (reference, estimate) batches.

Feature errors (per sample, over all feature elements):
- :func:`rel_sq_error` — M&V 2015 ‖Φ(x̂) − Φ0‖² / ‖Φ0‖² (optionally masked); :func:`sqrt_rel_error` — M&V 2016's
  square root of it; :func:`mean_ci95` — the 2016 table entry, mean ± 1.96·std/√N.
Classification: :func:`top1` labels and :func:`top1_agreement`.
Images (0–255 unless a ``data_range`` is given):
- :func:`mse`, :func:`rel_sq_error` on images, the thesis' :func:`nmse_dot` Σ(t − r)² / Σ(t·r) (dot-product
  denominator), :func:`psnr`, :func:`ssim` (scikit-image), and the thesis' :func:`gram_score` (``VggScoreLoss``).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def _flat(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x.reshape(len(x), -1)


def rel_sq_error(reference, estimate, mask=None) -> np.ndarray:
    """[N] ‖m ⊙ (estimate − reference)‖² / ‖m ⊙ reference‖² (M&V 2015)."""
    m = 1.0 if mask is None else _flat(mask)
    r, e = _flat(reference), _flat(estimate)
    return np.sum((m * (e - r)) ** 2, axis=1) / np.maximum(np.sum((m * r) ** 2, axis=1), 1e-30)


def sqrt_rel_error(reference, estimate, mask=None) -> np.ndarray:
    """[N] √(‖Φ(x̂) − Φ0‖² / ‖Φ0‖²) (M&V 2016)."""
    return np.sqrt(rel_sq_error(reference, estimate, mask))


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95 % confidence interval 1.96·std/√N) — M&V 2016's table entries (``table2.m``;
    MATLAB's ``std`` is the sample standard deviation, N − 1 in the denominator)."""
    v = np.asarray(values, np.float64)
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return float(v.mean()), float(half)


def top1(probs_or_logits) -> np.ndarray:
    return np.argmax(np.asarray(probs_or_logits).reshape(len(probs_or_logits), -1), axis=1)


def top1_agreement(reference, estimate) -> np.ndarray:
    """[N] bool: the classifier gives the estimate the reference's top-1 class (M&V 2016 classification
    consistency)."""
    return top1(reference) == top1(estimate)


def mse(reference, estimate) -> np.ndarray:
    """[N] mean squared error over all pixels and channels."""
    return np.mean((_flat(estimate) - _flat(reference)) ** 2, axis=1)


def nmse_dot(reference, estimate) -> np.ndarray:
    """[N] the thesis' ``NormedMSELoss``: Σ(t − r)² / Σ(t·r) — a dot-product denominator, not ‖t‖². An
    estimate orthogonal to the reference (e.g. all zero, as an untrained inverter's ReLU output can be) scores
    inf, silently: the value says it, a NumPy warning line would only puzzle a user."""
    t, r = _flat(reference), _flat(estimate)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum((t - r) ** 2, axis=1) / np.sum(t * r, axis=1)


def psnr(reference, estimate, data_range: float = 255.0) -> np.ndarray:
    """[N] 10·log10(range² / MSE) in dB."""
    return 10.0 * np.log10(data_range ** 2 / np.maximum(mse(reference, estimate), 1e-30))


def ssim(reference, estimate, data_range: float = 255.0) -> np.ndarray:
    """[N] structural similarity as Wang et al. define it (Gaussian window σ = 1.5, population covariances;
    scikit-image), averaged over channels. Images [N, H, W] or [N, H, W, C]."""
    from skimage.metrics import structural_similarity
    ref, est = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    return np.array([structural_similarity(a, b, data_range=data_range, channel_axis=-1 if a.ndim == 3 else None,
                                           gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
                     for a, b in zip(ref, est)])


def gram_matrix(features: np.ndarray) -> np.ndarray:
    """[N, C, C] G = F·Fᵀ of F = the [C, H·W] feature map minus its single global scalar mean (thesis; not
    normalised by size)."""
    f = np.asarray(features, np.float64)
    f = f.reshape(len(f), -1, f.shape[-1])                     # [N, HW, C]
    f = f - f.mean(axis=(1, 2), keepdims=True)
    return np.matmul(f.transpose(0, 2, 1), f)          # einsum's generic path was 12 of 20 s of a VGG score


def gram_score(features: Callable[[np.ndarray], dict[str, np.ndarray]], reference, estimate,
               crop: int | None = 224, batch: int = 1) -> np.ndarray:
    """[N] the thesis' VGG score: the mean over layers of ‖G_t − G_r‖²_F / ‖G_t‖²_F.

    ``features(images)`` returns ``{layer: [n, H, W, C]}`` for RGB 0–255 images [n, H, W, 3] (the thesis used
    VGG19's conv1_1 … conv5_1 ReLU outputs; :func:`tfrestore.optimize.inversion.gram_features` gives tfrestore's
    VGG16 version). ``reference``: [N, H, W, 3], or [1, H, W, 3] scoring every estimate against one image (its
    Grams are computed once). ``estimate``: [N, H, W, 3]. ``crop``: the top-left crop both images are cut to first
    (224 in the thesis). ``batch``: images per ``features`` call — the score is per image, so this bounds the
    memory (the five VGG taps of one 224² image: 25 MB), not the result.
    """
    ref, est = np.asarray(reference, np.float32), np.asarray(estimate, np.float32)
    if len(ref) not in (1, len(est)):
        raise ValueError(f"gram_score: {len(ref)} reference images for {len(est)} estimates; pass one reference "
                         "per estimate, or a single one for all")
    if crop:
        ref, est = ref[:, :crop, :crop], est[:, :crop, :crop]
    shared = _grams(features, ref) if len(ref) == 1 and len(est) else None
    scores = [np.zeros(0)]
    for i in range(0, len(est), batch):
        gt = shared if shared is not None else _grams(features, ref[i:i + batch])
        gr = _grams(features, est[i:i + batch])
        ratios = [np.sum((gt[layer] - gr[layer]) ** 2, axis=(1, 2))
                  / np.maximum(np.sum(gt[layer] ** 2, axis=(1, 2)), 1e-30) for layer in gr]
        scores.append(np.mean(ratios, axis=0))
    return np.concatenate(scores)


def _grams(features: Callable[[np.ndarray], dict[str, np.ndarray]], images: np.ndarray) -> dict[str, np.ndarray]:
    """``{layer: [n, C, C]}`` Gram matrices of ``features(images)``, each layer's map dropped once its Gram is
    made (the maps are the memory; the Grams are ≤ 512² each)."""
    maps = features(images)
    return {layer: gram_matrix(maps.pop(layer)) for layer in list(maps)}
