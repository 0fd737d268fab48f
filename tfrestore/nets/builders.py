"""One small builder per paper network. Layer names are the originals' names.

Caffe nets (``alexnet``, ``caffenet``, ``vgg16``, ``vgg19``) take BGR, mean-subtracted 0–255 input, exactly like
the Caffe files; ONNX / torchvision nets (``vgg16_bn``, ``resnet18``, ``resnet18_v2``) take RGB standardised with
the ImageNet mean/std.
Use :func:`tfrestore.nets.preprocess` to get there from an RGB 0–255 image.

Every conv / fc output is its own layer (the pre-ReLU tap, e.g. ``conv1``) and every ReLU is another layer
(``relu1``): Caffe's in-place ReLU made the blob ``conv1`` hold post-ReLU values after a forward pass, tfrestore
keeps both. Dropout is omitted (inference only).
"""
from __future__ import annotations

import logging

import keras
import tensorflow as tf
from keras import layers

from .layers import CaffeLRN, ChannelMajorFlatten, Conv2D, MaxPool


class _Reached(Exception):
    """Raised by :meth:`_Initializers.tap` when the build has made its last layer; carries that layer's output."""

    def __init__(self, output):
        super().__init__(output)
        self.output = output


class _Initializers:
    """One build's state: He-normal kernels with per-layer seeds seed·1000 + 1, + 2, … in build order, so
    random-weight builds are reproducible (``seed=None`` gives unseeded He-normal), and where the build stops:
    ``up_to``, the last layer to make (None: the whole net). The layers after ``up_to`` are never created, so
    their weights never exist (AlexNet up to conv5: no fc6–fc8, 234 MB; issue 24 item 5); a kernel's seed
    depends only on the layers before it, so the layers made are those of the whole net, bit for bit."""

    def __init__(self, seed: int | None, up_to: str | None = None):
        self.seed, self.count, self.up_to = seed, 0, up_to

    def __call__(self):
        if self.seed is None:
            return GraphHeNormal()
        self.count += 1
        return GraphHeNormal(seed=self.seed * 1000 + self.count)

    def tap(self, x):
        """``x``, the output of the layer just made, passed on — or, when that layer is ``up_to``, the end of the
        build (:class:`_Reached`, which :meth:`model` turns into the model)."""
        if self.up_to is not None and x._keras_history[0].name == self.up_to:
            raise _Reached(x)
        return x

    def model(self, inp, build, name: str) -> keras.Model:
        """``keras.Model(inp, build(), name)``, or the model up to ``up_to`` when ``build`` reached it."""
        try:
            out = build()
        except _Reached as stop:
            out = stop.output
        return keras.Model(inp, out, name=name)


@keras.saving.register_keras_serializable(package="tfrestore")
class GraphHeNormal(keras.initializers.HeNormal):
    """Keras' He-normal, its ops run as one ``tf.function`` instead of op by op: the same values bit for bit, but
    the graph reuses its intermediates' buffers, where eager execution keeps three full-size temporaries alive (a
    truncated normal, × stddev, + mean). AlexNet's fc6 (151 MB) then costs one temporary, not three: the peak RSS
    of building AlexNet falls by ~160 MB per fc layer of that size (issue 24 item 5). Registered, so a model built
    with it clones and deserialises (``conv_trunk``, ``clone_model``)."""

    def __call__(self, shape, dtype=None):
        tf_log = tf.get_logger()
        level = tf_log.level
        tf_log.setLevel(logging.ERROR)   # one trace per kernel by design: TF's "retracing" notice is not for this
        try:
            return tf.function(lambda: super(GraphHeNormal, self).__call__(shape, dtype), autograph=False)()
        finally:
            tf_log.setLevel(level)


def _conv(x, name, filters, kernel, stride=1, pad=0, groups=1, bias=True, init=None):
    """A convolution with the original's symmetric zero padding ``pad``: stride 1 with pad (k − 1)/2 is exactly
    "same" (one op, no separate pad: −13 ms per VGG16 step on CPU); otherwise an explicit ``<name>_pad`` layer."""
    padding = "valid"
    if pad and stride == 1 and kernel % 2 == 1 and pad == kernel // 2:
        padding = "same"
    elif pad:
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    return Conv2D(filters, kernel, strides=stride, padding=padding, groups=groups, use_bias=bias,
                  kernel_initializer=init(), name=name)(x)


