"""The learned inverters' shapes (learned_inverters.md §1, §5): dc / dd / cd modules against the thesis' own op
sequence written with ``tf.nn`` (``conv2d_transpose`` with an explicit ``output_shape``), their receptive geometry
against impulse responses and the closed form, their training, and ``--experiment=early_findings``."""
import numpy as np
import pytest
import tensorflow as tf

from tfrestore import data, nets
from tfrestore.models import inverters as I
from tfrestore.train import training

# (kind, input H = W, target H = W, op1 (kernel, stride, padding), op2 (kernel, stride, padding)); the second of a
# pair overshoots the target, where TF's SAME output_shape puts its window one pixel down and right
CASES = [("dc", 6, 25, (5, 4, "valid"), (3, 1, "same")), ("dc", 7, 13, (5, 2, "same"), (3, 1, "same")),
         ("dd", 6, 25, (5, 4, "valid"), (3, 1, "same")), ("dd", 7, 13, (3, 2, "same"), (5, 1, "same")),
         ("cd", 6, 25, (3, 1, "same"), (5, 4, "valid")), ("cd", 7, 13, (3, 1, "same"), (5, 2, "same")),
         ("cd", 8, 8, (3, 2, "same"), (3, 2, "same"))]                  # the thesis' cd may stride in op1 too


def _spec(kind, op1, op2, hidden=4, name="M"):
    (k1, s1, p1), (k2, s2, p2) = op1, op2
    return I.ModuleSpec(name, "f", "x", hidden, k1, s1, p1, k2, kind, s2, p2)


def _reference(kind, model, x, target, hidden, op1, op2):
    """The thesis' modules (modules/inv_modules.py) in tf.nn, with the Keras model's weights."""
    w = {layer.name.split("_", 1)[1]: layer.get_weights() for layer in model.layers if layer.get_weights()}
    n, (th, tc) = x.shape[0], (target[0], target[2])
    up = lambda v, k, o, s, p: tf.nn.conv2d_transpose(v, k, [n, th, th, o], s, p.upper())     # noqa: E731
    if kind == "cd":
        (k, b), (k2, b2) = w["conv"], w["deconv"]
        h = tf.nn.relu(tf.nn.conv2d(x, k, op1[1], op1[2].upper()) + b)
        return up(h, k2, tc, op2[1], op2[2]) + b2
    first, second = ("deconv", "conv") if kind == "dc" else ("deconv1", "deconv2")
    (k, b), (k2, b2) = w[first], w[second]
    h = tf.nn.relu(up(x, k, hidden, op1[1], op1[2]) + b)
    if kind == "dc":
        return tf.nn.conv2d(h, k2, 1, op2[2].upper()) + b2
    return up(h, k2, tc, 1, op2[2]) + b2


@pytest.mark.parametrize("kind,size_in,size_out,op1,op2", CASES)
def test_each_kind_is_the_thesis_op_sequence(kind, size_in, size_out, op1, op2):
    x = np.random.default_rng(0).normal(size=(2, size_in, size_in, 5)).astype(np.float32)
    target = (size_out, size_out, 3)
    model = I.build_module(_spec(kind, op1, op2), x.shape[1:], target, seed=3)
    out = model(x).numpy()
    assert out.shape == (2, *target)
    want = _reference(kind, model, x, target, 4, op1, op2).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_transposed_offset_is_tf_output_shape_window():
    # a single pixel through a transposed convolution lands where tf.nn.conv2d_transpose puts it
    for size_in, size_out, k, s in ((7, 13, 3, 2), (7, 13, 5, 2), (5, 17, 4, 4), (6, 12, 3, 2)):
        x = np.zeros((1, size_in, size_in, 1), np.float32)
        x[0, 2, 2, 0] = 1
        kernel = np.arange(1, k * k + 1, dtype=np.float32).reshape(k, k, 1, 1)
        full = tf.nn.conv2d_transpose(x, kernel, [1, size_in * s, size_in * s, 1], s, "SAME").numpy()
        tf_out = tf.nn.conv2d_transpose(x, kernel, [1, size_out, size_out, 1], s, "SAME").numpy()
        o = I.transposed_offset(size_in, size_out, k, s, "same")
        np.testing.assert_array_equal(full[0, o:o + size_out, o:o + size_out], tf_out[0])


def _ones_module(kind, op1, op2, size_in, size_out, channels=2, hidden=3):
    model = I.build_module(_spec(kind, op1, op2, hidden), (size_in, size_in, channels), (size_out, size_out, 1))
    model.set_weights([np.ones_like(w) if w.ndim == 4 else np.zeros_like(w) for w in model.get_weights()])
    return model


