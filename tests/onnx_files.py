"""ONNX graphs shaped like the zoo's MXNet exports (vgg16-bn-7, resnet18-v1-7, resnet18-v2-7: opset 7, BN spatial=0,
MXNet names)
and like a torchvision export of ResNet-18 (opset 13, BN folded into conv biases), built with onnx.helper and
seeded random weights in ONNX's own layout (OIHW, Gemm (out, in) with transB=1)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    def __init__(self, seed):
        self.rng, self.nodes, self.inits = np.random.default_rng(seed), [], []

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    def conv(self, name, x, cin, cout, k, stride=1, pad=0, bias=True, wname=None):
        w = self.rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))
        inputs = [x, self.init(wname or f"{name}_weight", w)]
        if bias:
            inputs.append(self.init(f"{name}_bias", self.rng.uniform(-0.2, 0.2, cout)))
        self.nodes.append(helper.make_node("Conv", inputs, [f"{name}_fwd"], name=f"{name}_fwd", kernel_shape=[k, k],
                                           strides=[stride, stride], pads=[pad] * 4, group=1, dilations=[1, 1]))
        return f"{name}_fwd"

    def bn(self, name, x, c, spatial0=True, fixed=False):
        """BatchNormalization; ``fixed``: MXNet's ``scale=False, center=False`` (γ stored as 1, β as 0)."""
        gamma = np.ones(c) if fixed else self.rng.uniform(0.5, 1.5, c)
        beta = np.zeros(c) if fixed else self.rng.uniform(-0.3, 0.3, c)
        p = [self.init(f"{name}_gamma", gamma), self.init(f"{name}_beta", beta),
             self.init(f"{name}_running_mean", self.rng.uniform(-0.3, 0.3, c)),
             self.init(f"{name}_running_var", self.rng.uniform(0.5, 2.0, c))]
        kw = dict(epsilon=1e-5, momentum=0.9)
        if spatial0:
            kw["spatial"] = 0
        self.nodes.append(helper.make_node("BatchNormalization", [x] + p, [f"{name}_fwd"], name=f"{name}_fwd", **kw))
        return f"{name}_fwd"

    def op(self, op, name, inputs, **kw):
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **kw))
        return name

    def dense(self, name, x, cin, cout):
        w = self.rng.standard_normal((cout, cin)) * np.sqrt(2.0 / cin)
        return self.op("Gemm", f"{name}_fwd", [x, self.init(f"{name}_weight", w),
                                               self.init(f"{name}_bias", self.rng.uniform(-0.2, 0.2, cout))],
                       alpha=1.0, beta=1.0, transA=0, transB=1)

    def model(self, out, size, opset, name):
        inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, size, size])]
        if opset <= 7:   # IR version 3 (the zoo's files) lists every initializer among the graph inputs too
            inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in self.inits]
        graph = helper.make_graph(self.nodes, name, inputs,
                                  [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 1000])], self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests")
        m.ir_version = 3 if opset <= 7 else 7
        return m


