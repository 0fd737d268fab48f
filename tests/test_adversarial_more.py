"""Issue 23 item 6: foolbox 1's L-BFGS and saliency-map attacks written here, the 12×12 prior's energies of the
targeted examples (§6.1) and the stability statistics with test-time dropout (§5), on the trained digits net."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from digits_store import in_store, trained_home
from tfrestore import data
from tfrestore.models import classifier
from tfrestore.priors import PatchPrior, PriorConfig
from tfrestore.priors import whitening as W
from tfrestore.priors.model import dropout_seed
from tfrestore.restore import adversarial as A

FAST_LBFGS = A.LBFGSSetting(epsilon=1e-3, maxiter=20)      # the c search and L-BFGS-B runs cut short (~2 s / image)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    home = trained_home(tmp_path_factory)
    model, _ = in_store(home, lambda: classifier.get(progress=False))
    clf = A.Classifier(model)
    x = data.digit_images(None, "val")[0][:6]
    return clf, x, clf.labels(x)


def test_lbfgs_reaches_its_targets_with_less_than_a_targeted_fgsm_step(digits):
    clf, x, src = digits
    x, src = x[:3], src[:3]
    targets = (src + 1 + np.arange(3)) % 10
    adv, ok = A.lbfgs_attack(clf, x, src, FAST_LBFGS, targets=targets)
    f_adv, f_ok = A.attack(clf, x, src, "fgsm", targets=targets)
    labels = np.argmax(clf(adv).numpy(), -1)
    assert ok.sum() >= 2 and (labels[ok] == targets[ok]).all()
    assert adv.min() >= 0 and adv.max() <= 255
    both = ok & f_ok
    l2 = np.sqrt(((adv - x) ** 2).reshape(3, -1).sum(1))
    f_l2 = np.sqrt(((f_adv - x) ** 2).reshape(3, -1).sum(1))
    print("L-BFGS", l2, "FGSM", f_l2, f_ok)
    assert both.any() and (l2[both] < f_l2[both]).all()
    assert (np.argmax(clf(f_adv).numpy(), -1)[f_ok] == targets[f_ok]).all()


def test_saliency_first_step_lowers_the_element_of_largest_target_gradient_and_stays_within_its_bounds(digits):
    clf, x, src = digits
    targets = A.gradient_attack_targets(clf, x, src)
    assert (targets != src).all()
    # the reference for one step: foolbox 1's fast map lowers argmax α by θ·255, α = ∇ CE(target) (eager tape)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        ce = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.constant(targets), clf(xt)))
    alpha = tape.gradient(ce, xt).numpy().reshape(len(x), -1)
    one, _, counts1, steps1 = A.saliency_attack(clf, x, src, dataclasses.replace(A.SaliencySetting(), max_iter=1),
                                                targets=targets)
    expect = x.reshape(len(x), -1).copy()
    idx = alpha.argmax(1)
    expect[np.arange(len(x)), idx] = np.clip(expect[np.arange(len(x)), idx] - 25.5, 0, 255)
    np.testing.assert_allclose(one.reshape(len(x), -1), expect, atol=1e-3)
    assert (steps1 == 1).all() and counts1.sum() == len(x)
    # the whole attack: every label changes, with few elements changed (one per step, ≤ 7 changes each)
    adv, ok, counts, steps = A.saliency_attack(clf, x, src, targets=targets)
    changed = (np.abs(adv - x) > 0).reshape(len(x), -1).sum(1)
    print("elements changed", changed, "steps", steps, "of", x[0].size)
    assert ok.all() and (np.argmax(clf(adv).numpy(), -1) != src).all()
    assert counts.max() <= 7 and (changed <= steps).all() and (steps <= 2000).all()
    assert (changed < 0.25 * x[0].size).all()
    assert np.abs(adv - x).max() <= 7 * 25.5 + 1e-3


def _tiny_dropout_prior(seed=0, kind="dropout"):
    rng = np.random.default_rng(seed)
    z = rng.normal(128, 30, (2000, 27))
    norm = W.fit_normalisation(lambda: [z], 3, 9, "gc", "gc")
    wh = W.fit_whitening(W.second_moment([norm.apply(z)]), "pca", 5)
    drop = kind == "dropout"
    prior = PatchPrior(PriorConfig(patch=3, channels=3, components=8, n_white=5, kind=kind, dropout_train=drop,
                                   dropout_test=drop), norm, wh, seed=seed)
    prior.w.assign(rng.normal(size=prior.w.shape).astype(np.float32))
    return prior


def test_test_time_dropout_descends_under_a_fresh_mask_at_every_step():
    prior = _tiny_dropout_prior()
    x0 = tf.constant(np.random.default_rng(1).uniform(60, 200, (2, 6, 6, 3)), tf.float32)
    masks = [prior.dropout_mask(dropout_seed(t)).numpy() for t in range(3)]
    assert not np.array_equal(masks[0], masks[1])
    x = x0
    for t in range(3):                         # the reference: eager SGD steps, step t under mask t
        with tf.GradientTape() as tape:
            tape.watch(x)
            e = 40.0 * tf.reduce_sum(prior.energy(x, mask=masks[t]))
        x = x - 0.5 * tape.gradient(e, x)
    d = A.PriorDefence(prior, steps=3, lr=0.5, weight=40.0, optimizer="sgd", test_dropout=True)
    np.testing.assert_allclose(d(x0).numpy(), x.numpy(), rtol=1e-5, atol=1e-4)
    fixed = A.PriorDefence(prior, steps=3, lr=0.5, weight=40.0, optimizer="sgd")       # dropout off
    assert np.abs(fixed(x0).numpy() - x.numpy()).max() > 1e-2
    _, seen = d.labels_per_step(x0, lambda z: tf.reshape(z, [2, -1])[:, :4])
    assert seen.shape == (4, 2)
    with pytest.raises(ValueError, match="dropout prior"):
        A.PriorDefence(_tiny_dropout_prior(kind="full"), test_dropout=True)


# ---- a tiny run of each experiment (digits; few images, the L-BFGS search cut short) ---------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return trained_home(tmp_path_factory, priors=("digits_full128", "digits_dropout128", "digits_image12"))


def _run(monkeypatch, home, out, **flags):
    from reproductions import adversarial as R, paper
    monkeypatch.setenv("TFRESTORE_HOME", str(home))
    monkeypatch.setattr(R, "LBFGS", FAST_LBFGS)
    monkeypatch.setitem(R.NET_SETTINGS, "digits", dataclasses.replace(R.NET_SETTINGS["digits"], pairs=8,
                                                                      targeted_images=3))
    f = R.Flags(net="digits", **flags)
    return R.run(f, paper.RunContext.create(R.default_out(f), out=out)).metrics


@pytest.mark.experiment("adversarial", "lbfgs")
def test_lbfgs_tiny_run(store, monkeypatch, tmp_path):
    res = _run(monkeypatch, store, tmp_path / "l", experiment="lbfgs")
    s = res["summary"]
    assert s["images"] == 3 and s["reached"] >= 2 and s["setting"]["maxiter"] == 20
    assert s["smaller_than_fgsm"] == s["both_reached"] >= 1
    folder = store / "adversarial" / "digits" / "embedded" / "lbfgs_targeted"
    assert len(list(folder.glob("*.npy"))) == s["reached"]
    assert all((folder / f"{r['example']}.npy").exists() for r in res["rows"] if r["reached"])


@pytest.mark.experiment("adversarial", "lbfgs_energies")
def test_lbfgs_energies_tiny_run_the_prior_scores_adversarials_above_their_images(store, monkeypatch, tmp_path):
    res = _run(monkeypatch, store, tmp_path / "le", experiment="lbfgs_energies")
    s = res["summary"]
    assert s["prior"] == "digits_image12" and s["examples"] >= 2
    assert s["adversarial_higher"] == s["examples"] and s["mean_adversarial_minus_image"] > 0
    # independent: the stored examples rescored by the prior from the store
    from tfrestore.priors import catalogue
    prior = in_store(store, lambda: catalogue.get("digits_image12", "digits"))
    stored = A.load_examples(store / "adversarial" / "digits" / "embedded" / "lbfgs_targeted")
    row = res["rows"][0]
    e = float(prior.energy(stored[row["original"]][0][None]).numpy()[0])
    assert e == pytest.approx(row["energy"], rel=1e-4)


@pytest.mark.experiment("adversarial", "saliency")
def test_saliency_tiny_run(store, monkeypatch, tmp_path):
    res = _run(monkeypatch, store, tmp_path / "sm", experiment="saliency", steps=5)
    s = res["summary"]
    assert res["attack"] == "saliency" and s["pairs"] >= 6
    assert s["max_changed"] <= s["max_iter"] and s["max_abs_change"] <= s["change_bound"] + 1e-3
    assert s["median_changed"] < 0.25 * s["elements"]
    assert s["restoration"]["inputs"] == s["pairs"]


@pytest.mark.experiment("adversarial", "stability_dropout")
def test_stability_dropout_tiny_run(store, monkeypatch, tmp_path):
    res = _run(monkeypatch, store, tmp_path / "sd", experiment="stability_dropout", steps=3)
    on, off = res["series"].values()
    assert on["test_dropout"] and not off["test_dropout"]
    assert on["steps"] == off["steps"] == 3 and on["pairs"] == res["pairs"]
    assert on["preserved"][0] == off["preserved"][0] == res["pairs"] and len(on["noise"]["restored"]) == 4
    assert (tmp_path / "sd" / "tradeoff.png").exists()