@pytest.mark.parametrize("kind,op1,op2,size_in,size_out", [
    ("dc", (11, 4, "valid"), (11, 1, "same"), 16, 71), ("dd", (11, 4, "valid"), (11, 1, "same"), 16, 71),
    ("cd", (11, 1, "same"), (11, 4, "valid"), 16, 71),                  # AlexNet layer 1's shapes (spec §2, §5)
    ("dc", (3, 2, "same"), (3, 1, "same"), 16, 32), ("cd", (3, 1, "same"), (3, 2, "same"), 16, 32),
    ("cd", (5, 1, "same"), (5, 2, "same"), 16, 32)])                    # VGG16's pool1 cd (spec §5)
def test_receptive_geometry_is_the_impulse_response(kind, op1, op2, size_in, size_out):
    """All-one kernels and zero biases make the module count paths: an all-one input gives each output pixel
    (paths along rows) × (paths along columns) × channels × hidden, one input pixel lights its footprint."""
    model = _ones_module(kind, op1, op2, size_in, size_out)
    geo = I.receptive_geometry(_spec(kind, op1, op2))
    s = max(op1[1], op2[1])
    c = size_out // 2 - s // 2                                  # one period of output phases, away from borders
    counts = model(np.ones((1, size_in, size_in, 2), np.float32)).numpy()[0, c:c + s, c:c + s, 0] / (2 * 3)
    lo, hi = geo["paths"]
    assert (counts.min(), counts.max()) == (lo * lo, hi * hi), counts
    impulse = np.zeros((1, size_in, size_in, 2), np.float32)
    impulse[0, size_in // 2, size_in // 2, 0] = 1
    rows = np.nonzero(model(impulse).numpy()[0, :, :, 0].any(axis=1))[0]
    assert rows.max() - rows.min() + 1 == geo["footprint"]
    assert geo["last_stride"] == (op2[1] if kind == "cd" else 1)


def test_the_geometry_of_alexnet_layer_1_in_closed_form():
    """11×11 kernels, stride 4 (spec §2's DC1): dc / dd reach 11 + 11 − 1 = 21 pixels and sum 30 or 31 terms
    per output phase; cd's stride-4 last operation reaches (11 − 1)·4 + 11 = 51 and sums 2·11 or 3·11."""
    from reproductions import layer_inversion as li
    geo = {m.spec.kind: I.receptive_geometry(m.spec) for m in li.EARLY["alexnet"].shapes}
    assert geo["dc"] == geo["dd"] == {"footprint": 21, "paths": (30, 31), "last_stride": 1}
    assert geo["cd"] == {"footprint": 51, "paths": (22, 33), "last_stride": 4}


@pytest.mark.parametrize("net", ["alexnet", "vgg16"])
def test_early_modules_follow_the_spec_and_fit_the_nets_taps(net):
    from reproductions import layer_inversion as li
    early = li.EARLY[net]
    model = nets.build(net, weights="random", width=1 / 16)     # the same spatial sizes, 1/16 of the channels
    specs = [m.spec for m in early.shapes + early.stack]
    taps = I.Taps(model, specs)
    for sp in specs:                                            # build_module checks the output is the target's
        m = I.build_module(sp, taps.shape(I.tap(net, sp.source)), taps.shape(I.tap(net, sp.target)))
        assert m.output_shape[1:] == taps.shape(I.tap(net, sp.target)), sp.name
    if net == "alexnet":
        # spec §5: dc and dd, "whose first operation is strided", against cd; targets ReLU output → bgr_normed
        kinds = {m.spec.kind: m.spec for m in early.shapes}
        assert set(kinds) == {"dc", "dd", "cd"}
        assert kinds["dc"].stride1 == kinds["dd"].stride1 == 4 and kinds["cd"].stride1 == 1
        assert {I.tap(net, s.source) for s in specs} == {"relu1"} and {s.target for s in specs} == {I.NET_INPUT}
    else:
        # spec §5: three stacked cd modules for conv1_1 → pool1; the image module batch 10 / lr 1e-4
        chain = [(I.tap(net, m.spec.source), I.tap(net, m.spec.target)) for m in early.stack]
        assert chain == [("pool1", "relu1_2"), ("relu1_2", "relu1_1"), ("relu1_1", I.NET_INPUT)]
        assert [m.spec.kind for m in early.stack] == ["cd"] * 3
        assert [(m.batch, m.learning_rate) for m in early.stack] == [(32, 3e-4), (32, 3e-4), (10, 1e-4)]


def test_a_strided_second_operation_is_only_a_cd_modules():
    with pytest.raises(ValueError, match="stride2 must be 1"):
        I.build_module(_spec("dc", (3, 2, "same"), (3, 2, "same")), (7, 7, 5), (14, 14, 3))
    from reproductions import layer_inversion as li
    with pytest.raises(ValueError, match="leave out --layers"):
        li.Flags(net="digits", experiment="early_findings", layers=("pool1",))
    with pytest.raises(ValueError, match="valid: compare, early_findings"):
        li.Flags(experiment="early")


@pytest.mark.parametrize("kind", ["dc", "dd", "cd"])
def test_each_kind_trains_below_its_start_and_the_mean_image(kind):
    """100 steps of batch 4 on the digits' pool1 → their net input (small images, the digits' shapes of the
    experiment): the loss falls from its initial value and below the mean training target's."""
    from reproductions import layer_inversion as li
    spec = next(m.spec for m in li.EARLY["digits"].shapes if m.spec.kind == kind)
    taps = I.Taps(nets.build("digits", weights="random"), [spec])
    x, _, _ = data.digit_images(None, "train")
    val = x[-32:]
    modules = I.build_modules(taps, [spec], seed=1)
    target = np.asarray(taps(val)[I.NET_INPUT], np.float64)
    mean = np.asarray(taps(x[:256])[I.NET_INPUT], np.float64).mean(0)

    def mse():
        return float(np.mean((np.asarray(modules[spec.name](taps(val)["pool1"])) - target) ** 2))

    before, baseline = mse(), float(np.mean((target - mean) ** 2))
    cfg = training.TrainingConfig(steps=100, batch=4, learning_rate=3e-3, val_every=100)
    I.train_modules(taps, modules, [spec], training.ArraySource({"image": x[:256]}), val[:4], cfg, progress=False)
    after = mse()
    assert after < 0.5 * before and after < baseline, (before, after, baseline)


def test_phase_mse_ratio_in_closed_form():
    from reproductions import layer_inversion as li
    ref = np.zeros((2, 8, 8, 3))
    est = np.ones((2, 8, 8, 3))
    assert li.phase_mse_ratio(ref, est, 4) == pytest.approx(1.0)
    est[:, ::4, ::4] = 3                                        # one of the 16 phases: error 3 instead of 1
    assert li.phase_mse_ratio(ref, est, 4) == pytest.approx(9.0)
    assert li.phase_mse_ratio(ref, est, 2) == pytest.approx((9 + 3) / 4 / 1.0)


@pytest.mark.experiment("layer_inversion", "early_findings")
def test_early_findings_tiny_run_on_digits(tmp_path, capsys):
    from reproductions import layer_inversion as li, paper
    flags = li.Flags(net="digits", experiment="early_findings", steps=30, weights="random")
    res = li.run(flags, paper.RunContext.create(li.default_out(flags), out=tmp_path / "e", progress=False))
    assert "RANDOM CLASSIFIER WEIGHTS" in capsys.readouterr().out and "geometry only" in res.table
    rows = {r["module"]: r for r in res.metrics["scores"]}
    assert set(rows) == {"L1dc", "L1dd", "L1cd", "S2cd", "S1cd", "S2cd_to_S1cd"}
    assert {m: s["steps"] for m, s in res.metrics["modules"].items()} == dict.fromkeys(rows.keys() - {"S2cd_to_S1cd"},
                                                                                      30)
    val, _, _ = data.digit_images(None, "val")
    val = val[:li.DIGITS_VALIDATION]
    # the image modules' target is the net's own input (digits: x / 255), their constant baseline its mean over
    # the first MEAN_SAMPLES training digits
    train, _, _ = data.digit_images(None, "train")
    mean = (train[:li.MEAN_SAMPLES] / 255.0).mean(0)
    assert rows["L1cd"]["mean_image"] == pytest.approx(np.mean((val / 255.0 - mean) ** 2), rel=1e-4)
    for name in ("L1dc", "L1dd", "L1cd", "S2cd_to_S1cd"):
        rec = np.load(tmp_path / "e" / f"rec_{name}.npy").astype(np.float64)
        assert rec.shape == val.shape and 0 <= rec.min() and rec.max() <= 255
        assert rows[name]["image_mse"] == pytest.approx(np.mean((rec - val) ** 2), rel=1e-4)
        # the module trained: below its untrained self (all of 30 steps)
        assert name == "S2cd_to_S1cd" or rows[name]["mse"] < rows[name]["untrained"]
    assert (tmp_path / "e" / "figure.png").exists() and (tmp_path / "e" / "table.txt").exists()
