"""The benchmark's reference: the Keras net's own weights as a PyTorch net, for the plain M&V 2015 loop
(:mod:`benchmarks.torch_loop`, which the benchmark runs in a process of its own).

    torch_net = chain_to_torch(model, "conv5")           # nn.Sequential up to the tap, NCHW, the same weights

Only chain networks (AlexNet, CaffeNet, VGG16) are translated: each Keras layer maps to its PyTorch twin
(``ZeroPadding2D`` and "same" become the conv's symmetric padding, ``CaffeLRN`` is ``nn.LocalResponseNorm`` — which divides α
by the window like Caffe — and the ceil-mode ``MaxPool`` is ``nn.MaxPool2d(ceil_mode=True)``). The loop is the
textbook one: autograd on the image only, heavy-ball momentum, nothing compiled, so the ratio to it says what the
engine costs over "just writing it in PyTorch".
"""
from __future__ import annotations

import keras
import numpy as np
import torch
from torch import nn

from tfrestore.nets.layers import CaffeLRN, ChannelMajorFlatten, MaxPool

from benchmarks.torch_loop import MV2015Loop  # noqa: F401  (re-exported: the loop itself needs no TensorFlow)


def chain_to_torch(model: keras.Model, tap: str) -> nn.Sequential:
    """The layers of a chain Keras net up to and including ``tap`` as an ``nn.Sequential`` taking BGR NCHW input."""
    modules, pad = [], 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.ZeroPadding2D):
            pad = int(layer.padding[0][0])
        elif isinstance(layer, keras.layers.Conv2D):
            kernel = np.asarray(layer.kernel)                       # [kh, kw, cin/g, cout]
            if layer.padding == "same":                            # stride 1, odd kernel: symmetric (k − 1)/2
                pad = kernel.shape[0] // 2
            conv = nn.Conv2d(kernel.shape[2] * layer.groups, kernel.shape[3], kernel.shape[:2],
                             stride=layer.strides, padding=pad, groups=layer.groups, bias=layer.use_bias)
            conv.weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
            if layer.use_bias:
                conv.bias.data = torch.from_numpy(np.asarray(layer.bias).copy())
            modules.append(conv)
            pad = 0
        elif isinstance(layer, keras.layers.ReLU):
            modules.append(nn.ReLU())
        elif isinstance(layer, CaffeLRN):
            modules.append(nn.LocalResponseNorm(layer.local_size, layer.alpha, layer.beta, layer.k))
        elif isinstance(layer, MaxPool):
            modules.append(nn.MaxPool2d(layer.pool_size, layer.strides, layer.pad, ceil_mode=layer.ceil_mode))
        elif isinstance(layer, ChannelMajorFlatten):
            modules.append(nn.Flatten())
        elif isinstance(layer, keras.layers.Dense):
            kernel = np.asarray(layer.kernel)                       # [in, out]
            fc = nn.Linear(*kernel.shape)
            fc.weight.data = torch.from_numpy(kernel.T.copy())
            fc.bias.data = torch.from_numpy(np.asarray(layer.bias).copy())
            modules.append(fc)
        else:
            raise ValueError(f"no PyTorch twin for {type(layer).__name__} ('{layer.name}'): chain nets only")
        if layer.name == tap:
            net = nn.Sequential(*modules).eval()
            for p in net.parameters():
                p.requires_grad_(False)
            return net
    raise ValueError(f"tap '{tap}' is not in {model.name}")


def forward_flops(net: nn.Sequential, size: int) -> int:
    """Multiply-adds × 2 of one forward pass of one image (convolutions and fc layers; the rest is noise)."""
    flops, x = 0, torch.zeros(1, 3, size, size)
    with torch.no_grad():
        for m in net:
            y = m(x)
            if isinstance(m, nn.Conv2d):
                flops += 2 * y.numel() * m.weight[0].numel()
            elif isinstance(m, nn.Linear):
                flops += 2 * m.weight.numel()
            x = y
    return flops
