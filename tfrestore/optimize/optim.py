"""Optimisers and piecewise schedules for image optimisation, written as explicit update rules.

Each optimiser has ``slots(shape)`` (its state, created as variables by the engine) and
``update(x, g, slots, lr, reset) -> (x_new, slots_new)``: a pure function, so a block of steps compiles into one
graph. ``reset`` is true on the first step of a schedule stage (the learning rate just changed).

A :class:`Schedule` is a list of stages; it expands into per-step arrays (lr, reset, jitter) the compiled loop
indexes, so resuming at any step reproduces the uninterrupted run. It is the one schedule type: the trainings
(:mod:`tfrestore.train.training`, :mod:`tfrestore.priors.train`) build theirs with :meth:`Schedule.from_breakpoints`
under the rule their original used.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf

from tfrestore.core import log

LOG = log.logger(__name__)


@dataclasses.dataclass(frozen=True)
class Stage:
    steps: int
    lr: float
    jitter: bool = True


BREAKPOINT_RULES = ("before", "after", "count")


class Schedule:
    """Piecewise-constant schedule, e.g. M&V 2015: ``Schedule([Stage(100, 4e-3), Stage(200, 4e-4),
    Stage(100, 4e-5)])``."""

    def __init__(self, stages: Sequence[Stage]):
        if not stages or any(s.steps <= 0 for s in stages):
            raise ValueError(f"a schedule needs stages with positive step counts, got {stages}")
        self.stages = list(stages)

    @property
    def total(self) -> int:
        return sum(s.steps for s in self.stages)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-step (lr float32, reset bool, jitter bool)."""
        lr = np.concatenate([np.full(s.steps, s.lr, np.float32) for s in self.stages])
        jit = np.concatenate([np.full(s.steps, s.jitter) for s in self.stages])
        reset = np.zeros(self.total, bool)
        reset[0] = True
        reset[1:] = (lr[1:] != lr[:-1]) | (jit[1:] != jit[:-1])
        return lr, reset, jit

    def scaled(self, steps: int) -> "Schedule":
        """The same stage proportions stretched or squeezed to exactly ``steps`` in total.

        Stage boundaries are the original cumulative boundaries scaled and rounded (halves up), so the counts add
        up to ``steps`` and each differs from its exact share by less than one step. A stage that gets no step is
        dropped, and a line naming it is printed (``--steps`` runs what it says, not "at least one step per
        stage"): M&V 2015's 100/200/100 to 2 steps is 1/1/0 — its last stage dropped.
        """
        if int(steps) != steps or steps < 1:
            raise ValueError(f"a schedule needs a positive whole number of steps, got {steps!r}")
        f = int(steps) / self.total
        cumulative = np.cumsum([s.steps for s in self.stages])
        bounds = [0] + [int(np.floor(c * f + 0.5)) for c in cumulative]
        counts = np.diff(bounds)
        for i, (s, c) in enumerate(zip(self.stages, counts)):
            if c == 0:
                log.say(LOG, f"schedule scaled to {steps} steps: stage {i + 1} of {len(self.stages)} ({s.steps} steps "
                             f"at lr {s.lr:g}{'' if s.jitter else ', no jitter'}) rounds to 0 steps and is dropped")
        return Schedule([dataclasses.replace(s, steps=int(c)) for s, c in zip(self.stages, counts) if c > 0])

    def rates(self) -> np.ndarray:
        """[total] float32: the learning rate of every step (index t: the step with 1-based count t + 1)."""
        return self.arrays()[0]

    @classmethod
    def from_rates(cls, rates: Sequence[float], *, jitter: bool = True) -> "Schedule":
        """The piecewise-constant schedule running ``rates[t]`` at step t (one stage per run of equal rates)."""
        rates = np.asarray(rates, np.float32)
        if rates.ndim != 1 or not len(rates):
            raise ValueError(f"a schedule needs a 1-D array of at least one rate, got shape {rates.shape}")
        cuts = [0] + [t for t in range(1, len(rates)) if rates[t] != rates[t - 1]] + [len(rates)]
        return cls([Stage(b - a, float(rates[a]), jitter) for a, b in zip(cuts[:-1], cuts[1:])])

    @classmethod
    def from_breakpoints(cls, breakpoints: Sequence[tuple[int, float]], steps: int, *, rule: str,
                         initial: float | None = None) -> "Schedule":
        """A schedule of ``steps`` steps from ``(step, lr)`` breakpoints under one of the rules the originals use
        (``BREAKPOINT_RULES``; t is the 0-based step, c = t + 1 its count):

        - ``"before"`` (tfrestore's own trainings): sorted by step; step t runs at the rate of the breakpoint with
          the largest step ≤ t, ``initial`` before any.
        - ``"after"`` (the thesis' ``lr_lower_points``, learned_inverters.md §3, mv2016.md §9.2): start at
          ``initial`` (the first entry's rate); after count c has run, if the next unconsumed entry's step is ≤ c,
          adopt its rate and consume it — one entry per step, in the order given (an entry out of order waits for
          every entry before it).
        - ``"count"`` (the thesis' prior training, patch_priors.md §9 item 7): sorted by step, the first at step 0;
          before count c the next entry with step ≤ c takes effect, one per step — (0, a) from the first step,
          (10000, b) from the 10,000th.
        """
        if rule not in BREAKPOINT_RULES:
            raise ValueError(f"breakpoint rule must be one of {', '.join(BREAKPOINT_RULES)}, got {rule!r}")
        if rule == "before":
            lr = np.full(steps, np.nan if initial is None else initial, np.float32)
            for step, rate in sorted(breakpoints):
                lr[step:] = rate
            if np.isnan(lr).any():
                raise ValueError("rule 'before' needs an initial rate or a breakpoint at step 0")
            return cls.from_rates(lr)
        if rule == "after":
            first = breakpoints[0][1] if breakpoints else initial
            lr, pending = np.full(steps, first if initial is None else initial, np.float32), list(breakpoints)
            for t in range(steps - 1):                  # after count t + 1: the rate of step t + 1
                lr[t + 1] = lr[t]
                if pending and pending[0][0] <= t + 1:
                    lr[t + 1] = pending.pop(0)[1]
            return cls.from_rates(lr)
        bps = sorted(breakpoints, key=lambda b: b[0])   # "count"; entries at the same step keep their order
        if not bps or bps[0][0] > 0:
            raise ValueError("the breakpoints must start at step 0")
        lr, nxt, current = np.zeros(steps, np.float32), 0, bps[0][1]
        for count in range(1, steps + 1):
            if nxt < len(bps) and bps[nxt][0] <= count:
                current, nxt = bps[nxt][1], nxt + 1
            lr[count - 1] = current
        return cls.from_rates(lr)

    def __repr__(self):
        return "Schedule(" + ", ".join(f"{s.steps}@{s.lr:g}{'' if s.jitter else ' nojitter'}"
                                       for s in self.stages) + ")"


