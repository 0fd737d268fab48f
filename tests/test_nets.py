"""Foundation: shapes, Caffe semantics (LRN, grouped conv, ceil pooling), preprocessing, weight store."""
import numpy as np
import pytest
import keras
import tensorflow as tf

from tfrestore import nets
from tfrestore.nets import weights
from tfrestore.nets.layers import CaffeLRN, Conv2D, MaxPool

# Output H(=W), C of the taps in networks.md §1, §2, §4, §6 at the standard input size. VGG19 (configuration E):
# VGG16's blocks with 4 convolutions in blocks 3–5, the same 2×2 stride-2 pools (224 → 112 → 56 → 28 → 14 → 7).
# ResNet-18 v2: v1's stage sizes (§6.3), plus the input BN (3 channels) and the final BN → ReLU before pooling.
SPEC_SHAPES = {
    "alexnet": {"conv1": (55, 96), "relu1": (55, 96), "norm1": (55, 96), "pool1": (27, 96), "conv2": (27, 256),
                "norm2": (27, 256), "pool2": (13, 256), "conv3": (13, 384), "conv4": (13, 384),
                "conv5": (13, 256), "pool5": (6, 256), "fc6": 4096, "relu7": 4096, "fc8": 1000, "prob": 1000},
    "caffenet": {"conv1": (55, 96), "pool1": (27, 96), "norm1": (27, 96), "conv2": (27, 256), "pool2": (13, 256),
                 "norm2": (13, 256), "conv5": (13, 256), "pool5": (6, 256), "fc6": 4096, "fc8": 1000},
    "vgg16": {"conv1_1": (224, 64), "pool1": (112, 64), "conv2_2": (112, 128), "pool2": (56, 128),
              "conv3_3": (56, 256), "pool3": (28, 256), "conv4_3": (28, 512), "pool4": (14, 512),
              "conv5_3": (14, 512), "pool5": (7, 512), "pool5_flat": 25088, "fc6": 4096, "fc8": 1000},
    "vgg16_bn": {"conv1_1": (224, 64), "bn1_1": (224, 64), "relu1_1": (224, 64), "pool1": (112, 64),
                 "pool5": (7, 512), "fc6": 4096, "fc8": 1000},
    "resnet18": {"conv1": (112, 64), "maxpool": (56, 64), "layer1.1": (56, 64), "layer2.0.conv1": (28, 128),
                 "layer2.0.downsample.1": (28, 128), "layer2.1": (28, 128), "layer3.1": (14, 256),
                 "layer4.1": (7, 512), "avgpool": 512, "fc": 1000},
    "vgg19": {"conv1_1": (224, 64), "relu1_1": (224, 64), "conv1_2": (224, 64), "pool1": (112, 64),
              "relu2_1": (112, 128), "conv2_2": (112, 128), "pool2": (56, 128), "relu3_1": (56, 256),
              "conv3_4": (56, 256), "relu3_4": (56, 256), "pool3": (28, 256), "relu4_1": (28, 512),
              "conv4_4": (28, 512), "pool4": (14, 512), "relu5_1": (14, 512), "conv5_4": (14, 512),
              "relu5_4": (14, 512), "pool5": (7, 512), "pool5_flat": 25088, "fc6": 4096, "relu6": 4096,
              "fc7": 4096, "fc8": 1000, "prob": 1000},
    "resnet18_v2": {"bn_data": (224, 3), "conv1": (112, 64), "bn1": (112, 64), "relu": (112, 64),
                    "maxpool": (56, 64), "layer1.0.bn1": (56, 64), "layer1.0.conv2": (56, 64), "layer1.1": (56, 64),
                    "layer2.0.relu1": (56, 64), "layer2.0.conv1": (28, 128), "layer2.0.downsample.0": (28, 128),
                    "layer2.1": (28, 128), "layer3.1": (14, 256), "layer4.1": (7, 512), "bn_final": (7, 512),
                    "relu_final": (7, 512), "avgpool": 512, "fc": 1000},
}


