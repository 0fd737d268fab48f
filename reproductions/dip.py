"""The deep image prior (Ulyanov et al., CVPR 2018): ``--paper=dip --task=denoise|inpaint|superres|deblur|invert``.

The skip generator's weights are optimised (Adam, lr 0.01, PyTorch's ε placement) so that its output, degraded,
matches the observation; PSNR / SSIM of the output and of its moving average at every log point (TensorBoard,
``curve.png``), beside the corrupted input and a classical restoration (:mod:`tfrestore.restore.baselines`). ``invert``:
``feature_inversion.ipynb`` with its published settings (spec ``mv2016.md`` §10; :class:`DipInversion`: 6-scale
skip net with zero padding, average-pool down and nearest up, fixed code, Adam lr 1e-3 for 3,100 steps, mean
squared error at AlexNet's fc6, 224² target), beside M&V-style pixel optimisation with TV on the same budget.

Images: the embedded photos (``--image``); ``--corrupted`` gives an observation file instead of synthesising one.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from tfrestore.restore import baselines, degrade
from tfrestore.optimize import callbacks
from tfrestore import data, nets
from tfrestore.models import dip
from tfrestore.measure import metrics
from tfrestore.core import report
from tfrestore.optimize import objectives as O
from tfrestore.optimize import optim as optimizers
from tfrestore.optimize import param
from tfrestore.optimize.engine import Optimization
from tfrestore.optimize.inversion import Extractors, feature_objective

from . import common, paper
from .paper import flag

DESCRIPTION = "deep image prior (Ulyanov et al. 2018): denoise, inpaint, ×4 super-resolution, deblur, invert"
EXPERIMENT_FLAG = "task"
DEFAULT_EXPERIMENT = "denoise"

# Ulyanov et al.'s notebooks (DmitryUlyanov/deep-image-prior): denoising.ipynb (σ = 25/255, 3,000 iterations, input
# noise σ_p = 1/30, Adam lr 0.01, moving average 0.99), super-resolution.ipynb (×4, 2,000 iterations, σ_p = 0.03,
# Lanczos down-sampler), inpainting (σ_p = 0.03, 3,000 iterations), all on the 5 × 128 skip net
# (dip.RESTORATION_NET); feature_inversion.ipynb for --task=invert (spec mv2016.md §10: INVERT below). The
# notebooks have no deblurring: --task=deblur is tfrestore's, with the denoising settings.
SIGMA = 25.0                # 0–255 units
FACTOR = 4
DOWNSAMPLER = "lanczos"
BLUR = (9, 2.0)             # Gaussian kernel size and σ for the deblurring task
BLUR_NOISE = 2.0            # 0–255 units of noise added after blurring
RESTORATION_SIZE = 256      # default working size of the restoration tasks (cropped to a multiple of 32)
LBFGS_FINISH = 50           # --optimizer=lbfgs: L-BFGS iterations after the Adam steps
TV_WEIGHT = 0.1             # the TV (Chambolle) baseline's weight, [0, 1] units
RL_ITERATIONS = 30          # the Richardson–Lucy baseline's iterations


@dataclasses.dataclass(frozen=True)
class DipInversion:
    """DIP feature inversion as ``feature_inversion.ipynb`` runs it (spec ``mv2016.md`` §10): the skip generator
    of :data:`tfrestore.models.dip.FEATURE_INVERSION_NET` on a fixed code (no input noise) of 32 channels of U(0, 1) × 0.1
    at ``generator_size``², its output cropped to the top-left ``imsize``², mapped into the net's input and matched
    at ``layer`` by the mean squared error (``nn.MSELoss``), Adam over the generator's weights only.

    Quirk kept: the notebook sets imsize = 227 only when the net is called ``'alexnet'``; for its
    ``'alexnet_caffe'`` the target is **224**² (``--size`` overrides it). The target photo is resized whole to
    imsize² (``get_image``), not centre-cropped. tfrestore's ``alexnet`` is the same Caffe AlexNet; its input
    mean is the net's own (the notebook subtracts VGG's BGR mean 103.939, 116.779, 123.680: < 1 grey level
    apart)."""
    net: str = "alexnet"
    layer: str = "fc6"
    imsize: int = 224
    loss: str = "mean squared error of the features (nn.MSELoss)"
    generator: dip.SkipSettings = dip.FEATURE_INVERSION_NET

    def generator_size_for(self, imsize: int) -> int:
        """The code's size for an imsize² target: the smallest multiple of 2^scales (64) not below imsize — the
        notebook's imsize_net = 256 ("something divisible by a power of two") for 224 and 227."""
        unit = 2 ** self.generator.scales
        return -(-imsize // unit) * unit


INVERT = DipInversion()


@dataclasses.dataclass(frozen=True)
class Degraded:
    operator: Callable          # A on [1, H, W, 3] in [0, 1]
    observation: np.ndarray     # y, [1, h, w, 3]
    shown: np.ndarray           # the corrupted input as a full-size [H, W, 3] picture (PSNR "input" column)
    mask: np.ndarray | None     # observed pixels (inpainting)
    sigma: float                # data-term σ in [0, 1] units


@dataclasses.dataclass(frozen=True)
class DipTask:
    """One ``--task``: its degradation and classical baseline, and the optimisation settings of its notebook."""
    description: str
    steps: int                  # Adam iterations
    noise_std: float            # σ_p: N(0, σ_p²) added to the input code every step (0: a fixed code)
    learning_rate: float
    size: int                   # default working size (invert: the target's imsize)
    degrade: Callable[..., Degraded] | None     # (clean [1, H, W, 3] in [0, 1], sigma 0–255 or None, mask, seed)
    baseline: Callable[[Degraded], np.ndarray] | None
    baseline_name: str


def _denoise(clean, sigma, mask, seed):
    s = (sigma if sigma is not None else SIGMA) / 255.0
    y = np.clip(clean + np.random.default_rng(seed).normal(0, s, clean.shape), 0, 1).astype(np.float32)
    return Degraded(lambda x: x, y, y[0], None, s)


def mask_array(kind: str, shape, seed) -> np.ndarray:
    if kind == "random":
        return degrade.random_mask(shape, 0.5, seed)
    if kind == "block":
        return degrade.block_mask(shape, max(4, shape[0] // 5), count=3, seed=seed)
    if kind == "strokes":
        return degrade.stroke_mask(shape, strokes=max(8, shape[0] // 12), width=max(2, shape[0] // 64), seed=seed)
    path = Path(kind).expanduser()
    if not path.exists():
        raise ValueError(f"--mask must be random, block, strokes or a mask image file, got {kind!r}")
    return _mask_file(path, tuple(shape))


def _mask_file(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask image (white = kept) as a 0/1 float32 [H, W] array at ``shape``; a file of another size is centre
    cropped and resized like the photo, a grey-level one thresholded at 127 — each said in a warning line — and
    one that keeps no pixel is refused (before the first step: the optimisation would otherwise run for hours and
    then fail in the baseline)."""
    raw = data.load_image(path)[..., 0]
    grey = float(np.mean((raw > 0) & (raw < 255)))
    if grey > 0:
        print(f"warning: --mask {path} has {100 * grey:.1f} % grey pixels (neither black nor white); thresholded "
              "at 127: lighter pixels are kept", flush=True)
    if raw.shape != shape:
        print(f"warning: --mask {path} is {raw.shape[1]}×{raw.shape[0]} pixels; centre-cropped and resized to "
              f"{shape[1]}×{shape[0]} like the photo (--size)", flush=True)
    m = data.resize(np.repeat(raw[..., None], 3, -1), shape, crop="center")[..., 0] > 127
    if not m.any():
        raise ValueError(f"--mask {path} keeps no pixel (all black after thresholding at 127): white marks the "
                         "pixels kept, black the ones to fill in")
    return m.astype(np.float32)


def _inpaint(clean, sigma, mask, seed):
    m = mask_array(mask or "strokes", clean.shape[1:3], seed)[None, :, :, None].astype(np.float32)
    y = (clean * m).astype(np.float32)
    return Degraded(lambda x: x * m, y, y[0], m, 1.0 / 255.0)


def _superres(clean, sigma, mask, seed):
    op = degrade.Downsample(FACTOR, DOWNSAMPLER)
    y = np.clip(np.asarray(op(tf.constant(clean))), 0, 1)
    shown = np.repeat(np.repeat(y[0], FACTOR, 0), FACTOR, 1)       # nearest up-sampling, for display
    return Degraded(op, y, shown, None, 1.0 / 255.0)


def _deblur(clean, sigma, mask, seed):
    op = degrade.Blur(degrade.gaussian_kernel(*BLUR), boundary="zero")
    s = (sigma if sigma is not None else BLUR_NOISE) / 255.0
    y = np.asarray(op(tf.constant(clean))) + np.random.default_rng(seed).normal(0, s, clean.shape)
    y = np.clip(y, 0, 1).astype(np.float32)
    return Degraded(op, y, y[0], None, s)


def _degradation(task: str, sigma: float | None, mask: str | None, corrupted: str | None) -> str:
    """What this run's observation is, in words (its figure title and log line; the --list text names flags)."""
    if corrupted:
        return f"observation from {corrupted}"
    if task == "denoise":
        return f"additive Gaussian noise σ = {sigma if sigma is not None else SIGMA:g}/255"
    if task == "inpaint":
        return f"{mask or 'strokes'} mask" if mask in (None, "random", "block", "strokes") else f"mask {mask}"
    if task == "deblur":
        noise = sigma if sigma is not None else BLUR_NOISE
        return f"Gaussian blur {BLUR[0]}×{BLUR[0]} σ {BLUR[1]:g} + noise σ {noise:g}/255"
    return TASKS[task].description



def _tv_baseline(d: Degraded) -> np.ndarray:
    return baselines.tv_chambolle(d.observation[0], TV_WEIGHT)


def _biharmonic(d: Degraded) -> np.ndarray:
    return baselines.biharmonic(d.observation[0], d.mask[0, :, :, 0] == 0)


def _bicubic(d: Degraded) -> np.ndarray:
    return baselines.bicubic(d.observation[0], FACTOR)


def _richardson_lucy(d: Degraded) -> np.ndarray:
    return baselines.richardson_lucy(d.observation[0], degrade.gaussian_kernel(*BLUR), RL_ITERATIONS)


TASKS = {
    "denoise": DipTask("additive Gaussian noise σ = 25/255", 3000, dip.NOISE_STD_DENOISE, dip.LEARNING_RATE,
                       RESTORATION_SIZE, _denoise, _tv_baseline, "TV (Chambolle, weight 0.1)"),
    "inpaint": DipTask("text-like strokes removed (--mask=random|block|strokes|FILE)", 3000, dip.NOISE_STD_OTHER,
                       dip.LEARNING_RATE, RESTORATION_SIZE, _inpaint, _biharmonic, "biharmonic inpainting"),
    "superres": DipTask("×4 Lanczos down-sampling", 2000, dip.NOISE_STD_OTHER, dip.LEARNING_RATE,
                        RESTORATION_SIZE, _superres, _bicubic, "bicubic"),
    "deblur": DipTask("Gaussian blur 9×9 σ 2 + noise σ 2/255", 3000, dip.NOISE_STD_DENOISE, dip.LEARNING_RATE,
                      RESTORATION_SIZE, _deblur, _richardson_lucy, "Richardson-Lucy (30 iterations)"),
    "invert": DipTask("feature inversion (feature_inversion.ipynb): AlexNet fc6 by default (--net, --layers)", 3100,
                      0.0, 1e-3, INVERT.imsize, None, None, "pixels + TV (M&V-style), same steps"),
}
EXPERIMENTS = {k: t.description for k, t in TASKS.items()}


def _load_photo(image: str, size: int, crop: str = "center") -> np.ndarray:
    """[1, size, size, 3] in [0, 1]: the centred square resized (``crop="center"``) or the whole photo resized
    (``"none"``, feature inversion's ``get_image``)."""
    img = data.load_image(image)
    if min(img.shape[:2]) < size:
        print(f"warning: '{image}' is {img.shape[1]}×{img.shape[0]}, smaller than --size={size}; it is enlarged",
              flush=True)
    return data.resize(img, size, crop=crop).astype(np.float32)[None] / 255.0


def _observation_file(path: str, like: np.ndarray) -> np.ndarray:
    """``--corrupted``: [1, h, w, 3] in [0, 1] at the synthesised observation's size (``like``); a file of another
    size is centre-cropped and resized like the photo, with a warning line (resizing changes its noise)."""
    y = data.load_image(path)
    want = tuple(like.shape[1:3])
    if y.shape[:2] != want:
        print(f"warning: --corrupted {path} is {y.shape[1]}×{y.shape[0]} pixels but the task observes "
              f"{want[1]}×{want[0]} at this --size; centre-cropped and resized to that (its noise and blur are "
              "resized too)", flush=True)
        y = data.resize(y, want, crop="center")
    return y.astype(np.float32)[None] / 255.0


def _quality_rows(clean01, entries: dict[str, np.ndarray]) -> list[dict]:
    """PSNR / SSIM of each [H, W, C] estimate against the clean [1, H, W, C] image."""
    rows = []
    for k, v in entries.items():
        est = np.asarray(v)[None]
        rows.append({"method": k, "psnr": float(metrics.psnr(clean01, est, 1.0)[0]),
                     "ssim": float(metrics.ssim(clean01, np.clip(est, 0, 1), 1.0)[0])})
    return rows


def _curve_plot(path: Path, curve: list[dict], title: str) -> None:
    with report.plot(path, figsize=(6, 3.5)) as (fig, ax):
        for key in sorted({k for p in curve for k in p if k.startswith("psnr_")}):
            ax.plot([p["step"] for p in curve], [p[key] for p in curve], label=key[5:])
        ax.set_xlabel("iteration")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(title, fontsize=9)
        ax.legend()




@dataclasses.dataclass(frozen=True)
class Flags:
    """The command-line flags of ``--paper=dip``; checked together on construction (one ValueError naming the
    fix)."""
    task: str = flag(DEFAULT_EXPERIMENT, "denoise, inpaint, superres, deblur or invert (see --list)")
    image: str | None = flag(None, "the clean photo: an embedded sample or an image file (default astronaut)")
    size: int | None = flag(None, "working size in pixels (restorations: 256, cropped to a multiple of 32; "
                                  "invert: the target's imsize, 224)", source="DIP notebooks; mv2016.md §10")
    steps: int | None = flag(None, "Adam steps (default the task's notebook: 3,000; superres 2,000; invert 3,100)",
                             source="DIP notebooks; mv2016.md §10")
    sigma: float | None = flag(None, "noise σ in 0–255 units (denoise: 25; deblur: 2)", source="denoising.ipynb")
    mask: str | None = flag(None, "inpaint: random, block, strokes (default) or a mask image file (white = kept)")
    corrupted: str | None = flag(None, "an observation file to restore instead of a synthesised one "
                                       "(needs --image: the scores compare against it)")
    net: str | None = flag(None, "invert: the net inverted (default alexnet)", source="mv2016.md §10")
    layers: tuple[str, ...] | None = flag(None, "invert: the layer inverted (default fc6)", source="mv2016.md §10")
    weights: str = flag("auto", "invert: the net's weights ('auto', 'random' or a .weights.h5 file)")
    optimizer: str | None = flag(None, "adam (default) or lbfgs (Adam, then an L-BFGS finish of 50 iterations)")

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task '{self.task}' for dip; valid: {', '.join(TASKS)}")
        invert = self.task == "invert"
        if not invert and (self.net or self.layers or self.weights != "auto"):
            raise ValueError("--net, --layers and --weights belong to --task=invert only")
        if invert and (self.sigma is not None or self.mask or self.corrupted):
            raise ValueError("--sigma, --mask and --corrupted do not apply to --task=invert")
        if self.mask and self.task != "inpaint":
            raise ValueError("--mask applies to --task=inpaint only")
        if self.corrupted and not self.image:
            raise ValueError("--corrupted needs its clean image too (--image=CLEAN): the scores compare against it")
        if self.optimizer not in (None, "adam", "lbfgs"):
            raise ValueError(f"dip optimises with Adam, optionally finished by L-BFGS: --optimizer=adam or lbfgs, "
                             f"not {self.optimizer!r}")
        if invert and self.optimizer == "lbfgs":
            raise ValueError("--optimizer=lbfgs (an L-BFGS finish) applies to the restoration tasks, not to invert")


def default_out(flags: Flags) -> str:
    """``runs/dip_<task>``."""
    return f"runs/dip_{flags.task}"


def run(flags: Flags, ctx: paper.RunContext) -> dict:
    """One DIP restoration or feature inversion; returns the metrics written to ``<out>/metrics.json``.
    ``flags.size``: the working size (restoration: default 256, cropped to a multiple of 32; invert: the target's
    imsize, default 224). ``flags.optimizer="lbfgs"`` adds an L-BFGS finish of ``LBFGS_FINISH`` iterations after
    the Adam steps (the paper's option)."""
    ctx = dataclasses.replace(ctx, out=common.claim_output(ctx.out))
    return (_invert if flags.task == "invert" else _restore)(flags, ctx)


def _settings(task: str, p, schedule: optimizers.Schedule, size: int) -> dict:
    """The settings a run used (read from its generator and schedule), for its metrics.json."""
    return {"task": task, "steps": schedule.total, "learning_rate": schedule.stages[0].lr,
            "input_noise_std": p.noise_std, "input_channels": int(p.z.shape[-1]), "input_scale": dip.INPUT_SCALE,
            "size": size}


def _observed(flags: Flags, clean: np.ndarray, seed: int) -> Degraded:
    """The task's degradation of ``clean`` (σ None: the task's own noise level), or ``--corrupted``'s file as the
    observation (shown at full size by nearest up-sampling)."""
    d = TASKS[flags.task].degrade(clean, flags.sigma, flags.mask, seed)
    if not flags.corrupted:
        return d
    y = _observation_file(flags.corrupted, d.observation)
    f = clean.shape[1] // y.shape[1]
    return dataclasses.replace(d, observation=y, shown=np.repeat(np.repeat(y[0], f, 0), f, 1))


def _restore(flags: Flags, ctx: paper.RunContext) -> dict:
    """A restoration task: the generator fitted to the observation, then scored with the baseline beside it."""
    task, spec = flags.task, TASKS[flags.task]
    image, steps = flags.image or "astronaut", flags.steps or spec.steps
    size = (flags.size or spec.size) - (flags.size or spec.size) % 2 ** dip.RESTORATION_NET.scales
    clean = _load_photo(image, size)
    p = dip.generator_parameterization(size, noise_std=spec.noise_std, seed=ctx.seed,
                                       **dip.RESTORATION_NET.kwargs())
    d = _observed(flags, clean, ctx.seed)
    objective = O.DataTerm(d.observation, d.operator, sigma=d.sigma, mask=d.mask)
    described = _degradation(task, flags.sigma, flags.mask, flags.corrupted)
    schedule = optimizers.Schedule([optimizers.Stage(steps, spec.learning_rate, jitter=False)])
    settings = {**_settings(task, p, schedule, size), "ema_decay": p.decay,
                "generator": dip.RESTORATION_NET.kwargs(), "data_sigma": d.sigma,
                "observation_shape": list(d.observation.shape)}
    run = Optimization(objective, p, optimizers.Adam(epsilon_form="paper"), schedule,
                       labels=[task], seed=ctx.seed, log_every=max(1, steps // 30),
                       config={"paper": "dip", "image": image, "degradation": described, **settings})
    quality = callbacks.Quality(clean, extra={"average": lambda r: r.param.average()}, path=ctx.out / "curve.json",
                                ssim_every=5)
    cbs = callbacks.standard(ctx.out, ctx.logdir, ctx.resume, ctx.progress,
                             checkpoint_every=max(100, steps // 10)) + [quality]
    print(f"deep image prior, {task} ({described}) on '{image}' at {size}², {steps} Adam steps; "
          f"{_trainable_count(p.model):,} weights optimised", flush=True)
    result = run.run(cbs)
    entries = _restored_entries(flags, ctx, d=d, p=p, result=result, objective=objective)
    return _restore_report(flags, ctx, clean=clean, d=d, result=result, entries=entries, settings=settings)


def _restored_entries(flags: Flags, ctx: paper.RunContext, *, d: Degraded, p, result, objective) -> dict:
    """The estimates to score, name → [H, W, 3] in [0, 1]: the corrupted input, the classical baseline, the DIP
    output and its moving average, and with ``--optimizer=lbfgs`` the L-BFGS finish."""
    spec = TASKS[flags.task]
    steps = flags.steps or spec.steps
    output, average = result.images[0], p.average()[0]
    baseline = np.clip(spec.baseline(d), 0, 1)
    entries = {"corrupted input": d.shown, spec.baseline_name: baseline, f"DIP output ({steps} it.)": output,
               "DIP moving average": average}
    if flags.optimizer == "lbfgs":
        finish = Optimization(objective, p, optimizers.LBFGS(),
                              optimizers.Schedule([optimizers.Stage(LBFGS_FINISH, 1.0, jitter=False)]),
                              labels=[flags.task], seed=ctx.seed)
        finish.run([callbacks.Progress()] if ctx.progress else [])
        entries[f"DIP + L-BFGS finish ({LBFGS_FINISH} it.)"] = finish.images()[0]
    return entries


def _restore_report(flags: Flags, ctx: paper.RunContext, *, clean, d: Degraded, result, entries: dict,
                    settings: dict) -> dict:
    """Score the estimates against the clean image, print the table, write the outputs once; the metrics."""
    task, spec, out = flags.task, TASKS[flags.task], ctx.out
    baseline = entries[spec.baseline_name]
    output, average = result.images[0], entries["DIP moving average"]
    rows = _quality_rows(clean, entries)
    best = max(result.quality, key=lambda q: q["psnr_output"])
    rows.append({"method": f"DIP output at its best step ({best['step']}, needs the clean image)",
                 "psnr": best["psnr_output"], "ssim": best.get("ssim_output", "")})
    text = report.table(rows, [("method", "method", ""), ("PSNR (dB)", "psnr", ".2f"), ("SSIM", "ssim", ".4f")])
    print(text, flush=True)
    summary = {"task": task, "image": flags.image or "astronaut", "size": settings["size"], "steps": result.steps,
               "settings": settings, "rows": rows, "seconds": result.seconds_total,
               "seconds_per_1000_steps": 1000 * result.seconds_per_step, "curve": result.quality,
               "history": result.history}
    described = _degradation(task, flags.sigma, flags.mask, flags.corrupted)
    paper.Result(
        title=f"deep image prior: {task} ({described})", metrics=summary, table=text,
        figure_panels=[(clean[0], "clean"), (d.shown, "corrupted"), (baseline, spec.baseline_name),
                       (np.clip(output, 0, 1), "DIP output"), (np.clip(average, 0, 1), "DIP moving average")],
        pngs={"output": np.clip(output, 0, 1), "average": np.clip(average, 0, 1), "corrupted": d.shown,
              "baseline": baseline},
        plots={"curve.png": lambda path: _curve_plot(path, result.quality,
                                                     f"DIP {task}: PSNR against the clean image")}).write(out)
    print(f"{result.seconds:.0f} s ({1000 * result.seconds_per_step:.0f} s per 1,000 iterations at "
          f"{settings['size']}²); outputs in {out} (figure.png, curve.png, metrics.json); TensorBoard: "
          f"tensorboard --logdir {ctx.logdir}", flush=True)
    return summary


def _trainable_count(model) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


def _random_weights_notice(model, net: str) -> None:
    if nets.weights_source(model) == "random":          # the one notice (quiet=True silences nets.build's)
        print("=" * 78 + f"\n  dip/invert on {net} with SEEDED RANDOM WEIGHTS: the run shows the method only; "
              f"convert\n  {nets.spec(net).original} with `python -m weights_convert` (README.md).\n" + "=" * 78,
              flush=True)


def _invert(flags: Flags, ctx: paper.RunContext) -> dict:
    """feature_inversion.ipynb (:class:`DipInversion`) beside M&V-style pixel optimisation with TV."""
    spec, image = TASKS["invert"], flags.image or "astronaut"
    imsize, steps, net = flags.size or spec.size, flags.steps or spec.steps, flags.net or INVERT.net
    layer = nets.resolve_layer(net, (flags.layers or [INVERT.layer])[0])
    clean = _load_photo(image, imsize, crop="none")
    model = nets.build(net, weights=flags.weights, seed=ctx.seed, image_size=imsize, quiet=True)
    _random_weights_notice(model, net)
    mean = nets.mean_rgb(net)
    x0 = clean * 255.0 - mean
    ext = Extractors(model)
    data_term, _ = feature_objective(ext, net, [layer], x0, normalise=False, mean=True)     # nn.MSELoss
    generator_size = INVERT.generator_size_for(imsize)
    # sigmoid output × 255 − the net's mean colour: the net's image space
    p = dip.generator_parameterization(generator_size, noise_std=spec.noise_std, seed=ctx.seed, output_scale=255.0,
                                       output_offset=-mean, crop_to=imsize, **INVERT.generator.kwargs())
    schedule = optimizers.Schedule([optimizers.Stage(steps, spec.learning_rate, jitter=False)])
    settings = {**_settings("invert", p, schedule, imsize), "net": net, "layer": layer, "imsize": imsize,
                "generator_size": generator_size, "loss": INVERT.loss,
                "generator": INVERT.generator.kwargs(), "generator_weights": _trainable_count(p.model)}
    run = Optimization(data_term, p, optimizers.Adam(epsilon_form="paper"), schedule,
                       to_input=lambda x: nets.to_input(net, x), labels=[layer], seed=ctx.seed,
                       log_every=max(1, steps // 30), display_offset=mean,
                       config={"paper": "dip", "image": image, **settings})
    to_unit = lambda x: (x + mean) / 255.0                 # noqa: E731
    quality = callbacks.Quality(clean, to_unit=to_unit, extra={"average": lambda r: r.param.average()},
                                path=ctx.out / "curve.json", ssim_every=5)
    print(f"deep image prior inverting {net} {layer} of '{image}' at {imsize}² (generator {generator_size}², "
          f"{settings['generator_weights']:,} weights), {steps} Adam steps at lr {spec.learning_rate:g}", flush=True)
    result = run.run(callbacks.standard(ctx.out, ctx.logdir, ctx.resume, ctx.progress, max(100, steps // 10))
                     + [quality])
    base = _pixels_tv_baseline(ext, net, layer, x0, imsize=imsize, steps=steps, seed=ctx.seed,
                               progress=ctx.progress)
    return _invert_report(ctx, ext=ext, clean=clean, x0=x0, estimates=(base, result.images, p.average()),
                          result=result, settings=settings, weights=nets.weights_source(model))


def _invert_report(ctx: paper.RunContext, *, ext: Extractors, clean, x0, estimates, result, settings: dict,
                   weights: str) -> dict:
    """Score the pixel baseline, the DIP output and its average (image space, ``estimates`` in that order) in
    pixels and features; print the table, write the outputs once; the metrics."""
    net, layer, mean = settings["net"], settings["layer"], nets.mean_rgb(settings["net"])
    base_img, dip_img, avg = [(e[0] + mean) / 255.0 for e in estimates]
    rows = _quality_rows(clean, {"pixels + TV": np.clip(base_img, 0, 1), "DIP output": np.clip(dip_img, 0, 1),
                                 "DIP moving average": np.clip(avg, 0, 1)})
    target = ext.features(net, layer, x0)
    for r, est in zip(rows, estimates):      # all in image space
        f = ext.features(net, layer, est)
        r["rel_feature_error"] = float(metrics.rel_sq_error(target, f)[0])
        r["feature_mse"] = float(np.mean((f - target) ** 2))
    text = report.table(rows, [("method", "method", ""), ("PSNR (dB)", "psnr", ".2f"), ("SSIM", "ssim", ".4f"),
                               ("rel. sq. feature error", "rel_feature_error", ".4g"),
                               ("feature MSE", "feature_mse", ".4g")])
    print(text, flush=True)
    summary = {"task": "invert", "net": net, "layer": layer, "weights": weights,
               "settings": settings, "rows": rows, "history": result.history, "seconds": result.seconds_total,
               "seconds_per_1000_steps": 1000 * result.seconds_per_step}
    paper.Result(
        title=f"deep image prior: inverting {net} {layer}", metrics=summary, table=text,
        figure_panels=[(clean[0], "original"), (np.clip(base_img, 0, 1), "pixels + TV"),
                       (np.clip(dip_img, 0, 1), "DIP output"), (np.clip(avg, 0, 1), "DIP average")],
        plots={"curve.png": lambda path: _curve_plot(path, result.quality,
                                                     f"DIP inversion of {net} {layer}")}).write(ctx.out)
    print(f"{result.seconds:.0f} s ({1000 * result.seconds_per_step:.0f} s per 1,000 iterations at "
          f"{settings['imsize']}²); outputs in {ctx.out} (figure.png, curve.png, metrics.json); TensorBoard: "
          f"tensorboard --logdir {ctx.logdir}", flush=True)
    return summary


def _pixels_tv_baseline(ext, net, layer, x0, *, imsize, steps, seed, progress) -> np.ndarray:
    """M&V-style pixels: the normalised feature loss plus TV, Adam at lr 1 on the same budget, from M&V 2016's
    initial noise (from zeros a random-weight net's ReLUs would all start dead: no gradient). Image space."""
    data_term, _ = feature_objective(ext, net, [layer], x0)
    tv_weight = 1e-7 * imsize * imsize / 227 ** 2
    pixels = param.Pixels(param.init_mv2016(1, imsize, 80.0, seed))
    run = Optimization(data_term + tv_weight * O.tv(beta=2.0), pixels, optimizers.Adam(),
                       optimizers.Schedule([optimizers.Stage(steps, 1.0, jitter=False)]),
                       to_input=lambda x: nets.to_input(net, x), labels=[layer], seed=seed,
                       log_every=max(1, steps // 10))
    return run.run([callbacks.Progress()] if progress else []).images
