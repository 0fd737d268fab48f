"""Adversarial restoration: defences, statistics, attacks on the trained digits classifier, the reproduction."""
import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from tfrestore import adversarial as A
from tfrestore import classifier
from tfrestore.priors import PatchPrior, PriorConfig, unrolled_descent
from tfrestore.priors import whitening as W


def _tiny_prior(seed=0, **config):
    """A 3×3 RGB prior fitted (normalisation, whitening) to random patches around grey 128, random filters."""
    rng = np.random.default_rng(seed)
    x = rng.normal(128, 30, (2000, 27))
    norm = W.fit_normalisation(lambda: [x], 3, 9, "gc", "gc")
    wh = W.fit_whitening(W.second_moment([norm.apply(x)]), "pca", 5)
    prior = PatchPrior(PriorConfig(patch=3, channels=3, components=6, n_white=5, **config), norm, wh, seed=seed)
    prior.w.assign(rng.normal(size=prior.w.shape).astype(np.float32))
    return prior


def test_mean_filter_identity_box_and_padding():
    x = np.random.default_rng(0).uniform(0, 255, (2, 7, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(A.mean_filter(x, 2, 0.0).numpy(), x, rtol=1e-6)
    for k in (2, 3):
        before, after = (k - 1) // 2, k // 2           # floor / ceil of k − 1
        p = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)), mode="reflect")
        box = np.mean([p[:, i:i + 7, j:j + 6] for i in range(k) for j in range(k)], axis=0)
        np.testing.assert_allclose(A.mean_filter(x, k, 1.0).numpy(), box, rtol=1e-5)
        mixed = A.mean_filter(x, k, 0.3).numpy()
        np.testing.assert_allclose(mixed, 0.7 * x + 0.3 * box, rtol=1e-5)


def test_stability_statistics_on_a_hand_made_history():
    src = np.array([1, 2, 3])
    img = np.array([[1, 1, 1, 4], [2, 2, 2, 2], [3, 5, 3, 3]])      # image 0 changes at 3, image 2 at 1 and back
    adv = np.array([[7, 1, 1, 1], [8, 8, 2, 9], [9, 9, 9, 9]])      # returns at 1, at 2 (then leaves), never
    st = A.stability_statistics(img, adv, src)
    assert st["steps"] == 3 and st["pairs"] == 3
    assert st["changes_images"] == [1, 1, 1]
    assert st["first_changes_images"] == [1, 0, 1]
    assert st["changes_adversarials"] == [1, 1, 1]
    assert st["first_changes_adversarials"] == [1, 1, 0]
    assert st["first_returns"] == [1, 1, 0]
    assert st["preserved"] == [3, 2, 3, 2]
    assert st["restored"] == [0, 1, 2, 1]


def test_adaptive_summary_counts_and_ratios():
    ob = np.array([10.0, 20.0, 5.0, 8.0])
    ad = np.array([5.0, 40.0, np.inf, -np.inf])
    s = A.adaptive_summary(ob, ad, src_invariant=np.array([True, True, True, False]))
    assert (s["samples"], s["failed"], s["errors"], s["successful"], s["compared"]) == (4, 1, 1, 2, 2)
    assert s["correct_with_defence"] == 3
    assert s["mean_oblivious"] == 15 and s["mean_adaptive"] == 22.5
    assert s["ratio_mean"] == pytest.approx(1.25) and s["diff_median"] == pytest.approx(7.5)
    assert (s["adaptive_larger"], s["adaptive_smaller"]) == (1, 1)
    assert sum(s["histogram_adaptive"]) == 2


def test_defence_gradients_match_finite_differences_and_labels_follow_each_step():
    prior = _tiny_prior()
    rng = np.random.default_rng(1)
    x0 = rng.uniform(60, 200, (1, 6, 6, 3))
    v = rng.normal(size=x0.shape)
    defence = A.PriorDefence(prior, steps=3, lr=0.5, weight=50.0, optimizer="sgd")

    def f(x):
        return float(tf.reduce_sum(defence(tf.constant(x, tf.float32)) * v))

    with tf.GradientTape() as tape:
        x = tf.constant(x0, tf.float32)
        tape.watch(x)
        y = tf.reduce_sum(defence(x) * tf.constant(v, tf.float32))
    g = tape.gradient(y, x).numpy()
    for idx in [(0, 1, 2, 0), (0, 3, 3, 2), (0, 5, 0, 1)]:
        e = np.zeros_like(x0)
        e[idx] = 0.5
        fd = (f(x0 + e) - f(x0 - e)) / 1.0
        assert g[idx] == pytest.approx(fd, rel=2e-2, abs=2e-3)
    # the label history equals classifying the result of 0, 1, 2, 3 steps run separately
    w = tf.constant(rng.normal(size=(108, 4)), tf.float32)
    clf = lambda z: tf.matmul(tf.reshape(z, [len(z), -1]), w)      # noqa: E731
    xs = rng.uniform(60, 200, (3, 6, 6, 3)).astype(np.float32)
    _, labels = defence.labels_per_step(tf.constant(xs), clf)
    for t in range(4):
        xt = unrolled_descent(prior, xs, steps=t, lr=0.5, weight=50.0, optimizer="sgd") if t else xs
        np.testing.assert_array_equal(labels[t].numpy(), np.argmax(clf(tf.constant(xt)).numpy(), -1))


