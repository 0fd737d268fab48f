"""The one loop every long job runs through: image optimisations, supervised trainings, score matching, the deep
image prior, the autoencoder.

The work is a *stepper*: it advances in compiled blocks and measures itself at log points. The :class:`Loop` owns
everything around the blocks, once for all jobs: where Python wakes up, the callbacks (progress, TensorBoard,
checkpoints), the run's history, its wall time over resumes, stopping on SIGINT / SIGTERM and ``stop_after``::

    loop = Loop(stepper, [Progress(), TensorBoard("runs/x/tb"), Checkpoint("runs/x/ckpt", resume=True)])
    summary = loop.run()

The split is Keras' ``fit`` / ``train_step``: the loop is generic, the step is the job's. A stepper implements

- ``total_steps``, ``steps_done`` (its step counter, checkpointed with its state);
- ``log_points()``: the steps at which the loop wakes up (the last one is ``total_steps``);
- ``state()``: ``{name: trackable}`` — everything a checkpoint must hold to continue exactly;
- ``begin()``: called once after any checkpoint was restored, before the first block (e.g. to open a data
  pipeline at the restored step);
- ``advance(stop)``: run steps up to ``stop`` (compiled; no Python per step);
- ``measure() -> Measurement``: the numbers of this log point (without changing the model: no batch-norm
  updates, no optimiser state);
- ``describe() -> dict``: the run's configuration, for TensorBoard and the outputs;
- optionally ``snapshot() -> {name: [N, H, W, C] in [0, 1]}`` (images for TensorBoard), ``labels`` (one name per
  problem of a batched job), ``applies() -> {term: [N] bool}`` (which terms mean something for which problem), and
  ``finish(summary) -> result``: what :meth:`Loop.run` returns and the callbacks' ``on_run_end`` receives (the
  image optimisation's ``Result``, which callbacks may add to); without it, the :class:`Summary`.

A callback with ``log_steps() -> set[int]`` adds log points at those steps (e.g. the thesis' per-problem result
checkpoints).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import tensorflow as tf

from . import log

LOG = log.logger(__name__)


def every(interval: int, total: int) -> list[int]:
    """Log points every ``interval`` steps and at the last step (a training's validation points)."""
    return sorted(set(range(interval, total + 1, interval)) | {total})


@dataclasses.dataclass
class Measurement:
    """What a stepper reports at a log point.

    ``loss``: [N] the objective per problem ([1] for a training: the mean training loss of the last block);
    ``values``: term name → [N] unweighted term values; ``scalars``: anything else worth a curve (``lr``,
    ``val_loss``, ``samples_per_s``, …); ``stop``: a reason to end the run at this very point (e.g. "validation
    loss rose"), which then is the last one, checkpointed."""
    loss: np.ndarray
    values: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    scalars: dict[str, float] = dataclasses.field(default_factory=dict)
    stop: str | None = None


@dataclasses.dataclass
class LogPoint:
    step: int                          # steps done so far
    total: int                         # steps in the whole run
    loss: np.ndarray                   # [N] (see Measurement)
    values: dict[str, np.ndarray]      # term name -> [N]
    scalars: dict[str, float]          # lr, val_loss, ...
    seconds: float                     # wall time since this invocation's run() began
    start_step: int                    # the step this invocation started from (> 0 after a resume)
    last: bool                         # the run ends after this point (done, or stopping)

    @property
    def mean_loss(self) -> float:
        return float(np.mean(self.loss))

    @property
    def lr(self) -> float:
        return float(self.scalars.get("lr", 0.0))

    def record(self) -> dict:
        """The history entry of this point: step, mean loss and the scalars."""
        return {"step": self.step, "loss": self.mean_loss, **{k: float(v) for k, v in self.scalars.items()}}


class Stepper(Protocol):
    total_steps: int

    @property
    def steps_done(self) -> int: ...

    def log_points(self) -> Sequence[int]: ...

    def state(self) -> dict: ...

    def begin(self) -> None: ...

    def advance(self, stop: int) -> None: ...

    def measure(self) -> Measurement: ...

    def describe(self) -> dict: ...


class Callback:
    """Hooks, in the order the loop calls them: ``setup(loop)`` (create state), ``on_run_begin(loop)``
    (callbacks with ``restores = True`` first: a checkpoint is restored there, so the others see the resumed
    step), ``on_log_point(loop, point)``, ``on_run_end(loop, summary)``. ``state()`` returns variables that
    belong in the checkpoint."""

    restores = False

    def setup(self, loop: "Loop") -> None:
        pass

    def on_run_begin(self, loop: "Loop") -> None:
        pass

    def on_log_point(self, loop: "Loop", point: LogPoint) -> None:
        pass

    def on_run_end(self, loop: "Loop", summary: "Summary") -> None:
        pass

    def state(self) -> dict:
        return {}


@dataclasses.dataclass
class Summary:
    steps: int                         # steps done in total
    steps_run: int                     # steps run in this invocation
    seconds: float                     # wall time of this invocation
    seconds_total: float               # wall time over every invocation (resumes included)
    history: list[dict]                # one record per log point, over every invocation
    last: LogPoint | None              # the last log point of this invocation
    stopped: str                       # "done", "signal", "stop_after" or a callback's reason
    checkpoint_seconds: float = 0.0    # of this invocation's wall time, spent writing checkpoints

    @property
    def interrupted(self) -> bool:
        return self.stopped == "signal"

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(self.steps_run, 1)


class Loop:
    """Drives a stepper from its current step to the end (or until stopped), calling the callbacks at every log
    point. ``name`` prefixes progress lines and TensorBoard tags (``"prior"``, ``"train"``; empty for image
    optimisation)."""

    def __init__(self, stepper: Stepper, callbacks: Sequence[Callback] = (), *, name: str = ""):
        self.stepper, self.callbacks, self.name = stepper, list(callbacks), name
        self.seconds_before = tf.Variable(0.0, dtype=tf.float64, name="seconds")    # earlier invocations
        self._history = tf.Variable("[]", dtype=tf.string, name="history")          # checkpointed as JSON
        self._stop_reason: str | None = None

    # ---- what callbacks use -------------------------------------------------------------------------------
    @property
    def history(self) -> list[dict]:
        return json.loads(self._history.numpy().decode())

    def state(self) -> dict:
        """Everything a checkpoint holds: the stepper's state, the loop's clock and history, the callbacks'."""
        out = {"seconds": self.seconds_before, "history": self._history, **self.stepper.state()}
        for j, cb in enumerate(self.callbacks):
            out.update({f"cb{j}_{k}": v for k, v in cb.state().items()})
        return out

    def request_stop(self, reason: str) -> None:
        """End the run at the next log point (with a final checkpoint there). A stepper that wants to stop at the
        point it measures returns ``Measurement(stop=reason)`` instead."""
        self._stop_reason = reason

    # ---- the loop -------------------------------------------------------------------------------------------
    def run(self, *, stop_after: int | None = None) -> Summary:
        """Run to the end; ``stop_after`` ends at the first log point at or after that step (with a checkpoint),
        as a time-limited job would; a later run with a restoring Checkpoint finishes it."""
        s = self.stepper
        ordered = sorted(self.callbacks, key=lambda c: not c.restores)
        for cb in ordered:
            cb.setup(self)
        for cb in ordered:
            cb.on_run_begin(self)
        s.begin()
        start, total = s.steps_done, s.total_steps
        history = self.history
        t0, base = time.perf_counter(), float(self.seconds_before.numpy())
        last_point, stopped = None, "done"
        asked = {int(t) for cb in self.callbacks if hasattr(cb, "log_steps") for t in cb.log_steps()}
        points = sorted(set(s.log_points()) | {t for t in asked if 0 < t <= total})
        with _SignalFlag(self.name) as signalled:
            for step in points:
                if step <= s.steps_done:
                    continue
                s.advance(step)
                m = s.measure()
                if m.stop and self._stop_reason is None:
                    self._stop_reason = m.stop
                by_limit = stop_after is not None and step >= stop_after
                stopping = by_limit or signalled.raised or self._stop_reason is not None
                point = LogPoint(step=step, total=total, loss=np.atleast_1d(np.asarray(m.loss)),
                                 values=dict(m.values), scalars=dict(m.scalars),
                                 seconds=time.perf_counter() - t0, start_step=start,
                                 last=step == total or stopping)
                history.append(point.record())
                self._history.assign(json.dumps(history))
                self.seconds_before.assign(base + point.seconds)       # goes into this point's checkpoint
                for cb in ordered:
                    cb.on_log_point(self, point)
                last_point = point
                if stopping:
                    stopped = ("signal" if signalled.raised else self._stop_reason if self._stop_reason
                               else "stop_after")
                    break
        seconds = time.perf_counter() - t0
        self.seconds_before.assign(base + seconds)
        summary = Summary(steps=s.steps_done, steps_run=s.steps_done - start, seconds=seconds,
                          seconds_total=base + seconds, history=history, last=last_point, stopped=stopped,
                          checkpoint_seconds=sum(getattr(cb, "seconds_spent", 0.0) for cb in self.callbacks))
        result = s.finish(summary) if hasattr(s, "finish") else summary
        for cb in ordered:
            cb.on_run_end(self, result)
        if signalled.raised:
            raise KeyboardInterrupt(f"{signalled.name} at step {summary.steps} of {total}; the state is "
                                    "checkpointed (resume to continue)")
        return result


class _SignalFlag:
    """While active (main thread only), SIGINT and SIGTERM set ``raised`` instead of killing the process, so the
    run stops at its next log point with a checkpoint; a second signal interrupts at once."""

    def __init__(self, name: str = ""):
        self.raised, self.name, self._old, self._who = False, "", {}, name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        self.raised, self.name = True, signal.Signals(signum).name
        who = f"{self._who}: " if self._who else ""
        log.say(LOG, f"{who}{self.name}: stopping at the next log point with a checkpoint", logging.WARNING)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


# ---- the callbacks every job shares ------------------------------------------------------------------------------

class Checkpoint(Callback):
    """Checkpoints in ``directory``: at the first log point after ``every`` steps or ``every_seconds`` of wall
    time, at the end, and when the run is stopped (signal, ``stop_after``, a callback). With ``resume`` the latest
    one is restored before the run begins and the run says from which step it continues (nothing is said when
    resume was not asked for). Holds the loop's :meth:`Loop.state`: the stepper's variables and optimiser state,
    its step, the history, the elapsed time and every callback's state.

    Step-triggered checkpoints are skipped while checkpointing has taken more than ``max_share`` of the wall
    time so far (a short run would otherwise spend a fifth of its time saving); time-triggered, final and
    stopping checkpoints are always written.

    Under ``MultiWorkerMirroredStrategy`` (the stepper's ``strategy``) every worker saves, as TF requires (a save
    may run collective ops), but only the chief into ``directory``: the others write into
    ``directory/workertemp_<task>``, removed after each save (TF's documented multi-worker pattern). Every
    worker restores from ``directory``, so on several machines it must be one shared folder for ``resume``.
    """

    restores = True

    def __init__(self, directory: str | Path, *, every: int = 100, every_seconds: float = 180.0,
                 resume: bool = False, max_share: float = 0.02, say=log.status):
        self.directory, self.every, self.every_seconds = Path(directory), int(every), float(every_seconds)
        self.resume, self.max_share, self.say = resume, float(max_share), say
        self._manager, self._last_step, self._last_time, self._t0 = None, 0, 0.0, 0.0
        self._temporary: Path | None = None          # a non-chief worker's write folder (multi-worker training)
        self.seconds_spent = 0.0
        self.restored_from: str | None = None

    def on_run_begin(self, loop):
        ckpt = tf.train.Checkpoint(**loop.state())
        self._temporary = _worker_temp_dir(self.directory, getattr(loop.stepper, "strategy", None))
        self._manager = tf.train.CheckpointManager(ckpt, str(self._temporary or self.directory), max_to_keep=1)
        latest = self._manager.latest_checkpoint if self._temporary is None else \
            tf.train.latest_checkpoint(str(self.directory))          # a non-chief worker restores the chief's
        if self.resume and latest:
            ckpt.restore(latest).assert_existing_objects_matched()
            self.restored_from = latest
            self.say(f"{loop.name + ': ' if loop.name else ''}resumed from {self.restored_from} at step "
                     f"{loop.stepper.steps_done} of {loop.stepper.total_steps}")
        elif self.resume:
            self.say(f"{loop.name + ': ' if loop.name else ''}--resume: no checkpoint in {self.directory}; "
                     "starting from step 0")
        self._last_step, self._t0 = loop.stepper.steps_done, time.perf_counter()
        self._last_time = self._t0
        self.seconds_spent = 0.0

    def on_log_point(self, loop, point):
        now = time.perf_counter()
        by_time = now - self._last_time >= self.every_seconds
        by_steps = point.step - self._last_step >= self.every and \
            self.seconds_spent <= self.max_share * max(now - self._t0, 1e-9)
        if by_time or by_steps or point.last:
            self.save(point.step)

    def save(self, step: int) -> None:
        t = time.perf_counter()
        self._manager.save(checkpoint_number=step)
        if self._temporary is not None:              # a non-chief worker's copy: written (collectives), not kept
            tf.io.gfile.rmtree(str(self._temporary))
        self._last_step, self._last_time = step, time.perf_counter()
        self.seconds_spent += self._last_time - t


def _worker_temp_dir(directory: Path, strategy) -> Path | None:
    """Where a worker that must not keep checkpoints writes them: ``directory/workertemp_<task>`` for a
    non-chief worker of a multi-worker strategy (``extended.should_checkpoint`` false), else None."""
    if strategy is None or strategy.extended.should_checkpoint:
        return None
    return directory / f"workertemp_{strategy.cluster_resolver.task_id}"


class Progress(Callback):
    """A tqdm bar on a terminal, else one line per log point (step, loss, validation loss, rate) — and a closing
    summary line. ``unit`` names the rate: steps/s, or samples/s when the stepper reports ``samples_per_s``."""

    def __init__(self, every: int = 1, stream=None):
        self.every, self.stream = max(1, int(every)), stream
        self._bar, self._last, self._start, self._count = None, 0, 0, 0

    def on_run_begin(self, loop):
        self._start = self._last = loop.stepper.steps_done
        stream = self.stream or sys.stderr
        if stream.isatty() and self.stream is None:
            from tqdm import tqdm
            self._bar = tqdm(total=loop.stepper.total_steps, initial=self._start, unit="step", dynamic_ncols=True,
                             desc=loop.name or None)

    def on_log_point(self, loop, point):
        if self._bar is not None:
            self._bar.update(point.step - self._last)
            self._bar.set_postfix(loss=f"{point.mean_loss:.4g}", **(
                {"val": f"{point.scalars['val_loss']:.4g}"} if "val_loss" in point.scalars else {}))
        elif self._count % self.every == 0 or point.last:
            who = f"{loop.name} " if loop.name else ""
            val = f"  val {point.scalars['val_loss']:.5g}" if "val_loss" in point.scalars else ""
            if "samples_per_s" in point.scalars:
                rate = f"{point.scalars['samples_per_s']:,.0f} samples/s"
            else:
                rate = f"{(point.step - self._start) / max(point.seconds, 1e-9):.2f} steps/s"
            print(f"{who}step {point.step:>6}/{point.total}  loss {point.mean_loss:.5g}{val}  {rate}",
                  file=self.stream or sys.stdout, flush=True)
        self._last = point.step
        self._count += 1

    def on_run_end(self, loop, summary):
        if self._bar is not None:
            self._bar.close()
        who = f"{loop.name}: " if loop.name else ""
        print(f"{who}{summary.steps_run} steps in {summary.seconds:.1f}s "
              f"({summary.steps_run / max(summary.seconds, 1e-9):.2f} steps/s)", file=self.stream or sys.stdout,
              flush=True)


class TensorBoard(Callback):
    """The one TensorBoard writer: at every log point the mean loss, the scalars (lr, val_loss, …) and — for a
    batched job — each problem's loss and the terms that apply to it (``labels``: one name per problem;
    ``applies``: term → [N] bool); images from the stepper's ``snapshot()`` every ``images_every`` log points and
    at the end; the run's configuration (text + hparams) when it starts from step 0.

    A run starting from step 0 in a folder holding an earlier run's events sets those aside in ``previous-<k>/``
    (TensorBoard shows it as a run of its own) instead of interleaving two curves."""

    def __init__(self, logdir: str | Path, *, images_every: int = 4, labels: Sequence[str] | None = None,
                 applies: dict[str, np.ndarray] | None = None, say=log.status):
        self.logdir, self.images_every = Path(logdir), int(images_every)
        self.labels, self.applies, self.say = list(labels or []), dict(applies or {}), say
        self._writer, self._count = None, 0

    def on_run_begin(self, loop):
        stepper = loop.stepper
        self.labels = self.labels or list(getattr(stepper, "labels", None) or [])
        if not self.applies and hasattr(stepper, "applies"):
            self.applies = dict(stepper.applies())
        fresh = stepper.steps_done == 0
        if fresh:
            self._set_aside_earlier_events()
        self._writer = tf.summary.create_file_writer(str(self.logdir))
        if fresh:
            self._log_config(loop.stepper.describe())

    def _set_aside_earlier_events(self):
        earlier = sorted(self.logdir.glob("events.out.tfevents.*"))
        if not earlier:
            return
        k = 1
        while (self.logdir / f"previous-{k}").exists():
            k += 1
        keep = self.logdir / f"previous-{k}"
        keep.mkdir()
        for f in earlier:
            f.rename(keep / f.name)
        self.say(f"TensorBoard: earlier events in {self.logdir} moved to {keep}")

    def _log_config(self, config: dict):
        from tensorboard.plugins.hparams import api as hp
        flat = {k: (v if isinstance(v, (int, float, str, bool)) else json.dumps(v, default=str))
                for k, v in config.items()}
        with self._writer.as_default():
            hp.hparams(flat)
            tf.summary.text("config", "```\n" + json.dumps(flat, indent=1, default=str) + "\n```", step=0)
        self._writer.flush()

    def on_log_point(self, loop, point):
        prefix = f"{loop.name}/" if loop.name else ""
        with self._writer.as_default():
            tf.summary.scalar(f"{prefix}loss/mean", point.mean_loss, step=point.step)
            for k, v in point.scalars.items():
                tf.summary.scalar(f"{prefix}{k}", float(v), step=point.step)
            if len(point.loss) > 1 or point.values:
                labels = self.labels or [f"p{i}" for i in range(len(point.loss))]
                for i, label in enumerate(labels):
                    tf.summary.scalar(f"{label}/loss", float(point.loss[i]), step=point.step)
                    for name, v in point.values.items():
                        if name not in self.applies or self.applies[name][i]:   # skip constant-0 terms
                            tf.summary.scalar(f"{label}/{name}", float(v[i]), step=point.step)
            if (point.last or self._count % self.images_every == 0) and hasattr(loop.stepper, "snapshot"):
                for name, imgs in loop.stepper.snapshot().items():
                    imgs = np.asarray(imgs, np.float32)
                    if imgs.ndim == 4 and imgs.shape[-1] in (1, 3, 4):
                        tf.summary.image(f"{prefix}{name}", np.clip(imgs, 0, 1), step=point.step,
                                         max_outputs=len(imgs))
        self._count += 1
        self._writer.flush()

    @classmethod
    @contextlib.contextmanager
    def once(cls, logdir: str | Path, config: dict | None = None, say=log.status):
        """The same writer for a job without a loop (an analysis written in one go): earlier events set aside,
        the configuration logged, ``tf.summary`` calls inside the block go to ``logdir``."""
        board = cls(logdir, say=say)
        board.logdir.mkdir(parents=True, exist_ok=True)
        board._set_aside_earlier_events()
        board._writer = tf.summary.create_file_writer(str(board.logdir))
        try:
            if config:
                board._log_config(config)
            with board._writer.as_default():
                yield board
        finally:
            board._writer.close()

    def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        """Scalars from another callback (e.g. a quality curve), through this one writer."""
        if self._writer is None:
            return
        with self._writer.as_default():
            for tag, value in scalars.items():
                tf.summary.scalar(tag, float(value), step=step)
        self._writer.flush()

    def on_run_end(self, loop, summary):
        if self._writer is not None:
            self._writer.close()
