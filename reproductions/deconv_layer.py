"""The learnable DFT deconvolution layer's experiments (``ml_masters_uct`` notebooks; ``shared/spec/deconv_layer.md``).

Every experiment trains the deconvolution layer and, side by side, a plain convolution of the same size, then
reports **held-out** metrics (PSNR and SSIM on images not trained on; test accuracy for classification) — not the
summed training losses the notebooks printed. Settings follow the notebooks (kernel sizes, learning rates, padding,
blur models) on embedded data: grey versions of the sample photos (notebooks: Lena, DIV2K, GOPRO, Kaggle SIR),
with a fixed sorted train/test split; ``--steps`` counts gradient updates (optimiser steps), not epochs;
``--data`` points at a folder instead (``HR/`` + ``LR/`` or ``sharp/`` +
``blur/`` pairs matched by sorted name). Classification uses CIFAR-100 through ``keras.datasets`` when it can
be downloaded, else a synthetic 32×32 stand-in (recorded in the metrics).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from tfrestore import data, degrade, metrics, report
from tfrestore.deconv import DeconvDFT2D

DESCRIPTION = "learnable DFT deconvolution layer: deblurring, super-resolution, classification"
TEST_IMAGES = ("astronaut", "coffee")
FOUR_FACTOR_H = np.array([[1.0, 0.2, 0.0, 0.0], [0.2, 0.0, 0.0, 0.0]])   # notebook 01's monic kernel
MOTION = np.full((1, 9), 1 / 9)                                          # the synthetic GOPRO-style blur

EXPERIMENTS = {
    "four_factor": "nb01: learn the inverse of a periodic four-factor blur (h = [[1,.2,0,0],[.2,0,0,0]])",
    "box": "nb05: 3×3 box blur (linear, zero border), deconv 4×4 with learnable scale, unpadded and padded",
    "gaussian": "nb06: 5×5 Gaussian σ=1, centred (and nb06's off-centre storage), deconv 4×4, padded",
    "superres": "nb08–10: ×2 bicubic down / bilinear up, deconv 6×6 (2×4 for SSIM) vs conv 3×3, L2 / L1 / SSIM",
    "gopro": "nb03: blurred/sharp pairs (embedded: synthetic 1×9 motion blur), deconv 10×10",
    "classification": "nb04: ConvNetTiny2 with deconv 4×4 or conv 3×3 in front, CIFAR-100 (or synthetic stand-in)",
    "classification_resnet": "nb07: ResNet-18 at 32×32 with deconv / conv / nothing in front",
}


def _grey(sources, size) -> np.ndarray:
    """Sample names or image paths → grey float images in [0, 1], centre-cropped to size², shape [N, H, W, 1]."""
    imgs = [data.load_image(src, size, crop="center").astype(np.float32).mean(-1) / 255.0 for src in sources]
    return np.stack(imgs)[..., None]


def _holdout(imgs):
    k = max(1, len(imgs) // 5)
    return imgs[:-k], imgs[-k:]


def _split(size, folder=None):
    if folder:
        return _holdout(_grey(data.image_folder(folder), size))
    names = data.sample_image_names()
    return _grey([n for n in names if n not in TEST_IMAGES], size), _grey(TEST_IMAGES, size)


def _pad(x, p):
    return np.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x


def _scores(pred, target, border):
    if border:
        pred, target = pred[:, border:-border, border:-border], target[:, border:-border, border:-border]
    pred = np.clip(pred, 0, 1)
    return {"psnr": float(np.mean(metrics.psnr(target, pred, 1.0))),
            "ssim": float(np.mean(metrics.ssim(target[..., 0], pred[..., 0], 1.0)))}


def _ssim_loss(y, p):
    return 1.0 - tf.reduce_mean(tf.image.ssim(y, p, 1.0))


LOSSES = {"l2": "mse", "l1": "mae", "ssim": _ssim_loss}


def _progress(name: str, steps: int) -> keras.callbacks.Callback:
    """A line every tenth of the run: step, loss."""
    every = max(steps // 10, 1)

    def line(epoch, logs):
        if (epoch + 1) % every == 0 or epoch + 1 == steps:
            print(f"  {name}: step {epoch + 1}/{steps}  loss {logs['loss']:.5g}", flush=True)
    return keras.callbacks.LambdaCallback(on_epoch_end=line)


def _fit(layer, x, y, *, lr, steps, loss, batch, logdir, name, seed):
    """Train ``layer`` alone for ``steps`` gradient updates (one batch each; a batch never spans two passes)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input(x.shape[1:])
    model = keras.Model(inp, layer(inp), name=name)
    model.compile(keras.optimizers.Adam(lr), LOSSES[loss])
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch or len(x)).repeat()
    cbs = [_progress(name, steps)] + ([keras.callbacks.TensorBoard(str(Path(logdir) / name))] if logdir else [])
    hist = model.fit(batches, epochs=steps, steps_per_epoch=1, verbose=0, callbacks=cbs, shuffle=False)
    return model, float(hist.history["loss"][-1])


