"""The VGG (Gram) score computed image by image (issue 24 item 4): the same numbers as the whole-stack formula,
features asked for at most ``batch`` images at a time, one shared reference's Grams made once; and foe_priors'
VGG16 cut after relu5_1 gives the full network's features."""
import numpy as np
import pytest

from tfrestore import nets
from tfrestore.measure import metrics
from tfrestore.nets import weights as weights_store
from tfrestore.optimize import inversion as I
from tfrestore.optimize.inversion import vgg16_gram_features


def _features(calls: list[int]):
    """Two 'layers' of a fixed nonlinear map: the image and a 2×2-pooled square of it (different sizes and
    channels, like a net's taps); records each call's image count."""
    def features(images):
        x = np.asarray(images, np.float64)
        calls.append(len(x))
        n, h, w, c = x.shape
        sq = (x ** 2).reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
        return {"id": x, "sq": np.concatenate([sq, np.sqrt(sq)], axis=-1)}
    return features


def _reference_score(ref: np.ndarray, est: np.ndarray) -> np.ndarray:
    """The thesis' score per image, straight from its definition (numpy, one image at a time)."""
    out = []
    for t, r in zip(ref, est):
        ratios = []
        for layer in ("id", "sq"):
            ft, fr = (_features([])(im[None])[layer][0] for im in (t, r))
            gt, gr = ((f.reshape(-1, f.shape[-1]) - f.mean()) for f in (ft, fr))
            gt, gr = gt.T @ gt, gr.T @ gr
            ratios.append(np.sum((gt - gr) ** 2) / np.sum(gt ** 2))
        out.append(np.mean(ratios))
    return np.array(out)


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_gram_score_by_batches_is_the_whole_stack_score(batch):
    rng = np.random.default_rng(1)
    ref = rng.uniform(0, 255, (5, 8, 8, 3)).astype(np.float32)            # the score reads float32 images
    est = (ref + rng.normal(0, 20, ref.shape)).astype(np.float32)
    calls = []
    got = metrics.gram_score(_features(calls), ref, est, crop=None, batch=batch)
    np.testing.assert_allclose(got, _reference_score(ref, est), rtol=1e-10)
    assert max(calls) == batch and sum(calls) == 2 * len(est)             # ≤ batch images a call, each once


def test_one_reference_scores_every_estimate_and_its_grams_are_made_once():
    rng = np.random.default_rng(2)
    ref = rng.uniform(0, 255, (1, 10, 10, 3)).astype(np.float32)
    est = (ref + rng.normal(0, 10, (4, 10, 10, 3))).astype(np.float32)
    calls = []
    got = metrics.gram_score(_features(calls), ref, est, crop=6)
    np.testing.assert_allclose(got, _reference_score(np.repeat(ref[:, :6, :6], 4, 0), est[:, :6, :6]), rtol=1e-10)
    assert calls == [1] * 5                                               # the reference once, then each estimate
    with pytest.raises(ValueError, match="2 reference images for 4 estimates"):
        metrics.gram_score(_features([]), np.repeat(ref, 2, 0), est)


def _slim_builds(monkeypatch) -> tuple[list, list]:
    """nets.build of a 1/16-width VGG16 (same topology and seeding; fast). Returns the lists the models built and
    the models given to gram_features are appended to."""
    build, built, scored = nets.build, [], []
    monkeypatch.setattr(nets, "build", lambda name, **kw: built.append(build(name, width=1 / 16, **kw)) or built[-1])
    real = I.gram_features
    monkeypatch.setattr(I, "gram_features", lambda model, *a: scored.append(model) or real(model, *a))
    return built, scored


def _ends_at_relu5_1(model) -> bool:
    return model.input.shape[1:3] == (224, 224) and model.layers[-1].name == "relu5_1" and not any(
        l.name.startswith(("fc", "conv5_2", "pool5")) for l in model.layers)


def _full_features(model, images):
    ext = nets.feature_extractor(model, list(nets.GRAM_TAPS))
    return {k: np.asarray(v) for k, v in ext(nets.preprocess("vgg16", images)).items()}


def test_the_vgg_score_net_is_vgg16_up_to_relu5_1_with_the_full_nets_weights(monkeypatch):
    """Random weights: built only up to relu5_1, yet the whole net's kernels and features bit for bit."""
    built, scored = _slim_builds(monkeypatch)
    images = np.random.default_rng(3).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    got = vgg16_gram_features()(images)
    assert len(built) == 1 and _ends_at_relu5_1(built[0]) and scored == built     # the head never made
    want = _full_features(nets.build("vgg16", weights="random", seed=0), images)
    assert list(got) == list(nets.GRAM_TAPS)
    for tap in want:
        np.testing.assert_array_equal(got[tap], want[tap])


def test_the_vgg_score_net_loads_converted_weights(monkeypatch):
    """With a vgg16 weight file installed the score reads those weights (not the seeded random ones), from the
    whole net (the file is checked against it) cut after relu5_1."""
    _, scored = _slim_builds(monkeypatch)
    converted = nets.build("vgg16", weights="random", seed=7)
    weights_store.weight_path("vgg16").parent.mkdir(parents=True, exist_ok=True)
    weights_store.save_weights(converted, weights_store.weight_path("vgg16"))
    images = np.random.default_rng(4).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    got, want = vgg16_gram_features()(images), _full_features(converted, images)
    assert _ends_at_relu5_1(scored[0])                                   # the loaded net cut: its head let go
    for tap in want:
        np.testing.assert_array_equal(got[tap], want[tap])