def _caffe_alexnet(order: str, image_size: int, seed: int | None, name: str, width: float = 1.0,
                   up_to: str | None = None) -> keras.Model:
    """BVLC AlexNet (``order='norm_pool'``, Krizhevsky) or CaffeNet (``order='pool_norm'``). ``width`` scales every
    channel count and fc size (kept even: the two-group convolutions split them); ``up_to``: the last layer made
    (:class:`_Initializers`)."""
    init = _Initializers(seed, up_to)
    inp = keras.Input((image_size, image_size, 3), name="data")
    t = init.tap

    def block(x, i):
        if order == "norm_pool":
            x = t(CaffeLRN(5, 1e-4, 0.75, 1.0, name=f"norm{i}")(x))
            return t(MaxPool(3, 2, name=f"pool{i}")(x))
        x = t(MaxPool(3, 2, name=f"pool{i}")(x))
        return t(CaffeLRN(5, 1e-4, 0.75, 1.0, name=f"norm{i}")(x))

    def net():
        ch = lambda c: _w(c, width, multiple=2)
        x = t(_conv(inp, "conv1", ch(96), 11, stride=4, init=init))
        x = block(t(layers.ReLU(name="relu1")(x)), 1)
        x = t(_conv(x, "conv2", ch(256), 5, pad=2, groups=2, init=init))
        x = block(t(layers.ReLU(name="relu2")(x)), 2)
        for i, groups in ((3, 1), (4, 2), (5, 2)):
            x = t(_conv(x, f"conv{i}", ch(384 if i < 5 else 256), 3, pad=1, groups=groups, init=init))
            x = t(layers.ReLU(name=f"relu{i}")(x))
        return _caffe_head(t(MaxPool(3, 2, name="pool5")(x)), init, _w(4096, width))
    return init.model(inp, net, name)


def _caffe_head(x, init, fc=4096):
    """pool5_flat → fc6 → relu6 → fc7 → relu7 → fc8 → prob, each output passed through ``init.tap``."""
    t = init.tap
    x = t(ChannelMajorFlatten(name="pool5_flat")(x))
    x = t(layers.ReLU(name="relu6")(t(layers.Dense(fc, kernel_initializer=init(), name="fc6")(x))))
    x = t(layers.ReLU(name="relu7")(t(layers.Dense(fc, kernel_initializer=init(), name="fc7")(x))))
    x = t(layers.Dense(1000, kernel_initializer=init(), name="fc8")(x))
    return layers.Softmax(name="prob")(x)


def alexnet(image_size: int = 227, seed: int | None = None, width: float = 1.0,
            up_to: str | None = None) -> keras.Model:
    """BVLC AlexNet: conv → ReLU → LRN → pool (Krizhevsky order). Input BGR − mean, 227². ``width`` < 1: a slim
    net of the same topology (fast converter tests). ``up_to``: build only as far as this layer (its output is
    the model's); the layers after it are never created."""
    return _caffe_alexnet("norm_pool", image_size, seed, "alexnet", width, up_to)


def caffenet(image_size: int = 227, seed: int | None = None, width: float = 1.0,
             up_to: str | None = None) -> keras.Model:
    """BVLC reference CaffeNet: conv → ReLU → pool → LRN (the order M&V 2015 used). Input BGR − mean, 227².
    ``width`` and ``up_to`` as for :func:`alexnet`."""
    return _caffe_alexnet("pool_norm", image_size, seed, "caffenet", width, up_to)


# (block, convolutions, channels): configuration D (VGG16) and E (VGG19) of Simonyan & Zisserman (networks.md §4).
VGG_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
VGG19_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))


def _caffe_vgg(blocks, name: str, image_size: int, seed: int | None, width: float,
               up_to: str | None = None) -> keras.Model:
    """A Caffe VGG: per block 3×3 pad-1 convolutions ``conv{b}_{i}`` each with its ReLU ``relu{b}_{i}``, then a 2×2
    stride-2 max pool ``pool{b}`` (Caffe's ceil rounding), then fc6 / fc7 / fc8 / prob. ``width`` < 1 scales every
    channel count and fc size (same topology; used to test converters quickly); ``up_to``: the last layer made
    (:class:`_Initializers`)."""
    init = _Initializers(seed, up_to)
    inp = keras.Input((image_size, image_size, 3), name="data")
    t = init.tap

    def net():
        x = inp
        for b, n, ch in blocks:
            for i in range(1, n + 1):
                x = t(_conv(x, f"conv{b}_{i}", _w(ch, width), 3, pad=1, init=init))
                x = t(layers.ReLU(name=f"relu{b}_{i}")(x))
            x = t(MaxPool(2, 2, name=f"pool{b}")(x))
        return _caffe_head(x, init, _w(4096, width))
    return init.model(inp, net, name)


def vgg16(image_size: int = 224, seed: int | None = None, width: float = 1.0,
          up_to: str | None = None) -> keras.Model:
    """Caffe VGG_ILSVRC_16_layers (configuration D: 2, 2, 3, 3, 3 convolutions). Input BGR − mean pixel, 224².

    ``width`` < 1 scales every channel count and fc size (same topology; used to test converters quickly).
    ``up_to`` as for :func:`alexnet`.
    """
    return _caffe_vgg(VGG_BLOCKS, "vgg16", image_size, seed, width, up_to)


