"""Patch priors: whitening, energies, score matching, training (recovery, resume, two devices), use in inversion."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfrestore.optimize import objectives as O
from tfrestore.optimize import optim, param
from tfrestore.optimize.engine import Optimization
from tfrestore.priors import PriorTerm, unrolled_descent
from tfrestore.priors import catalogue, whitening as W
from tfrestore.priors.model import PatchPrior, PriorConfig
from tfrestore.priors.patches import Prepared, extract, prepare
from tfrestore.priors.train import PriorTrainer, TrainConfig, learning_rates

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def _data(t=3000, c=2, p=9, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(c * p, c * p))
    return rng.laplace(size=(t, c * p)) @ mix.T + rng.normal(3, 1, c * p)


@pytest.mark.parametrize("mean", ["gc", "gf", "lc", "lf", "none"])
@pytest.mark.parametrize("sdev", ["gc", "gf", "lf", 2.0, "none"])
@pytest.mark.parametrize("mode", ["pca", "zca"])
def test_whitening_gives_identity_second_moment(mean, sdev, mode):
    x = _data()
    chunks = lambda: np.array_split(x, 7)
    norm = W.fit_normalisation(chunks, 2, 9, mean, sdev)
    z = norm.apply(x)
    n_white = {"lc": 16, "lf": 17}.get(mean, 17) if mode == "pca" else None   # local centring lowers the rank
    if mean in ("lc", "lf") and mode == "zca":     # ... which ZCA cannot drop (it floors those directions)
        pytest.skip("rank-deficient data: use PCA with n_white < D")
    streamed = W.second_moment(np.array_split(z, 5))
    np.testing.assert_allclose(streamed, z.T @ z / (len(z) - 1), rtol=1e-10, atol=1e-12)   # chunks = all at once
    wh = W.fit_whitening(streamed, mode, n_white)
    zw = z @ wh.whiten.T
    np.testing.assert_allclose(zw.T @ zw / (len(zw) - 1), np.eye(wh.n_white), atol=1e-6)
    if mode == "pca":        # the n_white largest eigen-directions are kept (the smallest dropped), per numpy
        lam, vec = np.linalg.eigh(z.T @ z / (len(z) - 1))
        kept = vec[:, -wh.n_white:]
        np.testing.assert_allclose(np.abs(wh.whiten @ kept), np.diag(1 / np.sqrt(lam[-wh.n_white:])), atol=1e-6)


def test_normalisation_statistics_against_numpy():
    x = _data()
    norm = W.fit_normalisation(lambda: np.array_split(x, 3), 2, 9, "gc", "gc")
    r = x.reshape(-1, 2, 9)
    mean_c = r.mean(axis=(0, 2))
    np.testing.assert_allclose(norm.mean, np.repeat(mean_c, 9))
    std_c = (r - mean_c[None, :, None]).std(axis=0).mean(axis=1)    # the thesis: mean of per-position stds
    np.testing.assert_allclose(norm.sdev, np.repeat(std_c, 9))
    np.testing.assert_allclose(norm.apply(x), (x - norm.mean) / norm.sdev)
    np.testing.assert_allclose(norm.apply(x, legacy_uncentred=True), x / norm.sdev)   # the thesis' bug, on request
    lf = W.fit_normalisation(lambda: [x], 2, 9, "lf", "lf").apply(x)
    np.testing.assert_allclose(lf.mean(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose(lf.std(axis=1), 1, atol=1e-6)


def _prior(expert="student", mean="gc", sdev="gc", kind="full", seed=1, patch=3, channels=2, k=5, n_white=17):
    x = _data(c=channels, p=patch * patch)
    norm = W.fit_normalisation(lambda: [x], channels, patch * patch, mean, sdev)
    wh = W.fit_whitening(W.second_moment([norm.apply(x)]), "pca", n_white)
    cfg = PriorConfig(patch=patch, channels=channels, components=k, n_white=n_white, expert=expert, mean_mode=mean,
                      sdev_mode=sdev, kind=kind)
    prior = PatchPrior(cfg, norm, wh, seed=seed)
    prior.w.assign(np.random.default_rng(seed).normal(size=prior.w.shape).astype(np.float32))
    return prior, norm, wh


def _rho(y, expert):
    return np.log1p(0.5 * y ** 2) if expert == "student" else np.log(np.cosh(y))


def _numpy_energy(prior, norm, wh, img, pad):
    """Mean patch energy by an explicit loop over patches (float64)."""
    p, c = prior.config.patch, prior.config.channels
    if pad:
        img = np.pad(img, (((p - 1) // 2, p // 2), ((p - 1) // 2, p // 2), (0, 0)), mode="reflect")
    w = prior.w.numpy().astype(np.float64)
    w = w / np.linalg.norm(w, axis=0)
    alpha = np.log1p(np.exp(prior.a.numpy().astype(np.float64)))
    es = []
    for y in range(img.shape[0] - p + 1):
        for x in range(img.shape[1] - p + 1):
            patch = img[y:y + p, x:x + p].transpose(2, 0, 1).reshape(1, -1)
            yk = (norm.apply(patch) @ wh.whiten.T) @ w
            es.append((alpha * _rho(yk, prior.config.expert)).sum())
    return float(np.mean(es))


@pytest.mark.parametrize("expert", ["student", "logistic"])
@pytest.mark.parametrize("modes", [("gc", "gc"), ("gf", "gf"), ("lf", "none"), ("lc", "lf")])
def test_energy_against_numpy_and_finite_differences(expert, modes):
    prior, norm, wh = _prior(expert, *modes, n_white=16 if modes[0] == "lc" else 17)   # lc: rank D − C
    img = RNG.normal(3, 2, (1, 6, 7, 2))
    pad = modes != ("gc", "gc") and modes != ("gf", "gf")        # global modes: VALID conv; others reflect-padded
    e_tf = float(prior.energy(img.astype(np.float32))[0])
    assert e_tf == pytest.approx(_numpy_energy(prior, norm, wh, img[0], pad), rel=1e-4)
    xt = tf.Variable(img.astype(np.float32))
    with tf.GradientTape() as tape:
        e = tf.reduce_sum(prior.energy(xt))
    g = tape.gradient(e, xt).numpy()
    for idx in [(0, 2, 3, 1), (0, 0, 0, 0), (0, 5, 6, 1)]:
        d = np.zeros_like(img)
        d[idx] = 1e-4
        num = (_numpy_energy(prior, norm, wh, (img + d)[0], pad) - _numpy_energy(prior, norm, wh, (img - d)[0], pad)) / 2e-4
        assert num == pytest.approx(g[idx], rel=2e-2, abs=1e-4)


def test_valid_convolution_equals_the_patch_path_on_interior_patches():
    prior, _, _ = _prior("student", "gc", "gc", patch=4)
    img = tf.constant(RNG.normal(3, 2, (2, 9, 8, 2)), tf.float32)
    conv = prior.energy(img, path="conv").numpy()
    pt = prior._normalise(prior._patches(img))                     # every pixel's patch, reflect-padded
    y = tf.einsum("nhwd,dk->nhwk", pt, prior.mixing())
    e = prior.patch_energy(y).numpy()
    lo = (4 - 1) // 2                                              # pixel i's patch starts at i − lo
    interior = e[:, lo:lo + 9 - 3, lo:lo + 8 - 3]
    np.testing.assert_allclose(conv, interior.mean(axis=(1, 2)), rtol=1e-5)
    assert not np.allclose(conv, prior.energy(img, path="patches").numpy(), rtol=1e-3)   # the border does count there


def test_channelwise_and_dropout_energies():
    x = _data(c=2, p=4)
    norm = W.fit_normalisation(lambda: [x], 2, 4, "none", "none")
    z = norm.apply(x).reshape(-1, 2, 4)
    whs = [W.fit_whitening(W.second_moment([z[:, c]]), "zca") for c in range(2)]
    cfg = PriorConfig(patch=2, channels=2, components=3, n_white=4, expert="logistic", mean_mode="none",
                      sdev_mode="none", whiten_mode="zca", kind="channelwise")
    prior = PatchPrior(cfg, norm, whs, seed=0)
    img = RNG.normal(size=(1, 5, 5, 2))
    padded = np.pad(img[0], ((0, 1), (0, 1), (0, 0)), mode="reflect")
    w = prior.filters().numpy()
    alpha = np.log1p(np.exp(prior.a.numpy()))
    total = 0.0
    for yy in range(5):
        for xx in range(5):
            for c in range(2):
                v = padded[yy:yy + 2, xx:xx + 2, c].reshape(-1) @ whs[c].whiten.T @ w[c]
                total += (alpha[c] * np.log(np.cosh(v))).sum()
    assert float(prior.energy(img)[0]) == pytest.approx(total / (2 * 3), rel=1e-4)   # Σ patches / (C·K)
    assert float(prior.energy(img, path="patches")[0]) == pytest.approx(total / (2 * 3), rel=1e-4)
    drop, _, _ = _prior(kind="dropout")
    masks = np.array([[1, 1, 1, 1, 1], [2, 0, 2, 0, 2], [0, 0, 0, 0, 0]], np.float32)
    img = RNG.normal(3, 2, (3, 6, 6, 2)).astype(np.float32)
    ens = drop.energy(img, mask=masks).numpy()                     # an ensemble of masks: [E, N]
    assert ens.shape == (3, 3)
    np.testing.assert_allclose(ens[0], drop.energy(img).numpy(), rtol=1e-5)          # all kept, none scaled
    np.testing.assert_allclose(ens[1], drop.energy(img, mask=masks[1]).numpy(), rtol=1e-5)
    assert np.all(ens[2] == 0) and np.all(ens[1] > 0)


@pytest.mark.parametrize("modes", [("gc", "gc"), ("gf", "gf"), ("none", 2.0), ("lf", "lf")])
def test_channelwise_energy_by_depthwise_convolution_equals_the_gathered_patches(modes):
    x = _data(c=3, p=9)
    norm = W.fit_normalisation(lambda: [x], 3, 9, *modes)
    z = norm.apply(x).reshape(-1, 3, 9)
    n_white = 8 if modes[0] == "lf" else 9                        # per-patch centring lowers each channel's rank
    whs = [W.fit_whitening(W.second_moment([z[:, c]]), "pca", n_white) for c in range(3)]
    cfg = PriorConfig(patch=3, channels=3, components=4, n_white=n_white, mean_mode=modes[0], sdev_mode=modes[1],
                      kind="channelwise")
    prior = PatchPrior(cfg, norm, whs, seed=0)
    img = RNG.normal(3, 2, (2, 7, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(prior.energy(img).numpy(), prior.energy(img, path="patches").numpy(), rtol=1e-4)
    if modes[0] == "lf":
        with pytest.raises(ValueError, match="per-feature normalisation"):
            prior.energy(img, path="conv")


def _sm_numpy(xw, w, alpha, expert, legacy=False):
    w = w / np.linalg.norm(w, axis=0)
    y = xw @ w
    if expert == "student":
        gy, gp = -2 * y / (y ** 2 + 2), 2 * (y ** 2 - 2) / (y ** 2 + 2) ** 2
    else:
        gy, gp = -np.tanh(y), -4 / (np.exp(y) + np.exp(-y)) ** 2
    first = alpha.sum() * gp.mean(0).sum() if legacy else (alpha * gp.mean(0)).sum()
    second = 0.5 * sum(alpha[j] * alpha[k] * (w[:, j] @ w[:, k]) * np.mean(gy[:, j] * gy[:, k])
                       for j in range(w.shape[1]) for k in range(w.shape[1]))
    return first + second


@pytest.mark.parametrize("expert", ["student", "logistic"])
def test_score_matching_against_numpy_and_the_broadcast_flag(expert):
    prior, _, _ = _prior(expert)
    xw = RNG.normal(size=(40, 17))
    w, alpha = prior.w.numpy().astype(np.float64), np.log1p(np.exp(prior.a.numpy().astype(np.float64)))
    assert float(prior.score_matching_loss(xw)) == pytest.approx(_sm_numpy(xw, w, alpha, expert), rel=1e-4)
    assert float(prior.score_matching_loss(xw, legacy_broadcast=True)) == pytest.approx(
        _sm_numpy(xw, w, alpha, expert, legacy=True), rel=1e-4)
    # a hand-computed case: W = I (K = 2), α = (1, 3), one sample y = (0, 0): g′(0) = −1 (Student-t and log-cosh)
    # correct first term 1·(−1) + 3·(−1) = −4; the broadcast's (1 + 3)·(−1 − 1) = −8; second term 0 (g(0) = 0)
    cfg = PriorConfig(patch=1, channels=2, components=2, n_white=2, expert=expert, mean_mode="none",
                      sdev_mode="none", whiten_mode="none")
    p = PatchPrior(cfg)
    p.w.assign(np.eye(2, dtype=np.float32))
    p.a.assign(np.log(np.expm1(np.array([1.0, 3.0]))).astype(np.float32))
    assert float(p.score_matching_loss(np.zeros((1, 2)))) == pytest.approx(-4.0, rel=1e-5)
    assert float(p.score_matching_loss(np.zeros((1, 2)), legacy_broadcast=True)) == pytest.approx(-8.0, rel=1e-5)


def _hyvarinen_fd(x, filters, alpha, expert, eps=1e-3):
    """Hyvärinen's objective of log p(x) = −Σ_k α_k ρ(f_kᵀx) + const, straight from its definition (no closed
    form): J = mean_t [Σ_i ∂²log p/∂x_i² + ½ ‖∇ log p‖²], both derivatives by central finite differences."""
    x = np.asarray(x, np.float64)
    logp = lambda z: -(alpha * _rho(z @ filters, expert)).sum(axis=1)          # noqa: E731
    f0, lap, grad_sq = logp(x), 0.0, 0.0
    for i in range(x.shape[1]):
        e = np.zeros(x.shape[1])
        e[i] = eps
        fp, fm = logp(x + e), logp(x - e)
        lap = lap + (fp - 2 * f0 + fm) / eps ** 2
        grad_sq = grad_sq + ((fp - fm) / (2 * eps)) ** 2
    return float(np.mean(lap + 0.5 * grad_sq))


@pytest.mark.parametrize("expert", ["student", "logistic"])
def test_dropout_score_matching_is_hyvarinens_objective_of_the_masked_model(expert):
    """The masked model's filters are m_k·w_k (m ∈ {0, 2}): its objective, by finite differences of its own
    log-density, equals the loss with the mask — a dropped column contributes nothing, a kept one with ‖2w‖² = 4."""
    prior, _, _ = _prior(expert, kind="dropout", k=6, n_white=7, patch=2, channels=2)
    xw = RNG.normal(size=(25, 7))
    w = prior.w.numpy().astype(np.float64)
    w /= np.linalg.norm(w, axis=0)
    alpha = np.log1p(np.exp(prior.a.numpy().astype(np.float64)))
    mask = np.array([2.0, 0.0, 2.0, 2.0, 0.0, 2.0])
    masked = float(prior.score_matching_loss(xw, mask=mask))
    assert masked == pytest.approx(_hyvarinen_fd(xw, w * mask, alpha, expert), rel=1e-4)
    kept = mask > 0                                   # the same as a prior of the kept columns, doubled
    assert masked == pytest.approx(_hyvarinen_fd(xw, 2 * w[:, kept], alpha[kept], expert), rel=1e-4)
    assert float(prior.score_matching_loss(xw)) == pytest.approx(_hyvarinen_fd(xw, w, alpha, expert), rel=1e-4)
    # the thesis' broadcast (spec §9 item 2) on the masked responses stays available
    y = xw @ (w * mask)
    if expert == "student":
        gy, gp = -2 * y / (y ** 2 + 2), 2 * (y ** 2 - 2) / (y ** 2 + 2) ** 2
    else:
        gy, gp = -np.tanh(y), -1 / np.cosh(y) ** 2
    score = (alpha * gy) @ (w * mask).T
    legacy = alpha.sum() * gp.sum(axis=1).mean() + 0.5 * np.mean((score ** 2).sum(axis=1))
    assert float(prior.score_matching_loss(xw, legacy_broadcast=True, mask=mask)) == pytest.approx(legacy, rel=1e-4)


def test_dropout_masks_are_seeded_42_fresh_per_step_and_reproducible():
    """Test-time dropout (spec §4.4: keep 0.5, ×2, op seed 42): the mask of step t is the stateless draw keyed
    by (42, t) — the same on every call, another at the next step."""
    prior, _, _ = _prior(kind="dropout", k=40)
    prior.config = dataclasses.replace(prior.config, dropout_test=True)
    img = RNG.normal(3, 2, (2, 6, 6, 2)).astype(np.float32)
    for step in (0, 7):
        keep = tf.random.stateless_uniform([40], seed=[42, step]).numpy() < 0.5
        reference = prior.energy(img, mask=np.where(keep, 2.0, 0.0)).numpy()
        np.testing.assert_allclose(prior.energy(img, step=step).numpy(), reference, rtol=1e-6)
        np.testing.assert_array_equal(prior.energy(img, step=step).numpy(), prior.energy(img, step=step).numpy())
    assert not np.allclose(prior.energy(img, step=0).numpy(), prior.energy(img, step=1).numpy())
    masks = np.stack([prior.dropout_mask([42, t]).numpy() for t in range(50)])
    assert set(np.unique(masks)) == {0.0, 2.0} and abs(masks.mean() - 1.0) < 0.05       # keep 0.5, survivors ×2


def _ica_setup(d=6, t=12000, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.laplace(size=(t, d))
    a = rng.normal(size=(d, d))
    x = s @ a.T
    cfg = PriorConfig(patch=1, channels=d, components=d, n_white=d, expert="logistic", mean_mode="none",
                      sdev_mode="none", whiten_mode="pca")
    norm = W.fit_normalisation(lambda: [x], d, 1, "none", "none")
    wh = W.fit_whitening(W.second_moment([x]), "pca", d)
    xw = (x @ wh.whiten.T).astype(np.float32)
    return cfg, Prepared(norm, wh, xw[:10000], xw[10000:]), x, s


def test_training_recovers_a_known_ica_model():
    from scipy.optimize import linear_sum_assignment
    cfg, prepared, x, s = _ica_setup()
    trainer = PriorTrainer(cfg, prepared, TrainConfig(steps=800, batch=500, breakpoints=((0, 0.02),),
                                                      grad_clip=None, val_every=200))
    summary = trainer.run(progress=False)
    y = x @ trainer.prior.mixing().numpy()
    corr = np.abs(np.corrcoef(y.T, s.T)[:6, 6:])
    rows, cols = linear_sum_assignment(-corr)                        # match sign and permutation
    assert corr[rows, cols].min() > 0.9, corr[rows, cols]
    assert summary["final"]["val_loss"] < trainer.history[0]["val_loss"]


def test_learning_rate_breakpoints_act_before_the_step_they_name():
    """Spec §5: the thesis' loop counts steps from 1 and, before step ``count``, takes the next breakpoint (s, lr)
    with s ≤ count — one per step, sorted by step (§9 item 7)."""
    lr = learning_rates(((0, 1.0), (3, 0.1), (3, 0.01), (1, 0.5)), 6)             # hand-traced through the loop
    np.testing.assert_allclose(lr, [1.0, 0.5, 0.1, 0.01, 0.01, 0.01])
    image = learning_rates(catalogue.IMAGE_SCHEDULE, 25000)
    assert (image[9998], image[9999], image[22998], image[22999]) == (1.0, np.float32(0.1), np.float32(1e-4),
                                                                        np.float32(3e-5))
    cfg, prepared, _, _ = _ica_setup(t=11000)
    trainer = PriorTrainer(cfg, prepared, TrainConfig(steps=6, batch=64, breakpoints=((0, 1.0), (3, 0.1), (3, 0.01),
                                                                                      (1, 0.5))))
    for done, expected in ((1, 1.0), (2, 0.5), (3, 0.1), (4, 0.01)):       # the rate the trainer set for step `done`
        trainer._block(tf.constant(done - 1, tf.int64), tf.constant(done, tf.int64))
        assert float(trainer.optimizer.learning_rate.numpy()) == pytest.approx(expected)


def test_training_resumes_exactly(tmp_path):
    cfg, prepared, _, _ = _ica_setup(t=11000)
    tc = TrainConfig(steps=60, batch=64, breakpoints=((0, 0.05), (30, 0.01)), grad_clip=0.5, val_every=10,
                     checkpoint_every=10)
    full = PriorTrainer(cfg, prepared, tc)
    full.run(tmp_path / "a", progress=False)
    cut = PriorTrainer(cfg, prepared, tc)
    cut.run(tmp_path / "b", progress=False, stop_after=30)
    again = PriorTrainer(cfg, prepared, tc)
    again.run(tmp_path / "b", progress=False, resume=True)
    assert int(again.step.numpy()) == 60
    for a, b in zip(full.prior.weights, again.prior.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_distributed_step_on_two_logical_cpus_equals_one_device():
    code = r"""
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import sys; sys.path.insert(0, "tests")
from test_priors import _ica_setup
from tfrestore.priors.train import PriorTrainer, TrainConfig, learning_rates
cfg, prepared, _, _ = _ica_setup(t=11000)
tc = TrainConfig(steps=5, batch=64, breakpoints=((0, 0.05),), grad_clip=0.01, val_every=5)
one = PriorTrainer(cfg, prepared, tc); one.run(progress=False)
two = PriorTrainer(cfg, prepared, tc, strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
assert two.strategy.num_replicas_in_sync == 2
two.run(progress=False)
for a, b in zip(one.prior.trainable_variables, two.prior.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
print("SAME")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0 and "SAME" in r.stdout, r.stderr[-3000:]


def test_two_phase_inversion_lowers_the_prior_energy_and_unrolled_adam_matches_the_engine():
    prior, _, _ = _prior(patch=3, channels=3, n_white=20, k=8)
    target = RNG.normal(3, 2, (2, 8, 8, 3)).astype(np.float32)
    data = O.image_l2(target)
    sched = optim.Schedule([optim.Stage(150, 0.3), optim.Stage(50, 0.03)])
    phase1 = Optimization(data, param.Pixels(np.zeros_like(target)), optim.Adam(), sched)
    phase1.run(progress=False)
    x1 = phase1.images()
    phase2 = Optimization(data + 500.0 * PriorTerm(prior), param.Pixels(x1), optim.Adam(), sched)   # fresh state
    phase2.run(progress=False)
    e1, e2 = prior.energy(x1).numpy(), prior.energy(phase2.images()).numpy()
    assert (e2 < 0.8 * e1).all(), (e1, e2)
    # n unrolled Adam steps on the weighted energy = n engine steps of Adam on the same energy
    steps, lr = 7, 0.05
    unrolled = unrolled_descent(prior, x1, steps=steps, lr=lr, weight=3.0).numpy()
    engine = Optimization(3.0 * PriorTerm(prior), param.Pixels(x1), optim.Adam(epsilon=1e-8),
                          optim.Schedule([optim.Stage(steps, lr)]))
    engine.run(progress=False)
    np.testing.assert_allclose(unrolled, engine.images(), rtol=1e-4, atol=1e-5)
    x0 = tf.Variable(x1)
    with tf.GradientTape() as tape:                                  # differentiable end to end
        out = unrolled_descent(prior, x0, steps=3, lr=lr, optimizer="sgd")
        loss = tf.reduce_sum(out ** 2)
    assert np.isfinite(tape.gradient(loss, x0).numpy()).all()


def _hand_written_adam(prior, x0, *, steps, lr, weight, beta1=0.9, beta2=0.999, epsilon=1e-8):
    """unrolled_descent's Adam before it used optim.Adam: TF's rule written out in a while_loop (the reference)."""
    def body(t, x, m, v):
        with tf.GradientTape() as tape:
            tape.watch(x)
            e = weight * tf.reduce_sum(prior.energy(x, path="auto"))
        g = tape.gradient(e, x)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * tf.square(g)
        tt = tf.cast(t + 1, tf.float32)
        return t + 1, x - lr * tf.sqrt(1 - beta2 ** tt) / (1 - beta1 ** tt) * m / (tf.sqrt(v) + epsilon), m, v
    x0 = tf.constant(x0)
    zeros = tf.zeros_like(x0)
    return tf.while_loop(lambda t, *_: t < steps, body, (tf.constant(0), x0, zeros, zeros))[1].numpy()


def test_unrolled_descent_takes_optim_adams_steps_bit_for_bit():
    """unrolled_descent steps with tfrestore.optimize.optim.Adam (ε inside the bias correction, TF1's placement): the same
    float32 iterates, bit for bit, as the rule written out by hand; with ε in Kingma & Ba's place they differ."""
    prior, _, _ = _prior(patch=3, channels=3, n_white=20, k=8)
    x0 = RNG.normal(120, 30, (2, 8, 8, 3)).astype(np.float32)
    new = unrolled_descent(prior, x0, steps=5, lr=0.6, weight=2.0).numpy()
    np.testing.assert_array_equal(new, _hand_written_adam(prior, x0, steps=5, lr=0.6, weight=2.0))
    assert not np.array_equal(new, x0)
    other = _hand_written_adam(prior, x0, steps=5, lr=0.6, weight=2.0, epsilon=1e-3)     # the comparison can fail
    assert not np.array_equal(new, other)


def test_patch_file_pipeline_save_load_and_catalogue(tmp_path):
    imgs = [str(tmp_path / f"{i}.npy") for i in range(5)]
    for i, f in enumerate(imgs):
        np.save(f, (np.random.default_rng(i).random((40, 40, 3)) * 255).astype(np.uint8))
    path = extract(tmp_path / "p.h5", image_sources=imgs, patch=4, count=300, val_count=40, image_size=40, seed=1)
    import h5py
    with h5py.File(path) as f:
        assert f["train"].shape == (300, 48) and f["val"].shape == (40, 48)
        assert f.attrs["train_images"] == 4 and f.attrs["val_images"] == 1       # disjoint images
        train, val = f["train"][:], f["val"][:]
    # every patch is a 4×4 window of its images, flattened (c, h, w): training ones of images 0–3, validation of 4
    windows = lambda i: np.lib.stride_tricks.sliding_window_view(                 # noqa: E731
        np.load(imgs[i]).astype(np.float32), (4, 4), axis=(0, 1)).reshape(-1, 48)
    for patches, sources in ((train[:12], range(4)), (val[:4], [4])):
        for p in patches:
            assert any((windows(i) == p).all(axis=1).any() for i in sources)
    cfg = PriorConfig(patch=4, channels=3, components=10, n_white=30)
    a = prepare(path, cfg)
    b = prepare(path, cfg)                                                        # read back from the cache
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_allclose(a.train.T @ a.train / (len(a.train) - 1), np.eye(30), atol=1e-4)
    prior = PatchPrior(cfg, a.normalisation, a.whitening, seed=3)
    prior.save(tmp_path / "prior")
    back = PatchPrior.load(tmp_path / "prior")
    img = np.random.default_rng(0).random((1, 12, 12, 3)).astype(np.float32) * 255
    np.testing.assert_allclose(back.energy(img).numpy(), prior.energy(img).numpy(), rtol=1e-6)
    # the filters shown: unwhitened components (unwhitenᵀ·w_k / ‖w_k‖), by decreasing α, as [K, p, p, C] (numpy)
    w = prior.w.numpy().astype(np.float64)
    w /= np.linalg.norm(w, axis=0)
    alpha = np.log1p(np.exp(prior.a.numpy().astype(np.float64)))
    order = np.argsort(-alpha)
    expected = (a.whitening.unwhiten.T @ w).T[order].reshape(10, 3, 4, 4).transpose(0, 2, 3, 1)
    imgs, alphas = back.filter_images()
    np.testing.assert_allclose(imgs, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(alphas, alpha[order], rtol=1e-5)


def test_tv_prior_is_total_variation_usable_as_a_prior_and_not_trained():
    """The catalogue's tv_prior (spec §6: TV β 2): Σ over pixels and channels of the squared forward differences,
    zero past the last row / column (the thesis' TotalVariationLoss), usable wherever a learned prior is."""
    tv = catalogue.get("tv_prior", "alexnet")
    x = RNG.normal(size=(2, 5, 6, 4))
    dh = np.concatenate([x[:, 1:] - x[:, :-1], np.zeros_like(x[:, :1])], axis=1)
    dw = np.concatenate([x[:, :, 1:] - x[:, :, :-1], np.zeros_like(x[:, :, :1])], axis=2)
    expected = (dh ** 2 + dw ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(tv.energy(x.astype(np.float32)).numpy(), expected, rtol=1e-5)
    from tfrestore.optimize.objectives import Context
    term = PriorTerm(tv, problems=[1])                   # as an objective term, on some problems
    np.testing.assert_allclose(term.value(Context(tf.constant(x, tf.float32))).numpy(), [0.0, expected[1]], rtol=1e-5)
    smoothed = unrolled_descent(tv, x.astype(np.float32), steps=3, lr=0.1, optimizer="sgd")
    assert (tv.energy(smoothed).numpy() < expected).all()
    for refuse in (lambda: catalogue.train("tv_prior", "alexnet"), lambda: catalogue.trained_entry("tv_prior")):
        with pytest.raises(ValueError, match="nothing to train"):
            refuse()
    with pytest.raises(ValueError, match="valid priors: full512"):
        catalogue.entry("tv")


def test_separable_prior_is_a_depthwise_then_pointwise_convolution():
    cfg = PriorConfig(patch=3, channels=2, components=4, n_white=18, mean_mode="gc", sdev_mode="gc",
                      whiten_mode="none", kind="separable", dim_multiplier=2)
    x = _data(c=2, p=9)
    norm = W.fit_normalisation(lambda: [x], 2, 9, "gc", "gc")
    prior = PatchPrior(cfg, norm, seed=4)
    img = tf.constant(RNG.normal(3, 2, (2, 7, 6, 2)), tf.float32)
    z = (img - norm.mean[::9].astype(np.float32)) / norm.sdev[::9].astype(np.float32)   # gc: per-channel stats
    pw = prior.pointwise.numpy()
    w = prior.filters().numpy()                                   # the combined, unit-norm columns
    raw = np.einsum("pcm,cmk->cpk", prior.depthwise.numpy().reshape(9, 2, 2), pw.reshape(2, 2, 4)).reshape(18, 4)
    norms = np.linalg.norm(raw, axis=0)
    np.testing.assert_allclose(w, raw / norms, rtol=1e-5)
    y = tf.nn.separable_conv2d(z, prior.depthwise, (pw / norms)[None, None], [1, 1, 1, 1], "VALID")
    ref = tf.reduce_mean(prior.patch_energy(y), axis=[1, 2])
    np.testing.assert_allclose(prior.energy(img).numpy(), ref.numpy(), rtol=1e-4)
    # score matching on the combined columns, as for the full prior: Hyvärinen's objective by finite differences
    xw = RNG.normal(size=(30, 18))
    alpha = np.log1p(np.exp(prior.a.numpy().astype(np.float64)))
    assert float(prior.score_matching_loss(xw)) == pytest.approx(
        _hyvarinen_fd(xw, raw / norms, alpha, "student"), rel=1e-4)


def test_prior_term_on_a_tap():
    import keras
    inp = keras.Input((8, 8, 3))
    net = keras.Model(inp, keras.layers.Conv2D(2, 3, name="c")(inp))
    extractor = keras.Model(inp, {"c": net.output})
    prior, _, _ = _prior(patch=3, channels=2)
    from tfrestore.optimize.objectives import Context
    x = RNG.normal(size=(2, 8, 8, 3)).astype(np.float32)
    v = PriorTerm(prior, extractor=extractor, tap="c").value(Context(tf.constant(x)))
    np.testing.assert_allclose(v.numpy(), prior.energy(net(x)).numpy(), rtol=1e-6)


def test_prior_term_restricted_to_some_problems():
    from tfrestore.optimize.objectives import Context
    prior, _, _ = _prior(patch=3, channels=2)
    x = RNG.normal(3, 2, (3, 7, 7, 2)).astype(np.float32)
    v = PriorTerm(prior, problems=[0, 2]).value(Context(tf.constant(x))).numpy()
    full = prior.energy(x).numpy()
    assert v[1] == 0 and v[0] == pytest.approx(full[0], rel=1e-6) and v[2] == pytest.approx(full[2], rel=1e-6)
    assert PriorTerm(prior, problems=[0, 2]).problems is not None       # logs leave problem 1 out
    assert (10.0 * PriorTerm(prior, problems=[0, 2])).applicability(3)["prior"].tolist() == [True, False, True]
