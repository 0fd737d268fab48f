"""Training the small digits classifier (``nets.build("digits")``) that stands in for a trained ImageNet network
on a machine without one: scikit-learn's bundled digits (or MNIST with ``source``) up-sampled to 28×28 and shown
as grey RGB 0–255, cross-entropy on the ``fc4`` logits, Adam, through :class:`tfrestore.train.training.Trainer` (so the
same code runs under any ``tf.distribute`` strategy).

A trained classifier is an artifact of :mod:`tfrestore.core.store` (``classifier/digits/<digest>/``: the weights,
``summary.json``, the TensorBoard events, the manifest), keyed by what determines its weights (steps, seed, data,
the training settings); an unfinished training resumes from the key's ``.work`` folder. The one
``nets.build("digits")`` loads is *installed* as ``$TFRESTORE_HOME/weights/digits.weights.h5`` (a copy of a stored
artifact). Command line: ``python -m tfrestore.models.classifier [--steps N] [--seed S] [--data MNIST] [--overwrite]``.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfrestore import data, nets
from tfrestore.core import files, log, store
from tfrestore.train import training
from tfrestore.nets import weights

LOG = log.logger(__name__)

TRAINING = training.TrainingConfig(steps=1500, batch=64, learning_rate=1e-3, val_every=100, checkpoint_every=500)
WEIGHTS_FILE = "digits.weights.h5"
# no XLA for the step (Trainer jit_compile): it is its convolutions, and XLA's CPU convolutions are not oneDNN's —
# 7.8 → 18.8 ms a step on 2 CPU cores (issue 24)
JIT_COMPILE = False




def accuracy(model, images_rgb: np.ndarray, labels: np.ndarray) -> float:
    logits = model(nets.preprocess("digits", images_rgb), training=False)
    return float(np.mean(np.argmax(np.asarray(logits), -1) == labels))


def config(steps: int | None = None) -> training.TrainingConfig:
    return TRAINING if steps is None else dataclasses.replace(TRAINING, steps=steps)


def key(*, steps: int | None = None, source=None, seed: int = 0) -> store.Key:
    """The store key of the classifier trained with these settings."""
    return store.Key("classifier", "digits", {"net": "digits", "data": training.data_tag(source), "seed": seed,
                                              "training": config(steps).identity()})


def command(*, steps: int | None = None, source=None, seed: int = 0) -> str:
    """How a user trains (or rebuilds, with ``--overwrite``) that classifier."""
    return "python -m tfrestore.models.classifier" + (f" --steps={steps}" if steps else "") + \
        (f" --seed={seed}" if seed else "") + (f" --data={source}" if source is not None else "")


def _fit(work: Path, *, cfg: training.TrainingConfig, source, seed: int, progress: bool,
         strategy) -> tuple[keras.Model, dict]:
    """Train a fresh digits net, checkpointing in ``work`` (a rerun after an interruption continues there)."""
    x, y, desc = data.digit_images(source, "train")
    xv, yv, _ = data.digit_images(source, "val")
    with strategy.scope():
        model = nets.build("digits", weights="random", seed=seed)

    def loss(m, batch, training_):
        logits = m(nets.preprocess("digits", batch["x"]), training=training_)
        ce = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(batch["y"], logits, from_logits=True))
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1), batch["y"]), tf.float32))
        return {"loss": ce, "accuracy": acc}

    if progress:
        log.say(LOG, f"training the digits classifier ({cfg.steps} steps) on {desc}")
    trainer = training.Trainer(model, loss, {"x": x, "y": y}, cfg, val={"x": xv, "y": yv}, strategy=strategy,
                               name="classifier", jit_compile=JIT_COMPILE, describe={"net": "digits", "data": desc})
    summary = trainer.run(work, logdir=work / "tb", resume=True, progress=progress)
    summary.update({"val_accuracy": accuracy(model, xv, yv), "data": desc})
    return model, summary


def train(*, steps: int | None = None, source=None, seed: int = 0, progress: bool = True, strategy=None,
          overwrite: bool = False, install: bool = True) -> tuple[keras.Model, dict]:
    """The digits net trained with these settings, from the store (trained there first when missing, or with
    ``overwrite``); ``install`` makes it the one ``nets.build("digits")`` loads. Returns (model, summary with the
    validation accuracy)."""
    k = key(steps=steps, source=source, seed=seed)
    strategy = strategy or tf.distribute.get_strategy()

    def make(work: Path, out: Path) -> dict:
        model, summary = _fit(work, cfg=config(steps), source=source, seed=seed, progress=progress,
                              strategy=strategy)
        weights.save_weights(model, out / WEIGHTS_FILE, source=f"tfrestore store: {k}, trained on {summary['data']}")
        files.write_json(out / "summary.json", summary)
        training.keep_logs(work, out)
        return summary

    art, _ = training.stored(k, make, command=command(steps=steps, source=source, seed=seed), overwrite=overwrite,
                             what="digits classifier")
    with strategy.scope():
        model = nets.build("digits", weights=art.file(WEIGHTS_FILE))
    if install:
        _install(art)
    return model, dict(art.meta)


def _install(art: store.Artifact) -> None:
    """Put the artifact's weights where ``nets.build("digits")`` looks (a user's own kept aside)."""
    weights.install(art, "digits")


def installed() -> store.Artifact | None:
    """The stored classifier whose weights are installed for ``nets.build("digits")``, or None (nothing
    installed, or weights from elsewhere)."""
    return weights.installed("digits", kinds=("classifier",))


def get(*, steps: int | None = None, source=None, seed: int = 0, progress: bool = True) -> tuple[keras.Model, dict]:
    """The installed digits net (``nets.build("digits")``'s), saying which it is; when none is installed, the one
    of these settings from the store (trained first when missing), installed."""
    path = weights.weight_path("digits")
    if not path.exists():
        log.say(LOG, f"no digits classifier installed at {path}: using the store's "
                     f"({command(steps=steps, source=source, seed=seed)})")
        return train(steps=steps, source=source, seed=seed, progress=progress)
    art = installed()
    model = nets.build("digits", weights=path)
    if art is None:
        log.say(LOG, f"digits classifier: {path} (not trained by tfrestore's store)")
        return model, {}
    meta = art.meta
    log.say(LOG, f"digits classifier: {path} = {art.key}, {meta.get('steps')} steps on {meta.get('data')}")
    return model, dict(meta)


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m tfrestore.models.classifier",
                                     description="train the digits classifier into the store and install it")
    parser.add_argument("--steps", type=int, default=None, help=f"training steps (default {TRAINING.steps})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help="MNIST's IDX folder or mnist.npz (default: embedded digits)")
    parser.add_argument("--overwrite", action="store_true", help="train again even when stored")
    args = parser.parse_args(argv)
    try:
        _, summary = train(steps=args.steps, source=args.data, seed=args.seed, overwrite=args.overwrite)
    except ValueError as e:                    # store.ArtifactError included: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"validation accuracy {summary['val_accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
