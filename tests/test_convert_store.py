"""Converted weights are artifacts of the one store (``converted/<net>/<digest>/``, keyed by the original file's
SHA-256), installed where ``nets.build(net)`` looks: the same file converts once, a user's own weights at that
place are kept aside, a damaged stored conversion is one error line naming its file and the command. The weights
``nets.build`` then loads are checked against OpenCV's Caffe runtime, not against the converter."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import caffe_files as cf
from tfrestore import nets
from tfrestore.core import store
from tfrestore.nets import weights
from weights_convert import verify
from weights_convert.__main__ import main as convert_main

WIDTH = 1 / 16


@pytest.fixture
def slim_vgg(tmp_path, monkeypatch):
    monkeypatch.setenv("TFRESTORE_HOME", str(tmp_path / "home"))
    proto, model_file, _ = cf.write(tmp_path, cf.vgg16_layers(WIDTH), 224, "V2", False, seed=21, name="vgg")
    argv = ["caffe", "--net", "vgg16", "--prototxt", str(proto), "--caffemodel", str(model_file),
            "--width", str(WIDTH), "--quiet"]
    return proto, model_file, argv


def test_a_conversion_is_stored_once_and_installed_for_nets_build(slim_vgg, capsys):
    proto, model_file, argv = slim_vgg
    assert convert_main(argv) == 0
    (entry,) = store.entries("converted")
    assert entry["name"] == "vgg16" and entry["config"]["source_sha256"] == weights.file_sha256(model_file)
    stored = Path(entry["path"]) / "vgg16.weights.h5"
    installed = weights.weight_path("vgg16")
    assert installed.exists() and weights.file_sha256(installed) == weights.file_sha256(stored)
    assert weights.installed("vgg16").key.digest == entry["digest"]
    model = nets.build("vgg16", width=WIDTH)                         # weights="auto": the installed file
    assert nets.weights_source(model) == str(installed)
    rows = verify.compare_caffe(model, "vgg16", proto, model_file)
    assert len(rows) >= 37 and all(err <= 1e-5 for _, err in rows), rows
    capsys.readouterr()
    before = stored.stat().st_mtime_ns
    assert convert_main(argv) == 0                                   # the same file again: nothing converted
    out = capsys.readouterr().out
    assert "was converted before: using the stored" in out and "converted " + str(model_file) not in out
    assert stored.stat().st_mtime_ns == before and len(store.entries("converted")) == 1


def test_a_users_own_weights_are_kept_aside(slim_vgg):
    _, _, argv = slim_vgg
    own = weights.weight_path("vgg16")
    own.parent.mkdir(parents=True)
    own.write_bytes(b"a user's own weights")
    assert convert_main(argv) == 0
    assert own.with_name("vgg16.own-1.weights.h5").read_bytes() == b"a user's own weights"
    assert weights.installed("vgg16") is not None


def test_a_damaged_stored_conversion_is_one_error_line(slim_vgg, capsys):
    _, model_file, argv = slim_vgg
    assert convert_main(argv) == 0
    (entry,) = store.entries("converted")
    stored = Path(entry["path"]) / "vgg16.weights.h5"
    stored.write_bytes(stored.read_bytes()[:1000])                   # truncated in place
    capsys.readouterr()
    assert convert_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and str(stored) in err, err
    assert f"python -m weights_convert caffe --net vgg16 --caffemodel {model_file}" in err, err
    manifest = json.loads((Path(entry["path"]) / store.MANIFEST).read_text())
    assert manifest["files"]["vgg16.weights.h5"]["size"] > 1000


def test_a_reused_onnx_conversion_still_verifies_layer_by_layer(tmp_path, monkeypatch, capsys):
    """--verify on a conversion the store already holds compares against onnxruntime with the tensor map the
    first conversion recorded (the converter does not run again)."""
    import onnx_files as of
    monkeypatch.setenv("TFRESTORE_HOME", str(tmp_path / "home"))
    path = of.save(of.resnet18_zoo(seed=9), tmp_path / "resnet18-v1-7.onnx")
    argv = ["onnx", "--net", "resnet18", "--onnx", str(path), "--verify", "--quiet"]
    assert convert_main(argv) == 0
    capsys.readouterr()
    assert convert_main(argv) == 0
    out = capsys.readouterr().out
    assert "was converted before" in out and "layers compared" in out, out
