"""M&V 2016's pieces against independent references: the thesis variant (schedule rule, pad-and-crop jitter,
SoftRange, one whole step written out by hand), activation-maximisation units, caricature layers and starting
canvas, the optimiser state at the stage change; and the run summary the protocols ask for (95 % CI, top-1 share).
Spec: ``../shared/spec/mv2016.md``, ``evaluation_protocols.md`` §2."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from reproductions import common, mv2016
from tfrestore import nets
from tfrestore.optimize import transforms
from tfrestore.optimize.engine import Optimization, Problem
from tfrestore.optimize.inversion import Extractors, summarise, table
from tfrestore.optimize.objectives import Context, InnerProduct

F = 80.0 ** 2 / 6                      # §9.3: the thesis' lr scale B²/α
MU_RGB = np.array([123.68, 116.779, 103.939])
IMAGE_SIZE = 227


@pytest.fixture(scope="module")
def alexnet():
    return Extractors(nets.build("alexnet", weights="random", seed=0))


@pytest.fixture(scope="module")
def image():
    return common.load("alexnet", "coffee")


def build(alexnet, image, experiment, **kwargs):
    """mv2016.problem with ``kwargs`` split between its own arguments and its :class:`mv2016.Choices`."""
    names = {f.name for f in dataclasses.fields(mv2016.Choices)}
    choices = mv2016.Choices(**{k: v for k, v in kwargs.items() if k in names})
    return mv2016.problem(mv2016.EXPERIMENT_SETTINGS[experiment], net="alexnet", image_rgb=image,
                          extractors=alexnet, choices=choices, **{k: v for k, v in kwargs.items() if k not in names})


# ---- the thesis variant (--optimizer=adam, §9.2–§9.4) ------------------------------------------------------------

def test_thesis_schedule_follows_the_engines_after_the_step_breakpoint_rule():
    """§9.2: start at the first entry's lr; after each step (counter c = 1, 2, …) adopt the next breakpoint's lr once
    its iteration ≤ c. §9.3: breakpoints (0: 1e-2·f), (1000: 3e-3·f), (2000: 1e-3·f), 3,500 steps, jitter stops
    after iteration 2,750."""
    points = [(0, 1e-2 * F), (1000, 3e-3 * F), (2000, 1e-3 * F)]
    lr, pending, want_lr = points[0][1], points[1:], []
    for count in range(1, 3501):
        want_lr.append(lr)
        if pending and pending[0][0] <= count:
            lr = pending.pop(0)[1]
    lrs, _, jitter = mv2016.thesis_schedule().arrays()
    np.testing.assert_allclose(lrs, want_lr, rtol=1e-6)
    assert jitter[:2750].all() and not jitter[2750:].any() and len(jitter) == 3500
    short = mv2016.thesis_schedule(35)                       # --steps scales every boundary
    lrs, _, jitter = short.arrays()
    assert short.total == 35 and jitter.sum() == round(35 * 2750 / 3500)
    np.testing.assert_allclose(lrs[[0, 10, 20]], [1e-2 * F, 3e-3 * F, 1e-3 * F], rtol=1e-6)


def test_pad_crop_jitter_against_numpy_padding():
    rng = np.random.default_rng(0)
    canvas = rng.normal(0, 1, (2, 5, 6, 3)).astype(np.float32)
    fill = np.array([1.0, 2.0, 3.0], np.float32)
    t = [3, 0]
    jit = transforms.PadCropJitter((5, 6), t, 2, fill=fill)
    seen = set()
    for step in range(150):
        off = jit.offsets(True, [0, step]).numpy()
        win = jit.window(tf.constant(canvas), tf.constant(off)).numpy()
        for i, ti in enumerate(t):        # pad t//2 in front and t − t//2 behind with the fill, crop at the offset
            pad = ((ti // 2, ti - ti // 2), (ti // 2, ti - ti // 2))
            padded = np.stack([np.pad(canvas[i, ..., c], pad, constant_values=fill[c]) for c in range(3)], -1)
            np.testing.assert_array_equal(win[i], padded[off[i, 0]:off[i, 0] + 5, off[i, 1]:off[i, 1] + 6])
        assert off[1].tolist() == [0, 0]
        seen.add(tuple(off[0]))
    assert seen == {(a, b) for a in range(4) for b in range(4)}          # t + 1 = 4 positions per axis
    off = jit.offsets(False, [0, 0]).numpy()
    assert off.tolist() == [[1, 1], [0, 0]]                              # jitter off: the image itself
    np.testing.assert_array_equal(jit.window(tf.constant(canvas), tf.constant(off)).numpy(), canvas)
    assert jit.mask(True) is None and jit.centre(canvas) is canvas
    with pytest.raises(ValueError, match="variable must have shape"):
        jit.check((2, 6, 7, 3))


def test_thesis_jitter_tables_for_alexnet_and_vgg16():
    """§9.3 get_jitter_and_mse_weight: AlexNet 1 for conv1 … lrn1, 2 for pool1 … lrn2, 4 for pool2 … conv5/relu,
    8 from pool5 on; VGG16 0 through conv2_2/relu, 1 for pool2 … conv3_3/relu, 2 for pool3 … conv4_3/relu,
    4 for pool4 … conv5_3/relu, 8 from pool5 on."""
    alex = {"conv1": 1, "relu1": 1, "norm1": 1, "pool1": 2, "conv2": 2, "norm2": 2, "pool2": 4, "conv3": 4,
            "relu5": 4, "pool5": 8, "fc6": 8, "fc8": 8}
    assert {l: mv2016.thesis_jitter_t("alexnet", l) for l in alex} == alex
    vgg = {"conv1_1": 0, "pool1": 0, "relu2_2": 0, "pool2": 1, "relu3_3": 1, "pool3": 2, "relu4_3": 2, "pool4": 4,
           "conv5_1": 4, "relu5_3": 4, "pool5": 8, "fc7": 8, "fc8": 8}
    assert {l: mv2016.thesis_jitter_t("vgg16", l) for l in vgg} == vgg
    with pytest.raises(ValueError, match="jitter tables"):
        mv2016.thesis_jitter_t("resnet18", "layer2.1")


def test_thesis_soft_range_closed_form_and_gradient():
    """SoftRangeLoss (§9.1) with its §9.3 weight: (1/(HW·B^α))·Σ_uv (Σ_c (y − ȳ)²)^{α/2}, ȳ the scalar mean."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 60, (2, 4, 5, 3))
    offset = np.array([7.9, 1.9, -10.8])

    def numpy_value(z):
        y = z + offset
        y = y - y.mean(axis=(1, 2, 3), keepdims=True)
        return ((y ** 2).sum(-1) ** 3).sum(axis=(1, 2)) / (4 * 5 * 80.0 ** 6)
    term = mv2016.ThesisSoftRange(6.0, 80.0, offset)
    value = lambda z: term(Context(tf.constant(z, tf.float32)))[0].numpy()
    np.testing.assert_allclose(value(x), numpy_value(x), rtol=1e-5)
    xt = tf.Variable(x.astype(np.float32))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(term(Context(xt))[0])
    g = tape.gradient(total, xt).numpy()
    for idx in [(0, 1, 2, 0), (1, 3, 4, 2), (0, 0, 0, 1)]:
        dx = np.zeros_like(x)
        dx[idx] = 1e-2
        num = (numpy_value(x + dx).sum() - numpy_value(x - dx).sum()) / 2e-2
        assert g[idx] == pytest.approx(num, rel=1e-2, abs=1e-9)


