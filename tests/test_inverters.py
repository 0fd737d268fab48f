"""Learned inversion modules: catalogue shapes, training, stacking, merged training, resume, distribution."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from PIL import Image

from digits_store import copy_classifier
from tfrestore import data as data_lib
from tfrestore.models import inverters as I
from tfrestore.core import files, store
from tfrestore import nets
from tfrestore.train import training

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("net", ["alexnet", "vgg16"])
def test_every_catalogue_module_maps_its_input_tap_to_its_target_tap(net):
    model = nets.build(net, weights="random")
    specs = I.catalogue(net)
    assert [s.name for s in specs] == [f"DC{i}" for i in range(1, len(specs) + 1)]
    taps = I.Taps(model, specs)
    x = np.random.default_rng(0).uniform(0, 255, (1, *model.input_shape[1:])).astype(np.float32)
    feats = taps(x)
    for s in specs:
        m = I.build_module(s, taps.shape(I.tap(net, s.source)), taps.shape(I.tap(net, s.target)))
        assert m(feats[I.tap(net, s.source)]).shape == feats[I.tap(net, s.target)].shape, s.name
    assert [s.name for s in I.chain(net, "pool1" if net == "vgg16" else "conv2/lin")] == \
        (["DC3", "DC2", "DC1"] if net == "vgg16" else ["DC4", "DC3", "DC2", "DC1"])
    with pytest.raises(ValueError, match="starting layers"):
        I.chain(net, "fc8")


def test_a_module_learns_to_invert_a_known_convolution():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 12, 12, 3)).astype(np.float32)
    k = tf.constant(rng.normal(size=(3, 3, 3, 8)).astype(np.float32) / 3)
    f = tf.nn.conv2d(x, k, 1, "SAME").numpy()           # an injective 3 → 8 channel convolution: invertible
    spec = I.ModuleSpec("M", "f", "x", hidden=32, kernel1=3, stride1=1, padding1="same", kernel2=3)
    module = I.build_module(spec, f.shape[1:], x.shape[1:], seed=1)

    def loss(m, b, training_):
        return {"loss": tf.reduce_mean(tf.square(m(b["f"], training=training_) - b["x"]))}

    cfg = training.TrainingConfig(steps=300, batch=32, learning_rate=3e-3, val_every=300)
    trainer = training.Trainer(module, loss, {"f": f, "x": x}, cfg, val={"f": f[:64], "x": x[:64]})
    before = trainer.evaluate({"f": f[:64], "x": x[:64]})["loss"]
    trainer.run(progress=False)
    after = trainer.history[-1]["val_loss"]
    assert after < before / 10, (before, after)


def _digits_setup(seed=0):
    model = nets.build("digits", weights="random", seed=seed)
    specs = [I.ModuleSpec("M2", "pool1", "conv1", hidden=8, kernel1=3, stride1=2, padding1="same", kernel2=3),
             I.ModuleSpec("M1", "conv1", "image", hidden=8, kernel1=3, stride1=1, padding1="same", kernel2=3)]
    taps = I.Taps(model, specs)
    x, _, _ = data_lib.digit_images(None, "train")
    return taps, specs, x[:256]


def test_stacked_inference_is_the_modules_one_by_one():
    taps, specs, x = _digits_setup()
    mods = I.build_modules(taps, specs)
    feats = taps(x[:4])
    outs = I.run_chain(mods, specs, feats["pool1"])
    by_hand = mods["M1"](mods["M2"](feats["pool1"]))
    np.testing.assert_allclose(outs[-1].numpy(), by_hand.numpy(), rtol=1e-6)
    assert outs[0].shape == feats["conv1"].shape and outs[1].shape == (4, 28, 28, 3)


def test_module_biases_are_glorot_uniform_and_the_loss_is_plain_mse():
    spec = I.ModuleSpec("M", "f", "x", hidden=48, kernel1=3, stride1=1, padding1="same", kernel2=3)
    module = I.build_module(spec, (6, 6, 16), (6, 6, 24), seed=2)
    for layer in (l for l in module.layers if hasattr(l, "bias") and l.bias is not None):
        b = layer.bias.numpy()
        limit = np.sqrt(6.0 / (2 * len(b)))               # glorot-uniform on a [C] vector: fan_in = fan_out = C
        assert np.abs(b).max() <= limit and np.abs(b).max() > 0.5 * limit and np.std(b) > 0.3 * limit, layer.name
    zeros = I.build_module(spec, (6, 6, 16), (6, 6, 24), bias_init="zeros")
    assert all(not np.any(l.bias.numpy()) for l in zeros.layers if hasattr(l, "bias") and l.bias is not None)
    # the loss terms are the plain mean squared error between each module's output and its target tap
    taps, specs, x = _digits_setup()
    mods = I.build_modules(taps, specs)
    feats = {k: v.numpy() for k, v in taps(x[:4]).items()}
    terms = I.loss_fn(taps, mods, specs, "solo")(None, {"image": x[:4]}, False)
    for s in specs:
        rec = mods[s.name](feats[I.tap("digits", s.source)]).numpy()
        want = np.mean((rec.astype(np.float64) - feats[I.tap("digits", s.target)]) ** 2)
        assert float(terms[s.name]) == pytest.approx(want, rel=1e-4)
    assert float(terms["loss"]) == pytest.approx(sum(float(terms[s.name]) for s in specs), rel=1e-5)


def _weights(mods):
    return {n: [w.copy() for w in m.get_weights()] for n, m in mods.items()}


def _changed(a, b):
    return {n: any(not np.allclose(x, y) for x, y in zip(a[n], b[n])) for n in a}


def test_merged_training_updates_every_module_and_only_trainable_ones_otherwise():
    taps, specs, x = _digits_setup()
    cfg = training.TrainingConfig(steps=3, batch=8, learning_rate=1e-3, val_every=3)
    source = training.ArraySource({"image": x})
    for trainable, legacy, want in ((None, False, {"M1": True, "M2": True}),
                                    (["M1"], False, {"M1": True, "M2": False}),
                                    (["M1"], True, {"M1": True, "M2": True})):
        mods = I.build_modules(taps, specs)
        w0 = _weights(mods)
        I.train_modules(taps, mods, specs, source, x[:8], cfg, regime="merged", trainable=trainable,
                        legacy_train_all=legacy, progress=False)
        assert _changed(w0, _weights(mods)) == want, (trainable, legacy)


def test_inverter_training_resumes_exactly(tmp_path):
    taps, specs, x = _digits_setup()
    cfg = training.TrainingConfig(steps=6, batch=8, learning_rate=1e-3, val_every=2, checkpoint_every=2,
                                  breakpoints=((3, 3e-4),))
    source = training.ArraySource({"image": x})
    straight = I.build_modules(taps, specs)
    I.train_modules(taps, straight, specs, source, x[:8], cfg, regime="merged", progress=False)
    first = I.build_modules(taps, specs)
    I.train_modules(taps, first, specs, source, x[:8], cfg, regime="merged", out=tmp_path, stop_after=2,
                    progress=False)
    second = I.build_modules(taps, specs)
    s = I.train_modules(taps, second, specs, source, x[:8], cfg, regime="merged", out=tmp_path, resume=True,
                        progress=False)
    assert s["steps"] == 6
    for n in straight:
        for a, b in zip(straight[n].get_weights(), second[n].get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_image_source_crops_are_windows_of_the_resized_image_seeded_by_draw_and_centred_without_augment(tmp_path):
    h, w = 90, 150
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = np.stack([xx / (w - 1), yy / (h - 1), np.full((h, w), 0.5)], -1)        # red: x, green: y
    path = str(files.save_png(tmp_path / "ramp.png", ramp))
    img = np.asarray(Image.open(path), np.float32)
    src = I.ImageSource([path], 64, seed=3)                                         # shorter side 64·1.15 = 74
    a = src.load(tf.constant(0), tf.constant(5))["image"].numpy()
    b = src.load(tf.constant(0), tf.constant(5))["image"].numpy()
    c = src.load(tf.constant(0), tf.constant(6))["image"].numpy()
    assert a.shape == (64, 64, 3) and np.array_equal(a, b) and not np.array_equal(a, c)
    big = tf.image.resize(img, (74, 124), antialias=True).numpy()
    for crop in (a, c):          # each is a 64² window of the resized image, mirrored or not
        assert any(np.allclose(crop, win, atol=1e-3) for i in range(11) for j in range(61)
                   for win in (big[i:i + 64, j:j + 64], big[i:i + 64, j:j + 64][:, ::-1])), "not a window"
    centre = I.ImageSource([path], 64, augment=False).load(tf.constant(0), tf.constant(0))["image"].numpy()
    assert centre.shape == (64, 64, 3)
    # centred: the middle pixel has the ramp's middle values (a corner crop would be ~64 off in red)
    assert abs(centre[32, 32, 0] - 127.5) < 4 and abs(centre[32, 32, 1] - 127.5) < 4


def test_inverter_step_on_two_logical_cpus_equals_one_device():
    code = r"""
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import sys; sys.path.insert(0, "tests")
from test_inverters import _digits_setup
from tfrestore.models import inverters as I
from tfrestore.train import training
taps, specs, x = _digits_setup()
cfg = training.TrainingConfig(steps=3, batch=8, learning_rate=1e-3, val_every=3)
src = training.ArraySource({"image": x})
one = I.build_modules(taps, specs)
I.train_modules(taps, one, specs, src, x[:8], cfg, regime="merged", progress=False)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
two = I.build_modules(taps, specs, strategy=strategy)
I.train_modules(taps, two, specs, src, x[:8], cfg, regime="merged", strategy=strategy, progress=False)
for n in one:
    for a, b in zip(one[n].get_weights(), two[n].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
print("SAME")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0 and "SAME" in r.stdout, r.stderr[-3000:]


@pytest.mark.experiment("layer_inversion", "compare")
def test_layer_inversion_tiny_run_on_digits_beats_the_mean_image_and_the_untrained_chain(tmp_path, tmp_path_factory,
                                                                                        monkeypatch):
    from reproductions import layer_inversion, paper
    import os
    copy_classifier(tmp_path_factory, Path(os.environ["TFRESTORE_HOME"]))      # the session's trained net
    monkeypatch.setattr(layer_inversion, "DIGITS_VALIDATION", 2)      # the VGG Gram score is most of the time
    flags = layer_inversion.Flags(net="digits", layers=("pool1",), steps=200)
    res = layer_inversion.run(flags, paper.RunContext.create(layer_inversion.default_out(flags), out=tmp_path / "li",
                                                             progress=False)).metrics
    scores = {r["method"]: r for r in res["scores"]}
    assert set(scores) == {"stacked", "merged", "end_to_end", "untrained (baseline)"}   # M&V 2016: ImageNet's
    assert res["weights"] != "random" and set(res["solo_training"]) == {"DC2", "DC1"}
    assert len(res["validation_images"]) == 2
    # the thesis' training settings reached the trainer (scaled to 200 steps, the after-the-step rule, list order)
    solo, merged = res["training"]["solo"], res["training"]["merged"]
    assert (solo["steps"], solo["batch"], solo["learning_rate"], solo["shuffle"], solo["breakpoint_rule"]) == \
        (200, 32, 3e-4, False, "after")
    assert [tuple(b) for b in merged["breakpoints"]] == [(0, 3e-6), (66, 1e-6), (133, 3e-7)]
    # every trained chain reconstructs the held-out digits better than the mean training digit and than itself
    # untrained (baselines a broken training would not beat)
    train_x, _, _ = data_lib.digit_images(None, "train")
    val_x, _, _ = data_lib.digit_images(None, "val")
    mean_mse = float(np.mean((val_x[:2] - train_x.mean(0)) ** 2))
    for method in ("stacked", "merged", "end_to_end"):
        assert scores[method]["mse"] < 0.6 * mean_mse < scores["untrained (baseline)"]["mse"], (method, scores)
        assert scores[method]["vgg"] < 0.5 * scores["untrained (baseline)"]["vgg"]
    assert (tmp_path / "li" / "figure.png").exists() and (tmp_path / "li" / "table.txt").exists()
    [merged_key] = store.find("inverter", "digits/merged/DC2_to_DC1")
    stored = store.verify(merged_key)
    assert stored.file("DC2.weights.h5").exists() and stored.file("DC1.weights.h5").exists()
    with pytest.raises(ValueError, match="starting layers"):
        layer_inversion.Flags(net="digits", layers=("fc4",))


def test_inverter_module_sets_come_from_the_registry(monkeypatch):
    """Which module set a net uses is the registry's ``inverters`` fact, not a test of the net's name."""
    import dataclasses
    from tfrestore import nets
    assert I.catalogue("caffenet") is I.CATALOGUE["alexnet"] and I.catalogue("digits") is I.CATALOGUE["digits"]
    with pytest.raises(ValueError, match="not 'resnet18'"):
        I.catalogue("resnet18")
    monkeypatch.setitem(nets.REGISTRY, "resnet18", dataclasses.replace(nets.REGISTRY["resnet18"], inverters="vgg16"))
    assert I.catalogue("resnet18") is I.CATALOGUE["vgg16"]
