"""Learned inversion modules (Harder's thesis after Dosovitskiy & Brox; spec ``learned_inverters.md``): small
networks mapping one layer's features back to the layer below (or to the image), one module per operation,
trained on the frozen classifier's own features and chained from a deep layer down to pixels.

Module kinds (every layer with a bias; weights and biases glorot-uniform as the original, or zero biases):

=========  ====================================================================================================
``dc``      transposed conv (op1: kernel / stride) to a hidden map the target's size → ReLU → conv (op2) (final)
``cd``      conv (op1: kernel / stride, at the input's resolution) → ReLU → transposed conv (op2: kernel / stride)
            to the target's size
``dd``      transposed conv (op1) to a hidden map the target's size → ReLU → transposed conv (op2, stride 1)
``resize``  nearest-neighbour resize to the target's H×W → conv → ReLU → conv (Odena et al.)
=========  ====================================================================================================

A transposed convolution meets its target's size as the thesis' ``tf.nn.conv2d_transpose(output_shape=target)``
does (:func:`transposed_offset`: where TF's padding puts the window when the full output overshoots the target).
:func:`receptive_geometry` gives each kind's closed-form footprint of one input pixel and how many input pixels
cover each output phase (uneven coverage by the last operation is what draws checkerboard artefacts).

A :class:`ModuleSpec` names its input tap and its target tap (``"image"``: RGB 0–255, the thesis' ``rgb_scaled``;
``"bgr_normed"``: the classifier's own input, for the Caffe nets the mean-subtracted BGR image),
so modules compose: :data:`CATALOGUE` holds DC1–DC9 (AlexNet) and DC1–DC10 (VGG16) as the spec's table, and
:func:`chain` finds the modules from a starting layer down to the image. :func:`train_modules` trains a set of
modules with :class:`tfrestore.train.training.Trainer` (a custom step under a ``tf.distribute`` strategy): ``solo`` (one
module on the classifier's true input features), ``merged`` (the chain fine-tuned on the sum of every module's MSE,
each fed its predecessor's reconstruction) or ``end_to_end`` (the image loss only). Trained modules are artifacts
of :mod:`tfrestore.core.store` (:func:`stack_key`, :func:`train_stored`): ``inverter/<net>/<regime>/<name>/<digest>/``.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfrestore import data, nets
from tfrestore.core import files, store
from tfrestore.train import training

IMAGE = "image"
NET_INPUT = "bgr_normed"      # the classifier's input (nets.preprocess of the RGB image): the May 2017 target (§5)
BIAS_INIT = "glorot"          # the thesis' biases: tf.get_variable's default glorot-uniform, not zeros (spec §1)


@dataclasses.dataclass(frozen=True)
class ModuleSpec:
    """One inversion module: ``source`` tap → ``target`` tap (``"image"``), its kind and geometry. op1 is the
    first operation (kernel1 / stride1 / padding1), op2 the second (kernel2 / stride2 / padding2), as the thesis'
    ``op1_hw, op1_strides, op1_pad, op2_…``; only a cd module's op2 (its transposed convolution) may be strided —
    the other kinds' op2 works on a hidden map that already has the target's size."""
    name: str
    source: str
    target: str
    hidden: int
    kernel1: int = 8
    stride1: int = 1
    padding1: str = "same"
    kernel2: int = 8
    kind: str = "dc"
    stride2: int = 1
    padding2: str = "same"


def _alexnet() -> tuple[ModuleSpec, ...]:
    # spec §2: (hidden; op1 kernel / stride; op2 kernel); unrecorded kernels follow the neighbours' 8×8
    return (ModuleSpec("DC1", "conv1/lin", IMAGE, 96, 11, 4, "valid", 11),
            ModuleSpec("DC2", "lrn1", "conv1/lin", 96, 8, 1, "same", 8),
            ModuleSpec("DC3", "pool1", "lrn1", 96, 3, 2, "valid", 8),
            ModuleSpec("DC4", "conv2/lin", "pool1", 256, 8, 1, "same", 8),
            ModuleSpec("DC5", "lrn2", "conv2/lin", 256),
            ModuleSpec("DC6", "pool2", "lrn2", 256, 3, 2, "valid", 8),
            ModuleSpec("DC7", "conv3/lin", "pool2", 384),
            ModuleSpec("DC8", "conv4/lin", "conv3/lin", 384),
            ModuleSpec("DC9", "conv5/lin", "conv4/lin", 384))


def _vgg16() -> tuple[ModuleSpec, ...]:
    # unrecorded kernels follow the recorded 5×5
    return (ModuleSpec("DC1", "conv1_1/lin", IMAGE, 64, 5, 1, "same", 5),
            ModuleSpec("DC2", "conv1_2/lin", "conv1_1/lin", 64, 5, 1, "same", 5),
            ModuleSpec("DC3", "pool1", "conv1_2/lin", 64, 5, 2, "same", 5),
            ModuleSpec("DC4", "conv2_1/lin", "pool1", 128, 5, 1, "same", 5),
            ModuleSpec("DC5", "conv2_2/lin", "conv2_1/lin", 128, 5, 1, "same", 5),
            ModuleSpec("DC6", "pool2", "conv2_2/lin", 128, 5, 2, "same", 5),
            ModuleSpec("DC7", "conv3_1/lin", "pool2", 256, 5, 1, "same", 5),
            ModuleSpec("DC8", "conv3_2/lin", "conv3_1/lin", 256, 5, 1, "same", 5),
            ModuleSpec("DC9", "conv3_3/lin", "conv3_2/lin", 256, 5, 1, "same", 5),
            ModuleSpec("DC10", "pool3", "conv3_3/lin", 256, 5, 2, "same", 5))


def _digits() -> tuple[ModuleSpec, ...]:
    # not the thesis': the same design for tfrestore's trained digits net, so a stack can be trained here
    return (ModuleSpec("DC1", "conv1", IMAGE, 32, 3, 1, "same", 3),
            ModuleSpec("DC2", "pool1", "conv1", 32, 3, 2, "same", 3),
            ModuleSpec("DC3", "conv2", "pool1", 64, 3, 1, "same", 3),
            ModuleSpec("DC4", "pool2", "conv2", 64, 3, 2, "same", 3))


CATALOGUE: dict[str, tuple[ModuleSpec, ...]] = {"alexnet": _alexnet(), "vgg16": _vgg16(), "digits": _digits()}


def catalogue(net: str) -> tuple[ModuleSpec, ...]:
    """The module set of ``net`` (the registry's ``inverters`` fact: CaffeNet shares AlexNet's)."""
    family = nets.REGISTRY[net].inverters if net in nets.REGISTRY else None
    if family is None:
        having = [n for n in nets.net_names() if nets.spec(n).inverters]
        raise ValueError(f"learned inverters exist for {', '.join(having)}, not '{net}'")
    return CATALOGUE[family]


def tap(net: str, name: str) -> str:
    return name if name in (IMAGE, NET_INPUT) else nets.resolve_layer(net, name)


def chain(net: str, start: str) -> list[ModuleSpec]:
    """The modules from the one reading ``start`` down to the image, deepest first."""
    specs = catalogue(net)
    by_source = {tap(net, s.source): s for s in specs}
    start_tap = tap(net, start)
    if start_tap not in by_source:
        valid = ", ".join(s.source for s in specs)
        raise ValueError(f"no inversion module starts at '{start}' for {net}; starting layers: {valid}")
    out, current = [], start_tap
    while current != IMAGE:
        spec = by_source[current]
        out.append(spec)
        current = tap(net, spec.target)
    return out


def build_module(spec: ModuleSpec, input_shape: Sequence[int], target_shape: Sequence[int], *,
                 seed: int = 0, bias_init: str = BIAS_INIT) -> keras.Model:
    """The Keras model for ``spec`` from [H, W, C] ``input_shape`` to ``target_shape`` (checked); ``bias_init``:
    ``"glorot"`` (the thesis') or ``"zeros"``."""
    if bias_init not in ("glorot", "zeros"):
        raise ValueError(f"bias_init must be 'glorot' or 'zeros', got {bias_init!r}")
    if spec.kind not in ("dc", "cd", "dd", "resize"):
        raise ValueError(f"module kind must be dc, cd, dd or resize, got {spec.kind!r}")
    if spec.kind != "cd" and spec.stride2 != 1:
        raise ValueError(f"{spec.name}: a {spec.kind} module's second operation works at the target's size, so its "
                         f"stride2 must be 1 (got {spec.stride2}); only a cd module upsamples in its second operation")
    L = keras.layers
    count = iter(range(1, 100))
    init = lambda: keras.initializers.GlorotUniform(seed=seed * 100 + next(count))          # noqa: E731
    b_init = (lambda: keras.initializers.GlorotUniform(seed=seed * 100 + 50 + next(count))) \
        if bias_init == "glorot" else (lambda: "zeros")                                       # noqa: E731
    th, tw, tc = target_shape
    x_in = keras.Input(tuple(input_shape), name=f"{spec.name}_in")

    def deconv(x, filters, k, stride, padding, name):
        y = L.Conv2DTranspose(filters, k, stride, padding, kernel_initializer=init(), bias_initializer=b_init(),
                              name=f"{spec.name}_{name}")(x)
        return _fit(y, th, tw, spec, k, stride, padding, int(x.shape[1]), int(x.shape[2]))

    def conv(x, filters, k, stride, padding, name):
        return L.Conv2D(filters, k, stride, padding, kernel_initializer=init(), bias_initializer=b_init(),
                        name=f"{spec.name}_{name}")(x)

    if spec.kind == "dc":
        h = L.ReLU()(deconv(x_in, spec.hidden, spec.kernel1, spec.stride1, spec.padding1, "deconv"))
        out = conv(h, tc, spec.kernel2, 1, "same", "conv")
    elif spec.kind == "cd":
        # the original's ConvDeconvModule: conv(op1) at the input's resolution, the upsampling in op2
        h = L.ReLU()(conv(x_in, spec.hidden, spec.kernel1, spec.stride1, spec.padding1, "conv"))
        out = deconv(h, tc, spec.kernel2, spec.stride2, spec.padding2, "deconv")
    elif spec.kind == "dd":
        h = L.ReLU()(deconv(x_in, spec.hidden, spec.kernel1, spec.stride1, spec.padding1, "deconv1"))
        out = deconv(h, tc, spec.kernel2, 1, spec.padding2, "deconv2")
    else:
        h = L.Resizing(th, tw, interpolation="nearest", name=f"{spec.name}_resize")(x_in)
        h = L.ReLU()(conv(h, spec.hidden, spec.kernel1, 1, "same", "conv1"))
        out = conv(h, tc, spec.kernel2, 1, "same", "conv2")
    model = keras.Model(x_in, out, name=spec.name)
    if tuple(model.output_shape[1:]) != tuple(target_shape):
        raise ValueError(f"{spec.name} maps {tuple(input_shape)} to {model.output_shape[1:]}, not the target "
                         f"{tuple(target_shape)}")
    return model


def transposed_offset(size_in: int, size_out: int, kernel: int, stride: int, padding: str) -> int:
    """Where ``tf.nn.conv2d_transpose(output_shape=size_out)`` (the thesis' op) starts inside Keras' full
    transposed output (``size_in·stride`` for SAME, ``(size_in − 1)·stride + kernel`` for VALID), in pixels along
    one axis. TF pads the forward convolution of a ``size_out`` map by ⌊total / 2⌋ on top, total =
    max((size_in − 1)·stride + kernel − size_out, 0) (SAME; 0 for VALID); Keras' full output is the same with
    size_out = size_in·stride, so the window starts at the difference of the two top paddings."""
    if padding.lower() == "valid":
        return 0

    def top(out: int) -> int:
        return max((size_in - 1) * stride + kernel - out, 0) // 2
    return top(size_out) - top(size_in * stride)


def _fit(h, th, tw, spec, kernel, stride, padding, in_h, in_w):
    """A transposed convolution's output cut to the target's H×W where it overshoots by a pixel or two (e.g. SAME
    stride 2 to an odd map), at the window :func:`transposed_offset` gives (TF's own ``output_shape``); smaller
    is an error."""
    if h.shape[1] == th and h.shape[2] == tw:
        return h
    if h.shape[1] < th or h.shape[2] < tw:
        raise ValueError(f"{spec.name}: the transposed convolution gives {h.shape[1]}×{h.shape[2]}, smaller than the "
                         f"target {th}×{tw}")
    top = transposed_offset(in_h, th, kernel, stride, padding)
    left = transposed_offset(in_w, tw, kernel, stride, padding)
    return keras.layers.Cropping2D(((top, h.shape[1] - th - top), (left, h.shape[2] - tw - left)),
                                   name=f"{spec.name}_crop")(h)


def receptive_geometry(spec: ModuleSpec) -> dict:
    """Closed-form geometry of a dc, dd or cd ``spec`` along one axis, away from the borders (odd kernels):
    ``footprint`` — how many output pixels one input pixel reaches; ``paths`` — (min, max) over output pixels of
    how many terms (input pixel × op1 tap × op2 tap) the module sums into it; ``last_stride`` — the stride of
    the operation that writes the output. A strided last operation whose kernel the stride does not divide sums
    unevenly many terms into its output phases — the checkerboard pattern the thesis saw in cd modules
    (learned_inverters.md §5); a stride-1 last operation evens the phases out."""
    k1, s1, k2, s2 = spec.kernel1, spec.stride1, spec.kernel2, spec.stride2
    if spec.kind in ("dc", "dd"):
        # op1 (transposed, stride s1) gives hidden pixel q the taps ≡ q (mod s1); op2 (stride 1) sums k2 of them
        taps = [len(range(q, k1, s1)) for q in range(s1)]
        paths = [sum(taps[(p + d) % s1] for d in range(k2)) for p in range(s1)]
        footprint, last = k1 + k2 - 1, 1
    elif spec.kind == "cd":
        # op1 (conv, stride s1) reads k1 input pixels per hidden pixel and one input pixel reaches ⌈k1 / s1⌉
        # hidden pixels; op2 (transposed, stride s2) gives output pixel p the taps ≡ p (mod s2)
        paths = [len(range(p, k2, s2)) * k1 for p in range(s2)]
        footprint, last = (-(-k1 // s1) - 1) * s2 + k2, s2
    else:
        raise ValueError(f"receptive_geometry covers dc, dd and cd modules, not {spec.kind!r}")
    return {"footprint": footprint, "paths": (min(paths), max(paths)), "last_stride": last}


# ---- the classifier's taps -----------------------------------------------------------------------------------
class Taps:
    """The frozen classifier's features at every tap a set of modules reads or targets, for RGB 0–255 images."""

    def __init__(self, model: keras.Model, specs: Sequence[ModuleSpec]):
        self.model, self.net = model, nets.net_of(model)
        names = {tap(self.net, s.source) for s in specs} | {tap(self.net, s.target) for s in specs}
        self.layers = sorted(n for n in names if n not in (IMAGE, NET_INPUT))
        self.extractor = nets.feature_extractor(model, self.layers)

    def __call__(self, images_rgb) -> dict[str, tf.Tensor]:
        x = tf.convert_to_tensor(images_rgb, tf.float32)
        net_in = nets.preprocess(self.net, x)
        feats = self.extractor(net_in, training=False)
        out = {k: tf.stop_gradient(v) for k, v in feats.items()}
        out[IMAGE], out[NET_INPUT] = x, net_in
        return out

    def shape(self, name: str) -> tuple:
        size = self.model.input_shape[1]
        if name in (IMAGE, NET_INPUT):
            return (size, size, 3)
        return tuple(self.extractor.output[name].shape[1:])


def build_modules(taps: Taps, specs: Sequence[ModuleSpec], *, seed: int = 0, bias_init: str = BIAS_INIT,
                  strategy=None) -> dict[str, keras.Model]:
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        return {s.name: build_module(s, taps.shape(tap(taps.net, s.source)), taps.shape(tap(taps.net, s.target)),
                                     seed=seed + i, bias_init=bias_init) for i, s in enumerate(specs)}


def run_chain(modules: dict[str, keras.Model], specs: Sequence[ModuleSpec], start_features) -> list[tf.Tensor]:
    """Apply the modules deepest first, each to its predecessor's output; returns every reconstruction."""
    outs, x = [], start_features
    for s in specs:
        x = modules[s.name](x, training=False)
        outs.append(x)
    return outs


def rgb(net: str, target: str, rec) -> np.ndarray:
    """A reconstruction of an image target as RGB 0–255 (not clipped): ``image`` as it is, ``bgr_normed``
    through :func:`tfrestore.nets.deprocess`."""
    return np.asarray(nets.deprocess(net, rec) if target == NET_INPUT else rec, np.float64)


# ---- training data ---------------------------------------------------------------------------------------------
class ImageSource(training.Source):
    """RGB 0–255 training images for a net's input size ``crop`` from files or embedded sample names, decoded in
    the ``tf.data`` pipeline: each is resized so its shorter side is ``crop·resize`` and a ``crop``² window taken
    at random (position and a left–right flip, seeded by (seed, draw): a resumed training sees the same crops) or,
    with ``augment=False``, centred."""

    def __init__(self, sources: Sequence[str], crop: int, *, augment: bool = True, resize: float = 1.15,
                 seed: int = 0):
        self.sources, self.crop, self.augment, self.seed = list(sources), int(crop), augment, seed
        self.size = len(self.sources)
        self.short = int(round(crop * resize)) if augment else crop
        self._paths = tf.constant([str(p) for p in self.sources])

    def load(self, index, draw):
        def decode(p):
            p = p.item() if isinstance(p, np.ndarray) else p       # a 0-d array when called eagerly
            return data.load_image(p.decode()).astype(np.float32)
        img = tf.numpy_function(decode, [self._paths[index]], tf.float32)
        img.set_shape([None, None, 3])
        shape = tf.cast(tf.shape(img)[:2], tf.float32)
        scale = float(self.short) / tf.reduce_min(shape)
        img = tf.image.resize(img, tf.cast(tf.math.ceil(shape * scale), tf.int32), antialias=True)
        if self.augment:
            seed = tf.stack([tf.cast(self.seed, tf.int64), tf.cast(draw, tf.int64)])
            img = tf.image.stateless_random_crop(img, [self.crop, self.crop, 3], seed=seed)
            img = tf.image.stateless_random_flip_left_right(img, seed=seed + 1)
        else:
            img = tf.image.resize_with_crop_or_pad(img, self.crop, self.crop)
        return {"image": tf.clip_by_value(img, 0.0, 255.0)}


def image_sources(folder: str | None, val_fraction: float = 0.2) -> tuple[list[str], list[str], str]:
    """(training, validation, description): a folder's images split by sorted name (the last ``val_fraction``
    held out, disjoint), or the embedded photos (the last two held out) — a demonstration set."""
    if folder:
        paths = [str(p) for p in data.image_folder(folder)]
        n_val = max(1, int(round(len(paths) * val_fraction)))
        return paths[:-n_val], paths[-n_val:], f"{len(paths)} images from {folder}"
    names = data.sample_image_names()
    return names[:-2], names[-2:], (f"the {len(names)} embedded sample photos with random crops and flips "
                                    "(a demonstration set, not ImageNet)")


# ---- training ---------------------------------------------------------------------------------------------------
# The thesis' schedules as it typed them (learned_inverters.md §4.1, §4.2), under its rule (§3: a breakpoint's rate
# is adopted after the step at which its iteration is reached, entries consumed in order): the solo schedule's
# second point is reached only after the last step and its third is out of order, so solo training runs at 3e-4
# throughout (§7). Images in list order, never shuffled, wrapping around (§3); Adam with TF1's ε = 1e-8.
SOLO_SCHEDULE = ((0, 3e-4), (3000, 1e-4), (2000, 3e-5))
MERGED_SCHEDULE = ((0, 3e-6), (1000, 1e-6), (2000, 3e-7))
SOLO = training.TrainingConfig(steps=3000, batch=32, learning_rate=3e-4, beta1=0.9, beta2=0.999, epsilon=1e-8,
                               val_every=100, checkpoint_every=500, shuffle=False, breakpoints=SOLO_SCHEDULE,
                               breakpoint_rule="after")
MERGED = dataclasses.replace(SOLO, learning_rate=3e-6, breakpoints=MERGED_SCHEDULE)
REGIMES = ("solo", "merged", "end_to_end")


def loss_fn(taps: Taps, modules: dict[str, keras.Model], specs: Sequence[ModuleSpec], regime: str):
    """Per-module MSE terms for ``regime``; ``loss`` is what is minimised."""
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {', '.join(REGIMES)}, got {regime!r}")
    net = taps.net

    def fn(_model, batch, training_):
        feats = taps(batch["image"])
        terms = {}
        if regime == "solo":
            for s in specs:
                rec = modules[s.name](feats[tap(net, s.source)], training=training_)
                terms[s.name] = tf.reduce_mean(tf.square(rec - feats[tap(net, s.target)]))
            total = tf.add_n(list(terms.values()))
        else:
            recs = run_chain(modules, specs, feats[tap(net, specs[0].source)])
            for s, rec in zip(specs, recs):
                terms[s.name] = tf.reduce_mean(tf.square(rec - feats[tap(net, s.target)]))
            total = terms[specs[-1].name] if regime == "end_to_end" else tf.add_n(list(terms.values()))
        return {"loss": total, **terms}

    return fn


def train_modules(taps: Taps, modules: dict[str, keras.Model], specs: Sequence[ModuleSpec], source: training.Source,
                  val_images: np.ndarray, config: training.TrainingConfig, *, regime: str = "solo",
                  trainable: Sequence[str] | None = None, legacy_train_all: bool = False, strategy=None,
                  out: str | Path | None = None, logdir: str | Path | None = None, resume: bool = False,
                  progress: bool = True, stop_after: int | None = None) -> dict:
    """Train ``modules`` (only those named in ``trainable``, default all; ``legacy_train_all=True`` updates every
    module whatever its flag, as the original did) and return the Trainer's summary."""
    names = [s.name for s in specs]
    trainable = list(trainable) if trainable is not None else names
    chosen = names if legacy_train_all else trainable
    variables = [v for n in chosen for v in modules[n].trainable_variables]
    probe = val_images[:4]

    def images(_model):
        feats = taps(probe)
        recs = run_chain(modules, specs, feats[tap(taps.net, specs[0].source)])
        if specs[-1].target not in (IMAGE, NET_INPUT):
            return {}
        rec = rgb(taps.net, specs[-1].target, recs[-1])
        rec = np.clip(rec / 255.0, 0, 1)
        orig = np.asarray(probe) / 255.0
        # the thesis notes' two error maps: signed per channel around grey (colour-accurate) and absolute
        return {"reconstruction": rec, "original": orig, "colour_error": np.clip(0.5 + (rec - orig) / 2, 0, 1),
                "abs_error": np.abs(rec - orig).mean(-1, keepdims=True)}

    trainer = training.Trainer(modules[specs[0].name], loss_fn(taps, modules, specs, regime), source, config,
                               val={"image": val_images}, strategy=strategy, images_fn=images,
                               name=f"inverter_{regime}", variables=variables,
                               checkpoint={f"module_{n}": modules[n] for n in names},
                               describe={"net": taps.net, "regime": regime, "modules": ",".join(names),
                                         "trainable": ",".join(chosen)})
    return trainer.run(out, logdir=logdir, resume=resume, progress=progress, stop_after=stop_after)


# ---- storage: trained modules are artifacts of tfrestore.core.store -------------------------------------------------------
def classifier_identity(model: keras.Model) -> str:
    """What the frozen classifier is, for a key: ``"random"`` (seeded: the key's seed) or the SHA-256 (16 hex) of
    the weight file it was loaded from — other weights under the same file name are another classifier."""
    source = nets.weights_source(model)
    path = Path(source)
    if source == "random" or not path.is_file():
        return str(source)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()[:16]


def stack_key(net: str, regime: str, specs: Sequence[ModuleSpec], config: training.TrainingConfig, *,
              classifier: str, data: str, seed: int, bias_init: str = BIAS_INIT, legacy_train_all: bool = False,
              start: Sequence[str] = ()) -> store.Key:
    """The store key of ``specs`` trained under ``regime``: ``inverter/<net>/<regime>/<DCk>`` (solo: one module)
    or ``…/<DCk>_to_<DCj>`` (a chain), configured by everything that determines the weights — the modules'
    geometry, the classifier (:func:`classifier_identity`), the data tag, the modules' initialisation seed, the
    training settings and, for a chain fine-tuned from solo modules, those modules' digests (``start``)."""
    name = specs[0].name if len(specs) == 1 else f"{specs[0].name}_to_{specs[-1].name}"
    return store.Key("inverter", f"{net}/{regime}/{name}", {
        "net": net, "regime": regime, "modules": [_geometry(s) for s in specs], "classifier": classifier,
        "data": data, "seed": seed, "bias_init": bias_init, "legacy_train_all": legacy_train_all,
        "start": list(start), "training": config.identity()})


def _geometry(spec: ModuleSpec) -> dict:
    """A module's fields for its store key; op2's stride and padding only where they differ from the defaults, so
    modules stored before those fields existed keep their keys."""
    out = dataclasses.asdict(spec)
    for name in ("stride2", "padding2"):
        if out[name] == ModuleSpec.__dataclass_fields__[name].default:
            del out[name]
    return out


def train_stored(key: store.Key, taps: Taps, modules: dict[str, keras.Model], specs: Sequence[ModuleSpec],
                 source: training.Source, val_images: np.ndarray, config: training.TrainingConfig, *,
                 regime: str, command: str, progress: bool = True, overwrite: bool = False,
                 legacy_train_all: bool = False, strategy=None) -> tuple[store.Artifact, dict | None]:
    """``modules`` loaded from ``key``'s artifact, or trained (:func:`train_modules`, checkpoints in the key's
    ``.work`` folder) and stored there first; returns (artifact, the training summary, None when reused)."""
    def make(work: Path, out: Path) -> dict:
        summary = train_modules(taps, modules, specs, source, val_images, config, regime=regime, out=work,
                                logdir=work / "tb", resume=True, progress=progress,
                                legacy_train_all=legacy_train_all, strategy=strategy)
        for s in specs:
            save_module(modules[s.name], out / module_file(s))
        files.write_json(out / "summary.json", summary)
        training.keep_logs(work, out)
        return summary

    art, built = training.stored(key, make, command=command, overwrite=overwrite, what=f"{regime} inverter")
    if not built:
        for s in specs:
            modules[s.name].load_weights(str(art.file(module_file(s))))
    return art, (dict(art.meta) if built else None)


def module_file(spec: ModuleSpec) -> str:
    return f"{spec.name}.weights.h5"


def save_module(model: keras.Model, path: str | Path) -> Path:
    return files.save_keras_weights(path, model)