def vgg19(image_size: int = 224, seed: int | None = None, width: float = 1.0,
          up_to: str | None = None) -> keras.Model:
    """Caffe VGG_ILSVRC_19_layers (configuration E: 2, 2, 4, 4, 4 convolutions, max pooling), the network of the
    thesis' VGG score (evaluation_protocols.md §4.2; built with max pooling, networks.md §12.3). Input BGR − mean
    pixel, 224². ``width`` as for :func:`vgg16`, ``up_to`` as for :func:`alexnet`.
    """
    return _caffe_vgg(VGG19_BLOCKS, "vgg19", image_size, seed, width, up_to)


def _w(channels: int, width: float, multiple: int = 1) -> int:
    """``channels`` scaled by ``width``, rounded to a multiple of ``multiple`` (at least one multiple)."""
    return max(multiple, int(round(channels * width / multiple)) * multiple)


def vgg16_bn(image_size: int = 224, seed: int | None = None, width: float = 1.0) -> keras.Model:
    """ONNX-zoo VGG16-BN (MXNet Gluon ``vgg16_bn``): conv(bias) → BN(eps 1e-5) → ReLU. Input RGB standardised."""
    init = _Initializers(seed)
    inp = x = keras.Input((image_size, image_size, 3), name="data")
    for b, n, ch in VGG_BLOCKS:
        for i in range(1, n + 1):
            x = _conv(x, f"conv{b}_{i}", _w(ch, width), 3, pad=1, init=init)
            x = layers.BatchNormalization(epsilon=1e-5, name=f"bn{b}_{i}")(x)
            x = layers.ReLU(name=f"relu{b}_{i}")(x)
        x = MaxPool(2, 2, ceil_mode=False, name=f"pool{b}")(x)
    x = ChannelMajorFlatten(name="pool5_flat")(x)
    x = layers.ReLU(name="relu6")(layers.Dense(_w(4096, width), kernel_initializer=init(), name="fc6")(x))
    x = layers.ReLU(name="relu7")(layers.Dense(_w(4096, width), kernel_initializer=init(), name="fc7")(x))
    x = layers.Dense(1000, kernel_initializer=init(), name="fc8")(x)
    return keras.Model(inp, x, name="vgg16_bn")


