"""M&V 2015 §6: inverting the shallow representations HOG, HOGb and DSIFT (``experiment_shallow*.m``).

Two experiments of ``--paper=mv2015`` (:mod:`reproductions.mv2015` dispatches here):

- ``shallow`` — Table 1 (``experiment_shallow_quantitative.m``): every image of a set is inverted through
  ``hog_net(8)``, ``hog_net(8, 'bilinearOrientations', true)`` and ``dsift_net(5)``
  (:mod:`tfrestore.nets.shallow`) at λTV 1, and scored with the dataset-normalised error of
  ``evaluation_protocols.md`` §1.2 (:func:`dataset_normalised_errors`); also M&V 2016's Table 2 statistic
  (√ relative error, mean ± 1.96·std/√N, §2.1) on the same reconstructions.
- ``shallow_lambda`` — the λ figure (``experiment_shallow.m``'s "Effect of v^β regularization"): HOG at
  λTV 1, 10 and 100 on ``--image``, with each reconstruction's TV₂ (higher λ: smoother).

The optimisation is ``invert_nn.m``'s, as the CNN figures run it (:mod:`reproductions.mv2015`), on a **one-channel
canvas at the image's own size** (``experiment_run.m``: ``imgSize = [size(im,1), size(im,2), 1]``): the variable
is the grey input ``255·rgb2gray(image) − 128``, initialised with Gaussian noise of total norm σ = 27098.1 (the
same ``x0_sigma.mat`` constant as for the CNNs, whatever the image size), heavy-ball momentum 0.9 reset at every
rate change, 800 steps (0.004 × [1, 0.1, 0.01, 0.001], 200 each), α 6, λL2 8e-10, TV β 2, no clipping.

Not here: Vondrick et al.'s HOGgle (``invertHOG``, MATLAB with SPAMS) — the table shows the paper's recorded value
and says so; the paper's images (the first 100 ILSVRC-2012 validation JPEGs; ``--data`` takes such a folder, the
embedded photos otherwise; the λ figure's ``data/hog/img.png`` of ``deep-goggle``: ``--image``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from tfrestore import data
from tfrestore.measure import metrics
from tfrestore.core import report
from tfrestore.nets import shallow
from tfrestore.optimize import objectives as O
from tfrestore.optimize import optim as optimizers
from tfrestore.optimize import param
from tfrestore.optimize.engine import Optimization, Problem

from . import paper

# --- Settings (spec mv2015.md §6; evaluation_protocols.md §1.2, §2.1) -----------------------------------------------
SCHEDULE = optimizers.Schedule([optimizers.Stage(200, 0.004), optimizers.Stage(200, 0.0004),
                                optimizers.Stage(200, 0.00004), optimizers.Stage(200, 0.000004)])
SIGMA = 27098.11571533        # x0_sigma.mat: invert_nn.m loads it for every net, the shallow ones included
LAMBDA_L2 = 8e-10
ALPHA = 6
TV_BETA = 2
MOMENTUM = 0.9
LOG_EVERY = 25
TABLE_IMAGES = 100            # the first 100 ILSVRC-2012 validation images (experiment_get_dataset.m)
# Table 1 as recalled without the paper (evaluation_protocols.md §1.2: **unverified**), mean ± std in %.
PAPER_TABLE1 = {"hoggle": (66.20, 13.7), "hog": (28.10, 7.6), "hogb": (10.67, 5.2), "dsift": (10.89, 7.5)}
NET_NAMES = {"hoggle": "HOGgle (Vondrick)", "hog": "HOG (ours)", "hogb": "HOGb (ours)", "dsift": "DSIFT (ours)"}
HOGGLE_MISSING = "not available here (Vondrick's ihog: MATLAB + SPAMS)"


@dataclasses.dataclass(frozen=True)
class Shallow:
    """One shallow experiment: the representations inverted, the λTV values (one problem each), whether it is
    Table 1's protocol over a set of images (else one ``--image``), the schedule, the paper's images."""
    description: str
    nets: tuple[str, ...]
    lambda_tv: tuple[float, ...]
    table: bool
    schedule: optimizers.Schedule = SCHEDULE
    paper_images: tuple[str, ...] = ()


EXPERIMENTS = {
    "shallow": Shallow("Table 1 (§6): HOG, HOGb, DSIFT inverted at λTV 1, 800 steps, grey canvas at each image's "
                       "size; dataset-normalised error over the first 100 images of --data (default: the embedded "
                       "photos); HOGgle not available", ("hog", "hogb", "dsift"), (1.0,), table=True,
                       paper_images=("ILSVRC2012_val_00000001 … ILSVRC2012_val_00000100",)),
    "shallow_lambda": Shallow("the λ figure (§6): HOG inverted at λTV 1, 10, 100 (--image), TV of each result",
                              ("hog",), (1.0, 10.0, 100.0), table=False,
                              paper_images=("deep-goggle experiments/data/hog/img.png",)),
}


# --- Images and nets ---------------------------------------------------------------------------------------------
def grey(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) → M&V's grey input ``255·rgb2gray(rgb/255) − 128``, float32 (H, W, 1)."""
    return shallow.grey_input(rgb).numpy()[0]