def test_thesis_variant_first_step_equals_the_thesis_engine_written_out(alexnet, image):
    """One step of ``--optimizer=adam`` on conv1 (C 300, t 1): pad the RGB image with zeros and crop at the step's
    offsets, C·Σ(Φ0 − Φ)²/Σ(Φ0·Φ) + SoftRange around the global mean of RGB − 114.799 + TV/(HW·V²), gradient
    clipped at 100, one TF1 Adam step at 1e-2·f, then the radius-160 ball around μ_RGB — against the engine."""
    p = build(alexnet, image, "inversion", layers=["conv1"], optimizer="adam", steps=35)
    assert p.settings["C"] == [300.0] and p.settings["jitter_t"] == [1]
    opt = p.optimizer        # TF1 Adam, value clip 100 (the first step's sign-like update cannot show the clip)
    assert (opt.name, opt.epsilon, opt.epsilon_form, opt.clip_value) == ("adam", 1e-8, "tf1", 100.0)
    mean = nets.mean_rgb("alexnet").astype(np.float64)
    x0 = image.astype(np.float64)[None] - mean
    np.testing.assert_array_equal(p.param.image().numpy(), x0.astype(np.float32))   # starts at the target image
    run = Optimization.from_problem(p, to_input=lambda x: nets.to_input("alexnet", x), seed=0)
    run.step(1)
    jy, jx = p.jitter.offsets(True, tf.constant([0, 0])).numpy()[0]     # the offsets the engine drew at step 0

    f = alexnet("conv1")
    phi = lambda x: f(nets.to_input("alexnet", tf.cast(x, tf.float32)))["conv1"]
    target = tf.cast(phi(x0), tf.float64)
    x = tf.Variable(x0)
    with tf.GradientTape() as tape:
        rgb = x + mean
        padded = tf.pad(rgb, [[0, 0], [0, 1], [0, 1], [0, 0]])              # t = 1: 0 in front, 1 behind, zeros
        window = padded[:, jy:jy + IMAGE_SIZE, jx:jx + IMAGE_SIZE] - mean
        r = tf.cast(phi(window), tf.float64)
        data = 300.0 * tf.reduce_sum((target - r) ** 2) / tf.reduce_sum(target * r)
        y = rgb - 114.799
        y = y - tf.reduce_mean(y)
        soft_range = tf.reduce_sum(tf.reduce_sum(y ** 2, -1) ** 3) / (IMAGE_SIZE ** 2 * 80.0 ** 6)
        dw = tf.pad(x[:, :, 1:] - x[:, :, :-1], [[0, 0], [0, 0], [0, 1], [0, 0]])
        dh = tf.pad(x[:, 1:] - x[:, :-1], [[0, 0], [0, 1], [0, 0], [0, 0]])
        tv = tf.reduce_sum(dw ** 2 + dh ** 2) / (IMAGE_SIZE ** 2 * (80 / 6.5) ** 2)
        energy = data + soft_range + tv
    g = np.clip(tape.gradient(energy, x).numpy(), -100, 100)
    m, v = 0.1 * g, 0.001 * g ** 2
    x1 = x0 - 1e-2 * F * np.sqrt(1 - 0.999) / (1 - 0.9) * m / (np.sqrt(v) + 1e-8)
    d = x1 + mean - MU_RGB
    norm = np.sqrt((d ** 2).sum(-1, keepdims=True))
    x1 = MU_RGB + d * np.minimum(1.0, 160.0 / norm) - mean
    assert (norm > 160).any()                                     # the projection acts on this image
    np.testing.assert_allclose(run.images(), x1, rtol=1e-4, atol=2e-2)