def _shape(model, layer):
    return tuple(model.get_layer(layer).output.shape[1:])


@pytest.mark.parametrize("net", sorted(SPEC_SHAPES))
def test_tap_shapes_match_spec(net):
    model = nets.build(net, weights=None)
    for layer, want in SPEC_SHAPES[net].items():
        want = (want,) if isinstance(want, int) else (want[0], want[0], want[1])
        assert _shape(model, layer) == want, (net, layer)
    # every tap is reachable, pre- and post-ReLU
    taps = nets.layer_names(net)
    assert len(taps) == len(set(taps))
    if net in ("alexnet", "caffenet"):
        assert {"conv1", "relu1", "fc6", "relu6", "prob"} <= set(taps)
    if net == "vgg19":      # "19 layers": 16 convolutions and 3 fc layers; every pool a max pool (networks.md §12.3)
        kinds = [type(l) for l in model.layers]
        assert kinds.count(Conv2D) == 16 and kinds.count(keras.layers.Dense) == 3 and kinds.count(MaxPool) == 5


def test_vgg19_gram_taps_are_each_blocks_first_relu_after_max_pooling():
    """The thesis' VGG score reads VGG19's conv1_1 … conv5_1 ReLU outputs, with max pooling between the blocks
    (evaluation_protocols.md §4.2, networks.md §12.3): the registry names them, and each is the ReLU of conv{b}_1,
    whose input is the max pool of the block before (the image for block 1)."""
    from tfrestore.nets.registry import GRAM_NET, GRAM_TAPS
    assert GRAM_TAPS == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert nets.spec(GRAM_NET).gram_taps == GRAM_TAPS and nets.spec(GRAM_NET).builder.__name__ == "vgg19"
    model = nets.build(GRAM_NET, weights=None, width=1 / 16)
    producer = lambda layer: layer.input._keras_history.operation
    for block, tap in enumerate(GRAM_TAPS, start=1):
        relu = model.get_layer(nets.resolve_layer(GRAM_NET, tap))
        conv = producer(relu)
        assert isinstance(relu, keras.layers.ReLU) and conv.name == f"conv{block}_1", tap
        before = producer(conv)
        if block == 1:
            assert isinstance(before, keras.layers.InputLayer)
        else:
            assert isinstance(before, MaxPool) and before.name == f"pool{block - 1}" and before.pool_size == 2, tap
    last_relu = {1: "relu1_2", 2: "relu2_2", 3: "relu3_4", 4: "relu4_4", 5: "relu5_4"}   # configuration E
    x = np.random.default_rng(0).normal(0, 50, (1, 224, 224, 3)).astype(np.float32)
    feats = nets.feature_extractor(model, [f"pool{b}" for b in last_relu] + list(last_relu.values()))(x)
    for b, relu in last_relu.items():       # every pool is Caffe's 2×2 stride-2 max, not an average
        np.testing.assert_array_equal(feats[f"pool{b}"], caffe_maxpool_numpy(feats[relu].numpy(), 2, 2))


