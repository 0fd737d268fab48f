"""Feature statistics of a layer over many images, streamed in float64 (the thesis' ``utils/feature_statistics.py``;
spec ``evaluation_protocols.md`` §4.4).

    acc = FeatureStats()
    for batch in batches:                     # [B, H, W, C] (or [B, C]) activations, any float dtype
        acc.update(batch)
    s = acc.result()                          # per-channel mean / sdev, Gram, covariance, its pseudo-inverse, …

Each channel is one variable; its samples are every image × position. Only sums are kept — Σ(x − k), the
outer-product sum Σ(x − k)(x − k)ᵀ ([C, C]) around a shift k (the first batch's channel means, so large means do
not cancel digits away) — plus one L2 norm and one Gini index per image, so 200 images cost no more memory than
one. :func:`gini` is Hurley & Rickard's sparsity index.
"""
from __future__ import annotations

import dataclasses

import numpy as np


def gini(x, axis: int | None = None) -> np.ndarray:
    """Hurley & Rickard's Gini sparsity index of |x| (flattened, or along ``axis``): with c_(1) ≤ … ≤ c_(N) the
    sorted magnitudes, G = 1 − 2 Σ_k (c_(k)/‖c‖₁)·((N − k + ½)/N). 0 for a constant vector, 1 − 1/N for a one-hot
    one; an all-zero vector scores 0 (no mass, nothing sparse about it)."""
    c = np.abs(np.asarray(x, np.float64))
    if axis is None:
        c, axis = c.reshape(-1), 0
    c = np.sort(np.moveaxis(c, axis, -1), axis=-1)
    n = c.shape[-1]
    weights = (n - np.arange(1, n + 1) + 0.5) / n                      # (N − k + ½)/N for k = 1 … N
    l1 = c.sum(axis=-1)
    safe = np.where(l1 > 0, l1, 1.0)
    return np.where(l1 > 0, 1.0 - 2.0 * (c @ weights) / safe, 0.0)


@dataclasses.dataclass(frozen=True)
class Summary:
    """One layer's statistics. ``mean``, ``sdev``: [C] per channel over images × positions (sdev: population,
    ddof 0); ``gram``: [C, C] the average Gram matrix E[f fᵀ] over images × positions (an image's unnormalised
    Gram F Fᵀ is ``positions`` times it); ``cov``: [C, C] E[(f − μ)(f − μ)ᵀ]; ``inv_cov``: its pseudo-inverse,
    eigenvalues ≤ ``tol`` dropped, ``rank`` the ones kept (C when invertible); ``norms``, ``gini``: [images] each
    image's feature-map L2 norm and Gini index; ``samples`` = images × ``positions``."""
    mean: np.ndarray
    sdev: np.ndarray
    gram: np.ndarray
    cov: np.ndarray
    inv_cov: np.ndarray
    rank: int
    tol: float
    norms: np.ndarray
    gini: np.ndarray
    samples: int
    positions: int


class FeatureStats:
    """Streams one layer's statistics over batches of activations ([B, ..., C]: channels last)."""

    def __init__(self):
        self.shift: np.ndarray | None = None
        self.count, self.positions = 0, None
        self.total = self.outer = None
        self.norms: list[float] = []
        self.ginis: list[float] = []

    def update(self, features) -> None:
        """Add a batch of B images' activations [B, ..., C] (a [B, C] fc layer has one position)."""
        f = np.asarray(features, np.float64)
        x = f.reshape(-1, f.shape[-1])                                 # [B·positions, C]
        if self.shift is None:
            self.shift = x.mean(axis=0)
            self.positions = x.shape[0] // len(f)
            self.total = np.zeros_like(self.shift)
            self.outer = np.zeros((len(self.shift), len(self.shift)))
        d = x - self.shift
        self.total += d.sum(axis=0)
        self.outer += d.T @ d
        self.count += x.shape[0]
        flat = f.reshape(len(f), -1)
        self.norms.extend(np.linalg.norm(flat, axis=1).tolist())
        self.ginis.extend(gini(flat, axis=1).tolist())

    def result(self) -> Summary:
        """The statistics of everything added so far."""
        if not self.count:
            raise ValueError("no features were added: give at least one image")
        d_mean = self.total / self.count
        cov = self.outer / self.count - np.outer(d_mean, d_mean)
        cov = (cov + cov.T) / 2                                        # exactly symmetric for eigh
        mean = self.shift + d_mean
        inv, rank, tol = pseudo_inverse(cov)
        return Summary(mean=mean, sdev=np.sqrt(np.maximum(np.diag(cov), 0.0)), gram=cov + np.outer(mean, mean),
                       cov=cov, inv_cov=inv, rank=rank, tol=tol, norms=np.array(self.norms),
                       gini=np.array(self.ginis), samples=self.count, positions=self.positions)


def pseudo_inverse(cov: np.ndarray) -> tuple[np.ndarray, int, float]:
    """(pseudo-inverse, rank, tolerance) of a symmetric positive semi-definite matrix: eigenvalues at or below
    ``tol`` = C · ε · λ_max (NumPy's ``matrix_rank`` rule) are dropped; the exact inverse when the rank is C."""
    w, v = np.linalg.eigh(cov)
    tol = float(max(w.max(initial=0.0), 0.0) * len(w) * np.finfo(np.float64).eps)
    keep = w > tol
    inv = (v[:, keep] / w[keep]) @ v[:, keep].T
    return inv, int(keep.sum()), tol
