"""One worker of tests/test_multiworker.py: trains a tiny patch prior and a tiny inverter chain, writes the weights.

    TF_CONFIG='{"cluster": {"worker": ["localhost:p0", "localhost:p1"]}, "task": {"type": "worker", "index": 0}}' \
        python tests/multiworker_job.py OUT          # one worker of a MultiWorkerMirroredStrategy cluster
    python tests/multiworker_job.py OUT              # no TF_CONFIG: the same training in one process

With ``TF_CONFIG`` set the trainings run under ``tf.distribute.MultiWorkerMirroredStrategy`` (CPU, ring
all-reduce; one replica per worker), else under the default strategy. Both see the same global batches (the
trainers choose rows by step and seed) and the same initial weights (seeded), so the weights must agree up to the
all-reduce's float32 round-off. Writes ``OUT/weights_<who>.npz`` (``who``: the worker index, or ``single``) with
every trained variable (``prior/<i>``, ``<module>/<i>``) and ``OUT/losses_<who>.json`` with each training's
validation loss before and after and the steps the resumed prior training ran. Checkpoints go to
``OUT/prior/ckpt`` and ``OUT/inverter/ckpt`` (the chief's; another worker writes into a temporary folder that
:class:`tfrestore.core.loop.Checkpoint` removes, and resumes from the chief's).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

STEPS, STOP, PRIOR_BATCH, INVERTER_BATCH = 12, 8, 64, 16


def make_strategy() -> tuple[tf.distribute.Strategy, str]:
    """``(strategy, who)``: MWMS over TF_CONFIG's cluster (created first, as TF requires), or the default one."""
    if not os.environ.get("TF_CONFIG"):
        return tf.distribute.get_strategy(), "single"
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    return strategy, str(json.loads(os.environ["TF_CONFIG"])["task"]["index"])


def train_prior(strategy, out: Path) -> tuple[dict, dict]:
    """A 6-component ICA patch prior (1×1 patches of 6 channels, logistic experts) on Laplace sources mixed by a
    seeded matrix, trained STEPS steps with a global batch of PRIOR_BATCH patches: stopped at STOP (with a
    checkpoint) and resumed from it."""
    from tfrestore.priors import whitening as W
    from tfrestore.priors.model import PriorConfig
    from tfrestore.priors.patches import Prepared
    from tfrestore.priors.train import PriorTrainer, TrainConfig
    rng = np.random.default_rng(0)
    d = 6
    x = rng.laplace(size=(3000, d)) @ rng.normal(size=(d, d)).T
    cfg = PriorConfig(patch=1, channels=d, components=d, n_white=d, expert="logistic", mean_mode="none",
                      sdev_mode="none", whiten_mode="pca")
    norm = W.fit_normalisation(lambda: [x], d, 1, "none", "none")
    wh = W.fit_whitening(W.second_moment([x]), "pca", d)
    xw = (x @ wh.whiten.T).astype(np.float32)
    tc = TrainConfig(steps=STEPS, batch=PRIOR_BATCH, breakpoints=((0, 0.05),), grad_clip=0.01, val_every=4,
                     checkpoint_every=4)
    prepared = Prepared(norm, wh, xw[:2500], xw[2500:])
    first = PriorTrainer(cfg, prepared, tc, strategy=strategy, seed=1)
    before = first.validation_loss()
    first.run(out / "prior", progress=False, stop_after=STOP)     # interrupted: checkpointed at STOP
    # resumed by a fresh trainer (seed 2: its own initial weights are not the ones it must continue from); a
    # non-chief worker restores the chief's checkpoint (its own copy was removed after writing)
    trainer = PriorTrainer(cfg, prepared, tc, strategy=strategy, seed=2)
    summary = trainer.loop(out / "prior" / "ckpt", resume=True, progress=False).run()
    weights = {f"prior/{i}": v.numpy() for i, v in enumerate(trainer.prior.trainable_variables)}
    return weights, {"prior_before": before, "prior_after": trainer.validation_loss(),
                     "prior_resumed_steps": summary.steps_run}


def train_inverter(strategy, out: Path) -> tuple[dict, dict]:
    """Two deconvolution modules (pool1 → conv1 → image) of the digits net with random weights, trained merged
    STEPS steps with a global batch of INVERTER_BATCH digits."""
    from tfrestore import data
    from tfrestore.models import inverters as I
    from tfrestore import nets
    from tfrestore.train import training
    model = nets.build("digits", weights="random", seed=0)
    specs = [I.ModuleSpec("M2", "pool1", "conv1", hidden=8, kernel1=3, stride1=2, padding1="same", kernel2=3),
             I.ModuleSpec("M1", "conv1", "image", hidden=8, kernel1=3, stride1=1, padding1="same", kernel2=3)]
    taps = I.Taps(model, specs)
    x, _, _ = data.digit_images(None, "train")
    train, val = x[:128], x[128:160]
    modules = I.build_modules(taps, specs, seed=3, strategy=strategy)
    loss = I.loss_fn(taps, modules, specs, "merged")
    before = float(loss(None, {"image": tf.constant(val)}, False)["loss"])
    cfg = training.TrainingConfig(steps=STEPS, batch=INVERTER_BATCH, learning_rate=3e-3, val_every=4,
                                  checkpoint_every=4, seed=5)
    summary = I.train_modules(taps, modules, specs, training.ArraySource({"image": train}), val, cfg,
                              regime="merged", strategy=strategy, out=out / "inverter", progress=False)
    weights = {f"{n}/{i}": w for n in modules for i, w in enumerate(modules[n].get_weights())}
    return weights, {"inverter_before": before, "inverter_after": summary["final"]["val_loss"]}


def main(out: Path) -> None:
    strategy, who = make_strategy()       # before any other TensorFlow work: MWMS sets up the collective runtime
    out.mkdir(parents=True, exist_ok=True)
    prior_w, prior_l = train_prior(strategy, out)
    inv_w, inv_l = train_inverter(strategy, out)
    np.savez(out / f"weights_{who}.npz", **prior_w, **inv_w)
    (out / f"losses_{who}.json").write_text(json.dumps({**prior_l, **inv_l,
                                                        "replicas": strategy.num_replicas_in_sync}))
    print(f"worker {who}: done", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main(Path(sys.argv[1]))
