"""The engine's seams: a generator network as the parameterisation, callbacks at every log point, the engine
against hand-written loops, degradation operators and their adjoints, the shared metrics, file modes, and the
command line refusing flags a paper does not take."""
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.optimize import callbacks, optim, param
from tfrestore.restore import degrade
from tfrestore.core import files
from tfrestore.measure import metrics
from tfrestore import nets
from tfrestore.optimize import objectives as O
from tfrestore.optimize.engine import Optimization

ROOT = Path(__file__).resolve().parents[1]


def _generator(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="tanh", name="g1")(inp)
    return keras.Model(inp, keras.layers.Conv2D(3, 3, padding="same", name="g2")(x))


def test_generator_parameterisation_matches_a_hand_written_loop():
    """Deep-image-prior style: the weights of a small conv net are optimised so its output matches a target.
    The engine with optim.Adam (tf1 ε placement) must follow keras.optimizers.Adam in a plain GradientTape loop."""
    z = np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 4)).astype(np.float32)
    target = _generator(seed=5)(z).numpy()                 # reachable by the same architecture
    steps, lr = 60, 0.02

    ref_model = _generator()
    opt = keras.optimizers.Adam(lr, epsilon=1e-8)
    losses = []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(ref_model(z) - target))
        grads = tape.gradient(loss, ref_model.trainable_variables)
        opt.apply_gradients(zip(grads, ref_model.trainable_variables))
        losses.append(float(loss))
    ref_final = float(tf.reduce_sum(tf.square(ref_model(z) - target)))

    gen = param.Generator(_generator(), z, training=False)
    objective = O.image_l2(target)          # per problem Σ(x − target)²; the engine sums over problems
    run = Optimization(objective, gen, optim.Adam(epsilon=1e-8), optim.Schedule([optim.Stage(steps, lr)]),
                       log_every=10)
    result = run.run(progress=False)
    assert ref_final < losses[0] / 3                       # the reference really optimised
    assert float(result.loss.sum()) == pytest.approx(ref_final, rel=1e-4)
    np.testing.assert_allclose(result.images, ref_model(z).numpy(), rtol=1e-3, atol=1e-4)


def test_generator_refuses_projection_and_per_problem_schedules():
    gen = param.Generator(_generator(), np.zeros((2, 8, 8, 4), np.float32))
    sched = optim.Schedule([optim.Stage(3, 0.1)])
    with pytest.raises(ValueError, match="cannot be projected"):
        Optimization(O.tv(2), gen, optim.Adam(), sched, project=lambda x: x)
    with pytest.raises(ValueError, match="same schedule"):
        Optimization(O.tv(2), gen, optim.Adam(), [sched, optim.Schedule([optim.Stage(3, 0.2)])])


class Recorder(callbacks.Callback):
    def __init__(self):
        self.events = []

    def on_run_begin(self, loop):
        self.events.append(("begin", loop.stepper.steps_done))

    def on_log_point(self, loop, point):
        self.events.append(("point", point.step, point.last, sorted(point.values)))

    def on_run_end(self, loop, result):
        self.events.append(("end", result.steps))


def test_callbacks_see_every_log_point_and_step_is_public():
    x0 = np.random.default_rng(0).normal(0, 1, (2, 5, 5, 3)).astype(np.float32)
    run = Optimization(O.image_l2(x0) + 0.1 * O.tv(2), param.Pixels(np.zeros_like(x0)), optim.SGD(),
                       optim.Schedule([optim.Stage(12, 0.05)]), log_every=5)
    rec = Recorder()
    run.run([rec])
    points = [e for e in rec.events if e[0] == "point"]
    assert [p[1] for p in points] == [1, 6, 11, 12] == run.log_points()
    assert [p[2] for p in points] == [False, False, False, True]
    assert all(p[3] == ["image_l2", "tv2"] for p in points)
    assert rec.events[0] == ("begin", 0) and rec.events[-1] == ("end", 12)
    # step(n) runs exactly n more steps and stops at the end of the schedule
    run2 = Optimization(O.image_l2(x0), param.Pixels(np.zeros_like(x0)), optim.SGD(),
                        optim.Schedule([optim.Stage(12, 0.05)]))
    assert run2.step(4) == 4 and run2.step(100) == 12 and run2.steps_done == 12
    np.testing.assert_allclose(run2.images(), x0 * (1 - (1 - 2 * 0.05) ** 12), rtol=1e-5)   # closed form of SGD


