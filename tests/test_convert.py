"""Weight conversion from real-format files, proved layer by layer against OpenCV's Caffe runtime and onnxruntime."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import numpy_helper

import caffe_files as cf
import onnx_files as of
from tfrestore import nets
from tfrestore.nets import weights
from weights_convert import MAX_MESSAGE, ConversionError, caffe, onnx_convert, verify
from weights_convert.__main__ import main as convert_main

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5


def _load(model, arrays):
    for l in model.layers:
        for w in l.weights:
            w.assign(arrays[l.name][w.path.split("/")[-1]])
    return model


def _assert_all_layers(rows, n_min):
    assert len(rows) >= n_min, rows
    bad = [(l, e) for l, e in rows if not e <= TOL]
    assert not bad, bad


def test_full_alexnet_v2_cli_with_verify(tmp_path):
    """Full-size BVLC AlexNet, V2 prototxt with Input layer, V2 caffemodel with blob shapes; CLI + --verify."""
    proto, model_file, _ = cf.write(tmp_path, cf.alexnet_layers("norm_pool"), 227, "V2", False, seed=1,
                                    name="bvlc_alexnet")
    out = tmp_path / "alexnet.weights.h5"
    r = subprocess.run([sys.executable, "-m", "weights_convert", "caffe", "--net", "alexnet", "--prototxt", str(proto),
                        "--caffemodel", str(model_file), "--out", str(out), "--verify", "--quiet"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "21 layers compared" in r.stdout and "fc6" in r.stdout
    m = nets.build("alexnet", weights=out)
    rows = verify.compare_caffe(m, "alexnet", proto, model_file, image="astronaut")
    _assert_all_layers(rows, 21)


def test_full_caffenet_v1_legacy_dims_without_prototxt(tmp_path):
    """Full-size CaffeNet (pool before LRN), V1 `layers` with legacy num/channels/height/width blobs; the layer
    parameters are taken from the caffemodel itself."""
    layers = cf.alexnet_layers("pool_norm")
    proto, model_file, blobs = cf.write(tmp_path, layers, 227, "V1", True, seed=2, name="caffenet")
    m = nets.build("caffenet", weights=None)
    arrays, info = caffe.convert(m, model_file, prototxt=None, progress=False)
    assert info["format"] == "V1" and info["blob_shapes"]["fc6"] == [[1, 1, 4096, 9216], [1, 1, 1, 4096]]   # as stored
    np.testing.assert_array_equal(arrays["conv2"]["kernel"], blobs["conv2"][0].transpose(2, 3, 1, 0))
    _load(m, arrays)
    _assert_all_layers(verify.compare_caffe(m, "caffenet", proto, model_file), 21)


@pytest.mark.parametrize("style,legacy", [("V1", True), ("V2", False)])
def test_slim_vgg16(tmp_path, style, legacy):
    """VGG16 topology (the gist's V1 `layers` syntax with input_dim) at 1/16 width."""
    proto, model_file, _ = cf.write(tmp_path, cf.vgg16_layers(1 / 16), 224, style, legacy, seed=3, name="vgg")
    out = tmp_path / "vgg.weights.h5"
    assert convert_main(["caffe", "--net", "vgg16", "--prototxt", str(proto), "--caffemodel", str(model_file),
                         "--out", str(out), "--width", str(1 / 16), "--quiet"]) == 0
    m = nets.build("vgg16", weights=out, width=1 / 16)
    _assert_all_layers(verify.compare_caffe(m, "vgg16", proto, model_file), 37)


def test_v0_caffemodel_converts_like_v2(tmp_path):
    """The oldest format (V0 parameters inside V1's `layer` field) gives the same weights, checked through OpenCV."""
    layers = cf.vgg16_layers(1 / 16)
    _, v0, _ = cf.write(tmp_path, layers, 224, "V0", True, seed=14, name="v0")
    proto, v2, _ = cf.write(tmp_path, layers, 224, "V2", False, seed=14, name="v2")
    m = nets.build("vgg16", weights=None, width=1 / 16)
    a0, info = caffe.convert(m, v0, prototxt=None, progress=False)
    a2, _ = caffe.convert(m, v2, prototxt=proto, progress=False)
    assert info["format"] == "V0"
    for layer in a2:
        for w in a2[layer]:
            np.testing.assert_array_equal(a0[layer][w], a2[layer][w])
    _load(m, a0)
    _assert_all_layers(verify.compare_caffe(m, "vgg16", proto, v2), 37)


def test_slim_vgg19_cli_matches_opencv(tmp_path, capsys):
    """VGG19 (configuration E) the way VGG16 is converted: the published deploy file's V1 `layers` syntax with
    input_dim, a V1 caffemodel with legacy 4-D blobs, `python -m weights_convert caffe --net vgg19` (here in-process,
    1/16 width: a full one is `test_full_vgg19_v1`, slow), then every layer against OpenCV's Caffe runtime — among
    them the VGG score's relu1_1 … relu5_1."""
    proto, model_file, _ = cf.write(tmp_path, cf.vgg19_layers(1 / 16), 224, "V1", True, seed=22,
                                    name="VGG_ILSVRC_19_layers")
    out = tmp_path / "vgg19.weights.h5"
    assert convert_main(["caffe", "--net", "vgg19", "--prototxt", str(proto), "--caffemodel", str(model_file),
                         "--out", str(out), "--width", str(1 / 16), "--quiet"]) == 0
    assert "V1" in capsys.readouterr().out
    m = nets.build("vgg19", weights=out, width=1 / 16)
    rows = verify.compare_caffe(m, "vgg19", proto, model_file, image="astronaut")
    _assert_all_layers(rows, 43)                   # 16 conv + 16 ReLU + 5 pools + fc6, relu6, fc7, relu7, fc8, prob
    assert set(nets.spec("vgg19").gram_taps) <= dict(rows).keys()
    _fails({"net": "vgg16", "kw": {"width": 1 / 16}, "caffemodel": model_file, "prototxt": proto}, None,
           r"VGG_ILSVRC_19_layers_deploy\.prototxt: the file's layers do not match vgg16: unexpected \['conv3_4'")


@pytest.mark.slow
def test_full_vgg19_v1(tmp_path):
    """Full-size VGG19 (a 575 MB caffemodel, V1 `layers`, legacy dims) against OpenCV, layer by layer."""
    proto, model_file, _ = cf.write(tmp_path, cf.vgg19_layers(1.0), 224, "V1", True, seed=23,
                                    name="VGG_ILSVRC_19_layers")
    m = nets.build("vgg19", weights=None)
    _load(m, caffe.convert(m, model_file, proto, progress=False)[0])
    _assert_all_layers(verify.compare_caffe(m, "vgg19", proto, model_file), 43)


def test_full_vgg16_v1(tmp_path):
    """Full-size VGG16 (a 553 MB caffemodel, V1 `layers`, legacy dims): about 30 s here, so it runs in CI."""
    proto, model_file, _ = cf.write(tmp_path, cf.vgg16_layers(1.0), 224, "V1", True, seed=4, name="VGG_ILSVRC_16_layers")
    m = nets.build("vgg16", weights=None)
    _load(m, caffe.convert(m, model_file, proto, progress=False)[0])
    _assert_all_layers(verify.compare_caffe(m, "vgg16", proto, model_file), 37)


# kind → (net, width, graph, layers the comparison must reach at least)
ONNX_LAYOUTS = {
    "vgg16_bn_zoo": ("vgg16_bn", 1 / 16, lambda: of.vgg16_bn_zoo(1 / 16, seed=5), 45),
    "resnet18_zoo": ("resnet18", 1.0, lambda: of.resnet18_zoo(seed=6), 45),
    "resnet18_zoo_downsample_first": ("resnet18", 1.0, lambda: of.resnet18_zoo(seed=7, downsample_first=True), 45),
    "resnet18_torchvision": ("resnet18", 1.0, lambda: of.resnet18_torchvision(seed=8), 45),
    # v2 (pre-activation, networks.md §6.2): 20 convs, 17 + 1 BatchNorms with scale, the input BN, fc; 17 ReLUs,
    # 8 block sums, 2 pools: 68 taps
    "resnet18_v2_zoo": ("resnet18_v2", 1.0, lambda: of.resnet18_v2_zoo(seed=18), 68),
    "resnet18_v2_zoo_downsample_first": ("resnet18_v2", 1 / 16,
                                         lambda: of.resnet18_v2_zoo(seed=19, downsample_first=True, width=1 / 16), 68),
}


@pytest.mark.parametrize("kind", sorted(ONNX_LAYOUTS))
def test_onnx_layouts_match_onnxruntime(tmp_path, kind):
    net, width, graph, n_layers = ONNX_LAYOUTS[kind]
    path = of.save(graph(), tmp_path / f"{kind}.onnx")
    m = nets.build(net, weights=None, width=width)
    arrays, info = onnx_convert.convert(m, path)
    _load(m, arrays)
    rows = verify.compare_onnx(m, net, path, info["tensor_of_layer"])
    _assert_all_layers(rows, n_layers)
    taps = dict(rows)
    assert nets.spec(net).logits in taps and ("relu1_1" in taps or "layer4.1" in taps)


def test_resnet18_v2_cli_and_its_input_batchnorm(tmp_path, capsys):
    """ResNet-18 v2 through the CLI (exit 0, verified against onnxruntime). Its input BatchNorm has neither scale
    nor centre (networks.md §6.2): the file's γ = 1 and β = 0 are checked, not stored; a γ ≠ 1 there is refused
    (exit 2, one line naming the node, the initializer, the value and the layer), and v1 refuses the v2 graph."""
    g = of.resnet18_v2_zoo(seed=20, width=1 / 16)
    path = of.save(g, tmp_path / "resnet18-v2-7.onnx")
    out = tmp_path / "v2.weights.h5"
    argv = ["onnx", "--net", "resnet18_v2", "--width", str(1 / 16), "--out", str(out), "--quiet"]
    assert convert_main(argv + ["--onnx", str(path), "--verify"]) == 0
    assert "68 layers compared" in capsys.readouterr().out
    stored, _ = weights.read_arrays(out)
    assert sorted(stored["bn_data"]) == ["moving_mean", "moving_variance"]
    gamma = next(t for t in g.graph.initializer if t.name == "resnetv22_batchnorm0_gamma")
    scaled = numpy_helper.to_array(gamma).copy()
    scaled[2] = 1.25
    gamma.CopyFrom(numpy_helper.from_array(scaled, gamma.name))
    bad = of.save(g, tmp_path / "scaled.onnx")
    out.unlink()
    assert convert_main(argv + ["--onnx", str(bad)]) == 2
    err = _one_error_line(capsys)
    assert re.search(r"scaled\.onnx: node 'resnetv22_batchnorm0_fwd' → layer 'bn_data': gamma "
                     r"'resnetv22_batchnorm0_gamma' holds 1 of 3 values other than 1 "
                     r"\(e\.g\. 1\.25 at index 2\), but layer 'bn_data' of the net has no gamma", err), err
    assert not out.exists()
    _fails({"net": "resnet18", "kw": {"width": 1 / 16}, "onnx": path}, None,
           r"the graph has 31 parameter units .* resnet18 has 21: unexpected extra layers")


def test_onnx_cli_writes_store_and_verifies(tmp_path, monkeypatch, capsys):
    path = of.save(of.resnet18_zoo(seed=9), tmp_path / "resnet18-v1-7.onnx")
    assert convert_main(["onnx", "--net", "resnet18", "--onnx", str(path), "--verify", "--quiet"]) == 0
    assert "layers compared" in capsys.readouterr().out
    assert weights.weight_path("resnet18").exists()
    m = nets.build("resnet18")                         # 'auto' picks up the store
    assert nets.weights_source(m) == str(weights.weight_path("resnet18"))


# ---- errors: one ConversionError naming file, layer and expectation; no partial output --------------------------

@pytest.fixture(scope="module")
def slim_vgg_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("vggfiles")
    return cf.write(d, cf.vgg16_layers(1 / 16), 224, "V2", False, seed=10, name="vgg")


def _fails(argv, out, match):
    with pytest.raises(ConversionError, match=match):
        m = nets.build(argv["net"], weights=None, **argv.get("kw", {}))
        if "onnx" in argv:
            onnx_convert.convert(m, argv["onnx"])
        else:
            caffe.convert(m, argv["caffemodel"], argv.get("prototxt"), progress=False)


def test_truncated_and_bit_flipped_caffemodels(tmp_path, slim_vgg_files):
    proto, model_file, _ = slim_vgg_files
    raw = model_file.read_bytes()
    trunc = tmp_path / "trunc.caffemodel"
    trunc.write_bytes(raw[: len(raw) * 2 // 3])
    _fails({"net": "vgg16", "kw": {"width": 1 / 16}, "caffemodel": trunc}, None, "trunc.caffemodel.*truncated or corrupt")
    flipped = bytearray(raw)
    flipped[1] ^= 0x40                     # the first layer's length prefix
    bad = tmp_path / "flipped.caffemodel"
    bad.write_bytes(bytes(flipped))
    _fails({"net": "vgg16", "kw": {"width": 1 / 16}, "caffemodel": bad}, None, "flipped.caffemodel")
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    _fails({"net": "vgg16", "kw": {"width": 1 / 16}, "caffemodel": junk}, None, "junk.caffemodel")


def test_wrong_net_missing_layer_and_shape_mismatch(tmp_path, slim_vgg_files):
    proto, model_file, _ = slim_vgg_files
    _fails({"net": "alexnet", "caffemodel": model_file}, None, r"layer 'conv1_1' .* carries weights but alexnet has no")
    _fails({"net": "vgg16", "caffemodel": model_file}, None,
           r"layer 'conv1_1'.*weight 'kernel' should have Keras shape \(3, 3, 3, 64\).*\(3, 3, 3, 4\)")
    layers = [l for l in cf.vgg16_layers(1 / 16) if l[0] != "fc7"]
    _, missing, _ = cf.write(tmp_path, layers, 224, "V2", False, name="nofc7")
    _fails({"net": "vgg16", "kw": {"width": 1 / 16}, "caffemodel": missing}, None, r"no weights for layer 'fc7'")
    caffenet_proto, caffenet_model, _ = cf.write(tmp_path, cf.alexnet_layers("pool_norm"), 227, "V2", False,
                                                 name="cn")
    _fails({"net": "alexnet", "caffemodel": caffenet_model, "prototxt": caffenet_proto}, None,
           r"pool before LRN \(CaffeNet\).*use --net caffenet")


def test_failed_conversion_leaves_no_output(tmp_path, slim_vgg_files, capsys):
    proto, model_file, _ = slim_vgg_files
    out = tmp_path / "never.weights.h5"
    assert convert_main(["caffe", "--net", "vgg16", "--caffemodel", str(model_file), "--out", str(out),
                         "--quiet"]) == 2
    assert "error:" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_onnx_errors(tmp_path):
    path = of.save(of.resnet18_zoo(seed=11), tmp_path / "r.onnx")
    _fails({"net": "vgg16_bn", "onnx": path}, None, r"r.onnx: the graph has 21 parameter units .* vgg16_bn has 16: unexpected extra")
    raw = path.read_bytes()
    (tmp_path / "t.onnx").write_bytes(raw[: len(raw) // 2])
    _fails({"net": "resnet18", "onnx": tmp_path / "t.onnx"}, None, "t.onnx: not a readable ONNX model")
    g = of.resnet18_zoo(seed=12)
    g.graph.node[2].op_type = "LeakyRelu"
    _fails({"net": "resnet18", "onnx": of.save(g, tmp_path / "u.onnx")}, None, r"unsupported op LeakyRelu")
    g = of.vgg16_bn_zoo(1 / 8, seed=13)
    _fails({"net": "vgg16_bn", "kw": {"width": 1 / 16}, "onnx": of.save(g, tmp_path / "w.onnx")}, None,
           r"node 'vgg0_conv0_fwd' → layer 'conv1_1' weight has shape \(3, 3, 3, 8\).*expects \(3, 3, 3, 4\)")


# ---- values no trained network holds (a flipped exponent bit): refused unless --allow-huge-weights ------------------

def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and len(err) <= len("error: ") + MAX_MESSAGE, err
    return err


def test_huge_caffe_weight_refused_unless_allowed(tmp_path, capsys):
    """One weight of 3e5 in conv3_2 (trained VGG16 weights are O(1)): refused by the CLI (exit 2, one line naming the
    layer, the blob, the count, the value and its index, and the flag; nothing written) and by the Python API;
    with the flag / keyword it converts to exactly the stored value."""
    layers = cf.vgg16_layers(1 / 16)
    blobs = cf.random_blobs(layers, 224, seed=15)
    blobs["conv3_2"][0][2, 1, 0, 2] = 3e5                      # Caffe layout (out, in, kh, kw)
    proto, model_file, _ = cf.write(tmp_path, layers, 224, "V2", False, name="huge", blobs=blobs)
    out = tmp_path / "huge.weights.h5"
    argv = ["caffe", "--net", "vgg16", "--width", str(1 / 16), "--prototxt", str(proto), "--caffemodel",
            str(model_file), "--out", str(out), "--quiet"]
    assert convert_main(argv) == 2
    err = _one_error_line(capsys)
    n = blobs["conv3_2"][0].size
    assert re.search(rf"huge\.caffemodel: layer 'conv3_2' blob 0 \(weights\): 1 of {n} values exceed ±1e\+04, .*"
                     r"\(largest 300000 at index \(2, 1, 0, 2\)\).* --allow-huge-weights", err), err
    assert not out.exists()
    m = nets.build("vgg16", weights=None, width=1 / 16)
    with pytest.raises(ConversionError, match=r"layer 'conv3_2' .*allow_huge_weights=True"):
        caffe.convert(m, model_file, proto, progress=False)
    arrays, _ = caffe.convert(m, model_file, proto, progress=False, allow_huge_weights=True)
    np.testing.assert_array_equal(arrays["conv3_2"]["kernel"], blobs["conv3_2"][0].transpose(2, 3, 1, 0))
    assert convert_main(argv + ["--allow-huge-weights"]) == 0
    stored = nets.build("vgg16", weights=out, width=1 / 16).get_layer("conv3_2").kernel.numpy()
    assert stored[0, 2, 1, 2] == 3e5                           # Keras layout (kh, kw, in, out)


def test_huge_onnx_weight_refused_unless_allowed(tmp_path, capsys):
    """The same for an ONNX initializer: −3e5 in the VGG16-BN zoo graph's sixth conv (conv3_2) is refused, naming
    the node, the initializer, the count, the value and the flag; with the flag / keyword it converts."""
    g = of.vgg16_bn_zoo(1 / 16, seed=16)
    init = next(t for t in g.graph.initializer if t.name == "vgg0_conv5_weight")
    w = numpy_helper.to_array(init).copy()
    w[3, 1, 2, 0] = -3e5                                       # ONNX layout (out, in, kh, kw)
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    path = of.save(g, tmp_path / "huge.onnx")
    out = tmp_path / "huge_bn.weights.h5"
    argv = ["onnx", "--net", "vgg16_bn", "--width", str(1 / 16), "--onnx", str(path), "--out", str(out), "--quiet"]
    assert convert_main(argv) == 2
    err = _one_error_line(capsys)
    assert re.search(rf"huge\.onnx: node 'vgg0_conv5_fwd' weight 'vgg0_conv5_weight': 1 of {w.size} values exceed "
                     r"±1e\+04, .*\(largest -300000 at index \(3, 1, 2, 0\)\).* --allow-huge-weights", err), err
    assert not out.exists()
    m = nets.build("vgg16_bn", weights=None, width=1 / 16)
    with pytest.raises(ConversionError, match=r"node 'vgg0_conv5_fwd' .*allow_huge_weights=True"):
        onnx_convert.convert(m, path)
    arrays, _ = onnx_convert.convert(m, path, allow_huge_weights=True)
    np.testing.assert_array_equal(arrays["conv3_2"]["kernel"], w.transpose(2, 3, 1, 0))
    assert convert_main(argv + ["--allow-huge-weights"]) == 0
    assert nets.build("vgg16_bn", weights=out, width=1 / 16).get_layer("conv3_2").kernel.numpy()[2, 0, 1, 3] == -3e5


def test_large_batchnorm_statistics_convert_by_default(tmp_path):
    """BatchNorm running statistics are in activation units and may be far larger than any parameter: ResNet-18's
    first conv scaled by 1000 with its BN's running mean ×1000 and variance ×1e6 (up to 2e6: beyond the parameters'
    limit and the running means') is the same network up to ε, converts by default and matches onnxruntime layer by
    layer. A negative running variance is refused even with allow_huge_weights."""
    g = of.resnet18_zoo(seed=17, width=1 / 16)
    scale = {"resnetv15_conv0_weight": 1e3, "resnetv15_batchnorm0_running_mean": 1e3,
             "resnetv15_batchnorm0_running_var": 1e6}
    for t in g.graph.initializer:
        if t.name in scale:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(scale[t.name]), t.name))
    path = of.save(g, tmp_path / "large_bn.onnx")
    m = nets.build("resnet18", weights=None, width=1 / 16)
    arrays, info = onnx_convert.convert(m, path)
    assert arrays["bn1"]["moving_variance"].max() > 1e6
    _load(m, arrays)
    _assert_all_layers(verify.compare_onnx(m, "resnet18", path, info["tensor_of_layer"]), 45)
    var = next(t for t in g.graph.initializer if t.name == "resnetv15_stage1_batchnorm1_running_var")
    v = numpy_helper.to_array(var).copy()
    v[1] = -0.5
    var.CopyFrom(numpy_helper.from_array(v, var.name))
    negative = of.save(g, tmp_path / "negative_var.onnx")
    with pytest.raises(ConversionError, match=r"node 'resnetv15_stage1_batchnorm1_fwd' moving_variance .*1 of 4 "
                       r"BatchNorm running variances are negative \(smallest -0\.5 at index 1\)"):
        onnx_convert.convert(m, negative, allow_huge_weights=True)


# ---- the command line's error promise: one line, exit 2, nothing left behind ---------------------------------------

def test_cli_unexpected_failure_is_one_line_and_debug_shows_it(tmp_path, slim_vgg_files, monkeypatch, capsys):
    proto, model_file, _ = slim_vgg_files
    argv = ["caffe", "--net", "vgg16", "--width", str(1 / 16), "--caffemodel", str(model_file), "--out",
            str(tmp_path / "x.weights.h5"), "--quiet"]

    def boom(*a, **k):
        raise RuntimeError("a bug\nover two lines")
    monkeypatch.setattr(caffe, "convert", boom)
    assert convert_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: unexpected failure") and "please report" in err
    with pytest.raises(RuntimeError, match="a bug"):
        convert_main(argv + ["--debug"])
    assert not list(tmp_path.iterdir())


def test_verify_without_prototxt_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    import tempfile
    _, model_file, _ = cf.write(tmp_path, cf.alexnet_layers("pool_norm", 1 / 16), 227, "V1", True, seed=21,
                                name="cn")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert convert_main(["caffe", "--net", "caffenet", "--width", str(1 / 16), "--caffemodel", str(model_file),
                         "--out", str(tmp_path / "cn.weights.h5"), "--verify", "--quiet"]) == 0
    assert "layers compared" in capsys.readouterr().out
    assert not list(scratch.iterdir())


def test_messages_name_the_right_file_and_place(tmp_path, slim_vgg_files):
    proto, model_file, _ = slim_vgg_files
    kw = {"net": "vgg16", "kw": {"width": 1 / 16}}
    bad_group = tmp_path / "g.prototxt"
    bad_group.write_text(proto.read_text().replace("kernel_size: 3", "kernel_size: 3 group: 2", 1))
    _fails({**kw, "caffemodel": model_file, "prototxt": bad_group}, None, r"g\.prototxt: layer 'conv1_1'.*group is 2")
    raw = bytearray(proto.read_bytes())
    raw[40] = 0xFF
    binary = tmp_path / "b.prototxt"
    binary.write_bytes(bytes(raw))
    _fails({**kw, "caffemodel": model_file, "prototxt": binary}, None, r"b\.prototxt: not UTF-8 text \(byte 40")
    _fails({**kw, "caffemodel": tmp_path}, None, "is a directory")
    trunc = tmp_path / "t.caffemodel"
    trunc.write_bytes(model_file.read_bytes()[:100_000])
    _fails({**kw, "caffemodel": trunc}, None, r"truncated or corrupt at byte \d+ of 100000.*after layer '\w+'")
    dilated = tmp_path / "d.prototxt"
    dilated.write_text(proto.read_text().replace("kernel_size: 3", "kernel_size: 3 dilation: 2", 1))
    _fails({**kw, "caffemodel": model_file, "prototxt": dilated}, None, r"dilation is \(2, 2\) in the file")


def test_verify_that_cannot_run_the_original_keeps_the_conversion(tmp_path, slim_vgg_files, monkeypatch, capsys):
    proto, model_file, _ = slim_vgg_files
    out = tmp_path / "v.weights.h5"

    def refuses(*a, **k):
        raise RuntimeError("OpenCV: cannot read\nthis net")
    monkeypatch.setattr(verify, "compare_caffe", refuses)
    assert convert_main(["caffe", "--net", "vgg16", "--width", str(1 / 16), "--caffemodel", str(model_file),
                         "--prototxt", str(proto), "--out", str(out), "--verify", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--verify could not run" in err and "unverified" in err
    assert out.exists()
