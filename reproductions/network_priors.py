"""Restoration with network priors: the deep image prior (Ulyanov et al., CVPR 2018) and the autoencoder prior of
the seeds' exercise (``../shared/seeds/003_*``). Two papers share this module:

- ``--paper=dip --task=denoise|inpaint|superres|deblur|invert``: the skip generator's weights optimised (Adam,
  lr 0.01, PyTorch's ε placement) so its output, degraded, matches the observation; PSNR / SSIM of the output and
  of its moving average at every log point (TensorBoard, ``curve.png``), beside the corrupted input and a
  classical restoration from scikit-image. ``invert``: ``feature_inversion.ipynb`` with its published settings
  (spec ``mv2016.md`` §10; :class:`DipInversion`: 6-scale skip net with zero padding, average-pool down and
  nearest up, fixed code, Adam lr 1e-3 for 3,100 steps, mean squared error at AlexNet's fc6, 224² target), beside
  M&V-style pixel optimisation with TV on the same budget.
- ``--paper=ae_prior --task=train|scatter|denoise|inpaint``: the digits autoencoder with the latent-coverage
  regulariser; latent scatter plots with the five out-of-class probes; restoration by minimising
  ‖m ⊙ (x − y)‖² / (2σ²) + ‖AE(x) − x‖² after 1,000 and 10,000 iterations (the exercise's early-stopping point).

Images: the embedded photos (``--image``; DIP) or digits (scikit-learn's bundled set up-sampled to 28×28, or
MNIST with ``--data``; AE). ``--corrupted`` gives an observation file instead of synthesising one.
"""
from __future__ import annotations

import dataclasses
import time
import types
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from tfrestore import autoencoder, callbacks, data, degrade, dip, metrics, nets, report
from tfrestore import objectives as O
from tfrestore import optim as optimizers
from tfrestore import param
from tfrestore.engine import Optimization
from tfrestore.inversion import Extractors, feature_objective

from . import common

# ---- deep image prior -----------------------------------------------------------------------------------------
# Ulyanov et al.'s notebooks (DmitryUlyanov/deep-image-prior): denoising.ipynb (σ = 25/255, 3,000 iterations, input
# noise σ_p = 1/30, Adam lr 0.01, moving average 0.99), super-resolution.ipynb (×4, 2,000 iterations, σ_p = 0.03,
# Lanczos down-sampler), inpainting (σ_p = 0.03, 3,000 iterations), all on the 5 × 128 skip net
# (dip.RESTORATION_NET); feature_inversion.ipynb for --task=invert (spec mv2016.md §10: DIP_INVERT below). The
# notebooks have no deblurring: --task=deblur is tfrestore's, with the denoising settings.
DIP_SIGMA = 25.0            # 0–255 units
DIP_FACTOR = 4
DIP_DOWNSAMPLER = "lanczos"
DIP_BLUR = (9, 2.0)         # Gaussian kernel size and σ for the deblurring task
DIP_BLUR_NOISE = 2.0        # 0–255 units of noise added after blurring
DIP_RESTORATION_SIZE = 256  # default working size of the restoration tasks (cropped to a multiple of 32)
LBFGS_FINISH = 50           # --optimizer=lbfgs: L-BFGS iterations after the Adam steps


