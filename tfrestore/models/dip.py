"""The deep image prior (Ulyanov, Vedaldi & Lempitsky, CVPR 2018): an untrained encoder–decoder whose weights are
optimised so that its output for a fixed random code explains a degraded observation; the architecture is the
prior, and stopping early is the regulariser.

:func:`skip_generator` builds the paper's "skip" network (the reference code's ``models/skip.py``). Two settings
of it are used, each a :class:`SkipSettings` row:

- :data:`RESTORATION_NET` (the default; the denoising / super-resolution / inpainting notebooks' ``get_net(...,
  'skip', skip_n33d=128, skip_n33u=128, skip_n11=4, num_scales=5, upsample_mode='bilinear')``): 5 scales of 128
  channels down and up, 4 skip channels per scale, 3×3 convolutions (1×1 on the skips), reflection padding,
  down-sampling by stride-2 convolution, bilinear up-sampling.
- :data:`FEATURE_INVERSION_NET` (``feature_inversion.ipynb``; spec ``mv2016.md`` §10): 6 scales of
  16/32/64/128/128/128 channels down and up, 4 skip channels per scale, kernel sizes 7, 7, 5, 5, 3, 3 (down and
  up), zero padding, down-sampling by a stride-1 convolution followed by 2×2 average pooling, nearest up-sampling.

Both: LeakyReLU(0.2), batch norm after every convolution, a 1×1 convolution after each up-sampling block, a 1×1
output convolution and a sigmoid. Weights and biases are initialised as PyTorch's ``Conv2d`` default does (uniform
±1/√fan_in), batch norm as ``BatchNorm2d`` (ε 1e-5, momentum 0.1).

:func:`generator_parameterization` wraps it as a :class:`tfrestore.optimize.param.Generator` on the paper's input: 32
channels of U(0, 1) noise × 0.1, perturbed by N(0, σ_p²) every step (σ_p = 1/30 for denoising; 0 — a fixed code —
for feature inversion), batch norm on batch statistics throughout (the reference code never switches the network
to evaluation mode), and the exponential moving average of the outputs (0.99) the paper reports for denoising.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfrestore.optimize.param import Generator

INPUT_CHANNELS = 32         # input_depth
INPUT_SCALE = 0.1           # get_noise(..., var=1/10): U(0, 1) noise times 0.1
NOISE_STD_DENOISE = 1.0 / 30.0
NOISE_STD_OTHER = 0.03      # super-resolution and inpainting notebooks
LEARNING_RATE = 0.01        # the restoration notebooks' LR
EMA_DECAY = 0.99            # exp_weight in the denoising notebook
LEAKY_SLOPE = 0.2


@dataclasses.dataclass(frozen=True)
class SkipSettings:
    """The arguments of the reference code's ``skip(...)``: one entry per scale for the channel counts; kernel
    sizes one per scale or one for all; ``pad`` "reflection" | "zero"; ``downsample`` "stride" (a stride-2
    convolution) | "avg" (a stride-1 convolution, then 2×2 average pooling); ``upsample`` "bilinear" | "nearest"."""
    channels_down: tuple[int, ...] = (128,) * 5
    channels_up: tuple[int, ...] = (128,) * 5
    channels_skip: tuple[int, ...] = (4,) * 5
    kernel_down: int | tuple[int, ...] = 3
    kernel_up: int | tuple[int, ...] = 3
    kernel_skip: int = 1
    pad: str = "reflection"
    downsample: str = "stride"
    upsample: str = "bilinear"
    conv1x1_up: bool = True

    @property
    def scales(self) -> int:
        return len(self.channels_down)

    def kwargs(self) -> dict:
        return dataclasses.asdict(self)


RESTORATION_NET = SkipSettings()
FEATURE_INVERSION_NET = SkipSettings(
    channels_down=(16, 32, 64, 128, 128, 128), channels_up=(16, 32, 64, 128, 128, 128), channels_skip=(4,) * 6,
    kernel_down=(7, 7, 5, 5, 3, 3), kernel_up=(7, 7, 5, 5, 3, 3), pad="zero", downsample="avg", upsample="nearest")


class ReflectionPad(keras.layers.Layer):
    """Reflection padding by ``pad`` pixels on each side (PyTorch's ``ReflectionPad2d``)."""

    def __init__(self, pad: int, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)

    def call(self, x):
        p = self.pad
        return tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


class _Init:
    """PyTorch's default Conv2d initialisation (kaiming-uniform with a = √5, i.e. weights and biases both uniform
    in ±1/√fan_in), seeded per layer so a build is reproducible."""

    def __init__(self, seed: int):
        self.seed = seed

    def __call__(self, fan_in: int):
        self.seed += 1
        bound = 1.0 / np.sqrt(fan_in)
        return (keras.initializers.RandomUniform(-bound, bound, seed=self.seed),
                keras.initializers.RandomUniform(-bound, bound, seed=self.seed + 100_000))


def _conv(x, channels: int, kernel: int, stride: int, pad: str, init: _Init, name: str, downsample: str = "stride"):
    """The reference code's ``conv(...)``: padding of (k−1)/2 pixels (reflection, or zeros as PyTorch's
    ``padding=to_pad``, not Keras' stride-dependent "same"), the convolution, and for ``downsample="avg"`` with
    stride 2 a stride-1 convolution followed by 2×2 average pooling."""
    fan_in = int(x.shape[-1]) * kernel * kernel
    w_init, b_init = init(fan_in)
    p = (kernel - 1) // 2
    if p:
        x = ReflectionPad(p, name=f"{name}_pad")(x) if pad == "reflection" else \
            keras.layers.ZeroPadding2D(p, name=f"{name}_pad")(x)
    pool = stride != 1 and downsample == "avg"
    x = keras.layers.Conv2D(channels, kernel, 1 if pool else stride, "valid", kernel_initializer=w_init,
                            bias_initializer=b_init, name=name)(x)
    return keras.layers.AveragePooling2D(stride, name=f"{name}_avgpool")(x) if pool else x


def _bn_act(x, name: str, act: bool = True):
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_act")(x) if act else x


def _per_scale(kernel: int | Sequence[int], scales: int, what: str) -> tuple[int, ...]:
    sizes = (int(kernel),) * scales if np.ndim(kernel) == 0 else tuple(int(k) for k in kernel)
    if len(sizes) != scales or any(k < 1 or k % 2 == 0 for k in sizes):
        raise ValueError(f"{what} must be one odd size or one odd size per scale ({scales}), got {kernel!r}")
    return sizes


def _check_geometry(h: int, w: int, scales: int, pad: str, kernels: Sequence[tuple[int, ...]]) -> None:
    if h % 2 ** scales or w % 2 ** scales:
        raise ValueError(f"the skip generator with {scales} scales needs H and W divisible by {2 ** scales}, "
                         f"got {h}×{w}; crop the image first (dip.crop_to_multiple)")
    if pad == "reflection":
        # reflection padding by p needs a map larger than p (PyTorch's ReflectionPad2d refuses the same)
        for i in range(scales):
            p = (max(k[i] for k in kernels) - 1) // 2
            if p and min(h, w) // 2 ** (i + 1) <= p:
                raise ValueError(f"{h}×{w} is too small for reflection padding by {p} px at scale {i + 1} "
                                 f"(the map there is {h // 2 ** (i + 1)}×{w // 2 ** (i + 1)}); use an image of "
                                 f"at least {2 ** (i + 1) * (p + 1)} px a side")


def skip_generator(size: int | tuple[int, int] = 256, *, input_channels: int = INPUT_CHANNELS,
                   output_channels: int = 3, channels_down=(128,) * 5, channels_up=(128,) * 5,
                   channels_skip=(4,) * 5, kernel_down: int | Sequence[int] = 3, kernel_up: int | Sequence[int] = 3,
                   kernel_skip: int = 1, pad: str = "reflection", downsample: str = "stride",
                   upsample: str = "bilinear", conv1x1_up: bool = True, sigmoid: bool = True,
                   crop_to: int | tuple[int, int] | None = None, seed: int = 0) -> keras.Model:
    """The deep image prior's "skip" encoder–decoder for [N, H, W, input_channels] codes → [N, H, W, output]
    (defaults: :data:`RESTORATION_NET`; ``**FEATURE_INVERSION_NET.kwargs()`` for feature inversion).

    ``size`` (H, W) must be divisible by 2^scales (32 for 5 scales, 64 for 6; the reference code crops its
    images so). Scale i: a skip branch (k_skip conv → BN → LeakyReLU, ``channels_skip[i]`` channels, omitted when
    0) beside a deeper branch (down-sampling k_down[i] conv → BN → act → k_down[i] conv → BN → act → scale i+1 →
    ×2 up-sampling), concatenated, then BN → k_up[i] conv → BN → act (→ 1×1 conv → BN → act). ``crop_to`` (h, w)
    keeps the top-left h×w of the output (feature inversion's ``net(net_input)[:, :, :imsize, :imsize]``).
    """
    h, w = (size, size) if isinstance(size, int) else size
    scales = len(channels_down)
    if not (len(channels_up) == len(channels_skip) == scales):
        raise ValueError("channels_down, channels_up and channels_skip need one entry per scale")
    if pad not in ("reflection", "zero") or upsample not in ("bilinear", "nearest") or \
            downsample not in ("stride", "avg"):
        raise ValueError("pad must be 'reflection' or 'zero', upsample 'bilinear' or 'nearest' and downsample "
                         "'stride' or 'avg'")
    k_down, k_up = _per_scale(kernel_down, scales, "kernel_down"), _per_scale(kernel_up, scales, "kernel_up")
    _check_geometry(h, w, scales, pad, (k_down, k_up, (kernel_skip,) * scales))
    init = _Init(seed)
    code = keras.Input((h, w, input_channels), name="code")

    def scale(x, i):
        skip = None
        if channels_skip[i]:
            skip = _bn_act(_conv(x, channels_skip[i], kernel_skip, 1, pad, init, f"skip{i}_conv"), f"skip{i}")
        d = _bn_act(_conv(x, channels_down[i], k_down[i], 2, pad, init, f"down{i}_conv1", downsample), f"down{i}_1")
        d = _bn_act(_conv(d, channels_down[i], k_down[i], 1, pad, init, f"down{i}_conv2"), f"down{i}_2")
        if i + 1 < scales:
            d = scale(d, i + 1)
        d = keras.layers.UpSampling2D(2, interpolation=upsample, name=f"up{i}_resize")(d)
        x = d if skip is None else keras.layers.Concatenate(name=f"cat{i}")([skip, d])
        x = _bn_act(x, f"cat{i}", act=False)
        x = _bn_act(_conv(x, channels_up[i], k_up[i], 1, pad, init, f"up{i}_conv"), f"up{i}")
        if conv1x1_up:
            x = _bn_act(_conv(x, channels_up[i], 1, 1, pad, init, f"up{i}_conv1x1"), f"up{i}_1x1")
        return x

    out = _conv(scale(code, 0), output_channels, 1, 1, pad, init, "output_conv")
    if sigmoid:
        out = keras.layers.Activation("sigmoid", name="output")(out)
    if crop_to is not None:
        ch, cw = (crop_to, crop_to) if isinstance(crop_to, int) else crop_to
        if not (0 < ch <= h and 0 < cw <= w):
            raise ValueError(f"crop_to {ch}×{cw} must fit inside the generator's {h}×{w} output")
        out = keras.layers.Cropping2D(((0, h - ch), (0, w - cw)), name="crop")(out)
    return keras.Model(code, out, name="dip_skip")


def input_code(size: int | tuple[int, int], channels: int = INPUT_CHANNELS, seed: int = 0) -> np.ndarray:
    """The fixed input: [1, H, W, channels] of U(0, 1) noise × 0.1 (``get_noise(..., 'noise', var=1/10)``)."""
    h, w = (size, size) if isinstance(size, int) else size
    return (np.random.default_rng(seed).uniform(0, 1, (1, h, w, channels)) * INPUT_SCALE).astype(np.float32)


def crop_to_multiple(image: np.ndarray, multiple: int = 32) -> np.ndarray:
    """Centre crop [H, W, ...] so both sides are multiples of ``multiple`` (the reference code's ``crop_image``
    crops the bottom-right; a centre crop keeps the subject)."""
    h, w = image.shape[:2]
    nh, nw = h - h % multiple, w - w % multiple
    if nh == 0 or nw == 0:
        raise ValueError(f"image {h}×{w} is smaller than {multiple} pixels on a side")
    top, left = (h - nh) // 2, (w - nw) // 2
    return image[top:top + nh, left:left + nw]


class AveragedGenerator(Generator):
    """A :class:`Generator` that also keeps the exponential moving average of its noisy outputs,
    avg ← decay·avg + (1 − decay)·out (started at the first output), updated inside the compiled step each time
    the engine asks for the optimisation image (once per Adam step). ``average()`` reads it; it is checkpointed."""

    def __init__(self, model: keras.Model, z: np.ndarray, decay: float = EMA_DECAY, **kwargs):
        super().__init__(model, z, **kwargs)
        self.decay = float(decay)
        shape = (self.n, *model.output_shape[1:])
        self.avg = tf.Variable(tf.zeros(shape), trainable=False, name="output_average")
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="average_count")
        # reading the image outside the compiled step (at log points) through one traced graph: an eager call
        # of the ~120-layer network costs more than a whole compiled optimisation step
        self._read = tf.function(lambda: Generator.image(self))

    def image(self, seed=None) -> tf.Tensor:
        if seed is None and tf.executing_eagerly():
            return self._read()
        out = super().image(seed)
        if seed is not None:
            first = tf.equal(self.count, 0)
            new = tf.where(first, out, self.decay * self.avg + (1.0 - self.decay) * tf.stop_gradient(out))
            self.avg.assign(new)
            self.count.assign_add(1)
        return out

    def average(self) -> np.ndarray:
        return np.asarray(self.avg)

    def trackables(self) -> dict:
        return {**super().trackables(), "average": self.avg, "average_count": self.count}


def generator_parameterization(size: int | tuple[int, int], *, noise_std: float = NOISE_STD_DENOISE,
                               output_channels: int = 3, output_scale: float = 1.0, output_offset=0.0,
                               ema: float | None = EMA_DECAY, seed: int = 0, **net_kwargs) -> Generator:
    """The DIP generator on its fixed noise code as a parameterisation (image = sigmoid output × scale + offset).
    ``size`` is the generator's (input code's) size; ``net_kwargs`` go to :func:`skip_generator` (e.g.
    ``**FEATURE_INVERSION_NET.kwargs(), crop_to=224``). ``ema``: keep the moving average of outputs (None: plain
    :class:`Generator`)."""
    model = skip_generator(size, output_channels=output_channels, seed=seed, **net_kwargs)
    z = input_code(size, int(model.input_shape[-1]), seed)
    kwargs = dict(noise_std=noise_std, training=True, output_scale=output_scale, output_offset=output_offset)
    return AveragedGenerator(model, z, ema, **kwargs) if ema else Generator(model, z, **kwargs)