def caffe_lrn_numpy(a, n=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe lrn_layer.cpp, written out channel by channel (NHWC)."""
    c_total = a.shape[-1]
    out = np.empty_like(a, dtype=np.float64)
    for c in range(c_total):
        lo, hi = max(0, c - n // 2), min(c_total, c + n // 2 + 1)
        scale = k + alpha / n * np.sum(a[..., lo:hi].astype(np.float64) ** 2, axis=-1)
        out[..., c] = a[..., c] * scale ** -beta
    return out


def test_lrn_matches_caffe_formula_and_tf_equivalent():
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((2, 5, 4, 13)) * 80).astype(np.float32)
    ours = CaffeLRN(5, 1e-4, 0.75, 1.0)(a).numpy()
    np.testing.assert_allclose(ours, caffe_lrn_numpy(a), rtol=2e-6)
    tf_lrn = tf.nn.local_response_normalization(a, depth_radius=2, bias=1.0, alpha=1e-4 / 5, beta=0.75).numpy()
    np.testing.assert_allclose(ours, tf_lrn, rtol=2e-5)
    # the LRN actually normalises at this activation scale (not an identity)
    assert np.max(np.abs(ours - a) / (np.abs(a) + 1)) > 0.05


def test_grouped_conv_equals_split_concat():
    model = nets.build("alexnet", weights=None, seed=3)
    conv2 = model.get_layer("conv2")
    kernel, bias = [w.numpy() for w in conv2.weights]
    assert kernel.shape == (5, 5, 48, 256) and conv2.padding == "same"     # Caffe's pad 2 folded into "same"
    x = np.random.default_rng(1).standard_normal((1, 31, 31, 96)).astype(np.float32)
    got = conv2(x).numpy()
    xp = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)])
    halves = [tf.nn.conv2d(xp[..., g * 48:(g + 1) * 48], kernel[..., g * 128:(g + 1) * 128], 1, "VALID")
              for g in range(2)]
    want = tf.concat(halves, -1).numpy() + bias
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("size,groups,padding,kernel", [
    (12, 1, "same", 3), (12, 2, "valid", 3), (104, 1, "valid", 3), (104, 2, "same", 5), (12, 1, "valid", 1)])
def test_conv_layer_gradients_match_tensorflow(size, groups, padding, kernel):
    """tfrestore's Conv2D (split groups; the input gradient as a forward convolution at maps ≥ 100²) against
    TensorFlow's own convolution and its gradients, for the image and for the kernel (training still works)."""
    from tfrestore.nets.layers import Conv2D
    rng = np.random.default_rng(size + groups)
    layer = Conv2D(6, kernel, padding=padding, groups=groups)
    x = tf.constant(rng.standard_normal((2, size, size, 4)).astype(np.float32))
    layer.build(x.shape)
    layer.kernel.assign(rng.standard_normal(layer.kernel.shape).astype(np.float32))
    layer.bias.assign(rng.standard_normal(6).astype(np.float32))
    assert layer._fast(x) == (size >= 100)
    w = tf.constant(rng.standard_normal(layer.compute_output_shape(x.shape)[1:]).astype(np.float32))

    def reference(x, k, b):
        xs, ks = tf.split(x, groups, -1), tf.split(k, groups, -1)
        y = tf.concat([tf.nn.conv2d(a, c, 1, padding.upper()) for a, c in zip(xs, ks)], -1)
        return tf.reduce_sum(w * (y + b))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = tf.reduce_sum(w * layer(x))
        ref = reference(x, layer.kernel, layer.bias)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-4)
    for a, b in zip(tape.gradient(ours, [x, layer.kernel, layer.bias]), tape.gradient(ref, [x, layer.kernel, layer.bias])):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-3 * float(np.abs(b.numpy()).max()))


@pytest.mark.parametrize("size,kernel,stride,channels", [
    (35, 11, 4, 3), (38, 11, 4, 3), (24, 7, 2, 3), (25, 7, 2, 1), (20, 3, 2, 6)])
