"""Issue 24 item 5: loading a weight file without holding it twice, and into a net built only up to a layer.

Slim nets (``width=1/16``, the same topology and layer names) keep each test to a few seconds. The reference for
every loaded weight is the file's arrays as h5py reads them (``weights.read_arrays``), or the whole-net load."""
from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from tfrestore import nets
from tfrestore.nets import weights

SLIM = {"width": 1 / 16}


@pytest.fixture(scope="module")
def caffenet_file(tmp_path_factory):
    """A slim CaffeNet's seeded random weights (seed 1) as a store file."""
    path = tmp_path_factory.mktemp("w") / "caffenet.weights.h5"
    return weights.save_weights(nets.build("caffenet", weights="random", seed=1, **SLIM), path)


def _assert_holds_file(model, path):
    arrays, _ = weights.read_arrays(path)
    n = 0
    for layer in model.layers:
        for w in layer.weights:
            np.testing.assert_array_equal(w.numpy(), arrays[layer.name][w.path.split("/")[-1]])
            n += 1
    return n


def test_load_in_slices_is_the_file_bit_for_bit(caffenet_file, monkeypatch):
    """Arrays larger than the slice size are copied a few rows at a time: every weight still equals the file's
    (a 1 kB slice: every kernel and the fc biases go through the sliced path, with a ragged last slice)."""
    monkeypatch.setattr(weights, "_SLICE_BYTES", 1000)
    model = nets.build("caffenet", weights=str(caffenet_file), seed=5, **SLIM)
    assert _assert_holds_file(model, caffenet_file) == 16


def test_the_check_reads_no_array_and_a_refused_file_changes_nothing(caffenet_file, tmp_path, monkeypatch):
    """A file with a wrong fc8 is refused from its metadata: no dataset was read, and the model keeps its
    weights (the check comes before any assignment)."""
    arrays, _ = weights.read_arrays(caffenet_file)
    arrays["fc8"]["kernel"] = arrays["fc8"]["kernel"][:, :999]
    bad = weights.save_arrays(arrays, tmp_path / "bad.weights.h5", "caffenet", "test")
    model = nets.build("caffenet", weights="random", seed=3, **SLIM)
    before = [w.numpy() for w in model.weights]
    reads = []
    original = h5py.Dataset.__getitem__
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda self, key: reads.append(self.name) or original(self, key))
    monkeypatch.setattr(h5py.Dataset, "__array__", lambda self, *a, **k: reads.append(self.name) or original(self, ()))
    with pytest.raises(weights.WeightsMismatchError, match=r"layer 'fc8' weight 'kernel' has shape \(256, 999\)"):
        weights.load_weights(model, bad)
    assert reads == []
    for b, w in zip(before, model.weights):
        np.testing.assert_array_equal(b, w.numpy())


def test_build_up_to_with_a_file_loads_the_files_layers(caffenet_file):
    """A weight file and up_to: the model ends at conv5 and holds the file's weights, the same as the whole-net
    load's, bit for bit."""
    part = nets.build("caffenet", weights=str(caffenet_file), seed=5, up_to="conv5", **SLIM)
    whole = nets.build("caffenet", weights=str(caffenet_file), seed=5, **SLIM)
    assert part.layers[-1].name == "conv5" and not nets.has_classifier(part) and nets.has_classifier(whole)
    assert _assert_holds_file(part, caffenet_file) == 10
    for layer in part.layers:
        for a, b in zip(layer.get_weights(), whole.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert nets.weights_source(part) == str(caffenet_file)


@pytest.mark.parametrize("edit, message", [
    (lambda a: a.pop("fc8"), r"no weights for layer 'fc8' of caffenet"),
    (lambda a: a["fc6"].update(kernel=a["fc6"]["kernel"][:-1]),
     r"layer 'fc6' weight 'kernel' has shape \(575, 256\) in the file but caffenet expects \(576, 256\)"),
    (lambda a: a["fc7"].pop("bias"), r"layer 'fc7' has no weight 'bias'"),
    (lambda a: a.update(fc9={"kernel": np.zeros((2, 2), np.float32)}), r"layers \['fc9'\] are not part of caffenet"),
])
def test_build_up_to_still_checks_the_file_against_the_whole_net(caffenet_file, tmp_path, edit, message):
    """Layers after up_to are never built, but a file that does not fit them is refused with the whole build's
    error."""
    arrays, _ = weights.read_arrays(caffenet_file)
    edit(arrays)
    bad = weights.save_arrays(arrays, tmp_path / "bad.weights.h5", "caffenet", "test")
    for up_to in (None, "conv5"):
        with pytest.raises(weights.WeightsMismatchError, match=message):
            nets.build("caffenet", weights=str(bad), up_to=up_to, **SLIM)


def test_build_up_to_with_a_file_gives_no_later_layer_a_value(caffenet_file, monkeypatch):
    """The whole net's shapes come from a build whose variables get no value, and stay without one: after the
    build and a stateless scope (which initialises Keras' pending variables when it ends), no kernel after
    conv5 was ever initialised."""
    from tests.test_memory import _recording_initializers
    nets.layer_names("caffenet")          # the alias table's own throw-away build, before the recording starts
    shapes = _recording_initializers(monkeypatch)
    model = nets.build("caffenet", weights=str(caffenet_file), up_to="conv5", **SLIM)
    with keras.StatelessScope():
        pass
    keras.ops.convert_to_tensor(model(np.zeros((1, 227, 227, 3), np.float32)))
    assert shapes[-1] == tuple(model.get_layer("conv5").kernel.shape) and len(shapes) == 5


def test_setup_cuts_the_net_for_random_weights_only(caffenet_file, tmp_path, monkeypatch):
    """reproductions.common.setup: a weight-file run gets the whole net (its top-1 label is a paper number), a
    random-weights run the net up to its deepest layer."""
    from reproductions import common
    built = []
    real = nets.build
    monkeypatch.setattr(nets, "build", lambda *a, **k: built.append(k.get("up_to")) or real(*a, **k, **SLIM))
    for w in (str(caffenet_file), "random"):
        s = common.setup(paper="mv2015", net="caffenet", experiment="t", weights=w, out=str(tmp_path / "o"),
                         layers=["conv3", "l13"])
        assert nets.has_classifier(s.model) == (w != "random")
    assert built == [None, "conv5"]