def table_images(data_dir: str | None) -> tuple[list[str], str]:
    """(image names or paths, where they come from): the first TABLE_IMAGES of ``data_dir`` by name (the protocol's
    first 100 validation files), else the embedded photos. Table 1's normaliser needs two images at least."""
    if data_dir is None:
        names = data.sample_image_names()
        why = (f"no --data: the {len(names)} embedded photos at their own sizes (the paper: the first "
               f"{TABLE_IMAGES} ILSVRC-2012 validation images; give their folder with --data)")
    else:
        try:
            paths = data.image_folder(data_dir)
        except NotADirectoryError:
            raise ValueError(f"--data={data_dir} is not a folder: give a folder of images") from None
        names = [str(p) for p in paths[:TABLE_IMAGES]]
        why = f"{len(names)} of the {len(paths)} images in {data_dir} (the first by name)"
    if len(names) < 2:
        raise ValueError(f"Table 1's error divides by the mean feature distance between the images, which needs two "
                         f"images at least; {data_dir} has {len(names)}: give a folder of several images")
    return names, why


_MODELS: dict[tuple[str, int, int], keras.Model] = {}


def model(net: str, h: int, w: int) -> keras.Model:
    """The shallow net ``net`` for a grey (h, w, 1) input (built once per size: a model has a fixed input)."""
    key = (net, h, w)
    if key not in _MODELS:
        _MODELS[key] = shallow.BUILDERS[net]((h, w))
    return _MODELS[key]


def features(net: str, x: np.ndarray) -> np.ndarray:
    """Φ of grey inputs [N, H, W, 1] → [N, h, w, C] float32."""
    return np.asarray(model(net, x.shape[1], x.shape[2])(x.astype(np.float32)))


def per_pixel_sigma(h: int, w: int) -> float:
    """σ for an h × w grey canvas with x0_sigma.mat's per-element RMS (σ / √(227·227·3) ≈ 68.9, spec §1.4):
    ``68.9·√(h·w)``. With it the start, and the step lr·σ²/‖Φ0‖² (‖Φ0‖² grows with the area too), are per pixel
    what the code's constant gives a 227 × 227 × 3 input — what an image much smaller than ILSVRC's (≲ 250 px a
    side) needs: there the code's σ = 27098.1 starts too far out (RMS 27098/√(h·w)) and the α-norm step diverges."""
    return SIGMA * math.sqrt(h * w / (227 * 227 * 3))


def init_grey(n: int, h: int, w: int, seed: int, sigma: float = SIGMA) -> np.ndarray:
    """``invert_nn.m``'s start: white Gaussian noise [n, h, w, 1], each rescaled to total L2 norm ``sigma``."""
    x = np.random.default_rng(seed).standard_normal((n, h, w, 1))
    return (x * (sigma / np.sqrt((x ** 2).sum(axis=(1, 2, 3))))[:, None, None, None]).astype(np.float32)


# --- The problem -------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Row:
    """One problem: the image (its index in the run), the net, λTV."""
    image: int
    net: str
    lambda_tv: float


