"""The shallow representations of Mahendran & Vedaldi (2015 §6; 2016 §7) as differentiable Keras networks: HOG,
HOGb and dense SIFT exactly as their MatConvNet builders ``hog_net(8)``, ``hog_net(8, 'bilinearOrientations',
true)`` and ``dsift_net(5)`` (``aravindhm/deep-goggle``, ``experiments/networks/``) compute them.

>>> phi = hog(64)                                 # [N, 64, 64, 1] grey input → [N, 8, 8, 27]
>>> x = grey_input(rgb_uint8_images)              # M&V's input: 255·rgb2gray(image) − 128
>>> phi(x)

Input (spec mv2015 §6, ``experiment_run.m``): one grey channel on the 0–255 scale minus 128, i.e.
``255·rgb2gray(im2single(rgb)) − 128``. :func:`grey_input` computes it from RGB 0–255 pictures with MATLAB's
``rgb2gray`` weights; every builder also takes ``input_channels=3``, a model whose input is tfrestore's image space
for these nets — RGB, 0–255, minus 128 in every channel — projected to grey inside the model (the projection is
linear because the weights sum to one, so the −128 carries over). M&V optimise the single grey channel and display
it as ``cat(3, x, x, x) + 128`` (:func:`rgb_from_grey_input`).

The pipeline (layer names in quotes; every layer is a fixed, weight-free function):

1. ``"gradient"`` — central differences ``gx = (I[y, x+1] − I[y, x−1]) / 2``, ``gy = (I[y+1, x] − I[y−1, x]) / 2``
   (y points down). HOG zero-pads the input by one pixel first (MatConvNet ``pad 1``: since the input is
   grey − 128, the image is surrounded by mid-grey and the outermost pixels see that step); DSIFT does not pad, so
   its gradient field is (H − 2) × (W − 2).
2. ``"orientations"`` — the gradient is projected on 2·O directions ``t_k = 2πk / (2·O)`` measured clockwise from +x
   (the originals' 2·O directional-derivative filters ``cos t_k·dx + sin t_k·dy``); with magnitude
   ``n = |∇I| = sqrt(Σ_k proj_k² / O)``:
   - hard (HOG): ``n`` goes to the direction of the largest projection, i.e. the nearest of the 2·O bin centres
     (exact ties, which pure vertical gradients hit with 9 orientations, go to the lowest index, as MATLAB ``max``);
   - bilinear (HOGb, DSIFT): ``n·max(0, 1 − |θ − t_k| / (2π / 2O))`` — linear interpolation between the two
     nearest bin centres. The originals write ``|θ − t_k|`` as ``acos(proj_k / n)``; here it is
     ``atan2(|cross_k|, proj_k)``, the same angle, whose gradient stays finite at the bin centres; flat pixels
     (``n = 0``) and zero-energy HOG blocks get the zero subgradient where the originals' hand-written backward
     passes give NaN (``0·Inf``, ``0/0``).
3. ``"cells"`` / ``"bins"`` — spatial pooling with a separable triangular (bilinear) window of width 2·s, stride s
   (the originals' ``a = 1 − |((1:2s) − (2s+1)/2) / s|`` filter applied to each orientation channel, a grouped
   convolution): a pixel at distance d from a cell centre adds ``(1 − |dx|/s)(1 − |dy|/s)`` of its vote, so each
   interior pixel is shared by its four nearest cells with weights summing to one (VLFeat's ``vl_hog`` bilinear
   spatial binning). HOG pads by s/2, so cell c is centred on pixel ``s·c + (s − 1)/2`` and there are
   ``floor(H / s)`` cells; votes of pixels beyond the outer cell centres are partly lost (the zero padding), as
   in the original. DSIFT pads nothing: bin b is centred on image pixel ``s·b + s + 1/2``, and there are
   ``floor((H − 2 − 2s) / s) + 1`` bins.
4. HOG ``"features"`` — UoCTTI (DPM v5) block normalisation as ``hog_net`` builds it: the 2·O contrast-sensitive
   (directed) cell histogram h and its contrast-insensitive fold ``u_o = h_o + h_{o+O}`` are stacked (3·O values);
   every 2 × 2 block of cells is divided by ``max(‖u of its four cells‖₂, 1e-6)``, clamped at 0.2, and each cell
   gets ``0.5 × Σ`` of its (up to four) normalised, clamped copies. **Border cells**: blocks exist only where all
   four of their cells exist (``(Hc − 1) × (Wc − 1)`` blocks; the original's ``dec`` layer zero-pads them), so an
   edge cell sums two copies and a corner cell one. Output ``[N, floor(H/s), floor(W/s), 3·O]``: channels
   ``0 … 2O−1`` directed orientations ``t_k``, then ``2O … 3O−1`` undirected ones.
   ``texture=True`` appends UoCTTI's 4 texture (energy) features — for each of the four blocks (up-left,
   up-right, down-left, down-right) ``(1/√18)·Σ_o min(0.2, u_o / block norm)``, 0 for a missing block — giving
   the 31 dimensions of ``vl_hog``'s UoCTTI variant (18 + 9 + 4). ``hog_net`` does not compute them (its output
   has 27 channels, and the M&V 2015 protocol compares only those 27: evaluation_protocols §1.2), so they are off
   by default.
5. DSIFT ``"descriptors"`` — 4 × 4 spatial bins with stride 3 bins (15 pixels for bin 5) form one descriptor; bin
   (i, j) is weighted by the Gaussian ``exp(−((i − 1.5)² + (j − 1.5)²) / (2·1.5²))`` evaluated at its centre.
   Channel ``(4·i + j)·8 + o`` holds row i, column j, orientation o (VLFeat's order: y slowest, orientation
   fastest). ``"normalise"``: ``d / sqrt(1e-6 + ‖d‖²)`` (MatConvNet ``normalize [256, 1e-6, 1, .5]``, a window
   wider than the 128 channels), then clamped at 0.2. ``dsift_net`` stops there; VLFeat's ``vl_dsift`` also
   renormalises after clamping (``d / (‖d‖ + FLT_EPSILON)``): ``renormalize=True``. Output
   ``[N, floor((nb − 4) / 3) + 1, …, 128]`` for nb bins per side.

How ``hog_net`` differs from VLFeat's ``vl_hog`` (UoCTTI), which it is said to reproduce: gradients at every
pixel with zero padding (``vl_hog`` skips the outermost pixels) and halved (no effect beyond the norm floor);
block norm ``max(‖·‖, 1e-6)`` instead of ``sqrt(‖·‖² + 1e-4)``; missing border blocks count as zero instead of
``vl_hog``'s clamped (replicated) neighbours; ``floor(H / s)`` instead of ``round(H / s)`` cells; no texture
features. How ``dsift_net`` differs from ``vl_dsift``: bin centres fall between pixels (an even 2s-tap triangle,
``vl_dsift``'s is 2s − 1 taps centred on a pixel); gradients on interior pixels only (``vl_dsift`` uses one-sided
differences at the border); Gaussian weight σ = 1.5 bins at the bin centres (``vl_dsift``: σ = 2 bins, averaged
over each bin); descriptor step 3 bins (``vl_dsift`` default: 1 pixel); no renormalisation.

All models are Keras functional models: ``model(x)`` works inside ``tf.function`` and under XLA and is
differentiable w.r.t. ``x`` almost everywhere (HOG's hard orientation binning is piecewise constant, so its
gradient carries only the magnitude path, exactly as the original's backward pass).
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

# --- Constants and where they come from (deep-goggle networks/hog_net.m, dsift_net.m; experiment_run.m) ---------
HOG_CELL = 8                 # hog_net(8) in experiment_run.m; spec mv2015 §6
HOG_ORIENTATIONS = 9         # hog_net opts.numOrientations (undirected; 2·9 = 18 directed)
HOG_CLAMP = 0.2              # hog_clamp_forward: min(x, 0.2)
HOG_NORM_FLOOR = 1e-6        # hog_norm_forward: max(n, 1e-6)
HOG_CELL_AVERAGE = 0.5       # 'dec' filters: 0.5 per block copy
UOCTTI_TEXTURE_SCALE = 1.0 / math.sqrt(18.0)   # vl_hog / DPM texture features (0.2357)
DSIFT_BIN = 5                # dsift_net(5) in experiment_run.m; spec mv2015 §6 (mv2016 §7 uses dsift_net(8))
DSIFT_ORIENTATIONS = 8       # dsift_net: 2 × numOrientations (4)
DSIFT_SPATIAL_BINS = 4       # 4 × 4 bins per descriptor
DSIFT_STEP_BINS = 3          # descriptor conv stride 3 (bins)
DSIFT_WINDOW_SIGMA = 1.5     # Gaussian weight per bin, in bins
DSIFT_CLAMP = 0.2
DSIFT_NORM_KAPPA = 1e-6      # vl_nnnormalize [256, 1e-6, 1, .5]: d / sqrt(1e-6 + Σ d²)
VLFEAT_FLT_EPSILON = 1.1920928955078125e-07    # vl_dsift's renormalisation: d / (‖d‖ + FLT_EPSILON)
# MATLAB rgb2gray: the first row of inv(NTSC YIQ matrix), ≈ BT.601 (0.299, 0.587, 0.114). Not scikit-image's
# rgb2gray (BT.709 weights), which would change every feature.
GREY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)
GREY_OFFSET = 128.0          # normalize = 255·rgb2gray(im2single(x)) − 128; denormalize = cat(3, x, x, x) + 128
_FLAT = 1e-30                # squared gradient magnitude below which a pixel counts as flat (n = 0)


# --- Input conversions ------------------------------------------------------------------------------------------
def grey_input(images) -> tf.Tensor:
    """RGB pictures on the 0–255 scale ((H, W, 3) or (N, H, W, 3), uint8 or float) → M&V's shallow-net input
    ``255·rgb2gray(rgb / 255) − 128`` as float32 [N, H, W, 1] (MATLAB's ``rgb2gray`` weights, no rounding, as for
    the single-precision image the original converts). Grey pictures ((H, W) or (N, H, W, 1)) pass through."""
    x = tf.cast(tf.convert_to_tensor(images), tf.float32)
    if x.shape.rank == 2:
        x = x[None, :, :, None]
    elif x.shape.rank == 3:
        x = x[None]
    if x.shape.rank != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"images must be RGB (H, W, 3) / (N, H, W, 3) or grey (H, W) / (N, H, W, 1); got shape "
                         f"{x.shape}")
    if x.shape[-1] == 3:
        x = tf.reduce_sum(x * tf.constant(GREY_WEIGHTS, tf.float32), axis=-1, keepdims=True)
    return x - GREY_OFFSET


def rgb_from_grey_input(x) -> tf.Tensor:
    """M&V's ``denormalize``: grey input [N, H, W, 1] → RGB 0–255 [N, H, W, 3] (grey + 128 in every channel; not
    clipped)."""
    x = tf.convert_to_tensor(x)
    return tf.repeat(x, 3, axis=-1) + tf.cast(GREY_OFFSET, x.dtype)


def grey_from_image_space(x) -> tf.Tensor:
    """tfrestore image space for these nets (RGB, 0–255, minus 128 per channel) [N, H, W, 3] → grey input
    [N, H, W, 1]. Linear (the weights sum to one), so differentiable and offset-free."""
    x = tf.convert_to_tensor(x)
    return tf.reduce_sum(x * tf.constant(GREY_WEIGHTS, x.dtype), axis=-1, keepdims=True)


def _safe_sqrt(x: tf.Tensor) -> tf.Tensor:
    """sqrt with the zero subgradient at 0 (tf.sqrt's is infinite and turns 0·∞ into NaN)."""
    positive = x > _FLAT
    return tf.where(positive, tf.sqrt(tf.where(positive, x, tf.ones_like(x))), tf.zeros_like(x))


# --- Layers ------------------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="tfrestore")
class GreyProjection(keras.layers.Layer):
    """Image space (RGB − 128) [N, H, W, 3] → grey input [N, H, W, 1] with MATLAB's ``rgb2gray`` weights."""

    def call(self, x):
        return grey_from_image_space(x)


@keras.saving.register_keras_serializable(package="tfrestore")
class CentralDifferences(keras.layers.Layer):
    """[N, H, W, 1] → [N, H', W', 2] = (gx, gy), halved central differences, y down. ``pad=True``: zero-pad one
    pixel first (H' = H, HOG); ``False``: interior pixels only (H' = H − 2, DSIFT)."""

    def __init__(self, pad: bool, **kwargs):
        super().__init__(**kwargs)
        self.pad = pad

    def call(self, x):
        if self.pad:
            x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        gx = (x[:, 1:-1, 2:] - x[:, 1:-1, :-2]) / 2
        gy = (x[:, 2:, 1:-1] - x[:, :-2, 1:-1]) / 2
        return tf.concat([gx, gy], axis=-1)

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package="tfrestore")
class OrientationBinning(keras.layers.Layer):
    """(gx, gy) [..., 2] → gradient magnitude split over ``directions`` orientation bins [..., directions]: hard
    (all to the nearest bin centre) or bilinear (linear in angle between the two nearest centres). The votes of
    a pixel sum to its gradient magnitude in both modes."""

    def __init__(self, directions: int, bilinear: bool, **kwargs):
        super().__init__(**kwargs)
        self.directions, self.bilinear = directions, bilinear

    def call(self, g):
        angles = (2 * np.pi / self.directions) * np.arange(self.directions)   # the originals' rounding order
        cos, sin = tf.constant(np.cos(angles), g.dtype), tf.constant(np.sin(angles), g.dtype)
        gx, gy = g[..., :1], g[..., 1:]
        along = gx * cos + gy * sin          # projection on each bin direction (the originals' filters)
        n2 = tf.square(gx) + tf.square(gy)
        magnitude = _safe_sqrt(n2)
        if not self.bilinear:
            is_max = along >= tf.reduce_max(along, axis=-1, keepdims=True)
            first = tf.logical_and(is_max, tf.cumsum(tf.cast(is_max, tf.int32), axis=-1) == 1)
            return magnitude * tf.stop_gradient(tf.cast(first, g.dtype))
        across = gy * cos - gx * sin          # projection on each bin direction turned by +90°
        moving = n2 > _FLAT
        off_angle = tf.atan2(tf.abs(tf.where(moving, across, tf.zeros_like(across))),    # |θ − t_k| in [0, π]
                             tf.where(moving, along, tf.ones_like(along)))
        weight = tf.nn.relu(1.0 - off_angle * (self.directions / (2 * np.pi)))
        return magnitude * weight

    def get_config(self):
        return {**super().get_config(), "directions": self.directions, "bilinear": self.bilinear}


