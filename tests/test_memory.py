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


def _recording_initializers(monkeypatch) -> list[tuple[int, ...]]:
    """Every kernel shape the builders' He-normal initialiser makes from now on."""
    from tfrestore.nets import builders
    shapes, original = [], builders.GraphHeNormal.__call__

    def record(self, shape, dtype=None):
        shapes.append(tuple(shape))
        return original(self, shape, dtype)
    monkeypatch.setattr(builders.GraphHeNormal, "__call__", record)
    return shapes


def test_build_up_to_a_layer_never_makes_the_layers_after_it(monkeypatch):
    """nets.build(up_to=) with random weights: no kernel after conv5 is ever initialised, the model ends at conv5
    and its weights are the whole net's, bit for bit (a slim AlexNet of the same topology)."""
    from tfrestore import nets
    whole = nets.build("alexnet", weights="random", seed=2, width=1 / 16)
    nets.layer_names("alexnet")     # the alias table's own throw-away slim build, before the recording starts
    shapes = _recording_initializers(monkeypatch)
    part = nets.build("alexnet", weights="random", seed=2, width=1 / 16, up_to="l13")     # M&V's l13 = conv5
    conv5 = tuple(whole.get_layer("conv5").kernel.shape)
    assert shapes[-1] == conv5 and len(shapes) == 5                # conv1 … conv5, then nothing
    assert part.layers[-1].name == "conv5" and "fc6" not in [l.name for l in part.layers]
    assert not nets.has_classifier(part) and nets.has_classifier(whole)
    for layer in part.layers:
        for a, b in zip(layer.get_weights(), whole.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_build_up_to_with_a_weight_file_builds_the_whole_net(tmp_path):
    """A weight file is checked against every layer, so up_to does not cut a net whose weights are loaded."""
    from tfrestore import nets
    from tfrestore.nets import weights as store
    path = store.save_weights(nets.build("caffenet", weights="random", seed=1, width=1 / 16), tmp_path / "c.weights.h5")
    model = nets.build("caffenet", weights=str(path), width=1 / 16, up_to="conv5")
    assert model.layers[-1].name == "prob" and nets.has_classifier(model)


def test_evaluate_without_classifier_keeps_the_feature_errors():
    """The truncated model gives the whole model's feature errors; its top-1 fields are None, the summary's too."""
    from tfrestore import nets
    from tfrestore.optimize.inversion import Extractors, evaluate, summarise
    whole = nets.build("alexnet", weights="random", seed=0, width=1 / 16)
    part = nets.build("alexnet", weights="random", seed=0, width=1 / 16, up_to="pool5")
    rng = np.random.default_rng(1)
    x0, rec = (rng.normal(0, 40, (2, 227, 227, 3)).astype(np.float32) for _ in range(2))
    layers = ["conv3", "pool5"]
    full_rows = evaluate(Extractors(whole), "alexnet", layers, x0, rec)
    rows = evaluate(Extractors(part), "alexnet", layers, x0, rec)
    assert [r["rel_sq_feature_error"] for r in rows] == [r["rel_sq_feature_error"] for r in full_rows]
    assert isinstance(full_rows[0]["top1_kept"], bool)
    assert all(r[k] is None for r in rows for k in ("top1_original", "top1_reconstruction", "top1_kept"))
    s = summarise(rows)
    assert s["top1_kept"] is None and s["top1_kept_share"] is None and s["problems"] == 2


def test_each_graph_is_freed_before_the_next_is_built(monkeypatch, tmp_path):
    """A run of several graphs (one per M&V layer group) frees each finished Optimization before it builds the
    next, even where Python's cycle collector would not have run yet (here: disabled), so the next graph reuses
    its memory; the run itself is unchanged. A slim random AlexNet, 2 steps, two layer groups."""
    import contextlib
    import gc
    import io
    import weakref
    from reproductions import common, mv2015, paper
    from tfrestore import nets

    whole_build = nets.build
    monkeypatch.setattr(nets, "build", lambda name, **kw: whole_build(name, width=1 / 16, **kw))
    made, alive_at_next = [], []
    from_problem = common.Optimization.from_problem

    def record(*args, **kwargs):
        alive_at_next.append(sum(ref() is not None for ref in made))
        run = from_problem(*args, **kwargs)
        made.append(weakref.ref(run))
        return run
    monkeypatch.setattr(common.Optimization, "from_problem", record)
    flags = mv2015.Flags(net="alexnet", layers=("conv1", "conv3"), steps=2, weights="random")
    ctx = paper.RunContext.create(mv2015.default_out(flags), out=tmp_path, seed=0, progress=False)
    gc.disable()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            metrics = mv2015.run(flags, ctx)
    finally:
        gc.enable()
    assert len(metrics["config"]["graphs"]) == 2 and alive_at_next == [0, 0]
