"""The PyTorch twins of tfrestore's trainings, as a PyTorch user would write them: their own process, contiguous
NCHW tensors (or ``channels_last``), ``torch.optim.Adam``, optionally ``torch.compile``. A worker of
``benchmarks/training_speed.py``::

    python benchmarks/torch_train.py SPEC.pt --threads 2 --steps 10 --check 3 [--compile] [--channels-last]

reads the case, the Keras weights (already in PyTorch's layouts) and the data saved by the benchmark, runs
``--check`` steps on the benchmark's own batches (and, for the deep image prior, its input noise) and prints their
losses as one JSON line; then for every ``round`` line on stdin times ``--steps`` steps and prints the ms per step,
so the parent interleaves its rounds with tfrestore's, one process running at a time. Imports only torch and
numpy.

Cases (``spec["case"]``): ``foe`` (score matching of a full FoE prior, patches [T, n_white]), ``dip`` (the skip
generator, Adam on its weights against a data term, moving average of outputs), ``inverter`` (a frozen AlexNet to
conv3 and pool2, a dc module conv3 → pool2 trained on their MSE), ``classifier`` (the digits net, cross-entropy),
``autoencoder`` (the coverage-regularised digits autoencoder).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_loop import serve_rounds   # (benchmarks/ is this script's own folder)


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float32)))


def _conv(w: np.ndarray, b: np.ndarray | None, **kw) -> nn.Conv2d:
    """A Conv2d from a Keras kernel [kh, kw, cin, cout]."""
    conv = nn.Conv2d(w.shape[2], w.shape[3], w.shape[:2], bias=b is not None, **kw)
    conv.weight.data = _t(w.transpose(3, 2, 0, 1))
    if b is not None:
        conv.bias.data = _t(b)
    return conv


def _deconv(w: np.ndarray, b: np.ndarray, stride: int) -> nn.ConvTranspose2d:
    """A ConvTranspose2d (no padding: the caller crops like TF's SAME) from a Keras kernel [kh, kw, cout, cin]."""
    conv = nn.ConvTranspose2d(w.shape[3], w.shape[2], w.shape[:2], stride=stride)
    conv.weight.data = _t(w.transpose(3, 2, 0, 1))
    conv.bias.data = _t(b)
    return conv


def _linear(w: np.ndarray, b: np.ndarray) -> nn.Linear:
    fc = nn.Linear(*w.shape)
    fc.weight.data, fc.bias.data = _t(w.T), _t(b)
    return fc


def _bn(p: tuple, momentum: float, eps: float, cls=nn.BatchNorm2d) -> nn.Module:
    """A batch norm from Keras' (gamma, beta, moving mean, moving variance); torch's momentum is 1 − Keras'."""
    gamma, beta, mean, var = p
    bn = cls(len(gamma), eps=eps, momentum=1.0 - momentum)
    bn.weight.data, bn.bias.data = _t(gamma), _t(beta)
    bn.running_mean.data, bn.running_var.data = _t(mean), _t(var)
    return bn


# ---- the five trainings ------------------------------------------------------------------------------------------
class FoE(nn.Module):
    """Score matching of a full Student-t FoE prior: j_t = Σ_k α_k g′(y_kt) + ½‖W(α ⊙ g_t)‖², J = mean_t j_t."""

    def __init__(self, w: np.ndarray, a: np.ndarray):
        super().__init__()
        self.w, self.a = nn.Parameter(_t(w)), nn.Parameter(_t(a))

    def forward(self, x):
        w = self.w / self.w.norm(dim=0, keepdim=True)
        alpha = F.softplus(self.a)
        y = x @ w
        y2 = y * y
        first = (alpha * 2.0 * (y2 - 2.0) / (y2 + 2.0) ** 2).sum(-1)
        score = (alpha * (-2.0 * y / (y2 + 2.0))) @ w.t()
        return (first + 0.5 * score.pow(2).sum(-1)).mean()


class Skip(nn.Module):
    """The deep image prior's skip generator (RESTORATION_NET settings: reflection padding, stride-2 down,
    bilinear up, 1×1 after each up block), the Keras layers' weights by name."""

    def __init__(self, p: dict, scales: int):
        super().__init__()
        self.scales, self.mods = scales, nn.ModuleDict()
        for name, (w, b) in p["conv"].items():
            self.mods[name] = _conv(w, b, stride=2 if name.endswith("conv1") and name.startswith("down") else 1)
        for name, stats in p["bn"].items():
            self.mods[name] = _bn(stats, 0.9, 1e-5)

    def _cba(self, x, conv, bn, act=True):
        m = self.mods
        k = m[conv].kernel_size[0]
        if k > 1:
            x = F.pad(x, [(k - 1) // 2] * 4, mode="reflect")
        x = m[bn](m[conv](x))
        return F.leaky_relu(x, 0.2) if act else x

    def _scale(self, x, i):
        skip = self._cba(x, f"skip{i}_conv", f"skip{i}_bn")
        d = self._cba(x, f"down{i}_conv1", f"down{i}_1_bn")
        d = self._cba(d, f"down{i}_conv2", f"down{i}_2_bn")
        if i + 1 < self.scales:
            d = self._scale(d, i + 1)
        d = F.interpolate(d, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.mods[f"cat{i}_bn"](torch.cat([skip, d], 1))
        x = self._cba(x, f"up{i}_conv", f"up{i}_bn")
        return self._cba(x, f"up{i}_conv1x1", f"up{i}_1x1_bn")

    def forward(self, z):
        return torch.sigmoid(self.mods["output_conv"](self._scale(z, 0)))


class DCModule(nn.Module):
    """A dc inversion module: transposed convolution (SAME, stride 1) → ReLU → convolution (SAME)."""

    def __init__(self, p: dict):
        super().__init__()
        (w1, b1), (w2, b2) = p["deconv"], p["conv"]
        self.k1 = w1.shape[0]
        self.deconv, self.conv = _deconv(w1, b1, 1), _conv(w2, b2, padding="same")

    def forward(self, x):
        top = (self.k1 - 1) // 2                       # TF's SAME: the forward convolution's top padding
        h = self.deconv(x)[..., top:top + x.shape[2], top:top + x.shape[3]]
        return self.conv(F.relu(h))


class Digits(nn.Module):
    def __init__(self, p: dict):
        super().__init__()
        self.conv1, self.conv2 = _conv(*p["conv1"], padding="same"), _conv(*p["conv2"], padding="same")
        self.fc3, self.fc4 = _linear(*p["fc3"]), _linear(*p["fc4"])

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.permute(0, 2, 3, 1).flatten(1)             # Keras flattens H, W, C
        return self.fc4(F.relu(self.fc3(x)))


class Autoencoder(nn.Module):
    """The digits autoencoder: TF's SAME at stride 2 pads bottom/right only, its transposed convolutions crop the
    full output from the top-left."""

    def __init__(self, p: dict):
        super().__init__()
        self.enc1, self.enc2 = _conv(*p["enc_conv1"], stride=2), _conv(*p["enc_conv2"], stride=2)
        self.bn1, self.bn2 = _bn(p["enc_bn1"], 0.99, 1e-3), _bn(p["enc_bn2"], 0.99, 1e-3)
        self.latent, self.dense = _linear(*p["latent"]), _linear(*p["dec_dense"])
        self.bn0 = _bn(p["dec_bn0"], 0.99, 1e-3, nn.BatchNorm1d)
        self.dec1, self.dec2 = _deconv(*p["dec_deconv1"], 2), _deconv(*p["dec_deconv2"], 2)
        self.bn_d1 = _bn(p["dec_bn1"], 0.99, 1e-3)

    def encode(self, x):
        x = F.relu(self.bn1(self.enc1(F.pad(x, (0, 1, 0, 1)))))
        x = F.relu(self.bn2(self.enc2(F.pad(x, (0, 1, 0, 1)))))
        return torch.sigmoid(self.latent(x.permute(0, 2, 3, 1).flatten(1)))

    def decode(self, z):
        h = F.relu(self.bn0(self.dense(z)))
        q = int(round((h.shape[1] // 64) ** 0.5))
        h = h.view(-1, q, q, 64).permute(0, 3, 1, 2)
        h = F.relu(self.bn_d1(self.dec1(h)[..., :2 * q, :2 * q]))
        return torch.tanh(self.dec2(h)[..., :4 * q, :4 * q])

    def forward(self, x):
        x = x * 2.0 - 1.0
        z = self.encode(x)
        rec = (self.decode(z) - x).pow(2).mean()
        c = z - z.mean(0)
        var = c.pow(2).mean(0)
        kurt = c.pow(4).mean(0) / (var * var + 1e-12)
        return 20.0 * rec + ((var - 1.0 / 12.0) ** 2 + (kurt - 1.8) ** 2).sum()


# ---- the training loops ------------------------------------------------------------------------------------------
class Training:
    """One case's model, loss and Adam step on the benchmark's batches (step t takes batch t)."""

    def __init__(self, spec: dict, *, compiled: bool, channels_last: bool):
        self.spec, self.case, self.t = spec, spec["case"], 0
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        case = self.case
        if case == "foe":
            self.model = FoE(spec["w"], spec["a"])
        elif case == "dip":
            self.model = Skip(spec["params"], spec["scales"])
            self.z, self.y = _t(spec["z"]).contiguous(memory_format=fmt), _t(spec["y"])
            self.avg = torch.zeros_like(self.y)
        elif case == "inverter":
            self.trunk = spec["trunk"].eval()
            for q in self.trunk.parameters():
                q.requires_grad_(False)
            self.trunk = self.trunk.to(memory_format=fmt)
            self.model = DCModule(spec["params"])
        elif case == "classifier":
            self.model = Digits(spec["params"])
        else:
            self.model = Autoencoder(spec["params"])
        self.model = self.model.to(memory_format=fmt) if case != "foe" else self.model
        self.model.train()
        self.data = {k: _t(v) for k, v in spec["data"].items()}
        if case != "foe":
            self.data = {k: (v.contiguous(memory_format=fmt) if v.ndim == 4 else v) for k, v in self.data.items()}
        if "labels" in spec:
            self.labels = torch.from_numpy(np.asarray(spec["labels"], np.int64))
        self.index = np.asarray(spec["index"])
        self.fmt = fmt
        adam = dict(lr=spec["lr"], betas=(0.9, 0.999), eps=spec["eps"])
        self.opt = torch.optim.Adam(self.model.parameters(), fused=True, **adam) if compiled else \
            torch.optim.Adam(self.model.parameters(), **adam)
        self.forward = torch.compile(self._loss) if compiled else self._loss

    def _batch(self, t: int):
        rows = torch.from_numpy(self.index[t % len(self.index)])
        return {k: v.index_select(0, rows) for k, v in self.data.items()}

    def _loss(self, batch, noise):
        case = self.case
        if case == "foe":
            return self.model(batch["x"])
        if case == "dip":
            out = self.model(self.z + noise)
            return (out - self.y).pow(2).sum() / (2.0 * self.spec["sigma"] ** 2), out
        if case == "inverter":
            with torch.no_grad():
                feats = {}
                x = batch["x"]
                for i, m in enumerate(self.trunk):
                    x = m(x)
                    if i == self.spec["target_index"]:
                        feats["target"] = x
                source = x
            return (self.model(source) - feats["target"]).pow(2).mean()
        if case == "classifier":
            return F.cross_entropy(self.model(batch["x"]), self.labels.index_select(0, batch["rows"]))
        return self.model(batch["x"])

    def step(self, noise=None) -> float:
        case, t = self.case, self.t
        if case == "dip":
            if noise is None:
                noise = self.spec["noise_std"] * torch.randn_like(self.z)
            loss, out = self.forward(None, noise)
            with torch.no_grad():               # the moving average of outputs (started at the first)
                self.avg.copy_(out.detach() if t == 0 else 0.99 * self.avg + 0.01 * out.detach())
        else:
            batch = self._batch(t)
            if case == "classifier":
                batch["rows"] = torch.from_numpy(self.index[t % len(self.index)])
            loss = self.forward(batch, None)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.spec.get("clip"):
            c = self.spec["clip"]
            for q in self.model.parameters():
                q.grad.clamp_(-c, c)
        self.opt.step()
        self.t += 1
        return float(loss.detach())

    def run(self, n: int) -> None:
        for _ in range(n):
            self.step()


def main(argv=None) -> int:
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("spec", help="torch.save'd dict written by benchmarks/training_speed.py")
    a.add_argument("--threads", type=int, required=True)
    a.add_argument("--steps", type=int, required=True)
    a.add_argument("--check", type=int, required=True, help="steps whose losses are reported before timing")
    a.add_argument("--compile", action="store_true", help="torch.compile the loss and use the fused Adam")
    a.add_argument("--channels-last", action="store_true")
    args = a.parse_args(argv)
    os.sched_setaffinity(0, range(os.cpu_count()))     # a parent's pinning (TensorFlow's) must not bind this loop
    torch.set_num_threads(args.threads)
    spec = torch.load(args.spec, weights_only=False)
    info = {"threads": torch.get_num_threads()}
    try:
        tr = Training(spec, compiled=args.compile, channels_last=args.channels_last)
        noise = spec.get("noise")
        losses = [tr.step(None if noise is None else _t(noise[i]).contiguous(memory_format=tr.fmt))
                  for i in range(args.check)]
        tr.run(1)                                       # one more step: compiled code is warm for every shape
    except Exception as e:                              # noqa: BLE001 — the parent reports why this twin is absent
        print(json.dumps({"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:400],
                          **info}), flush=True)
        return 0
    print(json.dumps({"losses": losses, **info}), flush=True)
    serve_rounds(tr.run, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
