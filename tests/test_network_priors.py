"""Network priors: the distributed trainer, the autoencoder prior, the deep image prior, the data term."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfrestore import autoencoder, callbacks, data, degrade, dip, metrics, training
from tfrestore import objectives as O
from tfrestore import optim
from tfrestore.engine import Optimization
from tfrestore.param import Pixels

ROOT = Path(__file__).resolve().parents[1]


# ---- the data term -------------------------------------------------------------------------------------------
def test_data_term_is_the_masked_gaussian_log_likelihood():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    op = degrade.Downsample(2, "box")
    y = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    m = (rng.uniform(size=(2, 4, 4, 1)) > 0.5).astype(np.float32)
    term = O.DataTerm(y, op, sigma=0.3, mask=m)
    got = term.value(O.Context(tf.constant(x)))
    ax = x.reshape(2, 4, 2, 4, 2, 3).mean(axis=(2, 4))                      # box down-sampling by hand
    want = (((ax - y) * m) ** 2).sum(axis=(1, 2, 3)) / (2 * 0.3 ** 2)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    with pytest.raises(ValueError, match="sigma"):
        O.DataTerm(y, sigma=0.0)


# ---- the autoencoder prior ------------------------------------------------------------------------------------
def _np_coverage(z, mode):
    d = z.shape[1]
    if mode in ("var_kurt", "moments"):
        mean, var = z.mean(0), z.var(0)
        kurt = ((z - mean) ** 4).mean(0) / var ** 2
        loss = ((var - 1 / 12) ** 2 + (kurt - 9 / 5) ** 2).sum()
        return loss + (((mean - 0.5) ** 2).sum() if mode == "moments" else 0.0)
    if mode == "kl_vector":
        p = z / z.sum(1, keepdims=True)
        return (p * np.log(p * d)).sum(1).mean()
    p = z.sum(0) / z.sum()
    return (p * np.log(p * d)).sum()


@pytest.mark.parametrize("mode", ["var_kurt", "moments", "kl_vector", "kl_batch_sum"])
def test_coverage_regulariser_against_numpy(mode):
    z = np.random.default_rng(1).beta(2, 3, size=(64, 10))
    got = float(autoencoder.coverage_loss(tf.constant(z, tf.float32), mode))
    np.testing.assert_allclose(got, _np_coverage(z, mode), rtol=2e-4)
    # codes drawn from U(0, 1) nearly satisfy the moment-matching forms
    u = np.random.default_rng(2).uniform(size=(20000, 10))
    assert float(autoencoder.coverage_loss(tf.constant(u, tf.float32), "var_kurt")) < 1e-3
    with pytest.raises(ValueError, match="var_kurt"):
        autoencoder.coverage_loss(z, "uniformish")


def _digits():
    x, y, _ = data.digits(28, None, "train")
    xv, yv, _ = data.digits(28, None, "val")
    return x, xv


def test_autoencoder_learns_the_digits_and_resumes_exactly(tmp_path):
    x, xv = _digits()

    def fresh(steps):
        model = autoencoder.build(10, seed=3)
        cfg = training.TrainingConfig(steps=steps, batch=48, learning_rate=1e-3, val_every=50, checkpoint_every=50)
        return model, training.Trainer(model, autoencoder.loss_fn("var_kurt"), {"x": x}, cfg, val={"x": xv})

    learnt, t0 = fresh(1000)
    t0.run(progress=False)
    rec = autoencoder.reconstruct(learnt, xv)
    mse, baseline = np.mean((rec - xv) ** 2), np.mean((xv - x.mean(0)) ** 2)
    assert mse < 0.5 * baseline, (mse, baseline)           # well below predicting the mean digit

    straight, t1 = fresh(200)
    t1.run(progress=False)
    first, t2 = fresh(200)
    t2.run(tmp_path, stop_after=100, progress=False)
    assert int(t2.step.numpy()) == 100
    second, t3 = fresh(200)
    summary = t3.run(tmp_path, resume=True, progress=False)
    assert summary["steps"] == 200 and [h["step"] for h in t3.history] == [50, 100, 150, 200]
    for a, b in zip(straight.weights, second.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_autoencoder_prior_raises_psnr_on_noisy_digits():
    x, xv = _digits()
    model = autoencoder.build(10, seed=0)
    cfg = training.TrainingConfig(steps=600, batch=48, learning_rate=1e-3)
    training.Trainer(model, autoencoder.loss_fn("none"), {"x": x}, cfg).run(progress=False)
    clean = xv[:8] * 2 - 1
    noisy = (clean + np.random.default_rng(0).normal(0, 0.5, clean.shape)).astype(np.float32)
    objective = O.DataTerm(noisy, sigma=0.5) + autoencoder.AutoencoderTerm(model)
    run = Optimization(objective, Pixels(noisy.copy()), optim.Adam(), optim.Schedule([optim.Stage(300, 0.01)]),
                       log_every=100)
    run.step(300)
    restored = run.images()
    before = metrics.psnr((clean + 1) / 2, np.clip((noisy + 1) / 2, 0, 1), 1.0).mean()
    after = metrics.psnr((clean + 1) / 2, np.clip((restored + 1) / 2, 0, 1), 1.0).mean()
    assert after > before + 1.0, (before, after)


def test_trainer_on_two_logical_cpus_equals_one_device():
    code = r"""
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfrestore import training
rng = np.random.default_rng(0)
x = rng.normal(size=(96, 6, 6, 2)).astype(np.float32); y = rng.normal(size=(96, 3)).astype(np.float32)
def build():
    i = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 3, activation="tanh", kernel_initializer=keras.initializers.GlorotUniform(1))(i)
    o = keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotUniform(2))(keras.layers.Flatten()(h))
    return keras.Model(i, o)
