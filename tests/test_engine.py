"""The inversion engine: terms against closed forms and finite differences, transforms, optimiser updates,
L-BFGS, convergence, batching and resume."""
import numpy as np
import pytest
import tensorflow as tf
import keras

from tfrestore.optimize import objectives as O
from tfrestore.optimize import optim, param, transforms
from tfrestore.optimize.engine import Optimization
from tfrestore.core.report import stretch
from tfrestore.optimize.objectives import Context

RNG = np.random.default_rng(0)


def tv_numpy(x, beta, mean=False, scale=1.0):
    x = x.astype(np.float64) / scale
    dw = np.zeros_like(x)
    dh = np.zeros_like(x)
    dw[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]      # last column replicated -> 0
    dh[:, :-1] = x[:, 1:] - x[:, :-1]
    v = (dw ** 2 + dh ** 2) ** (beta / 2)
    s = v.sum(axis=(1, 2, 3))
    return s / (x.shape[1] * x.shape[2]) if mean else s


def value(term, x, **ctx_kw):
    return term(Context(tf.constant(x, tf.float32), **ctx_kw))[0].numpy()


def fd_check(term, x, ref=None, n_probe=6, eps=1e-3, rtol=2e-2):
    """Finite-difference check of TF's d(sum of term)/dx at random coordinates; the differences are taken on the
    float64 numpy closed form ``ref`` when given, else on the term itself."""
    f = ref or (lambda z: value(term, z).astype(np.float64))
    xt = tf.Variable(x.astype(np.float32))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(term(Context(xt))[0])
    g = tape.gradient(total, xt).numpy()
    idx = [tuple(RNG.integers(0, s) for s in x.shape) for _ in range(n_probe)]
    for i in idx:
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        num = float((np.sum(f(xp)) - np.sum(f(xm))) / (2 * eps))
        assert num == pytest.approx(float(g[i]), rel=rtol, abs=1e-3 * (abs(num) + 1)), (i, num, g[i])


@pytest.mark.parametrize("beta,mean,scale", [(2.0, False, 1.0), (1.0, False, 1.0), (2.0, True, 12.3)])
def test_tv_closed_form_and_gradient(beta, mean, scale):
    x = RNG.normal(0, 3, (2, 6, 5, 3)).astype(np.float32)
    term = O.tv(beta=beta, mean=mean, scale=scale)
    np.testing.assert_allclose(value(term, x), tv_numpy(x, beta, mean, scale), rtol=1e-5)
    fd_check(term, x.astype(np.float64), lambda z: tv_numpy(z, beta, mean, scale))


