"""The thesis' default priors (``utils/default_priors.py``, spec patch_priors §5.1 and §6) as data, trained on
demand and kept in the artifact store (:mod:`tfrestore.core.store`) as ``Key("prior", "<net>/<name>", config)``, under
``$TFRESTORE_HOME/prior/<net>/<name>/<digest>/``:

    prior.json, prior.h5     the prior (config, weights incl. normalisation and whitening)
    patches.h5               raw training / validation patches, statistics and whitened sets
    history.json             the validation record (one entry per log point)
    training.json            the training summary; filters.png: the learned filters (unwhitened, by expert weight)
    tb/                      TensorBoard logs;  manifest.json: config, files, sizes, SHA-256, the rebuild command

The config holds what determines the prior: the entry's model and schedule, the training steps, the patch counts,
the seed, the data ("embedded", or the ``--data`` folder's resolved path with a fingerprint of its file names,
sizes and modification times) and, for feature-map priors, the network weights. So another ``--data`` or
``--steps`` trains into its own artifact and never replaces one; the same settings train once (a second process
waits for the first). An unfinished training keeps its checkpoints and patches in the key's ``.work`` folder and a
rerun continues from there, even after ``kill -9``; the files appear together with the manifest, or not at all.

``get`` / ``load`` without ``steps`` take the stored prior of that net, data and seed trained for any number of
steps (the catalogue's own schedule first, else the newest) and say which; with ``steps`` exactly that one.

Every mode the thesis defined is accepted (its assert rejected five of them: spec §9 item 6), ``tv_prior`` among
them: total variation (β 2), a :class:`FixedEntry` with nothing to train — ``get`` gives a :class:`TVPrior` (an
``energy(x)`` like a learned prior's, for :class:`~tfrestore.priors.PriorTerm`) and ``train`` refuses it.
Breakpoints are sorted by step (the conv1/lin schedule's mistyped 85000 is corrected: item 7). Training data:
``--data`` (a folder of images) or the embedded sample photos — a demonstration set of a few images, far from the
thesis' 48,000.

Beside the default catalogue, the legacy priors of July–August 2017 (spec §5.1 "Earlier experiments"): 5×5 conv1/lin
priors in the three normalisations (lc/gc, gc/gc, lf), 5×5 conv2/lin and pool1 priors, the 12×12 image prior
``image12`` (K 1000, 432 dims; the one that scored adversarial examples, adversarial.md §6.1) and the 3×3
conv1/relu prior ``slimc1r2000`` (K 2000, 864 dims). The spec gives their sizes only (the 5×5 ones as a range,
1,000–6,400 components): each 5×5 prior's K and whitened dimension is the thesis code's instantiation of it, and
their training schedules and inversion weights — which the spec does not give — are those of the default entries
of the same kind, as each entry's note says (``LEGACY`` lists them).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import tensorflow as tf

from tfrestore import data as data_lib, nets
from tfrestore.core import log, store
from tfrestore.nets import weights
from .model import PatchPrior, PriorConfig
from .patches import checked_images, extract, prepare, sources
from .train import PriorTrainer, TrainConfig, save_filter_grid
from .tv import TVPrior

LOG = log.logger(__name__)

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
    # As image12 on the digits (not the thesis'): grey 12×12 patches replicated to RGB have rank ≤ 144; 64
    # whitened dimensions and K 128 keep it to seconds of training, as the other digit priors.
    "digits_image12": Entry(PriorConfig(patch=12, channels=3, components=128, n_white=64), "image", 1e-5,
                            DIGITS_TRAINING, patches=50_000, source="digits",
                            note="12×12 grey-as-RGB digit patches, Student-t, K 128 (image12 for --net=digits)"),
}

# ---- the legacy priors (spec §5.1, "Earlier experiments": July–August 2017) -----------------------------------------
_LEGACY_FEATURE = dict(training=FEATURE_TRAINING, val_patches=1000)
_DEFAULTS = ("; schedule: the 3×3 feature-map priors' (slimc5l5000), weight: fullc1l6000's — the spec gives "
             "neither")


def _c5(channels: int, components: int, n_white: int, mean: str, sdev: str) -> PriorConfig:
    return PriorConfig(patch=5, channels=channels, components=components, n_white=n_white, mean_mode=mean,
                       sdev_mode=sdev)


CATALOGUE.update({
    "image12": Entry(_image(patch=12, components=1000, n_white=432), "image", 1e-5, IMAGE_TRAINING,
                     note="legacy 12×12 RGB image prior, Student-t, K 1000, 432 dims (spec §5.1; adversarial.md "
                          "§6.1's scorer); schedule and weight: full512's — the spec gives neither"),
    "slimc1r2000": Entry(PriorConfig(patch=3, channels=96, components=2000, n_white=864), "conv1/relu", 1e-9,
                         note="legacy 3×3×96 conv1/relu prior, K 2000, 864 dims (spec §5.1); schedule: the 3×3 "
                              "feature-map priors', weight: slimc1l2000's — the spec gives neither",
                         **_LEGACY_FEATURE),
    # 5×5 priors: the spec's 1,000–6,400 components and its three normalisations; K and n_white per prior as the
    # thesis code instantiated them. A constant sdev (the lf prior's 1/255 rescale) is undone by whitening: none.
    "c1l_5x5_gcgc": Entry(_c5(96, 6000, 1800, "gc", "gc"), "conv1/lin", 1e-5,
                         note="legacy 5×5×96 conv1/lin, K 6000, 1800 dims, gc/gc" + _DEFAULTS, **_LEGACY_FEATURE),
    "c1l_5x5_lcgc": Entry(_c5(96, 3000, 1800, "lc", "gc"), "conv1/lin", 1e-5,
                         note="legacy 5×5×96 conv1/lin, K 3000, 1800 dims, lc/gc" + _DEFAULTS, **_LEGACY_FEATURE),
    "c1l_5x5_lf": Entry(_c5(96, 2400, 1200, "lf", "none"), "conv1/lin", 1e-5,
                       note="legacy 5×5×96 conv1/lin, K 2400, 1200 dims, mean lf" + _DEFAULTS, **_LEGACY_FEATURE),
    "c2l_5x5_lcgc": Entry(_c5(256, 6400, 3200, "lc", "gc"), "conv2/lin", 1e-5,
                         note="legacy 5×5×256 conv2/lin, K 6400, 3200 dims, lc/gc" + _DEFAULTS, **_LEGACY_FEATURE),
    "p1_5x5_gcgc": Entry(_c5(96, 4800, 2400, "gc", "gc"), "pool1", 1e-5,
                        note="legacy 5×5×96 pool1, K 4800, 2400 dims, gc/gc" + _DEFAULTS, **_LEGACY_FEATURE),
})
LEGACY = ("image12", "slimc1r2000", "c1l_5x5_gcgc", "c1l_5x5_lcgc", "c1l_5x5_lf", "c2l_5x5_lcgc", "p1_5x5_gcgc")


def _image_sources(e: Entry, data: str | None, size: int) -> list:
    if e.source == "digits":
        train_x, _, _ = data_lib.digit_images(data, "train")
        val_x, _, _ = data_lib.digit_images(data, "val")
        return list(train_x) + list(val_x)          # extract() holds out the last 20 %: the validation digits
    return checked_images(sources(data), size, folder=data) if data else sources(None)


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


# ---- what determines a prior: its store key ----------------------------------------------------------------------

_LENGTH = ("steps", "training", "patches")        # how long / on how much it trained: free when steps is not given


def _stamp(paths: list[Path]) -> str:
    """16 hex digits over the files' names, sizes and modification times (cheap: nothing is read)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def data_config(data: str | None, source: str = "photos") -> str | dict:
    """``"embedded"``, or the ``--data`` folder (or file) as its resolved path, file count and :func:`_stamp`."""
    if data is None:
        return "embedded"
    path = Path(data).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"--data {data}: no such folder")
    if source == "photos" and not path.is_dir():
        raise ValueError(f"--data {data} is a file; give a folder of images")
    files = [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path]
    return {"path": str(path), "files": len(files), "fingerprint": _stamp(files)}