@dataclasses.dataclass(frozen=True)
class DipInversion:
    """DIP feature inversion as ``feature_inversion.ipynb`` runs it (spec ``mv2016.md`` §10): the skip generator
    of :data:`tfrestore.dip.FEATURE_INVERSION_NET` on a fixed code (no input noise) of 32 channels of U(0, 1) × 0.1
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


DIP_INVERT = DipInversion()


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
    s = (sigma if sigma is not None else DIP_SIGMA) / 255.0
    y = np.clip(clean + np.random.default_rng(seed).normal(0, s, clean.shape), 0, 1).astype(np.float32)
    return Degraded(lambda x: x, y, y[0], None, s)


def _mask_array(kind: str, shape, seed) -> np.ndarray:
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
    m = _mask_array(mask or "strokes", clean.shape[1:3], seed)[None, :, :, None].astype(np.float32)
    y = (clean * m).astype(np.float32)
    return Degraded(lambda x: x * m, y, y[0], m, 1.0 / 255.0)


def _superres(clean, sigma, mask, seed):
    op = degrade.Downsample(DIP_FACTOR, DIP_DOWNSAMPLER)
    y = np.clip(np.asarray(op(tf.constant(clean))), 0, 1)
    shown = np.repeat(np.repeat(y[0], DIP_FACTOR, 0), DIP_FACTOR, 1)       # nearest up-sampling, for display
    return Degraded(op, y, shown, None, 1.0 / 255.0)


def _deblur(clean, sigma, mask, seed):
    op = degrade.Blur(degrade.gaussian_kernel(*DIP_BLUR), boundary="zero")
    s = (sigma if sigma is not None else DIP_BLUR_NOISE) / 255.0
    y = np.asarray(op(tf.constant(clean))) + np.random.default_rng(seed).normal(0, s, clean.shape)
    y = np.clip(y, 0, 1).astype(np.float32)
    return Degraded(op, y, y[0], None, s)


def _degradation(task: str, sigma: float | None, mask: str | None, corrupted: str | None) -> str:
    """What this run's observation is, in words (its figure title and log line; the --list text names flags)."""
    if corrupted:
        return f"observation from {corrupted}"
    if task == "denoise":
        return f"additive Gaussian noise σ = {sigma if sigma is not None else DIP_SIGMA:g}/255"
    if task == "inpaint":
        return f"{mask or 'strokes'} mask" if mask in (None, "random", "block", "strokes") else f"mask {mask}"
    if task == "deblur":
        noise = sigma if sigma is not None else DIP_BLUR_NOISE
        return f"Gaussian blur {DIP_BLUR[0]}×{DIP_BLUR[0]} σ {DIP_BLUR[1]:g} + noise σ {noise:g}/255"
    return DIP_TASKS[task].description


def _tv_baseline(d: Degraded) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle
    return denoise_tv_chambolle(d.observation[0], weight=0.1, channel_axis=-1)


def _biharmonic(d: Degraded) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic
    return inpaint_biharmonic(d.observation[0], d.mask[0, :, :, 0] == 0, channel_axis=-1)


def _bicubic(d: Degraded) -> np.ndarray:
    import skimage.transform
    h, w = d.observation.shape[1:3]
    return skimage.transform.resize(d.observation[0], (h * DIP_FACTOR, w * DIP_FACTOR), order=3)


def _richardson_lucy(d: Degraded) -> np.ndarray:
    from skimage.restoration import richardson_lucy
    k = degrade.gaussian_kernel(*DIP_BLUR)
    return np.stack([richardson_lucy(d.observation[0, ..., c], k, num_iter=30) for c in range(3)], -1)


DIP_TASKS = {
    "denoise": DipTask("additive Gaussian noise σ = 25/255", 3000, dip.NOISE_STD_DENOISE, dip.LEARNING_RATE,
                       DIP_RESTORATION_SIZE, _denoise, _tv_baseline, "TV (Chambolle, weight 0.1)"),
    "inpaint": DipTask("text-like strokes removed (--mask=random|block|strokes|FILE)", 3000, dip.NOISE_STD_OTHER,
                       dip.LEARNING_RATE, DIP_RESTORATION_SIZE, _inpaint, _biharmonic, "biharmonic inpainting"),
    "superres": DipTask("×4 Lanczos down-sampling", 2000, dip.NOISE_STD_OTHER, dip.LEARNING_RATE,
                        DIP_RESTORATION_SIZE, _superres, _bicubic, "bicubic"),
    "deblur": DipTask("Gaussian blur 9×9 σ 2 + noise σ 2/255", 3000, dip.NOISE_STD_DENOISE, dip.LEARNING_RATE,
                      DIP_RESTORATION_SIZE, _deblur, _richardson_lucy, "Richardson-Lucy (30 iterations)"),
    "invert": DipTask("feature inversion (feature_inversion.ipynb): AlexNet fc6 by default (--net, --layers)", 3100,
                      0.0, 1e-3, DIP_INVERT.imsize, None, None, "pixels + TV (M&V-style), same steps"),
}


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


