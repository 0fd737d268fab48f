"""M&V 2016's activation maximisation as the paper drew it (spec mv2016.md §5; the released exp_maximization.m and
get_neuron_stats.m): the neuron lattice, find_image_size, max_k over a data folder and the 25-filter mosaic.
References: the spacing rule and receptive fields worked out by hand, the network builders at each input size
(brute force), numpy maxima and inner products of feature maps, a subprocess run's exit code and stderr."""
import contextlib
import functools
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_net_builds
import skimage.io

from reproductions import mv2016, paper
from tfrestore import data, nets
from tfrestore.nets import lattice
from tfrestore.optimize import param
from tfrestore.optimize.inversion import Extractors

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def shared_builds():
    """run() builds the full random AlexNet and so does the reference: one build (the same seeded weights)."""
    with shared_net_builds():
        yield


@functools.lru_cache(maxsize=None)
def slim(net, size=None):
    """The registered builder at ``size`` with 1/64 of the channels: the same geometry, built in a fraction of a
    second (random weights: geometry only)."""
    return nets.build(net, weights=None, quiet=True, width=1 / 64, image_size=size)


def map_side(net, layer, size):
    return int(slim(net, size).get_layer(layer).output.shape[1])


# (net, layer, rf, stride) from the layer tables by hand — AlexNet: conv1 11/4, pool 3/2, conv2 5, conv3–5 3;
# VGG16: 3×3 pad-1 convolutions, 2×2/2 pools — and 1.1·rf/stride rounded half away from zero, made odd.
HAND = [("alexnet", "conv1", 11, 4, 3), ("alexnet", "conv2", 51, 8, 7), ("alexnet", "conv5", 163, 16, 11),
        ("alexnet", "pool5", 195, 32, 7), ("vgg16", "conv1_2", 5, 1, 7), ("vgg16", "conv3_3", 40, 4, 11),
        ("vgg16", "conv5_3", 196, 16, 13)]     # 3.025→3, 7.01→7, 11.2→11, 6.69→7, 5.5→6→7, 11.0→11, 13.48→13


def test_lattice_spacing_and_positions_follow_the_rule_worked_out_by_hand():
    for net, layer, rf, stride, spacing in HAND:
        assert nets.receptive_field(slim(net), layer) == (rf, stride), (net, layer)
        assert lattice.lattice_spacing(rf, stride) == spacing, (net, layer)
    assert lattice.lattice_spacing(11, 4, filters=25) == 5          # a mosaic's cell: at least 4, made odd
    assert lattice.lattice_spacing(163, 16, filters=25) == 11
    side, pos = lattice.lattice(25, 5)                               # 5 × 5 cells, neuron at each cell's centre
    assert side == 25 and pos == [(2 + 5 * r, 2 + 5 * c) for r in range(5) for c in range(5)]
    side, pos = lattice.lattice(3, 7)                                # ⌈√3⌉ = 2 cells a side, rows first
    assert side == 14 and pos == [(3, 3), (3, 10), (10, 3)]
    with pytest.raises(ValueError, match="fully connected"):
        lattice.find_image_size(slim("alexnet"), "fc6", 9)


@pytest.mark.parametrize("net, layer, side", [("alexnet", "conv1", 25), ("alexnet", "conv5", 11),
                                              ("alexnet", "pool5", 7), ("vgg16", "conv3_3", 11)])
def test_find_image_size_against_the_builders_at_each_size(net, layer, side):
    """The released rule: the largest input whose map is side × side (the next size's map is larger); the
    spec's wording: the smallest (the size before's map is smaller). Brute force: the builder at those sizes."""
    largest = lattice.find_image_size(slim(net), layer, side, smallest=False)
    smallest = lattice.find_image_size(slim(net), layer, side)
    assert map_side(net, layer, largest) == side and map_side(net, layer, largest + 1) > side
    assert map_side(net, layer, smallest) == side and map_side(net, layer, smallest - 1) < side
    trunk = lattice.conv_trunk(slim(net), layer, largest)
    assert tuple(trunk.output.shape[1:3]) == (side, side)


