"""Training the small digits classifier (``nets.build("digits")``) that stands in for a trained ImageNet network
on a machine without one: scikit-learn's bundled digits (or MNIST with ``source``) up-sampled to 28×28 and shown
as grey RGB 0–255, cross-entropy on the ``fc4`` logits, Adam, through :class:`tfrestore.training.Trainer` (so the
same code runs under any ``tf.distribute`` strategy). The weights go to the weight store
(``$TFRESTORE_HOME/weights/digits.weights.h5``), where ``nets.build("digits")`` finds them.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import tensorflow as tf

from . import data, files, nets, training, weights

TRAINING = training.TrainingConfig(steps=1500, batch=64, learning_rate=1e-3, val_every=100, checkpoint_every=500)


def digit_images(source=None, split: str = "train") -> tuple[np.ndarray, np.ndarray, str]:
    """(RGB 0–255 float32 [N, 28, 28, 3], labels [N], description)."""
    x, y, desc = data.digits(28, source, split)
    return np.repeat(x * 255.0, 3, axis=-1).astype(np.float32), y, desc


def accuracy(model, images_rgb: np.ndarray, labels: np.ndarray) -> float:
    logits = model(nets.preprocess("digits", images_rgb), training=False)
    return float(np.mean(np.argmax(np.asarray(logits), -1) == labels))


def train(*, steps: int | None = None, source=None, seed: int = 0, progress: bool = True, strategy=None,
          out=None) -> tuple[object, dict]:
    """Train the digits net (checkpoints and TensorBoard under ``$TFRESTORE_HOME/classifiers/digits``), save it
    to the weight store and return (model, summary with validation accuracy)."""
    x, y, desc = digit_images(source, "train")
    xv, yv, _ = digit_images(source, "val")
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = nets.build("digits", weights="random", seed=seed)

    def loss(m, batch, training_):
        logits = m(nets.preprocess("digits", batch["x"]), training=training_)
        ce = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(batch["y"], logits, from_logits=True))
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1), batch["y"]), tf.float32))
        return {"loss": ce, "accuracy": acc}

    cfg = TRAINING if steps is None else dataclasses.replace(TRAINING, steps=steps)
    folder = out or weights.home() / "classifiers" / "digits"
    if progress:
        print(f"training the digits classifier ({cfg.steps} steps) on {desc}", flush=True)
    trainer = training.Trainer(model, loss, {"x": x, "y": y}, cfg, val={"x": xv, "y": yv}, strategy=strategy,
                               name="classifier", describe={"net": "digits", "data": desc})
    summary = trainer.run(folder, logdir=folder / "tb", resume=True, progress=progress)
    summary.update({"val_accuracy": accuracy(model, xv, yv), "data": desc})
    weights.save_weights(model, weights.weight_path("digits"), source=f"trained by tfrestore on {desc}")
    files.write_json(folder / "summary.json", summary)
    return model, summary


def get(*, steps: int | None = None, source=None, seed: int = 0, progress: bool = True):
    """The trained digits net from the weight store, trained first when it is not there."""
    if not weights.weight_path("digits").exists():
        print(f"no trained digits classifier at {weights.weight_path('digits')}: training it now", flush=True)
        train(steps=steps, source=source, seed=seed, progress=progress)
    model = nets.build("digits", weights="auto")
    summary = weights.home() / "classifiers" / "digits" / "summary.json"
    return model, (json.loads(summary.read_text()) if summary.exists() else {})