def _net_weights(net: str) -> str | dict:
    """The weights a feature-map prior's patches come from: the stored file's stamp, or seeded random ones."""
    path = weights.weight_path(net)
    return {"path": str(path), "fingerprint": _stamp([path])} if path.exists() else "random (seed 0)"


def _schedule(e: Entry, steps: int | None) -> TrainConfig:
    return e.training if steps is None else e.training.scaled(steps)


def key(name: str, net: str, *, data: str | None = None, steps: int | None = None, seed: int = 0,
        patches: int | None = None) -> store.Key:
    """The store key of a catalogue prior trained on ``data`` (None: the embedded set) for ``steps`` (None: the
    catalogue's schedule) from ``seed`` on ``patches`` training patches (None: the entry's count)."""
    e = trained_entry(name)
    tc = _schedule(e, steps)
    config = {"prior": e.config.to_json(), "tap": e.tap, "source": e.source, "steps": tc.steps,
              "training": dataclasses.asdict(tc), "patches": patches or e.patches, "val_patches": e.val_patches,
              "seed": seed, "data": data_config(data, e.source)}
    if e.tap != "image":
        config["weights"] = _net_weights(net)
    return store.Key("prior", f"{net}/{name}", json.loads(json.dumps(config)))     # tuples as the manifest's lists