def test_alpha_norm_and_bounded_range():
    x = RNG.normal(0, 2, (2, 4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(value(O.alpha_norm(6), x), (x.astype(np.float64) ** 6).sum(axis=(1, 2, 3)), rtol=1e-5)
    br = ((np.sqrt((x.astype(np.float64) ** 2).sum(-1)) / 3.0) ** 6).mean(axis=(1, 2))
    np.testing.assert_allclose(value(O.bounded_range(6, 3.0), x), br, rtol=1e-5)
    fd_check(O.alpha_norm(6), x.astype(np.float64) / 2, lambda z: (z ** 6).sum(axis=(1, 2, 3)))
    fd_check(O.bounded_range(6, 3.0), x.astype(np.float64),
             lambda z: ((np.sqrt((z ** 2).sum(-1)) / 3.0) ** 6).mean(axis=(1, 2)))


def _tiny_model(seed=0):
    inp = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, kernel_initializer=keras.initializers.GlorotNormal(seed), name="c")(inp)
    y = keras.layers.ReLU(name="r")(y)
    return keras.Model(inp, {"r": y})


def test_feature_loss_mask_and_inner_product():
    m = _tiny_model()
    x = RNG.normal(0, 1, (2, 8, 8, 3)).astype(np.float32)
    t = RNG.normal(0, 1, (2, 6, 6, 4)).astype(np.float32)
    mask = np.zeros((2, 6, 6, 4), np.float32)
    mask[:, 1:4, 2:5, :2] = 1
    phi = m(x)["r"].numpy().astype(np.float64)
    want = ((mask * (phi - t)) ** 2).sum(axis=(1, 2, 3)) / ((mask * t) ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(value(O.feature_loss(m, "r", t, mask=mask), x), want, rtol=1e-5)
    np.testing.assert_allclose(value(O.inner_product(m, "r", t), x), -(t * phi).sum(axis=(1, 2, 3)), rtol=1e-5)
    # restricted to problem 1 only: problem 0 contributes nothing
    v = value(O.feature_loss(m, "r", t[1:], problems=[1]), x)
    assert v[0] == 0 and v[1] == pytest.approx(((phi[1] - t[1]) ** 2).sum() / (t[1] ** 2).sum(), rel=1e-5)
    fd_check(O.feature_loss(m, "r", t, mask=mask), x.astype(np.float64), eps=1e-2, rtol=5e-2)
    fd_check(O.inner_product(m, "r", t), x.astype(np.float64), eps=1e-2, rtol=5e-2)


def test_feature_loss_with_the_thesis_dot_product_denominator():
    """The thesis' NormedMSELoss: Σ(t − r)² / Σ(t·r), r the current features (mv2016 §9.1), value and gradient."""
    m = _tiny_model()
    x = RNG.normal(0, 1, (2, 8, 8, 3)).astype(np.float32)
    phi = m(x)["r"].numpy().astype(np.float64)
    t = (phi + RNG.normal(0, 0.3, phi.shape)).astype(np.float32)      # a target the dot product keeps positive
    want = ((phi - t) ** 2).sum(axis=(1, 2, 3)) / (t * phi).sum(axis=(1, 2, 3))
    term = O.feature_loss(m, "r", t, normalise="dot")
    np.testing.assert_allclose(value(term, x), want, rtol=1e-5)
    assert not np.allclose(value(term, x), value(O.feature_loss(m, "r", t), x), rtol=1e-3)   # not ‖t‖²
    fd_check(term, x.astype(np.float64), eps=1e-2, rtol=5e-2)
    with pytest.raises(ValueError, match="'dot'"):
        O.feature_loss(m, "r", t, normalise="sum")


def test_objective_algebra_weights_and_reporting():
    x = RNG.normal(0, 1, (3, 4, 4, 3)).astype(np.float32)
    w = np.array([1.0, 0.0, 2.0])
    obj = 0.5 * O.tv(2) + w * O.alpha_norm(2) - O.alpha_norm(4)
    loss, vals = obj(Context(tf.constant(x)))
    tv, a2, a4 = tv_numpy(x, 2), (x.astype(np.float64) ** 2).sum((1, 2, 3)), (x.astype(np.float64) ** 4).sum((1, 2, 3))
    np.testing.assert_allclose(loss.numpy(), 0.5 * tv + w * a2 - a4, rtol=1e-5)
    assert set(vals) == {"tv2", "alpha_norm2", "alpha_norm4"}
    np.testing.assert_allclose(vals["alpha_norm2"].numpy(), a2, rtol=1e-5)   # reported unweighted


def test_colour_norm_projection():
    x = np.zeros((1, 1, 3, 3), np.float32)
    x[0, 0, 0] = [300, 400, 0]        # norm 500 -> 160
    x[0, 0, 1] = [10, 0, 0]           # inside, untouched
    y = transforms.project_colour_norm(tf.constant(x), 160.0).numpy()
    np.testing.assert_allclose(y[0, 0, 0], [96, 128, 0], rtol=1e-6)
    np.testing.assert_array_equal(y[0, 0, 1:], x[0, 0, 1:])


def test_jitter_windows_offsets_and_masks():
    n, size, t = 2, 4, [3, 1]
    init = np.arange(n * 6 * 6 * 3, dtype=np.float32).reshape(n, 6, 6, 3)
    c = transforms.Jitter(size, t, n)
    off = tf.constant([[2, 1], [0, 0]])
    win = c.window(tf.constant(init), off).numpy()
    np.testing.assert_array_equal(win[0], init[0, 2:6, 1:5])
    np.testing.assert_array_equal(win[1], init[1, 0:4, 0:4])
    seen = set()
    for step in range(200):
        o = c.offsets(True, [0, step]).numpy()
        assert o[1].tolist() == [0, 0]                # T = 1: never moves
        seen.add(tuple(o[0]))
    assert seen == {(a, b) for a in range(3) for b in range(3)}    # T = 3: all 9 offsets, nothing else
    assert c.offsets(False, [0, 0]).numpy().tolist() == [[1, 1], [0, 0]]   # centre (T-1)//2 without jitter
    m_on, m_off = c.mask(True).numpy()[..., 0], c.mask(False).numpy()[..., 0]
    assert m_on[0].sum() == 36 and m_on[1].sum() == 16 and m_on[1, :4, :4].all()
    assert m_off[0].sum() == 16 and m_off[0, 1:5, 1:5].all()


def _one_step(opt, x, g, lr, reset, slots=None, step=0):
    slots = slots or {k: tf.constant(v) for k, v in opt.slots(x.shape).items()}
    return opt.update(tf.constant(x), tf.constant(g), slots, tf.constant(lr), tf.constant(reset), tf.constant(step))


def test_momentum_update_and_reset():
    x, g = np.array([1.0, -2.0], np.float32), np.array([0.5, 0.25], np.float32)
    opt = optim.Momentum(0.9)
    m_prev = {"m": tf.constant([1.0, 1.0])}
    x1, s1 = _one_step(opt, x, g, 0.1, False, m_prev)
    np.testing.assert_allclose(s1["m"], 0.9 * 1.0 - 0.1 * g, rtol=1e-6)
    np.testing.assert_allclose(x1, x + 0.9 - 0.1 * g, rtol=1e-6)
    x2, s2 = _one_step(opt, x, g, 0.1, True, m_prev)           # lr changed: momentum zeroed first
    np.testing.assert_allclose(x2, x - 0.1 * g, rtol=1e-6)
    x3, _ = _one_step(optim.Momentum(0.9, reset_on_change=False), x, g, 0.1, True, m_prev)
    np.testing.assert_allclose(x3, x1, rtol=1e-6)


def test_adagrad_momentum_update_and_its_state_at_a_stage_change():
    x, g = np.array([1.0, -2.0], np.float32), np.array([0.5, -3.0], np.float32)
    slots = {"m": tf.constant([0.2, 0.2]), "G": tf.constant([4.0, 1.0])}
    eta = 50.0
    x0, s0 = _one_step(optim.AdaGradMomentum(0.9), x, g, eta, False, slots)          # within a stage
    G = 0.9 * np.array([4.0, 1.0]) + g ** 2
    np.testing.assert_allclose(s0["G"], G, rtol=1e-6)
    np.testing.assert_allclose(x0, x + 0.9 * 0.2 - g / (1 / eta + np.sqrt(G)), rtol=1e-6)
    x1, s1 = _one_step(optim.AdaGradMomentum(0.9), x, g, eta, True, slots)           # default: fresh G and m
    np.testing.assert_allclose(s1["G"], g ** 2, rtol=1e-6)
    np.testing.assert_allclose(x1, x - g / (1 / eta + np.abs(g)), rtol=1e-6)
    x2, s2 = _one_step(optim.AdaGradMomentum(0.9, reset_accumulator=False), x, g, eta, True, slots)   # G kept
    np.testing.assert_allclose(s2["G"], G, rtol=1e-6)
    np.testing.assert_allclose(x2, x - g / (1 / eta + np.sqrt(G)), rtol=1e-6)         # m zeroed either way


@pytest.mark.parametrize("reset_accumulator", [True, False])
def test_adagrad_momentum_two_stages_against_numpy(reset_accumulator):
    """M&V 2016's two stages through the engine: m is zeroed at the change and G restarts (the released code's two
    chained calls, the default) or is kept (``reset_accumulator=False``), against the update written in numpy."""
    a = RNG.uniform(0.5, 5, (2, 3, 3, 3)).astype(np.float32)
    c = RNG.normal(0, 5, (2, 3, 3, 3)).astype(np.float32)
    etas = [50.0] * 4 + [5.0] * 3
    sched = optim.Schedule([optim.Stage(4, 50.0), optim.Stage(3, 5.0, jitter=False)])
    opt = optim.AdaGradMomentum(0.9, reset_accumulator=reset_accumulator)
    engine = Optimization(Quadratic(a, c), param.Pixels(np.zeros_like(c)), opt, sched).run(progress=False).images
    x, m, G = np.zeros(c.shape), np.zeros(c.shape), np.zeros(c.shape)
    for t, eta in enumerate(etas):
        if t == 4:                                          # the stage change
            m = np.zeros(c.shape)
            G = np.zeros(c.shape) if reset_accumulator else G
        g = 2 * a * (x - c)
        G = 0.9 * G + g ** 2
        m = 0.9 * m - g / (1 / eta + np.sqrt(G))
        x = x + m
    np.testing.assert_allclose(engine, x, rtol=1e-4, atol=1e-4)
    other = Optimization(Quadratic(a, c), param.Pixels(np.zeros_like(c)),
                         optim.AdaGradMomentum(0.9, reset_accumulator=not reset_accumulator), sched)
    assert np.abs(other.run(progress=False).images - engine).max() > 1e-2       # the choice matters


@pytest.mark.parametrize("form", ["tf1", "paper"])
def test_adam_update_two_steps(form):
    x, eps, lr = np.array([1.0, -2.0], np.float32), 1e-3, 0.1
    g1, g2 = np.array([0.5, -1e-4], np.float32), np.array([0.1, 1e-4], np.float32)
    opt = optim.Adam(0.9, 0.999, eps, epsilon_form=form)
    x1, s1 = _one_step(opt, x, g1, lr, True, step=0)
    x2, _ = _one_step(opt, x1.numpy(), g2, lr, False, s1, step=1)
    m, v, xr = np.zeros(2), np.zeros(2), x.astype(np.float64)
    for t, g in ((1, g1), (2, g2)):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g ** 2
        if form == "tf1":
            xr = xr - lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + eps)
        else:
            xr = xr - lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + eps)
    np.testing.assert_allclose(x2, xr, rtol=1e-5)