class Optimizer:
    name = "optimizer"
    clip_value: float | None = None

    def slots(self, shape) -> dict[str, np.ndarray]:
        return {}

    def _clip(self, g):
        return g if self.clip_value is None else tf.clip_by_value(g, -self.clip_value, self.clip_value)

    def config(self) -> dict:
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}


class Momentum(Optimizer):
    """Heavy ball (M&V 2015): m ← μ·m − lr·g; x ← x + m, with m zeroed when the learning rate changes."""

    name = "momentum"

    def __init__(self, momentum: float = 0.9, reset_on_change: bool = True, clip_value: float | None = None):
        self.momentum, self.reset_on_change, self.clip_value = momentum, reset_on_change, clip_value

    def slots(self, shape):
        return {"m": np.zeros(shape, np.float32)}

    def update(self, x, g, s, lr, reset, step):
        g = self._clip(g)
        reset_now = tf.logical_and(tf.cast(reset, tf.bool), self.reset_on_change)
        m = tf.where(reset_now, tf.zeros_like(s["m"]), s["m"])
        m = self.momentum * m - lr * g
        return x + m, {"m": m}


class AdaGradMomentum(Optimizer):
    """M&V 2016 (``nnpreimage.m``, useAdagrad): G ← ρG + g²; m ← ρm − g / (1/η + √G); x ← x + m.

    η is the schedule's lr (the 2016 reproduction passes η_t = H·W·LR_t). At a stage change (the lr or the
    jitter changes; ``reset`` is true) m is zeroed and, by default, G too (``reset_accumulator=True``): that is
    what the released inversion does — ``exp_inversion.m`` runs its two stages as two chained ``nnpreimage``
    calls, each starting with fresh state (spec mv2016.md §4) — and what the code meant inside one call, where a
    typo clears an unused variable instead of G (§2). ``reset_accumulator=False`` keeps G across the change: the
    typo's behaviour, i.e. spec §2 / §8's "reset m, keep G", as if both stages ran in one call.
    """

    name = "adagrad_momentum"

    def __init__(self, rho: float = 0.9, reset_accumulator: bool = True, clip_value: float | None = None):
        self.rho, self.reset_accumulator, self.clip_value = rho, reset_accumulator, clip_value

    def slots(self, shape):
        return {"m": np.zeros(shape, np.float32), "G": np.zeros(shape, np.float32)}

    def update(self, x, g, s, lr, reset, step):
        g = self._clip(g)
        m = tf.where(reset, tf.zeros_like(s["m"]), s["m"])
        G = tf.where(tf.logical_and(reset, self.reset_accumulator), tf.zeros_like(s["G"]), s["G"])
        G = self.rho * G + tf.square(g)
        m = self.rho * m - g / (1.0 / lr + tf.sqrt(G))
        return x + m, {"m": m, "G": G}