def test_mv2015_engine_equals_a_hand_written_momentum_loop():
    """M&V 2015 on CaffeNet conv3 for seed 0, 8 steps: the engine (schedule, σ scaling, momentum reset, batched
    objective) against the formula written out with a GradientTape."""
    from reproductions import mv2015
    from tfrestore.optimize.inversion import Extractors
    model = nets.build("caffenet", weights=None)
    ext = Extractors(model)
    img = np.random.default_rng(0).integers(0, 256, (227, 227, 3)).astype(np.uint8)
    p = mv2015.problem(mv2015.FIGURES["layers"], net="caffenet", image_rgb=img, extractors=ext, layers=["conv3"],
                       steps=8)
    init = p.param.image().numpy()
    assert p.settings["lambda_tv"] == [10.0]
    run = Optimization.from_problem(p, to_input=lambda x: nets.to_input("caffenet", x))
    engine = run.run(progress=False).images

    s = mv2015.SIGMA
    target = ext.features("caffenet", "conv3", p.x0)
    f = ext("conv3")
    xt, m = tf.Variable(init / s), tf.zeros_like(init)
    lr, reset, _ = p.schedule.arrays()
    for t in range(8):
        with tf.GradientTape() as tape:
            x = xt * s
            phi = f(nets.to_input("caffenet", x))["conv3"]
            data = tf.reduce_sum((phi - target) ** 2) / np.sum(target.astype(np.float64) ** 2)
            dw = tf.pad(x[:, :, 1:] - x[:, :, :-1], [[0, 0], [0, 0], [0, 1], [0, 0]])
            dh = tf.pad(x[:, 1:] - x[:, :-1], [[0, 0], [0, 1], [0, 0], [0, 0]])
            tv = tf.reduce_sum(dw ** 2 + dh ** 2)
            e = data + (10.0 / 2 * tv + mv2015.LAMBDA_L2 / 2 * tf.reduce_sum(x ** 6)) / s ** 2   # λTV(conv3) = 10
        g = tape.gradient(e, xt)
        m = (0 if reset[t] else 0.9 * m) - lr[t] * g
        xt.assign_add(m)
    # float32 rounding alone (XLA against the graph, or the strided stem's input gradient against TensorFlow's,
    # each ~1e-6 relative per gradient) grows to ~0.05 on the 0–255 scale over these 8 steps (lr 0.004·σ² stage);
    # a wrong constant moves pixels by units (λTV 10 → 11: by 12)
    np.testing.assert_allclose(engine, (xt * s).numpy(), rtol=1e-4, atol=0.15)
    assert np.abs(engine - init).max() > 1.0                 # it moved


@pytest.mark.parametrize("op", [
    degrade.Blur(degrade.gaussian_kernel(5, 1.0), "circular"),
    degrade.Blur(degrade.gaussian_kernel(5, 1.0), "circular", centred=False),
    degrade.Blur(np.arange(12.0).reshape(3, 4), "zero"),
    degrade.FourFactorBlur(np.array([[1.0, 0.2], [0.3, 0.0]])),
    degrade.Downsample(2, "box"), degrade.Downsample(4, "lanczos"),
    degrade.Mask(degrade.random_mask((16, 12), 0.5)), degrade.GaussianNoise(0.1)])
def test_degradations_have_their_adjoints(op):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 16, 12, 3))
    ax = op(x).numpy()
    y = rng.normal(size=ax.shape)
    aty = op.adjoint(y).numpy()
    assert aty.shape == x.shape and ax.dtype == np.float64
    assert np.sum(ax * y) == pytest.approx(np.sum(x * aty), rel=1e-5)     # resize kernels run in float32


def test_blur_matches_scipy_and_box_downsampling_is_block_mean():
    from scipy.signal import convolve2d
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 9, 11, 1))
    k = rng.normal(size=(3, 5))
    np.testing.assert_allclose(degrade.blur(x, k, "zero")[0, ..., 0], convolve2d(x[0, ..., 0], k, "same"), atol=1e-12)
    d = degrade.Downsample(2)(np.arange(16.0).reshape(1, 4, 4, 1)).numpy()[0, ..., 0]
    np.testing.assert_allclose(d, [[2.5, 4.5], [10.5, 12.5]])
    m = degrade.stroke_mask((32, 32), strokes=5, seed=0)
    assert 0 < (m == 0).mean() < 0.5