def _check_dip_flags(task, *, sigma, mask, corrupted, image, net, layers, weights, optimizer) -> None:
    if task not in DIP_TASKS:
        raise ValueError(f"unknown task '{task}' for dip; valid: {', '.join(DIP_TASKS)}")
    if task != "invert" and (net or layers or weights != "auto"):
        raise ValueError("--net, --layers and --weights belong to --task=invert only")
    if task == "invert" and (sigma is not None or mask or corrupted):
        raise ValueError("--sigma, --mask and --corrupted do not apply to --task=invert")
    if mask and task != "inpaint":
        raise ValueError("--mask applies to --task=inpaint only")
    if corrupted and not image:
        raise ValueError("--corrupted needs its clean image too (--image=CLEAN): the scores compare against it")
    if optimizer not in (None, "adam", "lbfgs"):
        raise ValueError(f"dip optimises with Adam, optionally finished by L-BFGS: --optimizer=adam or lbfgs, "
                         f"not {optimizer!r}")
    if task == "invert" and optimizer == "lbfgs":
        raise ValueError("--optimizer=lbfgs (an L-BFGS finish) applies to the restoration tasks, not to invert")


def _settings(task: str, p, schedule: optimizers.Schedule, size: int) -> dict:
    """The settings a run used (read from its generator and schedule), for its metrics.json."""
    return {"task": task, "steps": schedule.total, "learning_rate": schedule.stages[0].lr,
            "input_noise_std": p.noise_std, "input_channels": int(p.z.shape[-1]), "input_scale": dip.INPUT_SCALE,
            "size": size}


def run_dip(*, task: str = "denoise", image: str | None = None, size: int | None = None, steps: int | None = None,
            sigma: float | None = None, mask: str | None = None, corrupted: str | None = None,
            net: str | None = None, layers: list[str] | None = None, weights: str = "auto",
            optimizer: str | None = None, out: str | None = None, logdir: str | None = None, seed: int = 0,
            resume: bool = False, progress: bool = True) -> dict:
    """One DIP restoration or feature inversion; returns the metrics written to ``<out>/metrics.json``.
    ``size``: the working size (restoration: default 256, cropped to a multiple of 32; invert: the target's
    imsize, default 224). ``optimizer="lbfgs"`` adds an L-BFGS finish of ``LBFGS_FINISH`` iterations after the
    Adam steps (the paper's option)."""
    _check_dip_flags(task, sigma=sigma, mask=mask, corrupted=corrupted, image=image, net=net, layers=layers,
                     weights=weights, optimizer=optimizer)
    spec = DIP_TASKS[task]
    out_path = common.claim_output(out or f"runs/dip_{task}")
    given = dict(image=image or "astronaut", steps=steps or spec.steps, out=out_path, seed=seed, resume=resume,
                 logdir=Path(logdir or out_path / "tb"), progress=progress)
    if task == "invert":
        return _dip_invert(spec, imsize=size or spec.size, net=net or DIP_INVERT.net,
                           layer=(layers or [DIP_INVERT.layer])[0], weights=weights, **given)
    return _dip_restore(task, spec, size=size or spec.size, sigma=sigma, mask=mask, corrupted=corrupted,
                        lbfgs=optimizer == "lbfgs", **given)