def test_schedule_arrays_and_scaling():
    s = optim.Schedule([optim.Stage(100, 4e-3), optim.Stage(200, 4e-4), optim.Stage(100, 4e-5)])
    lr, reset, _ = s.arrays()
    assert s.total == 400 and np.flatnonzero(reset).tolist() == [0, 100, 300]
    assert lr[99] == np.float32(4e-3) and lr[100] == np.float32(4e-4) and lr[399] == np.float32(4e-5)
    assert [st.steps for st in s.scaled(40).stages] == [10, 20, 10]


@pytest.mark.parametrize("steps,counts", [(1, [0, 1, 0]), (2, [1, 1, 0]), (3, [1, 1, 1]), (400, [100, 200, 100]),
                                          (1000, [250, 500, 250])])
def test_schedule_scaled_runs_exactly_the_steps_asked_and_names_dropped_stages(steps, counts, capsys):
    """M&V 2015's 100/200/100 scaled to N: the stage boundaries 100·N/400 and 300·N/400 rounded (halves up), so the
    run is exactly N steps, each stage within one step of its share; a stage left with none is dropped and named."""
    lrs = [4e-3, 4e-4, 4e-5]
    s = optim.Schedule([optim.Stage(100, lrs[0]), optim.Stage(200, lrs[1]), optim.Stage(100, lrs[2])])
    scaled = s.scaled(steps)
    printed = "".join(capsys.readouterr())
    assert scaled.total == steps
    assert [(st.steps, st.lr) for st in scaled.stages] == [(c, lr) for c, lr in zip(counts, lrs) if c]
    assert all(abs(c - share) < 1 for c, share in zip(counts, np.array([100, 200, 100]) * steps / 400))
    for i, c in enumerate(counts):
        named = f"stage {i + 1} of 3 ({[100, 200, 100][i]} steps at lr {lrs[i]:g}) rounds to 0 steps and is dropped"
        assert (named in printed) == (c == 0), printed
    run = Optimization(Quadratic(np.ones((1, 2, 2, 3), np.float32), np.zeros((1, 2, 2, 3), np.float32)),
                       param.Pixels(np.ones((1, 2, 2, 3), np.float32)), optim.SGD(), scaled)
    assert run.run(progress=False).steps == steps
    with pytest.raises(ValueError, match="positive whole number"):
        s.scaled(0)