def test_metrics_against_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (3, 16, 16, 3))
    b = a + rng.normal(0, 5, a.shape)
    mse = ((a - b) ** 2).reshape(3, -1).mean(1)
    np.testing.assert_allclose(metrics.psnr(a, b), 10 * np.log10(255 ** 2 / mse))
    np.testing.assert_allclose(metrics.nmse_dot(a, b), ((a - b) ** 2).reshape(3, -1).sum(1) / (a * b).reshape(3, -1).sum(1))
    assert metrics.ssim(a, a).tolist() == [1.0, 1.0, 1.0] and (metrics.ssim(a, b) < 1).all()
    mean, half = metrics.mean_ci95([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and half == pytest.approx(1.96 * np.std([1, 2, 3, 4], ddof=1) / 2)   # MATLAB std
    # Gram score: one layer = identity features; G of F − its global mean
    feats = lambda imgs: {"id": np.asarray(imgs, np.float64)}
    f = a[:1].reshape(-1, 3) - a[:1].mean()
    g = b[:1].reshape(-1, 3) - b[:1].mean()
    want = np.sum((f.T @ f - g.T @ g) ** 2) / np.sum((f.T @ f) ** 2)
    assert metrics.gram_score(feats, a[:1], b[:1], crop=None)[0] == pytest.approx(want, rel=1e-5)


def test_result_files_get_the_normal_umask(tmp_path):
    old = os.umask(0o022)
    try:
        files.write_text(tmp_path / "a.txt", "x")
        files.save_png(tmp_path / "a.png", np.zeros((4, 4, 3)))
    finally:
        os.umask(old)
    for f in ("a.txt", "a.png"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.txt"]    # no temporary file left


def test_importing_tfrestore_changes_no_environment():
    # (LD_LIBRARY_PATH is extended by a dependency's own import hook, not by tfrestore)
    code = ("import os, logging; keep = lambda: {k: v for k, v in os.environ.items() if k != 'LD_LIBRARY_PATH'}; "
            "before = keep(); lvl = logging.getLogger('tensorflow').level; "
            "import tfrestore, tfrestore.optimize.engine, tfrestore.nets, tfrestore.optimize.inversion; "
            "assert keep() == before, set(keep().items()) ^ set(before.items()); "
            "assert logging.getLogger('tensorflow').level == lvl")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("args,bad", [(["--paper=deconv", "--optimizer=adam"], "--optimizer"),
                                      (["--paper=mv2015", "--prior=full512"], "--prior"),   # (mv2015 takes --data: shallow)
                                      (["--paper=forward", "--steps=3"], "--steps")])
def test_main_refuses_flags_the_paper_does_not_take(args, bad):
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and f"does not take {bad}" in lines[0] and "it takes --" in lines[0]


def _main(*args, **kw):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600, **kw)


def test_new_user_inputs_fail_with_one_line(tmp_path):
    fake = tmp_path / "photo.png"
    fake.write_text("not an image")
    for args, words in ((["--steps=0"], "positive"), (["--steps=-5"], "positive"),
                        ([f"--image={fake}"], "cannot read"), ([f"--image={tmp_path}"], "is a folder")):
        r = _main("--paper=mv2015", "--layers=conv1", f"--out={tmp_path / 'o'}", *args)
        errors = [l for l in r.stderr.splitlines() if l.strip()]
        assert r.returncode == 2 and len(errors) == 1 and words in errors[0], (args, r.stderr[-500:])
    r = _main("--help")
    assert r.returncode == 0 and "--paper" in r.stdout


def test_default_run_is_quiet_honest_and_sigterm_resumes_exactly(tmp_path):
    import signal
    import time
    common = ["--paper=mv2015", "--layers=conv1", "--steps=200", "--image=coffee"]
    full = _main(*common, f"--out={tmp_path / 'full'}")
    assert full.returncode == 0, full.stderr[-2000:]
    out = full.stdout + full.stderr
    assert "cuInit" not in out and "Sharding callback" not in out
    table = (tmp_path / "full" / "table.txt").read_text()
    assert "RANDOM" in table and "n/a" in table and "True" not in table
    from PIL import Image
    png = Image.open(tmp_path / "full" / "rec_00_conv1.png")
    assert png.text["weights"] == "random" and png.text["net"] == "caffenet"

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *common, f"--out={tmp_path / 'cut'}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)
    seen = []
    for line in proc.stdout:                        # wait until the optimisation is under way
        seen.append(line)
        if line.startswith("step ") and not line.startswith("step      1/"):
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, "".join(seen) + rest
    assert "interrupted" in rest and "--resume" in rest
    resumed = _main(*common, f"--out={tmp_path / 'cut'}", "--resume")
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-2000:]
    a = np.load(tmp_path / "full" / "reconstructions.npy")
    b = np.load(tmp_path / "cut" / "reconstructions.npy")
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-3)
    import json
    m = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert m["seconds_total"] >= m["seconds"] > 0
    for f in tmp_path.joinpath("full").iterdir():
        if f.is_file():
            assert f.stat().st_mode & 0o077 != 0, f"{f.name} is private"     # group/other may read (umask)