def problem(exp: Shallow, greys: np.ndarray, image_ids: Sequence[int], *, seed: int = 0, steps: int | None = None,
            optimizer: optimizers.Optimizer | None = None, sigma: float = SIGMA) -> tuple[Problem, list[Row]]:
    """The batch of one image size: a problem per (image, net, λTV) of ``greys`` [M, H, W, 1] (image ``image_ids[m]``
    of the run), each ``‖Φ(x) − Φ0‖²/‖Φ0‖² + [(λTV/2)·TV₂(x) + (λL2/2)·Σx⁶]/σ²`` on x = σ·x̃ (σ: ``sigma``, the
    code's constant unless a small image needs :func:`per_pixel_sigma`)."""
    rows = [Row(i, net, lam) for i in image_ids for net in exp.nets for lam in exp.lambda_tv]
    where = {i: m for m, i in enumerate(image_ids)}
    x0 = np.stack([greys[where[r.image]] for r in rows])
    h, w = x0.shape[1:3]
    data_term = 0
    for net in exp.nets:
        idx = [k for k, r in enumerate(rows) if r.net == net]
        data_term = data_term + O.feature_loss(model(net, h, w), net, features(net, x0[idx]),
                                               problems=None if len(idx) == len(rows) else idx)
    lam = np.array([r.lambda_tv for r in rows], np.float32)
    objective = data_term + (lam / 2 / sigma ** 2) * O.tv(beta=TV_BETA) + \
        (LAMBDA_L2 / 2 / sigma ** 2) * O.alpha_norm(ALPHA)
    momentum = optimizers.Momentum(MOMENTUM, reset_on_change=True, clip_value=None)
    labels = [f"img{r.image} {r.net}" + (f" λ{r.lambda_tv:g}" if len(exp.lambda_tv) > 1 else "") for r in rows]
    return Problem(objective=objective, param=param.Pixels(init_grey(len(rows), h, w, seed, sigma), scale=sigma),
                   optimizer=optimizer or momentum, schedule=exp.schedule.scaled(steps) if steps else exp.schedule,
                   labels=labels, layers=[r.net for r in rows], x0=x0,
                   settings={"lambda_tv": lam.tolist(), "net": [r.net for r in rows]}), rows


# --- Table 1's error protocol (evaluation_protocols.md §1.2; experiment_shallow_quantitative.m eval_recons) --------
def matlab_columns(feats: Sequence[np.ndarray]) -> np.ndarray:
    """Per image, its feature array [h, w, C] read in MATLAB's column-major order (``res.y(:)``) and zero-padded to
    the longest one (images of different sizes have codes of different lengths): [n_images, D] float64."""
    flat = [np.asarray(f, np.float64).ravel(order="F") for f in feats]
    out = np.zeros((len(flat), max(len(f) for f in flat)))
    for i, f in enumerate(flat):
        out[i, :len(f)] = f
    return out


def dataset_normalised_errors(recon_feats: Sequence[np.ndarray], orig_feats: Sequence[np.ndarray]
                              ) -> tuple[np.ndarray, float]:
    """(per-image errors ‖Φ(x̂_i) − Φ(x_i)‖² / N_Φ [n], N_Φ): N_Φ is the mean of ‖Φ(x_i) − Φ(x_j)‖² over all n × n
    ordered pairs of the originals, the zero i = j terms counted (``mean(pdist2(y0', y0')(:).^2)``)."""
    y, y0 = matlab_columns(recon_feats), matlab_columns(orig_feats)
    if y.shape != y0.shape:
        raise ValueError(f"reconstructions and originals have codes of different lengths: {y.shape} vs {y0.shape}")
    sq = (y0 ** 2).sum(1)
    pair = np.maximum(sq[:, None] + sq[None, :] - 2 * y0 @ y0.T, 0.0)     # ‖y0_i − y0_j‖²
    normaliser = float(pair.mean())
    if normaliser <= 0:
        raise ValueError("all images have the same code: Table 1's normaliser is zero (give different images)")
    return ((y - y0) ** 2).sum(1) / normaliser, normaliser


def table1_entry(errors: Sequence[float]) -> tuple[float, float]:
    """(mean, std) in %, the std of the per-image errors with MATLAB's N − 1 (``std(temp)``)."""
    e = 100 * np.asarray(errors, np.float64)
    return float(e.mean()), float(e.std(ddof=1)) if len(e) > 1 else float("nan")


def tv2(x: np.ndarray) -> np.ndarray:
    """M&V's TV₂ of [N, H, W, C]: Σ (d_w² + d_h²), forward differences, zero at the far border → [N]."""
    x = np.asarray(x, np.float64)
    return (np.diff(x, axis=2) ** 2).sum(axis=(1, 2, 3)) + (np.diff(x, axis=1) ** 2).sum(axis=(1, 2, 3))


