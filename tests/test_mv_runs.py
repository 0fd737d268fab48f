"""A tiny run of every experiment of M&V 2015, M&V 2016, the representation study and forward, each through the
paper's own ``run(...)`` (the code path ``main.py`` takes) with a few steps and a subset of layers, and each
asserting what would fail if the experiment were wrong. References are computed here: features from the network,
errors, TV and activations in numpy, the paper's settings typed from ``../shared/spec/``."""
import contextlib
import dataclasses
import functools
import io
import json

import numpy as np
import pytest
from conftest import shared_net_builds

from reproductions import common, forward, mv2015, mv2016, paper, representation_study as study
from tfrestore import data, nets
from tfrestore.optimize import param
from tfrestore.optimize import objectives as O
from tfrestore.optimize.engine import Optimization
from tfrestore.optimize.inversion import Extractors

SIGMA = 27098.11571533                     # mv2015.md §1.4
IMAGE = "coffee"


@pytest.fixture(scope="module", autouse=True)
def shared_networks():
    """Every run builds its net with seeded random weights; building one (60 M random weights) takes longer than a
    tiny run, so the runs of this module share one model per (net, weights, seed) — the same weights a fresh build
    gives."""
    with shared_net_builds() as built:
        yield built


@functools.lru_cache(maxsize=None)
def extractors(net):
    return Extractors(nets.build(net, weights="random", seed=0))


def features(net, layer, x_image_space):
    return extractors(net).features(net, layer, np.asarray(x_image_space, np.float32))


def rel_sq(f0, f1, mask=None):
    m = 1.0 if mask is None else mask
    f0, f1 = np.asarray(f0, np.float64), np.asarray(f1, np.float64)
    return (((f1 - f0) * m) ** 2).reshape(len(f1), -1).sum(1) / ((f0 * m) ** 2).reshape(len(f0), -1).sum(1)


