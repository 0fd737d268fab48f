"""Total variation as a prior with nothing to learn: the thesis catalogue's ``tv_prior`` (spec patch_priors §6: TV with
β 2 at weight 1e-9; the legacy conv2/lin → conv1/lin comparison, §7.3).

The energy is the thesis' ``TotalVariationLoss``: Σ over pixels and channels of ((x[i,j] − x[i+1,j])² +
(x[i,j] − x[i,j+1])²)^{β/2}, the differences past the last row / column zero (mv2016.md §9.1) — the same sum as
:class:`tfrestore.optimize.objectives.TotalVariation`, whose code computes it here. It has the interface of a
:class:`~tfrestore.priors.model.PatchPrior` that an inversion uses (``energy(x)``), so
:class:`~tfrestore.priors.PriorTerm` and :func:`~tfrestore.priors.unrolled_descent` take it like a learned prior.
"""
from __future__ import annotations

import tensorflow as tf

from tfrestore.optimize.objectives import Context, TotalVariation


class TVPrior:
    """TV^β of maps [N, H, W, C] (any C: images or feature maps) → [N]."""

    trainable = False

    def __init__(self, beta: float = 2.0):
        if beta <= 0:
            raise ValueError(f"the TV exponent β must be positive, got {beta}")
        self.beta = float(beta)
        self._tv = TotalVariation(beta=self.beta)

    def energy(self, x, mask=None, path: str = "auto", step=0) -> tf.Tensor:
        """[N] TV^β of each map. ``mask``, ``path`` and ``step`` exist for a learned prior's interface and are
        ignored (nothing is dropped, there is one way to compute it)."""
        return self._tv.value(Context(tf.convert_to_tensor(x, tf.float32)))

    def __repr__(self) -> str:
        return f"TVPrior(beta={self.beta:g})"
