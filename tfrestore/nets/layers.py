"""Keras layers that reproduce Caffe / PyTorch semantics exactly.

Everything here is NHWC and works inside ``tf.function`` and under XLA.
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfrestore")
class CaffeLRN(keras.layers.Layer):
    """Caffe's cross-channel local response normalisation (``lrn_layer.cpp``).

    ``b_c = a_c * (k + alpha / n * sum_{c' in window(c)} a_c'^2) ** -beta`` where the window has ``n = local_size``
    channels centred on ``c`` and channels outside ``0..C-1`` count as zero.  Caffe divides ``alpha`` by ``n``; the
    BVLC models use ``n=5, alpha=1e-4, beta=0.75, k=1``.  The windowed sum is a matmul with a banded 0/1 matrix,
    which is exact, differentiable and XLA friendly (``tf.nn.local_response_normalization`` with depth_radius 2,
    bias 1, alpha 2e-5, beta 0.75 computes the same thing; a test checks both against numpy).
    """

    def __init__(self, local_size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if local_size % 2 != 1:
            raise ValueError(f"CaffeLRN: local_size must be odd (Caffe requires it), got {local_size}")
        self.local_size, self.alpha, self.beta, self.k = local_size, alpha, beta, k

    def build(self, input_shape):
        channels = int(input_shape[-1])
        r = self.local_size // 2
        idx = np.arange(channels)
        band = (np.abs(idx[:, None] - idx[None, :]) <= r).astype("float32")
        self._band = tf.constant(band)

    def call(self, x):
        # TF's fused LRN kernel (forward and gradient) with Caffe's constants: depth_radius = n // 2, alpha / n,
        # bias k — faster than the banded matmul on CPU (issue 15's profile: −9 ms per AlexNet step). The kernel
        # exists for float32 only; float64 takes the exact banded form. Under a mixed-precision policy (float16
        # compute) the sum of squares overflows float16 (conv1's responses reach a few hundred: 371² > 65504), so
        # half-precision inputs are normalised in float32 and handed back in their own dtype.
        if x.dtype in (tf.float16, tf.bfloat16):
            return tf.cast(self.call(tf.cast(x, tf.float32)), x.dtype)
        if x.dtype == tf.float32:
            return tf.nn.local_response_normalization(x, depth_radius=self.local_size // 2, bias=self.k,
                                                      alpha=self.alpha / self.local_size, beta=self.beta)
        window_sum = tf.einsum("...c,cd->...d", tf.square(x), tf.cast(self._band, x.dtype))
        scale = self.k + (self.alpha / self.local_size) * window_sum
        return x * tf.pow(scale, -self.beta)

    def get_config(self):
        return {**super().get_config(), "local_size": self.local_size, "alpha": self.alpha, "beta": self.beta,
                "k": self.k}


def _conv_input_grad_as_forward(x: tf.Tensor, kernel: tf.Tensor, padding: str) -> tf.Tensor:
    """A stride-1 convolution (``padding`` "VALID", or "SAME" with an odd kernel) whose input gradient is computed as
    a *forward* convolution of the output gradient with the flipped, transposed kernel ("VALID": of the gradient
    padded by k − 1; "SAME": "SAME" again) — the same numbers as ``Conv2DBackpropInput``.

    Why: on CPU, TensorFlow's own input-gradient kernel (Eigen) is up to 2.6× slower than its forward convolution
    at some shapes (VGG16 conv1_2 at 224²: 72 vs 28 ms), and an inversion step is mostly input gradients (issue
    15's profile). The kernel gradient stays TensorFlow's (``Conv2DBackpropFilter``): an inversion never asks for
    it, and unused ops are pruned from the compiled step.
    """

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            kh, kw = kernel.shape[0], kernel.shape[1]
            flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
            # "VALID": the full correlation, i.e. the gradient padded by k − 1 on every side
            full = tf.pad(dy, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]]) if padding == "VALID" else dy
            dx = tf.nn.conv2d(full, flipped, 1, padding)
            dk = tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(kernel), out_backprop=dy,
                                                 strides=[1, 1, 1, 1], padding=padding)
            return dx, dk
        return tf.nn.conv2d(x, kernel, 1, padding), grad
    return conv(x, kernel)


def _strided_input_grad_as_forward(x: tf.Tensor, kernel: tf.Tensor, stride: int) -> tf.Tensor:
    """A "VALID" stride-``s`` convolution whose input gradient is computed in the space-to-depth domain: the
    kernel, zero-padded to a multiple of ``s`` and rearranged into ``ceil(k/s)²`` taps of ``s²·C`` channels, makes
    the strided convolution a stride-1 one on ``space_to_depth(x, s)``, whose input gradient is a forward
    convolution (as in :func:`_conv_input_grad_as_forward`), mapped back by ``depth_to_space``. The same numbers
    as ``Conv2DBackpropInput`` (the padded taps are zeros).

    Why: TensorFlow's input-gradient kernel is slow when the input has few channels — a network's stem on the RGB
    image. Measured on the 2-core CPU (forward + input gradient): AlexNet conv1 (227², 11×11 / 4, 3 → 96)
    3.6 → 1.6 ms, ResNet-18 conv1 (230², 7×7 / 2, 3 → 64) 4.0 → 1.9 ms; with 64 or more input channels it is
    slower (0.85 → 1.15 ms at 57²×64), so only stems take it.
    """

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            height, width, channels = x.shape[1], x.shape[2], x.shape[3]
            kh, kw, _, filters = kernel.shape
            bh, bw = -(-kh // stride), -(-kw // stride)           # taps per axis after space-to-depth
            padded = tf.pad(kernel, [[0, bh * stride - kh], [0, bw * stride - kw], [0, 0], [0, 0]])
            # kernel[(a·s + p), (b·s + q), c] → taps[a, b, (p·s + q)·C + c]: space_to_depth's channel order
            taps = tf.reshape(tf.transpose(tf.reshape(padded, [bh, stride, bw, stride, channels, filters]),
                                           [0, 2, 1, 3, 4, 5]), [bh, bw, stride * stride * channels, filters])
            flipped = tf.transpose(tf.reverse(taps, [0, 1]), [0, 1, 3, 2])
            full = tf.pad(dy, [[0, 0], [bh - 1, bh - 1], [bw - 1, bw - 1], [0, 0]])
            dx = tf.nn.depth_to_space(tf.nn.conv2d(full, flipped, 1, "VALID"), stride)
            # rows past the last window get no gradient; rows the padded taps reached are cut off
            got_h, got_w = dx.shape[1], dx.shape[2]
            dx = dx[:, :min(height, got_h), :min(width, got_w)]
            dx = tf.pad(dx, [[0, 0], [0, max(height - got_h, 0)], [0, max(width - got_w, 0)], [0, 0]])
            dk = tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(kernel), out_backprop=dy,
                                                 strides=[1, stride, stride, 1], padding="VALID")
            return dx, dk
        return tf.nn.conv2d(x, kernel, stride, "VALID"), grad
    return conv(x, kernel)


@keras.saving.register_keras_serializable(package="tfrestore")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` (same weights, same results) computed the way that is fastest for inversions on CPU.

    - ``groups > 1``: one convolution per group on split channels, concatenated (group g's outputs in kernel
      columns g·C_out/G …). Keras runs grouped convolutions through XLA on CPU and their input gradient also
      computes the unused filter gradient: splitting took an AlexNet conv5 inversion step from ~170 to ~70 ms.
    - stride 1, no dilation, and a shape where TensorFlow's input-gradient kernel is measurably slow — maps of at
      least 100² or kernels of at least 2M weights (CPU, per group): the input gradient is a forward convolution (:func:`_conv_input_grad_as_forward`). Measured
      per layer on the 2-core CPU: VGG16 224²×64→64 72 → 28 ms, 112²×128→128 48 → 26 ms, 14²×512→512 22 → 14
      ms; AlexNet's 13²–27² maps 1.3–4.2 ms either way (slightly faster as they are).
    - a strided "valid" stem on at most 4 input channels (AlexNet's and ResNet's conv1): the input gradient in the
      space-to-depth domain (:func:`_strided_input_grad_as_forward`).
    Anything else is Keras' own convolution.
    """

    STEM_CHANNELS = 4     # at most this many input channels: the image itself (3), or a grey one

    def _stem(self, x) -> bool:
        """A strided "valid" convolution on the image (few channels), one group, static spatial sizes."""
        return (self.groups == 1 and self.padding == "valid" and self.strides[0] == self.strides[1] > 1
                and tuple(self.dilation_rate) == (1, 1) and self.data_format == "channels_last"
                and None not in x.shape[1:] and int(x.shape[-1]) <= self.STEM_CHANNELS)

    def _fast(self, x) -> bool:
        same_ok = self.padding == "valid" or all(k % 2 for k in self.kernel_size)
        if not (same_ok and tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
                and self.data_format == "channels_last" and None not in x.shape[1:3]):
            return False
        out_pixels = int(np.prod(self.compute_output_shape(x.shape)[1:3]))
        return out_pixels >= 100 * 100 or int(np.prod(self.kernel.shape)) // self.groups >= 2_000_000

    def call(self, x):
        if self._stem(x):
            y = _strided_input_grad_as_forward(x, tf.convert_to_tensor(self.kernel), self.strides[0])
            y = tf.nn.bias_add(y, self.bias) if self.use_bias else y
            return self.activation(y) if self.activation is not None else y
        fast = self._fast(x)
        if self.groups == 1 and not fast:
            return super().call(x)
        xs = tf.split(x, self.groups, axis=-1) if self.groups > 1 else [x]
        kernel = tf.convert_to_tensor(self.kernel)     # a tensor: the custom gradient sees no variable
        ks = tf.split(kernel, self.groups, axis=-1) if self.groups > 1 else [kernel]
        if fast:
            parts = [_conv_input_grad_as_forward(a, k, self.padding.upper()) for a, k in zip(xs, ks)]
        else:
            parts = [tf.nn.conv2d(a, k, self.strides, self.padding.upper(), dilations=self.dilation_rate)
                     for a, k in zip(xs, ks)]
        y = parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)
        if self.use_bias:
            y = tf.nn.bias_add(y, self.bias)
        return self.activation(y) if self.activation is not None else y


def pool_output_size(size: int, kernel: int, stride: int, pad: int = 0, ceil_mode: bool = True) -> int:
    """Output length of a pooling window, with Caffe's rounding (ceil, then drop a window starting in the padding)."""
    if ceil_mode:
        out = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
        if pad > 0 and (out - 1) * stride >= size + pad:
            out -= 1
    else:
        out = (size + 2 * pad - kernel) // stride + 1
    return out


@keras.saving.register_keras_serializable(package="tfrestore")
class MaxPool(keras.layers.Layer):
    """Max pooling with explicit symmetric padding and Caffe's ceil or PyTorch's floor rounding.

    Padding uses the dtype's lowest value, so padded cells never win the max (every window holds a real pixel).
    ``ceil_mode=True`` is Caffe's ``pooling_layer.cpp`` (at 224² AlexNet pool1 gives 27, floor would give 26);
    ``ceil_mode=False, pad=1`` is ``torch.nn.MaxPool2d(3, 2, 1)`` of ResNet.
    """

    def __init__(self, pool_size: int, strides: int, pad: int = 0, ceil_mode: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.strides, self.pad, self.ceil_mode = pool_size, strides, pad, ceil_mode

    def _extra(self, size: int) -> int:
        out = pool_output_size(size, self.pool_size, self.strides, self.pad, self.ceil_mode)
        return max((out - 1) * self.strides + self.pool_size - size - 2 * self.pad, 0)

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        if h is None or w is None:
            raise ValueError(f"{self.name}: MaxPool needs static spatial sizes, got {x.shape}")
        ph, pw = self._extra(h), self._extra(w)
        p = self.pad
        if p or ph or pw:
            x = tf.pad(x, [[0, 0], [p, p + ph], [p, p + pw], [0, 0]], constant_values=x.dtype.min)
        return tf.nn.max_pool2d(x, self.pool_size, self.strides, "VALID")

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        f = lambda s: None if s is None else pool_output_size(s, self.pool_size, self.strides, self.pad,
                                                              self.ceil_mode)
        return (n, f(h), f(w), c)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides, "pad": self.pad,
                "ceil_mode": self.ceil_mode}


@keras.saving.register_keras_serializable(package="tfrestore")
class ChannelMajorFlatten(keras.layers.Layer):
    """Flatten NHWC to a vector indexed like Caffe/PyTorch (c·H·W + h·W + w).

    Keeping the original flatten order means fc6 weights are copied without reshuffling and an fc6 target vector
    means the same thing as in the original code.
    """

    def call(self, x):
        x = tf.transpose(x, [0, 3, 1, 2])
        return tf.reshape(x, [tf.shape(x)[0], -1])

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if None in (h, w, c) else h * w * c)