def test_strided_stem_gradients_match_tensorflow(size, kernel, stride, channels):
    """A strided stem (AlexNet's 11×11 / 4, ResNet's 7×7 / 2) takes its input gradient in the space-to-depth
    domain: value and gradients (image, kernel, bias) against TensorFlow's strided convolution, at sizes whose last
    rows no window reaches (38: (38 − 11) mod 4 = 3) and whose padded taps overhang; 6 channels is not a stem."""
    from tfrestore.nets.layers import Conv2D
    rng = np.random.default_rng(size + kernel)
    layer = Conv2D(5, kernel, strides=stride)
    x = tf.constant(rng.standard_normal((2, size, size, channels)).astype(np.float32))
    layer.build(x.shape)
    layer.kernel.assign(rng.standard_normal(layer.kernel.shape).astype(np.float32))
    layer.bias.assign(rng.standard_normal(5).astype(np.float32))
    assert layer._stem(x) == (channels <= 4)
    w = tf.constant(rng.standard_normal(layer.compute_output_shape(x.shape)[1:]).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = tf.reduce_sum(w * layer(x))
        ref = tf.reduce_sum(w * (tf.nn.conv2d(x, layer.kernel, stride, "VALID") + layer.bias))
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-4)
    for a, b in zip(tape.gradient(ours, [x, layer.kernel, layer.bias]),
                    tape.gradient(ref, [x, layer.kernel, layer.bias])):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4 * float(np.abs(b.numpy()).max()))


def caffe_maxpool_numpy(x, k, s):
    h = x.shape[1]
    out = int(np.ceil((h - k) / s)) + 1
    res = np.empty((x.shape[0], out, out, x.shape[3]), x.dtype)
    for i in range(out):
        for j in range(out):
            res[:, i, j] = x[:, i * s:min(i * s + k, h), j * s:min(j * s + k, h)].max(axis=(1, 2))
    return res


@pytest.mark.parametrize("size", [54, 55, 224, 227])
def test_ceil_pooling(size):
    x = np.random.default_rng(size).standard_normal((1, size, size, 2)).astype(np.float32)
    got = MaxPool(3, 2)(x).numpy()
    np.testing.assert_array_equal(got, caffe_maxpool_numpy(x, 3, 2))


def test_alexnet_at_224_uses_caffe_ceil_rounding():
    model = nets.build("alexnet", weights=None, image_size=224)
    assert _shape(model, "conv1") == (54, 54, 96)
    assert _shape(model, "pool1") == (27, 27, 96)   # floor rounding would give 26


def test_preprocess_deprocess_round_trip_and_channel_order():
    img = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    for net in nets.net_names():
        x = nets.preprocess(net, img)
        np.testing.assert_allclose(nets.deprocess(net, x).numpy(), img, atol=1e-3)
    x = nets.preprocess("vgg16", img).numpy()
    np.testing.assert_allclose(x[..., 0], img[..., 2] - 103.939, atol=1e-4)  # B first, mean pixel subtracted
    x = nets.preprocess("resnet18", img[0]).numpy()
    np.testing.assert_allclose(x[..., 0], (img[0, ..., 0] / 255 - 0.485) / 0.229, atol=1e-5)
    # VGG19: the Caffe VGG input like VGG16's (BGR, 0–255, minus the mean pixel B 103.939, G 116.779, R 123.68);
    # ResNet-18 v2: v1's RGB [0,1] standardised with the ImageNet mean / std (networks.md §9)
    x = nets.preprocess("vgg19", img).numpy()
    np.testing.assert_allclose(x, img[..., ::-1] - np.array([103.939, 116.779, 123.68]), atol=1e-4)
    x = nets.preprocess("resnet18_v2", img).numpy()
    np.testing.assert_allclose(x, (img / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]),
                               atol=1e-5)


