"""Patch normalisation and whitening (thesis ``utils/preprocessing.py`` / ``whitening.py``; spec patch_priors §1).

Patches are flattened in (c, h, w) order, channel slowest: a patch of C channels and P = ph·pw positions is a
vector of C·P features, ``x.reshape(C, P)`` its channels.

Normalisation (fitted on training patches, saved with the prior, applied identically to training data, validation
data and at inference — the thesis' uncentred-training-data bug only behind ``legacy_uncentred_training_data``):

| mean mode | subtracts | sdev mode | divides by |
|---|---|---|---|
| ``gc`` | per-channel mean over patches and positions | ``gc`` | per channel: the mean over positions of the per-position std (the thesis' definition) |
| ``gf`` | per-feature mean | ``gf`` | per-feature std |
| ``lc`` | each patch's per-channel mean | ``lf`` | each patch's std |
| ``lf`` | each patch's mean | a number | that constant |
| ``none`` | nothing | ``none`` | nothing |

Whitening of the normalised data from its second moment XᵀX/(N−1) (float64, accumulated over batches):
``pca`` keeps the n_white largest eigen-directions, whiten = diag(1/√λ)·Eᵀ (drops the smallest);
``zca`` whiten = U·diag(1/s)·Uᵀ with s = √max(λ, 1e-7) (no reduction); ``none`` the identity.
Channel-wise variants fit one whitening per channel on its P features.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

import numpy as np

MEAN_MODES = ("gc", "gf", "lc", "lf", "none")
SDEV_MODES = ("gc", "gf", "lf", "none")       # or a positive number
WHITEN_MODES = ("pca", "zca", "none")


def check_modes(mean: str, sdev, whiten: str) -> None:
    if mean not in MEAN_MODES:
        raise ValueError(f"mean mode '{mean}' is not one of {', '.join(MEAN_MODES)}")
    if not (sdev in SDEV_MODES or (isinstance(sdev, (int, float)) and not isinstance(sdev, bool) and sdev > 0)):
        raise ValueError(f"sdev mode {sdev!r} is not one of {', '.join(SDEV_MODES)} or a positive number")
    if whiten not in WHITEN_MODES:
        raise ValueError(f"whiten mode '{whiten}' is not one of {', '.join(WHITEN_MODES)}")


@dataclasses.dataclass
class Normalisation:
    """Fitted statistics: ``mean`` and ``sdev`` are [C·P] feature vectors (0 and 1 where the mode is local or
    none); ``local_mean`` / ``local_sdev`` say what is done per patch."""
    channels: int
    positions: int
    mean_mode: str
    sdev_mode: str | float
    mean: np.ndarray
    sdev: np.ndarray

    @property
    def is_global(self) -> bool:
        """True when normalisation is one affine map for every patch (gc / gf; a constant or none for sdev)."""
        return self.mean_mode in ("gc", "gf") and self.sdev_mode in ("gc", "gf")

    def apply(self, x: np.ndarray, legacy_uncentred: bool = False) -> np.ndarray:
        """[N, C·P] raw → normalised (float64). ``legacy_uncentred``: the thesis' training data, raw/sdev."""
        x = np.asarray(x, np.float64)
        c, p = self.channels, self.positions
        centred = x
        if self.mean_mode in ("gc", "gf"):
            centred = x - self.mean
        elif self.mean_mode == "lc":
            xr = x.reshape(len(x), c, p)
            centred = (xr - xr.mean(axis=2, keepdims=True)).reshape(len(x), -1)
        elif self.mean_mode == "lf":
            centred = x - x.mean(axis=1, keepdims=True)
        base = x if legacy_uncentred else centred
        if self.sdev_mode in ("gc", "gf") or isinstance(self.sdev_mode, (int, float)):
            return base / self.sdev
        if self.sdev_mode == "lf":
            return base / np.maximum(base.std(axis=1, keepdims=True), 1e-8)
        return base


def fit_normalisation(batches: Callable[[], Iterable[np.ndarray]], channels: int, positions: int, mean_mode: str,
                      sdev_mode) -> Normalisation:
    """Two streaming passes (float64 sums) over [B, C·P] raw batches: ``batches()`` returns a fresh iterator.
    Pass one fits the means, pass two the standard deviations of the mean-normalised data."""
    check_modes(mean_mode, sdev_mode, "none")
    d = channels * positions
    n, s1 = 0, np.zeros(d)
    for b in batches():
        b = np.asarray(b, np.float64)
        n, s1 = n + len(b), s1 + b.sum(axis=0)
    if n < 2:
        raise ValueError("normalisation needs at least two patches")
    feat_mean = s1 / n
    mean = np.zeros(d)
    if mean_mode == "gc":
        mean = np.repeat(feat_mean.reshape(channels, positions).mean(axis=1), positions)
    elif mean_mode == "gf":
        mean = feat_mean
    centring = Normalisation(channels, positions, mean_mode, "none", mean, np.ones(d))
    c1, c2 = np.zeros(d), np.zeros(d)
    for b in batches():
        z = centring.apply(b)
        c1, c2 = c1 + z.sum(axis=0), c2 + (z ** 2).sum(axis=0)
    feat_std = np.sqrt(np.maximum(c2 / n - (c1 / n) ** 2, 0.0))      # per position, across patches
    sdev = np.ones(d)
    if sdev_mode == "gc":       # the thesis: mean over positions of the per-position std across patches
        sdev = np.repeat(feat_std.reshape(channels, positions).mean(axis=1), positions)
    elif sdev_mode == "gf":
        sdev = feat_std
    elif isinstance(sdev_mode, (int, float)) and not isinstance(sdev_mode, bool):
        sdev = np.full(d, float(sdev_mode))
    return Normalisation(channels, positions, mean_mode, sdev_mode, mean, np.maximum(sdev, 1e-8))


def second_moment(batches: Iterable[np.ndarray]) -> np.ndarray:
    """XᵀX/(N−1) accumulated in float64 over [B, D] batches (a covariance when the data are centred)."""
    n, acc = 0, 0.0
    for b in batches:
        b = np.asarray(b, np.float64)
        n += len(b)
        acc = acc + b.T @ b
    return acc / (n - 1)


@dataclasses.dataclass
class Whitening:
    """``whiten`` [n_white, D] and ``unwhiten`` [n_white, D] (rows: directions; x_white = whiten·x)."""
    mode: str
    whiten: np.ndarray
    unwhiten: np.ndarray

    @property
    def n_white(self) -> int:
        return self.whiten.shape[0]


def fit_whitening(cov: np.ndarray, mode: str, n_white: int | None = None) -> Whitening:
    """PCA (dropping the D − n_white smallest eigenvalues), ZCA or none, from a second-moment matrix."""
    check_modes("none", "none", mode)
    d = cov.shape[0]
    if mode == "none":
        return Whitening(mode, np.eye(d), np.eye(d))
    lam, vec = np.linalg.eigh(cov)                        # ascending
    if mode == "pca":
        n_white = d if n_white is None else int(n_white)
        if not 1 <= n_white <= d:
            raise ValueError(f"n_white must be in 1…{d}, got {n_white}")
        keep = slice(d - n_white, d)
        lam_k, vec_k = np.maximum(lam[keep], 1e-12), vec[:, keep]
        return Whitening(mode, (vec_k / np.sqrt(lam_k)).T, (vec_k * np.sqrt(lam_k)).T)
    s = np.sqrt(np.maximum(lam, 1e-7))
    return Whitening(mode, (vec / s) @ vec.T, (vec * s) @ vec.T)
