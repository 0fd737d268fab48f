"""M&V 2015 §6: inverting HOG, HOGb and DSIFT (``reproductions/mv2015_shallow.py``, ``--experiment=shallow`` and
``shallow_lambda``). References are computed here: Table 1's error (evaluation_protocols §1.2) by a loop over the
pairs in numpy, features from freshly built shallow nets, TV in numpy, the objective term by term."""
import contextlib
import io
import json
import math
import statistics

import numpy as np
import pytest
import skimage.io

from reproductions import mv2015, paper
from reproductions import mv2015_shallow as S
from tfrestore import data
from tfrestore.nets import shallow
from tfrestore.optimize.engine import Optimization

SIZE = 64
SIGMA_64 = 27098.11571533 * math.sqrt(SIZE * SIZE / (227 * 227 * 3))    # mv2015.md §1.4: the per-pixel RMS 68.9


def _rel(f0, f1):
    f0, f1 = np.asarray(f0, np.float64), np.asarray(f1, np.float64)
    return float(((f1 - f0) ** 2).sum() / (f0 ** 2).sum())


def _tv(x):
    """TV₂ of one grey image [H, W]: Σ over pixels of (d_w² + d_h²), forward differences, 0 past the border."""
    x = np.asarray(x, np.float64)
    return float(sum((x[i, j + 1] - x[i, j]) ** 2 for i in range(x.shape[0]) for j in range(x.shape[1] - 1)) +
                 sum((x[i + 1, j] - x[i, j]) ** 2 for i in range(x.shape[0] - 1) for j in range(x.shape[1])))


def _grey(name):
    rgb = data.load_image(name, SIZE).astype(np.float64)
    return rgb @ np.array(shallow.GREY_WEIGHTS) - 128.0          # MATLAB rgb2gray, ×255 − 128 (§6)


def _run(tmp_path, **flags):
    f = mv2015.Flags(steps=40, sigma=SIGMA_64, **flags)
    ctx = paper.RunContext.create(mv2015.default_out(f), out=tmp_path / "out", seed=0, progress=False)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        metrics = mv2015.run(f, ctx)
    return metrics, printed.getvalue(), tmp_path / "out"


def _folder(tmp_path, names):
    folder = tmp_path / "images"
    folder.mkdir()
    for n in names:
        skimage.io.imsave(folder / f"{n}.png", data.load_image(n, SIZE), check_contrast=False)
    return folder


# --- Table 1's protocol against the formula, by hand -------------------------------------------------------------
def test_table1_error_is_the_squared_distance_over_the_mean_pairwise_distance():
    rng = np.random.default_rng(3)
    # three codes, one of another size (its image was smaller): MATLAB reads y(:) column-major and zero-pads
    y0 = [rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 2, 4))]
    y = [f + rng.normal(scale=0.3, size=f.shape) for f in y0]

    def column_major(f, length):                   # index (i, j, c) → i + H·j + H·W·c, written out
        h, w, c = f.shape
        v = np.zeros(length)
        for i in range(h):
            for j in range(w):
                for k in range(c):
                    v[i + h * j + h * w * k] = f[i, j, k]
        return v
    d = max(f.size for f in y0)
    a, b = [column_major(f, d) for f in y0], [column_major(f, d) for f in y]
    pairs = [sum((a[i] - a[j]) ** 2) for i in range(3) for j in range(3)]      # 9 ordered pairs, i = j included
    want = [sum((b[i] - a[i]) ** 2) / (sum(pairs) / 9) for i in range(3)]
    errors, normaliser = S.dataset_normalised_errors(y, y0)
    np.testing.assert_allclose(normaliser, sum(pairs) / 9, rtol=1e-12)
    np.testing.assert_allclose(errors, want, rtol=1e-10)
    mean, std = S.table1_entry(errors)
    assert mean == pytest.approx(100 * statistics.mean(want)) and std == pytest.approx(100 * statistics.stdev(want))


def test_table1_needs_two_images_and_different_codes(tmp_path):
    with pytest.raises(ValueError, match="two images at least"):
        S.table_images(str(_folder(tmp_path, ["chelsea"])))
    with pytest.raises(ValueError, match="normaliser is zero"):
        S.dataset_normalised_errors([np.ones((2, 2, 1))] * 2, [np.ones((2, 2, 1))] * 2)


# --- The objective --------------------------------------------------------------------------------------------------
def test_shallow_objective_is_invert_nn_energy_term_by_term():
    """At the start: ‖Φ(x) − Φ0‖²/‖Φ0‖² + [(λTV/2)·TV₂(x) + (λL2/2)·Σx⁶]/σ² per problem, λTV 1 / 10 / 100."""
    g = _grey("chelsea")[None, :, :, None].astype(np.float32)
    prob, rows = S.problem(S.EXPERIMENTS["shallow_lambda"], g, [0], seed=5, steps=1, sigma=SIGMA_64)
    loss, _ = Optimization.from_problem(prob).evaluate()
    x = S.init_grey(3, SIZE, SIZE, 5, SIGMA_64).astype(np.float64)
    np.testing.assert_allclose(np.sqrt((x ** 2).sum(axis=(1, 2, 3))), SIGMA_64, rtol=1e-6)   # norm σ start
    hog = shallow.hog(SIZE)
    f0 = np.asarray(hog(g))
    for k, lam in enumerate((1.0, 10.0, 100.0)):
        want = _rel(f0, np.asarray(hog(x[k:k + 1].astype(np.float32)))) + \
            (lam / 2 * _tv(x[k, ..., 0]) + 8e-10 / 2 * (x[k] ** 6).sum()) / SIGMA_64 ** 2
        assert loss[k] == pytest.approx(want, rel=1e-4), (lam, loss[k], want)
    assert [r.lambda_tv for r in rows] == [1.0, 10.0, 100.0] and {r.net for r in rows} == {"hog"}