def test_thesis_variant_is_refused_for_maximisation_and_caricatures(alexnet, image):
    for experiment in ("maximization", "caricature"):
        with pytest.raises(ValueError, match="thesis' inversion benchmark"):
            build(alexnet, image, experiment, optimizer="adam", layers=["conv1"])


# ---- the authors' experiments ------------------------------------------------------------------------------------

def _inner_terms(p):
    return [(w, t) for w, t in p.objective.parts if isinstance(t, InnerProduct)]


def test_maximisation_units_are_categories_at_fc8_and_channels_elsewhere(alexnet, image):
    p = build(alexnet, image, "maximization")                         # default: fc8, the paper's categories
    (w, term), = _inner_terms(p)
    one_hot = term.w.numpy()
    assert [int(np.flatnonzero(row)[0]) for row in one_hot] == [100, 99, 31, 933, 504, 917, 886]
    assert (np.count_nonzero(one_hot, axis=1) == 1).all() and (one_hot.max(axis=1) > 0).all()
    assert p.labels[0] == "fc8:black swan" and np.all(np.asarray(w) == 1)     # weight 1, not C (§5)
    p = build(alexnet, image, "maximization", layers=["conv5", "fc6"], units=[3, 200])
    assert p.labels == ["conv5:channel 3", "conv5:channel 200", "fc6:channel 3", "fc6:channel 200"]
    conv5, fc6 = (t.w.numpy() for _, t in _inner_terms(p))
    assert conv5.shape == (2, 13, 13, 256) and fc6.shape == (2, 4096)
    for j, unit in enumerate([3, 200]):        # one-hot at the spatial centre of the channel
        assert list(zip(*np.nonzero(conv5[j]))) == [(6, 6, unit)]
        assert np.flatnonzero(fc6[j]).tolist() == [unit]
    assert p.settings["data_weight"] == [1.0] * 4 and p.settings["jitter_T"] == [4, 4, 8, 8]
    with pytest.raises(ValueError, match=r"units \[256\] are out of range .* conv5, which has 256 channel"):
        build(alexnet, image, "maximization", layers=["conv5"], units=[0, 256])
    with pytest.raises(ValueError, match=r"units \[1000\] are out of range .* fc8, which has 1000 category"):
        build(alexnet, image, "maximization", units=[1000])


def test_caricature_default_layers_per_net_family():
    """§6.2: exp_enhance.m caricatures VGG16's layers 29 (conv5_3) and 36 (fc8); the AlexNets conv5 and fc8."""
    setting = mv2016.EXPERIMENT_SETTINGS["caricature"]
    assert mv2016.default_layers(setting, "alexnet") == mv2016.default_layers(setting, "caffenet") == ["conv5", "fc8"]
    vgg = mv2016.default_layers(setting, "vgg16")
    assert vgg == [nets.resolve_layer("vgg16", "l29"), nets.resolve_layer("vgg16", "l36")] == ["conv5_3", "fc8"]
    with pytest.raises(ValueError, match="pass --layers"):
        mv2016.default_layers(setting, "resnet18")


