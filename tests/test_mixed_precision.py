"""Mixed precision (Keras' ``mixed_float16``, what ``benchmarks/gpu_throughput.py`` tries on a GPU): Caffe's LRN
keeps its sum of squares in float32 (conv1-sized responses overflow float16), and the objective stays float32
whatever the network computes in. References: the float32 layer and model on the same weights."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.nets.layers import CaffeLRN
from tfrestore.optimize import objectives as O


def test_lrn_in_half_precision_is_finite_and_matches_float32():
    x = np.random.default_rng(0).normal(0, 150, (2, 5, 5, 16)).astype(np.float32)    # 371² > float16's 65504
    x[0, 0, 0, :] = 371.0
    lrn = CaffeLRN(local_size=5, alpha=1e-4, beta=0.75, k=1.0)
    want = lrn(tf.constant(x)).numpy()
    half = CaffeLRN(local_size=5, alpha=1e-4, beta=0.75, k=1.0, dtype="mixed_float16")   # float16 compute
    got = half(tf.constant(x, tf.float16))
    assert got.dtype == tf.float16
    got = got.numpy().astype(np.float32)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=0.1)         # float16's own rounding of the output


@pytest.fixture
def policy():
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


def _model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(8, 3, name="conv1")(inp)
    h = CaffeLRN(local_size=5, alpha=1e-4, beta=0.75, k=1.0, name="norm1")(h)
    return keras.Model(inp, {"norm1": h})


def test_the_objective_stays_float32_under_a_mixed_policy(policy):
    x = np.random.default_rng(1).uniform(-100, 100, (2, 16, 16, 3)).astype(np.float32)
    policy("float32")
    full = _model(0)
    target = full(x)["norm1"].numpy() * 0.9
    want = O.FeatureLoss(full, "norm1", target).value(O.Context(tf.constant(x))).numpy()
    policy("mixed_float16")
    half = _model(0)
    half.set_weights(full.get_weights())
    assert half(x)["norm1"].dtype == tf.float16
    got = O.FeatureLoss(half, "norm1", target).value(O.Context(tf.constant(x)))
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-2)
    assert abs(got.numpy() - want).max() / want.max() < 1e-2       # and not the NaN an un-cast float16 LRN gives