def write_folder(folder, n=3):
    """``n`` tiny PNGs of different sizes and content."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(n):
        skimage.io.imsave(folder / f"im{i}.png", rng.integers(0, 256, (20 + 4 * i, 16 + 8 * i, 3), dtype=np.uint8),
                          check_contrast=False)
    return folder


def numpy_max_k(model, net, layer, folder):
    """Each channel's largest value of the feature extractor's output over the folder's images and positions,
    from 0 up (get_neuron_stats.m), floored at 1e-3."""
    size = int(model.input.shape[1])
    imgs = np.stack([data.load_image(f, size) for f in sorted(folder.glob("*.png"))]).astype(np.float32)
    f = nets.feature_extractor(model, layer)(nets.preprocess(net, imgs))[layer].numpy()
    return np.maximum(np.maximum(f.reshape(-1, f.shape[-1]).max(0), 0), 1e-3)


def test_max_k_over_a_folder_is_the_numpy_max_of_the_feature_maps(tmp_path):
    folder = write_folder(tmp_path / "imgs")
    model = slim("alexnet")
    max_k, source = mv2016.max_k_statistics(Extractors(model), "alexnet", ["conv1", "fc8"], str(folder))
    assert source == f"3 images in {folder}"
    for layer in ("conv1", "fc8"):
        np.testing.assert_allclose(max_k[layer], numpy_max_k(model, "alexnet", layer, folder), rtol=1e-5)
    _, fallback = mv2016.max_k_statistics(Extractors(model), "alexnet", ["conv1"], None)
    assert "embedded photos" in fallback and "ImageNet" in fallback


def test_neuron_scales_and_the_released_innerweight_slip():
    """(10000/rf²)/k/max_k of each filter's own channel; with the slip every filter takes channel k's."""
    max_k = np.arange(1, 31, dtype=np.float32)
    inp = mv2016.Inputs("alexnet", ("conv1",), Extractors(slim("alexnet")), np.zeros((1, 227, 227, 3)),
                        np.zeros((227, 227, 3)), max_k={"conv1": max_k})
    np.testing.assert_allclose(mv2016._neuron_scales(inp, "conv1", [4, 9, 0], 11), 10000 / 121 / 3 / max_k[[4, 9, 0]])
    slip = mv2016.Inputs(**{**inp.__dict__, "max_k_of_filter_count": True})
    np.testing.assert_allclose(mv2016._neuron_scales(slip, "conv1", [4, 9, 0], 11), 10000 / 121 / 3 / max_k[[2] * 3])


@pytest.mark.experiment("mv2016", "mosaic")
def test_mv2016_mosaic_raises_every_lattice_neuron_above_its_start_and_a_same_norm_noise(tmp_path):
    folder = write_folder(tmp_path / "imgs")
    f = mv2016.Flags(weights="random", image="coffee", experiment="mosaic", layers=("conv1",), steps=6,
                     data=str(folder))
    ctx = paper.RunContext.create(mv2016.default_out(f), out=tmp_path / "run", seed=0, progress=False)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        m = mv2016.run(f, ctx)
    assert f"3 images in {folder}" in printed.getvalue() and m["config"]["max_k_source"] == f"3 images in {folder}"
    size = lattice.find_image_size(slim("alexnet"), "conv1", 25)       # conv1: 5 × 5 cells of 5 positions
    recon = np.load(tmp_path / "run" / "reconstructions.npy") - nets.mean_rgb("alexnet")
    assert recon.shape == (1, size, size, 3) == (1, 107, 107, 3)
    full = nets.build("alexnet", weights="random", seed=0)                         # the weights run() used
    at_size = nets.build("alexnet", weights="random", seed=0, quiet=True, image_size=size)
    conv1 = lambda x: nets.feature_extractor(at_size, "conv1")(nets.to_input("alexnet", x))["conv1"].numpy()
    rows, cols = np.divmod(np.arange(25), 5)
    neurons = lambda x: conv1(np.asarray(x, np.float32))[0, 2 + 5 * rows, 2 + 5 * cols, np.arange(25)]
    max_k = numpy_max_k(full, "alexnet", "conv1", folder)
    np.testing.assert_allclose(m["config"]["max_k"]["conv1"], max_k, rtol=1e-5)
    w = 10000 / 11 ** 2 / 25 / max_k[:25]                                  # §5: (10000/rf²)/filters/max_k
    np.testing.assert_allclose(-m["terms"]["inner/conv1"][0], np.sum(w * neurons(recon)), rtol=1e-4)
    start = neurons(param.init_mv2016(1, size, 80.0, 0))                  # T = 1 at conv1: the canvas is the image
    noise = np.random.default_rng(1).normal(size=recon.shape)
    noise = neurons(noise * np.linalg.norm(recon) / np.linalg.norm(noise))
    final = neurons(recon)
    assert (final > start).all() and (final > noise).all(), (final, start, noise)
    assert np.mean(final - start) > 3 * np.std(start), (final, start)


def test_mv2016_data_folder_that_is_missing_is_one_error_line(tmp_path):
    missing = tmp_path / "no_such_folder"
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "--paper=mv2016", "--experiment=mosaic",
                        f"--data={missing}", f"--out={tmp_path / 'out'}"], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: --data folder") and str(missing) in lines[0], lines
    assert not (tmp_path / "out").exists()