def test_dropout_defence_runs_with_dropout_off_and_ensembles_use_fixed_masks():
    prior = _tiny_prior(kind="dropout", dropout_test=True)
    x = np.random.default_rng(2).uniform(60, 200, (2, 6, 6, 3)).astype(np.float32)
    d = A.PriorDefence(prior, steps=2, lr=0.5)
    np.testing.assert_allclose(d(x).numpy(), d(x).numpy())                # deterministic: no dropout inside
    masks = A.ensemble_masks(prior, 4, seed=3)
    assert masks.shape == (4, 6) and set(np.unique(masks)) <= {0.0, 2.0}
    np.testing.assert_array_equal(masks, A.ensemble_masks(prior, 4, seed=3))


@pytest.fixture(scope="module")
def digits_net(tmp_path_factory):
    home = tmp_path_factory.mktemp("digits_home")
    import os
    old = os.environ.get("TFRESTORE_HOME")
    os.environ["TFRESTORE_HOME"] = str(home)
    try:
        model, summary = classifier.train(steps=400, progress=False)
    finally:
        if old is not None:
            os.environ["TFRESTORE_HOME"] = old
    return home, model, summary


def test_deepfool_flips_the_trained_digits_classifier_and_files_carry_both_labels(digits_net, tmp_path):
    _, model, summary = digits_net
    assert summary["val_accuracy"] > 0.9
    clf = A.Classifier(model)
    assert clf.layer == "fc4"
    x, y, _ = classifier.digit_images(None, "val")
    x = x[:8]
    src = clf.labels(x)
    adv, ok = A.attack(clf, x, src, "deepfool")
    fooled = clf.labels(adv)
    assert ok.all() and (fooled != src).all()
    assert adv.min() >= 0 and adv.max() <= 255
    for i in range(3):
        A.save_example(tmp_path, f"digit{i}", adv[i], src[i], fooled[i])
    back = A.load_examples(tmp_path)
    assert sorted(back) == ["digit0", "digit1", "digit2"]
    assert (tmp_path / f"digit0_t{src[0]}_f{fooled[0]}.npy").exists()
    np.testing.assert_allclose(back["digit1"][0], adv[1])
    assert back["digit2"][1:] == (src[2], fooled[2])
    # FGSM's line search finds a larger but successful perturbation; the source-probability criterion is honoured
    f_adv, f_ok = A.attack(clf, x[:4], src[:4], "fgsm", epsilons=20)
    assert f_ok.all() and (clf.labels(f_adv) != src[:4]).all()
    crit = A.SourceProbabilityBelow(src[:4], 0.5).criterion
    p_adv, p_ok = A.attack(clf, x[:4], src[:4], "deepfool", criterion=crit)
    probs = tf.nn.softmax(clf(p_adv)).numpy()[np.arange(4), src[:4]]
    assert (probs[p_ok] < 0.5).all()


def test_adversarial_reproduction_end_to_end_on_digits(digits_net, monkeypatch, tmp_path):
    from reproductions import adversarial as R
    home, _, _ = digits_net
    monkeypatch.setenv("TFRESTORE_HOME", str(home))
    monkeypatch.setitem(R.NET_SETTINGS, "digits", dataclasses.replace(R.NET_SETTINGS["digits"], pairs=12,
                                                                      adaptive_pairs=4, ensemble_pairs=2))
    res = R.run(net="digits", experiment="stability", attack="fgsm", steps=4, prior_steps=300, out=str(tmp_path / "s"))
    series = next(iter(res["series"].values()))
    assert res["weights"] != "random" and series["steps"] == 4 and len(series["restored"]) == 5
    assert series["restored"][0] == 0 and series["preserved"][0] == res["pairs"]
    assert (tmp_path / "s" / "tradeoff.png").exists()
    assert json.loads((tmp_path / "s" / "metrics.json").read_text())["experiment"] == "stability"
    res = R.run(net="digits", experiment="mean_filter", attack="fgsm", out=str(tmp_path / "m"))
    c = res["counts"]["2x2"]
    assert c["retained"][0] == res["pairs"] and c["restored"][0] == 0 and len(c["same"]) == 11
    res = R.run(net="digits", experiment="adaptive", attack="fgsm", steps=2, prior_steps=300,
                out=str(tmp_path / "a"))
    assert res["summary"]["samples"] == 4 and "restored_by_other_prior" in res["transfer"]
    assert any((home / "adversarial" / "digits" / "embedded").glob("deepfool_adaptive_*/*.npy"))
    with pytest.raises(ValueError, match="alexnet or digits"):
        R.run(net="vgg16")


def test_legacy_stability_logging_is_the_originals_off_by_one():
    from reproductions import adversarial as R
    prior = _tiny_prior()
    rng = np.random.default_rng(4)
    w = tf.constant(rng.normal(size=(108, 5)), tf.float32)
    clf = lambda z: tf.matmul(tf.reshape(z, [len(z), -1]), w)      # noqa: E731
    x = rng.uniform(60, 200, (4, 6, 6, 3)).astype(np.float32)
    d = A.PriorDefence(prior, steps=3, lr=20.0, weight=50.0, optimizer="sgd")
    fixed = R._histories(d, clf, x)
    legacy = R._histories(d, clf, x, legacy=True)
    longer = R._histories(dataclasses.replace(d, steps=4), clf, x)
    assert fixed.shape == legacy.shape == (4, 4)
    np.testing.assert_array_equal(fixed, longer[:, :4])                       # before, after steps 1, 2, 3
    np.testing.assert_array_equal(legacy, np.concatenate([longer[:, :1], longer[:, 2:]], 1))   # after 2, 3, 4