@keras.saving.register_keras_serializable(package="tfrestore")
class TriangularPooling(keras.layers.Layer):
    """Per-channel pooling with the separable triangle ``1 − |d| / s`` of width 2s, stride s, after zero-padding
    ``pad`` pixels on every side: [N, H, W, C] → [N, floor((H + 2·pad − 2s) / s) + 1, …, C]."""

    def __init__(self, size: int, pad: int, **kwargs):
        super().__init__(**kwargs)
        self.size, self.pad = size, pad

    def build(self, input_shape):
        s = self.size
        taps = 1.0 - np.abs((np.arange(1, 2 * s + 1) - (2 * s + 1) / 2) / s)
        self._kernel = np.tile(np.outer(taps, taps)[:, :, None, None], [1, 1, int(input_shape[-1]), 1])

    def call(self, x):
        if self.pad:
            x = tf.pad(x, [[0, 0], [self.pad, self.pad], [self.pad, self.pad], [0, 0]])
        kernel = tf.constant(self._kernel, x.dtype)
        return tf.nn.depthwise_conv2d(x, kernel, [1, self.size, self.size, 1], "VALID")

    def get_config(self):
        return {**super().get_config(), "size": self.size, "pad": self.pad}


@keras.saving.register_keras_serializable(package="tfrestore")
class UoCTTINormalisation(keras.layers.Layer):
    """Cell histograms [N, Hc, Wc, 2·O] → UoCTTI cell features [N, Hc, Wc, 3·O (+4 with ``texture``)] as
    ``hog_net`` computes them (module docstring, step 4)."""

    def __init__(self, orientations: int, texture: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.orientations, self.texture = orientations, texture

    def call(self, h):
        o = self.orientations
        undirected = h[..., :o] + h[..., o:]
        cell_features = tf.concat([h, undirected], axis=-1)
        energy = tf.reduce_sum(tf.square(undirected), axis=-1, keepdims=True)
        block_energy = energy[:, :-1, :-1] + energy[:, 1:, :-1] + energy[:, :-1, 1:] + energy[:, 1:, 1:]
        # 1 / max(‖block‖, 1e-6), written so that no sqrt of 0 is differentiated
        inv_norm = tf.math.rsqrt(tf.maximum(block_energy, HOG_NORM_FLOOR ** 2))
        copies = []
        for dy, dx in ((1, 1), (1, 0), (0, 1), (0, 0)):     # the block up-left, up-right, down-left, down-right
            # block (y − dy, x − dx) moved onto cell (y, x); zero where that block does not exist
            at_cell = tf.pad(inv_norm, [[0, 0], [dy, 1 - dy], [dx, 1 - dx], [0, 0]])
            copies.append(tf.minimum(cell_features * at_cell, HOG_CLAMP))
        out = HOG_CELL_AVERAGE * tf.add_n(copies)
        if self.texture:
            texture = [UOCTTI_TEXTURE_SCALE * tf.reduce_sum(c[..., 2 * o:], axis=-1, keepdims=True) for c in copies]
            out = tf.concat([out] + texture, axis=-1)
        return out

    def get_config(self):
        return {**super().get_config(), "orientations": self.orientations, "texture": self.texture}


@keras.saving.register_keras_serializable(package="tfrestore")
class SiftDescriptors(keras.layers.Layer):
    """Spatial bins [N, Hb, Wb, T] → unnormalised descriptors [N, Hd, Wd, B·B·T]: B × B bins every ``step`` bins,
    bin (i, j) weighted by ``exp(−((i − c)² + (j − c)²) / (2σ²))``, c = (B − 1)/2; channel (B·i + j)·T + t."""

    def __init__(self, spatial_bins: int, step: int, sigma: float, **kwargs):
        super().__init__(**kwargs)
        self.spatial_bins, self.step, self.sigma = spatial_bins, step, sigma

    def build(self, input_shape):
        b, t = self.spatial_bins, int(input_shape[-1])
        centre = (b - 1) / 2
        kernel = np.zeros((b, b, t, b * b * t))
        for i in range(b):
            for j in range(b):
                weight = math.exp(-((i - centre) ** 2 + (j - centre) ** 2) / (2 * self.sigma ** 2))
                for o in range(t):
                    kernel[i, j, o, (b * i + j) * t + o] = weight
        self._kernel = kernel

    def call(self, x):
        return tf.nn.conv2d(x, tf.constant(self._kernel, x.dtype), self.step, "VALID")

    def get_config(self):
        return {**super().get_config(), "spatial_bins": self.spatial_bins, "step": self.step, "sigma": self.sigma}


@keras.saving.register_keras_serializable(package="tfrestore")
class SiftNormalisation(keras.layers.Layer):
    """``d / sqrt(κ + ‖d‖²)``, clamped at ``clamp``; ``renormalize`` then divides by ``‖d‖ + FLT_EPSILON``."""

    def __init__(self, kappa: float, clamp: float, renormalize: bool, **kwargs):
        super().__init__(**kwargs)
        self.kappa, self.clamp, self.renormalize = kappa, clamp, renormalize

    def call(self, d):
        d = d * tf.math.rsqrt(self.kappa + tf.reduce_sum(tf.square(d), axis=-1, keepdims=True))
        d = tf.minimum(d, self.clamp)
        if self.renormalize:
            d = d / (_safe_sqrt(tf.reduce_sum(tf.square(d), axis=-1, keepdims=True)) + VLFEAT_FLT_EPSILON)
        return d

    def get_config(self):
        return {**super().get_config(), "kappa": self.kappa, "clamp": self.clamp, "renormalize": self.renormalize}


# --- Builders ----------------------------------------------------------------------------------------------------
def _image_hw(image_size) -> tuple[int, int]:
    hw = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    if len(hw) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in hw):
        raise ValueError(f"image_size must be a positive int or (height, width) ints, got {image_size!r}")
    return int(hw[0]), int(hw[1])


