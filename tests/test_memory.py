"""Issue 24 item 5 (memory): the pieces that lower a run's peak keep its values.

No RSS thresholds here (flaky on a shared machine): each test checks that the leaner path gives what the old one
gave, against an independent reference."""
from __future__ import annotations

import numpy as np

from tfrestore.optimize.inversion import distinct_rows


def test_distinct_rows_is_np_unique_over_rows():
    """The originals shown in a figure: the distinct images in np.unique(axis=0)'s order, duplicates dropped."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    base[1, 0, 0, 0], base[2, 0, 0, 0] = 0, 0            # rows that tie on their first pixel
    stack = base[[2, 0, 3, 0, 1, 2, 2]]
    want = np.unique(stack.reshape(len(stack), -1), axis=0)
    got = distinct_rows(stack)
    assert len(got) == len(want) == 4
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    one = distinct_rows(np.repeat(base[:1], 5, 0))
    assert len(one) == 1 and np.array_equal(one[0], base[0].ravel())
