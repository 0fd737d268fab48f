"""The thesis' default priors (``utils/default_priors.py``, spec patch_priors §5.1 and §6) as data, trained on
demand and stored under ``$TFRESTORE_HOME/priors/<net>/<name>/``:

    prior.json, prior.h5     the prior (config, weights incl. normalisation and whitening)
    patches.h5               raw training / validation patches, statistics and whitened sets (reused by retraining)
    ckpt/, history.json      training checkpoints (``resume``) and the validation record
    filters.png, training.json   the learned filters (unwhitened, by expert weight) and the training summary

Every mode the thesis defined is accepted (its assert rejected five of them: spec §9 item 6), ``tv_prior`` among
them: total variation (β 2), a :class:`FixedEntry` with nothing to train — ``get`` gives a :class:`TVPrior` (an
``energy(x)`` like a learned prior's, for :class:`~tfrestore.priors.PriorTerm`) and ``train`` refuses it.
Breakpoints are sorted by step (the conv1/lin schedule's mistyped 85000 is corrected: item 7). Training data:
``--data`` (a folder of images) or the embedded sample photos — a demonstration set of a few images, far from the
thesis' 48,000.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .. import nets, weights
from .model import PatchPrior, PriorConfig
from .patches import extract, prepare, sources
from .train import PriorTrainer, TrainConfig, save_filter_grid
from .tv import TVPrior

# Learning-rate breakpoints (step, lr), applied before the step they name.
IMAGE_SCHEDULE = ((0, 1.0), (10000, 0.1), (13000, 3e-2), (15000, 1e-2), (17000, 3e-3), (19000, 1e-3),
                  (21000, 1e-4), (23000, 3e-5))
FEATURE_SCHEDULE = ((0, 1.0), (10000, 0.1), (12000, 3e-2), (13000, 1e-2), (14500, 3e-3), (15000, 1e-3),
                    (16000, 1e-4), (18000, 3e-4), (19000, 1e-5))
CONV1_SCHEDULE = ((0, 1.0), (6000, 0.1), (6500, 3e-2), (7000, 1e-2), (7500, 3e-3), (8000, 1e-3), (12000, 1e-4),
                  (13000, 1e-5), (85000, 1e-4))       # sorted: the mistyped 85000 lies past the end

IMAGE_TRAINING = TrainConfig(steps=25000, batch=250, breakpoints=IMAGE_SCHEDULE, grad_clip=1e-3)
FEATURE_TRAINING = TrainConfig(steps=20000, batch=500, breakpoints=FEATURE_SCHEDULE, grad_clip=100.0)
DIGITS_TRAINING = TrainConfig(steps=4000, batch=250, breakpoints=((0, 1.0), (2000, 0.1), (3000, 1e-2)),
                              grad_clip=1e-3)
CONV1_TRAINING = TrainConfig(steps=24000, batch=500, breakpoints=CONV1_SCHEDULE, grad_clip=100.0)


@dataclasses.dataclass(frozen=True)
class Entry:
    """A catalogue prior: its model, the tap it reads ("image" for RGB 0–255 pixels), its inversion weight, its
    training schedule and patch counts."""
    config: PriorConfig
    tap: str
    weight: float
    training: TrainConfig
    patches: int = 100_000
    val_patches: int = 500
    note: str = ""
    source: str = "photos"      # "photos": --data or the embedded photos; "digits": the embedded digits (RGB)


@dataclasses.dataclass(frozen=True)
class FixedEntry:
    """A catalogue regulariser with nothing to learn: ``tv_prior``, TV^β of the map it is attached to."""
    beta: float
    weight: float
    note: str = ""

    def build(self) -> TVPrior:
        return TVPrior(self.beta)


def _image(**kw) -> PriorConfig:
    return PriorConfig(**{"patch": 8, "channels": 3, "components": 512, "n_white": 191, "expert": "student", **kw})


CATALOGUE: dict[str, Entry | FixedEntry] = {
    "full512": Entry(_image(), "image", 1e-5, IMAGE_TRAINING, note="8×8 RGB, Student-t, K 512, 191 white dims"),
    "full512logistic": Entry(_image(expert="logistic"), "image", 1e-5, IMAGE_TRAINING, note="log-cosh (ICA) experts"),
    "dropout1024": Entry(_image(components=1024, kind="dropout", dropout_train=True, dropout_test=True), "image",
                         1e-5, IMAGE_TRAINING, note="dropout in training and at test"),
    "dropout_nodrop_train512": Entry(_image(kind="dropout"), "image", 1e-5, IMAGE_TRAINING,
                                     note="trained without dropout, none at test"),
    "dropout_nodrop_train1024": Entry(_image(components=1024, kind="dropout", dropout_test=True), "image", 1e-5,
                                      IMAGE_TRAINING, note="trained without dropout, dropout at test"),
    # dropout_prior_script.py's prior (spec §5.1 note, §6); the thesis code builds it with activate_dropout=False
    "dropout_nodrop_train256": Entry(_image(components=256, kind="dropout"), "image", 1e-5, IMAGE_TRAINING,
                                     note="K 256, trained without dropout, none at test"),
    "fullc1l6000": Entry(PriorConfig(patch=8, channels=96, components=6000, n_white=3000), "conv1/lin", 1e-5,
                         CONV1_TRAINING, val_patches=1000, note="8×8×96 conv1/lin feature maps"),
    "slimc5l5000": Entry(PriorConfig(patch=3, channels=256, components=5000, n_white=2304), "conv5/lin", 1e-7,
                         FEATURE_TRAINING, val_patches=1000, note="3×3×256 conv5/lin"),
    "slimc3l7000": Entry(PriorConfig(patch=3, channels=384, components=7000, n_white=3456), "conv3/lin", 1e-9,
                         FEATURE_TRAINING, val_patches=1000, note="3×3×384 conv3/lin"),
    "slimc1l2000": Entry(PriorConfig(patch=3, channels=96, components=2000, n_white=864), "conv1/lin", 1e-9,
                         FEATURE_TRAINING, val_patches=1000, note="3×3×96 conv1/lin"),
    "tv_prior": FixedEntry(beta=2.0, weight=1e-9, note="total variation β 2 (nothing to train)"),
    "chanpriorc1l150": Entry(PriorConfig(patch=8, channels=96, components=150, n_white=64, expert="logistic",
                                         whiten_mode="zca", kind="channelwise"), "conv1/lin", 1e-4,
                             FEATURE_TRAINING, val_patches=1000, note="channel-wise 8×8 conv1/lin, ZCA, log-cosh"),
    # Not the thesis': an image prior on the digits net's own input, for the adversarial experiments here. Grey
    # digits replicated to RGB have rank ≤ 36 per 6×6 patch, so 30 whitened dimensions.
    "digits_full128": Entry(PriorConfig(patch=6, channels=3, components=128, n_white=30), "image", 1e-5,
                            DIGITS_TRAINING, patches=50_000, source="digits",
                            note="6×6 grey-as-RGB digit patches, Student-t, K 128 (for --net=digits)"),
    "digits_logistic128": Entry(PriorConfig(patch=6, channels=3, components=128, n_white=30, expert="logistic"),
                                "image", 1e-5, DIGITS_TRAINING, patches=50_000, source="digits",
                                note="as digits_full128 with log-cosh (ICA) experts: the transfer test's prior"),
    "digits_dropout128": Entry(PriorConfig(patch=6, channels=3, components=128, n_white=30, kind="dropout",
                                           dropout_train=True, dropout_test=True), "image", 1e-5, DIGITS_TRAINING,
                               patches=50_000, source="digits", note="dropout in training: the ensemble's prior"),
}


def _image_sources(e: Entry, data: str | None) -> list:
    if e.source == "digits":
        from ..classifier import digit_images
        train_x, _, _ = digit_images(data, "train")
        val_x, _, _ = digit_images(data, "val")
        return list(train_x) + list(val_x)          # extract() holds out the last 20 %: the validation digits
    return sources(data)


def entry(name: str) -> Entry | FixedEntry:
    if name not in CATALOGUE:
        raise ValueError(f"unknown prior '{name}'; valid priors: {', '.join(CATALOGUE)}")
    return CATALOGUE[name]


def trained_entry(name: str) -> Entry:
    """The entry of a prior that is learned (every one but ``tv_prior``); a clear error for the others."""
    e = entry(name)
    if isinstance(e, FixedEntry):
        raise ValueError(f"'{name}' is total variation (β {e.beta:g}), a fixed regulariser with nothing to train; "
                         f"use it as it is (--prior={name} in an inversion, catalogue.get('{name}', net) in code)")
    return e


def folder(net: str, name: str) -> Path:
    return weights.home() / "priors" / net / name


def load(name: str, net: str) -> PatchPrior | TVPrior | None:
    """The stored prior (a fixed one is built), or None when it has not been trained yet."""
    e = entry(name)
    if isinstance(e, FixedEntry):
        return e.build()
    f = folder(net, name)
    return PatchPrior.load(f) if (f / "prior.json").exists() else None


def train(name: str, net: str, *, data: str | None = None, steps: int | None = None, seed: int = 0,
          resume: bool = True, progress: bool = True, logdir: str | Path | None = None, strategy=None,
          out: Path | None = None, patches: int | None = None) -> tuple[PatchPrior, dict]:
    """Extract patches (once), fit normalisation and whitening (once), train by score matching, save."""
    e = trained_entry(name)
    out = Path(out or folder(net, name))
    out.mkdir(parents=True, exist_ok=True)
    tap = None if e.tap == "image" else e.tap
    patch_file = out / "patches.h5"
    model = nets.build(net, weights="auto") if tap else None
    if not patch_file.exists():
        count = patches or e.patches
        print(f"extracting {count:,} + {e.val_patches:,} {e.config.patch}×{e.config.patch} patches of "
              f"{e.tap} ({'--data ' + data if data else 'the embedded ' + ('digits' if e.source == 'digits' else 'sample photos') + ': a demonstration set'})",
              flush=True)
        extract(patch_file, image_sources=_image_sources(e, data), patch=e.config.patch, count=count,
                val_count=e.val_patches, net=net, tap=nets.resolve_layer(net, tap) if tap else None, model=model,
                seed=seed)
    prepared = prepare(patch_file, e.config)
    tc = e.training if steps is None else e.training.scaled(steps)
    trainer = PriorTrainer(e.config, prepared, tc, strategy=strategy, seed=seed)
    summary = trainer.run(out, logdir=logdir or out / "tb", resume=resume, progress=progress)
    trainer.prior.save(out)
    if e.config.kind != "channelwise":
        save_filter_grid(trainer.prior, out / "filters.png", f"{name} on {net}")
    summary = {**summary, "prior": name, "net": net, "tap": e.tap, "data": data or "embedded sample photos",
               "weights": nets.weights_source(model) if model is not None else "n/a (image prior)",
               "config": e.config.to_json(), "training": {**dataclasses.asdict(tc)}}
    (out / "training.json").write_text(json.dumps(summary, indent=1, default=str))
    return trainer.prior, summary


def get(name: str, net: str, *, data: str | None = None, steps: int | None = None,
        seed: int = 0) -> PatchPrior | TVPrior:
    """The stored prior, trained first if it is not there yet (``tv_prior``: a :class:`TVPrior`)."""
    prior = load(name, net)
    if prior is None:
        print(f"prior '{name}' for {net} not found in {folder(net, name)}: training it now", flush=True)
        prior, _ = train(name, net, data=data, steps=steps, seed=seed)
    return prior
