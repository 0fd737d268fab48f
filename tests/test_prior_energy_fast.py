"""The fast prior energy (``PatchPrior.energy(path="fast")``, :func:`tfrestore.priors.model.strip_energy`) against a
straightforward formulation written here: every pixel's patch gathered by slicing (reflect-padded, or only the
interior patches for global normalisation), flattened in (c, h, w) order, normalised as the spec's table says,
multiplied by the mixing matrix and summed through the expert — in float64, differentiated by TensorFlow. Its value
must agree to float32 tolerance (1e-5 relative) and so must its gradient in the map; the gradient in the prior's
weights is compared with the model's own differentiable path (``"auto"``). Every kind (full,
dropout with its (42, step) mask and with an ensemble of masks, channel-wise, separable), the mean modes
gc / gf / lc / lf / none, sdev modes gc / gf / a constant / none, PCA and ZCA whitening, both experts; strips of one,
two and all rows (the last strip shorter)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfrestore.priors import PriorTerm, model
from tfrestore.priors import whitening as W
from tfrestore.priors.model import PatchPrior, PriorConfig

RNG = np.random.default_rng(24)
F64 = tf.float64


def _data(n=400, c=3, p=9):
    """Correlated raw patches [n, C·P] with channel offsets, so the normalisations have something to remove."""
    base = RNG.normal(size=(n, c * p)) @ RNG.normal(size=(c * p, c * p)) * 0.3
    return base + np.repeat(RNG.normal(5, 2, c), p) + RNG.normal(0, 1, (n, 1))


def _prior(*, kind="full", mean="gc", sdev="gc", whiten="pca", expert="student", c=3, patch=3, k=5, **extra):
    """A prior fitted (normalisation, whitening) on random patches, with random weights."""
    p = patch * patch
    x = _data(c=c, p=p)
    norm = W.fit_normalisation(lambda: [x], c, p, mean, sdev)
    z = norm.apply(x)
    rank_loss = {"lc": 1, "lf": 1}.get(mean, 0)              # per-patch centring removes a direction
    if kind == "channelwise":
        zc = z.reshape(-1, c, p)
        nw = p - rank_loss if whiten == "pca" else p
        whs = [W.fit_whitening(W.second_moment([zc[:, i]]), whiten, nw if whiten == "pca" else None)
               for i in range(c)]
    elif kind == "separable":
        nw, whs = c * p, None
    else:
        nw = c * p - (c if mean == "lc" else rank_loss) if whiten == "pca" else c * p
        whs = W.fit_whitening(W.second_moment([z]), whiten, nw if whiten == "pca" else None)
    cfg = PriorConfig(patch=patch, channels=c, components=k, n_white=nw, expert=expert, mean_mode=mean,
                      sdev_mode=sdev, whiten_mode="none" if kind == "separable" else whiten, kind=kind, **extra)
    return PatchPrior(cfg, norm, whs, seed=3)


def _rho(y, expert):
    return tf.math.log1p(0.5 * y * y) if expert == "student" else tf.math.log(tf.math.cosh(y))


def reference_energy(prior: PatchPrior, x, mask=None) -> tf.Tensor:
    """[N] energy in float64 from gathered patches (the spec's definition, nothing folded; the prior's
    whitening, unit-norm filters and α = softplus(a) as the model gives them)."""
    cfg = prior.config
    p, c, q = cfg.patch, cfg.channels, cfg.positions
    x = tf.cast(x, F64)
    glob = cfg.kind != "channelwise" and cfg.mean_mode in ("gc", "gf") and cfg.sdev_mode in ("gc", "gf")
    if not glob:
        x = tf.pad(x, [[0, 0], [(p - 1) // 2, p // 2], [(p - 1) // 2, p // 2], [0, 0]], mode="REFLECT")
    ho, wo = x.shape[1] - p + 1, x.shape[2] - p + 1
    cols = [x[:, i:i + ho, j:j + wo, :] for i in range(p) for j in range(p)]       # (h, w) positions
    pt = tf.reshape(tf.stack(cols, -1), [-1, ho, wo, c * q])                 # [.., C, P]: (c, h, w) order
    mean, sdev = (tf.constant(v.numpy(), F64) for v in (prior.mean, prior.sdev))
    if cfg.mean_mode in ("gc", "gf"):
        pt = pt - mean
    elif cfg.mean_mode == "lc":
        r = tf.reshape(pt, [-1, ho, wo, c, q])
        pt = tf.reshape(r - tf.reduce_mean(r, -1, keepdims=True), [-1, ho, wo, c * q])
    elif cfg.mean_mode == "lf":
        pt = pt - tf.reduce_mean(pt, -1, keepdims=True)
    pt = pt / tf.maximum(tf.math.reduce_std(pt, -1, keepdims=True), 1e-8) if cfg.sdev_mode == "lf" else pt / sdev
    alpha = tf.constant(prior.alpha().numpy(), F64)
    filters = tf.constant(prior.filters().numpy(), F64)
    whiten = tf.constant(prior.whiten.numpy(), F64)
    if cfg.kind == "channelwise":
        mix = tf.einsum("cfp,cfk->cpk", whiten, filters)
        y = tf.einsum("nhwcp,cpk->nhwck", tf.reshape(pt, [-1, ho, wo, c, q]), mix)
        return tf.reduce_sum(alpha * _rho(y, cfg.expert), [1, 2, 3, 4]) / (c * cfg.components)
    mix = tf.matmul(whiten, filters, transpose_a=True)                              # [D, K]
    if mask is not None:
        mix = mix * tf.constant(mask, F64)
    y = tf.einsum("nhwd,dk->nhwk", pt, mix)
    return tf.reduce_mean(tf.reduce_sum(alpha * _rho(y, cfg.expert), -1), [1, 2])


def _grad_x(fn, x):
    x = tf.Variable(x)
    with tf.GradientTape() as tape:
        e = fn(x)
        total = tf.reduce_sum(tf.cast(e, F64) * tf.range(1, tf.size(e) + 1, dtype=F64))   # unequal weights
    return e.numpy(), tape.gradient(total, x).numpy()


def _close_grad(a, b, tol=1e-5):
    """Gradients agree to ``tol`` of their largest entry (float32 rounding on the small ones)."""
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * np.abs(b).max())


CASES = {
    "full student gc/gc pca": dict(),
    "full logistic gf/gf zca": dict(mean="gf", sdev="gf", whiten="zca", expert="logistic"),
    "full lc/gc pca": dict(mean="lc"),
    "full lf/none zca": dict(mean="lf", sdev="none", whiten="zca"),
    "full none/constant": dict(mean="none", sdev=2.0),
    "full gc/none even patch": dict(sdev="none", patch=4),
    "dropout gc/gc": dict(kind="dropout", dropout_test=True),
    "channelwise logistic gc/gc zca": dict(kind="channelwise", expert="logistic", whiten="zca"),
    "channelwise lc/gf pca": dict(kind="channelwise", mean="lc", sdev="gf"),
    "channelwise none/none": dict(kind="channelwise", mean="none", sdev="none", patch=4),
    "separable gc/gc": dict(kind="separable", dim_multiplier=2),
}


@pytest.fixture(params=[1, None], ids=["one-row strips", "default strips"])
def strips(request, monkeypatch):
    if request.param is not None:
        for name, value in (("STRIP_BYTES", 1), ("KERNEL_STRIP_FACTOR", 0), ("DEPTHWISE_STRIP_BYTES", 1)):
            monkeypatch.setattr(model, name, value)                    # rows = 1: a while loop over every row
    return request.param


@pytest.mark.parametrize("case", list(CASES))
def test_fast_energy_and_its_gradient_equal_the_gathered_patches(case, strips):
    prior = _prior(**CASES[case])
    x = RNG.normal(4, 3, (2, 9, 8, prior.config.channels)).astype(np.float32)
    mask = None
    if prior.config.kind == "dropout":        # the thesis' mask of step 5: seed (42, 5), keep 0.5, survivors ×2
        keep = tf.random.stateless_uniform([prior.config.components], seed=[42, 5]) < 0.5
        mask = tf.cast(keep, tf.float64).numpy() * 2.0
    e_fast, g_fast = _grad_x(lambda v: prior.energy(v, path="fast", step=5), x)
    e_ref, g_ref = _grad_x(lambda v: reference_energy(prior, v, mask), x)
    np.testing.assert_allclose(e_fast, e_ref, rtol=1e-5)
    _close_grad(g_fast, g_ref)


@pytest.mark.parametrize("case", ["full lc/gc pca", "full logistic gf/gf zca", "dropout gc/gc", "channelwise lc/gf pca",
                                  "separable gc/gc"])
def test_fast_gradient_in_the_prior_weights_equals_the_differentiable_path(case, strips):
    prior = _prior(**CASES[case])
    x = tf.constant(RNG.normal(4, 3, (2, 7, 9, prior.config.channels)), tf.float32)
    grads = {}
    for path in ("fast", "auto"):
        with tf.GradientTape() as tape:
            e = tf.reduce_sum(prior.energy(x, path=path, step=2) * [1.0, 3.0])
        grads[path] = tape.gradient(e, prior.trainable_weights)
    assert len(grads["fast"]) >= 2
    for a, b in zip(grads["fast"], grads["auto"]):
        _close_grad(a.numpy(), b.numpy(), 1e-4)


def test_ensemble_masks_give_one_energy_per_mask():
    prior = _prior(kind="dropout")
    masks = np.array([[1, 1, 1, 1, 1], [2, 0, 2, 0, 2], [0, 0, 0, 0, 0]], np.float32)
    x = RNG.normal(4, 3, (2, 8, 8, 3)).astype(np.float32)
    fast = prior.energy(x, mask=masks, path="fast").numpy()
    assert fast.shape == (3, 2)
    ref = np.stack([reference_energy(prior, x, m).numpy() for m in masks])
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-12)
    assert np.all(fast[2] == 0)


@pytest.mark.parametrize("rows", [1, 2, 3, 6])
def test_strip_energy_is_independent_of_the_strip_height(rows):
    """6 output rows: strips of 1, 2, 3 (no tail) and 6; 2 and 3 also against a 4-row strip + 2-row tail below."""
    x = tf.constant(RNG.normal(size=(2, 8, 5, 2)), tf.float32)
    kernel = tf.constant(RNG.normal(size=(3, 3, 2, 4)), tf.float32)
    bias, alpha = tf.constant(RNG.normal(size=4), tf.float32), tf.constant(RNG.uniform(0.5, 2, 4), tf.float32)

    def run(r):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel, bias, alpha])
            e = model.strip_energy(x, kernel, bias, alpha, expert="student", scale=0.1, rows=r)
            total = tf.reduce_sum(e * [1.0, -2.0])
        return [e] + tape.gradient(total, [x, kernel, bias, alpha])
    y = tf.nn.conv2d(tf.cast(x, F64), tf.cast(kernel, F64), 1, "VALID") + tf.cast(bias, F64)
    expect = 0.1 * tf.reduce_sum(tf.cast(alpha, F64) * tf.math.log1p(0.5 * y * y), [1, 2, 3])
    got, whole = run(rows), run(4)
    np.testing.assert_allclose(got[0], expect.numpy(), rtol=1e-5)
    for a, b in zip(got, whole):
        _close_grad(a.numpy(), b.numpy())


def test_fast_path_falls_back_where_the_normalisation_is_per_patch():
    for kw in (dict(mean="gc", sdev="lf"), dict(kind="channelwise", mean="lf", sdev="none")):
        prior = _prior(**kw)
        x = RNG.normal(4, 3, (1, 7, 7, 3)).astype(np.float32)
        np.testing.assert_allclose(prior.energy(x, path="fast").numpy(), reference_energy(prior, x).numpy(),
                                   rtol=1e-5)


def test_prior_term_uses_the_fast_path(monkeypatch):
    """The objective term goes through strip_energy (and so its memory of one strip)."""
    prior = _prior()
    calls = []
    real = model.strip_energy
    monkeypatch.setattr(model, "strip_energy", lambda *a, **k: calls.append(1) or real(*a, **k))

    class Ctx:
        canvas = tf.constant(RNG.normal(size=(2, 7, 7, 3)), tf.float32)
        n = 2
    e = PriorTerm(prior, offset=1.0).value(Ctx())
    assert calls and e.shape == (2,)
    np.testing.assert_allclose(e.numpy(), reference_energy(prior, Ctx.canvas + 1.0).numpy(), rtol=1e-5)


def test_a_numpy_map_takes_the_fast_path_under_auto(monkeypatch):
    """A reported energy (NumPy in, nothing to differentiate) is computed by strips, not the whole convolution."""
    prior = _prior()
    calls = []
    real = model.strip_energy
    monkeypatch.setattr(model, "strip_energy", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = RNG.normal(4, 3, (2, 8, 8, 3)).astype(np.float32)
    e = prior.energy(x).numpy()
    assert calls
    np.testing.assert_allclose(e, reference_energy(prior, x).numpy(), rtol=1e-5)
    calls.clear()
    prior.energy(tf.constant(x))                                   # a tensor may be differentiated: as before
    assert not calls