def command(name: str, net: str, *, data: str | None = None, steps: int | None = None, seed: int = 0) -> str:
    """The command line that trains this prior (quoted in messages and the manifest)."""
    return (f"python main.py --paper=foe_priors --experiment=train --prior={name} --net={net}"
            + (f" --steps={steps}" if steps else "") + (f" --data={data}" if data else "")
            + (f" --seed={seed}" if seed else ""))


def find(name: str, net: str, *, data: str | None = None, steps: int | None = None, seed: int = 0,
         patches: int | None = None) -> store.Artifact | None:
    """The stored, verified artifact of this prior, or None. With ``steps`` (or ``patches``) given, exactly that
    training; without, any length on the same data, seed and weights — the catalogue's own schedule first, else
    the newest. A damaged one raises :class:`~tfrestore.core.store.ArtifactError`."""
    want = key(name, net, data=data, steps=steps, seed=seed, patches=patches)
    exact = store.load(want)
    if exact is not None or steps is not None or patches is not None:
        return exact
    loose = {k: v for k, v in want.config.items() if k not in _LENGTH}
    for k in store.find("prior", want.name):                             # newest first
        if {a: b for a, b in k.config.items() if a not in _LENGTH} == loose:
            return store.verify(k)
    return None


def _describe(art: store.Artifact, e: Entry) -> str:
    steps = art.key.config["steps"]
    length = f"{steps:,} steps" + ("" if steps == e.training.steps else f", not the catalogue's {e.training.steps:,}")
    return f"{art.path} ({length}, {art.manifest.get('created', '')})"


_OLD_LAYOUT_SAID: set[Path] = set()


def _mention_old_layout(say: Callable[[str], None]) -> None:
    """Once per store: priors of the layout before the artifact store are not used (they record neither their
    data nor their steps); say how to free their space."""
    old = store.home() / "priors"
    if old.is_dir() and old not in _OLD_LAYOUT_SAID:
        _OLD_LAYOUT_SAID.add(old)
        say(f"note: {old} holds priors of an earlier layout that records neither data nor steps; they are not "
            f"used (remove the folder to free its space)")


def _say(line: str) -> None:
    log.say(LOG, line)


# ---- training, loading ---------------------------------------------------------------------------------------------

def load(name: str, net: str, *, data: str | None = None, steps: int | None = None, seed: int = 0,
         patches: int | None = None) -> PatchPrior | TVPrior | None:
    """The stored prior (see :func:`find`; a fixed one is built), or None when it has not been trained yet."""
    e = entry(name)
    if isinstance(e, FixedEntry):
        return e.build()
    art = find(name, net, data=data, steps=steps, seed=seed, patches=patches)
    return None if art is None else PatchPrior.load(art.path)


def train(name: str, net: str, *, data: str | None = None, steps: int | None = None, seed: int = 0,
          progress: bool = True, logdir: str | Path | None = None, strategy=None, patches: int | None = None,
          overwrite: bool = False, say: Callable[[str], None] = _say) -> tuple[PatchPrior, dict]:
    """The prior trained with these settings: the stored artifact if there is one (said in one line; ``overwrite``
    trains it again and replaces it only when done), else extracted, whitened, trained by score matching and
    stored — continuing an interrupted training of the same settings. Returns (prior, training summary)."""
    e = trained_entry(name)
    k = key(name, net, data=data, steps=steps, seed=seed, patches=patches)
    cmd = command(name, net, data=data, steps=steps, seed=seed)
    _mention_old_layout(say)
    built = []

    def make(work: Path, out: Path) -> dict:
        built.append(True)
        return _train_into(name, net, e, k, work, out, data=data, seed=seed, patches=patches or e.patches,
                           progress=progress, logdir=logdir, strategy=strategy, say=say)
    try:
        art = store.build(k, make, command=cmd, overwrite=overwrite, say=say)
    except KeyboardInterrupt as err:          # SIGINT / SIGTERM: the Loop checkpointed into the key's .work
        raise KeyboardInterrupt(f"{err}; rerun `{cmd}` to continue from there") from None
    if not built:
        say(f"prior {name} for {net}: using the stored {_describe(art, e)}; `{cmd} --overwrite` trains it anew")
    summary = json.loads(art.file("training.json").read_text())
    return PatchPrior.load(art.path), {**summary, "path": str(art.path), "reused": not built}


