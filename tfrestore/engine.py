"""The optimisation engine every paper uses.

    run = Optimization(objective, canvas, optimizers.Momentum(0.9), schedule, to_input=...)
    result = run.run(out="runs/x", logdir="runs/x/tb")

Blocks of steps run as one compiled ``tf.function`` (a ``tf.while_loop``; ``jit_compile=True`` for XLA), so Python
only wakes up at log points: steps t with (t − 1) % log_every == 0 and the last step (M&V 2015's "saved iterate"
convention: t = 1, 26, 51, …). At each log point the engine evaluates the objective on the centre window, writes
TensorBoard scalars (every term per problem, the total, the learning rate) and image snapshots, updates the
progress bar and, every ``checkpoint_every`` steps, a checkpoint that ``run(resume=True)`` continues from. Jitter
offsets come from a stateless RNG keyed by (seed, step), so a resumed run ends exactly where the uninterrupted one
would.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from . import optim as optimizers
from .objectives import Context, Objective
from .param import Canvas


@dataclasses.dataclass
class Result:
    images: np.ndarray                 # [N, H, W, 3] final reconstructions, image space
    saved_iterate: np.ndarray          # [N, H, W, 3] the last iterate at a log point with (t-1) % log_every == 0
    saved_step: int
    values: dict[str, np.ndarray]      # term name -> [N] at the end (centre window)
    loss: np.ndarray                   # [N]
    history: list[dict]                # per log point: step, loss (mean), lr
    steps: int
    seconds: float                     # optimisation wall time of this invocation
    steps_run: int                     # steps run in this invocation (fewer after a resume)

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(self.steps_run, 1)


def stretch(images: np.ndarray) -> np.ndarray:
    """M&V display (VLFeat ``vl_imsc``): joint min–max over all pixels and channels of each image, to [0, 1]."""
    x = np.asarray(images, np.float64)
    axes = tuple(range(1, x.ndim)) if x.ndim == 4 else None
    lo = x.min(axis=axes, keepdims=True)
    hi = (x - lo).max(axis=axes, keepdims=True)
    return (x - lo) / np.maximum(hi, 1e-12)


class Optimization:
    """N independent image optimisations in one graph.

    Args:
        objective: loss terms (see :mod:`tfrestore.objectives`).
        canvas: the parameterisation (image variable, σ scale, per-problem jitter).
        optimizer: an :mod:`tfrestore.optim` optimiser.
        schedule: stages of (steps, lr, jitter).
        to_input: image space → network input (``lambda x: nets.to_input(net, x)``).
        project: constraint applied in image space after each update, e.g. ``lambda x: project_colour_norm(x, 160)``.
        mean_rgb: added back for display (image space is mean-subtracted).
        labels: one name per problem for the logs (e.g. the layer).
    """

    def __init__(self, objective: Objective, canvas: Canvas, optimizer: optimizers.Optimizer,
                 schedule: optimizers.Schedule, to_input: Callable = lambda x: x,
                 project: Callable | None = None, mean_rgb=(0.0, 0.0, 0.0), labels: Sequence[str] | None = None,
                 seed: int = 0, log_every: int = 25, checkpoint_every: int = 100, jit_compile: bool = False,
                 config: dict | None = None):
        self.objective, self.canvas, self.optimizer, self.schedule = objective, canvas, optimizer, schedule
        self.to_input, self.project = to_input, project
        self.mean_rgb = np.asarray(mean_rgb, np.float32)
        self.labels = list(labels) if labels else [f"p{i}" for i in range(canvas.n)]
        self.seed, self.log_every, self.checkpoint_every = int(seed), int(log_every), int(checkpoint_every)
        self.jit_compile, self.config = jit_compile, dict(config or {})
        # schedule: one for all problems, or one per problem (same length and jitter pattern) -> lr, reset [T, N]
        schedules = list(schedule) if isinstance(schedule, (list, tuple)) else [schedule] * canvas.n
        if len(schedules) != canvas.n or len({s.total for s in schedules}) != 1:
            raise ValueError("per-problem schedules need one schedule per problem, all of the same length")
        self.schedule = schedules[0]
        arrays = [s.arrays() for s in schedules]
        self._lr = tf.constant(np.stack([a[0] for a in arrays], axis=1))
        self._reset = tf.constant(np.stack([a[1] for a in arrays], axis=1))
        self._jit = tf.constant(arrays[0][2])
        self._schedules = schedules
        self.step = tf.Variable(0, dtype=tf.int32, name="step")
        self.slots = {k: tf.Variable(v, name=k) for k, v in optimizer.slots(canvas.shape).items()}
        h, w = canvas.h, canvas.w
        self.saved = tf.Variable(np.zeros((canvas.n, h, w, 3), np.float32), name="saved_iterate")
        self.saved_step = tf.Variable(0, dtype=tf.int32, name="saved_step")
        self._block = tf.function(self._steps, jit_compile=jit_compile)
        self._evaluate = tf.function(self._eval)

    # ---- compiled pieces -------------------------------------------------------------------------------------
    def _loss(self, t, jitter_on, full=None):
        """Objective at step t; ``full`` is the canvas in image space (default: the current variable)."""
        full = self.canvas.image() if full is None else full
        window = self.canvas.window(full, self.canvas.offsets(jitter_on, tf.stack([self.seed, t])))
        ctx = Context(window, full, self.canvas.mask(jitter_on), self.to_input)
        return self.objective(ctx)

    def _steps(self, start, stop):
        for t in tf.range(start, stop):
            with tf.GradientTape() as tape:
                loss, _ = self._loss(t, self._jit[t])
                total = tf.reduce_sum(loss)
            g = tape.gradient(total, self.canvas.var)
            slots = {k: v.read_value() for k, v in self.slots.items()}
            lr, reset = self._lr[t][:, None, None, None], self._reset[t][:, None, None, None]
            x, new = self.optimizer.update(self.canvas.var.read_value(), g, slots, lr, reset, t)
            if self.project is not None:
                x = self.project(x * self.canvas.scale) / self.canvas.scale
            self.canvas.var.assign(x)
            for k, v in new.items():
                self.slots[k].assign(v)
            self.step.assign(t + 1)

    def _eval(self):
        loss, values = self._loss(tf.constant(0), tf.constant(False))
        return loss, values

    def evaluate(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(loss [N], {term: value [N]}) at the current iterate, centre window."""
        loss, values = self._evaluate()
        return np.asarray(loss), {k: np.asarray(v) for k, v in values.items()}

    # ---- driver -----------------------------------------------------------------------------------------------
    def _log_points(self) -> list[int]:
        total = self.schedule.total
        pts = list(range(1, total + 1, self.log_every))
        return pts if pts[-1] == total else pts + [total]

    def _checkpoint(self):
        return tf.train.Checkpoint(canvas=self.canvas.var, step=self.step, saved=self.saved,
                                   saved_step=self.saved_step, **self.slots)

    def display(self, images: np.ndarray) -> np.ndarray:
        """Image space → RGB 0–255 (mean added back, not clipped)."""
        return np.asarray(images) + self.mean_rgb

    def run(self, out: str | Path | None = None, logdir: str | Path | None = None, resume: bool = False,
            progress: bool = True, stop_after: int | None = None) -> Result:
        """Optimise; with ``out`` checkpoint there (``out/ckpt``); with ``resume`` continue from it.

        ``stop_after`` ends the run (with a checkpoint) at the first log point at or after that step, as a
        time-limited job or an interruption would; ``resume=True`` later finishes it.
        """
        manager = None
        if out is not None:
            manager = tf.train.CheckpointManager(self._checkpoint(), str(Path(out) / "ckpt"), max_to_keep=1)
            if resume and manager.latest_checkpoint:
                self._checkpoint().restore(manager.latest_checkpoint).assert_existing_objects_matched()
                print(f"resumed from {manager.latest_checkpoint} at step {int(self.step.numpy())}")
        writer = tf.summary.create_file_writer(str(logdir)) if logdir else None
        if writer is not None and int(self.step.numpy()) == 0:
            self._log_config(writer)
        if isinstance(self.optimizer, optimizers.LBFGS):
            return self._run_lbfgs(writer, manager, progress)
        total, start_step = self.schedule.total, int(self.step.numpy())
        history: list[dict] = []
        bar = _progress(total, start_step, progress)
        t0, last_ckpt, last = time.perf_counter(), start_step, None
        for point in self._log_points():
            if point <= start_step:
                continue
            self._block(tf.constant(int(self.step.numpy())), tf.constant(point))
            if (point - 1) % self.log_every == 0:
                self.saved.assign(self.canvas.window(self.canvas.image(), self.canvas.offsets(False, [0, 0])))
                self.saved_step.assign(point)
            loss, values = last = self._evaluate()
            rec = {"step": point, "loss": float(np.mean(loss)), "lr": float(np.mean(self._lr[point - 1]))}
            history.append(rec)
            if writer is not None:
                self._log_scalars(writer, point, loss, values, rec["lr"])
                if point == total or (point - 1) % (4 * self.log_every) == 0:
                    self._log_images(writer, point)
            bar(point, rec["loss"], time.perf_counter() - t0)
            stopping = stop_after is not None and point >= stop_after
            if manager is not None and (point - last_ckpt >= self.checkpoint_every or point == total or stopping):
                manager.save(checkpoint_number=point)
                last_ckpt = point
            if stopping:
                break
        seconds = time.perf_counter() - t0
        bar(None, None, seconds)
        return self._result(history, seconds, int(self.step.numpy()) - start_step, last)

    def _result(self, history, seconds, steps_run, last=None) -> Result:
        """``last``: the (loss, values) already evaluated at the current iterate, if any."""
        loss, values = last if last is not None else self._evaluate()
        return Result(images=self.canvas.result(), saved_iterate=self.saved.numpy(),
                      saved_step=int(self.saved_step.numpy()),
                      values={k: np.asarray(v) for k, v in values.items()}, loss=np.asarray(loss),
                      history=history, steps=int(self.step.numpy()), seconds=seconds, steps_run=steps_run)

    # ---- L-BFGS -----------------------------------------------------------------------------------------------
    def _run_lbfgs(self, writer, manager, progress) -> Result:
        import tensorflow_probability as tfp

        opt: optimizers.LBFGS = self.optimizer
        n, shape = self.canvas.n, self.canvas.shape

        @tf.function
        def value_and_grad(flat):
            with tf.GradientTape() as tape:
                tape.watch(flat)
                loss, _ = self._loss(tf.constant(0), tf.constant(False), tf.reshape(flat, shape) * self.canvas.scale)
            return loss, tape.gradient(loss, flat)

        total, done = self.schedule.total, int(self.step.numpy())
        history, bar, t0, last = [], _progress(total, done, progress), time.perf_counter(), None
        while done < total:
            k = min(opt.restart_every, total - done)
            res = tfp.optimizer.lbfgs_minimize(
                value_and_grad, tf.reshape(self.canvas.var, [n, -1]), max_iterations=k,
                num_correction_pairs=opt.num_correction_pairs, tolerance=opt.tolerance,
                x_tolerance=0.0, f_relative_tolerance=0.0)
            x = tf.reshape(res.position, shape)
            if self.project is not None:
                x = self.project(x * self.canvas.scale) / self.canvas.scale
            self.canvas.var.assign(x)
            done += k
            self.step.assign(done)
            loss, values = last = self._evaluate()
            rec = {"step": done, "loss": float(np.mean(loss)), "lr": 0.0}
            history.append(rec)
            if writer is not None:
                self._log_scalars(writer, done, loss, values, 0.0)
            bar(done, rec["loss"], time.perf_counter() - t0)
            if manager is not None:
                manager.save(checkpoint_number=done)
        self.saved.assign(self.canvas.result())
        self.saved_step.assign(done)
        seconds = time.perf_counter() - t0
        bar(None, None, seconds)
        return self._result(history, seconds, total, last)

    # ---- TensorBoard ------------------------------------------------------------------------------------------
    def _log_config(self, writer):
        from tensorboard.plugins.hparams import api as hp
        flat = {k: (v if isinstance(v, (int, float, str, bool)) else json.dumps(v, default=str))
                for k, v in {**self.config, "optimizer": json.dumps(self.optimizer.config()),
                             "schedule": "; ".join(sorted({repr(s) for s in self._schedules})), "objective": repr(self.objective)}.items()}
        with writer.as_default():
            hp.hparams(flat)
            tf.summary.text("config", "```\n" + json.dumps(flat, indent=1, default=str) + "\n```", step=0)
        writer.flush()

    def _log_scalars(self, writer, step, loss, values, lr):
        with writer.as_default():
            tf.summary.scalar("loss/mean", float(np.mean(loss)), step=step)
            tf.summary.scalar("lr", lr, step=step)
            for i, label in enumerate(self.labels):
                tf.summary.scalar(f"{label}/loss", float(loss[i]), step=step)
                for name, v in values.items():
                    tf.summary.scalar(f"{label}/{name}", float(v[i]), step=step)
        writer.flush()

    def _log_images(self, writer, step):
        imgs = stretch(self.display(self.canvas.result())).astype(np.float32)
        with writer.as_default():
            tf.summary.image("reconstructions", imgs, step=step, max_outputs=len(imgs))
        writer.flush()


def _progress(total: int, start: int, enabled: bool):
    """A progress line per log point: step, loss, rate; the tqdm bar when on a terminal."""
    import sys
    use_tqdm = enabled and sys.stderr.isatty()
    bar = None
    if use_tqdm:
        from tqdm import tqdm
        bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)
    state = {"last": start}

    def update(step, loss, seconds):
        if not enabled:
            return
        if step is None:
            if bar is not None:
                bar.close()
            done = state["last"] - start
            print(f"done: {done} steps in {seconds:.1f}s ({done / max(seconds, 1e-9):.2f} steps/s)", flush=True)
            return
        if bar is not None:
            bar.update(step - state["last"])
            bar.set_postfix(loss=f"{loss:.4g}")
        else:
            rate = (step - start) / max(seconds, 1e-9)
            print(f"step {step:>6}/{total}  loss {loss:.5g}  {rate:.2f} steps/s", flush=True)
        state["last"] = step

    return update
