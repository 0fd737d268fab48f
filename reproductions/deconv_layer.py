"""The learnable DFT deconvolution layer's experiments (``ml_masters_uct`` notebooks; ``shared/spec/deconv_layer.md``).

Every experiment trains the deconvolution layer and, side by side, a plain convolution of the same size, then
reports **held-out** metrics (PSNR and SSIM on images not trained on; test accuracy and loss for classification)
— not the summed training losses the notebooks printed. Settings follow the notebooks (``deconv_layer.md`` §2:
kernel sizes, learning rates per arm, image sizes, padding amounts, blur models, batch sizes, epochs) on embedded
data: grey versions of the sample photos (notebooks: Lena, DIV2K, GOPRO, Kaggle SIR), with a fixed sorted
train/test split; ``--data`` points at a folder instead (``HR/`` + ``LR/`` or ``sharp/`` + ``blur/`` pairs
matched by sorted name; for ``audio`` the UrbanSound8K folder). nb12 / nb13 (``srcnn``, ``srcnn_dct``) train the
correct multi-filter deconv beside the notebook's own (its reversal bug re-created, ``deconv_layer.md`` §1.6) and
the 9×9 conv, and report the bilinear up-sampled input, which none of them reaches in the notebooks' 30 epochs
(nor did the notebooks: nb13's bilinear input scores 0.00077 per batch against its deconv's 0.0033).

Epochs and steps: a notebook's epoch is one pass over its training data in batches of its batch size, so the
default length here is ``epochs × ⌈training images / batch⌉`` gradient updates on the data actually used (the
notebooks' 50,000 CIFAR-100 images in batches of 32 give their 1,563 per epoch); ``--steps`` sets the number of
gradient updates instead. Both are recorded in the outputs.

Classification uses the full CIFAR-100 training set (50,000) and its test split through ``keras.datasets`` when
it is available (cached or downloadable), else a synthetic 32×32 stand-in of 2,000 training images; which one
ran is stated in the results' heading and in ``metrics.json``. Baseline convolutions are initialised as PyTorch's
``Conv2d`` default (uniform ±1/√fan_in, weights and bias), as the notebooks' were.

Training runs through :class:`tfrestore.train.training.Trainer` (compiled step blocks, checkpoints in ``<out>/<arm>/ckpt``
so ``--resume`` continues an interrupted arm, TensorBoard, progress lines, SIGINT / SIGTERM) with the batches
``keras.Model.fit`` was given before (:class:`_FitBatches`): a fixed order whose batches never span two passes for
the restorations, a seeded shuffle per pass for classification.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from tfrestore import data
from tfrestore.restore import degrade
from tfrestore.measure import metrics
from tfrestore.core import report
from tfrestore.train import training
from tfrestore.models.deconv import DeconvDFT1D, DeconvDFT2D, dct2

from . import common, paper
from .paper import flag

DESCRIPTION = "learnable DFT deconvolution layer: deblurring, super-resolution, classification"
TEST_IMAGES = ("astronaut", "coffee")
FOUR_FACTOR_H = np.array([[1.0, 0.2, 0.0, 0.0], [0.2, 0.0, 0.0, 0.0]])   # notebook 01's monic kernel
BOX_SIZE, BOX_BOUNDARY = 3, "zero"               # nb05: conv2d with a 3×3 kernel of ninths, padding 'same'
GAUSSIAN_SIZE, GAUSSIAN_SIGMA, GAUSSIAN_BOUNDARY = 5, 1.0, "circular"    # nb06: 5×5, σ 1, once through the FFT
MOTION = np.full((1, 9), 1 / 9)                  # the embedded stand-in for GOPRO's pairs: a 1×9 motion blur

EXPERIMENTS = {
    "four_factor": "nb01: learn the inverse of a periodic four-factor blur (h = [[1,.2,0,0],[.2,0,0,0]])",
    "box": "nb05: 3×3 box blur (linear, zero border), deconv 4×4 with learnable scale, unpadded and padded",
    "gaussian": "nb06: 5×5 Gaussian σ=1, centred (and nb06's off-centre storage), deconv 4×4, padded",
    "superres": "nb08–10: ×2 bicubic down / bilinear up, deconv 6×6 (2×4 for SSIM) vs conv 3×3, L2 / L1 / SSIM",
    "ssim_l1": "nb11: as nb10 with the loss (1 − SSIM) + L1, deconv 2×4 vs conv 3×3",
    "srcnn": "nb12: ×2 super-resolution, 96² HR crops, deconv 9×9 ×64 (or conv 9×9) → 1×1 → 5×5 → PixelShuffle, MSE",
    "srcnn_dct": "nb13: as nb12 on 32² HR crops with the DCT-MSE loss (equal to the pixel MSE)",
    "gopro": "nb03: blurred/sharp pairs (embedded: synthetic 1×9 motion blur), deconv 10×10",
    "classification": "nb04: ConvNetTiny2 with deconv 4×4 or conv 3×3 in front, CIFAR-100 (or synthetic stand-in)",
    "classification_resnet": "nb07: ResNet-18 at 32×32 with deconv / conv / nothing in front",
    "audio": "HEAD AudioDNN: 1-D deconv (k 2, mode deconv / conv) → ReLU → dense 89,009 → 10, UrbanSound8K",
}


def _centre(img: np.ndarray, size: int) -> np.ndarray:
    """The centre size² pixels (a photo smaller than that: its centred square resized up)."""
    h, w = img.shape[:2]
    if min(h, w) < size:
        return data.resize(img, size, crop="center")
    top, left = (h - size) // 2, (w - size) // 2
    return img[top:top + size, left:left + size]


def _grey(sources, size, load: str = "resize") -> np.ndarray:
    """Sample names or image paths → grey float images in [0, 1] of size², shape [N, H, W, 1]: each photo resized
    whole (``load="resize"``, aspect not kept) or its centre cropped (``"crop"``)."""
    if load not in ("resize", "crop"):
        raise ValueError(f"load must be 'resize' or 'crop', got {load!r}")
    imgs = [data.load_image(src, size) if load == "resize" else _centre(data.load_image(src), size)
            for src in sources]
    return np.stack([img.astype(np.float32).mean(-1) / 255.0 for img in imgs])[..., None]


def _holdout(imgs):
    k = max(1, len(imgs) // 5)
    return imgs[:-k], imgs[-k:]


@functools.lru_cache(maxsize=4)          # the arms of an experiment share their images
def _split(size, folder=None, load="resize"):
    """(train, test) grey images: the embedded photos but TEST_IMAGES, and TEST_IMAGES (or a folder, 80 / 20)."""
    if folder:
        train, test = _holdout(_grey(data.image_folder(folder), size, load))
    else:
        names = data.sample_image_names()
        train, test = _grey([n for n in names if n not in TEST_IMAGES], size, load), _grey(TEST_IMAGES, size, load)
    for a in (train, test):
        a.setflags(write=False)           # shared by the cache
    return train, test


def _pad(x, p):
    return np.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x


def _scores(pred, target, border):
    if border:
        pred, target = pred[:, border:-border, border:-border], target[:, border:-border, border:-border]
    pred = np.clip(pred, 0, 1)
    return {"psnr": float(np.mean(metrics.psnr(target, pred, 1.0))),
            "ssim": float(np.mean(metrics.ssim(target[..., 0], pred[..., 0], 1.0)))}


def _ssim_loss(y, p):
    """1 − SSIM as nb10 / nb11 took it from torchmetrics' defaults: Gaussian window 11, σ 1.5, K = (0.01, 0.03),
    the data range estimated from each batch (the larger of the prediction's and the target's max − min)."""
    data_range = tf.maximum(tf.reduce_max(p) - tf.reduce_min(p), tf.reduce_max(y) - tf.reduce_min(y))
    return 1.0 - tf.reduce_mean(tf.image.ssim(y, p, data_range))


class _SsimLoss(keras.losses.Loss):
    """:func:`_ssim_loss` as a Keras loss (what ``compile`` made of the function: a scalar, reduced as itself)."""

    def call(self, y_true, y_pred):
        return _ssim_loss(y_true, y_pred)


def _ssim_l1_loss(y, p):
    """nb11: (1 − SSIM) + L1, each part as nb10 and nb09 took it (the SSIM of :func:`_ssim_loss`, the mean
    absolute error)."""
    return _ssim_loss(y, p) + tf.reduce_mean(tf.abs(y - p))


def _dct_mse(y, p):
    """nb13's "DCT-MSE": the MSE of orthonormal 2-D DCT-II coefficients (``LossModules.DCT``) — by orthonormality
    the pixel MSE itself (``deconv_layer.md`` §4.3), computed the notebook's way all the same."""
    return tf.reduce_mean(tf.square(dct2(y) - dct2(p)))