def tv_numpy(x, beta):
    """M&V's TV_β: per pixel and channel (d_w² + d_h²)^{β/2}, forward differences, zero at the far border."""
    x = np.asarray(x, np.float64)
    dw, dh = np.zeros_like(x), np.zeros_like(x)
    dw[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    dh[:, :-1] = x[:, 1:] - x[:, :-1]
    return ((dw ** 2 + dh ** 2) ** (beta / 2)).sum(axis=(1, 2, 3))


def image_of(net):
    return image_space(net, common.load(net, IMAGE))


def image_space(net, rgb):
    return np.asarray(rgb, np.float32)[None] - nets.mean_rgb(net)


def run(module, tmp_path, **flags):
    """``module.run`` as main.py calls it (its Flags and a RunContext), with random weights, on IMAGE, seed 0."""
    f = module.Flags(weights="random", image=IMAGE, **{k: tuple(v) if k == "layers" else v for k, v in flags.items()})
    ctx = paper.RunContext.create(module.default_out(f), out=tmp_path, seed=0, progress=False)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        metrics = module.run(f, ctx)
    recon = np.load(tmp_path / "reconstructions.npy") - nets.mean_rgb(metrics["config"]["net"])
    return metrics, recon, printed.getvalue()


def errors(metrics):
    return np.array([p["rel_sq_feature_error"] for p in metrics["problems"]])


# ---- M&V 2015 ----------------------------------------------------------------------------------------------------

def _initial_errors_2015(net, layers, n_per_layer, seeds):
    """rel. feature error of M&V 2015's initial noise (total norm σ) for each problem, one seed per layer group."""
    x0 = image_of(net)
    out = []
    for layer, n, seed in zip(layers, n_per_layer, seeds):
        init = param.init_mv2015(n, x0.shape[1], SIGMA, seed)
        out += list(rel_sq(features(net, layer, x0), features(net, layer, init)))
    return np.array(out)


@pytest.mark.experiment("mv2015", "layers")
def test_mv2015_layers_lowers_each_layers_error_with_the_lambda_table(tmp_path):
    m, _, _ = run(mv2015, tmp_path, net="caffenet", experiment="layers", layers=["conv1", "relu3"], steps=3)
    assert m["config"]["lambda_tv"] == [1.0, 10.0]            # §4: conv1 in l1–l6, relu3 (l10) in l7–l12
    assert m["config"]["graphs"] == [["conv1"], ["relu3"]] and m["steps"] == 3
    initial = _initial_errors_2015("caffenet", ["conv1", "relu3"], [1, 1], [0, 1])
    assert (errors(m) < initial).all(), (errors(m), initial)


@pytest.mark.experiment("mv2015", "teaser")
def test_mv2015_teaser_six_different_fc8_reconstructions_and_their_ci(tmp_path):
    m, recon, _ = run(mv2015, tmp_path, net="caffenet", experiment="teaser", steps=2)
    assert [p["layer"] for p in m["problems"]] == ["fc8"] * 6 and m["config"]["lambda_tv"] == [100.0] * 6
    assert min(np.abs(recon[i] - recon[j]).max() for i in range(6) for j in range(i)) > 1.0   # six restarts
    assert (errors(m) < _initial_errors_2015("caffenet", ["fc8"], [6], [0])).all()
    sqrt_err = np.sqrt(errors(m))                          # evaluation_protocols.md §2.1: mean ± 1.96·std/√N, MATLAB's std (N − 1; table2.m)
    (cond,) = m["summary"]["conditions"]
    assert cond["n"] == 6 and cond["sqrt_rel_mean"] == pytest.approx(sqrt_err.mean(), rel=1e-6)
    assert cond["sqrt_rel_ci95"] == pytest.approx(1.96 * sqrt_err.std(ddof=1) / np.sqrt(6), rel=1e-6)


@pytest.mark.experiment("mv2015", "beta")
def test_mv2015_beta_each_problem_regularised_by_its_own_tv_exponent(tmp_path):
    m, recon, _ = run(mv2015, tmp_path, net="caffenet", experiment="beta", steps=2)
    assert [p["layer"] for p in m["problems"]] == ["norm1", "norm1"] and m["config"]["tv_beta"] == [1.0, 2.0]
    tv1, tv2 = np.array(m["terms"]["tv1"]), np.array(m["terms"]["tv2"])
    np.testing.assert_allclose(tv1[0], tv_numpy(recon[:1], 1.0)[0], rtol=1e-3)
    np.testing.assert_allclose(tv2[1], tv_numpy(recon[1:], 2.0)[0], rtol=1e-3)
    assert tv1[0] < tv2[0] / 10                            # β = 1 and β = 2 are different regularisers
    # each problem's loss holds its own β's TV at λTV = 100: E = data + (λ/2·TV_β + λL2/2·Σx⁶)/σ²
    feat, alpha = np.array(m["terms"]["feature/norm1"]), np.array(m["terms"]["alpha_norm6"])
    reg = 8e-10 / 2 * alpha / SIGMA ** 2
    np.testing.assert_allclose(m["final_loss"], feat + 100 / 2 * np.array([tv1[0], tv2[1]]) / SIGMA ** 2 + reg,
                               rtol=1e-4)


@pytest.mark.experiment("mv2015", "restarts")
def test_mv2015_fig7_restarts_use_the_figures_own_lambda_per_layer(tmp_path):
    m, recon, _ = run(mv2015, tmp_path, net="caffenet", experiment="restarts", layers=["pool5", "relu6"], steps=2)
    # mv2015.md §5, Fig. 7: pool5 λTV 1, relu6 λTV 10 (the §4 table would give both 100), 6 reconstructions each
    assert m["config"]["lambda_tv"] == [1.0] * 6 + [10.0] * 6
    assert [p["layer"] for p in m["problems"]] == ["pool5"] * 6 + ["relu6"] * 6
    feat = np.array(m["terms"]["feature/pool5"]) + np.array(m["terms"]["feature/relu6"])
    lam = np.array([1.0] * 6 + [10.0] * 6)
    expected = feat + (lam / 2 * np.array(m["terms"]["tv2"]) + 8e-10 / 2 * np.array(m["terms"]["alpha_norm6"])) \
        / SIGMA ** 2
    np.testing.assert_allclose(m["final_loss"], expected, rtol=1e-4)
    assert (errors(m) < _initial_errors_2015("caffenet", ["pool5", "relu6"], [6, 6], [0, 0])).all()
    assert [c["n"] for c in m["summary"]["conditions"]] == [6, 6]


@pytest.mark.experiment("mv2015", "lambda")
def test_mv2015_lambda_sweep_smooths_more_as_lambda_rises(tmp_path, capsys):
    m, recon, printed = run(mv2015, tmp_path, net="caffenet", experiment="lambda", steps=1)
    assert m["config"]["lambda_tv"] == [1.0, 10.0, 100.0] and m["steps"] == 1
    assert "stage 1 of 3" in printed and "stage 3 of 3" in printed        # one step: only the middle lr remains
    init = param.init_mv2015(3, recon.shape[1], SIGMA, 0)
    kept = tv_numpy(recon, 2.0) / tv_numpy(init, 2.0)        # share of the initial TV left after the step
    assert kept[0] > kept[1] > kept[2], kept


@pytest.mark.experiment("mv2015", "neighbourhood")
def test_mv2015_neighbourhood_matches_only_a_5x5_window_of_the_code(tmp_path):
    m, recon, _ = run(mv2015, tmp_path, net="caffenet", experiment="neighbourhood", layers=["conv5"], steps=2)
    assert m["config"]["lambda_tv"] == [100.0] and m["config"]["mask"] == ["neigh5"]
    x0 = image_of("caffenet")
    f0, f1 = features("caffenet", "conv5", x0), features("caffenet", "conv5", recon)
    mask = np.zeros(f0.shape[1:], np.float32)
    mask[6 - 2:6 + 3, 6 - 2:6 + 3] = 1                    # conv5 is 13×13: the 5×5 window around (6, 6)
    masked = rel_sq(f0, f1, mask)[0]
    assert errors(m)[0] == pytest.approx(masked, rel=1e-4)
    assert abs(masked - rel_sq(f0, f1)[0]) > 1e-3 * masked                # not the whole code
    init = param.init_mv2015(1, recon.shape[1], SIGMA, 0)
    assert masked < rel_sq(f0, features("caffenet", "conv5", init), mask)[0]


@pytest.mark.experiment("mv2015", "filter_groups")
def test_mv2015_filter_groups_match_disjoint_channel_halves(tmp_path):
    m, recon, _ = run(mv2015, tmp_path, net="caffenet", experiment="filter_groups", layers=["conv1"], steps=2)
    assert m["config"]["mask"] == ["group1", "group2"] and m["config"]["lambda_tv"] == [1.0, 1.0]
    x0 = image_of("caffenet")
    f0 = features("caffenet", "conv1", x0)
    f1 = features("caffenet", "conv1", recon)
    first, second = np.zeros(f0.shape[1:]), np.zeros(f0.shape[1:])
    first[..., :48], second[..., 48:] = 1, 1                # conv1 has 96 channels
    want = [rel_sq(f0, f1[:1], first)[0], rel_sq(f0, f1[1:], second)[0]]
    np.testing.assert_allclose(errors(m), want, rtol=1e-4)
    init = param.init_mv2015(2, recon.shape[1], SIGMA, 0)
    fi = features("caffenet", "conv1", init)
    assert errors(m)[0] < rel_sq(f0, fi[:1], first)[0] and errors(m)[1] < rel_sq(f0, fi[1:], second)[0]


@pytest.mark.experiment("mv2015", "diversity")
def test_mv2015_fig11_pool5_at_lambda_100_records_the_papers_images(tmp_path):
    m, _, printed = run(mv2015, tmp_path, net="caffenet", experiment="diversity", steps=2)
    assert [p["layer"] for p in m["problems"]] == ["pool5"] and m["config"]["lambda_tv"] == [100.0]
    paper = [f"ILSVRC2012_val_{i:08d}" for i in (11, 14, 18, 23, 33)]          # mv2015.md §5, Fig. 11
    assert m["config"]["paper_images"] == paper and all(p in printed for p in paper)
    assert errors(m)[0] < _initial_errors_2015("caffenet", ["pool5"], [1], [0])[0]


# ---- M&V 2016 ----------------------------------------------------------------------------------------------------

@pytest.mark.experiment("mv2016", "inversion")
def test_mv2016_inversion_lowers_the_error_from_the_noise_it_starts_at(tmp_path):
    m, recon, _ = run(mv2016, tmp_path, net="alexnet", experiment="inversion", layers=["conv1", "pool5"], steps=4)
    assert m["config"]["C"] == [300.0, 1.0] and m["config"]["jitter_T"] == [1, 8]     # §6.1 tables
    assert m["config"]["optimizer"]["reset_accumulator"] is True                      # two chained calls (§4)
    canvas = param.init_mv2016(2, 227 + 7, 80.0, 0)
    init = np.stack([canvas[0, :227, :227], canvas[1, 3:230, 3:230]])                # centre windows, T = 1 and 8
    x0 = image_of("alexnet")
    initial = [rel_sq(features("alexnet", l, x0), features("alexnet", l, init[i:i + 1]))[0]
               for i, l in enumerate(["conv1", "pool5"])]
    assert (errors(m) < initial).all(), (errors(m), initial)


@pytest.mark.experiment("mv2016", "c_sweep")
def test_mv2016_c_sweep_weights_each_problems_data_term_by_its_c(tmp_path):
    m, _, _ = run(mv2016, tmp_path, net="alexnet", experiment="c_sweep", steps=3)
    c = np.array([1.0, 20.0, 100.0, 300.0])                                           # §1.5
    assert m["config"]["C"] == c.tolist() and [p["layer"] for p in m["problems"]] == ["pool5"] * 4
    t = m["terms"]
    np.testing.assert_allclose(m["final_loss"], c * np.array(t["feature/pool5"]) + np.array(t["bounded_range6"])
                               + np.array(t["tv2"]), rtol=1e-4)
    canvas = param.init_mv2016(4, 227 + 7, 80.0, 0)[:, 3:230, 3:230]                  # T = 8: centre windows
    f0 = features("alexnet", "pool5", image_of("alexnet"))
    assert (errors(m) < rel_sq(f0, features("alexnet", "pool5", canvas))).all()


@pytest.mark.experiment("mv2016", "restarts")
def test_mv2016_restarts_batch_four_noises_per_layer_and_report_their_spread(tmp_path):
    """evaluation_protocols.md §2.3: 4 restarts per layer, each from its own M&V 2016 noise, in one graph; the
    summary's per-layer mean √rel error and 95 % CI are those of the four reconstructions' own errors (numpy)."""
    m, recon, _ = run(mv2016, tmp_path, net="alexnet", experiment="restarts", layers=["conv1", "pool5"], steps=3)
    assert [p["layer"] for p in m["problems"]] == ["conv1"] * 4 + ["pool5"] * 4
    assert [p["label"] for p in m["problems"]][:4] == ["conv1 r1", "conv1 r2", "conv1 r3", "conv1 r4"]
    canvas = param.init_mv2016(8, 227 + 7, 80.0, 0)
    assert min(np.abs(canvas[i] - canvas[j]).max() for i in range(4) for j in range(i)) > 1.0   # four noises
    assert min(np.abs(recon[i] - recon[j]).max() for i in range(4) for j in range(i)) > 1.0
    x0 = image_of("alexnet")
    for k, layer in enumerate(["conv1", "pool5"]):
        f0 = features("alexnet", layer, x0)
        sqrt_err = np.sqrt([rel_sq(f0, features("alexnet", layer, recon[i:i + 1]))[0] for i in range(4 * k, 4 * k + 4)])
        cond = m["summary"]["conditions"][k]
        assert cond["layer"] == layer and cond["n"] == 4
        assert cond["sqrt_rel_mean"] == pytest.approx(sqrt_err.mean(), rel=1e-3)
        assert cond["sqrt_rel_ci95"] == pytest.approx(1.96 * sqrt_err.std(ddof=1) / 2, rel=1e-2)


def _without_data_term(p):
    return dataclasses.replace(p, objective=O.Objective([(w, t) for w, t in p.objective.parts
                                                         if not t.name.startswith("inner")]))


def _regularisers_only(experiment, units=None, **kwargs):
    """The same problem, seeds and steps with the data term removed: what the regularisers alone do."""
    img = common.load("alexnet", IMAGE)
    p = mv2016.problem(mv2016.EXPERIMENT_SETTINGS[experiment], net="alexnet", image_rgb=img,
                       extractors=extractors("alexnet"), choices=mv2016.Choices(units=units), **kwargs)
    run_ = Optimization.from_problem(_without_data_term(p), to_input=lambda x: nets.to_input("alexnet", x), seed=0)
    return run_.run(progress=False).images


@pytest.mark.experiment("mv2016", "maximization")
def test_mv2016_maximisation_raises_the_chosen_channels_above_the_regularisers_alone(tmp_path):
    units = list(mv2016.MAXIMIZATION_CHANNELS)          # a layer other than fc8: its default channels 0 … 6
    m, recon, _ = run(mv2016, tmp_path, net="alexnet", experiment="maximization", layers=["conv1"], steps=3)
    assert [p["label"] for p in m["problems"]] == [f"conv1:channel {u}" for u in range(7)]
    t = m["terms"]                                                  # weight 1 (§5), not C
    np.testing.assert_allclose(m["final_loss"], np.array(t["inner/conv1"]) + np.array(t["bounded_range6"])
                               + np.array(t["tv2"]), rtol=1e-4)
    base = _regularisers_only("maximization", layers=["conv1"], units=units, steps=3)
    centre = lambda x: features("alexnet", "conv1", x)[np.arange(len(units)), 27, 27, units]   # conv1 is 55×55
    assert (centre(recon) > centre(base) + 1.0).all(), (centre(recon), centre(base))


@pytest.mark.experiment("mv2016", "caricature")
def test_mv2016_caricature_raises_the_codes_inner_product_above_the_regularisers_alone(tmp_path):
    layers = ["conv1", "relu1"]                              # jitter T = 1: the result window is what is optimised
    m, recon, _ = run(mv2016, tmp_path, net="alexnet", experiment="caricature", layers=layers, steps=3)
    assert m["config"]["data_weight"] == [1.0, 1.0] and "C" not in m["config"]
    base = _regularisers_only("caricature", layers=layers, steps=3)
    x0 = image_of("alexnet")

    def inner(x):                                            # ⟨w, Φ(x)⟩, w = Φ0⁺/‖Φ0⁺‖² (§5); 1 at x0 itself
        out = []
        for i, layer in enumerate(layers):
            pos = np.maximum(features("alexnet", layer, x0), 0).astype(np.float64)
            out.append(np.sum(pos / np.sum(pos ** 2) * features("alexnet", layer, x[i:i + 1])))
        return np.array(out)
    assert inner(x0.repeat(2, 0)) == pytest.approx([1.0, 1.0], rel=1e-5)
    assert (inner(recon) > inner(base)).all(), (inner(recon), inner(base))
    np.testing.assert_allclose(-np.array(m["terms"]["inner/conv1"])[0], inner(recon)[0], rtol=1e-4)
    colour_norm = lambda x: np.sqrt((np.asarray(x, np.float64) ** 2).sum(-1)).max()
    assert colour_norm(x0) > 200 and colour_norm(recon) <= 160.0 * (1 + 1e-5)      # B+ = 160 (§1.4) holds


# ---- the representation study ------------------------------------------------------------------------------------

def _study_start(net):
    """The study's shared initial noise (std 0.1 in ImageNet-normalised units), image space."""
    return np.random.default_rng(0).normal(0, 0.1 / study.STUDY_INPUT_SCALE, (1, nets.input_size(net),
                                                                             nets.input_size(net), 3))


@pytest.mark.experiment("representation_study", "lr_schedules")
def test_study_lr_schedules_move_the_image_by_their_rates(tmp_path):
    m, recon, _ = run(study, tmp_path, net="alexnet", experiment="lr_schedules", steps=3)
    # seed 004 Q1: constant 1e-3 (baseline), a larger constant, and a step decay
    assert m["config"]["schedule"] == ["Schedule(3@0.001)", "Schedule(3@0.01)", "Schedule(1@0.1, 1@0.01, 1@0.001)"]
    moved = np.abs(recon - _study_start("alexnet")).mean(axis=(1, 2, 3))
    assert 7 < moved[1] / moved[0] < 13 and moved[2] > 2 * moved[1]       # Adam moves ≈ lr per step
    assert errors(m)[0] > errors(m)[1] > errors(m)[2]


@pytest.mark.experiment("representation_study", "tv_sweep")
def test_study_tv_sweep_lowers_tv_as_the_weight_rises(tmp_path):
    m, recon, _ = run(study, tmp_path, net="alexnet", experiment="tv_sweep", steps=3)
    np.testing.assert_allclose(m["config"]["tv"], [0.0, 1e-3, 1e-2, 1e-1], rtol=1e-6)      # seed 004 Q2
    tv = tv_numpy(recon, 2.0)
    assert (np.diff(tv) < 0).all(), tv
    assert (np.diff(errors(m)) >= -1e-6).all()               # the price: the feature error does not fall


@pytest.mark.experiment("representation_study", "feature_weight")
def test_study_feature_weight_trades_tv_for_feature_error(tmp_path):
    """Q2.3: against Q2.2's TV weight, a larger portion of feature loss buys a lower feature error at the price of
    a rougher image; the loss is w·‖Φ(x) − Φ0‖²/‖Φ0‖² + tv·TV (checked term by term)."""
    m, recon, _ = run(study, tmp_path, net="alexnet", experiment="feature_weight", steps=3)
    np.testing.assert_allclose(m["config"]["feature_weight"], [1.0, 10.0, 100.0])
    np.testing.assert_allclose(m["config"]["tv"], [0.1] * 3, rtol=1e-6)
    t = m["terms"]
    tv_term = 0.1 * study.STUDY_INPUT_SCALE ** 2 * np.array(t["tv2"])
    feature = sum(np.array(v) for k, v in t.items() if k.startswith("feature/"))    # one term per problem
    np.testing.assert_allclose(m["final_loss"], np.array([1.0, 10.0, 100.0]) * feature + tv_term, rtol=1e-4)
    assert (np.diff(errors(m)) < 0).all(), errors(m)
    assert (np.diff(tv_numpy(recon, 2.0)) > 0).all()


@pytest.mark.experiment("representation_study", "layers")
def test_study_layers_sum_the_loss_over_each_problems_layers(tmp_path):
    m, recon, _ = run(study, tmp_path, net="alexnet", experiment="layers", steps=3)
    assert [p["label"] for p in m["problems"]] == ["conv1", "pool5", "conv3+fc6"]
    t = m["terms"]
    tv_term = 1e-2 * study.STUDY_INPUT_SCALE ** 2 * np.array(t["tv2"])
    np.testing.assert_allclose(m["final_loss"][2], t["feature/conv3"][2] + t["feature/fc6"][2] + tv_term[2],
                               rtol=1e-4)
    start = _study_start("alexnet")
    x0 = image_of("alexnet")
    for i, layer in enumerate(["conv1", "pool5", "conv3"]):
        f0 = features("alexnet", layer, x0)
        assert rel_sq(f0, features("alexnet", layer, recon[i:i + 1]))[0] < rel_sq(f0, features("alexnet", layer,
                                                                                              start))[0]


@pytest.mark.experiment("representation_study", "resnet")
def test_study_resnet_inverts_the_second_stage_and_its_first_conv(tmp_path):
    m, recon, _ = run(study, tmp_path, experiment="resnet", steps=2)
    assert m["config"]["net"] == "resnet18" and m["config"]["layers"] == ["layer2.1", "layer2.0.conv1"]
    start = _study_start("resnet18")
    x0 = image_of("resnet18")
    initial = [rel_sq(features("resnet18", l, x0), features("resnet18", l, start))[0]
               for l in ("layer2.1", "layer2.0.conv1")]
    assert (errors(m) < initial).all(), (errors(m), initial)


# ---- the shared run: results in memory until the end -------------------------------------------------------------

def test_solve_keeps_the_outputs_in_memory_and_finish_writes_them_once(tmp_path):
    """common.solve returns the run's outputs without writing any (issue 22: results stay in memory between
    steps); common.finish writes them once and returns metrics.json's content; canvas.npy is the whole variable
    (no jitter here: the reconstructions less the mean colour)."""
    with contextlib.redirect_stdout(io.StringIO()):
        s = common.setup(paper="representation_study", net="alexnet", experiment="layers", weights="random",
                         out=tmp_path, seed=0)
        img = common.load("alexnet", IMAGE)
        p = study.problem(study.STUDIES["layers"], net="alexnet", image_rgb=img, extractors=s.extractors,
                          layers=["conv1"], steps=2)
        how = common.Reporting(image_rgb=img, config={"paper": "test"}, title="test", log_every=1, progress=False)
        result = common.solve(p, s, how)
        written = sorted(f.name for f in tmp_path.iterdir() if f.is_file())
        metrics = common.finish(result, s)
    assert written == [], written
    assert metrics == json.loads((tmp_path / "metrics.json").read_text()) and metrics["steps"] == 2
    recon, canvas = np.load(tmp_path / "reconstructions.npy"), np.load(tmp_path / "canvas.npy")
    np.testing.assert_array_equal(recon, result.arrays["reconstructions"])
    np.testing.assert_allclose(canvas + nets.mean_rgb("alexnet"), recon, atol=1e-3)


# ---- forward -----------------------------------------------------------------------------------------------------

@pytest.mark.experiment("forward")
def test_forward_reports_caffe_shapes_and_conv1_statistics(tmp_path):
    f = forward.Flags(net="caffenet", layers=("conv1", "pool5", "fc8"), image=IMAGE, weights="random")
    with contextlib.redirect_stdout(io.StringIO()):
        out = forward.run(f, paper.RunContext.create(forward.default_out(f), out=tmp_path, seed=0))
    assert json.loads((tmp_path / "forward.json").read_text()) == out      # what it returns is what it wrote
    # Caffe geometry: conv1 11×11 stride 4 on 227 → 55; pool5 6×6×256; fc8 1000 classes
    assert [out["layers"][l]["shape"] for l in ("conv1", "pool5", "fc8")] == [[55, 55, 96], [6, 6, 256], [1000]]
    model = nets.build("caffenet", weights="random", seed=0)
    kernel, bias = [np.asarray(w, np.float64) for w in model.get_layer("conv1").get_weights()]
    x = np.asarray(nets.preprocess("caffenet", data.load_image(IMAGE, 227)), np.float64)   # BGR − mean
    patches = np.lib.stride_tricks.sliding_window_view(x, (11, 11), axis=(0, 1))[::4, ::4]     # [55, 55, 3, 11, 11]
    conv1 = np.einsum("ijcyx,yxco->ijo", patches, kernel) + bias
    stats = out["layers"]["conv1"]
    for key, want in (("mean", conv1.mean()), ("std", conv1.std()), ("min", conv1.min()), ("max", conv1.max())):
        assert stats[key] == pytest.approx(want, rel=1e-3, abs=1e-3 * conv1.std()), key
