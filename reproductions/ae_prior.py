"""The autoencoder prior of the seeds' exercise (``../shared/seeds/003_*``): ``--paper=ae_prior
--task=train|scatter|denoise|inpaint``.

The digits autoencoder with the latent-coverage regulariser; latent scatter plots with the five out-of-class
probes; restoration by minimising ‖m ⊙ (x − y)‖² / (2σ²) + ‖AE(x) − x‖² after 1,000 and 10,000 iterations (the
exercise's early-stopping point), beside TV denoising and biharmonic inpainting (:mod:`tfrestore.restore.baselines`).

Images: digits (scikit-learn's bundled set up-sampled to 28×28, or MNIST with ``--data``).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from tfrestore.models import autoencoder
from tfrestore.restore import baselines
from tfrestore.optimize import callbacks
from tfrestore import data
from tfrestore.measure import metrics
from tfrestore.core import report
from tfrestore.optimize import objectives as O
from tfrestore.optimize import optim as optimizers
from tfrestore.optimize import param
from tfrestore.optimize.engine import Optimization

from . import common, paper
from .dip import mask_array
from .paper import flag

DESCRIPTION = "autoencoder prior on digits (the exercise): coverage regulariser, probes, denoise / inpaint"
EXPERIMENT_FLAG = "task"
DEFAULT_EXPERIMENT = "denoise"

SIGMAS = (0.1, 0.5)                 # denoising noise levels, in the model's [−1, 1] units (the exercise)
ITERATIONS = (1000, 10000)          # the exercise compares these two (early stopping)
LR = 0.01                           # Adam's rate for the restorations (the exercise does not give it)
DIGITS = 16                         # digits restored in one graph
RESTORATION_QUESTION = "Q4"         # Q5 restores with the final, regularised network
MASK = "random"                     # --mask default for inpainting: half the pixels dropped at random
INPAINT_SIGMA = 0.1                 # the inpainting data term's σ (the exercise gives the form, not the value)
TV_WEIGHT = 0.1                     # the TV (Chambolle) baseline's weight, [0, 1] units
QUESTIONS = autoencoder.QUESTIONS


@dataclasses.dataclass(frozen=True)
class Flags:
    """The command-line flags of ``--paper=ae_prior``; checked together on construction."""
    task: str = flag(DEFAULT_EXPERIMENT, "train, scatter, denoise or inpaint (see --list)")
    data: str | None = flag(None, "an MNIST-style digits folder instead of scikit-learn's bundled digits")
    steps: int | None = flag(None, "train / scatter: the autoencoder's training steps (default its question's "
                                   "schedule); denoise / inpaint: the restoration's iterations (default 1,000 and "
                                   "10,000 both)", source="seed 003 Q1–Q5")
    latent: int = flag(10, "latent size: 10 or 100 (the exercise's sizes)", source="seed 003 Q1, Q2")
    sigma: float | None = flag(None, "denoise: the noise σ in the model's [−1, 1] units (default 0.1 and 0.5 both)",
                               source="seed 003 Q5")
    mask: str | None = flag(None, "inpaint: random (default), block, strokes or a mask image file (white = kept)")
    prior_steps: int | None = flag(None, "denoise / inpaint: restore with the autoencoder trained for this many "
                                         "steps (trained first when not stored)")

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task '{self.task}' for ae_prior; valid: {', '.join(TASKS)}")
        if self.latent not in (10, 100):
            raise ValueError(f"--latent must be 10 or 100 (the exercise's sizes), got {self.latent}")
        if self.mask and self.task != "inpaint":
            raise ValueError("--mask applies to --task=inpaint only")
        if self.sigma is not None and self.task != "denoise":
            raise ValueError("--sigma applies to --task=denoise only")
        if self.prior_steps is not None and self.task not in ("denoise", "inpaint"):
            raise ValueError(f"--prior_steps picks the restorations' autoencoder; for --task={self.task} use --steps")


def default_out(flags: Flags) -> str:
    """``runs/ae_prior_<task>``."""
    return f"runs/ae_prior_{flags.task}"


def run(flags: Flags, ctx: paper.RunContext) -> dict:
    """The autoencoder-prior exercise; ``flags.steps`` is the AE's training length for ``train`` / ``scatter``
    and the restoration length for ``denoise`` / ``inpaint`` (default: 1,000 and 10,000 both), which restore with
    the AE trained for ``flags.prior_steps`` steps, else the one trained for ``steps`` when stored, else the
    default one (:func:`_restoration_ae`). ``ctx.overwrite``: train the networks again even when stored."""
    ctx = dataclasses.replace(ctx, out=common.claim_output(ctx.out))
    return TASKS[flags.task][1](flags, ctx)


def _ae(flags: Flags, ctx: paper.RunContext, question: str, train_steps: int | None):
    """The network of one of the exercise's questions (its own training settings), at ``--latent``, from the
    store (trained there first when missing; one line names a reused one)."""
    return autoencoder.trained(question=question, latent=flags.latent, steps=train_steps, source=flags.data,
                               seed=ctx.seed, progress=ctx.progress, overwrite=ctx.overwrite)


def _restoration_ae(flags: Flags, ctx: paper.RunContext):
    """The network the restorations use (Q4's at ``--latent``), said in one line with the reason: trained for
    ``--prior_steps`` steps when given (trained first if missing); else the one ``--task=train --steps=N`` stored
    when this run has the same ``--steps`` (and ``--latent``, ``--data``, ``--seed``); else the question's own
    schedule (trained first if missing)."""
    q = RESTORATION_QUESTION
    same = dict(question=q, latent=flags.latent, source=flags.data, seed=ctx.seed)
    n_default = autoencoder.QUESTIONS[q].steps(len(data.digits(28, flags.data, "train")[0]))
    if flags.prior_steps:
        steps, why = flags.prior_steps, f"--prior_steps={flags.prior_steps}"
    elif flags.steps and flags.steps != n_default and autoencoder.stored(steps=flags.steps, **same) is not None:
        steps, why = flags.steps, (f"the one `--task=train --steps={flags.steps}` stored (same --steps, --latent, "
                                   "--data, --seed)")
    else:
        steps = None
        why = f"{q}'s own schedule" + (f"; none trained for --steps={flags.steps} is stored (train one with "
                                        f"`--task=train --steps={flags.steps}`, or pick one with --prior_steps)"
                                        if flags.steps and flags.steps != n_default else "")
    print(f"autoencoder prior: {q}'s network ({flags.latent}-d latent) trained for {steps or n_default:,} steps — "
          f"{why}", flush=True)
    return _ae(flags, ctx, q, steps)


def _compared_questions(flags: Flags) -> tuple[str, str]:
    """Without the regulariser (Q1 at latent 100, Q2 at 10) and with it (Q4)."""
    return autoencoder.unregularised_question(flags.latent), RESTORATION_QUESTION


class _Snapshots(callbacks.Callback):
    """The images at the given log points (the exercise's 1,000 and 10,000 iterations)."""

    def __init__(self, steps):
        self.steps, self.images = set(steps), {}

    def on_log_point(self, loop, point):
        if point.step in self.steps:
            self.images[point.step] = loop.stepper.images()


def _log_every_hitting(step: int) -> int:
    """A log interval whose log points (1, 1 + k, 1 + 2k, …) include ``step``: the largest divisor of step − 1
    not above step / 3."""
    return max([k for k in range(1, max(2, step // 3 + 1)) if (step - 1) % k == 0] or [1])


def _photo_probe(size: int) -> np.ndarray:
    img = data.load_image("astronaut", size, crop="center").astype(np.float32).mean(-1) / 255.0
    return img[..., None]


def _scatter_plot(path: Path, z: np.ndarray, labels: np.ndarray, probes: dict[str, np.ndarray], title: str):
    pairs = [(i, i + 1) for i in range(0, min(z.shape[1], 10) - 1, 2)]
    with report.plot(path, figsize=(3 * len(pairs), 3.2), ncols=len(pairs)) as (fig, axes):
        for ax, (a, b) in zip(axes, pairs):
            ax.scatter(z[:, a], z[:, b], c=labels, cmap="tab10", s=4, vmin=0, vmax=9)
            for k, (name, code) in enumerate(probes.items()):
                ax.scatter(code[a], code[b], c=[f"C{k}"], s=60, edgecolors="black", linewidths=1.5, label=name)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_title(f"z{a} vs z{b}", fontsize=8)
        axes[0].legend(fontsize=6, loc="lower left")
        fig.suptitle(title, fontsize=9)


def _coverage_stats(z: np.ndarray) -> dict:
    """How much of [0, 1]^d the codes fill: per-dimension variance and kurtosis (U(0, 1): 0.0833, 1.8) and the
    share of the 10×10 cells of each (z_2i, z_2i+1) plane holding at least one code."""
    var = z.var(0)
    kurt = ((z - z.mean(0)) ** 4).mean(0) / np.maximum(var ** 2, 1e-12)
    cells = []
    for a in range(0, z.shape[1] - 1, 2):
        h, _, _ = np.histogram2d(z[:, a], z[:, a + 1], bins=10, range=[[0, 1], [0, 1]])
        cells.append((h > 0).mean())
    return {"mean_var": float(var.mean()), "mean_kurtosis": float(kurt.mean()), "cells_filled": float(np.mean(cells))}


def _ae_train(flags: Flags, ctx: paper.RunContext) -> dict:
    """Q2's (or Q1's) and Q4's networks: reconstruction and how much of [0, 1]^d their codes cover."""
    t0 = time.perf_counter()
    rows = []
    xv, _, desc = data.digits(28, flags.data, "val")
    for question in _compared_questions(flags):
        model, summary = _ae(flags, ctx, question, flags.steps)
        q = autoencoder.QUESTIONS[question]
        rec = autoencoder.reconstruct(model, xv)
        rows.append({"question": question, "coverage": q.coverage, "steps": summary.get("steps"),
                     "batch": summary.get("batch"), "learning_rate": summary.get("learning_rate"),
                     "initial_val_loss": summary.get("initial_val", {}).get("loss", float("nan")),
                     "val_loss": summary.get("final", {}).get("val_loss", float("nan")),
                     "val_mse": float(np.mean((rec - xv) ** 2)),
                     "mean_baseline": float(np.mean((xv - xv.mean(0)) ** 2)),
                     **_coverage_stats(autoencoder.codes(model, xv)),
                     "train_s_per_1000": summary.get("seconds_per_1000_steps", float("nan"))})
    text = report.table(rows, [("question", "question", ""), ("coverage", "coverage", ""), ("steps", "steps", ""),
                               ("lr", "learning_rate", "g"), ("val loss at start", "initial_val_loss", ".4g"),
                               ("val loss", "val_loss", ".4g"), ("val MSE [0,1]", "val_mse", ".4f"),
                               ("mean-digit MSE", "mean_baseline", ".4f"), ("var (U: .0833)", "mean_var", ".4f"),
                               ("kurtosis (U: 1.8)", "mean_kurtosis", ".3f"), ("cells filled", "cells_filled", ".3f"),
                               ("s / 1000 steps", "train_s_per_1000", ".1f")])
    print(text, flush=True)
    summary = {"task": "train", "data": desc, "rows": rows, "seconds": time.perf_counter() - t0}
    paper.Result(title="autoencoder prior: training", metrics=summary, table=text).write(ctx.out)
    return summary


def _probe_row(question: str, z: np.ndarray, pz: np.ndarray, probes: dict) -> dict:
    """One network's coverage and each probe's distance to the nearest digit code, in units of the digits' own
    median distance to their nearest neighbour (spreading the codes stretches every distance; the ratio is
    comparable)."""
    dist = np.sqrt(((pz[:, None] - z[None]) ** 2).sum(-1)).min(1)
    dd = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))
    np.fill_diagonal(dd, np.inf)
    typical = float(np.median(dd.min(1)))
    return {"question": question, "coverage": autoencoder.QUESTIONS[question].coverage, **_coverage_stats(z),
            "nn_digits": typical, **{f"d_{n}": float(v) / typical for n, v in zip(probes, dist)}}


def _ae_scatter(flags: Flags, ctx: paper.RunContext) -> dict:
    """Latent scatter plots of the digits with the five out-of-class probes, and the AE's outputs on them."""
    out = ctx.out
    xv, yv, desc = data.digits(28, flags.data, "val")
    probes = autoencoder.out_of_class_probes(xv[0], _photo_probe(28), ctx.seed)
    probe_x = np.stack(list(probes.values()))
    panels, summary_rows, plots = [], [], {}
    for question in _compared_questions(flags):
        coverage = autoencoder.QUESTIONS[question].coverage
        model, _ = _ae(flags, ctx, question, flags.steps)
        z = autoencoder.codes(model, xv)
        pz = autoencoder.codes(model, probe_x)
        plots[f"scatter_{coverage}.png"] = (lambda path, z=z, pz=pz, coverage=coverage: _scatter_plot(
            path, z, yv, dict(zip(probes, pz)), f"latent codes ({coverage} regulariser), {desc}; probes outlined"))
        outs = autoencoder.reconstruct(model, probe_x)
        for name, x, o in zip(probes, probe_x, outs):
            panels += [(x, f"{name}"), (o, f"AE(·), {coverage}")]
        summary_rows.append(_probe_row(question, z, pz, probes))
    cols = [("question", "question", ""), ("coverage", "coverage", ""), ("var", "mean_var", ".4f"),
            ("kurtosis", "mean_kurtosis", ".3f"), ("cells filled", "cells_filled", ".3f"),
            ("digit NN dist.", "nn_digits", ".3f")] + \
        [(f"d({n})", f"d_{n}", ".2f") for n in probes]
    text = report.table(summary_rows, cols)
    print("each probe's distance to the nearest digit code, in digit nearest-neighbour distances:\n" + text,
          flush=True)
    summary = {"task": "scatter", "data": desc, "rows": summary_rows}
    paper.Result(title="autoencoder prior: out-of-class probes and their reconstructions", metrics=summary,
                 table=text, figure_panels=panels, figure_columns=10, plots=plots).write(out)
    print(f"outputs in {out} ({', '.join(plots)}, figure.png)", flush=True)
    return summary


def _observations(flags: Flags, ctx: paper.RunContext, clean: np.ndarray) -> list[tuple]:
    """(name, y, mask or None, data-term σ) per setting: each --sigma (default both of SIGMAS) for denoise, the
    --mask (a different draw per digit) for inpaint; ``clean`` [N, 28, 28, 1] in the model's [−1, 1]."""
    rng = np.random.default_rng(ctx.seed)
    if flags.task == "denoise":
        return [(f"sigma={s:g}", (clean + rng.normal(0, s, clean.shape)).astype(np.float32), None, s)
                for s in ((flags.sigma,) if flags.sigma is not None else SIGMAS)]
    kind_of_mask = flags.mask or MASK
    m = np.stack([mask_array(kind_of_mask, (28, 28), ctx.seed + i) for i in range(len(clean))])
    m = m[..., None].astype(np.float32)
    return [(f"mask={kind_of_mask}", (clean * m).astype(np.float32), m, INPAINT_SIGMA)]


def _to01(x) -> np.ndarray:
    """The model's [−1, 1] as [0, 1], clipped."""
    return np.clip((np.asarray(x) + 1) / 2, 0, 1)


def _restore_setting(flags: Flags, ctx: paper.RunContext, model, setting: tuple, iterations: tuple) -> dict:
    """One setting's restorations, name → [N, 28, 28, 1] in [0, 1]: the observation, one AE pass, the AE prior
    at each of ``iterations`` and the classical baseline."""
    name, y, m, s = setting
    objective = O.DataTerm(y, sigma=s, mask=m) + autoencoder.AutoencoderTerm(model)
    run = Optimization(objective, param.Pixels(y.copy()), optimizers.Adam(),
                       optimizers.Schedule([optimizers.Stage(max(iterations), LR, jitter=False)]),
                       labels=[f"digit{i}" for i in range(len(y))], seed=ctx.seed,
                       log_every=_log_every_hitting(min(iterations)),
                       config={"paper": "ae_prior", "task": flags.task, "setting": name})
    snaps = _Snapshots(iterations)
    run.run(callbacks.standard(ctx.out / report.safe_name(name), ctx.logdir / report.safe_name(name), ctx.resume,
                               ctx.progress, checkpoint_every=1000) + [snaps])
    snapshots = {it: _to01(snaps.images[it]) for it in sorted(iterations) if it in snaps.images}
    entries = {"corrupted": _to01(y), "AE(y) (one pass)": _to01(np.asarray(model(y, training=False))),
               **{f"AE prior, {it} it.": v for it, v in snapshots.items()}}
    if flags.task == "denoise":
        entries["TV (Chambolle)"] = np.stack([baselines.tv_chambolle(v, TV_WEIGHT) for v in _to01(y)])
    else:
        entries["biharmonic"] = np.stack([baselines.biharmonic(v, mm[..., 0] == 0) for v, mm in zip(_to01(y), m)])
    return entries


def _ae_restore(flags: Flags, ctx: paper.RunContext) -> dict:
    """Denoise or inpaint DIGITS validation digits with the AE prior (and the baseline); PSNR / SSIM per method."""
    model, ae_summary = _restoration_ae(flags, ctx)
    xv, _, desc = data.digits(28, flags.data, "val")
    clean = xv[:DIGITS] * 2 - 1                                          # model space [−1, 1]
    iterations = (flags.steps,) if flags.steps else ITERATIONS
    settings = _observations(flags, ctx, clean)
    rows, panels = [], []
    ref = _to01(clean)
    for setting in settings:
        name = setting[0]
        entries = _restore_setting(flags, ctx, model, setting, iterations)
        for method, v in entries.items():
            rows.append({"setting": name, "method": method, "psnr": float(np.mean(metrics.psnr(ref, v, 1.0))),
                         "ssim": float(np.mean(metrics.ssim(ref, v, 1.0)))})
        for i in range(3):
            panels += [(ref[i], "clean")] + [(v[i], f"{name}: {k}") for k, v in entries.items()]
    text = report.table(rows, [("setting", "setting", ""), ("method", "method", ""), ("PSNR (dB)", "psnr", ".2f"),
                               ("SSIM", "ssim", ".4f")])
    print(text, flush=True)
    summary = {"task": flags.task, "data": desc, "digits": len(clean), "rows": rows,
               "question": RESTORATION_QUESTION, "prior_steps": ae_summary.get("steps"),
               "iterations": list(iterations), "learning_rate": LR, "settings": [x[0] for x in settings]}
    paper.Result(title=f"autoencoder prior: {flags.task} ({desc})", metrics=summary, table=text,
                 figure_panels=panels, figure_columns=len(panels) // (3 * len(settings))).write(ctx.out)
    print(f"outputs in {ctx.out} (figure.png, metrics.json)", flush=True)
    return summary


TASKS = {
    "train": ("train the AE with and without the coverage regulariser; reconstruction and coverage", _ae_train),
    "scatter": ("latent scatter plots with the five out-of-class probes, and the AE's outputs on them",
                _ae_scatter),
    "denoise": ("denoise digits (σ 0.1 and 0.5) with the AE prior after 1,000 and 10,000 iterations", _ae_restore),
    "inpaint": ("inpaint digits (--mask) with the AE prior after 1,000 and 10,000 iterations", _ae_restore),
}
EXPERIMENTS = {k: v[0] for k, v in TASKS.items()}
