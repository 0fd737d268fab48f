"""Training a Keras model with a custom step under a ``tf.distribute`` strategy: autoencoder priors, the small
digits classifier, learned inverters.

The same code runs on one CPU (the default strategy), several GPUs (``MirroredStrategy``) or several workers. The
global batch comes from a ``tf.data`` pipeline distributed over the replicas
(``strategy.experimental_distribute_dataset``: each takes an equal slice); every replica computes the mean loss of
its slice, the gradients are all-reduced into the global mean gradient and applied with Adam.

Batches are chosen by the step number alone: row indices from seeded per-epoch permutations fixed before training
(or the data's own order with ``shuffle=False``) become a ``tf.data`` pipeline that starts at the current step, so
with the model, Adam's state and the step in the checkpoint a resumed training ends exactly where the
uninterrupted one would. The rows are looked up in in-memory arrays, or loaded by a :class:`Source` (e.g. image
files decoded, cropped and flipped in the pipeline, with prefetching). In-memory arrays on one replica skip the
pipeline: each step gathers its rows by the same index table inside the compiled block (``gather_in_graph``; the
pipeline's threads cost the small digits steps ~15 % of 2 cores). Blocks of ``val_every`` steps run as one
compiled ``tf.function``; after each block the validation loss is computed and logged (progress line, TensorBoard).

    trainer = Trainer(model, loss_fn, {"x": images}, TrainingConfig(steps=2000, batch=64), val={"x": held_out})
    summary = trainer.run(out="runs/ae", logdir="runs/ae/tb", resume=True)

``loss_fn(model, batch, training)`` returns a dict of scalar means over the batch it is given; ``"loss"`` is the
one minimised, the others are logged.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from tfrestore.core import files, log, store
from tfrestore.optimize import optim
from tfrestore.core.loop import Checkpoint, Loop, Measurement, Progress, TensorBoard, every

LossFn = Callable[[keras.Model, dict, bool], dict]


class Source:
    """Training samples by index for the input pipeline: ``size`` samples; ``load(index, draw)`` returns a dict
    of tensors for one sample. ``draw`` numbers every sample drawn in the whole training (step·batch + position):
    seeding random crops and flips with it gives a resumed training the same ones."""

    size: int

    def load(self, index: tf.Tensor, draw: tf.Tensor) -> dict:
        raise NotImplementedError


class ArraySource(Source):
    """In-memory arrays (a dict of equal-length arrays, first axis the sample)."""

    def __init__(self, arrays: dict):
        sizes = {k: len(v) for k, v in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"every data array needs the same number of samples, got {sizes}")
        self.size = next(iter(sizes.values()))
        self.arrays = {k: tf.constant(np.asarray(v)) for k, v in arrays.items()}

    def load(self, index, draw):
        return {k: tf.gather(v, index) for k, v in self.arrays.items()}


BREAKPOINT_RULES = ("before", "after")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Adam on a fixed number of steps. ``breakpoints`` ((step, lr), …) change the rate under ``breakpoint_rule``:

    - ``"before"`` (tfrestore's own trainings: the digits classifier, the autoencoder prior): sorted by step; step
      t (0-based) runs at the rate of the breakpoint with the largest step ≤ t (``learning_rate`` before any).
    - ``"after"`` (the thesis' ``lr_lower_points``, learned_inverters.md §3, the rule of mv2016.md §9.2): start at
      the first entry's rate (``learning_rate`` must equal it); after the step with 1-based count c has run, if the
      next unconsumed entry's iteration is ≤ c, adopt its rate and consume it — one entry per step, in the order
      given, so an entry out of order waits for every entry before it (the thesis' solo schedule
      ((0, 3e-4), (3000, 1e-4), (2000, 3e-5)) stays at 3e-4 for its 3,000 steps).
    """
    steps: int = 3000
    batch: int = 32
    learning_rate: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7
    val_every: int = 100
    checkpoint_every: int = 500
    shuffle: bool = True           # False: the data's own order, wrapped around (the thesis' list order)
    seed: int = 0
    breakpoints: tuple[tuple[int, float], ...] = ()   # (step, lr) under breakpoint_rule; () = constant rate
    breakpoint_rule: str = "before"

    def scaled(self, steps: int) -> "TrainingConfig":
        """The same schedule stretched or squeezed to ``steps`` (breakpoints, in their order, validation and
        checkpoint intervals follow), like :meth:`tfrestore.priors.train.TrainConfig.scaled`."""
        f = steps / self.steps
        return dataclasses.replace(self, steps=steps, val_every=max(1, min(self.val_every, steps // 5 or 1)),
                                   checkpoint_every=max(1, steps // 2),
                                   breakpoints=tuple((int(s * f), lr) for s, lr in self.breakpoints))

    def schedule(self) -> optim.Schedule:
        """The learning-rate schedule (:meth:`tfrestore.optimize.optim.Schedule.from_breakpoints` under
        ``breakpoint_rule``)."""
        return optim.Schedule.from_breakpoints(self.breakpoints, self.steps, rule=self.breakpoint_rule,
                                               initial=self.learning_rate)

    def learning_rates(self) -> np.ndarray:
        """[steps] the rate of every step under ``breakpoint_rule``."""
        return self.schedule().rates()

    def identity(self) -> dict:
        """Every setting that determines the trained weights (not the logging and checkpoint intervals): the
        config part of a stored artifact's key."""
        skip = {"val_every", "checkpoint_every"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

    def __post_init__(self):
        if self.steps <= 0 or self.batch <= 0:
            raise ValueError(f"steps and batch must be positive, got steps={self.steps}, batch={self.batch}")
        if self.breakpoint_rule not in BREAKPOINT_RULES:
            raise ValueError(f"breakpoint_rule must be one of {', '.join(BREAKPOINT_RULES)}, "
                             f"got {self.breakpoint_rule!r}")
        if self.breakpoint_rule == "after" and self.breakpoints and self.breakpoints[0][1] != self.learning_rate:
            raise ValueError(f"under the thesis' rule the schedule starts at its first entry's rate: set "
                             f"learning_rate={self.breakpoints[0][1]!r} (got {self.learning_rate!r})")


def batch_indices(n: int, steps: int, batch: int, shuffle: bool, seed: int) -> np.ndarray:
    """[steps, batch] row indices: consecutive slices of seeded per-epoch permutations (or of 0…n−1)."""
    need = steps * batch
    epochs = -(-need // n)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n) if shuffle else np.arange(n) for _ in range(epochs)])
    return order[:need].reshape(steps, batch).astype(np.int64)


class Trainer:
    """Trains ``model`` (built inside ``strategy``'s scope) on ``data`` (a dict of equal-length arrays or a
    :class:`Source`); a :class:`tfrestore.core.loop.Loop` stepper, so checkpoints (by steps and minutes), progress
    lines, TensorBoard, SIGINT / SIGTERM and ``stop_after`` are the loop's, as for every other long job.

    Args:
        model: the Keras model; only its trainable weights are updated (or ``variables``).
        loss_fn: ``(model, batch, training) -> {"loss": scalar, other names: scalars}``.
        data, val: dicts of arrays, first axis the sample; ``val`` may be None.
        config: :class:`TrainingConfig`.
        strategy: a ``tf.distribute`` strategy (default: the current one).
        images_fn: ``(model) -> {name: [N, H, W, C] in [0, 1]}``, logged to TensorBoard (the loop's snapshots).
        name: prefix of the progress lines and the logged scalars.
        describe: the run's configuration, recorded in TensorBoard and ``config.json``.
        variables: the variables trained (default the model's trainable ones).
        checkpoint: more objects to save and restore with the state (e.g. other models).
        gather_in_graph: with in-memory arrays (an :class:`ArraySource`) on one replica, each step gathers its
            batch from the arrays inside the compiled block instead of reading the ``tf.data`` pipeline: the same
            rows in the same order, without the pipeline's threads competing with the step for the cores (1.2×
            on the digits classifier at 2 threads, issue 24). Other sources and several replicas always use the
            pipeline.
        jit_compile: each replica's loss and gradient as one XLA cluster (the all-reduce and Adam stay outside
            it), as :class:`tfrestore.priors.train.PriorTrainer` does. Off by default: the model modules choose it
            by measurement (the autoencoder's small step of BN and elementwise ops: 1.3× faster on 2 CPU cores;
            the digits classifier 2.4× slower: XLA's CPU convolutions are not oneDNN's).
    """

    def __init__(self, model: keras.Model, loss_fn: LossFn, data: dict | Source, config: TrainingConfig, *,
                 val: dict | None = None, strategy=None, images_fn: Callable | None = None, name: str = "train",
                 describe: dict | None = None, variables: list | None = None, checkpoint: dict | None = None,
                 gather_in_graph: bool = True, jit_compile: bool = False):
        self.strategy = strategy or tf.distribute.get_strategy()
        self.model, self.loss_fn, self.cfg, self.name = model, loss_fn, config, name
        self.images_fn, self.description = images_fn, dict(describe or {})
        self.source = data if isinstance(data, Source) else ArraySource(data)
        if config.batch % self.strategy.num_replicas_in_sync:
            raise ValueError(f"the batch ({config.batch}) must divide evenly over "
                             f"{self.strategy.num_replicas_in_sync} replicas")
        with self.strategy.scope():
            self.optimizer = keras.optimizers.Adam(config.learning_rate, beta_1=config.beta1, beta_2=config.beta2,
                                                   epsilon=config.epsilon)
            self.variables = list(variables) if variables is not None else list(model.trainable_variables)
            self.optimizer.build(self.variables)
            self.step = tf.Variable(0, dtype=tf.int64, name="step")
        self.extra_checkpoint = dict(checkpoint or {})       # more objects to save and restore (e.g. other models)
        self.val = None if val is None else {k: np.asarray(v) for k, v in val.items()}
        self._index = batch_indices(self.source.size, config.steps, config.batch, config.shuffle, config.seed)
        self._lr = tf.constant(config.learning_rates())
        self._sums: dict[str, tf.Variable] = {}
        self._block = tf.function(self._steps)
        # type, not isinstance: a subclass may load per sample (crops seeded by the draw) and needs the pipeline;
        # so does a subclass of this trainer with a dataset of its own
        self.in_graph = gather_in_graph and type(self.source) is ArraySource \
            and self.strategy.num_replicas_in_sync == 1 and type(self).dataset is Trainer.dataset
        self._index_table = tf.constant(self._index)          # captured by the block, not embedded in its graph
        self._block_in_graph = tf.function(self._steps_in_graph)
        self.jit_compile = jit_compile
        self._loss_and_grads = tf.function(self._replica_loss_and_grads, jit_compile=True) if jit_compile \
            else self._replica_loss_and_grads
        # validation at log points through one traced graph (an eager pass cost 3.5 % of the digits training)
        self._eval_chunk = tf.function(lambda chunk: self.loss_fn(self.model, chunk, False), reduce_retracing=True)
        self._iterator, self._start, self._block_start, self._t0 = None, 0, 0, 0.0
        self.history: list[dict] = []

    def dataset(self, start: int) -> tf.data.Dataset:
        """Global batches for steps start, start + 1, …: the index table from ``start`` through the source."""
        b = self.cfg.batch
        draws = np.arange(start * b, self.cfg.steps * b, dtype=np.int64).reshape(-1, b)   # step·batch + j
        table = tf.data.Dataset.from_tensor_slices((self._index[start:], draws))
        rows = table.flat_map(lambda idx, d: tf.data.Dataset.from_tensor_slices((idx, d)))
        samples = rows.map(lambda i, t: self.source.load(i, t), num_parallel_calls=tf.data.AUTOTUNE,
                           deterministic=True)
        options = tf.data.Options()     # several workers: each keeps its replicas' slices of every global batch
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return samples.batch(self.cfg.batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE).with_options(options)

    # ---- the distributed step ------------------------------------------------------------------------------
    def _replica_loss_and_grads(self, batch):
        """This replica's loss terms on its slice and the gradient of ``"loss"`` (one XLA cluster with
        ``jit_compile``)."""
        with tf.GradientTape() as tape:
            terms = self.loss_fn(self.model, batch, True)
        grads = tape.gradient(terms["loss"], self.variables)
        return terms, [tf.zeros_like(v) if g is None else g for g, v in zip(grads, self.variables)]

    def _replica_step(self, batch):
        ctx = tf.distribute.get_replica_context()
        r = ctx.num_replicas_in_sync
        terms, grads = self._loss_and_grads(batch)
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)      # Σ over replicas of per-replica means
        # the optimiser sums over replicas once more: each replica hands it 1/R of the global mean gradient
        self.optimizer.apply_gradients(zip([g / float(r * r) for g in grads], self.variables))
        return {k: v / float(r) for k, v in terms.items()}

    def _steps(self, iterator, start, stop):
        for t in tf.range(start, stop):
            self.optimizer.learning_rate.assign(self._lr[t])
            per_replica = self.strategy.run(self._replica_step, args=(next(iterator),))
            for k, v in per_replica.items():
                self._sums[k].assign_add(self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, None))
            self.step.assign(t + 1)

    def _steps_in_graph(self, start, stop):
        """:meth:`_steps` with each batch gathered from the arrays by the index table's row t (one replica)."""
        for t in tf.range(start, stop):
            self.optimizer.learning_rate.assign(self._lr[t])
            batch = self.source.load(self._index_table[t], tf.constant(0, tf.int64))    # ArraySource: the rows
            terms = self.strategy.run(self._replica_step, args=(batch,))
            for k, v in terms.items():
                self._sums[k].assign_add(self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, None))
            self.step.assign(t + 1)

    def evaluate(self, data: dict, batch: int = 256) -> dict[str, float]:
        """Mean of every loss term over ``data`` (training=False), in chunks of ``batch``."""
        n = len(next(iter(data.values())))
        sums: dict[str, float] = {}
        for i in range(0, n, batch):
            chunk = {k: tf.constant(v[i:i + batch]) for k, v in data.items()}
            m = len(next(iter(chunk.values())))
            for k, v in self._eval_chunk(chunk).items():
                sums[k] = sums.get(k, 0.0) + float(v) * m
        return {k: v / n for k, v in sums.items()}

    # ---- the stepper (tfrestore.core.loop) -------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.cfg.steps

    @property
    def steps_done(self) -> int:
        return int(self.step.numpy())

    def log_points(self) -> list[int]:
        """Every ``val_every`` steps and the last step: where the loop measures, logs and may checkpoint."""
        return every(self.cfg.val_every, self.cfg.steps)

    def state(self) -> dict:
        """What a checkpoint holds: the model, Adam's state, the step and the extra objects."""
        return {"model": self.model, "optimizer": self.optimizer, "step": self.step, **self.extra_checkpoint}

    def begin(self) -> None:
        """The input pipeline opened at the (restored) step; the loss terms' names learnt once from an eager call
        on one sample."""
        self._start = self._block_start = self.steps_done
        self._iterator = iter(self.strategy.experimental_distribute_dataset(self.dataset(self._start))) \
            if self._start < self.cfg.steps and not self.in_graph else None
        if not self._sums:
            probe = {k: tf.expand_dims(v, 0) for k, v in self.source.load(tf.constant(0, tf.int64),
                                                                           tf.constant(0, tf.int64)).items()}
            self._sums = {k: tf.Variable(0.0) for k in self.loss_fn(self.model, probe, False)}
        self._t0 = time.perf_counter()

    def advance(self, stop: int) -> None:
        """Steps up to ``stop`` in one compiled block; the loss terms summed over it."""
        self._block_start = self.steps_done
        for v in self._sums.values():
            v.assign(0.0)
        span = (tf.constant(self._block_start, tf.int64), tf.constant(stop, tf.int64))
        if self.in_graph:
            self._block_in_graph(*span)
        else:
            self._block(self._iterator, *span)

    def measure(self) -> Measurement:
        """The block's mean training terms (``train_<term>``), the validation terms (``val_<term>``), the rate of
        the last step and the samples per second since this run began."""
        done = self.steps_done
        n = max(done - self._block_start, 1)
        scalars = {f"train_{k}": float(v.numpy()) / n for k, v in self._sums.items()}
        if self.val is not None:
            scalars.update({f"val_{k}": v for k, v in self.evaluate(self.val).items()})
        scalars["lr"] = float(self._lr[max(done - 1, 0)].numpy())
        scalars["samples_per_s"] = (done - self._start) * self.cfg.batch / max(time.perf_counter() - self._t0, 1e-9)
        return Measurement(loss=np.array([scalars["train_loss"]]), scalars=scalars)

    def describe(self) -> dict:
        return {**self.description, **dataclasses.asdict(self.cfg)}

    def snapshot(self) -> dict:
        return self.images_fn(self.model) if self.images_fn is not None else {}

    # ---- the driver -----------------------------------------------------------------------------------------
    def run(self, out: str | Path | None = None, *, logdir: str | Path | None = None, resume: bool = False,
            progress: bool = True, stop_after: int | None = None, checkpoint_seconds: float = 180.0) -> dict:
        """Train to ``config.steps`` through the one loop: checkpoints in ``out/ckpt`` every
        ``config.checkpoint_every`` steps or ``checkpoint_seconds`` of wall time, at the end and when stopped
        (SIGINT / SIGTERM, or the first log point at or after ``stop_after``); ``resume`` continues from the latest
        one. Returns a summary with the last train and validation losses and the rate; ``history`` holds every log
        point's record over all invocations."""
        say=log.status if progress else (lambda _line: None)
        callbacks: list = [Progress()] if progress else []
        if logdir is not None and self.strategy.extended.should_save_summary:    # one worker's curves, not all
            callbacks.append(TensorBoard(logdir, images_every=1, say=say))
        if out is not None:
            ckpt = Path(out) / "ckpt"
            callbacks.append(Checkpoint(ckpt, every=self.cfg.checkpoint_every, every_seconds=checkpoint_seconds,
                                        resume=resume and tf.train.latest_checkpoint(str(ckpt)) is not None,
                                        say=say))
            files.write_json(Path(out) / "config.json", self.describe())
        loop = Loop(self, callbacks, name=self.name)
        try:
            summary = loop.run(stop_after=stop_after)
        finally:
            self.history = loop.history
        steps_run = max(summary.steps_run, 1)
        return {"steps": summary.steps, "seconds": summary.seconds, "seconds_total": summary.seconds_total,
                "stopped": summary.stopped, "final": self.history[-1] if self.history else {},
                "samples_per_s": summary.steps_run * self.cfg.batch / max(summary.seconds, 1e-9),
                "seconds_per_1000_steps": 1000 * summary.seconds / steps_run}


# ---- trainings kept in the artifact store ---------------------------------------------------------------------------
def data_tag(source: str | Path | None) -> str:
    """The data a training saw, for a store key: ``"embedded"`` (the bundled samples) or the user's resolved path."""
    return "embedded" if source is None else str(Path(source).expanduser().resolve())


def stored(key: store.Key, make: Callable[[Path, Path], dict], *, command: str, overwrite: bool = False,
           what: str = "", say: Callable[[str], None] = log.status) -> tuple[store.Artifact, bool]:
    """``(artifact, built)``: the trained artifact of ``key``, trained first by ``make(work, out)`` when it is not
    stored (or ``overwrite``). ``make`` keeps its checkpoints in ``work`` (the key's ``.work`` folder, so an
    interrupted training resumes there) and writes the files into ``out``; the store commits them with the
    manifest. A reused artifact is named in one line; a damaged one is a one-line
    :class:`tfrestore.core.store.ArtifactError` naming the file and ``command``."""
    built = []

    def _make(work: Path, out: Path) -> dict:
        built.append(True)
        return make(work, out)

    art = store.build(key, _make, command=command, overwrite=overwrite, say=say)
    if not built:
        say(f"using the stored {what or key.kind} {art.path} (config digest {key.digest})")
    return art, bool(built)


def keep_logs(work: Path, out: Path) -> None:
    """The training's TensorBoard events (``work/tb``) go into the artifact (``out/tb``) with its weights."""
    import shutil
    if (work / "tb").is_dir():
        shutil.copytree(work / "tb", out / "tb")