def loss(model, b, training):
    return {"loss": tf.reduce_mean(tf.square(model(b["x"], training=training) - b["y"]))}
cfg = training.TrainingConfig(steps=6, batch=16, learning_rate=0.01, val_every=3)
one = build(); training.Trainer(one, loss, {"x": x, "y": y}, cfg).run(progress=False)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    two = build()
t = training.Trainer(two, loss, {"x": x, "y": y}, cfg, strategy=strategy)
assert t.strategy.num_replicas_in_sync == 2
t.run(progress=False)
for a, b in zip(one.weights, two.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
print("SAME")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0 and "SAME" in r.stdout, r.stderr[-3000:]


# ---- the deep image prior ------------------------------------------------------------------------------------
def _skip_parameter_count(cin=32, cout=3, down=(128,) * 5, up=(128,) * 5, skip=(4,) * 5, k=3):
    """Trainable parameters of Ulyanov et al.'s skip network, counted from its description: convolutions
    (weights + bias) and batch norms (γ, β)."""
    conv = lambda i, o, kk: i * o * kk * kk + o          # noqa: E731
    bn = lambda c: 2 * c                                  # noqa: E731
    total, depth = 0, cin
    for i in range(len(down)):
        deeper_out = up[i + 1] if i + 1 < len(down) else down[i]
        total += conv(depth, skip[i], 1) + bn(skip[i])                          # skip branch
        total += conv(depth, down[i], k) + bn(down[i]) + conv(down[i], down[i], k) + bn(down[i])
        total += bn(skip[i] + deeper_out)                                       # after the concatenation
        total += conv(skip[i] + deeper_out, up[i], k) + bn(up[i])
        total += conv(up[i], up[i], 1) + bn(up[i])                               # the 1×1 after up-sampling
        depth = down[i]
    return total + conv(up[0], cout, 1)


def test_dip_generator_has_the_published_shape_and_size():
    model = dip.skip_generator(256)
    assert model.input_shape == (None, 256, 256, 32) and model.output_shape == (None, 256, 256, 3)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert trainable == _skip_parameter_count() == 2_217_831
    small = dip.skip_generator(64)
    y = small(dip.input_code(64), training=True).numpy()
    assert y.shape == (1, 64, 64, 3) and y.min() > 0 and y.max() < 1        # sigmoid output
    with pytest.raises(ValueError, match="divisible by 32"):
        dip.skip_generator(100)


def test_moving_average_of_outputs_follows_the_papers_rule():
    p = dip.generator_parameterization(32, noise_std=0.0, channels_down=(8, 8), channels_up=(8, 8),
                                       channels_skip=(2, 2))
    run = Optimization(O.DataTerm(np.full((1, 32, 32, 3), 0.3, np.float32)), p, optim.SGD(),
                       optim.Schedule([optim.Stage(3, 0.5)]))
    want = None
    for _ in range(3):
        out = p.model(p.z, training=True).numpy()            # the image the next step is computed on
        want = out if want is None else 0.99 * want + 0.01 * out
        run.step(1)
    np.testing.assert_allclose(p.average(), want, rtol=1e-5, atol=1e-6)


def test_short_dip_denoising_beats_the_noisy_input():
    clean = data.load_image("chelsea", 64, crop="center").astype(np.float32)[None] / 255.0
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape), 0, 1).astype(np.float32)
    p = dip.generator_parameterization(64, channels_down=(32,) * 3, channels_up=(32,) * 3, channels_skip=(4,) * 3)
    run = Optimization(O.DataTerm(noisy, sigma=25 / 255), p, optim.Adam(epsilon_form="paper"),
                       optim.Schedule([optim.Stage(300, 0.01, jitter=False)]), log_every=50)
    quality = callbacks.Quality(clean, extra={"average": lambda r: r.param.average()})
    result = run.run([quality])
    noisy_psnr = metrics.psnr(clean, noisy, 1.0)[0]
    assert max(q["psnr_average"] for q in result.quality) > noisy_psnr + 1.0, (noisy_psnr, result.quality[-1])
    final = metrics.psnr(clean, np.clip(result.images, 0, 1), 1.0)[0]
    assert final == pytest.approx(result.quality[-1]["psnr_output"], abs=1e-6)


def test_dip_command_line_runs_and_refuses_what_a_task_does_not_take(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "main.py"), *a], capture_output=True,  # noqa: E731
                                    text=True, cwd=ROOT, timeout=600)
    r = run("--paper=dip", "--task=denoise", "--net=alexnet")
    assert r.returncode == 2 and "--task=invert" in r.stderr
    r = run("--paper=dip", "--task=superres", "--corrupted=chelsea")
    assert r.returncode == 2 and "--image" in r.stderr
    r = run("--paper=dip", "--task=superres", "--size=64", "--steps=6", "--optimizer=lbfgs",
            f"--out={tmp_path / 'sr'}")
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "sr" / "metrics.json").read_text())
    methods = [row["method"] for row in m["rows"]]
    assert methods[:2] == ["corrupted input", "bicubic"] and len(m["curve"]) >= 2
    assert any("L-BFGS finish" in x for x in methods)
    assert (tmp_path / "sr" / "curve.png").exists() and (tmp_path / "sr" / "figure.png").exists()