@dataclasses.dataclass(frozen=True)
class Restoration:
    """One restoration arm: deconv layer vs a same-size conv, trained on degraded → clean grey images.

    ``pad`` zero-pads each image (before the degradation when ``degrade_padded``, else after); ``border`` pixels
    are left out of the scores; ``batch=None`` trains on the whole set at once; ``folder_pairs`` are the
    sub-folders (clean, degraded) read from ``--data`` when it has them."""
    label: str
    size: int
    degrade: Callable[[np.ndarray], np.ndarray]
    deconv: dict
    conv_size: tuple[int, int]
    lr: float
    steps: int
    pad: int = 0
    degrade_padded: bool = True
    loss: str = "l2"
    batch: int | None = 8
    border: int = 0
    folder_pairs: tuple[str, str] | None = None
    pad_folder_pairs: bool = True       # real pairs from --data padded like the synthetic ones
    extra: dict = dataclasses.field(default_factory=dict)    # recorded with the arm's results


def _down_up(x):
    """×2 bicubic down-sampling (antialiased), bilinear back up: notebook 08's low-resolution input."""
    h, w = x.shape[1:3]
    return tf.image.resize(tf.image.resize(x, (h // 2, w // 2), "bicubic", antialias=True), (h, w),
                           "bilinear").numpy()


def _blur(kernel, boundary, centred=True):
    return lambda x: degrade.blur(x, kernel, boundary, centred).astype(np.float32)


RESTORATIONS = {
    "four_factor": [Restoration("four_factor", 48, lambda x: degrade.four_factor_blur(x, FOUR_FACTOR_H).astype(
        np.float32), dict(kernel_size=(2, 4)), (2, 4), lr=1e-2, steps=2000, pad=24, batch=None,
        extra={"true_kernel": FOUR_FACTOR_H.tolist()})],
    "box": [Restoration(f"box, padding {p}", 128, _blur(degrade.box_kernel(3), "zero"),
                        dict(kernel_size=(4, 4), learnable_scale=True), (4, 4), lr=1e-3, steps=500, pad=p, border=p)
            for p in (0, 32)],
    "gaussian": [Restoration(f"gaussian, {label}", 128, _blur(degrade.gaussian_kernel(5, 1.0), "circular", centred),
                             dict(kernel_size=(4, 4)), (4, 4), lr=5e-3, steps=300, pad=32, border=32)
                 for centred, label in ((True, "centred"), (False, "off-centre (nb06: shifts by 2 px)"))],
    "superres": [Restoration(f"super-resolution ×2, {loss} loss", 128, _down_up, dict(kernel_size=k), (3, 3), lr=1e-3,
                             steps=200, pad=16, degrade_padded=False, loss=loss, border=16, folder_pairs=("HR", "LR"))
                 for loss, k in (("l2", (6, 6)), ("l1", (6, 6)), ("ssim", (2, 4)))],
    "gopro": [Restoration("GOPRO-style deblurring", 128, _blur(MOTION, "zero"), dict(kernel_size=(10, 10)), (10, 10),
                          lr=1e-3, steps=100, pad=64, degrade_padded=False, batch=16, border=64,
                          folder_pairs=("sharp", "blur"), pad_folder_pairs=False)],
}


def _pairs(folder, a, b, size):
    """Images in folder/a and folder/b matched by sorted position; b resized to a's size (same-size restoration)."""
    fa, fb = data.image_folder(Path(folder) / a), data.image_folder(Path(folder) / b)
    if len(fa) != len(fb):
        raise ValueError(f"{folder}: {len(fa)} files in {a}/ but {len(fb)} in {b}/; they are matched by sorted name")
    (xa_tr, xa_te), (xb_tr, xb_te) = _holdout(_grey(fa, size)), _holdout(_grey(fb, size))
    return (xb_tr, xa_tr), (xb_te, xa_te)


def _arm_data(arm: Restoration, folder):
    """((degraded, clean) train, (degraded, clean) test, border) for one arm."""
    if folder and arm.folder_pairs and (Path(folder) / arm.folder_pairs[0]).is_dir():
        (xtr, ytr), (xte, yte) = _pairs(folder, *arm.folder_pairs, arm.size)
        pad = arm.pad if arm.pad_folder_pairs else 0
        return (_pad(xtr, pad), _pad(ytr, pad)), (_pad(xte, pad), _pad(yte, pad)), (arm.border if pad else 0)
    tr, te = _split(arm.size, folder)
    if arm.degrade_padded:
        tr, te = _pad(tr, arm.pad), _pad(te, arm.pad)
        return (arm.degrade(tr), tr), (arm.degrade(te), te), arm.border
    return (_pad(arm.degrade(tr), arm.pad), _pad(tr, arm.pad)), (_pad(arm.degrade(te), arm.pad), _pad(te, arm.pad)), \
        arm.border


def _restoration(arm: Restoration, *, steps, folder, logdir, seed):
    (xtr, ytr), (xte, yte), border = _arm_data(arm, folder)
    steps = steps or arm.steps
    name = report.safe_name(arm.label)
    out = {"blurred input": _scores(xte, yte, border)}
    dl = DeconvDFT2D(**arm.deconv)
    fit = dict(lr=arm.lr, steps=steps, loss=arm.loss, batch=arm.batch, logdir=logdir, seed=seed)
    dm, dloss = _fit(dl, xtr, ytr, name=f"{name}_deconv", **fit)
    out["deconv"] = {**_scores(dm.predict(xte, verbose=0), yte, border), "train_loss": dloss,
                     "kernel": np.round(dl.kernel().numpy(), 4).tolist()}
    if dl.learnable_scale:
        out["deconv"]["scale"] = float(dl.scale.numpy())
    cm, closs = _fit(keras.layers.Conv2D(1, arm.conv_size, padding="same"), xtr, ytr, name=f"{name}_conv", **fit)
    out["conv"] = {**_scores(cm.predict(xte, verbose=0), yte, border), "train_loss": closs}
    return out, (xte[:1], dm.predict(xte[:1], verbose=0), cm.predict(xte[:1], verbose=0), yte[:1])


def _restorations(experiment):
    def runner(*, steps, folder, logdir, seed):
        results, example = {}, None
        for arm in RESTORATIONS[experiment]:
            label = arm.label + (" (synthetic motion blur)" if arm.label.startswith("GOPRO") and not folder else "")
            results[label], ex = _restoration(arm, steps=steps, folder=folder, logdir=logdir, seed=seed)
            results[label].update(arm.extra)
            example = example or ex
        return results, example
    return runner


def _cifar(seed, n_train=2000, n_test=500):
    try:
        (xtr, ytr), (xte, yte) = keras.datasets.cifar100.load_data()
        source = "CIFAR-100"
        xtr, ytr, xte, yte = xtr[:n_train], ytr[:n_train], xte[:n_test], yte[:n_test]
    except Exception:   # no network: a synthetic stand-in with class-dependent colour and frequency
        rng = np.random.default_rng(seed)
        source = "synthetic stand-in (CIFAR-100 not reachable)"

        def make(n):   # 20 classes of noisy oriented gratings; colour and frequency overlap between classes
            y = rng.integers(0, 20, n)
            yy, xx = np.mgrid[0:32, 0:32] / 32.0
            angle = (y % 5) * np.pi / 5 + rng.normal(0, 0.15, n)
            freq = 3 + (y // 5) * 1.5 + rng.normal(0, 0.6, n)
            phase = rng.uniform(0, 2 * np.pi, n)
            g = np.sin(2 * np.pi * freq[:, None, None] * (np.cos(angle)[:, None, None] * xx +
                                                           np.sin(angle)[:, None, None] * yy) + phase[:, None, None])
            colour = rng.uniform(0.2, 0.8, (n, 1, 1, 3))
            img = 0.5 + 0.25 * g[..., None] * colour + rng.normal(0, 0.35, (n, 32, 32, 3))
            return (np.clip(img, 0, 1) * 255).astype(np.uint8), y[:, None]
        (xtr, ytr), (xte, yte) = make(n_train), make(n_test)
    norm = lambda x: (x.astype(np.float32) / 255.0 - 0.5) / 0.5
    return norm(xtr), ytr, norm(xte), yte, source


def _convnet_tiny2(front, classes):
    inp = keras.Input((32, 32, 3))
    x = front(inp) if front is not None else inp
    x = keras.layers.Conv2D(3, 3, padding="same")(x)
    for filters in (None, 64, 128):
        if filters:
            x = keras.layers.Conv2D(filters, 3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        if filters != 128:
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64)(x)
    return keras.Model(inp, keras.layers.Dense(classes)(x))


CLASSIFICATION_BATCH = 32


def _classify(arms, *, steps, logdir, seed):
    xtr, ytr, xte, yte, source = _cifar(seed)
    classes = int(max(ytr.max(), yte.max())) + 1
    results = {}
    for name, build in arms.items():
        keras.utils.set_random_seed(seed)
        model = build(classes)
        model.compile(keras.optimizers.Adam(1e-4 if "resnet" in name else 1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        batches = tf.data.Dataset.from_tensor_slices((xtr, ytr)).shuffle(len(xtr), seed=seed).batch(
            CLASSIFICATION_BATCH).repeat()
        cbs = [_progress(name, steps)] + ([keras.callbacks.TensorBoard(str(Path(logdir) / report.safe_name(name)))]
                                          if logdir else [])
        h = model.fit(batches, epochs=steps, steps_per_epoch=1, verbose=0, callbacks=cbs, shuffle=False)
        _, acc = model.evaluate(xte, yte, verbose=0)
        results[name] = {"test_accuracy": float(acc), "train_accuracy": float(h.history["accuracy"][-1])}
    return {f"classification on {source}": results}, None


def _passes(epochs: int, n: int = 2000) -> int:
    """The notebooks' epochs over the 2,000 training images, in steps of batch 32."""
    return epochs * -(-n // CLASSIFICATION_BATCH)


def classification(*, steps, folder, logdir, seed):
    return _classify({"deconv 4×4 in front": lambda c: _convnet_tiny2(DeconvDFT2D((4, 4)), c),
                      "conv 3×3 in front": lambda c: _convnet_tiny2(keras.layers.Conv2D(3, 3, padding="same"), c)},
                     steps=steps or _passes(5), logdir=logdir, seed=seed)


def classification_resnet(*, steps, folder, logdir, seed):
    from tfrestore import nets

    def resnet(front):
        def build(classes):
            body = nets.build("resnet18", weights="auto", image_size=32, quiet=True)
            head = keras.layers.Dense(classes)(body.get_layer("avgpool").output)
            trunk = keras.Model(body.input, head)
            inp = keras.Input((32, 32, 3))
            return keras.Model(inp, trunk(front(inp) if front else inp))
        return build
    return _classify({"resnet18 + deconv 4×4": resnet(DeconvDFT2D((4, 4))),
                      "resnet18 + conv 3×3": resnet(keras.layers.Conv2D(3, 3, padding="same")),
                      "resnet18 alone": resnet(None)}, steps=steps or _passes(3), logdir=logdir, seed=seed)


RUNNERS = {**{name: _restorations(name) for name in RESTORATIONS}, "classification": classification,
           "classification_resnet": classification_resnet}
DEFAULT_EXPERIMENT = "four_factor"


def _table(results) -> str:
    lines = []
    for setting, arms in results.items():
        lines.append(setting)
        for arm, m in arms.items():
            if not isinstance(m, dict):
                continue
            cells = "  ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float))
            lines.append(f"    {arm:<28}{cells}")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def _figure_panels(example):
    if example is None:
        return []
    return [(img[0, ..., 0], cap) for img, cap in zip(example, ("input", "deconv layer", "conv baseline", "target"))]


def run(*, experiment: str = DEFAULT_EXPERIMENT, steps: int | None = None, out: str | None = None,
        logdir: str | None = None, seed: int = 0, data: str | None = None) -> dict:
    if experiment not in RUNNERS:
        raise ValueError(f"unknown experiment '{experiment}' for deconv; valid: {', '.join(RUNNERS)}")
    out = Path(out or f"runs/deconv_{experiment}")
    out.mkdir(parents=True, exist_ok=True)
    logdir = logdir or out / "tb"
    print(f"deconv layer: {EXPERIMENTS[experiment]}", flush=True)
    results, example = RUNNERS[experiment](steps=steps, folder=data, logdir=logdir, seed=seed)
    text = _table(results)
    payload = {"experiment": experiment, "description": EXPERIMENTS[experiment], "steps_override": steps,
               "data": data or "embedded sample photos", "results": results}
    report.write(out, title=EXPERIMENTS[experiment], metrics=payload, table=text,
                 figure_panels=_figure_panels(example))
    print(f"outputs in {out}", flush=True)
    return payload
