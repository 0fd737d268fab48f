"""The deep image prior's skip generator against the reference code's ``skip(...)`` rebuilt in PyTorch.

``_reference_skip`` below is ``models/skip.py`` and ``models/common.py`` of DmitryUlyanov/deep-image-prior written
out with torch modules (Sequential / Concat, the order the reference builds them in): nothing of tfrestore's
generator is used. The Keras generator's weights are copied into it layer by layer (a shape mismatch there is an
architecture difference), and both must then give the same parameter count and the same output, batch norm on
batch statistics as the reference runs it.
"""
import numpy as np
import pytest
import torch
from torch import nn

from tfrestore.models import dip


class _Concat(nn.Module):
    def __init__(self, *branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], dim=1)


def _conv(in_f, out_f, k, stride=1, pad="zero", downsample_mode="stride"):
    layers, to_pad = [], (k - 1) // 2
    pool = None
    if stride != 1 and downsample_mode == "avg":
        pool, stride = nn.AvgPool2d(2, 2), 1
    if pad == "reflection":
        layers.append(nn.ReflectionPad2d(to_pad))
        to_pad = 0
    layers.append(nn.Conv2d(in_f, out_f, k, stride, padding=to_pad, bias=True))
    return nn.Sequential(*layers, *([pool] if pool else []))


def _reference_skip(cin, cout, down, up, skip, k_down, k_up, k_skip=1, pad="zero", upsample="nearest",
                    downsample="stride"):
    act = lambda: nn.LeakyReLU(0.2)        # noqa: E731
    model = nn.Sequential()
    tmp, depth = model, cin
    for i in range(len(down)):
        deeper, skip_branch = nn.Sequential(), nn.Sequential()
        tmp.append(_Concat(skip_branch, deeper) if skip[i] else deeper)
        tmp.append(nn.BatchNorm2d(skip[i] + (up[i + 1] if i < len(down) - 1 else down[i])))
        if skip[i]:
            skip_branch.extend([_conv(depth, skip[i], k_skip, pad=pad), nn.BatchNorm2d(skip[i]), act()])
        deeper.extend([_conv(depth, down[i], k_down[i], 2, pad, downsample), nn.BatchNorm2d(down[i]), act(),
                       _conv(down[i], down[i], k_down[i], pad=pad), nn.BatchNorm2d(down[i]), act()])
        deeper_main = nn.Sequential()
        if i < len(down) - 1:
            deeper.append(deeper_main)
            k = up[i + 1]
        else:
            k = down[i]
        deeper.append(nn.Upsample(scale_factor=2, mode=upsample))
        tmp.extend([_conv(skip[i] + k, up[i], k_up[i], 1, pad), nn.BatchNorm2d(up[i]), act(),
                    _conv(up[i], up[i], 1, pad=pad), nn.BatchNorm2d(up[i]), act()])
        depth, tmp = down[i], deeper_main
    model.extend([_conv(up[0], cout, 1, pad=pad), nn.Sigmoid()])
    return model


def _keras_order(i, scales):
    """tfrestore's layer names in the order the reference's modules are traversed."""
    names = [f"skip{i}_conv", f"skip{i}_bn", f"down{i}_conv1", f"down{i}_1_bn", f"down{i}_conv2", f"down{i}_2_bn"]
    if i + 1 < scales:
        names += _keras_order(i + 1, scales)
    return names + [f"cat{i}_bn", f"up{i}_conv", f"up{i}_bn", f"up{i}_conv1x1", f"up{i}_1x1_bn"]


def _copy_weights(keras_model, torch_model, scales):
    modules = [m for m in torch_model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    names = _keras_order(0, scales) + ["output_conv"]
    assert len(modules) == len(names)
    for name, m in zip(names, modules):
        layer = keras_model.get_layer(name)
        if isinstance(m, nn.Conv2d):
            w, b = (v.numpy() for v in layer.weights)
            assert w.shape == tuple(m.weight.shape[i] for i in (2, 3, 1, 0)), name
            m.weight.data = torch.tensor(w.transpose(3, 2, 0, 1))
            m.bias.data = torch.tensor(b)
        else:
            gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
            assert gamma.shape == tuple(m.weight.shape), name
            m.weight.data, m.bias.data = torch.tensor(gamma), torch.tensor(beta)


def _torch_settings(s: dip.SkipSettings):
    per = lambda k: (k,) * s.scales if np.ndim(k) == 0 else tuple(k)      # noqa: E731
    return dict(down=s.channels_down, up=s.channels_up, skip=s.channels_skip, k_down=per(s.kernel_down),
                k_up=per(s.kernel_up), k_skip=s.kernel_skip, pad=s.pad, upsample=s.upsample,
                downsample=s.downsample)


@pytest.mark.parametrize("settings, size, crop", [
    pytest.param(dip.FEATURE_INVERSION_NET, 128, 112, id="feature_inversion"),
    pytest.param(dip.RESTORATION_NET, 64, None, id="restoration"),
])
def test_skip_generator_equals_the_reference_code_rebuilt_in_pytorch(settings, size, crop):
    model = dip.skip_generator(size, **settings.kwargs(), crop_to=crop, seed=1)
    reference = _reference_skip(dip.INPUT_CHANNELS, 3, **_torch_settings(settings))
    n_torch = sum(p.numel() for p in reference.parameters())
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == n_torch
    _copy_weights(model, reference, settings.scales)
    z = dip.input_code(size, seed=2)
    got = model(z, training=True).numpy()
    reference.train()
    with torch.no_grad():
        want = reference(torch.tensor(z.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    if crop:
        want = want[:, :crop, :crop]            # net(net_input)[:, :, :imsize, :imsize]
    assert got.shape == want.shape == (1, crop or size, crop or size, 3)
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert got.std() > 1e-3                     # not a constant picture that any net would match


def test_feature_inversion_generator_at_the_notebooks_sizes():
    """256² code (imsize_net), output cropped to the 224² target ('alexnet_caffe' gets 224, not 227)."""
    model = dip.skip_generator(256, **dip.FEATURE_INVERSION_NET.kwargs(), crop_to=224)
    assert model.input_shape == (None, 256, 256, 32) and model.output_shape == (None, 224, 224, 3)
    reference = _reference_skip(32, 3, **_torch_settings(dip.FEATURE_INVERSION_NET))
    assert model.count_params() - sum(int(np.prod(v.shape)) for v in model.non_trainable_weights) == \
        sum(p.numel() for p in reference.parameters())
    with pytest.raises(ValueError, match="divisible by 64"):
        dip.skip_generator(224, **dip.FEATURE_INVERSION_NET.kwargs())
    with pytest.raises(ValueError, match="reflection padding"):
        dip.skip_generator(32)                  # 5 scales at 32²: a 1×1 map cannot be reflection-padded
