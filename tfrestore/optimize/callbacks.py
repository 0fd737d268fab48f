"""What happens around an image optimisation at its log points: the saved iterate, the quality curve, and the
usual set of callbacks.

Callbacks are :class:`tfrestore.core.loop.Callback`\ s: every long job (image optimisation, training, score
matching) runs through the one :class:`~tfrestore.core.loop.Loop`, whose ``Progress``, ``TensorBoard`` and
``Checkpoint`` serve all of them (re-exported here). Hooks get the loop (``loop.stepper`` is the
:class:`~tfrestore.optimize.engine.Optimization`) and, at the end, the run's :class:`~tfrestore.optimize.engine.Result`, to which
they may add: ``setup(loop)``, ``on_run_begin(loop)`` (restoring callbacks first), ``on_log_point(loop, point)``,
``on_run_end(loop, result)``; ``state()`` holds what a checkpoint must keep; ``log_steps()`` asks for extra log
points.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrestore.core.loop import Callback, Checkpoint, LogPoint, Progress, TensorBoard

__all__ = ["Callback", "Checkpoint", "LogPoint", "Progress", "TensorBoard", "SavedIterate", "Quality", "standard"]


class SavedIterate(Callback):
    """M&V 2015's "saved iterate": the reconstruction at the last log point with (t − 1) % every == 0 (the
    released PNGs show t = 376 of 400), or the final iterate when the run has no such point. Checkpointed, so a
    resumed run keeps it."""

    def __init__(self, every: int):
        self.every = int(every)
        self.images: tf.Variable | None = None
        self.step = tf.Variable(0, dtype=tf.int32, name="saved_step")

    def setup(self, loop):
        if self.images is None:
            self.images = tf.Variable(tf.zeros_like(loop.stepper.images()), name="saved_iterate")

    def state(self):
        return {"saved": self.images, "saved_step": self.step} if self.images is not None else {}

    def on_log_point(self, loop, point):
        if (point.step - 1) % self.every == 0:
            self.images.assign(loop.stepper.images())
            self.step.assign(point.step)

    def on_run_end(self, loop, result):
        if int(self.step.numpy()) == 0:     # no such log point (L-BFGS logs at its restarts): the final iterate
            self.images.assign(loop.stepper.images())
            self.step.assign(result.steps)
        result.saved_iterate = self.images.numpy()
        result.saved_step = int(self.step.numpy())


class Quality(Callback):
    """PSNR and SSIM against a clean reference at every log point: of the current images and of any ``extra``
    images (e.g. the deep image prior's moving average), so the early-stopping curve is visible. Logged to
    TensorBoard (``quality/psnr_output``, …, through the run's :class:`TensorBoard` callback, the one writer), kept
    in ``curve`` and written to ``path`` (JSON; a resumed run reads the
    points before its start back from there).

    Args:
        reference: [N, H, W, C] the clean images, in the units of ``to_unit(run.images())``.
        to_unit: image space → the units PSNR is measured in (default identity), ``data_range`` their range.
        extra: ``{name: fn(run) -> [N, H, W, C] image space}``, ``run`` the optimisation (``loop.stepper``).
        ssim_every: SSIM (slower) at every k-th log point and the last.
    """

    def __init__(self, reference: np.ndarray, *, to_unit=lambda x: x, data_range: float = 1.0,
                 extra: dict | None = None, path: str | Path | None = None, ssim_every: int = 1):
        from tfrestore.measure import metrics
        self._metrics = metrics
        self.reference, self.to_unit, self.data_range = np.asarray(reference, np.float64), to_unit, data_range
        self.extra, self.ssim_every = dict(extra or {}), max(1, int(ssim_every))
        self.path = None if path is None else Path(path)
        self.curve: list[dict] = []
        self._tensorboard, self._count = None, 0

    def on_run_begin(self, loop):
        run = loop.stepper
        if self.path is not None and self.path.exists() and run.steps_done > 0:
            self.curve = [p for p in json.loads(self.path.read_text()) if p["step"] <= run.steps_done]
        self._tensorboard = next((c for c in loop.callbacks if isinstance(c, TensorBoard)), None)

    def on_log_point(self, loop, point):
        run, rec = loop.stepper, {"step": point.step}
        sources = {"output": lambda r: r.images(), **self.extra}
        with_ssim = point.last or self._count % self.ssim_every == 0
        for name, fn in sources.items():
            est = np.clip(self.to_unit(np.asarray(fn(run), np.float64)), 0, self.data_range)
            rec[f"psnr_{name}"] = float(np.mean(self._metrics.psnr(self.reference, est, self.data_range)))
            if with_ssim:
                rec[f"ssim_{name}"] = float(np.mean(self._metrics.ssim(self.reference, est, self.data_range)))
        self.curve.append(rec)
        self._count += 1
        if self._tensorboard is not None:
            self._tensorboard.write_scalars(point.step, {f"quality/{k}": v for k, v in rec.items() if k != "step"})
        if self.path is not None:
            from tfrestore.core import files
            files.write_json(self.path, self.curve)

    def on_run_end(self, loop, result):
        result.quality = self.curve


def standard(out: str | Path | None = None, logdir: str | Path | None = None, resume: bool = False,
             progress: bool = True, checkpoint_every: int = 100, saved_every: int | None = None) -> list[Callback]:
    """The usual set: progress, TensorBoard in ``logdir``, the saved iterate, checkpoints in ``out/ckpt``."""
    cbs: list[Callback] = []
    if saved_every:
        cbs.append(SavedIterate(saved_every))
    if out is not None:
        cbs.append(Checkpoint(Path(out) / "ckpt", every=checkpoint_every, resume=resume))
    if logdir is not None:
        cbs.append(TensorBoard(logdir))
    if progress:
        cbs.append(Progress())
    return cbs
