"""The PyTorch reference loop for the M&V 2015 inversion, as a PyTorch user would run it: its own process (no
TensorFlow thread pools spinning beside it), contiguous NCHW tensors, ``torch.set_num_threads`` as the engine's.

As a worker of ``benchmarks/inversion_speed.py``::

    python benchmarks/torch_loop.py SPEC.pt --threads 2 --steps 10

reads the twin net, target and start image saved by the benchmark, runs the warm-up and check steps, prints the
objective as one JSON line, then for every ``round`` line on stdin times ``--steps`` steps and prints the ms per
step — so the parent interleaves its rounds with the engine's, one process running at a time. Imports only torch
and numpy.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch


class MV2015Loop:
    """M&V 2015's objective and update, written plainly: x = σ·x̃,

        E = ‖Φ(x) − Φ0‖²/‖Φ0‖² + (λTV/2)/σ²·Σ(d_w² + d_h²) + (λL2/2)/σ²·Σ x⁶,   m ← μm − lr·∇E(x̃),  x̃ ← x̃ + m.

    ``x_init`` is [N, H, W, 3] image space (RGB, mean-subtracted) like the engine's; the net takes BGR.
    """

    def __init__(self, net: nn.Sequential, target: np.ndarray, x_init: np.ndarray, *, sigma: float,
                 lambda_tv: float, lambda_l2: float, lr: float, momentum: float = 0.9):
        self.net, self.sigma, self.lr, self.momentum = net, sigma, lr, momentum
        self.tv_weight, self.l2_weight = lambda_tv / 2 / sigma ** 2, lambda_l2 / 2 / sigma ** 2
        t = torch.from_numpy(np.asarray(target, np.float32))
        self.target = (t.permute(0, 3, 1, 2) if t.ndim == 4 else t).contiguous()     # NCHW, as PyTorch users hold it
        self.norm = self.target.pow(2).flatten(1).sum(1)
        nchw = np.ascontiguousarray(np.asarray(x_init, np.float32).transpose(0, 3, 1, 2) / sigma)
        self.x = torch.from_numpy(nchw).requires_grad_(True)
        self.m = torch.zeros_like(self.x)

    def objective(self) -> torch.Tensor:
        x = self.x * self.sigma
        feats = self.net(x.flip(1))                                  # RGB → BGR
        data = (feats - self.target).pow(2).flatten(1).sum(1) / self.norm
        dw = torch.nn.functional.pad(x[..., 1:] - x[..., :-1], (0, 1))
        dh = torch.nn.functional.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
        tv = (dw.pow(2) + dh.pow(2)).flatten(1).sum(1)
        l6 = x.abs().pow(6).flatten(1).sum(1)
        return data + self.tv_weight * tv + self.l2_weight * l6

    def step(self, n: int) -> None:
        for _ in range(n):
            loss = self.objective().sum()
            (g,) = torch.autograd.grad(loss, self.x)
            with torch.no_grad():
                self.m.mul_(self.momentum).sub_(self.lr * g)
                self.x.add_(self.m)

    def loss(self) -> np.ndarray:
        with torch.no_grad():
            return self.objective().numpy()


def main(argv=None) -> int:
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("spec", help="torch.save'd dict: net, target, x_init, sigma, lambda_tv, lambda_l2, lr")
    a.add_argument("--threads", type=int, required=True)
    a.add_argument("--steps", type=int, default=10, help="steps per timed round")
    a.add_argument("--warmup", type=int, default=0, help="steps before the objective is reported")
    a.add_argument("--run", type=int, default=0,
                   help="end to end: run this many steps from a cold start (log points included; the spec's "
                        "per-step 'rates' if it has them), print the loop's seconds as one JSON line and exit")
    a.add_argument("--log-every", type=int, default=25, help="with --run: a log point every this many steps")
    args = a.parse_args(argv)
    inherited = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, range(os.cpu_count()))     # a parent's pinning (TensorFlow's) must not bind this loop
    torch.set_num_threads(args.threads)
    spec = torch.load(args.spec, weights_only=False)
    loop = MV2015Loop(spec["net"], spec["target"], spec["x_init"], sigma=spec["sigma"],
                      lambda_tv=spec["lambda_tv"], lambda_l2=spec["lambda_l2"], lr=spec["lr"])
    if args.run:
        rates = np.asarray(spec.get("rates", np.full(args.run, spec["lr"])))[:args.run]
        print(json.dumps(run_logged(loop, rates, args.log_every)), flush=True)
        return 0
    loop.step(args.warmup)
    print(json.dumps({"loss": loop.loss().tolist(), "threads": torch.get_num_threads(),
                      "inherited_cpus": inherited}), flush=True)
    serve_rounds(loop.step, args.steps)
    return 0


def run_logged(loop: MV2015Loop, rates: np.ndarray, log_every: int) -> dict:
    """``len(rates)`` steps from a cold start as a PyTorch user's loop runs them, step t at learning rate
    ``rates[t]`` with the momentum zeroed where the rate changes (M&V 2015's schedule); at every log point (step 1,
    then every ``log_every``, and the last) the objective is read to Python and the iterate copied out to NumPy
    (what a loop that logs its loss and keeps its snapshots does). Returns the loop's seconds and log points."""
    steps = len(rates)
    points = sorted(set(range(1, steps + 1, log_every)) | {steps})
    changes = {t for t in range(1, steps) if rates[t] != rates[t - 1]}
    t0, done = time.perf_counter(), 0
    for point in points:
        while done < point:
            run = min([point] + [c for c in changes if c > done]) - done
            loop.lr = float(rates[done])
            if done in changes:
                loop.m.zero_()
            loop.step(run)
            done += run
        float(loop.loss().sum())
        loop.x.detach().numpy().copy()
    return {"seconds": time.perf_counter() - t0, "steps": steps, "log_points": len(points)}


def serve_rounds(run, steps: int) -> None:
    """The worker side of a parent's interleaved timing: for each "round" line on stdin, time ``run(steps)`` and
    answer with one JSON line of ms per step; anything else (or end of input) ends it."""
    for line in sys.stdin:
        if line.strip() != "round":
            break
        t = time.perf_counter()
        run(steps)
        print(json.dumps({"ms_per_step": (time.perf_counter() - t) / steps * 1000}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