# --- Running and scoring -----------------------------------------------------------------------------------------
def solve(exp: Shallow, greys: Sequence[np.ndarray], flags, ctx: paper.RunContext, config: dict
          ) -> tuple[list[Row], list[np.ndarray], list]:
    """Optimise every (image, net, λTV) problem, one graph per image size (a canvas is the image's own size) with
    its checkpoints and TensorBoard events in ``out/graph<k>`` when there are several; returns the rows, each
    problem's final grey reconstruction [H, W, 1] and the engine's results."""
    from . import common
    sizes = list(dict.fromkeys(g.shape for g in greys))
    rows, recon, results = [], [], []
    for k, size in enumerate(sizes):
        ids = [i for i, g in enumerate(greys) if g.shape == size]
        momentum = optimizers.Momentum(MOMENTUM, reset_on_change=True, clip_value=None)
        part, part_rows = problem(exp, np.stack([greys[i] for i in ids]), ids, seed=ctx.seed + k, steps=flags.steps,
                                  optimizer=common.pick_optimizer(flags.optimizer, momentum),
                                  sigma=flags.sigma or SIGMA)
        out, logdir = (ctx.out, ctx.logdir) if len(sizes) == 1 else (ctx.out / f"graph{k}", ctx.logdir / f"graph{k}")
        print(f"M&V 2015 {flags.experiment}: {len(part_rows)} problems on {size[0]}×{size[1]} grey canvases (graph "
              f"{k + 1} of {len(sizes)}), objective {part.objective!r}", flush=True)
        run = Optimization.from_problem(part, display_offset=shallow.GREY_OFFSET, seed=ctx.seed + k,
                                        log_every=LOG_EVERY, config={**config, "graph": k, "size": list(size)})
        try:
            result = run.run(out=out, logdir=logdir, resume=ctx.resume, progress=ctx.progress)
        except KeyboardInterrupt as e:
            raise KeyboardInterrupt(f"{e}; continue with --resume --out={ctx.out}") from None
        rows += part_rows
        recon += list(result.images)
        results.append(result)
    return rows, recon, results


def score(rows: Sequence[Row], recon: Sequence[np.ndarray], greys: Sequence[np.ndarray]) -> list[dict]:
    """Per problem: M&V 2015's relative squared feature error (``res.err``), its square root (M&V 2016's Table 2
    statistic), TV₂ of the reconstruction, and its RMSE to the grey original (0–255)."""
    out = []
    for k, (r, x) in enumerate(zip(rows, recon)):
        f0, f1 = features(r.net, greys[r.image][None]), features(r.net, x[None])
        rel = float(metrics.rel_sq_error(f0, f1)[0])
        out.append({"problem": k, "image": r.image, "net": r.net, "lambda_tv": r.lambda_tv,
                    "rel_sq_feature_error": rel, "sqrt_rel_feature_error": float(np.sqrt(rel)),
                    "tv2": float(tv2(x[None])[0]),
                    "image_rmse_255": float(np.sqrt(np.mean((np.float64(x) - greys[r.image]) ** 2)))})
    return out


def table1(rows: Sequence[Row], recon: Sequence[np.ndarray], greys: Sequence[np.ndarray], scores: list[dict]
           ) -> list[dict]:
    """Per net: Table 1's mean ± std (%) of the dataset-normalised error over the images (adding each image's
    error to its score row), the paper's recorded values, and M&V 2016's Table 2 statistic on the same runs."""
    out = [{"method": NET_NAMES["hoggle"], "net": "hoggle", "ours": HOGGLE_MISSING,
            "paper": "{:.2f} ± {:.1f}".format(*PAPER_TABLE1["hoggle"]), "table2": "—", "n": 0}]
    for net in dict.fromkeys(r.net for r in rows):
        idx = [k for k, r in enumerate(rows) if r.net == net]
        errors, normaliser = dataset_normalised_errors([features(net, recon[k][None])[0] for k in idx],
                                                       [features(net, greys[rows[k].image][None])[0] for k in idx])
        for k, e in zip(idx, errors):
            scores[k]["dataset_normalised_error"] = float(e)
        mean, std = table1_entry(errors)
        m2016, ci = metrics.mean_ci95([scores[k]["sqrt_rel_feature_error"] for k in idx])
        out.append({"method": NET_NAMES[net], "net": net, "ours": f"{mean:.2f} ± {std:.1f}",
                    "paper": "{:.2f} ± {:.1f}".format(*PAPER_TABLE1[net]), "mean": mean, "std": std,
                    "normaliser": normaliser, "table2": f"{100 * m2016:.2f} ± {100 * ci:.2f}", "n": len(idx),
                    "table2_mean": 100 * m2016, "table2_ci95": 100 * ci})
    return out