def test_alexnet_and_caffenet_differ_exactly_where_they_should():
    a = nets.build("alexnet", weights=None, seed=5)
    c = nets.build("caffenet", weights=None, seed=5)
    for la, lc in zip(a.layers, c.layers):   # the same seeds give the same weights
        for wa, wc in zip(la.weights, lc.weights):
            np.testing.assert_array_equal(wa.numpy(), wc.numpy())
    img = np.random.default_rng(0).integers(0, 256, (1, 227, 227, 3)).astype(np.uint8)
    x = nets.preprocess("alexnet", img)
    layers = ["conv1", "relu1", "norm1", "pool1", "conv2", "pool5"]
    fa = nets.feature_extractor(a, layers)(x)
    fc = nets.feature_extractor(c, layers)(x)
    np.testing.assert_allclose(fa["conv1"], fc["conv1"], rtol=1e-6)
    np.testing.assert_allclose(fa["relu1"], fc["relu1"], rtol=1e-6)
    assert fa["norm1"].shape[1] == 55 and fc["norm1"].shape[1] == 27
    # CaffeNet: norm1 = LRN(pool1); AlexNet: pool1 = pool(LRN(relu1))
    np.testing.assert_allclose(fc["norm1"], caffe_lrn_numpy(fc["pool1"].numpy()), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fa["pool1"], caffe_maxpool_numpy(caffe_lrn_numpy(fa["relu1"].numpy()), 3, 2),
                               rtol=1e-5, atol=1e-5)
    assert not np.allclose(fa["conv2"], fc["conv2"], rtol=1e-3)


def test_aliases_and_unknown_names():
    assert nets.resolve_layer("alexnet", "conv1/lin") == "conv1"
    assert nets.resolve_layer("alexnet", "conv1/relu") == "relu1"
    assert nets.resolve_layer("alexnet", "lrn2") == "norm2"
    assert nets.resolve_layer("alexnet", "l15") == "pool5"
    assert nets.resolve_layer("caffenet", "l4") == "norm1"       # M&V 2015 index: CaffeNet order
    assert nets.resolve_layer("alexnet", "l4") == "pool1"        # M&V 2016 index: AlexNet order
    assert nets.resolve_layer("vgg16", "fc6/relu") == "relu6"
    assert nets.resolve_layer("resnet18", "res2") == "layer2.1"
    assert nets.resolve_layer("resnet18", "middle1") == "layer1.0.conv1"
    with pytest.raises(ValueError, match="did you mean conv5 or conv4 or conv3.*--list"):
        nets.resolve_layer("alexnet", "conv9")
    assert nets.resolve_layer("vgg19", "conv5_4/relu") == "relu5_4"
    assert nets.resolve_layer("vgg19", "l37") == "pool5"          # 16 conv + 16 ReLU + 5 pools
    assert nets.resolve_layer("resnet18_v2", "res3") == "layer3.1"
    with pytest.raises(ValueError, match="valid nets: alexnet, caffenet, digits, resnet18, resnet18_v2, vgg16, "
                                         "vgg16_bn, vgg19"):
        nets.build("alexnet2")


def test_weight_store_round_trip_and_auto(tmp_path):
    m1 = nets.build("resnet18", weights=None, seed=1)
    path = weights.weight_path("resnet18")
    weights.save_weights(m1, path)
    m2 = nets.build("resnet18")          # 'auto' now finds the store file
    assert nets.weights_source(m2) == str(path)
    for w1, w2 in zip(m1.weights, m2.weights):
        np.testing.assert_array_equal(w1.numpy(), w2.numpy())
    x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)
    np.testing.assert_array_equal(m1(x).numpy(), m2(x).numpy())


def test_random_weights_warn_loudly():
    with pytest.warns(UserWarning, match="SEEDED RANDOM"):
        m = nets.build("resnet18")
    assert nets.weights_source(m) == "random"


def test_mismatched_weights_name_layer_and_shapes(tmp_path):
    path = tmp_path / "alex.weights.h5"
    weights.save_weights(nets.build("alexnet", weights=None), path)
    with pytest.raises(weights.WeightsMismatchError, match=r"no weights for layer 'conv1_1'"):
        nets.build("vgg16", weights=path)
    arrays, _ = weights.read_arrays(path)
    arrays["conv3"]["kernel"] = arrays["conv3"]["kernel"][:, :, :128]
    weights.save_arrays(arrays, path, "alexnet", "test")
    with pytest.raises(weights.WeightsMismatchError,
                       match=r"layer 'conv3' weight 'kernel' has shape \(3, 3, 128, 384\).*expects \(3, 3, 256, 384\)"):
        nets.build("alexnet", weights=path)
