"""The legacy priors of the thesis' catalogue (spec patch_priors §5.1 "Earlier experiments": 5×5 conv1 / conv2 /
pool1, the 12×12 image prior, the 3×3 conv1/relu prior) and L-BFGS for the prior-regularised inversions
(``foe_priors --optimizer=lbfgs``; the thesis engine's L-BFGS-B, mv2016.md §9.2).

Each legacy entry trains at a small size through the catalogue's own pipeline (``extract`` → ``prepare`` →
``PriorTrainer``) with its held-out score-matching loss falling below its initial value. L-BFGS is checked against
SciPy's L-BFGS-B on the same objective and iterations, against Adam, and through main.py.
"""
import dataclasses
import json
import types

import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf

from reproductions import foe_priors as F
from tfrestore import nets
from tfrestore.core import store
from tfrestore.optimize import objectives as O
from tfrestore.priors import PatchPrior, PriorTerm, catalogue
from tfrestore.priors.model import PriorConfig
from tfrestore.priors.patches import extract, prepare
from tfrestore.priors.train import PriorTrainer
from test_priors_catalogue import BATCH_CAP, STEPS, VAL_PATCHES, _maps, small_config

PATCHES_PER_DIM = 20          # image12 keeps its 432 dimensions at the small size: 3,000 patches overfit its whitening


