"""What happens around the optimisation loop: progress, TensorBoard, the saved iterate, checkpoints.

The engine only loops; at every log point it hands a :class:`LogPoint` to each callback. A callback may also
restore or hold state that belongs in a checkpoint (``state()``), and may add to the result at the end.

Hooks, in the order the engine calls them: ``setup(run)`` (create state), ``on_run_begin(run)`` (callbacks with
``restores = True`` first: a checkpoint is restored there, so the others see the resumed step), ``on_log_point(run,
point)`` at each log point, ``on_run_end(run, result)``.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from . import report


@dataclasses.dataclass
class LogPoint:
    step: int                          # steps done so far
    total: int                         # steps in the whole schedule
    loss: np.ndarray                   # [N] at the current iterate (centre window, no jitter)
    values: dict[str, np.ndarray]      # term name -> [N] unweighted
    lr: float                          # mean learning rate of the last step
    seconds: float                     # wall time since this invocation's run() began
    start_step: int                    # the step this invocation started from (> 0 after a resume)
    last: bool                         # the run ends after this point (schedule done, or stopping)

    @property
    def mean_loss(self) -> float:
        return float(np.mean(self.loss))


class Callback:
    restores = False      # True: on_run_begin may change the run's state (runs before the other callbacks')

    def setup(self, run) -> None:
        pass

    def on_run_begin(self, run) -> None:
        pass

    def on_log_point(self, run, point: LogPoint) -> None:
        pass

    def on_run_end(self, run, result) -> None:
        pass

    def state(self) -> dict:
        """Variables this callback needs restored on resume (they go into the engine's checkpoint)."""
        return {}


class Progress(Callback):
    """A tqdm bar on a terminal, else one line per log point: step, loss, rate; a closing summary line."""

    def __init__(self):
        self._bar, self._last, self._start = None, 0, 0

    def on_run_begin(self, run):
        self._start = self._last = run.steps_done
        if sys.stderr.isatty():
            from tqdm import tqdm
            self._bar = tqdm(total=run.total_steps, initial=self._start, unit="step", dynamic_ncols=True)

    def on_log_point(self, run, point):
        if self._bar is not None:
            self._bar.update(point.step - self._last)
            self._bar.set_postfix(loss=f"{point.mean_loss:.4g}")
        else:
            rate = (point.step - self._start) / max(point.seconds, 1e-9)
            print(f"step {point.step:>6}/{point.total}  loss {point.mean_loss:.5g}  {rate:.2f} steps/s", flush=True)
        self._last = point.step

    def on_run_end(self, run, result):
        if self._bar is not None:
            self._bar.close()
        print(f"done: {result.steps_run} steps in {result.seconds:.1f}s "
              f"({result.steps_run / max(result.seconds, 1e-9):.2f} steps/s)", flush=True)


class TensorBoard(Callback):
    """Scalars (every term per problem, the total, the learning rate) at every log point, image snapshots every
    ``images_every`` log points and at the end, and the run's configuration (text + hparams) at step 0."""

    def __init__(self, logdir: str | Path, images_every: int = 4):
        self.logdir, self.images_every = Path(logdir), images_every
        self._writer, self._count, self._applies = None, 0, {}

    def on_run_begin(self, run):
        if run.steps_done == 0:
            self._set_aside_earlier_events()
        self._writer = tf.summary.create_file_writer(str(self.logdir))
        self._applies = run.objective.applicability(len(run.labels))     # fixed for the run
        if run.steps_done == 0:
            self._log_config(run)

    def _set_aside_earlier_events(self):
        """A run starting from step 0 in a folder that holds an earlier run's events (one stopped before its first
        checkpoint, or started afresh) would interleave two curves; the earlier events move to ``previous-<k>/``,
        which TensorBoard shows as a run of its own."""
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
        print(f"TensorBoard: earlier events in {self.logdir} moved to {keep}", flush=True)

    def _log_config(self, run):
        from tensorboard.plugins.hparams import api as hp
        flat = {k: (v if isinstance(v, (int, float, str, bool)) else json.dumps(v, default=str))
                for k, v in run.describe().items()}
        with self._writer.as_default():
            hp.hparams(flat)
            tf.summary.text("config", "```\n" + json.dumps(flat, indent=1, default=str) + "\n```", step=0)
        self._writer.flush()

    def on_log_point(self, run, point):
        with self._writer.as_default():
            tf.summary.scalar("loss/mean", point.mean_loss, step=point.step)
            tf.summary.scalar("lr", point.lr, step=point.step)
            for i, label in enumerate(run.labels):
                tf.summary.scalar(f"{label}/loss", float(point.loss[i]), step=point.step)
                for name, v in point.values.items():
                    if self._applies[name][i]:              # skip terms that are a constant 0 for this problem
                        tf.summary.scalar(f"{label}/{name}", float(v[i]), step=point.step)
            if point.step == point.total or self._count % self.images_every == 0:
                imgs = report.stretch(run.display(run.images())).astype(np.float32)
                if imgs.shape[-1] in (1, 3, 4):
                    tf.summary.image("reconstructions", imgs, step=point.step, max_outputs=len(imgs))
        self._count += 1
        self._writer.flush()

    def on_run_end(self, run, result):
        if self._writer is not None:
            self._writer.close()


class SavedIterate(Callback):
    """M&V 2015's "saved iterate": the reconstruction at the last log point with (t − 1) % every == 0 (the
    released PNGs show t = 376 of 400), or the final iterate when the run has no such point. Checkpointed, so a
    resumed run keeps it."""

    def __init__(self, every: int):
        self.every = int(every)
        self.images: tf.Variable | None = None
        self.step = tf.Variable(0, dtype=tf.int32, name="saved_step")

    def setup(self, run):
        if self.images is None:
            self.images = tf.Variable(tf.zeros_like(run.images()), name="saved_iterate")

    def state(self):
        return {"saved": self.images, "saved_step": self.step} if self.images is not None else {}

    def on_log_point(self, run, point):
        if (point.step - 1) % self.every == 0:
            self.images.assign(run.images())
            self.step.assign(point.step)

    def on_run_end(self, run, result):
        if int(self.step.numpy()) == 0:     # no such log point (L-BFGS logs at its restarts): the final iterate
            self.images.assign(run.images())
            self.step.assign(result.steps)
        result.saved_iterate = self.images.numpy()
        result.saved_step = int(self.step.numpy())


class Checkpoint(Callback):
    """Checkpoints in ``directory`` at the first log point after every ``every`` steps or ``every_seconds`` of wall
    time, and at the end (also when the run is stopped by a signal); with ``resume`` the latest one is restored
    before the run begins, and the run says what it found. Holds the engine's variables, optimiser slots, step
    counter, elapsed time and every callback's state."""

    restores = True

    def __init__(self, directory: str | Path, every: int = 100, resume: bool = False, every_seconds: float = 180.0):
        self.directory, self.every, self.resume = Path(directory), int(every), resume
        self.every_seconds = float(every_seconds)
        self._manager, self._last, self._last_time = None, 0, 0.0

    def on_run_begin(self, run):
        ckpt = tf.train.Checkpoint(**run.state())
        self._manager = tf.train.CheckpointManager(ckpt, str(self.directory), max_to_keep=1)
        if self.resume and self._manager.latest_checkpoint:
            ckpt.restore(self._manager.latest_checkpoint).assert_existing_objects_matched()
            print(f"resumed from {self._manager.latest_checkpoint} at step {run.steps_done} of {run.total_steps}",
                  flush=True)
        elif self.resume:
            print(f"resume: no checkpoint in {self.directory}; starting from step 0", flush=True)
        self._last, self._last_time = run.steps_done, time.perf_counter()

    def on_log_point(self, run, point):
        due = point.step - self._last >= self.every or time.perf_counter() - self._last_time >= self.every_seconds
        if due or point.last:
            self._manager.save(checkpoint_number=point.step)
            self._last, self._last_time = point.step, time.perf_counter()


class Quality(Callback):
    """PSNR and SSIM against a clean reference at every log point: of the current images and of any ``extra``
    images (e.g. the deep image prior's moving average), so the early-stopping curve is visible. Logged to
    TensorBoard (``quality/psnr``, …), kept in ``curve`` and written to ``path`` (JSON; a resumed run reads the
    points before its start back from there).

    Args:
        reference: [N, H, W, C] the clean images, in the units of ``to_unit(run.images())``.
        to_unit: image space → the units PSNR is measured in (default identity), ``data_range`` their range.
        extra: ``{name: fn(run) -> [N, H, W, C] image space}``.
        ssim_every: SSIM (slower) at every k-th log point and the last.
    """

    def __init__(self, reference: np.ndarray, *, to_unit=lambda x: x, data_range: float = 1.0,
                 extra: dict | None = None, logdir: str | Path | None = None, path: str | Path | None = None,
                 ssim_every: int = 1):
        from . import metrics
        self._metrics = metrics
        self.reference, self.to_unit, self.data_range = np.asarray(reference, np.float64), to_unit, data_range
        self.extra, self.ssim_every = dict(extra or {}), max(1, int(ssim_every))
        self.logdir, self.path = logdir, None if path is None else Path(path)
        self.curve: list[dict] = []
        self._writer, self._count = None, 0

    def on_run_begin(self, run):
        if self.path is not None and self.path.exists() and run.steps_done > 0:
            self.curve = [p for p in json.loads(self.path.read_text()) if p["step"] <= run.steps_done]
        if self.logdir is not None:
            self._writer = tf.summary.create_file_writer(str(self.logdir))

    def on_log_point(self, run, point):
        rec = {"step": point.step}
        sources = {"output": lambda r: r.images(), **self.extra}
        with_ssim = point.last or self._count % self.ssim_every == 0
        for name, fn in sources.items():
            est = np.clip(self.to_unit(np.asarray(fn(run), np.float64)), 0, self.data_range)
            rec[f"psnr_{name}"] = float(np.mean(self._metrics.psnr(self.reference, est, self.data_range)))
            if with_ssim:
                rec[f"ssim_{name}"] = float(np.mean(self._metrics.ssim(self.reference, est, self.data_range)))
        self.curve.append(rec)
        self._count += 1
        if self._writer is not None:
            with self._writer.as_default():
                for k, v in rec.items():
                    if k != "step":
                        tf.summary.scalar(f"quality/{k}", v, step=point.step)
            self._writer.flush()
        if self.path is not None:
            from . import files
            files.write_json(self.path, self.curve)

    def on_run_end(self, run, result):
        if self._writer is not None:
            self._writer.close()
        result.quality = self.curve


def standard(out: str | Path | None = None, logdir: str | Path | None = None, resume: bool = False,
             progress: bool = True, checkpoint_every: int = 100, saved_every: int | None = None) -> list[Callback]:
    """The usual set: progress, TensorBoard in ``logdir``, the saved iterate, checkpoints in ``out/ckpt``."""
    cbs: list[Callback] = []
    if saved_every:
        cbs.append(SavedIterate(saved_every))
    if out is not None:
        cbs.append(Checkpoint(Path(out) / "ckpt", checkpoint_every, resume))
    if logdir is not None:
        cbs.append(TensorBoard(logdir))
    if progress:
        cbs.append(Progress())
    return cbs