# --- Tiny runs through mv2015.run (the code path main.py takes) -----------------------------------------------------
@pytest.mark.experiment("mv2015", "shallow")
def test_shallow_inversion_error_falls_below_the_start_and_the_mean_grey_image(tmp_path):
    names = ["chelsea", "coffee"]
    m, printed, out = _run(tmp_path, experiment="shallow", data=str(_folder(tmp_path, names)))
    assert m["steps"] == 40 and m["config"]["nets"] == ["hog", "hogb", "dsift"] and m["config"]["lambda_tv"] == [1.0]
    start = S.init_grey(6, SIZE, SIZE, 0, SIGMA_64)          # graph 0's start, problems (image, net) in order
    builders = {"hog": shallow.hog(SIZE), "hogb": shallow.hogb(SIZE), "dsift": shallow.dsift(SIZE)}
    recon = {}
    for k, p in enumerate(m["problems"]):
        net, g = p["net"], _grey(names[p["image"]])[None, :, :, None].astype(np.float32)
        x = np.load(out / f"rec_{k:02d}_{names[p['image']]}_{net}.npy") - 128.0
        f0, phi = np.asarray(builders[net](g)), builders[net]
        err = _rel(f0, phi(x[None, :, :, None].astype(np.float32)))
        assert p["rel_sq_feature_error"] == pytest.approx(err, rel=1e-4)
        mean_grey = np.full_like(g, g.mean())
        assert err < 0.8 * _rel(f0, phi(start[k:k + 1])), (net, err)          # fell from the start
        assert err < _rel(f0, phi(mean_grey)), (net, err)                       # better than a flat picture
        recon.setdefault(net, []).append((np.asarray(phi(x[None, :, :, None].astype(np.float32)))[0], f0[0]))
    # Table 1's numbers recomputed from the saved reconstructions: Σ(y − y0)² / mean pairwise Σ(y0_i − y0_j)²
    for row in m["table1"][1:]:
        pairs = recon[row["net"]]
        norm = np.mean([((a[1] - b[1]) ** 2).sum() for a in pairs for b in pairs])
        errs = [100 * ((y - y0) ** 2).sum() / norm for y, y0 in pairs]
        assert row["mean"] == pytest.approx(np.mean(errs), rel=1e-3) and row["std"] == pytest.approx(
            np.std(errs, ddof=1), rel=1e-3)
    table = (out / "table.txt").read_text()
    assert "HOGgle (Vondrick)" in table and "not available here" in table and "28.10 ± 7.6" in table
    assert json.loads((out / "metrics.json").read_text())["table1"][0]["net"] == "hoggle"
    assert (out / "figure.png").exists() and any((out / "tb").iterdir())


@pytest.mark.experiment("mv2015", "shallow_lambda")
def test_shallow_lambda_higher_lambda_gives_a_smoother_reconstruction(tmp_path):
    image = tmp_path / "chelsea.png"
    skimage.io.imsave(image, data.load_image("chelsea", SIZE), check_contrast=False)
    m, _, out = _run(tmp_path, experiment="shallow_lambda", image=str(image))
    assert [p["lambda_tv"] for p in m["problems"]] == [1.0, 10.0, 100.0]
    tvs = [_tv(np.load(out / f"rec_{k:02d}_chelsea_hog_λ{lam:g}.npy")) for k, lam in enumerate((1, 10, 100))]
    assert tvs[0] > 3 * tvs[1] > 9 * tvs[2], tvs
    np.testing.assert_allclose([p["tv2"] for p in m["problems"]], tvs, rtol=1e-4)
    assert (out / "lambda_trend.png").exists()


def test_the_codes_sigma_diverges_on_a_small_image_and_the_run_says_what_to_give(tmp_path):
    image = tmp_path / "chelsea.png"
    skimage.io.imsave(image, data.load_image("chelsea", SIZE), check_contrast=False)
    f = mv2015.Flags(experiment="shallow_lambda", image=str(image), steps=30)
    assert f.sigma is None and S.SIGMA == 27098.11571533                 # the code's constant by default
    ctx = paper.RunContext.create(mv2015.default_out(f), out=tmp_path / "out", seed=0, progress=False)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        mv2015.run(f, ctx)
    assert f"diverged (not finite) with σ = 27098.1; the code's σ suits ILSVRC-size images: for 64×64 give " \
           f"--sigma={SIGMA_64:.0f}" in printed.getvalue()


def test_shallow_flags_refuse_what_does_not_apply(tmp_path):
    with pytest.raises(ValueError, match="no --layers and no weights"):
        mv2015.Flags(experiment="shallow", layers=("conv1",))
    with pytest.raises(ValueError, match="no --layers and no weights"):
        mv2015.Flags(experiment="shallow_lambda", weights="random")
    with pytest.raises(ValueError, match="goes with --experiment=shallow"):
        mv2015.Flags(experiment="layers", data=str(tmp_path))
    with pytest.raises(ValueError, match="--sigma sets σ of the shallow experiments"):
        mv2015.Flags(experiment="layers", sigma=100.0)
    with pytest.raises(ValueError, match="is not a folder"):
        mv2015.Flags(experiment="shallow", data=str(tmp_path / "missing"))
    assert mv2015.default_out(mv2015.Flags(experiment="shallow")) == "runs/mv2015_shallow"
