"""Write Caffe files in the published formats: deploy prototxt (V2 ``layer`` with an Input layer, or V1 ``layers``
with ``input_dim``) and caffemodels (V2 or V1, blobs with ``shape`` or legacy num/channels/height/width) holding
seeded random weights in Caffe's own layout (OIHW, out×in). Independent of the converter under test."""
from __future__ import annotations

import numpy as np

from weights_convert.caffe_proto import NetParameter, V1_LAYER_TYPES


def _relu(n, blob):
    return (n, "ReLU", blob, blob, {})


def alexnet_layers(order="norm_pool", width=1.0):
    """The BVLC deploy.prototxt layer list: (name, type, bottom, top, params). In-place ReLU / Dropout. ``width``
    scales channels (kept even) and fc sizes like ``nets.build("alexnet", width=…)``."""
    ch = lambda c: max(2, int(round(c * width / 2)) * 2)
    L = [("conv1", "Convolution", "data", "conv1", dict(num_output=ch(96), kernel_size=11, stride=4)),
         _relu("relu1", "conv1")]

    def block(i, src):
        lrn = (f"norm{i}", "LRN", None, f"norm{i}", dict(local_size=5, alpha=1e-4, beta=0.75))
        pool = (f"pool{i}", "Pooling", None, f"pool{i}", dict(pool="MAX", kernel_size=3, stride=2))
        first, second = (lrn, pool) if order == "norm_pool" else (pool, lrn)
        return [first[:2] + (src,) + first[3:], second[:2] + (first[3],) + second[3:]], second[3]

    b, top = block(1, "conv1")
    L += b
    L += [("conv2", "Convolution", top, "conv2", dict(num_output=ch(256), pad=2, kernel_size=5, group=2)),
          _relu("relu2", "conv2")]
    b, top = block(2, "conv2")
    L += b
    L += [("conv3", "Convolution", top, "conv3", dict(num_output=ch(384), pad=1, kernel_size=3)),
          _relu("relu3", "conv3"),
          ("conv4", "Convolution", "conv3", "conv4", dict(num_output=ch(384), pad=1, kernel_size=3, group=2)),
          _relu("relu4", "conv4"),
          ("conv5", "Convolution", "conv4", "conv5", dict(num_output=ch(256), pad=1, kernel_size=3, group=2)),
          _relu("relu5", "conv5"),
          ("pool5", "Pooling", "conv5", "pool5", dict(pool="MAX", kernel_size=3, stride=2))]
    L += _fc_head("pool5", max(1, int(round(4096 * width))))
    return L


def _fc_head(src, width):
    return [("fc6", "InnerProduct", src, "fc6", dict(num_output=width)), _relu("relu6", "fc6"),
            ("drop6", "Dropout", "fc6", "fc6", dict(dropout_ratio=0.5)),
            ("fc7", "InnerProduct", "fc6", "fc7", dict(num_output=width)), _relu("relu7", "fc7"),
            ("drop7", "Dropout", "fc7", "fc7", dict(dropout_ratio=0.5)),
            ("fc8", "InnerProduct", "fc7", "fc8", dict(num_output=1000)),
            ("prob", "Softmax", "fc8", "prob", {})]


def _vgg_layers(blocks, width):
    """A Caffe VGG deploy layer list: per block (block, convolutions, channels) 3×3 pad-1 convolutions, each with an
    in-place ReLU, then a 2×2 stride-2 MAX pool; then the fc head. ``width`` scales channels and fc sizes."""
    L, src = [], "data"
    for b, n, ch in blocks:
        for i in range(1, n + 1):
            name = f"conv{b}_{i}"
            L += [(name, "Convolution", src, name, dict(num_output=max(1, round(ch * width)), pad=1, kernel_size=3)),
                  _relu(f"relu{b}_{i}", name)]
            src = name
        L.append((f"pool{b}", "Pooling", src, f"pool{b}", dict(pool="MAX", kernel_size=2, stride=2)))
        src = f"pool{b}"
    return L + _fc_head("pool5", max(1, round(4096 * width)))


def vgg16_layers(width=1.0):
    """VGG_ILSVRC_16_layers_deploy.prototxt (configuration D: 2, 2, 3, 3, 3 convolutions)."""
    return _vgg_layers(((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)), width)


def vgg19_layers(width=1.0):
    """VGG_ILSVRC_19_layers_deploy.prototxt (configuration E: 2, 2, 4, 4, 4 convolutions, MAX pooling), written
    out here from the paper's table, not from tfrestore's builder."""
    return _vgg_layers(((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512)), width)


_V1 = {"Convolution": "CONVOLUTION", "ReLU": "RELU", "LRN": "LRN", "Pooling": "POOLING", "InnerProduct":
       "INNER_PRODUCT", "Dropout": "DROPOUT", "Softmax": "SOFTMAX"}
_PARAM_FIELD = {"Convolution": "convolution_param", "LRN": "lrn_param", "Pooling": "pooling_param",
                "InnerProduct": "inner_product_param", "Dropout": "dropout_param"}


def _fill(msg, params):
    for k, v in params.items():
        field = getattr(msg, k)
        if hasattr(field, "append"):
            field.append(v)
        elif k == "pool":
            setattr(msg, k, {"MAX": 0, "AVE": 1}[v])
        else:
            setattr(msg, k, v)


