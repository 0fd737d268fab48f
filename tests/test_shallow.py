"""M&V's shallow representations (tfrestore.nets.shallow: HOG, HOGb, DSIFT as hog_net / dsift_net build them)
against independent references: scikit-image's Dalal–Triggs HOG on the quantity both must agree on, numpy
transcriptions of the UoCTTI and dense-SIFT formulas written per pixel (VLFeat's loop formulation, not
convolutions), finite differences, and MATLAB's rgb2gray weights."""
import math

import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import skimage.feature
import tensorflow as tf

from tfrestore.nets import shallow


def rng() -> np.random.RandomState:
    """A fresh seeded generator per test, so each test's images do not depend on which tests ran before."""
    return np.random.RandomState(23)


# ----------------------------------------------------------------------------------------------------------------
# numpy references (written from the formulas, independently of the TF layers)
# ----------------------------------------------------------------------------------------------------------------
def np_gradient(img: np.ndarray, pad: bool) -> tuple[np.ndarray, np.ndarray]:
    """Halved central differences; ``pad``: zero outside the image (MatConvNet pad 1), else interior pixels only."""
    gx = scipy.ndimage.correlate1d(img, [-0.5, 0.0, 0.5], axis=1, mode="constant", cval=0.0)
    gy = scipy.ndimage.correlate1d(img, [-0.5, 0.0, 0.5], axis=0, mode="constant", cval=0.0)
    return (gx, gy) if pad else (gx[1:-1, 1:-1], gy[1:-1, 1:-1])


def np_orientation_votes(gx, gy, directions: int, bilinear: bool) -> np.ndarray:
    """Per-pixel votes [H, W, directions] from the angle (atan2), as vl_dsift_process / vl_hog_put_image do."""
    magnitude = np.hypot(gx, gy)
    position = (np.arctan2(gy, gx) % (2 * np.pi)) / (2 * np.pi / directions)
    votes = np.zeros(gx.shape + (directions,))
    rows, cols = np.indices(gx.shape)
    if bilinear:
        lower = np.floor(position)
        frac = position - lower
        np.add.at(votes, (rows, cols, lower.astype(int) % directions), (1 - frac) * magnitude)
        np.add.at(votes, (rows, cols, (lower.astype(int) + 1) % directions), frac * magnitude)
    else:
        np.add.at(votes, (rows, cols, np.floor(position + 0.5).astype(int) % directions), magnitude)
    return votes


def np_hog_cells(votes: np.ndarray, cell: int) -> np.ndarray:
    """vl_hog_put_image's bilinear spatial binning: a pixel at (x + 0.5)/cell − 0.5 cells goes to its 4 nearest
    cell centres; votes for cells outside the floor(H/cell) × floor(W/cell) grid are dropped (hog_net's padding)."""
    h, w, d = votes.shape
    hc, wc = h // cell, w // cell
    cells = np.zeros((hc, wc, d))
    for y in range(h):
        hy = (y + 0.5) / cell - 0.5
        by = math.floor(hy)
        for x in range(w):
            hx = (x + 0.5) / cell - 0.5
            bx = math.floor(hx)
            for cy, wy in ((by, 1 - (hy - by)), (by + 1, hy - by)):
                for cx, wx in ((bx, 1 - (hx - bx)), (bx + 1, hx - bx)):
                    if 0 <= cy < hc and 0 <= cx < wc:
                        cells[cy, cx] += wy * wx * votes[y, x]
    return cells