def _train_into(name: str, net: str, e: Entry, k: store.Key, work: Path, out: Path, *, data, seed, patches,
                progress, logdir, strategy, say) -> dict:
    """store.build's ``make``: patches and checkpoints in ``work`` (kept over interruptions), the artifact's
    files in ``out``."""
    tap = None if e.tap == "image" else e.tap
    patch_file = work / "patches.h5"
    if not patch_file.exists() and (k.path / "patches.h5").exists():
        try:                                        # --overwrite: the same settings extract the same patches
            shutil.copy2(store.verify(k).file("patches.h5"), patch_file)
        except store.ArtifactError:                 # a damaged artifact's patches are not trusted
            pass
    model = nets.build(net, weights="auto") if tap else None
    if not patch_file.exists():
        size = nets.input_size(net)
        where = ("--data " + data) if data else \
            "the embedded " + ("digits" if e.source == "digits" else "sample photos") + ": a demonstration set"
        say(f"extracting {patches:,} + {e.val_patches:,} {e.config.patch}×{e.config.patch} patches of {e.tap} "
            f"({where})")
        extract(patch_file, image_sources=_image_sources(e, data, size), patch=e.config.patch, count=patches,
                val_count=e.val_patches, net=net, tap=nets.resolve_layer(net, tap) if tap else None, model=model,
                seed=seed)
    prepared = prepare(patch_file, e.config)
    tc = e.training.scaled(k.config["steps"]) if k.config["steps"] != e.training.steps else e.training
    trainer = PriorTrainer(e.config, prepared, tc, strategy=strategy, seed=seed)
    ckpt = work / "ckpt"
    loop = trainer.loop(ckpt, logdir=logdir or work / "tb", resume=tf.train.latest_checkpoint(str(ckpt)) is not None,
                        progress=progress)
    run = loop.run()
    trainer.prior.save(out)
    if e.config.kind != "channelwise":
        save_filter_grid(trainer.prior, out / "filters.png", f"{name} on {net}")
    (out / "history.json").write_text(json.dumps(run.history, indent=1))
    summary = {"steps": run.steps, "seconds": run.seconds_total, "stopped": run.stopped,
               "final": run.history[-1] if run.history else {},
               "patches_per_s": run.steps_run * tc.batch / max(run.seconds, 1e-9), "prior": name, "net": net,
               "tap": e.tap, "data": data or "embedded " + ("digits" if e.source == "digits" else "sample photos"),
               "weights": nets.weights_source(model) if model is not None else "n/a (image prior)",
               "config": e.config.to_json(), "training": dataclasses.asdict(tc)}
    (out / "training.json").write_text(json.dumps(summary, indent=1, default=str))
    if logdir is None and (work / "tb").is_dir():
        shutil.move(str(work / "tb"), str(out / "tb"))
    try:                                            # the patches travel with the prior (no copy when possible)
        os.link(patch_file, out / "patches.h5")
    except OSError:
        shutil.copy2(patch_file, out / "patches.h5")
    return {"steps": run.steps, "stopped": run.stopped, "val_loss": summary["final"].get("val_loss"),
            "data": summary["data"]}


def get(name: str, net: str, *, data: str | None = None, steps: int | None = None, seed: int = 0,
        say: Callable[[str], None] = _say) -> PatchPrior | TVPrior:
    """The stored prior (see :func:`find`; said in one line naming it), trained first if there is none
    (``tv_prior``: a :class:`TVPrior`)."""
    e = entry(name)
    if isinstance(e, FixedEntry):
        return e.build()
    art = find(name, net, data=data, steps=steps, seed=seed)
    if art is not None:
        say(f"prior {name} for {net}: {_describe(art, e)}")
        return PatchPrior.load(art.path)
    say(f"prior '{name}' for {net} is not stored yet (data: {data or 'embedded'}, "
        f"{steps or e.training.steps:,} steps): training it now")
    prior, _ = train(name, net, data=data, steps=steps, seed=seed, say=say)
    return prior