class Quadratic(O.Term):
    """Σ a·(x − c)²: minimum at c."""
    name = "quadratic"

    def __init__(self, a, c):
        self.a, self.c = tf.constant(a), tf.constant(c)
        super().__init__()

    def value(self, ctx):
        return tf.reduce_sum(self.a * tf.square(ctx.image - self.c), axis=[1, 2, 3])


def test_lbfgs_finds_quadratic_minimum_batched():
    a = RNG.uniform(0.5, 50, (2, 4, 4, 3)).astype(np.float32)   # badly conditioned
    c = RNG.normal(0, 5, (2, 4, 4, 3)).astype(np.float32)
    canvas = param.Pixels(np.zeros((2, 4, 4, 3), np.float32))
    run = Optimization(Quadratic(a, c), canvas, optim.LBFGS(restart_every=100), optim.Schedule([optim.Stage(100, 1.0)]))
    res = run.run(progress=False)
    np.testing.assert_allclose(res.images, c, atol=1e-3)
    # projected variant: the constraint is respected
    canvas = param.Pixels(np.zeros((2, 4, 4, 3), np.float32))
    run = Optimization(Quadratic(a, c), canvas, optim.LBFGS(restart_every=20), optim.Schedule([optim.Stage(60, 1.0)]),
                       project=lambda x: transforms.project_colour_norm(x, 2.0))
    res = run.run(progress=False)
    assert np.sqrt((res.images ** 2).sum(-1)).max() <= 2.0 + 1e-4