class _FnLoss(keras.losses.Loss):
    """A loss function of (target, prediction) returning its batch scalar, as a Keras loss."""

    def __init__(self, fn, name):
        super().__init__(name=name)
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


# the notebooks' losses as keras.Model.compile reduced them (the mean over the batch, "sum_over_batch_size")
LOSSES = {"l2": keras.losses.MeanSquaredError(), "l1": keras.losses.MeanAbsoluteError(), "ssim": _SsimLoss(),
          "ssim_l1": _FnLoss(_ssim_l1_loss, "ssim_l1"), "dct_mse": _FnLoss(_dct_mse, "dct_mse")}


def torch_default_conv(filters: int, kernel_size, in_channels: int, seed: int) -> keras.layers.Conv2D:
    """A 'same' Conv2D (with bias) initialised as PyTorch's ``Conv2d`` default: weights and bias uniform in
    ±1/√fan_in, fan_in = in_channels·kh·kw."""
    kh, kw = (kernel_size, kernel_size) if np.ndim(kernel_size) == 0 else kernel_size
    bound = 1.0 / math.sqrt(in_channels * kh * kw)
    return keras.layers.Conv2D(filters, (kh, kw), padding="same",
                               kernel_initializer=keras.initializers.RandomUniform(-bound, bound, seed=seed),
                               bias_initializer=keras.initializers.RandomUniform(-bound, bound, seed=seed + 1))