def np_uoctti(cells: np.ndarray, orientations: int, texture: bool, clamp: float = 0.2) -> np.ndarray:
    """hog_net's UoCTTI normalisation cell by cell: for each of the (up to 4) 2×2 blocks holding the cell, its
    [directed, undirected] histogram / max(‖undirected of the block‖, 1e-6), clamped at 0.2; output 0.5·Σ copies
    (+ the four texture sums ×1/√18)."""
    hc, wc, _ = cells.shape
    undirected = cells[..., :orientations] + cells[..., orientations:]
    stacked = np.concatenate([cells, undirected], axis=-1)
    out = np.zeros((hc, wc, 3 * orientations + (4 if texture else 0)))
    for y in range(hc):
        for x in range(wc):
            copies = []
            for by, bx in ((y - 1, x - 1), (y - 1, x), (y, x - 1), (y, x)):
                if 0 <= by < hc - 1 and 0 <= bx < wc - 1:
                    norm = max(np.sqrt(np.sum(undirected[by:by + 2, bx:bx + 2] ** 2)), 1e-6)
                    copies.append(np.minimum(stacked[y, x] / norm, clamp))
                else:
                    copies.append(np.zeros(3 * orientations))
            out[y, x, :3 * orientations] = 0.5 * np.sum(copies, axis=0)
            if texture:
                out[y, x, 3 * orientations:] = [np.sum(c[2 * orientations:]) / np.sqrt(18) for c in copies]
    return out


def np_hog(img, cell=8, orientations=9, bilinear=False, texture=False, clamp=0.2) -> np.ndarray:
    gx, gy = np_gradient(img, pad=True)
    votes = np_orientation_votes(gx, gy, 2 * orientations, bilinear)
    return np_uoctti(np_hog_cells(votes, cell), orientations, texture, clamp)


