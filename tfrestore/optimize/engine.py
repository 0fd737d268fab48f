"""The optimisation engine every paper uses: it only loops.

    run = Optimization(objective, Pixels(init), optim.Momentum(0.9), schedule, to_input=...)
    result = run.run(out="runs/x", logdir="runs/x/tb")        # or run.run(callbacks=[...]); or run.step(10)

Blocks of steps run as one compiled ``tf.function`` (a ``tf.while_loop``; ``jit_compile=True`` for XLA), so Python
only wakes up at log points: steps t with (t − 1) % log_every == 0 and the last step (M&V 2015's "saved iterate"
convention: t = 1, 26, 51, …). At each log point the engine evaluates the objective (centre window, no jitter) and
hands a :class:`~tfrestore.core.loop.LogPoint` to its callbacks (progress, TensorBoard, saved iterate,
checkpoints: :mod:`tfrestore.optimize.callbacks`). A log point is one compiled call that returns the objective
and the image together, with every model state assignment held back (``keras.StatelessScope``): a generator's
batch-norm moving statistics move only in optimisation steps, and its image is read without an eager pass. The optimisation is a *stepper* of :class:`tfrestore.core.loop.Loop`, the
one loop every long job runs through (which owns log points, checkpoints, signals and the run's clock). L-BFGS
runs through the same loop: a block is one L-BFGS call between restarts.

What is optimised is a parameterisation's ``variables`` (:mod:`tfrestore.optimize.param`: pixels, or a generator network's
weights); the optimiser keeps its slots per variable. Jitter and projections are transforms
(:mod:`tfrestore.optimize.transforms`). Per-step randomness (jitter offsets, generator input noise) comes from a stateless
RNG keyed by (seed, step), so a resumed run ends exactly where the uninterrupted one would.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from . import callbacks as callbacks_lib
from . import optim as optimizers
from tfrestore.core.loop import Loop, Measurement, Summary
from .objectives import Context, Objective
from .param import Parameterization
from .transforms import Jitter

_NOISE_STREAM = 7919     # offsets the generator-noise seed from the jitter seed


@dataclasses.dataclass
class Problem:
    """Everything one optimisation needs, as data: a reproduction builds one of these and calls ``optimise``.

    ``layers``, ``x0`` and ``masks`` are what the report compares the result against (the target layer of each
    problem, its original in image space, an optional feature mask); ``settings`` are the paper's per-problem
    constants, recorded with the outputs.
    """
    objective: Objective
    param: Parameterization
    optimizer: optimizers.Optimizer
    schedule: optimizers.Schedule | Sequence[optimizers.Schedule]
    labels: list[str]
    jitter: Jitter | None = None
    project: Callable[[tf.Tensor], tf.Tensor] | None = None
    layers: list[str] = dataclasses.field(default_factory=list)
    x0: np.ndarray | None = None
    masks: list | None = None
    settings: dict = dataclasses.field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        s = self.schedule
        return (s[0] if isinstance(s, (list, tuple)) else s).total


@dataclasses.dataclass
class Result:
    images: np.ndarray                 # [N, H, W, C] final reconstructions, image space
    values: dict[str, np.ndarray]      # term name -> [N] at the end (centre window)
    loss: np.ndarray                   # [N]
    history: list[dict]                # per log point over every invocation: step, loss (mean), lr
    steps: int                         # steps done in total
    seconds: float                     # optimisation wall time of this invocation
    steps_run: int                     # steps run in this invocation (fewer after a resume)
    saved_iterate: np.ndarray | None = None   # set by callbacks.SavedIterate
    saved_step: int = 0
    seconds_total: float = 0.0         # optimisation wall time over every invocation (resumes included)
    interrupted: bool = False          # stopped by SIGINT / SIGTERM (a checkpoint was written first)
    quality: list = dataclasses.field(default_factory=list)   # set by callbacks.Quality: PSNR / SSIM per log point

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(self.steps_run, 1)

    @classmethod
    def concatenate(cls, parts: Sequence["Result"]) -> "Result":
        """The results of batches optimised one after another (same schedule) as one result, problems in order.
        A term missing from a part is 0 for its problems, as a restricted term is in one batch."""
        n = [len(r.loss) for r in parts]
        keys = list(dict.fromkeys(k for r in parts for k in r.values))
        values = {k: np.concatenate([np.asarray(r.values.get(k, np.zeros(m, np.float32))) for r, m in zip(parts, n)])
                  for k in keys}
        history = [{**h0, "loss": float(np.average([r.history[i]["loss"] for r in parts], weights=n))}
                   for i, h0 in enumerate(parts[0].history) if all(len(r.history) > i for r in parts)]
        saved = [r.saved_iterate for r in parts]
        return cls(images=np.concatenate([r.images for r in parts]), values=values,
                   loss=np.concatenate([r.loss for r in parts]), history=history, steps=parts[0].steps,
                   seconds=sum(r.seconds for r in parts), steps_run=parts[0].steps_run,
                   saved_iterate=None if any(x is None for x in saved) else np.concatenate(saved),
                   saved_step=parts[0].saved_step, seconds_total=sum(r.seconds_total for r in parts),
                   interrupted=any(r.interrupted for r in parts), quality=[q for r in parts for q in r.quality])


class Optimization:
    """N independent optimisations in one graph.

    Args:
        objective: loss terms (:mod:`tfrestore.optimize.objectives`), a loss per problem.
        param: the parameterisation (:class:`~tfrestore.optimize.param.Pixels`, :class:`~tfrestore.optimize.param.Generator`).
        optimizer: an :mod:`tfrestore.optimize.optim` optimiser.
        schedule: stages of (steps, lr, jitter); one for all problems or one per problem (pixels only).
        jitter: per-problem jitter windows (:class:`~tfrestore.optimize.transforms.Jitter`), or None.
        project: image-space constraint applied after each update, e.g.
            ``lambda x: transforms.project_colour_norm(x, 160)`` (pixels only).
        to_input: image space → network input (``lambda x: nets.to_input(net, x)``).
        display_offset: added to images for display (image space is mean-subtracted: the mean colour).
        labels: one name per problem for the logs (e.g. the layer).
        seed: keys the stateless per-step randomness.
        log_every: log points at t = 1, 1 + log_every, …, and the last step.
        jit_compile: compile the step block with XLA.
        config: recorded in TensorBoard (text and hparams).
    """

    def __init__(self, objective: Objective, param: Parameterization, optimizer: optimizers.Optimizer,
                 schedule: optimizers.Schedule | Sequence[optimizers.Schedule], *, jitter: Jitter | None = None,
                 project: Callable | None = None, to_input: Callable = lambda x: x, display_offset=0.0,
                 labels: Sequence[str] | None = None, seed: int = 0, log_every: int = 25, jit_compile: bool = False,
                 config: dict | None = None):
        self.objective, self.param, self.optimizer = objective, param, optimizer
        self.jitter, self.project, self.to_input = jitter, project, to_input
        self.display_offset = np.asarray(display_offset, np.float32)
        n = param.n
        self.labels = list(labels) if labels else [f"p{i}" for i in range(n)]
        self.seed, self.log_every, self.jit_compile = int(seed), int(log_every), jit_compile
        self.config = dict(config or {})
        if jitter is not None:
            jitter.check(param.image().shape)
        if project is not None and not hasattr(param, "project_update"):
            raise ValueError(f"a projection acts on pixels; {type(param).__name__} cannot be projected "
                             "(use a penalty term instead)")
        schedules = list(schedule) if isinstance(schedule, (list, tuple)) else [schedule] * n
        if len(schedules) != n or len({s.total for s in schedules}) != 1:
            raise ValueError("per-problem schedules need one schedule per problem, all of the same length")
        arrays = [s.arrays() for s in schedules]
        lr = np.stack([a[0] for a in arrays], axis=1)
        if not param.per_problem and not (lr == lr[:, :1]).all():
            raise ValueError(f"{type(param).__name__} shares its variables between problems, so every problem "
                             "must have the same schedule")
        self.schedule, self._schedules = schedules[0], schedules
        self._lr = tf.constant(lr)
        self._reset = tf.constant(np.stack([a[1] for a in arrays], axis=1))
        self._jit = tf.constant(arrays[0][2])
        self.iteration = tf.Variable(0, dtype=tf.int32, name="step")
        self.slots = [{k: tf.Variable(s, name=f"{k}{i}") for k, s in optimizer.slots(tuple(v.shape)).items()}
                      for i, v in enumerate(param.variables)]
        if isinstance(optimizer, optimizers.LBFGS):
            self._value_and_grad = tf.function(self._lbfgs_value_and_grad, autograph=False)
        else:
            self._block = tf.function(self._steps, jit_compile=jit_compile, autograph=False)
        self._evaluate = tf.function(self._eval, autograph=False)
        self._read = tf.function(self._read_images, autograph=False)
        self._shown: tuple[int, np.ndarray] | None = None     # (step, images) of the last log point's measure

    # ---- state ----------------------------------------------------------------------------------------------
    @property
    def steps_done(self) -> int:
        return int(self.iteration.numpy())

    @property
    def total_steps(self) -> int:
        return self.schedule.total

    def state(self) -> dict:
        """What a checkpoint holds of the optimisation: variables, optimiser slots, step counter (the loop adds its
        clock, history and the callbacks' state)."""
        out = {"step": self.iteration, **self.param.trackables()}
        for i, slots in enumerate(self.slots):
            out.update({f"slot{i}_{k}": v for k, v in slots.items()})
        return out

    def applies(self) -> dict[str, np.ndarray]:
        """{term: [N] bool}: which terms mean something for which problem (TensorBoard leaves the others out)."""
        return self.objective.applicability(len(self.labels))

    def describe(self) -> dict:
        """The run's configuration as flat text-friendly values (for TensorBoard and outputs)."""
        return {**self.config, "optimizer": str(self.optimizer.config()),
                "schedule": "; ".join(sorted({repr(s) for s in self._schedules})), "objective": repr(self.objective),
                "parameterization": type(self.param).__name__}

    # ---- compiled pieces -------------------------------------------------------------------------------------
    def _loss(self, t, jitter_on, with_noise: bool):
        canvas = self.param.image(tf.stack([self.seed + _NOISE_STREAM, t]) if with_noise else None)
        if self.jitter is None:
            ctx = Context(canvas, canvas, None, self.to_input)
        else:
            window = self.jitter.window(canvas, self.jitter.offsets(jitter_on, tf.stack([self.seed, t])))
            ctx = Context(window, canvas, self.jitter.mask(jitter_on), self.to_input)
        return self.objective(ctx)

    def _per_variable(self, value, variable):
        """A per-problem [N] schedule value shaped to broadcast over a variable (or the shared scalar)."""
        if not self.param.per_problem:
            return value[0]
        return tf.reshape(value, [-1] + [1] * (variable.shape.rank - 1))

    def _steps(self, start, stop):
        variables = self.param.variables

        def step(t):
            # Only the optimised variables are watched: no gradients for the network's weights.
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(variables)
                loss, _ = self._loss(t, self._jit[t], with_noise=True)
                total = tf.reduce_sum(loss)
            grads = tape.gradient(total, variables)
            for v, g, slots in zip(variables, grads, self.slots):
                g = tf.zeros_like(v) if g is None else g
                lr, reset = self._per_variable(self._lr[t], v), self._per_variable(self._reset[t], v)
                x, new = self.optimizer.update(v.read_value(), g, {k: s.read_value() for k, s in slots.items()},
                                               lr, reset, t)
                if self.project is not None:
                    x = self.param.project_update(x, self.project)
                v.assign(x)
                for k, s in new.items():
                    slots[k].assign(s)
            self.iteration.assign(t + 1)
            return (t + 1,)

        # An explicit while loop, traced without AutoGraph: converting the objective's and the network's Python
        # through AutoGraph was ~2/3 of the first step's trace (1.3 s of an AlexNet conv5 run's overhead).
        tf.while_loop(lambda t: t < stop, step, (start,))

    def _eval(self):
        """(loss [N], {term: [N]}, images [N, H, W, C]) at the current iterate, centre window, no noise: one
        forward pass for the log point. Held in a StatelessScope, so a generator in training mode (the deep image
        prior's batch norm on batch statistics) gives the image it is optimised on but its moving statistics,
        which only optimisation steps may move, are left as they are."""
        with keras.StatelessScope():
            canvas = self.param.image()
            ctx = Context(canvas, canvas, None, self.to_input) if self.jitter is None else Context(
                self.jitter.centre(canvas), canvas, self.jitter.mask(tf.constant(False)), self.to_input)
            loss, values = self.objective(ctx)
            return loss, values, canvas if self.jitter is None else self.jitter.centre(canvas)

    def _read_images(self):
        with keras.StatelessScope():
            canvas = self.param.image()
            return canvas if self.jitter is None else self.jitter.centre(canvas)

    # ---- L-BFGS: the same loop, a block is one call between restarts -------------------------------------------
    def _flat(self, tensors) -> tf.Tensor:
        rows = self.param.n if self.param.per_problem else 1
        return tf.concat([tf.reshape(x, [rows, -1]) for x in tensors], axis=1)

    def _assign_flat(self, flat):
        rows = self.param.n if self.param.per_problem else 1
        at = 0
        for v in self.param.variables:
            size = int(np.prod(v.shape)) // rows
            v.assign(tf.reshape(flat[:, at:at + size], v.shape))
            at += size

    def _lbfgs_value_and_grad(self, flat):
        self._assign_flat(flat)
        variables = self.param.variables
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(variables)
            loss, _ = self._loss(tf.constant(0), tf.constant(False), with_noise=False)
            if not self.param.per_problem:
                loss = tf.reduce_sum(loss)[None]
        return loss, self._flat(tape.gradient(loss, variables))

    def _lbfgs_block(self, iterations: int):
        import tensorflow_probability as tfp
        opt: optimizers.LBFGS = self.optimizer
        res = tfp.optimizer.lbfgs_minimize(
            self._value_and_grad, self._flat(self.param.variables), max_iterations=iterations,
            num_correction_pairs=opt.num_correction_pairs, tolerance=opt.tolerance, x_tolerance=0.0,
            f_relative_tolerance=0.0)
        self._assign_flat(res.position)       # the line search leaves the variables at its last trial point
        if self.project is not None:
            self.param.constrain(self.project)

    # ---- public ------------------------------------------------------------------------------------------------
    def step(self, n: int = 1) -> int:
        """Run ``n`` more steps (at most to the end of the schedule) in compiled blocks; returns the step reached."""
        start = self.steps_done
        stop = min(start + int(n), self.total_steps)
        if isinstance(self.optimizer, optimizers.LBFGS):
            self._shown = None
            while start < stop:
                k = min(self.optimizer.restart_every, stop - start)
                self._lbfgs_block(k)
                start += k
                self.iteration.assign(start)
        elif stop > start:
            # tensors, not Python ints: one trace serves every block
            self._shown = None
            self._block(tf.constant(start, tf.int32), tf.constant(stop, tf.int32))
        return stop

    def evaluate(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(loss [N], {term: value [N]}) at the current iterate, centre window."""
        loss, values, _ = self._evaluate()
        return np.asarray(loss), {k: np.asarray(v) for k, v in values.items()}

    def images(self) -> np.ndarray:
        """[N, H, W, C] the current reconstructions in image space (each problem's centre window), from a
        compiled call that changes no model state (no batch-norm updates); at a log point of :meth:`run`, the
        image its measurement computed (the callbacks read it without another forward pass)."""
        if self._shown is not None and self._shown[0] == self.steps_done:
            return self._shown[1]
        return np.asarray(self._read())

    def display(self, images: np.ndarray) -> np.ndarray:
        """Image space → display values (the mean added back, not clipped)."""
        return np.asarray(images) + self.display_offset

    def log_points(self) -> list[int]:
        total = self.total_steps
        if isinstance(self.optimizer, optimizers.LBFGS):      # log where L-BFGS restarts
            every = self.optimizer.restart_every
            pts = list(range(every, total + 1, every))
        else:
            pts = list(range(1, total + 1, self.log_every))
        return pts if pts and pts[-1] == total else pts + [total]

    # ---- the stepper protocol of core.loop.Loop ---------------------------------------------------------------
    def begin(self) -> None:
        pass

    def advance(self, stop: int) -> None:
        self.step(stop - self.steps_done)

    def measure(self) -> Measurement:
        """The objective per problem and its terms at the current iterate (centre window, no jitter), and the
        mean learning rate of the last step (0 for L-BFGS, which has none)."""
        loss, values, shown = self._evaluate()
        loss, values = np.asarray(loss), {k: np.asarray(v) for k, v in values.items()}
        self._shown = (self.steps_done, np.asarray(shown))      # for this log point's callbacks; step() drops it
        uses_lr = not isinstance(self.optimizer, optimizers.LBFGS) and self.steps_done > 0
        return Measurement(loss=loss, values=values,
                           scalars={"lr": float(np.mean(self._lr[self.steps_done - 1])) if uses_lr else 0.0})

    def snapshot(self) -> dict[str, np.ndarray]:
        """The reconstructions for TensorBoard: [N, H, W, C] in [0, 1] (M&V's joint min-max stretch)."""
        from tfrestore.core import report
        return {"reconstructions": report.stretch(self.display(self.images()))}

    def finish(self, summary: Summary) -> "Result":
        """The run's :class:`Result` (callbacks' ``on_run_end`` may add to it: the saved iterate, a quality
        curve, per-problem result steps)."""
        last = summary.last
        loss, values = (last.loss, last.values) if last is not None else self.evaluate()
        return Result(images=self.images(), values=values, loss=loss, history=summary.history, steps=summary.steps,
                      seconds=summary.seconds, steps_run=summary.steps_run, seconds_total=summary.seconds_total,
                      interrupted=summary.interrupted)

    def run(self, callbacks: Sequence[callbacks_lib.Callback] | None = None, *, out: str | Path | None = None,
            logdir: str | Path | None = None, resume: bool = False, progress: bool = True,
            checkpoint_every: int = 100, stop_after: int | None = None) -> Result:
        """Optimise to the end of the schedule through :class:`~tfrestore.core.loop.Loop`, calling the callbacks
        at every log point.

        Without ``callbacks`` the standard set is used (:func:`tfrestore.optimize.callbacks.standard`): checkpoints in
        ``out/ckpt`` every ``checkpoint_every`` steps or 3 minutes (``resume`` continues from the latest),
        TensorBoard in ``logdir``, the saved iterate, progress lines. ``stop_after`` ends the run (with a
        checkpoint) at the first log point at or after that step, as a time-limited job would; ``resume=True``
        later finishes it. SIGINT / SIGTERM stop at the next log point with a checkpoint (KeyboardInterrupt).
        """
        if callbacks is None:
            callbacks = callbacks_lib.standard(out, logdir, resume, progress, checkpoint_every,
                                               saved_every=self.log_every)
        self._callbacks = list(callbacks)
        try:
            return Loop(self, self._callbacks).run(stop_after=stop_after)
        finally:
            self._shown = None          # variables may change outside this run (a shared parameterisation)

    @classmethod
    def from_problem(cls, problem: Problem, **kwargs) -> "Optimization":
        """An optimisation of a :class:`Problem`; ``kwargs`` are the run-level settings (to_input, seed, …)."""
        return cls(problem.objective, problem.param, problem.optimizer, problem.schedule, jitter=problem.jitter,
                   project=problem.project, labels=problem.labels, **kwargs)