# ---- the legacy entries train -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", catalogue.LEGACY)
def test_legacy_entries_train_at_a_small_size(name, tmp_path):
    """Fewer channels and components (``small_config``: the entry's kind, expert, normalisation and whitening
    modes, overcompleteness, schedule shape, batch and clip), patches from a known sparse model: after a few hundred
    steps the held-out loss is below the untrained prior's."""
    e = catalogue.entry(name)
    cfg = small_config(e.config)
    count = max(3000, PATCHES_PER_DIM * cfg.features)
    maps = _maps(cfg.channels, count=max(12, count // 400))
    prepared = prepare(extract(tmp_path / "p.h5", image_sources=maps, patch=cfg.patch, count=count,
                               val_count=VAL_PATCHES, seed=1), cfg)
    schedule = dataclasses.replace(e.training.scaled(STEPS), batch=min(e.training.batch, BATCH_CAP))
    trainer = PriorTrainer(cfg, prepared, schedule, seed=0)
    initial = trainer.validation_loss()
    final = trainer.run(progress=False)["final"]["val_loss"]
    assert np.isfinite(final) and final < initial, (name, initial, [h["val_loss"] for h in trainer.history])


# ---- L-BFGS on a prior-regularised inversion ---------------------------------------------------------------------

def _denoising(n=2, size=16, weight=100.0):
    """Σ(x − y)² + weight · E_prior(x) for n noisy observations y of a smooth image (a prior-regularised problem
    without a network), a random start, and the prior."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] / size
    clean = np.stack([60 * np.sin(3 * xx + k) * np.cos(2 * yy) for k in range(3)], -1)
    observed = (clean[None] + rng.normal(0, 25, (n, size, size, 3))).astype(np.float32)
    cfg = PriorConfig(patch=3, channels=3, components=16, n_white=27, mean_mode="none", sdev_mode="none",
                      whiten_mode="none")
    prior = PatchPrior(cfg, seed=3)
    prior.w.assign(rng.normal(size=prior.w.shape).astype(np.float32))
    objective = O.image_l2(observed) + weight * PriorTerm(prior)
    return objective, rng.normal(0, 5, observed.shape).astype(np.float32), observed


def _scipy_lbfgsb(objective, init, iterations):
    """SciPy's L-BFGS-B (the thesis' ScipyOptimizerInterface, options maxiter only) on each problem: its final
    objective values."""
    @tf.function
    def problem_value_and_grad(x, i):
        with tf.GradientTape() as tape:
            tape.watch(x)
            v = objective(O.Context(tf.concat([init[:i], x, init[i + 1:]], 0)))[0][i]
        return v, tape.gradient(v, x)

    out = []
    for i in range(len(init)):
        def value_and_grad(flat, i=i):
            v, g = problem_value_and_grad(tf.constant(flat.reshape((1,) + init.shape[1:]), tf.float32), i)
            return float(v), g.numpy().ravel().astype(np.float64)
        r = scipy.optimize.minimize(value_and_grad, init[i].ravel().astype(np.float64), jac=True, method="L-BFGS-B",
                                    options={"maxiter": iterations, "maxcor": 10})
        out.append(r.fun)
    return np.array(out)


def test_lbfgs_minimises_a_prior_regularised_inversion_as_scipy_does(tmp_path):
    """foe_priors' L-BFGS phase (``PhaseEngine(optimizer="lbfgs")``) on Σ(x − y)² + w·E_prior: after 12 iterations
    its objective equals SciPy's L-BFGS-B after 12 (an independent implementation, memory 10), lies far below the
    start and below the noisy observation's, and is of the order of Adam's after ten times as many steps."""
    objective, init, observed = _denoising()
    value = lambda x: objective(O.Context(tf.constant(x)))[0].numpy()          # noqa: E731
    s = types.SimpleNamespace(seed=0, logdir=tmp_path)
    run = lambda steps, opt: F._run_phases(s, [(objective, steps)], init, ["a", "b"],       # noqa: E731
                                           F.PhaseEngine(1.0, opt, False), "t", opt or "adam")[0]
    lbfgs = value(run(12, "lbfgs"))
    np.testing.assert_allclose(lbfgs, _scipy_lbfgsb(objective, init, 12), rtol=1e-3)
    assert (lbfgs < value(init) / 100).all() and (lbfgs < value(observed)).all(), (lbfgs, value(init))
    adam = value(run(120, "adam"))
    assert (lbfgs <= adam * 1.001).all() and (lbfgs > adam / 10).all(), (lbfgs, adam)


# ---- through main.py ----------------------------------------------------------------------------------------------

def _cli(capfd, *args):
    """main.py in-process: (exit status, stderr lines)."""
    import main
    main.FLAGS.unparse_flags()
    main.FLAGS(["main.py", *args])
    try:
        code = main.main(["main.py"])
    finally:
        main.FLAGS.unparse_flags()
    return code, [l for l in capfd.readouterr().err.splitlines() if l.strip()]


def _store_small(name: str) -> None:
    """A small untrained prior of the entry (its patch size, channels, modes) where catalogue.get finds it."""
    e = catalogue.entry(name)
    small = PatchPrior(dataclasses.replace(e.config, components=8, n_white=16), seed=1)
    store.build(catalogue.key(name, "alexnet"), lambda work, out: small.save(out) and None)


def test_main_runs_featmap_inv_with_lbfgs_and_a_legacy_prior(tmp_path, capfd):
    """``--optimizer=lbfgs --prior=c1l_5x5_gcgc`` on a tiny featmap_inv (2 + 2 iterations): exit 0, L-BFGS and the
    prior's weight (fullc1l6000's) recorded, and the data term — conv2/lin's mean squared error, recomputed here
    through the (seeded random) network — below the start's N(0, 0.1) map's (spec §7.2) after the MSE phase."""
    _store_small("c1l_5x5_gcgc")
    out = tmp_path / "run"
    code, err = _cli(capfd, "--paper=foe_priors", "--experiment=featmap_inv", "--prior=c1l_5x5_gcgc",
                     "--optimizer=lbfgs", "--steps=4", f"--out={out}")
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["optimizer"] == "lbfgs" and m["prior"] == "c1l_5x5_gcgc" and m["weight"] == 1e-5 and m["steps"] == [2, 2]
    assert "(L-BFGS)" in (out / "table.txt").read_text()
    true_map = np.load(out / "true_map.npy")
    tail = nets.tail(nets.build("alexnet", weights="auto", seed=0), "conv1", "conv2")
    conv2 = lambda x: np.asarray(tail(x.astype(np.float32))["conv2"], np.float64)          # noqa: E731
    mse = lambda x: np.mean((conv2(x) - conv2(true_map)) ** 2)                              # noqa: E731
    start = np.random.default_rng(0).normal(0, 0.1, true_map.shape)
    assert mse(np.load(out / "mse_only.npy")) < mse(start) / 2, (mse(np.load(out / "mse_only.npy")), mse(start))


def test_main_refuses_an_unknown_optimizer_listing_the_valid_ones(capfd):
    code, err = _cli(capfd, "--paper=foe_priors", "--optimizer=bfgs")
    assert code == 2 and err == ["error: unknown --optimizer='bfgs' for foe_priors; valid: adam, lbfgs"], err
    code, err = _cli(capfd, "--paper=foe_priors", "--experiment=train", "--optimizer=lbfgs")
    assert code == 2 and len(err) == 1 and "--experiment=train optimises no image" in err[0], err
    code, err = _cli(capfd, "--paper=foe_priors", "--prior=c1l_5x5_gcgc")        # image_rec needs an image prior
    assert code == 2 and len(err) == 1 and "image12" in err[0], err