def _inversion(n_images=2, steps=30, seed=0, out=None, stop_after=None, resume=False, jitter=1, initial=None):
    m = _tiny_model(1)
    rng = np.random.default_rng(42)
    x0 = rng.normal(0, 20, (n_images, 8, 8, 3)).astype(np.float32)
    tgt = m(x0)["r"].numpy()
    obj = O.feature_loss(m, "r", tgt) + 1e-6 * O.tv(2)
    init = param.init_mv2015(n_images, 8 + jitter - 1, 10.0, seed)
    sched = optim.Schedule([optim.Stage(steps // 2, 2.0), optim.Stage(steps - steps // 2, 0.5)])
    run = Optimization(obj, param.Pixels(init), optim.Adam(), sched, jitter=transforms.Jitter(8, jitter, n_images),
                       seed=seed, log_every=5)
    if initial is not None:
        initial.update(run.evaluate()[1])
    return run, run.run(out=out, progress=False, stop_after=stop_after, resume=resume, checkpoint_every=5)


def test_small_inversion_converges():
    initial = {}
    run, res = _inversion(steps=30, initial=initial)
    assert initial["feature/r"].min() > 0.5
    assert (res.values["feature/r"] < initial["feature/r"] / 10).all(), (initial, res.values)


def test_batched_equals_separate():
    m = _tiny_model(2)
    x0 = np.random.default_rng(3).normal(0, 20, (3, 8, 8, 3)).astype(np.float32)
    tgt = m(x0)["r"].numpy()
    init = param.init_mv2015(3, 8, 10.0, 0)
    sched = optim.Schedule([optim.Stage(10, 1.0), optim.Stage(5, 0.1)])

    def solve(idx):
        obj = O.feature_loss(m, "r", tgt[idx]) + np.array([1e-4, 1e-5, 1e-6])[idx] * O.tv(2)
        run = Optimization(obj, param.Pixels(init[idx]), optim.Momentum(0.9), sched)
        return run.run(progress=False).images

    together = solve([0, 1, 2])
    for i in range(3):
        np.testing.assert_allclose(together[i], solve([i])[0], rtol=1e-4, atol=1e-3)


def test_resume_equals_uninterrupted(tmp_path):
    _, full = _inversion(steps=20, jitter=3, out=tmp_path / "a")
    _, part = _inversion(steps=20, jitter=3, out=tmp_path / "b", stop_after=8)
    assert part.steps == 11                                # stopped at the log point after step 8
    _, resumed = _inversion(steps=20, jitter=3, out=tmp_path / "b", resume=True, seed=0)
    assert resumed.steps == 20 and resumed.steps_run == 9
    np.testing.assert_allclose(resumed.images, full.images, rtol=1e-5, atol=1e-4)


def test_stretch_is_joint_min_max():
    img = np.array([[[-10.0, 0.0, 30.0]]])
    np.testing.assert_allclose(stretch(img), [[[0.0, 0.25, 1.0]]])


def test_results_of_batches_concatenate_like_one_batch():
    """Several batches run one after another (reproductions.common.optimise) report as one: problems in order, a
    term missing from a batch is 0 there (as a restricted term is in one batch), history losses weighted by size."""
    from tfrestore.optimize.engine import Result
    a = Result(images=np.zeros((2, 4, 4, 3)), values={"feature/conv1": np.array([1.0, 2.0]), "tv2": np.array([3.0, 4.0])},
               loss=np.array([1.0, 2.0]), history=[{"step": 1, "loss": 1.5, "lr": 0.1}], steps=5, seconds=2.0,
               steps_run=5, saved_iterate=np.zeros((2, 4, 4, 3)), saved_step=1, seconds_total=2.0)
    b = Result(images=np.ones((1, 4, 4, 3)), values={"feature/relu3": np.array([7.0]), "tv2": np.array([5.0])},
               loss=np.array([4.0]), history=[{"step": 1, "loss": 4.0, "lr": 0.1}], steps=5, seconds=1.0,
               steps_run=5, saved_iterate=np.ones((1, 4, 4, 3)), saved_step=1, seconds_total=1.0)
    r = Result.concatenate([a, b])
    np.testing.assert_array_equal(r.values["feature/conv1"], [1, 2, 0])
    np.testing.assert_array_equal(r.values["feature/relu3"], [0, 0, 7])
    np.testing.assert_array_equal(r.values["tv2"], [3, 4, 5])
    np.testing.assert_array_equal(r.loss, [1, 2, 4])
    assert r.images.shape == (3, 4, 4, 3) and r.images[2].max() == 1 and r.saved_iterate.shape == (3, 4, 4, 3)
    assert r.history == [{"step": 1, "loss": pytest.approx((1.5 * 2 + 4.0) / 3), "lr": 0.1}]
    assert r.seconds == 3.0 and r.steps == 5 and r.seconds_per_step == pytest.approx(3.0 / 5)