def random_blobs(layers, size, seed=0):
    """He-scaled random weights in Caffe layout: conv (O, I/g, kh, kw) + bias (O,), fc (out, in) + bias (out,)."""
    rng = np.random.default_rng(seed)
    blobs, channels, hw = {}, 3, size
    for name, kind, _, _, p in layers:
        if kind == "Convolution":
            k, g, o = p["kernel_size"], p.get("group", 1), p["num_output"]
            w = rng.standard_normal((o, channels // g, k, k)) * np.sqrt(2.0 / (channels // g * k * k))
            blobs[name] = [w.astype(np.float32), rng.uniform(-0.5, 0.5, o).astype(np.float32)]
            hw = (hw + 2 * p.get("pad", 0) - k) // p.get("stride", 1) + 1
            channels = o
        elif kind == "Pooling":
            hw = int(np.ceil((hw - p["kernel_size"]) / p["stride"])) + 1
        elif kind == "InnerProduct":
            fan_in = channels * hw * hw
            w = rng.standard_normal((p["num_output"], fan_in)) * np.sqrt(2.0 / fan_in)
            blobs[name] = [w.astype(np.float32), rng.uniform(-0.5, 0.5, p["num_output"]).astype(np.float32)]
            channels, hw = p["num_output"], 1
    return blobs


def prototxt(layers, size, style="V2", name="net"):
    """Deploy prototxt text in the style of the published files."""
    lines = [f'name: "{name}"']
    if style == "V2":
        lines += ['layer {', '  name: "data"', '  type: "Input"', '  top: "data"',
                  f'  input_param {{ shape: {{ dim: 10 dim: 3 dim: {size} dim: {size} }} }}', '}']
    else:
        lines += ['input: "data"', "input_dim: 10", "input_dim: 3", f"input_dim: {size}", f"input_dim: {size}"]
    for lname, kind, bottom, top, p in layers:
        head = "layer" if style == "V2" else "layers"
        t = f'"{kind}"' if style == "V2" else _V1[kind]
        lines += [f"{head} {{", f'  name: "{lname}"', f"  type: {t}", f'  bottom: "{bottom}"', f'  top: "{top}"']
        if kind in _PARAM_FIELD and p:
            body = " ".join(f"{k}: {v}" for k, v in p.items())
            lines.append(f"  {_PARAM_FIELD[kind]} {{ {body} }}")
        lines.append("}")
    return "\n".join(lines) + "\n"


_V0 = {"Convolution": "conv", "ReLU": "relu", "LRN": "lrn", "Pooling": "pool", "InnerProduct": "innerproduct",
       "Dropout": "dropout", "Softmax": "softmax"}
_V0_FIELDS = {"kernel_size": "kernelsize"}


def caffemodel(layers, blobs, style="V2", legacy_dims=False) -> bytes:
    net = NetParameter(name="net")
    for lname, kind, bottom, top, p in layers:
        if style == "V0":   # V0: everything inside V1's `layer` field, flat parameters, legacy 4-D blobs
            w = net.layers.add(bottom=[bottom], top=[top])
            l = w.layer
            l.name, l.type = lname, _V0[kind]
            for k, v in p.items():
                setattr(l, _V0_FIELDS.get(k, k), {"MAX": 0, "AVE": 1}.get(v, v) if k == "pool" else v)
            for arr in blobs.get(lname, []):
                b = l.blobs.add()
                b.num, b.channels, b.height, b.width = (1,) * (4 - arr.ndim) + arr.shape
                b.data.extend(arr.ravel().tolist())
            continue
        if style == "V2":
            l = net.layer.add(name=lname, type=kind, bottom=[bottom], top=[top])
        else:
            l = net.layers.add(name=lname, type=V1_LAYER_TYPES[_V1[kind]], bottom=[bottom], top=[top])
        if kind in _PARAM_FIELD and p:
            _fill(getattr(l, _PARAM_FIELD[kind]), p)
        for arr in blobs.get(lname, []):
            b = l.blobs.add()
            if legacy_dims:
                dims = (1,) * (4 - arr.ndim) + arr.shape
                b.num, b.channels, b.height, b.width = dims
            else:
                b.shape.dim.extend(arr.shape)
            b.data.extend(arr.ravel().tolist())
    return net.SerializeToString()


def write(tmp_path, layers, size, style="V2", legacy_dims=False, seed=0, name="net", blobs=None):
    """Write ``<name>_deploy.prototxt`` and ``<name>.caffemodel``; the weights are ``blobs`` ({layer: [arrays]} in
    Caffe layout) or seeded random ones. Returns (prototxt, caffemodel, blobs)."""
    blobs = random_blobs(layers, size, seed) if blobs is None else blobs
    proto = tmp_path / f"{name}_deploy.prototxt"
    model = tmp_path / f"{name}.caffemodel"
    proto.write_text(prototxt(layers, size, "V2" if style == "V0" else style, name))
    model.write_bytes(caffemodel(layers, blobs, style, legacy_dims))
    _check_written(proto, model, layers, blobs, style)
    return proto, model, blobs


def _check_written(proto, model, layers, blobs, style):
    """Parse both files back (the prototxt strictly) and check layer order and every blob's size."""
    from google.protobuf import text_format
    deploy = text_format.Parse(proto.read_text(), NetParameter())
    names = [l.name for l in (deploy.layer if style != "V1" else deploy.layers)]
    assert names == (["data"] if style != "V1" else []) + [l[0] for l in layers], names
    net = NetParameter()
    net.ParseFromString(model.read_bytes())
    stored = ([(l.name, l.blobs) for l in net.layer] if style == "V2" else
              [(l.layer.name, l.layer.blobs) if style == "V0" else (l.name, l.blobs) for l in net.layers])
    assert [n for n, _ in stored] == [l[0] for l in layers]
    for n, bs in stored:
        assert [len(b.data) for b in bs] == [a.size for a in blobs.get(n, [])], n