def test_an_inversion_killed_between_checkpoints_resumes_to_the_uninterrupted_result(tmp_path):
    """kill -9 (no chance to save) after the step-100 checkpoint and before the next: ``--resume`` continues from
    that checkpoint, not from step 0, and ends where the uninterrupted run ends."""
    import signal
    common = ["--paper=mv2015", "--layers=conv1", "--steps=300", "--image=coffee", "--weights=random"]
    full = _main(*common, f"--out={tmp_path / 'full'}")
    assert full.returncode == 0, full.stderr[-2000:]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *common, f"--out={tmp_path / 'cut'}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)
    state, seen = tmp_path / "cut" / "ckpt" / "checkpoint", []
    for line in proc.stdout:
        seen.append(line)
        step = line.split("/")[0].split()[-1] if line.startswith("step ") else ""
        if step.isdigit() and 100 < int(step) < 200 and state.exists():
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    resumed = _main(*common, f"--out={tmp_path / 'cut'}", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    said = [l for l in resumed.stdout.splitlines() if "resumed from" in l]
    assert len(said) == 1 and 100 <= int(said[0].split(" at step ")[1].split()[0]) < 200, resumed.stdout
    np.testing.assert_allclose(np.load(tmp_path / "cut" / "reconstructions.npy"),
                               np.load(tmp_path / "full" / "reconstructions.npy"), rtol=1e-5, atol=1e-3)

def _tags(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return set(acc.Tags()["scalars"]) | set(acc.Tags()["tensors"]), acc


def test_tensorboard_logs_only_terms_that_apply_and_never_interleaves_runs(tmp_path):
    m = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(2, 3, name="c")])
    x0 = np.random.default_rng(0).normal(0, 1, (2, 6, 6, 3)).astype(np.float32)
    tgt = m(x0).numpy()
    # problem 0 only has a feature term, problem 1 only TV (weight 0 for problem 0)
    obj = O.feature_loss(m, "c", tgt[:1], problems=[0]) + np.array([0.0, 1.0]) * O.tv(2)

    def run(logdir, steps):
        opt = Optimization(obj, param.Pixels(np.zeros_like(x0)), optim.SGD(), optim.Schedule([optim.Stage(steps, 0.01)]),
                           labels=["a", "b"], log_every=2)
        opt.run(logdir=logdir, progress=False)

    run(tmp_path / "tb", 4)
    tags, acc = _tags(tmp_path / "tb")
    per_problem = {t for t in tags if t.startswith(("a/", "b/"))}
    assert per_problem == {"a/loss", "a/feature/c", "b/loss", "b/tv2"}
    run(tmp_path / "tb", 3)                      # started afresh in the same folder
    _, acc = _tags(tmp_path / "tb")
    steps = [e.step for e in acc.Tensors("a/loss")] if "a/loss" in acc.Tags()["tensors"] else \
        [e.step for e in acc.Scalars("a/loss")]
    assert steps == [1, 3]                       # only the new run's points, in order
    assert list((tmp_path / "tb" / "previous-1").glob("events.out.tfevents.*"))   # the earlier run is kept


def test_one_tensorboard_writer_holds_the_run_and_its_quality_curve(tmp_path):
    """The loop's TensorBoard callback is the one writer: the quality curve's PSNR goes into the same event file
    as the losses, with the value metrics.psnr gives for the logged images."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    clean = np.random.default_rng(0).uniform(0, 1, (1, 16, 16, 3)).astype(np.float32)
    x0 = clean + np.random.default_rng(1).normal(0, 0.2, clean.shape).astype(np.float32)
    run = Optimization(O.data_term(clean), param.Pixels(x0), optim.SGD(), optim.Schedule([optim.Stage(4, 0.1)]),
                       log_every=2)
    quality = callbacks.Quality(clean)
    result = run.run([callbacks.TensorBoard(tmp_path), quality])
    events = list(tmp_path.glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0]), size_guidance={"tensors": 0}).Reload()
    psnr = {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("quality/psnr_output")}
    assert "loss/mean" in acc.Tags()["tensors"] and sorted(psnr) == [1, 3, 4]
    final = float(np.mean(metrics.psnr(clean.astype(np.float64), np.clip(result.images, 0, 1), 1.0)))
    assert psnr[4] == pytest.approx(final, rel=1e-6) == result.quality[-1]["psnr_output"]   # (TB keeps float32)
