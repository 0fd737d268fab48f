"""Feature statistics (``tfrestore/measure/feature_stats.py``; ``foe_priors --experiment=feature_stats``, spec
evaluation_protocols §4.4): the Gini index against closed forms and a hand-worked vector, the streamed mean / sdev /
Gram / covariance / pseudo-inverse against NumPy on the whole array, and a tiny run through ``foe_priors.run``
whose per-channel sdevs are NumPy's on features computed here."""
import json

import numpy as np
import pytest

from reproductions import foe_priors as F
from reproductions import paper
from tfrestore import data, nets
from tfrestore.core import files
from tfrestore.measure.feature_stats import FeatureStats, gini
from tfrestore.optimize.inversion import image_space

RNG = np.random.default_rng(3)


@pytest.mark.parametrize("n", [1, 4, 17])
def test_gini_of_a_constant_vector_is_zero_and_of_a_one_hot_is_one_minus_one_over_n(n):
    assert gini(np.full(n, 2.5)) == pytest.approx(0.0, abs=1e-12)
    one_hot = np.zeros(n)
    one_hot[n // 2] = -3.0                                      # magnitudes: the sign does not matter
    assert gini(one_hot) == pytest.approx(1 - 1 / n, abs=1e-12)


def test_gini_of_a_hand_worked_vector_and_along_an_axis():
    # c = (1, 0, 3): sorted 0, 1, 3, ‖c‖₁ = 4, N = 3; weights (N − k + ½)/N = 5/6, 3/6, 1/6
    # G = 1 − 2 (0·5/6 + 1/4·3/6 + 3/4·1/6) = 1 − 2 (1/8 + 1/8) = 1/2
    assert gini([1.0, 0.0, 3.0]) == pytest.approx(0.5, abs=1e-12)
    rows = np.array([[1.0, 0.0, 3.0], [2.0, 2.0, 2.0]])
    np.testing.assert_allclose(gini(rows, axis=1), [0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(gini(rows.T, axis=0), [0.5, 0.0], atol=1e-12)
    assert gini(np.zeros(5)) == 0.0


def test_streamed_statistics_equal_numpy_on_the_whole_array():
    """Random [images, H, W, C] features with a large mean (the shift must keep the digits), added in uneven
    batches: every statistic equals NumPy's on all images × positions at once."""
    f = RNG.normal(1e3, 1.0, (7, 5, 4, 6)) * RNG.uniform(0.5, 3.0, 6) + RNG.normal(0, 50, 6)
    acc = FeatureStats()
    for a, b in ((0, 3), (3, 4), (4, 7)):
        acc.update(f[a:b].astype(np.float32) if a == 3 else f[a:b])
    s = acc.result()
    f[3:4] = f[3:4].astype(np.float32)                          # what was added
    x = f.reshape(-1, 6)
    np.testing.assert_allclose(s.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.sdev, x.std(0), rtol=1e-9)
    np.testing.assert_allclose(s.cov, np.cov(x, rowvar=False, bias=True), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(s.gram, sum(im.reshape(-1, 6).T @ im.reshape(-1, 6) for im in f) / len(x),
                               rtol=1e-10)
    np.testing.assert_allclose(s.inv_cov, np.linalg.inv(np.cov(x, rowvar=False, bias=True)), rtol=1e-6)
    assert (s.rank, s.samples, s.positions) == (6, 7 * 20, 20)
    np.testing.assert_allclose(s.norms, np.linalg.norm(f.reshape(7, -1), axis=1), rtol=1e-12)
    np.testing.assert_allclose(s.gini, [gini(im) for im in f], rtol=1e-12)


def test_a_rank_deficient_covariance_gets_numpys_pseudo_inverse_and_its_rank():
    """Fewer samples than channels (the thesis' pool5 over few images): rank = samples − 1, inv_cov = pinv."""
    x = RNG.normal(size=(4, 9))
    s = FeatureStats()
    s.update(x)                                                 # [4 images, 9 channels]: one position each
    r = s.result()
    cov = np.cov(x, rowvar=False, bias=True)
    assert r.rank == np.linalg.matrix_rank(cov) == 3
    np.testing.assert_allclose(r.inv_cov, np.linalg.pinv(cov, hermitian=True), rtol=1e-6, atol=1e-8)


@pytest.mark.experiment("foe_priors", "feature_stats")
def test_feature_stats_run_writes_its_outputs_and_numpys_channel_sdevs(tmp_path, capsys):
    """Three embedded photos in a --data folder, AlexNet conv1 and pool5 with seeded random weights, through
    foe_priors.run as main.py calls it: the outputs are there, and the per-channel sdevs (metrics.json and the
    returned summaries) equal NumPy's std on the features computed here by the same weights."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("chelsea", "coffee", "astronaut"):
        files.save_png(folder / f"{name}.png", data.load_image(name, 256) / 255.0)     # exact 8-bit round trip
    f = F.Flags(experiment="feature_stats", net="alexnet", layers=("conv1", "pool5"), data=str(folder),
                weights="random")
    out = tmp_path / "out"
    got = F.run(f, paper.RunContext.create(F.default_out(f), out=out, progress=False))
    printed = capsys.readouterr().out
    assert "SEEDED RANDOM WEIGHTS" in printed and "3 of the 3 images" in printed
    for name in ("table.txt", "metrics.json", "figure.png", "channel_sdevs.png", "sdev_conv1.npy",
                 "inv_cov_pool5.npy"):
        assert (out / name).is_file(), name
    assert list((out / "tb").glob("events.out.tfevents.*"))
    table = (out / "table.txt").read_text()
    assert "thesis diary, trained VGG16" in table and "2–70 / 12–300" in table and "~20–30" in table
    # the reference: the same random net, the same images, NumPy's population std over images × positions
    model = nets.build("alexnet", weights="random", seed=0, quiet=True)
    imgs = np.stack([data.load_image(p, nets.input_size("alexnet"), crop="center")
                     for p in data.image_folder(folder)])
    x = image_space("alexnet", imgs)
    feats = nets.feature_extractor(model, ["conv1", "pool5"])(nets.to_input("alexnet", x))
    metrics = json.loads((out / "metrics.json").read_text())
    for layer, arr in (("image", x), ("conv1", feats["conv1"].numpy()), ("pool5", feats["pool5"].numpy())):
        ref = arr.reshape(-1, arr.shape[-1]).astype(np.float64).std(axis=0)
        np.testing.assert_allclose(metrics["channel_sdev"][layer], ref, rtol=1e-4, atol=1e-6 * ref.max())
        np.testing.assert_allclose(got["summaries"][layer].sdev, ref, rtol=1e-4, atol=1e-6 * ref.max())
    pool5 = got["summaries"]["pool5"]
    assert pool5.rank <= 3 * 6 * 6 - 1 < 256                   # 108 samples of 256 channels: a pseudo-inverse
    assert f"{pool5.rank}" in table


def test_a_data_path_that_is_not_a_folder_is_refused_before_any_net_is_built(tmp_path):
    with pytest.raises(ValueError, match="is not a folder: give a folder of images"):
        F.Flags(experiment="feature_stats", data=str(tmp_path / "missing"))
    F.Flags(experiment="feature_stats", data=str(tmp_path))        # a folder is accepted (its images: at run)


def test_feature_stats_uses_the_first_images_of_the_folder_by_name(tmp_path, monkeypatch):
    """The thesis measured 200 images: the first STATS_IMAGES of --data by name (here 2 of 3), and says so."""
    for name in ("c.png", "a.png", "b.png"):
        files.save_png(tmp_path / name, np.zeros((4, 4, 3)))
    monkeypatch.setattr(F, "STATS_IMAGES", 2)
    images, line = F._stats_images(str(tmp_path))
    assert [p.split("/")[-1] for p in images] == ["a.png", "b.png"]
    assert line.startswith("2 of the 3 images in")
    assert F._stats_images(None)[0] == data.sample_image_names()          # no --data: the embedded photos