def _basic_block(x, name, filters, stride, init):
    shortcut = x
    y = _conv(x, f"{name}.conv1", filters, 3, stride=stride, pad=1, bias=False, init=init)
    y = layers.BatchNormalization(epsilon=1e-5, name=f"{name}.bn1")(y)
    y = layers.ReLU(name=f"{name}.relu1")(y)
    y = _conv(y, f"{name}.conv2", filters, 3, pad=1, bias=False, init=init)
    y = layers.BatchNormalization(epsilon=1e-5, name=f"{name}.bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(x, f"{name}.downsample.0", filters, 1, stride=stride, bias=False, init=init)
        shortcut = layers.BatchNormalization(epsilon=1e-5, name=f"{name}.downsample.1")(shortcut)
    y = layers.Add(name=f"{name}.add")([y, shortcut])
    return layers.ReLU(name=name)(y)


def resnet18(image_size: int = 224, seed: int | None = None, num_classes: int = 1000,
             width: float = 1.0) -> keras.Model:
    """ResNet-18 v1 in the torchvision / ONNX-zoo-v1 layout, PyTorch's symmetric padding. Input RGB standardised.

    Block outputs are named like torchvision modules (``layer2.0``), their insides ``layer2.0.conv1`` … and the
    stage outputs ``layer1`` … ``layer4`` are the last block of each stage (aliases in the registry). ``width``
    scales every channel count (a slim net of the same topology for fast converter tests).
    """
    init = _Initializers(seed)
    inp = keras.Input((image_size, image_size, 3), name="data")
    x = _conv(inp, "conv1", _w(64, width), 7, stride=2, pad=3, bias=False, init=init)
    x = layers.BatchNormalization(epsilon=1e-5, name="bn1")(x)
    x = layers.ReLU(name="relu")(x)
    x = MaxPool(3, 2, pad=1, ceil_mode=False, name="maxpool")(x)
    for stage, filters in enumerate([_w(c, width) for c in (64, 128, 256, 512)], start=1):
        for block in range(2):
            stride = 2 if (stage > 1 and block == 0) else 1
            x = _basic_block(x, f"layer{stage}.{block}", filters, stride, init)
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    x = layers.Dense(num_classes, kernel_initializer=init(), name="fc")(x)
    return keras.Model(inp, x, name="resnet18")


def _preact_block(x, name, filters, stride, init):
    """MXNet Gluon's ``BasicBlockV2`` (pre-activation): BN → ReLU → 3×3 conv (``stride``) → BN → ReLU → 3×3
    conv, plus the shortcut — the block input itself, or, where the block changes the channel count (and the
    stride), a 1×1 convolution without BatchNorm that branches off *after the first BN-ReLU* (networks.md §6.2).
    The block's output is the sum (no ReLU after it: the next block's BN-ReLU comes first)."""
    y = layers.BatchNormalization(epsilon=1e-5, name=f"{name}.bn1")(x)
    activated = layers.ReLU(name=f"{name}.relu1")(y)
    y = _conv(activated, f"{name}.conv1", filters, 3, stride=stride, pad=1, bias=False, init=init)
    y = layers.BatchNormalization(epsilon=1e-5, name=f"{name}.bn2")(y)
    y = layers.ReLU(name=f"{name}.relu2")(y)
    y = _conv(y, f"{name}.conv2", filters, 3, pad=1, bias=False, init=init)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(activated, f"{name}.downsample.0", filters, 1, stride=stride, bias=False, init=init)
    return layers.Add(name=name)([y, shortcut])


def resnet18_v2(image_size: int = 224, seed: int | None = None, num_classes: int = 1000,
                width: float = 1.0) -> keras.Model:
    """ResNet-18 v2 of the ONNX zoo (``resnet18-v2-7.onnx``, MXNet Gluon ``ResNetV2`` with ``BasicBlockV2``;
    networks.md §6.2). Input RGB standardised, like v1.

    ``bn_data``: a BatchNorm with neither scale nor centre on the input itself → ``conv1`` 7×7 stride 2 (no bias) →
    ``bn1`` → ``relu`` → ``maxpool`` 3, stride 2, pad 1 → four stages of two pre-activation blocks (64, 128, 256,
    512 channels; stride 2 on the first block of stages 2–4), each block named like v1's (``layer2.0``: the sum;
    inside ``layer2.0.bn1``, ``.relu1``, ``.conv1``, ``.bn2``, ``.relu2``, ``.conv2``, ``.downsample.0``) → the
    final ``bn_final`` → ``relu_final`` → ``avgpool`` → ``fc``. ``width`` scales every channel count.
    """
    init = _Initializers(seed)
    inp = keras.Input((image_size, image_size, 3), name="data")
    x = layers.BatchNormalization(epsilon=1e-5, center=False, scale=False, name="bn_data")(inp)
    x = _conv(x, "conv1", _w(64, width), 7, stride=2, pad=3, bias=False, init=init)
    x = layers.BatchNormalization(epsilon=1e-5, name="bn1")(x)
    x = layers.ReLU(name="relu")(x)
    x = MaxPool(3, 2, pad=1, ceil_mode=False, name="maxpool")(x)
    for stage, filters in enumerate([_w(c, width) for c in (64, 128, 256, 512)], start=1):
        for block in range(2):
            stride = 2 if (stage > 1 and block == 0) else 1
            x = _preact_block(x, f"layer{stage}.{block}", filters, stride, init)
    x = layers.BatchNormalization(epsilon=1e-5, name="bn_final")(x)
    x = layers.ReLU(name="relu_final")(x)
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    x = layers.Dense(num_classes, kernel_initializer=init(), name="fc")(x)
    return keras.Model(inp, x, name="resnet18_v2")


def digits(image_size: int = 28, seed: int | None = None) -> keras.Model:
    """A small CNN for the embedded digits (RGB 28×28, grey replicated; input x/255): conv1 3×3×32 → relu1 →
    pool1 2×2 → conv2 3×3×64 → relu2 → pool2 → fc3 128 → relu3 → fc4 (10 logits). Not a paper network: tfrestore
    trains it here (``tfrestore.models.classifier``) so experiments that need a *trained* classifier (adversarial
    restoration) mean something on a machine without the ImageNet weights."""
    init = _Initializers(seed)
    x_in = keras.Input((image_size, image_size, 3), name="input")
    x = x_in
    for i, filters in ((1, 32), (2, 64)):
        x = _conv(x, f"conv{i}", filters, 3, pad=1, init=init)
        x = layers.ReLU(name=f"relu{i}")(x)
        x = layers.MaxPool2D(2, name=f"pool{i}")(x)
    x = layers.Flatten(name="pool2_flat")(x)
    x = layers.Dense(128, kernel_initializer=init(), name="fc3")(x)
    x = layers.ReLU(name="relu3")(x)
    x = layers.Dense(10, kernel_initializer=init(), name="fc4")(x)
    return keras.Model(x_in, x, name="digits")