def np_dsift(img, bin=5, directions=8, spatial=4, step=3, sigma=1.5, renormalize=False) -> np.ndarray:
    """Dense SIFT as VLFeat's vl_dsift_process computes it (per-pixel angle split linearly between the two nearest
    of 8 orientations; flat-window triangular spatial kernel; per-bin Gaussian weight; L2-normalise, clamp 0.2,
    optionally renormalise), with dsift_net's geometry and constants (bin centres between pixels, σ = 1.5 bins at
    the bin centres, descriptor step 3 bins, normalisation d / sqrt(1e-6 + ‖d‖²))."""
    gx, gy = np_gradient(img, pad=False)
    votes = np_orientation_votes(gx, gy, directions, bilinear=True)

    def tent(n_pixels):
        n_bins = (n_pixels - 2 * bin) // bin + 1
        centres = bin * np.arange(n_bins) + bin - 0.5
        return np.maximum(0, 1 - np.abs(np.arange(n_pixels)[None] - centres[:, None]) / bin)

    bins = np.einsum("bp,cq,pqt->bct", tent(gx.shape[0]), tent(gx.shape[1]), votes)
    n_desc = [(n - spatial) // step + 1 for n in bins.shape[:2]]
    centre = (spatial - 1) / 2
    out = np.zeros(n_desc + [spatial * spatial * directions])
    for dy in range(n_desc[0]):
        for dx in range(n_desc[1]):
            d = []
            for i in range(spatial):
                for j in range(spatial):
                    weight = np.exp(-((i - centre) ** 2 + (j - centre) ** 2) / (2 * sigma ** 2))
                    d.extend(weight * bins[step * dy + i, step * dx + j])
            d = np.asarray(d)
            d = np.minimum(d / np.sqrt(1e-6 + np.sum(d ** 2)), 0.2)
            if renormalize:
                d = d / (np.sqrt(np.sum(d ** 2)) + np.finfo(np.float32).eps)
            out[dy, dx] = d
    return out


def run(model, grey: np.ndarray, layer: str | None = None) -> np.ndarray:
    net = model if layer is None else shallow.tap(model, layer)
    return net(grey[None, :, :, None].astype(model.input.dtype)).numpy()[0]


def camera_crop(size: int) -> np.ndarray:
    """A textured crop of scikit-image's cameraman, as M&V's input (grey 0–255 − 128)."""
    return skimage.data.camera()[100:100 + size, 200:200 + size].astype(np.float64) - 128.0


@pytest.fixture(scope="module")
def nets64():
    return {"hog": shallow.hog(64), "hogb": shallow.hogb(64), "dsift": shallow.dsift(64)}


# ----------------------------------------------------------------------------------------------------------------
# (a) scikit-image's Dalal–Triggs HOG on the quantity both must agree on
# ----------------------------------------------------------------------------------------------------------------
def test_hog_cell_histograms_match_skimage_on_a_period_8_sharp_edged_image(nets64):
    """skimage implements Dalal–Triggs (unsigned orientations, hard spatial cells, block normalisation), not
    UoCTTI, so only the pre-normalisation per-cell orientation distribution can agree, and only when
    - the image repeats with the cell period (8): each hog_net cell pools a 16×16 window with bilinear weights, and
      for a period-8 image those weights sum to one over every residue class, so the pooled votes equal one hard
      8×8 cell's — skimage's cell;
    - the bins are aligned: UoCTTI's 9 undirected bins are centred on 20°·k ([20k − 10°, 20k + 10°)), skimage's
      on 20°·k + 10°; with 18 skimage bins of 10° the fold sk[2k − 1] + sk[2k] is exactly UoCTTI bin k;
    - magnitude scale is removed: skimage's gradient is not halved, and cells_per_block=(1, 1) with block_norm
      'L1' returns each cell's histogram / its L1 norm.
    The image is a tiled random 8×8 grey tile (every pixel a step edge, random orientations). Compared: interior
    cells (1…6), whose windows hold no zero-padded gradients. Tolerance 1e-5: float32 rounding of 64-term sums is
    ~1e-6, while one pixel assigned to a wrong bin moves a normalised entry by ~1/64."""
    tile = rng().uniform(0, 255, (8, 8))
    img = np.tile(tile, (8, 8))
    sk = skimage.feature.hog(img, orientations=18, pixels_per_cell=(8, 8), cells_per_block=(1, 1),
                             block_norm="L1", feature_vector=False)[:, :, 0, 0, :]
    sk_folded = np.stack([sk[..., (2 * k - 1) % 18] + sk[..., 2 * k] for k in range(9)], axis=-1)
    cells = run(nets64["hog"], img - 128.0, "cells")
    undirected = cells[..., :9] + cells[..., 9:]
    ours = undirected / undirected.sum(-1, keepdims=True)
    assert sk_folded.shape == ours.shape == (8, 8, 9)
    np.testing.assert_allclose(ours[1:7, 1:7], sk_folded[1:7, 1:7], atol=1e-5)
    assert (ours[1:7, 1:7] > 0.01).sum() >= 3 * 36, "the tile must spread votes over several bins"


# ----------------------------------------------------------------------------------------------------------------
# (b) UoCTTI formulas, (c) dense SIFT
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size, bilinear, texture, image", [
    ((64, 64), False, False, "random"),
    ((60, 76), False, True, "random"),       # not a multiple of the cell: floor(H / 8) cells, partial border votes
    ((64, 64), True, False, "random"),
    ((64, 64), True, True, "camera"),        # HOGb on a natural image (flat areas, pure vertical gradients)
])
def test_hog_matches_numpy_uoctti(size, bilinear, texture, image):
    """The whole HOG / HOGb output against np_hog (per-pixel atan2 binning, VLFeat's per-pixel bilinear spatial
    votes, explicit per-cell loops over its up-to-four blocks). Tolerance 1e-5: the two differ by float32 rounding
    (~1e-7 on values ≤ 0.4), while a misplaced vote, block or border rule moves values by ≥ 1e-3. Hard HOG is
    compared on random images only: with 9 orientations a purely vertical gradient (common in 8-bit pictures) lies
    exactly between two bins, where either choice is right (the original's too)."""
    img = rng().uniform(-128, 127, size) if image == "random" else camera_crop(size[0])
    model = shallow.hog(size, bilinear=bilinear, texture=texture)
    expected = np_hog(img, bilinear=bilinear, texture=texture)
    got = run(model, img)
    assert got.shape == expected.shape == (size[0] // 8, size[1] // 8, 27 + 4 * texture)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    unclamped = np_hog(img, bilinear=bilinear, texture=texture, clamp=np.inf)
    assert np.abs(unclamped - expected).max() > 1e-2, "the input must exercise the clamp at 0.2"


@pytest.mark.parametrize("size, image, renormalize", [
    (64, "random", False), (96, "camera", False), (64, "random", True)])
def test_dsift_matches_numpy_dense_sift(size, image, renormalize):
    """The whole DSIFT output against np_dsift (VLFeat's per-pixel formulation with dsift_net's geometry) on
    random images and the cameraman; tolerance 1e-5 as for HOG (observed ~1e-7)."""
    img = rng().uniform(-128, 127, (size, size)) if image == "random" else camera_crop(size)
    model = shallow.dsift(size, renormalize=renormalize)
    expected = np_dsift(img, renormalize=renormalize)
    got = run(model, img)
    n_desc = ((size - 2 - 10) // 5 + 1 - 4) // 3 + 1
    assert got.shape == expected.shape == (n_desc, n_desc, 128)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (expected == 0.2).any() or renormalize, "the clamp at 0.2 must be exercised"
    norms = np.linalg.norm(got, axis=-1)
    assert np.all(norms < 1.0 + 1e-5) and (np.allclose(norms, 1.0, atol=1e-5) == renormalize)


# ----------------------------------------------------------------------------------------------------------------
# (d) gradients
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["hog", "hogb", "dsift"])
def test_input_gradient_matches_finite_differences(kind):
    """d(Σ w·Φ(x))/dx at 8 pixels (two on the border among them) against central differences in float64.
    HOGb and DSIFT are piecewise smooth in x: kinks where a pixel's angle crosses a bin centre (the vote tents'
    peaks and feet) or a value crosses the 0.2 clamp. HOG's hard binning is piecewise constant in the angle, so
    Φ is smooth only while no pixel changes bin; there the derivative is the magnitude path alone (what the
    original's backward pass computes). ε = 1e-3 grey levels turns an angle by ~1e-5 rad, so crossing a kink is
    a ~1e-4 event per pixel; for HOG the test also checks that no pixel changed bin."""
    size = 42        # DSIFT: 7 bins, 2 × 2 descriptors whose windows reach every pixel
    model = {"hog": shallow.hog, "hogb": shallow.hogb, "dsift": shallow.dsift}[kind](size, dtype="float64")
    draw = rng()
    img = draw.uniform(-128, 127, (1, size, size, 1))
    weights = tf.constant(draw.normal(size=model.output_shape[1:]))

    def objective(x):
        return tf.reduce_sum(model(x) * weights)

    x = tf.constant(img)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = objective(x)
    grad = tape.gradient(value, x).numpy()
    pixels = [(0, 1), (0, 17), (5, 9), (13, 31), (20, 20), (27, 4), (33, 38), (41, 40)]   # (image corners feed
    # no interior central difference, so DSIFT ignores them)
    eps = 1e-3
    bins = shallow.tap(model, "orientations")
    assert all(grad[0, r, c, 0] != 0 for r, c in pixels), "every tested pixel must move the features"
    for r, c in pixels:
        step = np.zeros_like(img)
        step[0, r, c, 0] = eps
        if kind == "hog":
            assert np.array_equal(np.argmax(bins(img + step), -1), np.argmax(bins(img - step), -1))
        fd = (objective(img + step) - objective(img - step)).numpy() / (2 * eps)
        assert fd == pytest.approx(grad[0, r, c, 0], rel=1e-5, abs=1e-8 * np.abs(grad).max())


@pytest.mark.parametrize("kind", ["hog", "hogb", "dsift"])
def test_gradients_are_finite_on_flat_images(kind):
    """Flat pixels (zero gradient) and zero-energy blocks are where sqrt / acos have infinite derivatives (the
    original's backward pass gives NaN there); here they get the zero subgradient."""
    model = {"hog": shallow.hog, "hogb": shallow.hogb, "dsift": shallow.dsift}[kind](32)
    img = np.zeros((1, 32, 32, 1), np.float32)
    img[:, 20:, :] = 40.0                       # one step edge, flat elsewhere
    x = tf.constant(img)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(model(x))
    grad = tape.gradient(value, x).numpy()
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


# ----------------------------------------------------------------------------------------------------------------
# (e) HOG vs HOGb
# ----------------------------------------------------------------------------------------------------------------
def test_hogb_differs_from_hog_only_in_the_orientation_assignment(nets64):
    """Same magnitudes, same spatial pooling: per pixel both distribute exactly |∇I| (numpy hypot of the halved
    central differences), so the cell histograms have equal totals; HOG's single bin is the larger of HOGb's two
    (the nearest bin centre); and a gradient on a bin centre gets the same vote from both."""
    img = rng().uniform(-128, 127, (64, 64))
    gx, gy = np_gradient(img, pad=True)
    hard, soft = run(nets64["hog"], img, "orientations"), run(nets64["hogb"], img, "orientations")
    np.testing.assert_allclose(hard.sum(-1), np.hypot(gx, gy), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(soft.sum(-1), np.hypot(gx, gy), rtol=1e-5, atol=1e-4)
    assert np.all((soft > 0).sum(-1) <= 2)
    np.testing.assert_array_equal(np.argmax(hard, -1), np.argmax(soft, -1))
    cells_hard, cells_soft = run(nets64["hog"], img, "cells"), run(nets64["hogb"], img, "cells")
    np.testing.assert_allclose(cells_hard.sum(-1), cells_soft.sum(-1), rtol=1e-5)
    assert np.abs(cells_hard - cells_soft).max() > 0.1 * cells_hard.max(), "the assignments must differ"

    yy, xx = np.indices((64, 64))
    angle = np.deg2rad(40.0)                    # bin centre 2 of 18
    ramp = 3.0 * (np.cos(angle) * xx + np.sin(angle) * yy) - 128.0
    interior = (slice(1, -1), slice(1, -1))
    hard, soft = run(nets64["hog"], ramp, "orientations"), run(nets64["hogb"], ramp, "orientations")
    np.testing.assert_allclose(soft[interior], hard[interior], atol=1e-4)
    np.testing.assert_allclose(hard[interior][..., 2], 3.0, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# input conversion, shapes, bad input
# ----------------------------------------------------------------------------------------------------------------
def test_grey_input_is_matlab_rgb2gray_and_image_space_models_agree(nets64):
    rgb = rng().randint(0, 256, (2, 64, 64, 3)).astype(np.uint8)
    grey = shallow.grey_input(rgb).numpy()
    expected = 0.298936021293775 * rgb[..., 0] + 0.587043074451121 * rgb[..., 1] + 0.114020904255103 * rgb[..., 2]
    np.testing.assert_allclose(grey[..., 0], expected - 128.0, atol=1e-4)
    pure = shallow.grey_input(np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)).numpy().ravel()
    np.testing.assert_allclose(pure + 128.0, [76.2287, 149.6960, 29.0753], atol=1e-3)
    np.testing.assert_allclose(shallow.rgb_from_grey_input(grey).numpy(), np.repeat(expected[..., None], 3, -1),
                               atol=1e-4)
    image_space = shallow.hog(64, input_channels=3)
    np.testing.assert_allclose(image_space(rgb.astype(np.float32) - 128.0).numpy(), nets64["hog"](grey).numpy(),
                               atol=1e-5)


def test_output_shapes_follow_the_original_geometry():
    # an ILSVRC-sized picture, 375 × 500: floor(H/8) cells; (H − 2 − 10)//5 + 1 bins → (bins − 4)//3 + 1 descriptors
    assert shallow.hog((375, 500)).output_shape == (None, 46, 62, 27)
    assert shallow.hogb((375, 500), texture=True).output_shape == (None, 46, 62, 31)
    assert shallow.dsift((375, 500)).output_shape == (None, 24, 32, 128)
    assert shallow.dsift(227, bin=8).output_shape == (None, 8, 8, 128)      # M&V 2016's dsift_net(8): 27 bins


@pytest.mark.parametrize("build, message", [
    (lambda: shallow.hog(15), "at least 16×16"),
    (lambda: shallow.hog(64, cell=7), "even"),
    (lambda: shallow.hog(64, input_channels=2), "input_channels"),
    (lambda: shallow.dsift(26), "at least 27×27"),
    (lambda: shallow.dsift((64, 0)), "image_size"),
])
def test_bad_settings_raise_clear_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()