class Adam(Optimizer):
    """Adam with the choice of where ε sits (it changes trajectories on tiny image gradients).

    ``epsilon_form="tf1"`` (the thesis code's ``tf.train.AdamOptimizer`` and Keras): x ← x − lr_t·m/(√v + ε̂)
    with lr_t = lr·√(1−β2^t)/(1−β1^t). ``"paper"`` (Kingma & Ba): x ← x − lr·m̂/(√v̂ + ε).
    """

    name = "adam"

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8, epsilon_form: str = "tf1",
                 clip_value: float | None = None):
        if epsilon_form not in ("tf1", "paper"):
            raise ValueError(f"epsilon_form must be 'tf1' or 'paper', got {epsilon_form!r}")
        self.beta1, self.beta2, self.epsilon, self.epsilon_form = beta1, beta2, epsilon, epsilon_form
        self.clip_value = clip_value

    def slots(self, shape):
        return {"m": np.zeros(shape, np.float32), "v": np.zeros(shape, np.float32)}

    def update(self, x, g, s, lr, reset, step):
        g = self._clip(g)
        t = tf.cast(step, tf.float32) + 1.0
        m = self.beta1 * s["m"] + (1 - self.beta1) * g
        v = self.beta2 * s["v"] + (1 - self.beta2) * tf.square(g)
        c1, c2 = 1 - tf.pow(self.beta1, t), 1 - tf.pow(self.beta2, t)
        if self.epsilon_form == "tf1":
            x = x - lr * tf.sqrt(c2) / c1 * m / (tf.sqrt(v) + self.epsilon)
        else:
            x = x - lr * (m / c1) / (tf.sqrt(v / c2) + self.epsilon)
        return x, {"m": m, "v": v}


class SGD(Optimizer):
    name = "sgd"

    def __init__(self, clip_value: float | None = None):
        self.clip_value = clip_value

    def update(self, x, g, s, lr, reset, step):
        return x - lr * self._clip(g), s


class LBFGS(Optimizer):
    """L-BFGS via ``tfp.optimizer.lbfgs_minimize``, batched over the N problems (each its own L-BFGS).

    It ignores the schedule's learning rates and jitter (line search picks the step). A range constraint is
    handled as *projected L-BFGS with restarts*: L-BFGS runs ``restart_every`` iterations, the result is projected
    onto the constraint set and L-BFGS restarts from there (its curvature memory is dropped, which keeps the
    quasi-Newton model honest after a projection). This is a heuristic, not a convergent constrained method.
    """

    name = "lbfgs"

    def __init__(self, num_correction_pairs: int = 10, restart_every: int = 50, tolerance: float = 1e-12):
        self.num_correction_pairs, self.restart_every, self.tolerance = num_correction_pairs, restart_every, tolerance


OPTIMIZERS = {"momentum": Momentum, "adagrad_momentum": AdaGradMomentum, "adam": Adam, "sgd": SGD, "lbfgs": LBFGS}


def get(name: str, **kwargs) -> Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer '{name}'; valid: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](**kwargs)