def test_batched_caricatures_start_in_the_middle_of_their_own_canvas(alexnet, image):
    """§3: the canvas starts at zero with the image in its middle — per problem: conv5 (T = 4) at offset 1 and fc8
    (T = 8) at offset 3 of the shared 234² canvas; the data terms have weight 1 (§5)."""
    p = build(alexnet, image, "caricature")
    assert p.layers == ["conv5", "fc8"] and p.settings["jitter_T"] == [4, 8]
    canvas = p.param.image().numpy()
    x0 = image.astype(np.float32) - nets.mean_rgb("alexnet")
    for i, offset in enumerate([1, 3]):
        np.testing.assert_array_equal(canvas[i, offset:offset + 227, offset:offset + 227], x0)
        rest = canvas[i].copy()
        rest[offset:offset + 227, offset:offset + 227] = 0
        assert not rest.any()
    np.testing.assert_array_equal(p.jitter.centre(tf.constant(canvas)).numpy(), np.stack([x0, x0]))
    assert all(np.all(np.asarray(w) == 1) for w, _ in _inner_terms(p)) and p.settings["data_weight"] == [1.0, 1.0]


def test_inversion_weights_the_data_term_by_c_and_restarts_the_optimiser_at_the_stage_change(alexnet, image):
    p = build(alexnet, image, "inversion", layers=["conv3", "conv5", "fc8"])
    weights = [np.asarray(w) for w, t in p.objective.parts if t.name.startswith("feature/")]
    assert p.settings["C"] == [300.0, 20.0, 1.0]                         # §6.1 thesis table
    assert [float(w[i]) for w, i in zip(weights, range(3))] == [300.0, 20.0, 1.0]
    assert p.optimizer.reset_accumulator is True                         # two chained calls (§4)
    kept = build(alexnet, image, "inversion", layers=["conv3"], keep_accumulator=True)
    assert kept.optimizer.reset_accumulator is False                     # §2's "keep G", on request
    _, reset, jitter = p.schedule.arrays()
    assert np.flatnonzero(reset).tolist() == [0, 300] and jitter[:300].all() and not jitter[300:].any()


# ---- what a run reports ------------------------------------------------------------------------------------------

def test_run_summary_gives_the_ci_over_each_condition_and_the_top1_share():
    rng = np.random.default_rng(0)
    sq = rng.uniform(0.01, 0.5, 7)
    rows = [{"problem": i, "layer": "pool5" if i < 4 else "fc8", "rel_sq_feature_error": float(e),
             "sqrt_rel_feature_error": float(np.sqrt(e)), "top1_kept": bool(k)}
            for i, (e, k) in enumerate(zip(sq, [1, 0, 1, 1, 0, 0, 1]))]
    names = ["pool5 λ=1"] * 4 + ["fc8 λ=100"] * 2 + ["fc8 λ=1"]
    s = summarise(rows, names)
    assert [c["condition"] for c in s["conditions"]] == ["pool5 λ=1", "fc8 λ=100", "fc8 λ=1"]
    for c, idx in zip(s["conditions"], ([0, 1, 2, 3], [4, 5], [6])):
        v = np.sqrt(sq[idx])
        assert c["n"] == len(idx) and c["sqrt_rel_mean"] == pytest.approx(v.mean())
        assert c["rel_sq_mean"] == pytest.approx(sq[idx].mean())
        if len(idx) > 1:
            assert c["sqrt_rel_ci95"] == pytest.approx(1.96 * v.std(ddof=1) / np.sqrt(len(idx)))
        else:
            assert c["sqrt_rel_ci95"] is None
    assert s["top1_kept"] == 4 and s["problems"] == 7 and s["top1_kept_share"] == pytest.approx(4 / 7)
    text = table(rows, [str(i) for i in range(7)], "alexnet", "/w.h5", summary=s)
    assert "top-1 label kept over the run: 4/7 (57.1 %)" in text and "pool5 λ=1" in text
    assert "top-1 label kept over the run: n/a" in table(rows, [str(i) for i in range(7)], "alexnet", "random",
                                                         summary=s)


def test_conditions_name_the_layer_and_the_settings_that_vary():
    p = Problem(objective=None, param=None, optimizer=None, schedule=None, labels=["a", "b", "c"],
                layers=["pool5", "pool5", "fc8"],
                settings={"lambda_tv": [1.0, 1.0, 100.0], "tv_beta": [2.0, 2.0, 2.0], "mask": [None, None, None]})
    assert common.conditions(p) == ["pool5 lambda_tv=1", "pool5 lambda_tv=1", "fc8 lambda_tv=100"]