TABLE1_COLUMNS = [("method", "method", ""), ("N", "n", "d"), ("ours: error % (mean ± std)", "ours", ""),
                  ("paper Table 1 (recalled, unverified)", "paper", ""),
                  ("ours: √rel % (M&V 2016 Table 2 statistic, ± 95 % CI)", "table2", "")]
TABLE_NOTE = ("paper column: Table 1 as recalled without the paper (evaluation_protocols §1.2, unverified). √rel "
              "column: M&V 2016 Table 2's statistic on these runs (that paper used dsift_net(8) and scored HOG with "
              "DPM features(); its values were not retrieved).")
PROBLEM_COLUMNS = [("#", "problem", "d"), ("problem", "label", ""), ("λTV", "lambda_tv", "g"),
                   ("rel.sq.feat", "rel_sq_feature_error", ".4g"), ("TV₂", "tv2", ".4g"),
                   ("img RMSE (0–255)", "image_rmse_255", ".2f")]
EMBEDDED_MAX_SIDE = 500       # the embedded photos (up to 1411²) shrunk to ILSVRC-2012 validation size (≤ 500 px)


def load_greys(exp: Shallow, flags) -> tuple[list[str], list[np.ndarray], str]:
    """(image names, grey inputs (H, W, 1) at each image's own size, where they come from). Table 1: ``--data``'s
    first 100 images as they are, else the embedded photos, shrunk to at most EMBEDDED_MAX_SIDE pixels (isotropic)
    so that the default run costs what an ILSVRC image does; the λ figure: ``--image``."""
    if not exp.table:
        return [Path(flags.image).stem], [grey(data.load_image(flags.image))], f"--image={flags.image} at its own size"
    names, why = table_images(flags.data)
    rgbs = [data.load_image(n) for n in names]
    if flags.data is None:
        rgbs = [data.resize(im, tuple(max(1, round(s * min(1.0, EMBEDDED_MAX_SIDE / max(im.shape[:2]))))
                                      for s in im.shape[:2])) for im in rgbs]
        why += f", shrunk to at most {EMBEDDED_MAX_SIDE} px a side"
    return [Path(n).stem for n in names], [grey(im) for im in rgbs], why


def _say_if_diverged(recon: Sequence[np.ndarray], greys: Sequence[np.ndarray], flags) -> None:
    """One line when a reconstruction is not finite: with the code's σ a small image's start is too large."""
    bad = [k for k, x in enumerate(recon) if not np.isfinite(x).all()]
    if bad:
        h, w = min((g.shape[:2] for g in greys), key=lambda s: s[0] * s[1])
        print(f"warning: {len(bad)} reconstruction(s) diverged (not finite) with σ = {flags.sigma or SIGMA:g}; "
              f"the code's σ suits ILSVRC-size images: for {h}×{w} give --sigma={per_pixel_sigma(h, w):.0f} "
              "(68.9·√(H·W), the same per-pixel start)", flush=True)


def _schedule(exp: Shallow, flags) -> optimizers.Schedule:
    return exp.schedule.scaled(flags.steps) if flags.steps else exp.schedule


def _label(r: Row, names: Sequence[str], exp: Shallow) -> str:
    return f"{names[r.image]} {r.net}" + (f" λ{r.lambda_tv:g}" if len(exp.lambda_tv) > 1 else "")


def _shown(x: np.ndarray) -> np.ndarray:
    """A grey reconstruction [H, W, 1] for display: stretched; a diverged one (not finite) shows as black."""
    return report.stretch(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0) + shallow.GREY_OFFSET)


def _panels(exp: Shallow, names, greys, rows, recon, scores) -> list:
    """The figure: per image its grey original, then each reconstruction (joint min–max stretch, ``vl_imsc``)."""
    panels = []
    for i, g in enumerate(greys):
        panels.append(((g + shallow.GREY_OFFSET) / 255.0, f"{names[i]} (grey original)"))
        panels += [(_shown(recon[k]),
                    f"{NET_NAMES[r.net].split(' (')[0]}" + (f" λTV {r.lambda_tv:g}" if len(exp.lambda_tv) > 1 else "")
                    + f"\nrel.err {scores[k]['rel_sq_feature_error']:.3g}")
                   for k, r in enumerate(rows) if r.image == i]
    return panels