def _steps_for(epochs: int, n_train: int, batch: int | None) -> int:
    """The notebooks' epochs as gradient updates: epochs × ⌈n / batch⌉ (a whole-set batch: one per epoch)."""
    return epochs * (1 if batch is None else -(-n_train // batch))


class _FitBatches(training.Source):
    """The training arrays (a dict of equal-length arrays, first axis the sample) batched as the experiments gave
    them to ``keras.Model.fit`` before they trained through :class:`tfrestore.train.training.Trainer`:
    ``Dataset.from_tensor_slices(arrays)[.shuffle(n, seed)].batch(batch).repeat()`` — in order, a batch never
    spanning two passes (the last one of a pass is smaller, as a PyTorch DataLoader's), or reshuffled every pass
    with a fixed seed (``shuffle_seed``). The Trainer takes the batches from :meth:`batches`; :meth:`load` serves
    only its one-sample probe of the loss terms (eager)."""

    def __init__(self, arrays: dict[str, np.ndarray], batch: int, shuffle_seed: int | None = None):
        self.arrays, self.batch, self.shuffle_seed = arrays, batch, shuffle_seed
        self.size = len(next(iter(arrays.values())))

    def load(self, index, draw) -> dict:
        return {k: tf.convert_to_tensor(v[int(index)]) for k, v in self.arrays.items()}

    def batches(self, start: int) -> tf.data.Dataset:
        """The batches of steps start, start + 1, … (a resumed training continues the same sequence)."""
        ds = tf.data.Dataset.from_tensor_slices(self.arrays)
        if self.shuffle_seed is not None:
            ds = ds.shuffle(self.size, seed=self.shuffle_seed)
        return ds.batch(self.batch).repeat().skip(start)


class _FitTrainer(training.Trainer):
    """:class:`tfrestore.train.training.Trainer` on :class:`_FitBatches`, logging at step 1 (the loss at the initial
    weights), every tenth of the run and the last two steps (the last log point's training loss is then the last
    batch's, as fit's last epoch of one step reported it)."""

    def dataset(self, start: int) -> tf.data.Dataset:
        return self.source.batches(start)

    def log_points(self) -> list[int]:
        n = self.cfg.steps
        return sorted(({1, n - 1, n} | set(range(max(n // 10, 1), n + 1, max(n // 10, 1)))) - {0})


def _train(model: keras.Model, batches: _FitBatches, loss_fn, *, lr: float, steps: int, ctx: paper.RunContext,
           name: str) -> dict:
    """Train ``model`` for ``steps`` gradient updates with Adam at ``lr`` (Keras' defaults otherwise, as
    ``model.compile(keras.optimizers.Adam(lr))``) on ``batches``; checkpoints in ``ctx.out/name`` (continued with
    ``ctx.resume``), TensorBoard in ``ctx.logdir/name``. Returns the first and the last batch's training terms
    (``initial_train_<term>``, ``train_<term>``; the first is the loss at the initial weights)."""
    config = training.TrainingConfig(steps=steps, batch=batches.batch, learning_rate=lr, shuffle=False,
                                     checkpoint_every=max(steps // 2, 1))
    trainer = _FitTrainer(model, loss_fn, batches, config, name=name, describe={"arm": name})
    trainer.run(ctx.out / name, logdir=ctx.logdir / name, resume=ctx.resume, progress=ctx.progress)
    first, last = trainer.history[0], trainer.history[-1]
    terms = [k[len("train_"):] for k in last if k.startswith("train_")]
    return {**{f"initial_train_{t}": first[f"train_{t}"] for t in terms}, **{f"train_{t}": last[f"train_{t}"]
                                                                             for t in terms}}


def _fit(layer, pairs: tuple[np.ndarray, np.ndarray], *, lr: float, steps: int, loss: str, batch: int | None,
         ctx: paper.RunContext, name: str):
    """Train ``layer`` alone on ``pairs`` (degraded x, clean y: [N, H, W, 1] each) for ``steps`` gradient updates in
    batches of ``batch`` (None: the whole set) in a fixed order (:class:`_FitBatches`); the model and its first and
    last training losses."""
    x, y = pairs
    keras.utils.set_random_seed(ctx.seed)
    inp = keras.Input(x.shape[1:])
    model = keras.Model(inp, layer(inp), name=name)
    loss_of = LOSSES[loss]

    def loss_fn(m, b, training_):
        return {"loss": loss_of(b["y"], m(b["x"], training=training_))}
    terms = _train(model, _FitBatches({"x": x, "y": y}, batch or len(x)), loss_fn, lr=lr, steps=steps, ctx=ctx,
                   name=name)
    return model, {"initial_train_loss": terms["initial_train_loss"], "train_loss": terms["train_loss"]}


@dataclasses.dataclass(frozen=True)
class Restoration:
    """One restoration arm: deconv layer vs a same-size conv, trained on degraded → clean grey images.

    ``load``: how a photo becomes a size² grey image — "resize" (the whole image, aspect not kept: nb01, nb05,
    nb06, nb08) or "crop" (its centre size² pixels: nb03). ``pad`` zero-pads each image (before the degradation
    when ``degrade_padded``, else after; real pairs from ``--data`` after, as the notebooks framed both);
    ``border`` pixels are left out of the scores; ``batch=None`` trains on the whole set at once; ``epochs`` are
    passes over the training images (:func:`_steps_for`); ``conv_lr`` is the baseline's rate where the notebook
    gave it another one; ``folder_pairs`` are the sub-folders (clean, degraded) read from ``--data``."""
    label: str
    size: int
    degrade: Callable[[np.ndarray], np.ndarray]
    deconv: dict
    conv_size: tuple[int, int]
    lr: float
    epochs: int
    conv_lr: float | None = None
    load: str = "resize"
    pad: int = 0
    degrade_padded: bool = True
    loss: str = "l2"
    batch: int | None = 8
    border: int = 0
    folder_pairs: tuple[str, str] | None = None
    extra: dict = dataclasses.field(default_factory=dict)    # recorded with the arm's results

    @property
    def baseline_lr(self) -> float:
        return self.lr if self.conv_lr is None else self.conv_lr


def _down_up(x):
    """×2 bicubic down-sampling (antialiased), bilinear back up: notebook 08's low-resolution input, brought to
    the high-resolution size."""
    h, w = x.shape[1:3]
    return tf.image.resize(tf.image.resize(x, (h // 2, w // 2), "bicubic", antialias=True), (h, w),
                           "bilinear").numpy()


def _blur(kernel, boundary, centred=True):
    return lambda x: degrade.blur(x, kernel, boundary, centred).astype(np.float32)


def _four_factor(x):
    return degrade.four_factor_blur(x, FOUR_FACTOR_H).astype(np.float32)


BOX_PADDINGS = (0, 32)       # nb05 ran unpadded (PAD_SIZE = 0); the README's padded run used SIZE // 4
SUPERRES_ARMS = (("l2", (6, 6), 1e-2), ("l1", (6, 6), 1e-3), ("ssim", (2, 4), 1e-3))   # nb08, nb09, nb10
RESTORATIONS = {
    # nb01: Lena 48² in 24 px of zeros (96²), periodic four-factor blur, Deconv2D((2,4)), Adam 1e-2, 2,000 steps
    "four_factor": [Restoration("four_factor", 48, _four_factor, dict(kernel_size=(2, 4)), (2, 4), lr=1e-2,
                                epochs=2000, pad=24, batch=None, extra={"true_kernel": FOUR_FACTOR_H.tolist()})],
    # nb05: 128² unpadded, 3×3 box 'same' (zero border), Deconv2D((4,4)) × scale 0.5, Adam 1e-3, batch 8, 500 epochs
    "box": [Restoration(f"box, padding {p}", 128, _blur(degrade.box_kernel(BOX_SIZE), BOX_BOUNDARY),
                        dict(kernel_size=(4, 4), learnable_scale=True, scale_init=0.5), (4, 4), lr=1e-3, epochs=500,
                        pad=p, border=p) for p in BOX_PADDINGS],
    # nb06: 128² in 32 px of zeros (192²), 5×5 Gaussian σ 1 stored top-left (a (2, 2) shift) applied circularly;
    # Deconv2D((4,4)), Adam 5e-3, batch 16, 300 epochs. The centred arm shows what the layer can do without the shift.
    "gaussian": [Restoration(f"gaussian, {label}", 128, _blur(degrade.gaussian_kernel(GAUSSIAN_SIZE, GAUSSIAN_SIGMA),
                                                                GAUSSIAN_BOUNDARY, centred),
                             dict(kernel_size=(4, 4)), (4, 4), lr=5e-3, epochs=300, pad=32, border=32, batch=16,
                             extra={"kernel_anchor": "centre" if centred else "top-left"})
                 for centred, label in ((True, "centred"), (False, "off-centre (nb06: shifts by 2 px)"))],
    # nb08–nb10: HR and up-sampled LR at 384², 48 px of zeros (480²), batch 8, 200 epochs; deconv Adam 1e-3,
    # the 3×3 conv 1e-2 in nb08 (MSE) and 1e-3 in nb09 (L1) and nb10 (1 − SSIM)
    "superres": [Restoration(f"super-resolution ×2, {loss} loss", 384, _down_up, dict(kernel_size=k), (3, 3), lr=1e-3,
                             conv_lr=conv_lr, epochs=200, pad=48, degrade_padded=False, loss=loss, border=48,
                             folder_pairs=("HR", "LR")) for loss, k, conv_lr in SUPERRES_ARMS],
    # nb11: nb10's data and arms with (1 − SSIM) + L1; deconv (2,4) and the 3×3 conv both at Adam 1e-3, 200 epochs
    "ssim_l1": [Restoration("super-resolution ×2, ssim_l1 loss", 384, _down_up, dict(kernel_size=(2, 4)), (3, 3),
                            lr=1e-3, conv_lr=1e-3, epochs=200, pad=48, degrade_padded=False, loss="ssim_l1",
                            border=48, folder_pairs=("HR", "LR"),
                            extra={"notebook_final_loss_per_batch": {"deconv": round(0.51961 / 3, 5),
                                                                     "conv": round(0.66581 / 3, 5)}})],
    # nb03: 128² centre crops in 64 px of zeros (256²), Deconv2D((10,10)), Adam 1e-3, batch 16, 100 epochs
    "gopro": [Restoration("GOPRO-style deblurring", 128, _blur(MOTION, "zero"), dict(kernel_size=(10, 10)), (10, 10),
                          lr=1e-3, epochs=100, load="crop", pad=64, degrade_padded=False, batch=16, border=64,
                          folder_pairs=("sharp", "blur"))],
}


def _pairs(folder, a, b, size, load="resize"):
    """Images in folder/a and folder/b matched by sorted position, both brought to size² (same-size
    restoration: the degraded ones up-sampled where they are smaller)."""
    fa, fb = data.image_folder(Path(folder) / a), data.image_folder(Path(folder) / b)
    if len(fa) != len(fb):
        raise ValueError(f"{folder}: {len(fa)} files in {a}/ but {len(fb)} in {b}/; they are matched by sorted name")
    (xa_tr, xa_te), (xb_tr, xb_te) = _holdout(_grey(fa, size, load)), _holdout(_grey(fb, size, load))
    return (xb_tr, xa_tr), (xb_te, xa_te)


def _arm_data(arm: Restoration, folder):
    """((degraded, clean) train, (degraded, clean) test) for one arm."""
    if folder and arm.folder_pairs and (Path(folder) / arm.folder_pairs[0]).is_dir():
        (xtr, ytr), (xte, yte) = _pairs(folder, *arm.folder_pairs, arm.size, arm.load)
        return (_pad(xtr, arm.pad), _pad(ytr, arm.pad)), (_pad(xte, arm.pad), _pad(yte, arm.pad))
    tr, te = _split(arm.size, folder, arm.load)
    if arm.degrade_padded:
        tr, te = _pad(tr, arm.pad), _pad(te, arm.pad)
        return (arm.degrade(tr), tr), (arm.degrade(te), te)
    return (_pad(arm.degrade(tr), arm.pad), _pad(tr, arm.pad)), (_pad(arm.degrade(te), arm.pad), _pad(te, arm.pad))


def _restoration(arm: Restoration, flags: "Flags", ctx: paper.RunContext):
    """One restoration arm: its data, the deconv layer and the same-size conv trained, held-out scores; the
    results and (input, deconv, conv, target) of the first test image."""
    (xtr, ytr), (xte, yte) = _arm_data(arm, flags.data)
    steps = flags.steps or _steps_for(arm.epochs, len(xtr), arm.batch)
    name = report.safe_name(arm.label)
    out = {"blurred input": _scores(xte, yte, arm.border)}
    fit = dict(steps=steps, loss=arm.loss, batch=arm.batch, ctx=ctx)
    dl = DeconvDFT2D(**arm.deconv)
    dm, dloss = _fit(dl, (xtr, ytr), lr=arm.lr, name=f"{name}_deconv", **fit)
    deconv_out = np.asarray(dm(xte))          # one layer: a direct call, no traced predict function
    out["deconv"] = {**_scores(deconv_out, yte, arm.border), **dloss,
                     "lr": arm.lr, "kernel": np.round(dl.kernel().numpy(), 4).tolist()}
    if dl.learnable_scale:
        out["deconv"]["scale"] = float(dl.scale.numpy())
    conv = torch_default_conv(1, arm.conv_size, in_channels=1, seed=ctx.seed)
    cm, closs = _fit(conv, (xtr, ytr), lr=arm.baseline_lr, name=f"{name}_conv", **fit)
    conv_out = np.asarray(cm(xte))
    out["conv"] = {**_scores(conv_out, yte, arm.border), **closs, "lr": arm.baseline_lr}
    out["setting"] = {"steps": steps, "epochs": arm.epochs, "train_images": len(xtr), "batch": arm.batch,
                      "image_size": list(xtr.shape[1:3]), "pad": arm.pad, "loss": arm.loss,
                      "deconv_kernel_size": list(dl.kernel_size), "conv_size": list(arm.conv_size)}
    return out, (xte[:1], deconv_out[:1], conv_out[:1], yte[:1])


def _restorations(experiment):
    def runner(flags: Flags, ctx: paper.RunContext):
        results, example = {}, None
        for arm in RESTORATIONS[experiment]:
            synthetic = arm.label.startswith("GOPRO") and not flags.data
            label = arm.label + (" (synthetic motion blur)" if synthetic else "")
            results[label], ex = _restoration(arm, flags, ctx)
            results[label].update(arm.extra)
            example = example or ex
        return results, example
    return runner


# ---- ×2 super-resolution with a PixelShuffle head (nb12, nb13) -----------------------------------------------
SR_IMAGE_SIZE = 256     # embedded photos: the HR image resized whole to 256², its LR the ×2 bicubic reduction
SR_FILES = 20           # --data: the first 20 HR / LR pairs in sorted order train (the notebooks'), the next 5 test
SR_MAX_LR = 256         # --data: co-located centre crops of at most 256² LR / 512² HR (memory; DIV2K is ~2K)


@dataclasses.dataclass(frozen=True)
class SuperRes:
    """nb12 / nb13: grey HR / LR ×2 pairs, a fresh co-located random crop of ``crop``² HR (``crop // 2``² LR) at
    every item access, batches of 4 in file order, ``epochs`` passes; the 9×9 conv (PyTorch's default init) at
    Adam ``cnn_lr`` or the multi-filter deconv (channel sum, the normalised init with a learnable h[0,0], no bias)
    at ``deconv_lr`` — once with the correct four-factor reversals and once with the notebook layer's (``layer``:
    "nb12" | "nb13", the axes its flips hit); ``loss`` "l2" or "dct_mse"."""
    notebook: str
    crop: int
    loss: str
    layer: str                   # the notebook's deconv version, named by its reversal bug: "nb12" | "nb13"
    deconv_lr: float = 1e-3
    cnn_lr: float = 1e-4
    epochs: int = 30
    batch: int = 4
    filters: int = 64
    kernel_size: tuple[int, int] = (9, 9)
    recorded: dict = dataclasses.field(default_factory=dict)     # the notebook's final Σ-batch loss / 5 batches


SUPERRES_CNN = {
    "srcnn": SuperRes("nb12 (Deconv2DMultiFilter((9,9), 64), 03-20)", crop=96, loss="l2", layer="nb12",
                      recorded={"deconv": round(0.00828 / 5, 6), "cnn": round(0.06081 / 5, 6)}),
    "srcnn_dct": SuperRes("nb13 (Deconv2DMultiFilter(1, 64, (9,9)), 03-21)", crop=32, loss="dct_mse", layer="nb13",
                          recorded={"deconv": round(0.01673 / 5, 6), "cnn": round(0.10984 / 5, 6),
                                    "bilinear input (cell 12)": 0.0007671862}),
}


class _SrNet(keras.Model):
    """nb12 cell 10: ``first`` (the 9×9 conv 1→64 or the deconv) → ReLU → conv 1×1 64→32 → ReLU → conv 5×5 32→4 →
    PixelShuffle(2) (``depth_to_space``: with one output channel the same channel order as PyTorch's). LR [B, h, w,
    1] in, HR [B, 2h, 2w, 1] out."""

    def __init__(self, first: keras.layers.Layer, seed: int):
        super().__init__()
        self.first = first
        self.conv2 = torch_default_conv(32, 1, in_channels=64, seed=seed + 2)
        self.conv3 = torch_default_conv(4, 5, in_channels=32, seed=seed + 4)

    def call(self, x):
        x = tf.nn.relu(self.conv2(tf.nn.relu(self.first(x))))
        return tf.nn.depth_to_space(self.conv3(x), 2)


class _CropBatches(training.Source):
    """``RandomCropIsr``: for each item drawn, an LR crop of ``crop // 2``² at a uniform offset and the HR crop of
    ``crop``² at twice that offset; batches of ``batch`` in file order, a batch never spanning two passes. The
    offsets come from (seed, step), so a resumed training draws the same crops."""

    def __init__(self, lr: np.ndarray, hr: np.ndarray, crop: int, batch: int, seed: int):
        self.lr, self.hr, self.size = tf.constant(lr), tf.constant(hr), len(lr)
        self.crop, self.batch, self.seed = crop, batch, seed

    def crops(self, idx: tf.Tensor, step: tf.Tensor) -> dict:
        """{"x": LR crops [k, c/2, c/2, 1], "y": HR crops [k, c, c, 1]} of images ``idx`` for step ``step``."""
        c = self.crop // 2
        room = tf.constant([self.lr.shape[1] - c + 1, self.lr.shape[2] - c + 1], tf.float32)
        u = tf.random.stateless_uniform([tf.shape(idx)[0], 2], tf.stack([tf.cast(self.seed, tf.int64),
                                                                         tf.cast(step, tf.int64)]))
        off = tf.cast(tf.floor(u * room), tf.int32)

        def cut(images, scale):
            n = c * scale
            rows = scale * off[:, :1] + tf.range(n)
            cols = scale * off[:, 1:] + tf.range(n)
            picked = tf.gather(tf.gather(images, idx), rows, axis=1, batch_dims=1)
            return tf.gather(picked, cols, axis=2, batch_dims=1)
        return {"x": cut(self.lr, 1), "y": cut(self.hr, 2)}

    def load(self, index, draw) -> dict:
        return {k: v[0] for k, v in self.crops(tf.reshape(index, [1]), draw).items()}

    def batches(self, start: int) -> tf.data.Dataset:
        ds = tf.data.Dataset.range(self.size).batch(self.batch).repeat().enumerate().skip(start)
        return ds.map(lambda step, idx: self.crops(idx, step))


def _sr_folder(folder) -> tuple[np.ndarray, ...]:
    """(lr, hr) train and test from folder/HR and folder/LR (×2 pairs matched by sorted name): grey, co-located
    centre crops of one common size (at most SR_MAX_LR² LR)."""
    for sub in ("HR", "LR"):
        if not (Path(folder) / sub).is_dir():
            raise FileNotFoundError(f"{Path(folder) / sub} is not a folder: --data for srcnn / srcnn_dct holds HR/ "
                                    "and LR/ (×2 pairs matched by sorted name, e.g. DIV2K_train_HR, LR_bicubic/X2)")
    hr_files, lr_files = data.image_folder(Path(folder) / "HR"), data.image_folder(Path(folder) / "LR")
    if len(hr_files) != len(lr_files):
        raise ValueError(f"{folder}: {len(hr_files)} files in HR/ but {len(lr_files)} in LR/; they pair by sorted name")
    grey = lambda f: data.load_image(f).astype(np.float32).mean(-1) / 255.0      # noqa: E731
    lrs, hrs = [grey(f) for f in lr_files], [grey(f) for f in hr_files]
    s = min(SR_MAX_LR, *(min(a.shape) for a in lrs), *(min(a.shape) // 2 for a in hrs))
    lr_crop, hr_crop = [], []
    for lo, hi in zip(lrs, hrs):
        top, left = (lo.shape[0] - s) // 2, (lo.shape[1] - s) // 2
        lr_crop.append(lo[top:top + s, left:left + s])
        hr_crop.append(hi[2 * top:2 * top + 2 * s, 2 * left:2 * left + 2 * s])
    lr, hr = np.stack(lr_crop)[..., None], np.stack(hr_crop)[..., None]
    if len(lr) > SR_FILES:
        return lr[:SR_FILES], hr[:SR_FILES], lr[SR_FILES:SR_FILES + 5], hr[SR_FILES:SR_FILES + 5]
    (lr_tr, lr_te), (hr_tr, hr_te) = _holdout(lr), _holdout(hr)
    return lr_tr, hr_tr, lr_te, hr_te


def _sr_data(folder) -> tuple[np.ndarray, ...]:
    """(lr train, hr train, lr test, hr test): a folder's HR/LR pairs, else the embedded photos at SR_IMAGE_SIZE²
    with their ×2 antialiased bicubic reductions (DIV2K's LR_bicubic)."""
    if folder:
        return _sr_folder(folder)
    hr_tr, hr_te = _split(SR_IMAGE_SIZE, None)
    half = SR_IMAGE_SIZE // 2
    down = lambda hr: tf.image.resize(hr, (half, half), "bicubic", antialias=True).numpy()   # noqa: E731
    return down(hr_tr), hr_tr, down(hr_te), hr_te


def _sr_arms(setting: SuperRes) -> dict[str, tuple[str, float]]:
    """Arm label → (first layer: "cnn" or the deconv's reversal, Adam rate): the correct deconv, the notebook's
    (its reversal bug re-created, ``deconv_layer.md`` §1.6) and the 9×9 conv."""
    return {"deconv + CNN": ("spatial", setting.deconv_lr),
            f"deconv + CNN, the notebook's reversals ({setting.layer})": (setting.layer, setting.deconv_lr),
            "CNN": ("cnn", setting.cnn_lr)}


def _sr_first(setting: SuperRes, kind: str, seed: int) -> keras.layers.Layer:
    """The first layer: the 9×9 conv 1→64 (``kind="cnn"``) or the deconv with the reversal ``kind``."""
    if kind == "cnn":
        return torch_default_conv(setting.filters, setting.kernel_size, in_channels=1, seed=seed)
    return DeconvDFT2D(setting.kernel_size, filters=setting.filters, use_bias=False, first_tap_trainable=True,
                       kernel_init="normalised", reduction="sum", seed=seed, reversal=kind)


def _superres_cnn(experiment: str):
    def runner(flags: Flags, ctx: paper.RunContext):
        setting = SUPERRES_CNN[experiment]
        lr_tr, hr_tr, lr_te, hr_te = _sr_data(flags.data)
        steps = flags.steps or _steps_for(setting.epochs, len(lr_tr), setting.batch)
        upsampled = tf.image.resize(lr_te, hr_te.shape[1:3], "bilinear").numpy()
        out = {"bilinear input": _scores(upsampled, hr_te, 0)}
        loss_of, preds = LOSSES[setting.loss], {}
        for arm, (kind, lr) in _sr_arms(setting).items():
            keras.utils.set_random_seed(ctx.seed)
            model = _SrNet(_sr_first(setting, kind, ctx.seed), ctx.seed)
            predict = lambda: np.concatenate([np.asarray(model(lr_te[i:i + 1])) for i in range(len(lr_te))])  # noqa
            initial_psnr = _scores(predict(), hr_te, 0)["psnr"]                # also builds it for the Trainer

            def loss_fn(m, b, training_):
                return {"loss": loss_of(b["y"], m(b["x"], training=training_))}
            terms = _train(model, _CropBatches(lr_tr, hr_tr, setting.crop, setting.batch, ctx.seed), loss_fn,
                           lr=lr, steps=steps, ctx=ctx, name=f"{experiment}_{kind}")
            preds[kind] = predict()
            out[arm] = {**_scores(preds[kind], hr_te, 0), "initial_psnr": initial_psnr, **terms, "lr": lr}
        out["setting"] = {"notebook": setting.notebook, "steps": steps, "epochs": setting.epochs,
                          "train_images": len(lr_tr), "batch": setting.batch, "hr_crop": setting.crop,
                          "loss": setting.loss, "test_size": list(hr_te.shape[1:3])}
        out["notebook_final_loss_per_batch"] = setting.recorded
        return {f"×2 super-resolution, {setting.loss} loss": out}, (upsampled[:1], preds["spatial"][:1],
                                                                    preds["cnn"][:1], hr_te[:1])
    return runner


# ---- classification (nb04, nb07) ------------------------------------------------------------------------------
CLASSIFICATION_BATCH = 32
CLASSIFICATION_CLASSES = 100        # ConvNetTiny2 ignores its classes argument: always 100 outputs (§3.1)
CLASSIFICATION_DECONV = (4, 4)      # Deconv2D((4,4)), one filter shared by R, G, B
STANDIN_SIZES = (2000, 500)         # the synthetic stand-in's training and test images


@dataclasses.dataclass(frozen=True)
class Classification:
    """A CIFAR-100 notebook: shuffled batches of 32, (x − 0.5)/0.5, no augmentation, cross-entropy, Adam at
    ``lr`` over all parameters for ``epochs`` passes over the training set."""
    notebook: str
    epochs: int
    lr: float


CLASSIFICATIONS = {
    "classification": Classification("nb04 (ConvNetTiny2)", epochs=5, lr=1e-4),
    "classification_resnet": Classification("nb07 (ResNet18)", epochs=10, lr=1e-4),
    "audio": Classification("train_1d_classification.py (AudioDNN)", epochs=10, lr=1e-3),
}


def _cifar(seed):
    """CIFAR-100 (all 50,000 training and 10,000 test images) when keras.datasets has or can fetch it, else a
    synthetic stand-in of 20 classes; images mapped to [−1, 1]."""
    try:
        (xtr, ytr), (xte, yte) = keras.datasets.cifar100.load_data()
        source = f"CIFAR-100 ({len(xtr):,} training images)"
    except Exception:   # no network: a synthetic stand-in with class-dependent colour and frequency
        rng = np.random.default_rng(seed)
        source = f"synthetic stand-in of {STANDIN_SIZES[0]:,} training images (CIFAR-100 not available)"

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
        (xtr, ytr), (xte, yte) = make(STANDIN_SIZES[0]), make(STANDIN_SIZES[1])
    norm = lambda x: (x.astype(np.float32) / 255.0 - 0.5) / 0.5       # noqa: E731
    return norm(xtr), ytr, norm(xte), yte, source


def _batch_norm():
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)     # PyTorch's BatchNorm2d defaults


def _convnet_tiny2(front, classes=CLASSIFICATION_CLASSES):
    """§3.1: [front] → conv 3→3 → BN → ReLU → pool → conv 3→64 → BN → ReLU → pool → conv 64→128 → BN → ReLU →
    flatten (8,192) → dense 64 (no activation) → dense ``classes``."""
    inp = keras.Input((32, 32, 3))
    x = front(inp) if front is not None else inp
    x = keras.layers.Conv2D(3, 3, padding="same")(x)
    for filters in (None, 64, 128):
        if filters:
            x = keras.layers.Conv2D(filters, 3, padding="same")(x)
        x = keras.layers.ReLU()(_batch_norm()(x))
        if filters != 128:
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64)(x)
    return keras.Model(inp, keras.layers.Dense(classes)(x))


def _held_out(model, x, y, batch: int = 500) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy on held-out images (inference mode), by direct calls in chunks."""
    logits = np.concatenate([np.asarray(model(x[i:i + batch], training=False)) for i in range(0, len(x), batch)])
    labels = np.asarray(y).ravel()
    shifted = logits - logits.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean()), float((logits.argmax(1) == labels).mean())


def _classification_terms(model, batch, training_):
    """Cross-entropy of the logits (the mean over the batch) and top-1 accuracy, as ``compile(loss=
    SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])`` reported them."""
    logits = model(batch["x"], training=training_)
    labels = tf.reshape(tf.cast(batch["y"], tf.int64), [-1])
    hits = tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32)
    return {"loss": _CROSS_ENTROPY(batch["y"], logits), "accuracy": tf.reduce_mean(hits)}


_CROSS_ENTROPY = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _classify(experiment: str, arms, flags: "Flags", ctx: paper.RunContext, *, data_=None):
    """Train each arm (name → model builder) on CIFAR-100 or the stand-in (or ``data_``: (x train, y train,
    x test, y test, source)); held-out loss and accuracy before and after."""
    setting = CLASSIFICATIONS[experiment]
    xtr, ytr, xte, yte, source = data_ or _cifar(ctx.seed)
    steps = flags.steps or _steps_for(setting.epochs, len(xtr), CLASSIFICATION_BATCH)
    results = {}
    for name, build in arms.items():
        keras.utils.set_random_seed(ctx.seed)
        model = build()
        initial_loss, initial_acc = _held_out(model, xte, yte)
        batches = _FitBatches({"x": xtr, "y": ytr}, CLASSIFICATION_BATCH, shuffle_seed=ctx.seed)
        terms = _train(model, batches, _classification_terms, lr=setting.lr, steps=steps, ctx=ctx,
                       name=report.safe_name(name))
        test_loss, acc = _held_out(model, xte, yte)
        results[name] = {"test_accuracy": float(acc), "test_loss": float(test_loss),
                         "initial_test_accuracy": float(initial_acc), "initial_test_loss": float(initial_loss),
                         "train_accuracy": terms["train_accuracy"], "outputs": int(model.output_shape[-1])}
    results["setting"] = {"notebook": setting.notebook, "data": source, "train_images": len(xtr),
                          "test_images": len(xte), "epochs": setting.epochs, "steps": steps,
                          "batch": CLASSIFICATION_BATCH, "lr": setting.lr}
    return {f"classification on {source}": results}, None


def _front(kind: str, seed: int):
    """The layer put in front of the first convolution: the shared-filter deconv or a 3→3 'same' conv."""
    if kind == "deconv":
        return DeconvDFT2D(CLASSIFICATION_DECONV)
    return torch_default_conv(3, 3, in_channels=3, seed=seed)


def classification(flags: "Flags", ctx: paper.RunContext):
    """nb04: ConvNetTiny2 with the deconv layer or a 3×3 conv in front."""
    seed = ctx.seed
    return _classify("classification", {
        "deconv 4×4 in front": lambda: _convnet_tiny2(_front("deconv", seed)),
        "conv 3×3 in front": lambda: _convnet_tiny2(_front("conv", seed))}, flags, ctx)


def classification_resnet(flags: "Flags", ctx: paper.RunContext):
    """nb07: ResNet-18 at 32² with the deconv layer, a 3×3 conv or nothing in front."""
    from tfrestore import nets
    seed = ctx.seed

    def resnet(front):
        def build():
            body = nets.build("resnet18", weights="auto", image_size=32, quiet=True)
            head = keras.layers.Dense(CLASSIFICATION_CLASSES)(body.get_layer("avgpool").output)   # fc → 512 → 100
            trunk = keras.Model(body.input, head)
            inp = keras.Input((32, 32, 3))
            return keras.Model(inp, trunk(front()(inp) if front else inp))
        return build
    return _classify("classification_resnet", {
        "resnet18 + deconv 4×4": resnet(lambda: _front("deconv", seed)),
        "resnet18 + conv 3×3": resnet(lambda: _front("conv", seed)),
        "resnet18 alone (the superseded identity run)": resnet(None)}, flags, ctx)


# ---- the 1-D layer: AudioDNN on UrbanSound8K (HEAD train_1d_classification.py, §1.10) ---------------------------
AUDIO_LENGTH = 89009        # UrbanSound8KDataset.MAX_LENGTH: librosa's 22,050 Hz mono clips, zero-padded at the end
AUDIO_RATE = 22050
AUDIO_KERNEL = 2            # Deconv1D(1 → 1, kernel 2, no bias, h[0] fixed at 1)
AUDIO_MODES = ("deconv", "conv")
AUDIO_TEST_FOLD = 10        # --data: folds 1–9 train, fold 10 tests (the script trained on all 8,732, tested none)
AUDIO_STANDIN = (320, 100)  # the synthetic stand-in's training and test clips


def _audio_dnn(mode: str, seed: int) -> keras.Model:
    """AudioDNN: [B, 89009, 1] → DeconvDFT1D(k 2, ``mode``, no bias) → ReLU → flatten → dense 10 (PyTorch's Linear
    default init, uniform ±1/√fan_in)."""
    bound = 1.0 / math.sqrt(AUDIO_LENGTH)
    init = lambda s: keras.initializers.RandomUniform(-bound, bound, seed=s)     # noqa: E731
    inp = keras.Input((AUDIO_LENGTH, 1))
    x = DeconvDFT1D(AUDIO_KERNEL, filters=1, mode=mode, use_bias=False, seed=seed)(inp)
    x = keras.layers.Flatten()(keras.layers.ReLU()(x))
    return keras.Model(inp, keras.layers.Dense(10, kernel_initializer=init(seed), bias_initializer=init(seed + 1))(x))


def _wave(path: Path) -> np.ndarray:
    """A clip as librosa.load gave it: mono float in [−1, 1] at 22,050 Hz, then zero-padded (or cut) to
    AUDIO_LENGTH samples."""
    from scipy import signal
    from scipy.io import wavfile
    rate, w = wavfile.read(path)
    w = w.astype(np.float32) / (np.iinfo(w.dtype).max + 1 if np.issubdtype(w.dtype, np.integer) else 1.0)
    w = w.mean(-1) if w.ndim == 2 else w
    g = math.gcd(int(rate), AUDIO_RATE)
    w = signal.resample_poly(w, AUDIO_RATE // g, int(rate) // g).astype(np.float32) if rate != AUDIO_RATE else w
    return np.pad(w[:AUDIO_LENGTH], (0, max(0, AUDIO_LENGTH - len(w))))


def _urbansound(folder):
    """UrbanSound8K under ``folder`` (metadata/UrbanSound8K.csv, audio/fold<k>/<file>): folds 1–9 train, fold 10
    tests."""
    import csv
    meta = Path(folder) / "metadata" / "UrbanSound8K.csv"
    if not meta.is_file():
        raise FileNotFoundError(f"{meta} not found: --data for 'audio' is the UrbanSound8K folder (metadata/, audio/)")
    with open(meta, newline="") as f:
        rows = list(csv.DictReader(f))
    split = {True: ([], []), False: ([], [])}
    for r in rows:
        x, y = split[int(r["fold"]) == AUDIO_TEST_FOLD]
        x.append(_wave(Path(folder) / "audio" / f"fold{r['fold']}" / r["slice_file_name"]))
        y.append(int(r["classID"]))
    (xtr, ytr), (xte, yte) = split[False], split[True]
    return (np.stack(xtr)[..., None], np.array(ytr)[:, None], np.stack(xte)[..., None], np.array(yte)[:, None],
            f"UrbanSound8K ({len(xtr):,} training clips, fold {AUDIO_TEST_FOLD} held out)")


def _audio_standin(seed: int):
    """Ten classes of a noise burst whose time (class k: centred at (k + ½)/10 of the clip) and colour (even
    classes differenced, odd ones smoothed) mark the class, in background noise; 89,009 samples."""
    rng = np.random.default_rng(seed)
    t = np.arange(AUDIO_LENGTH, dtype=np.float32)

    def make(n):
        y = rng.integers(0, 10, n)
        centre = (y + 0.5) / 10 * AUDIO_LENGTH + rng.normal(0, AUDIO_LENGTH / 100, n)
        burst = rng.standard_normal((n, AUDIO_LENGTH), dtype=np.float32)
        burst = np.where((y % 2 == 0)[:, None], burst - np.roll(burst, 1, 1), burst + np.roll(burst, 1, 1)) / 2
        env = np.exp(-0.5 * ((t[None] - centre[:, None]) / (AUDIO_LENGTH / 40)) ** 2).astype(np.float32)
        x = 0.3 * burst * env + 0.05 * rng.standard_normal((n, AUDIO_LENGTH), dtype=np.float32)
        return x[..., None], y[:, None]
    (xtr, ytr), (xte, yte) = make(AUDIO_STANDIN[0]), make(AUDIO_STANDIN[1])
    return xtr, ytr, xte, yte, f"synthetic stand-in of {AUDIO_STANDIN[0]} training clips (UrbanSound8K not given)"


def audio(flags: "Flags", ctx: paper.RunContext):
    """AudioDNN with the 1-D layer in mode deconv (G = 1/|H|²) and conv (G = |H|²), as the script's two runs."""
    data_ = _urbansound(flags.data) if flags.data else _audio_standin(ctx.seed)
    return _classify("audio", {f"AudioDNN, mode {m}": functools.partial(_audio_dnn, m, ctx.seed) for m in AUDIO_MODES},
                     flags, ctx, data_=data_)


RUNNERS = {**{name: _restorations(name) for name in RESTORATIONS},
           **{name: _superres_cnn(name) for name in SUPERRES_CNN}, "classification": classification,
           "classification_resnet": classification_resnet, "audio": audio}
DEFAULT_EXPERIMENT = "four_factor"


def _table(results) -> str:
    lines = []
    for setting, arms in results.items():
        lines.append(setting)
        for arm, m in arms.items():
            if not isinstance(m, dict):
                continue
            if arm == "setting":
                lines.append("    setting: " + ", ".join(f"{k} {v}" for k, v in m.items()))
                continue
            cells = "  ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float))
            lines.append(f"    {arm:<28} {cells}")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def _figure_panels(example):
    if example is None:
        return []
    return [(img[0, ..., 0], cap) for img, cap in zip(example, ("input", "deconv layer", "conv baseline", "target"))]


@dataclasses.dataclass(frozen=True)
class Flags:
    """The command-line flags of ``--paper=deconv``."""
    experiment: str = flag(DEFAULT_EXPERIMENT, "the notebook reproduced (see --list)")
    steps: int | None = flag(None, "gradient updates per arm (default the notebook's epochs × ⌈images / batch⌉)",
                             source="deconv_layer.md §2")
    data: str | None = flag(None, "a folder of images (or HR/LR, sharp/blur pairs) instead of the embedded photos")

    def __post_init__(self) -> None:
        if self.experiment not in RUNNERS:
            raise ValueError(f"unknown experiment '{self.experiment}' for deconv; valid: {', '.join(RUNNERS)}")


def default_out(flags: Flags) -> str:
    """``runs/deconv_<experiment>``."""
    return f"runs/deconv_{flags.experiment}"


def run(flags: Flags, ctx: paper.RunContext) -> dict:
    """One experiment: its arms trained, the held-out table printed, the outputs written once; the metrics."""
    experiment = flags.experiment
    ctx = dataclasses.replace(ctx, out=common.claim_output(ctx.out))
    print(f"deconv layer: {EXPERIMENTS[experiment]}", flush=True)
    results, example = RUNNERS[experiment](flags, ctx)
    text = _table(results)
    payload = {"experiment": experiment, "description": EXPERIMENTS[experiment], "steps_override": flags.steps,
               "data": flags.data or "embedded sample photos", "results": results}
    paper.Result(title=EXPERIMENTS[experiment], metrics=payload, table=text,
                 figure_panels=_figure_panels(example)).write(ctx.out)
    print(f"outputs in {ctx.out}", flush=True)
    return payload
