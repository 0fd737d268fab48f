"""Training a patch prior by score matching: a custom training step under a ``tf.distribute`` strategy.

The same code runs on one CPU (the default strategy), several GPUs (``MirroredStrategy``) or several workers: each
replica takes its share of the global batch, the per-sample objective is summed and divided by the global batch,
the gradients are all-reduced, then clipped by value (as on one device) and applied with Adam (TF1's ε = 1e-8).

Batches are sequential slices of the whitened training set with wrap-around (the thesis' memmap walk), chosen by
the step number alone; with Adam's state and the step in the checkpoint a resumed training ends where the
uninterrupted one would. Learning-rate breakpoints apply **before** the step they name, steps counted from 1 as
the thesis' prior training counts them (:func:`learning_rates`; the inversion engine applies them after). Blocks
of ``val_every`` steps run compiled; after each block the validation loss is computed and, with
``stop_on_overfit``, checked. The trainer is a stepper of the one :class:`~tfrestore.core.loop.Loop`, whose
callbacks checkpoint (steps and minutes), print progress, write TensorBoard and stop on SIGINT / SIGTERM.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfrestore.core import files
from tfrestore.optimize import optim
from tfrestore.core.loop import Checkpoint, Loop, Measurement, Progress, TensorBoard, every
from .model import PatchPrior, PriorConfig, dropout_seed
from .patches import Prepared


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 25000
    batch: int = 250
    breakpoints: tuple[tuple[int, float], ...] = ((0, 1.0),)
    grad_clip: float | None = 1e-3
    val_every: int = 100
    checkpoint_every: int = 1000
    stop_on_overfit: bool = False
    overfit_patience: int = 10          # successive validation increases that end training
    legacy_broadcast: bool = False      # the thesis' score-matching broadcast bug (spec §9 item 2)
    legacy_channelwise_student_norm: bool = False   # divide the channel-wise Student-t loss by C, not T (item 3)

    def scaled(self, steps: int) -> "TrainConfig":
        """The same schedule stretched or squeezed to ``steps``."""
        f = steps / self.steps
        bps = tuple((int(round(s * f)), lr) for s, lr in self.breakpoints)
        return dataclasses.replace(self, steps=steps, breakpoints=bps,
                                   val_every=max(1, min(self.val_every, steps // 10 or 1)),
                                   checkpoint_every=max(1, int(round(self.checkpoint_every * f))))


def learning_rates(breakpoints: Sequence[tuple[int, float]], steps: int) -> np.ndarray:
    """Per-step learning rate [steps] (index t: the thesis' step count t + 1), as the thesis' training loop sets it:
    before step ``count`` (1, 2, …) the next breakpoint (s, lr) with s ≤ count takes effect, one per step — so
    (0, lr) from the first step and (10000, lr) from the 10,000th. Breakpoints are sorted by step first (spec §9
    item 7)."""
    return optim.Schedule.from_breakpoints(breakpoints, steps, rule="count").rates()


class PriorTrainer:
    """Trains a :class:`PatchPrior` built inside ``strategy``'s scope (default: the default strategy): a stepper
    of :class:`~tfrestore.core.loop.Loop` (:meth:`loop`, or :meth:`run` for the whole training at once).

    ``jit_compile``: each replica's loss and gradient as one XLA cluster (the all-reduce, clipping and Adam stay
    outside it). The step is a few small matmuls and ~40 elementwise ops, so per-op dispatch is most of its time:
    XLA fuses them, 1.5× faster for ``full512`` on 2 CPU cores (issue 24); the loss agrees to ~3e-7 relative."""

    def __init__(self, config: PriorConfig, prepared: Prepared, train: TrainConfig, *, strategy=None, seed: int = 0,
                 jit_compile: bool = True):
        self.strategy = strategy or tf.distribute.get_strategy()
        self.cfg, self.train_cfg, self.seed = config, train, seed
        with self.strategy.scope():
            self.prior = PatchPrior(config, prepared.normalisation, prepared.whitening, seed=seed)
            self.optimizer = keras.optimizers.Adam(learning_rate=1.0, epsilon=1e-8)
            self.optimizer.build(self.prior.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, name="step")
        self.train_data = tf.constant(prepared.train)
        self.val_data = tf.constant(prepared.val)
        self._lr = tf.constant(learning_rates(train.breakpoints, train.steps))
        self._loss_sum = tf.Variable(0.0, dtype=tf.float32)
        self._increases = tf.Variable(0, dtype=tf.int64, name="val_increases")
        self._last_val = tf.Variable(np.inf, dtype=tf.float64, name="last_val")
        self._block = tf.function(self._steps)
        self._loss_and_grads = tf.function(self._replica_loss_and_grads, jit_compile=jit_compile)
        self._t0, self._start, self._block_steps = time.perf_counter(), 0, 0
        self.total_steps = train.steps
        self.history: list[dict] = []        # one record per log point (over resumes), after run()

    # ---- the distributed step ------------------------------------------------------------------------------
    def _terms(self, batch, t):
        # dropout training: the thesis' seeded op, a fresh mask per step keyed by (42, t) (spec §4.4)
        mask = self.prior.dropout_mask(dropout_seed(t)) if (
            self.cfg.kind == "dropout" and self.cfg.dropout_train) else None
        terms = self.prior.score_matching_terms(batch, self.train_cfg.legacy_broadcast, mask=mask)
        if self.train_cfg.legacy_channelwise_student_norm and self.cfg.kind == "channelwise" \
                and self.cfg.expert == "student":
            terms = terms * float(self.train_cfg.batch) / self.cfg.channels
        return terms

    def _replica_step(self, t):
        ctx = tf.distribute.get_replica_context()
        b, r = self.train_cfg.batch, ctx.num_replicas_in_sync
        share = tf.range(ctx.replica_id_in_sync_group, b, r, dtype=tf.int64)     # this replica's rows
        n = tf.cast(tf.shape(self.train_data, out_type=tf.int64)[0], tf.int64)
        idx = (t * b + share) % n
        batch = tf.gather(self.train_data, idx)
        variables = self.prior.trainable_variables
        loss, grads = self._loss_and_grads(batch, t)
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)       # the global gradient, on every replica
        if self.train_cfg.grad_clip:
            c = self.train_cfg.grad_clip
            grads = [tf.clip_by_value(g, -c, c) for g in grads]
        # the optimiser sums over replicas once more: hand it 1/R of the (identical) global gradient each
        self.optimizer.apply_gradients(zip([g / float(r) for g in grads], variables))
        return loss

    def _replica_loss_and_grads(self, batch, t):
        """This replica's share of the batch-mean loss and its gradient (compiled by XLA with ``jit_compile``)."""
        variables = self.prior.trainable_variables
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(self._terms(batch, t)) / float(self.train_cfg.batch)
        return loss, tape.gradient(loss, variables)

    def _steps(self, start, stop):
        for t in tf.range(start, stop):
            self.optimizer.learning_rate.assign(self._lr[t])           # breakpoints act before their step
            per_replica = self.strategy.run(self._replica_step, args=(t,))
            self._loss_sum.assign_add(self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, None))
            self.step.assign(t + 1)

    def validation_loss(self) -> float:
        terms = self.prior.score_matching_terms(self.val_data, self.train_cfg.legacy_broadcast)
        return float(tf.reduce_mean(terms))

    # ---- the Stepper protocol (tfrestore.core.loop) --------------------------------------------------------
    @property
    def steps_done(self) -> int:
        return int(self.step.numpy())

    def log_points(self) -> list[int]:
        """Every ``val_every`` steps and the last step: where the validation loss is measured."""
        return every(self.train_cfg.val_every, self.train_cfg.steps)

    def state(self) -> dict:
        """What a checkpoint holds to continue exactly: the prior, Adam's state, the step and the overfitting
        counter (successive validation increases, and the last validation loss it compares with)."""
        return {"prior": self.prior, "optimizer": self.optimizer, "step": self.step,
                "val_increases": self._increases, "last_val": self._last_val}

    def begin(self) -> None:
        self._t0, self._start = time.perf_counter(), self.steps_done

    def advance(self, stop: int) -> None:
        """Steps ``steps_done`` … ``stop`` − 1 as one compiled block; their summed loss in ``_loss_sum``."""
        done = self.steps_done
        self._loss_sum.assign(0.0)
        self._block(tf.constant(done, tf.int64), tf.constant(stop, tf.int64))
        self._block_steps = stop - done

    def measure(self) -> Measurement:
        """loss: [1] the block's mean training loss (the Loop's convention for trainings, so progress lines read
        "loss … val …"); scalars: train_loss (the same), val_loss (held-out score-matching loss), lr (of the last
        step), patches_per_s (this invocation). ``stop`` when the validation loss rose ``overfit_patience`` times
        in a row and ``stop_on_overfit`` is set."""
        tc, point = self.train_cfg, self.steps_done
        val = self.validation_loss()
        rose = val > float(self._last_val.numpy())
        self._increases.assign(self._increases + 1 if rose else 0)
        self._last_val.assign(val)
        rate = (point - self._start) * tc.batch / max(time.perf_counter() - self._t0, 1e-9)
        train_loss = float(self._loss_sum.numpy()) / max(self._block_steps, 1)
        scalars = {"train_loss": train_loss, "val_loss": val, "lr": float(self._lr[point - 1]),
                   "patches_per_s": rate}
        overfit = tc.stop_on_overfit and int(self._increases.numpy()) >= tc.overfit_patience
        return Measurement(loss=np.array([train_loss]), scalars=scalars,
                           stop=f"validation loss rose {tc.overfit_patience} times in a row" if overfit else None)

    def describe(self) -> dict:
        return {"prior": self.cfg.to_json(), "training": dataclasses.asdict(self.train_cfg), "seed": self.seed,
                "replicas": self.strategy.num_replicas_in_sync}

    def snapshot(self) -> dict[str, np.ndarray]:
        """The filter grid ([1, H, W, C] in [0, 1]) for TensorBoard; nothing for channel-wise priors."""
        return {} if self.cfg.kind == "channelwise" else {"filters": filter_grid(self.prior)[None]}

    # ---- the driver -----------------------------------------------------------------------------------------
    def loop(self, checkpoints: str | Path | None = None, *, logdir: str | Path | None = None,
             resume: bool = False, progress: bool = True) -> Loop:
        """The :class:`~tfrestore.core.loop.Loop` that trains this prior: checkpoints in ``checkpoints`` (every
        ``checkpoint_every`` steps or 3 minutes, at the end and when stopped), progress lines, TensorBoard."""
        tc, cbs = self.train_cfg, []
        if checkpoints is not None:
            cbs.append(Checkpoint(checkpoints, every=tc.checkpoint_every, resume=resume))
        if progress:
            cbs.append(Progress())
        if logdir is not None and self.strategy.extended.should_save_summary:    # one worker's curves, not all
            cbs.append(TensorBoard(logdir, images_every=max(1, tc.checkpoint_every // tc.val_every)))
        return Loop(self, cbs, name="prior")

    def run(self, out: str | Path | None = None, *, logdir: str | Path | None = None, resume: bool = False,
            progress: bool = True, stop_after: int | None = None) -> dict:
        """Train to the end (or to ``stop_after`` steps, with a checkpoint in ``out/ckpt``); returns the summary
        (steps, seconds, seconds_total, stopped, final: the last history record, patches_per_s)."""
        loop = self.loop(None if out is None else Path(out) / "ckpt", logdir=logdir, resume=resume,
                         progress=progress)
        summary = loop.run(stop_after=stop_after)
        self.history = summary.history
        return {"steps": summary.steps, "seconds": summary.seconds, "seconds_total": summary.seconds_total,
                "stopped": summary.stopped, "final": summary.history[-1] if summary.history else {},
                "patches_per_s": summary.steps_run * self.train_cfg.batch / max(summary.seconds, 1e-9)}


def filter_grid(prior: PatchPrior, count: int = 64, columns: int = 8) -> np.ndarray:
    """The ``count`` components with the largest expert weights, unwhitened to patch space, each stretched
    symmetrically around grey, tiled with a one-pixel border: [H, W, C] in [0, 1]."""
    imgs, _ = prior.filter_images()
    imgs = imgs[:count]
    p, c = imgs.shape[1], imgs.shape[3]
    rows = -(-len(imgs) // columns)
    grid = np.ones((rows * (p + 1) + 1, columns * (p + 1) + 1, c if c in (1, 3) else 1))
    for i, f in enumerate(imgs):
        f = f if c in (1, 3) else f[..., :1]
        f = 0.5 + 0.5 * f / max(np.abs(f).max(), 1e-12)
        y, x = divmod(i, columns)
        grid[1 + y * (p + 1):1 + y * (p + 1) + p, 1 + x * (p + 1):1 + x * (p + 1) + p] = f
    return grid


def save_filter_grid(prior: PatchPrior, path: str | Path, title: str = "", zoom: int = 6) -> Path:
    """The filter grid as a PNG, each pixel shown as zoom × zoom."""
    grid = np.repeat(np.repeat(filter_grid(prior), zoom, axis=0), zoom, axis=1)
    return files.save_png(path, grid, {"Title": title} if title else None)