def _lambda_plot(scores: list[dict]):
    def write(path):
        with report.plot(path, figsize=(8.0, 3.2), ncols=2) as (_, axes):
            lam = [s["lambda_tv"] for s in scores]
            axes[0].loglog(lam, [s["tv2"] for s in scores], "o-")
            axes[0].set(xlabel="λTV", ylabel="TV₂ of the reconstruction", title="smoothness")
            axes[1].semilogx(lam, [s["rel_sq_feature_error"] for s in scores], "o-")
            axes[1].set(xlabel="λTV", ylabel="‖Φ(x) − Φ0‖² / ‖Φ0‖²", title="HOG feature error")
    return write


def run(flags, ctx: paper.RunContext) -> dict:
    """Run ``flags.experiment`` (``shallow`` or ``shallow_lambda``) and write its outputs into ``ctx.out``: figure,
    table, metrics.json, PNG / .npy reconstructions, TensorBoard; returns the metrics."""
    from . import common
    exp = EXPERIMENTS[flags.experiment]
    common.claim_output(ctx.out)
    names, greys, source = load_greys(exp, flags)
    print(f"images: {source}; the paper used {', '.join(exp.paper_images)}", flush=True)
    config = {"paper": "mv2015", "experiment": flags.experiment, "nets": list(exp.nets), "images": names,
              "image_source": source, "lambda_tv": list(exp.lambda_tv), "sigma": flags.sigma or SIGMA, "lambda_l2": LAMBDA_L2,
              "alpha": ALPHA, "tv_beta": TV_BETA, "paper_images": list(exp.paper_images), "seed": ctx.seed}
    started = time.time()
    rows, recon, results = solve(exp, greys, flags, ctx, config)
    scores = score(rows, recon, greys)
    for s, r in zip(scores, rows):
        s["label"] = _label(r, names, exp)
    text = report.table(scores, PROBLEM_COLUMNS)
    metrics_ = {"config": {**config, "steps": results[0].steps, "schedule": repr(_schedule(exp, flags))},
                "steps": results[0].steps, "seconds": sum(r.seconds for r in results),
                "seconds_total": sum(r.seconds_total for r in results), "wall_seconds": time.time() - started,
                "seconds_per_step": sum(r.seconds_per_step for r in results),
                "interrupted": any(r.interrupted for r in results), "problems": scores}
    if exp.table:
        t1 = table1(rows, recon, greys, scores)
        metrics_["table1"] = t1
        text = ("Table 1 protocol (evaluation_protocols §1.2): ‖Φ(x̂)−Φ(x)‖² / mean pairwise ‖Φ(xi)−Φ(xj)‖², "
                f"mean ± std over {len(greys)} images, %\n" + report.table(t1, TABLE1_COLUMNS) + "\n" + TABLE_NOTE +
                f"\nimages: {source}; σ = {flags.sigma or SIGMA:g}\n\n" +
                report.table(scores, PROBLEM_COLUMNS))
    print(text, flush=True)
    _say_if_diverged(recon, greys, flags)
    result = paper.Result(title=f"M&V 2015 {flags.experiment}: {', '.join(NET_NAMES[n] for n in exp.nets)}",
                          metrics=metrics_, table=text, figure_panels=_panels(exp, names, greys, rows, recon, scores),
                          figure_columns=1 + len(exp.nets) * len(exp.lambda_tv),
                          pngs={f"rec_{k:02d}_{report.safe_name(s['label'])}":
                                _shown(recon[k]) for k, s in enumerate(scores)},
                          arrays={f"rec_{k:02d}_{report.safe_name(s['label'])}": recon[k][..., 0] + shallow.GREY_OFFSET
                                  for k, s in enumerate(scores)},
                          plots={"lambda_trend.png": _lambda_plot(scores)} if len(exp.lambda_tv) > 1 else {})
    result.write(ctx.out)
    print(f"wall {metrics_['wall_seconds']:.1f}s; outputs in {ctx.out} (figure.png, table.txt, metrics.json"
          + (", lambda_trend.png" if result.plots else "") + f"); TensorBoard: tensorboard --logdir {ctx.logdir}",
          flush=True)
    return json.loads(json.dumps({"title": result.title, **metrics_}, default=str))
