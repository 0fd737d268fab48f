"""Every catalogue prior trains: at a small size — fewer channels, components and patches, the schedule squeezed to a
few hundred steps, but the entry's own kind, expert, normalisation and whitening modes, overcompleteness, dropout
settings, schedule shape, batch and gradient clip — the held-out score-matching loss after training is below its
initial value. (The dropout priors' broken first term made it rise by three orders of magnitude; issue 21.)

The patch data are drawn from a known sparse model, shared by every entry of the same patch shape, and go through
the catalogue's own pipeline (``extract`` → ``prepare``) and trainer.
"""
import dataclasses

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from tfrestore.priors import catalogue
from tfrestore.priors.patches import extract, prepare
from tfrestore.priors.train import PriorTrainer

# the legacy entries train in test_priors_legacy.py (image12 keeps 432 dimensions at the small size and needs more
# patches than the 3,000 here)
TRAINED = [name for name, e in catalogue.CATALOGUE.items()
           if isinstance(e, catalogue.Entry) and name not in catalogue.LEGACY]
SMALL_CHANNELS = 4            # feature-map priors (96–384 channels) at a small size
STEPS, BATCH_CAP = 240, 64
PATCHES, VAL_PATCHES = 3000, 400


def _maps(channels: int, count: int = 12, size: int = 40, seed: int = 0) -> list[np.ndarray]:
    """Maps from a known sparse model: heavy-tailed (cubed Laplace) sources, blurred, mixed across channels,
    plus an offset per channel — correlated, non-Gaussian patches like images' and feature maps'."""
    rng = np.random.default_rng(seed)
    sources = gaussian_filter(rng.laplace(size=(count, size, size, channels)) ** 3, sigma=(0, 1.2, 1.2, 0))
    mix = rng.normal(size=(channels, channels)) + 2 * np.eye(channels)
    return list(sources @ mix.T + rng.normal(20, 5, channels))


@pytest.fixture(scope="module")
def patch_files(tmp_path_factory):
    """One patch file per (patch side, channels) the small entries need, shared by the entries."""
    folder = tmp_path_factory.mktemp("catalogue_patches")
    files = {}
    for name in TRAINED:
        cfg = small_config(catalogue.entry(name).config)
        key = (cfg.patch, cfg.channels)
        if key not in files:
            files[key] = extract(folder / f"p{cfg.patch}c{cfg.channels}.h5", image_sources=_maps(cfg.channels),
                                 patch=cfg.patch, count=PATCHES, val_count=VAL_PATCHES, seed=1)
    return files


def small_config(cfg):
    """The entry's prior with fewer channels, whitened dimensions and components: the same kind, expert, modes,
    dropout settings, share of whitened dimensions kept and overcompleteness K / n_white."""
    channels = cfg.channels if cfg.channels <= 3 else SMALL_CHANNELS
    dims = cfg.positions if cfg.kind == "channelwise" else cfg.positions * channels
    full_dims = cfg.positions if cfg.kind == "channelwise" else cfg.features
    n_white = max(2, int(round(cfg.n_white / full_dims * dims)))
    components = max(4, int(round(cfg.components / cfg.n_white * n_white / 4)))
    return dataclasses.replace(cfg, channels=channels, n_white=n_white, components=components)


@pytest.mark.parametrize("name", TRAINED)
def test_every_catalogue_prior_trains_at_a_small_size(name, patch_files):
    e = catalogue.entry(name)
    cfg = small_config(e.config)
    prepared = prepare(patch_files[(cfg.patch, cfg.channels)], cfg)
    schedule = dataclasses.replace(e.training.scaled(STEPS), batch=min(e.training.batch, BATCH_CAP))
    assert [lr for _, lr in schedule.breakpoints] == [lr for _, lr in sorted(e.training.breakpoints)]
    trainer = PriorTrainer(cfg, prepared, schedule, seed=0)
    initial = trainer.validation_loss()
    summary = trainer.run(progress=False)
    final = summary["final"]["val_loss"]
    assert np.isfinite(final) and final < initial, (name, initial, [h["val_loss"] for h in trainer.history])