def _dip_restore(task, spec, *, image, size, steps, sigma, mask, corrupted, lbfgs, out, logdir, seed, resume,
                 progress):
    size = size - size % 2 ** dip.RESTORATION_NET.scales
    clean = _load_photo(image, size)
    p = dip.generator_parameterization(size, noise_std=spec.noise_std, seed=seed, **dip.RESTORATION_NET.kwargs())
    d = spec.degrade(clean, sigma, mask, seed)        # sigma None: each task's own noise level
    if corrupted:
        y = _observation_file(corrupted, d.observation)
        f = clean.shape[1] // y.shape[1]
        d = dataclasses.replace(d, observation=y, shown=np.repeat(np.repeat(y[0], f, 0), f, 1))
    objective = O.DataTerm(d.observation, d.operator, sigma=d.sigma, mask=d.mask)
    described = _degradation(task, sigma, mask, corrupted)
    schedule = optimizers.Schedule([optimizers.Stage(steps, spec.learning_rate, jitter=False)])
    settings = {**_settings(task, p, schedule, size), "ema_decay": p.decay,
                "generator": dip.RESTORATION_NET.kwargs(), "data_sigma": d.sigma,
                "observation_shape": list(d.observation.shape)}
    run = Optimization(objective, p, optimizers.Adam(epsilon_form="paper"), schedule,
                       labels=[task], seed=seed, log_every=max(1, steps // 30),
                       config={"paper": "dip", "image": image, "degradation": described, **settings})
    quality = callbacks.Quality(clean, extra={"average": lambda r: r.param.average()}, logdir=logdir,
                                path=out / "curve.json", ssim_every=5)
    cbs = callbacks.standard(out, logdir, resume, progress, checkpoint_every=max(100, steps // 10)) + [quality]
    print(f"deep image prior, {task} ({described}) on '{image}' at {size}², {steps} Adam steps; "
          f"{_trainable_count(p.model):,} weights optimised", flush=True)
    result = run.run(cbs)
    output, average = result.images[0], p.average()[0]
    baseline = np.clip(spec.baseline(d), 0, 1)
    entries = {"corrupted input": d.shown, spec.baseline_name: baseline, f"DIP output ({steps} it.)": output,
               "DIP moving average": average}
    if lbfgs:
        finish = Optimization(objective, p, optimizers.LBFGS(),
                              optimizers.Schedule([optimizers.Stage(LBFGS_FINISH, 1.0, jitter=False)]),
                              labels=[task], seed=seed)
        finish.run([callbacks.Progress()] if progress else [])
        entries[f"DIP + L-BFGS finish ({LBFGS_FINISH} it.)"] = finish.images()[0]
    rows = _quality_rows(clean, entries)
    best = max(result.quality, key=lambda q: q["psnr_output"])
    rows.append({"method": f"DIP output at its best step ({best['step']}, needs the clean image)",
                 "psnr": best["psnr_output"], "ssim": best.get("ssim_output", "")})
    text = report.table(rows, [("method", "method", ""), ("PSNR (dB)", "psnr", ".2f"), ("SSIM", "ssim", ".4f")])
    print(text, flush=True)
    _curve_plot(out / "curve.png", result.quality, f"DIP {task}: PSNR against the clean image")
    panels = [(clean[0], "clean"), (d.shown, "corrupted"), (baseline, spec.baseline_name),
              (np.clip(output, 0, 1), "DIP output"), (np.clip(average, 0, 1), "DIP moving average")]
    summary = {"task": task, "image": image, "size": size, "steps": result.steps, "settings": settings,
               "rows": rows, "seconds": result.seconds_total,
               "seconds_per_1000_steps": 1000 * result.seconds_per_step, "curve": result.quality,
               "history": result.history}
    report.write(out, title=f"deep image prior: {task} ({described})", metrics=summary, table=text,
                 figure_panels=panels, pngs={"output": np.clip(output, 0, 1), "average": np.clip(average, 0, 1),
                                             "corrupted": d.shown, "baseline": baseline})
    print(f"{result.seconds:.0f} s ({1000 * result.seconds_per_step:.0f} s per 1,000 iterations at {size}²); "
          f"outputs in {out} (figure.png, curve.png, metrics.json); TensorBoard: tensorboard --logdir {logdir}",
          flush=True)
    return summary


def _trainable_count(model) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


def _dip_invert(spec, *, image, imsize, steps, net, layer, weights, out, logdir, seed, resume, progress):
    """feature_inversion.ipynb (:class:`DipInversion`) beside M&V-style pixel optimisation with TV."""
    layer = nets.resolve_layer(net, layer)
    clean = _load_photo(image, imsize, crop="none")
    model = nets.build(net, weights=weights, seed=seed, image_size=imsize, quiet=True)
    if nets.weights_source(model) == "random":          # the one notice (quiet=True silences nets.build's)
        print("=" * 78 + f"\n  dip/invert on {net} with SEEDED RANDOM WEIGHTS: the run shows the method only; "
              f"convert\n  {nets.spec(net).original} with `python -m weights_convert` (README.md).\n" + "=" * 78,
              flush=True)
    mean = nets.mean_rgb(net)
    x0 = clean * 255.0 - mean
    ext = Extractors(model)
    data_term, _ = feature_objective(ext, net, [layer], x0, normalise=False, mean=True)     # nn.MSELoss
    generator_size = DIP_INVERT.generator_size_for(imsize)
    # sigmoid output × 255 − the net's mean colour: the net's image space
    p = dip.generator_parameterization(generator_size, noise_std=spec.noise_std, seed=seed, output_scale=255.0,
                                       output_offset=-mean, crop_to=imsize, **DIP_INVERT.generator.kwargs())
    to_input = lambda x: nets.to_input(net, x)             # noqa: E731
    schedule = optimizers.Schedule([optimizers.Stage(steps, spec.learning_rate, jitter=False)])
    settings = {**_settings("invert", p, schedule, imsize), "net": net, "layer": layer, "imsize": imsize,
                "generator_size": generator_size, "loss": DIP_INVERT.loss,
                "generator": DIP_INVERT.generator.kwargs(), "generator_weights": _trainable_count(p.model)}
    run = Optimization(data_term, p, optimizers.Adam(epsilon_form="paper"), schedule, to_input=to_input,
                       labels=[layer], seed=seed, log_every=max(1, steps // 30), display_offset=mean,
                       config={"paper": "dip", "image": image, **settings})
    to_unit = lambda x: (x + mean) / 255.0                 # noqa: E731
    quality = callbacks.Quality(clean, to_unit=to_unit, extra={"average": lambda r: r.param.average()},
                                logdir=logdir, path=out / "curve.json", ssim_every=5)
    print(f"deep image prior inverting {net} {layer} of '{image}' at {imsize}² (generator {generator_size}², "
          f"{settings['generator_weights']:,} weights), {steps} Adam steps at lr {spec.learning_rate:g}", flush=True)
    result = run.run(callbacks.standard(out, logdir, resume, progress, max(100, steps // 10)) + [quality])
    base = _pixels_tv_baseline(ext, net, layer, x0, imsize=imsize, steps=steps, seed=seed, progress=progress)
    dip_img, avg, base_img = to_unit(result.images[0]), to_unit(p.average()[0]), to_unit(base[0])
    rows = _quality_rows(clean, {"pixels + TV": np.clip(base_img, 0, 1), "DIP output": np.clip(dip_img, 0, 1),
                                 "DIP moving average": np.clip(avg, 0, 1)})
    target = ext.features(net, layer, x0)
    for r, est in zip(rows, (base, result.images, p.average())):      # all in image space
        f = ext.features(net, layer, est)
        r["rel_feature_error"] = float(metrics.rel_sq_error(target, f)[0])
        r["feature_mse"] = float(np.mean((f - target) ** 2))
    text = report.table(rows, [("method", "method", ""), ("PSNR (dB)", "psnr", ".2f"), ("SSIM", "ssim", ".4f"),
                               ("rel. sq. feature error", "rel_feature_error", ".4g"),
                               ("feature MSE", "feature_mse", ".4g")])
    print(text, flush=True)
    _curve_plot(out / "curve.png", result.quality, f"DIP inversion of {net} {layer}")
    summary = {"task": "invert", "net": net, "layer": layer, "weights": nets.weights_source(model),
               "settings": settings, "rows": rows, "history": result.history, "seconds": result.seconds_total,
               "seconds_per_1000_steps": 1000 * result.seconds_per_step}
    report.write(out, title=f"deep image prior: inverting {net} {layer}", metrics=summary, table=text,
                 figure_panels=[(clean[0], "original"), (np.clip(base_img, 0, 1), "pixels + TV"),
                                (np.clip(dip_img, 0, 1), "DIP output"), (np.clip(avg, 0, 1), "DIP average")])
    print(f"{result.seconds:.0f} s ({1000 * result.seconds_per_step:.0f} s per 1,000 iterations at {imsize}²); "
          f"outputs in {out} (figure.png, curve.png, metrics.json); TensorBoard: tensorboard --logdir {logdir}",
          flush=True)
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


# ---- autoencoder prior ------------------------------------------------------------------------------------------
AE_SIGMAS = (0.1, 0.5)              # denoising noise levels, in the model's [−1, 1] units (the exercise)
AE_ITERATIONS = (1000, 10000)       # the exercise compares these two (early stopping)
AE_LR = 0.01                        # Adam's rate for the restorations (the exercise does not give it)
AE_DIGITS = 16                      # digits restored in one graph
AE_RESTORATION_QUESTION = "Q4"      # Q5 restores with the final, regularised network
AE_MASK = "random"                  # --mask default for inpainting: half the pixels dropped at random
AE_INPAINT_SIGMA = 0.1              # the inpainting data term's σ (the exercise gives the form, not the value)


@dataclasses.dataclass(frozen=True)
class AeRequest:
    """What ``--paper=ae_prior`` was asked for (the flags), handed to each task."""
    data_source: str | None
    steps: int | None
    latent: int
    sigma: float | None
    mask: str | None
    out: Path
    logdir: Path
    seed: int
    resume: bool
    progress: bool
    prior_steps: int | None = None      # the restorations' network: trained for this many steps
    overwrite: bool = False             # train the networks again even when stored


def _ae(req: AeRequest, question: str, train_steps: int | None):
    """The network of one of the exercise's questions (its own training settings), at ``--latent``, from the
    store (trained there first when missing; one line names a reused one)."""
    return autoencoder.trained(question=question, latent=req.latent, steps=train_steps, source=req.data_source,
                               seed=req.seed, progress=req.progress, overwrite=req.overwrite)


def _restoration_ae(req: AeRequest):
    """The network the restorations use (Q4's at ``--latent``), said in one line with the reason: trained for
    ``--prior_steps`` steps when given (trained first if missing); else the one ``--task=train --steps=N`` stored
    when this run has the same ``--steps`` (and ``--latent``, ``--data``, ``--seed``); else the question's own
    schedule (trained first if missing)."""
    q = AE_RESTORATION_QUESTION
    same = dict(question=q, latent=req.latent, source=req.data_source, seed=req.seed)
    n_default = autoencoder.QUESTIONS[q].steps(len(data.digits(28, req.data_source, "train")[0]))
    if req.prior_steps:
        steps, why = req.prior_steps, f"--prior_steps={req.prior_steps}"
    elif req.steps and req.steps != n_default and autoencoder.stored(steps=req.steps, **same) is not None:
        steps, why = req.steps, (f"the one `--task=train --steps={req.steps}` stored (same --steps, --latent, "
                                 "--data, --seed)")
    else:
        steps = None
        why = f"{q}'s own schedule" + (f"; none trained for --steps={req.steps} is stored (train one with "
                                        f"`--task=train --steps={req.steps}`, or pick one with --prior_steps)"
                                        if req.steps and req.steps != n_default else "")
    print(f"autoencoder prior: {q}'s network ({req.latent}-d latent) trained for {steps or n_default:,} steps — "
          f"{why}", flush=True)
    return _ae(req, q, steps)


def _compared_questions(req: AeRequest) -> tuple[str, str]:
    """Without the regulariser (Q1 at latent 100, Q2 at 10) and with it (Q4)."""
    return autoencoder.unregularised_question(req.latent), AE_RESTORATION_QUESTION


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


def run_ae_prior(*, task: str = "denoise", data: str | None = None, steps: int | None = None, latent: int = 10,
                 sigma: float | None = None, mask: str | None = None, out: str | None = None,
                 logdir: str | None = None, seed: int = 0, resume: bool = False, progress: bool = True,
                 prior_steps: int | None = None, overwrite: bool = False) -> dict:
    """The autoencoder-prior exercise; ``steps`` is the AE's training length for ``train`` / ``scatter`` and the
    restoration length for ``denoise`` / ``inpaint`` (default: 1,000 and 10,000 both), which restore with the AE
    trained for ``prior_steps`` steps, else the one trained for ``steps`` when stored, else the default one
    (:func:`_restoration_ae`). ``overwrite``: train the networks again even when stored."""
    if task not in AE_TASKS:
        raise ValueError(f"unknown task '{task}' for ae_prior; valid: {', '.join(AE_TASKS)}")
    if latent not in (10, 100):
        raise ValueError(f"--latent must be 10 or 100 (the exercise's sizes), got {latent}")
    if mask and task != "inpaint":
        raise ValueError("--mask applies to --task=inpaint only")
    if sigma is not None and task != "denoise":
        raise ValueError("--sigma applies to --task=denoise only")
    if prior_steps is not None and task not in ("denoise", "inpaint"):
        raise ValueError(f"--prior_steps picks the restorations' autoencoder; for --task={task} use --steps")
    out_path = common.claim_output(out or f"runs/ae_prior_{task}")
    req = AeRequest(data_source=data, steps=steps, latent=latent, sigma=sigma, mask=mask, out=out_path,
                    logdir=Path(logdir or out_path / "tb"), seed=seed, resume=resume, progress=progress,
                    prior_steps=prior_steps, overwrite=overwrite)
    return AE_TASKS[task][1](req)


def _ae_train(req: AeRequest) -> dict:
    t0 = time.perf_counter()
    rows = []
    xv, _, desc = data.digits(28, req.data_source, "val")
    for question in _compared_questions(req):
        model, summary = _ae(req, question, req.steps)
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
    report.write(req.out, title="autoencoder prior: training", metrics=summary, table=text)
    return summary


def _ae_scatter(req: AeRequest) -> dict:
    out = req.out
    xv, yv, desc = data.digits(28, req.data_source, "val")
    probes = autoencoder.out_of_class_probes(xv[0], _photo_probe(28), req.seed)
    probe_x = np.stack(list(probes.values()))
    panels, summary_rows = [], []
    for question in _compared_questions(req):
        coverage = autoencoder.QUESTIONS[question].coverage
        model, _ = _ae(req, question, req.steps)
        z = autoencoder.codes(model, xv)
        pz = autoencoder.codes(model, probe_x)
        _scatter_plot(out / f"scatter_{coverage}.png", z, yv, dict(zip(probes, pz)),
                      f"latent codes ({coverage} regulariser), {desc}; probes outlined")
        outs = autoencoder.reconstruct(model, probe_x)
        for name, x, o in zip(probes, probe_x, outs):
            panels += [(x, f"{name}"), (o, f"AE(·), {coverage}")]
        # each probe's distance to the nearest digit code, in units of the digits' own median distance to their
        # nearest neighbour (spreading the codes stretches every distance; the ratio is comparable)
        dist = np.sqrt(((pz[:, None] - z[None]) ** 2).sum(-1)).min(1)
        dd = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))
        np.fill_diagonal(dd, np.inf)
        typical = float(np.median(dd.min(1)))
        summary_rows.append({"question": question, "coverage": coverage, **_coverage_stats(z),
                             "nn_digits": typical, **{f"d_{n}": float(v) / typical for n, v in zip(probes, dist)}})
    cols = [("question", "question", ""), ("coverage", "coverage", ""), ("var", "mean_var", ".4f"),
            ("kurtosis", "mean_kurtosis", ".3f"), ("cells filled", "cells_filled", ".3f"),
            ("digit NN dist.", "nn_digits", ".3f")] + \
        [(f"d({n})", f"d_{n}", ".2f") for n in probes]
    text = report.table(summary_rows, cols)
    print("each probe's distance to the nearest digit code, in digit nearest-neighbour distances:\n" + text,
          flush=True)
    summary = {"task": "scatter", "data": desc, "rows": summary_rows}
    report.write(out, title="autoencoder prior: out-of-class probes and their reconstructions", metrics=summary,
                 table=text, figure_panels=panels, figure_columns=10)
    names = ", ".join(f"scatter_{autoencoder.QUESTIONS[q].coverage}.png" for q in _compared_questions(req))
    print(f"outputs in {out} ({names}, figure.png)", flush=True)
    return summary


def _ae_restore(kind: str, req: AeRequest) -> dict:
    model, ae_summary = _restoration_ae(req)
    xv, _, desc = data.digits(28, req.data_source, "val")
    clean = xv[:AE_DIGITS] * 2 - 1                                          # model space [−1, 1]
    rng = np.random.default_rng(req.seed)
    iterations = (req.steps,) if req.steps else AE_ITERATIONS
    settings = []
    if kind == "denoise":
        for s in ((req.sigma,) if req.sigma is not None else AE_SIGMAS):
            y = (clean + rng.normal(0, s, clean.shape)).astype(np.float32)
            settings.append((f"sigma={s:g}", y, None, s))
    else:
        kind_of_mask = req.mask or AE_MASK
        m = np.stack([_mask_array(kind_of_mask, (28, 28), req.seed + i) for i in range(len(clean))])
        m = m[..., None].astype(np.float32)
        settings.append((f"mask={kind_of_mask}", (clean * m).astype(np.float32), m, AE_INPAINT_SIGMA))
    rows, panels = [], []
    to01 = lambda x: np.clip((np.asarray(x) + 1) / 2, 0, 1)               # noqa: E731
    ref = to01(clean)
    for name, y, m, s in settings:
        objective = O.DataTerm(y, sigma=s, mask=m) + autoencoder.AutoencoderTerm(model)
        run = Optimization(objective, param.Pixels(y.copy()), optimizers.Adam(),
                           optimizers.Schedule([optimizers.Stage(max(iterations), AE_LR, jitter=False)]),
                           labels=[f"digit{i}" for i in range(len(y))], seed=req.seed,
                           log_every=_log_every_hitting(min(iterations)),
                           config={"paper": "ae_prior", "task": kind, "setting": name})
        sub = req.out / report.safe_name(name)
        snaps = _Snapshots(iterations)
        run.run(callbacks.standard(sub, req.logdir / report.safe_name(name), req.resume, req.progress,
                                   checkpoint_every=1000) + [snaps])
        snapshots = {it: to01(snaps.images[it]) for it in sorted(iterations) if it in snaps.images}
        projected = to01(np.asarray(model(y, training=False)))
        entries = {"corrupted": to01(y), "AE(y) (one pass)": projected, **{f"AE prior, {it} it.": v
                                                                           for it, v in snapshots.items()}}
        if kind == "denoise":
            from skimage.restoration import denoise_tv_chambolle
            entries["TV (Chambolle)"] = np.stack([denoise_tv_chambolle(v, weight=0.1, channel_axis=-1)
                                                  for v in to01(y)])
        else:
            from skimage.restoration import inpaint_biharmonic
            entries["biharmonic"] = np.stack([inpaint_biharmonic(v, mm[..., 0] == 0, channel_axis=-1)
                                              for v, mm in zip(to01(y), m)])
        for method, v in entries.items():
            rows.append({"setting": name, "method": method, "psnr": float(np.mean(metrics.psnr(ref, v, 1.0))),
                         "ssim": float(np.mean(metrics.ssim(ref, v, 1.0)))})
        for i in range(3):
            panels += [(ref[i], "clean")] + [(v[i], f"{name}: {k}") for k, v in entries.items()]
    text = report.table(rows, [("setting", "setting", ""), ("method", "method", ""), ("PSNR (dB)", "psnr", ".2f"),
                               ("SSIM", "ssim", ".4f")])
    print(text, flush=True)
    summary = {"task": kind, "data": desc, "digits": len(clean), "rows": rows, "question": AE_RESTORATION_QUESTION,
               "prior_steps": ae_summary.get("steps"),
               "iterations": list(iterations), "learning_rate": AE_LR, "settings": [x[0] for x in settings]}
    report.write(req.out, title=f"autoencoder prior: {kind} ({desc})", metrics=summary, table=text,
                 figure_panels=panels, figure_columns=len(panels) // (3 * len(settings)))
    print(f"outputs in {req.out} (figure.png, metrics.json)", flush=True)
    return summary


AE_TASKS = {
    "train": ("train the AE with and without the coverage regulariser; reconstruction and coverage", _ae_train),
    "scatter": ("latent scatter plots with the five out-of-class probes, and the AE's outputs on them",
                _ae_scatter),
    "denoise": ("denoise digits (σ 0.1 and 0.5) with the AE prior after 1,000 and 10,000 iterations",
                lambda req: _ae_restore("denoise", req)),
    "inpaint": ("inpaint digits (--mask) with the AE prior after 1,000 and 10,000 iterations",
                lambda req: _ae_restore("inpaint", req)),
}

DIP = types.SimpleNamespace(
    DESCRIPTION="deep image prior (Ulyanov et al. 2018): denoise, inpaint, ×4 super-resolution, deblur, invert",
    EXPERIMENT_FLAG="task", EXPERIMENTS={k: t.description for k, t in DIP_TASKS.items()},
    DEFAULT_EXPERIMENT="denoise", run=run_dip, TASKS=DIP_TASKS, INVERT=DIP_INVERT, SIGMA=DIP_SIGMA,
    FACTOR=DIP_FACTOR, DOWNSAMPLER=DIP_DOWNSAMPLER)
AE_PRIOR = types.SimpleNamespace(
    DESCRIPTION="autoencoder prior on digits (the exercise): coverage regulariser, probes, denoise / inpaint",
    EXPERIMENT_FLAG="task", EXPERIMENTS={k: v[0] for k, v in AE_TASKS.items()}, DEFAULT_EXPERIMENT="denoise",
    run=run_ae_prior, SIGMAS=AE_SIGMAS, ITERATIONS=AE_ITERATIONS, LR=AE_LR,
    RESTORATION_QUESTION=AE_RESTORATION_QUESTION, QUESTIONS=autoencoder.QUESTIONS)