def _grey_model_input(hw: tuple[int, int], input_channels: int, dtype: str):
    if input_channels not in (1, 3):
        raise ValueError(f"input_channels must be 1 (M&V's grey input, grey − 128) or 3 (image space, RGB − 128); "
                         f"got {input_channels}")
    inp = keras.Input((*hw, input_channels), dtype=dtype, name="image")
    grey = GreyProjection(name="grey", dtype=dtype)(inp) if input_channels == 3 else inp
    return inp, grey


def hog(image_size, *, cell: int = HOG_CELL, orientations: int = HOG_ORIENTATIONS, bilinear: bool = False,
        texture: bool = False, input_channels: int = 1, dtype: str = "float32", name: str | None = None
        ) -> keras.Model:
    """M&V's CNN-HOG (``hog_net(cell)``; ``bilinear=True`` is HOGb): [N, H, W, 1] grey input (grey 0–255 − 128) →
    UoCTTI features [N, floor(H/cell), floor(W/cell), 3·orientations] (+4 texture channels with ``texture``).

    Args:
        image_size: H (square) or (H, W) in pixels; at least 2·cell each way (one block of 2 × 2 cells).
        cell: cell size in pixels (even: the original pads cell/2).
        orientations: undirected orientation bins O (2·O directed bins; 9 → 27 output channels).
        bilinear: bilinear orientation assignment (HOGb) instead of the nearest bin.
        texture: append UoCTTI's 4 texture features (``vl_hog``'s 31 dims; not in ``hog_net``).
        input_channels: 1 for the grey input, 3 for tfrestore image space (RGB − 128), projected to grey.
        dtype: compute dtype ("float32"; "float64" for finite-difference checks).
    """
    hw = _image_hw(image_size)
    if cell < 2 or cell % 2:
        raise ValueError(f"cell must be an even number of pixels ≥ 2 (hog_net pads cell/2), got {cell}")
    if orientations < 2:
        raise ValueError(f"orientations must be ≥ 2, got {orientations}")
    if min(hw) < 2 * cell:
        raise ValueError(f"HOG with cell {cell} needs images of at least {2 * cell}×{2 * cell} pixels (2×2 cells "
                         f"for one block), got {hw[0]}×{hw[1]}")
    inp, x = _grey_model_input(hw, input_channels, dtype)
    x = CentralDifferences(pad=True, name="gradient", dtype=dtype)(x)
    x = OrientationBinning(2 * orientations, bilinear, name="orientations", dtype=dtype)(x)
    x = TriangularPooling(cell, cell // 2, name="cells", dtype=dtype)(x)
    x = UoCTTINormalisation(orientations, texture, name="features", dtype=dtype)(x)
    return keras.Model(inp, x, name=name or ("hogb" if bilinear else "hog"))


def hogb(image_size, **kwargs) -> keras.Model:
    """HOGb: :func:`hog` with bilinear orientation assignment (``hog_net(8, 'bilinearOrientations', true)``)."""
    return hog(image_size, bilinear=True, **kwargs)


def dsift(image_size, *, bin: int = DSIFT_BIN, orientations: int = DSIFT_ORIENTATIONS,  # noqa: A002 (issue name)
          spatial_bins: int = DSIFT_SPATIAL_BINS, step: int = DSIFT_STEP_BINS, sigma: float = DSIFT_WINDOW_SIGMA,
          renormalize: bool = False, input_channels: int = 1, dtype: str = "float32", name: str = "dsift"
          ) -> keras.Model:
    """M&V's CNN dense SIFT (``dsift_net(bin)``): [N, H, W, 1] grey input (grey 0–255 − 128) → descriptors
    [N, Hd, Wd, spatial_bins²·orientations] (4·4·8 = 128), with nb = floor((H − 2 − 2·bin) / bin) + 1 spatial bins
    and Hd = floor((nb − spatial_bins) / step) + 1 descriptors per side (descriptor stride step·bin pixels).

    Args:
        image_size: H (square) or (H, W); at least 2 + (spatial_bins + 1)·bin each way (one descriptor).
        bin: spatial bin size in pixels.
        orientations: directed orientation bins T (dsift_net: 2 × numOrientations = 8).
        spatial_bins: B, the descriptor's B × B spatial bins.
        step: descriptor stride in bins.
        sigma: Gaussian weight of the bins, in bins.
        renormalize: VLFeat ``vl_dsift``'s second L2 normalisation after clamping (not in ``dsift_net``).
        input_channels, dtype: as :func:`hog`.
    """
    hw = _image_hw(image_size)
    if bin < 1 or orientations < 2 or spatial_bins < 1 or step < 1:
        raise ValueError(f"dsift needs bin ≥ 1, orientations ≥ 2, spatial_bins ≥ 1, step ≥ 1; got bin={bin}, "
                         f"orientations={orientations}, spatial_bins={spatial_bins}, step={step}")
    smallest = 2 + (spatial_bins + 1) * bin
    if min(hw) < smallest:
        raise ValueError(f"DSIFT with bin {bin} and {spatial_bins}×{spatial_bins} bins needs images of at least "
                         f"{smallest}×{smallest} pixels, got {hw[0]}×{hw[1]}")
    inp, x = _grey_model_input(hw, input_channels, dtype)
    x = CentralDifferences(pad=False, name="gradient", dtype=dtype)(x)
    x = OrientationBinning(orientations, True, name="orientations", dtype=dtype)(x)
    x = TriangularPooling(bin, 0, name="bins", dtype=dtype)(x)
    x = SiftDescriptors(spatial_bins, step, sigma, name="descriptors", dtype=dtype)(x)
    x = SiftNormalisation(DSIFT_NORM_KAPPA, DSIFT_CLAMP, renormalize, name="normalise", dtype=dtype)(x)
    return keras.Model(inp, x, name=name)


# The papers' three shallow representations by name, with the paper settings (spec mv2015 §6).
BUILDERS = {"hog": hog, "hogb": hogb, "dsift": dsift}


def tap(model: keras.Model, layer: str) -> keras.Model:
    """The sub-network from the input to one named stage (``"gradient"``, ``"orientations"``, ``"cells"`` /
    ``"bins"``, …): for inspection and tests."""
    names = [lay.name for lay in model.layers]
    if layer not in names:
        raise ValueError(f"{model.name} has no layer '{layer}'; its layers: {', '.join(names)}")
    return keras.Model(model.input, model.get_layer(layer).output)


__all__ = ["hog", "hogb", "dsift", "BUILDERS", "tap", "grey_input", "rgb_from_grey_input", "grey_from_image_space",
           "GREY_WEIGHTS", "GREY_OFFSET"]