def vgg16_bn_zoo(width=1.0, seed=0, size=224):
    """vgg16-bn-7.onnx layout: vgg0_conv{i} (with bias) → vgg0_batchnorm{i} (spatial=0) → relu → pools → dense."""
    b, x, cin, i = _Builder(seed), "data", 3, 0
    for blk, (n, ch) in enumerate(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))):
        ch = max(1, round(ch * width))
        for _ in range(n):
            x = b.conv(f"vgg0_conv{i}", x, cin, ch, 3, pad=1)
            x = b.bn(f"vgg0_batchnorm{i}", x, ch)
            x = b.op("Relu", f"vgg0_relu{i}_fwd", [x])
            cin, i = ch, i + 1
        x = b.op("MaxPool", f"vgg0_pool{blk}_fwd", [x], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0])
    fc, feat = max(1, round(4096 * width)), cin * (size // 32) ** 2
    for j, (fin, fout, flat) in enumerate(((feat, fc, 60), (fc, fc, 65), (fc, 1000, 70))):
        x = b.op("Flatten", f"flatten_{flat}", [x])
        x = b.dense(f"vgg0_dense{j}", x, fin, fout)
        if j < 2:
            x = b.op("Relu", f"vgg0_dense{j}_relu_fwd", [x])
            x = b.op("Dropout", f"vgg0_dropout{j}_fwd", [x], ratio=0.5)
    return b.model(x, size, 7, "vgg16_bn")


def resnet18_zoo(seed=0, size=224, downsample_first=False, width=1.0):
    """resnet18-v1-7.onnx layout (MXNet BasicBlockV1, prefix resnetv15_; stage conv k=2 is the downsample).
    ``width`` scales the channels like ``nets.build("resnet18", width=…)``."""
    b = _Builder(seed)
    w = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
    x = b.conv("resnetv15_conv0", "data", 3, w[0], 7, stride=2, pad=3, bias=False)
    x = b.bn("resnetv15_batchnorm0", x, w[0])
    x = b.op("Relu", "resnetv15_relu0_fwd", [x])
    x = b.op("MaxPool", "resnetv15_pool0_fwd", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = w[0]
    for s, ch in enumerate(w, start=1):
        p, k = f"resnetv15_stage{s}_", 0
        for blk in range(2):
            stride = 2 if (s > 1 and blk == 0) else 1
            block_in = x
            ds = None
            if cin != ch and downsample_first:
                ds = b.bn(f"{p}batchnorm2", b.conv(f"{p}conv2", block_in, cin, ch, 1, stride, bias=False), ch)
            y = b.bn(f"{p}batchnorm{k}", b.conv(f"{p}conv{k}", block_in, cin, ch, 3, stride, 1, bias=False), ch)
            y = b.op("Relu", f"{p}relu{k}_fwd", [y])
            y = b.bn(f"{p}batchnorm{k + 1}", b.conv(f"{p}conv{k + 1}", y, ch, ch, 3, 1, 1, bias=False), ch)
            k += 2
            if cin != ch and not downsample_first:
                ds = b.bn(f"{p}batchnorm{k}", b.conv(f"{p}conv{k}", block_in, cin, ch, 1, stride, bias=False), ch)
            if cin != ch:
                k += 1
            x = b.op("Add", f"{p}_plus{blk}", [y, ds if ds else block_in])
            x = b.op("Relu", f"{p}activation{blk}", [x])
            cin = ch
    x = b.op("GlobalAveragePool", "resnetv15_pool1_fwd", [x])
    x = b.op("Flatten", "flatten_170", [x])
    x = b.dense("resnetv15_dense0", x, cin, 1000)
    return b.model(x, size, 7, "resnet18_v1")


def resnet18_v2_zoo(seed=0, size=224, downsample_first=False, width=1.0):
    """resnet18-v2-7.onnx layout (MXNet ``ResNetV2`` / ``BasicBlockV2``, prefix resnetv22_; networks.md §6.2): a BN
    with fixed γ = 1, β = 0 on the input data (``scale=False, center=False``), conv0 → batchnorm1 → relu0 → pool0,
    pre-activation blocks (stage BN → activation → conv, twice; the 1×1 downsample conv k = 2 of stages 2–4 reads
    the first activation and has no BN), the sum with no ReLU after it, then batchnorm2 → relu1 → pool1 (global) →
    dense0. Nodes in the DFS order of an MXNet export (the downsample after the block's second conv), or with
    ``downsample_first`` right after the first activation. ``width`` scales the channels like
    ``nets.build("resnet18_v2", width=…)``."""
    b = _Builder(seed)
    w = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
    x = b.bn("resnetv22_batchnorm0", "data", 3, fixed=True)
    x = b.conv("resnetv22_conv0", x, 3, w[0], 7, stride=2, pad=3, bias=False)
    x = b.bn("resnetv22_batchnorm1", x, w[0])
    x = b.op("Relu", "resnetv22_relu0_fwd", [x])
    x = b.op("MaxPool", "resnetv22_pool0_fwd", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = w[0]
    for s, ch in enumerate(w, start=1):
        p, k = f"resnetv22_stage{s}_", 0
        for blk in range(2):
            stride = 2 if (s > 1 and blk == 0) else 1
            act = b.op("Relu", f"{p}activation{2 * blk}", [b.bn(f"{p}batchnorm{2 * blk}", x, cin)])
            ds = None
            if cin != ch and downsample_first:
                ds = b.conv(f"{p}conv{k + 2}", act, cin, ch, 1, stride, bias=False)
            y = b.conv(f"{p}conv{k}", act, cin, ch, 3, stride, 1, bias=False)
            y = b.op("Relu", f"{p}activation{2 * blk + 1}", [b.bn(f"{p}batchnorm{2 * blk + 1}", y, ch)])
            y = b.conv(f"{p}conv{k + 1}", y, ch, ch, 3, 1, 1, bias=False)
            k += 2
            if cin != ch and not downsample_first:
                ds = b.conv(f"{p}conv{k}", act, cin, ch, 1, stride, bias=False)
            if cin != ch:
                k += 1
            x = b.op("Add", f"{p}_plus{blk}", [y, ds if ds else x])
            cin = ch
    x = b.op("Relu", "resnetv22_relu1_fwd", [b.bn("resnetv22_batchnorm2", x, cin)])
    x = b.op("GlobalAveragePool", "resnetv22_pool1_fwd", [x])
    x = b.op("Flatten", "resnetv22_flatten0_fwd", [x])
    x = b.dense("resnetv22_dense0", x, cin, 1000)
    return b.model(x, size, 7, "resnet18_v2")


def resnet18_torchvision(seed=0, size=224, width=1.0):
    """A torchvision export with BN folded into the conv biases (torch.onnx constant folding), opset 13.
    ``width`` scales the channels like ``nets.build("resnet18", width=…)``."""
    b = _Builder(seed)
    w = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
    cnt = [100]

    def conv(x, cin, cout, k, stride, pad, name):
        cnt[0] += 1
        return b.conv(name, x, cin, cout, k, stride, pad, bias=True, wname=f"onnx::Conv_{cnt[0]}")

    x = conv("data", 3, w[0], 7, 2, 3, "/conv1/Conv")
    x = b.op("Relu", "/relu/Relu_out", [x])
    x = b.op("MaxPool", "/maxpool/MaxPool_out", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = w[0]
    for s, ch in enumerate(w, start=1):
        for blk in range(2):
            stride = 2 if (s > 1 and blk == 0) else 1
            pre = f"/layer{s}/layer{s}.{blk}"
            y = conv(x, cin, ch, 3, stride, 1, f"{pre}/conv1/Conv")
            y = b.op("Relu", f"{pre}/relu/Relu_out", [y])
            y = conv(y, ch, ch, 3, 1, 1, f"{pre}/conv2/Conv")
            sc = conv(x, cin, ch, 1, stride, 0, f"{pre}/downsample/downsample.0/Conv") if cin != ch else x
            x = b.op("Add", f"{pre}/Add_out", [y, sc])
            x = b.op("Relu", f"{pre}/relu_1/Relu_out", [x])
            cin = ch
    x = b.op("GlobalAveragePool", "/avgpool/GlobalAveragePool_out", [x])
    x = b.op("Flatten", "/Flatten_out", [x], axis=1)
    fc = b.rng.standard_normal((1000, cin)) * np.sqrt(2.0 / cin)
    x = b.op("Gemm", "logits", [x, b.init("fc.weight", fc), b.init("fc.bias", b.rng.uniform(-0.2, 0.2, 1000))],
             alpha=1.0, beta=1.0, transB=1)
    return b.model(x, size, 13, "main_graph")


def save(model, path):
    """Check the graph with ONNX's own checker and shape inference (catches a broken generator), then save."""
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    logits = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.output)}[model.graph.output[0].name]
    assert logits == [1, 1000], f"the generated graph does not end in 1000 class scores: {logits}"
    onnx.save(model, str(path))
    return path
