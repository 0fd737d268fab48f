"""Time per optimisation step of the engine, graph mode vs XLA, side by side in one process.

    python benchmarks/step_time.py [--steps 20] [--nets alexnet:conv5,vgg16:pool5] [--batch 1]

Prints one line per (net, layer, mode): ms/step after a warm-up block (the compile is excluded).
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from reproductions import mv2015  # noqa: E402
from tfrestore import data, nets, optim  # noqa: E402
from tfrestore.engine import Optimization  # noqa: E402
from tfrestore.inversion import Extractors  # noqa: E402


def measure(net: str, layer: str, steps: int, batch: int, jit: bool) -> float:
    model = nets.build(net, weights=None, quiet=True)
    ext = Extractors(model)
    img = data.load_image("chelsea", nets.input_size(net))
    p = mv2015.build(net, img, "layers", [layer] * batch, ext, 0, None, None)
    sched = optim.Schedule([optim.Stage(1 + steps, 0.004)])
    run = Optimization(p["objective"], p["canvas"], p["optimizer"], sched,
                       to_input=lambda x: nets.to_input(net, x), log_every=steps, jit_compile=jit)
    run._block(0, 1)                                   # trace + compile
    t = time.perf_counter()
    run._block(1, 1 + steps)
    float(run.step.numpy())
    return (time.perf_counter() - t) / steps * 1000


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--steps", type=int, default=20)
    a.add_argument("--batch", type=int, default=1)
    a.add_argument("--nets", default="alexnet:conv5,vgg16:pool5")
    args = a.parse_args()
    print(f"{'net':<10}{'layer':<8}{'batch':>6}{'graph ms/step':>16}{'XLA ms/step':>14}{'XLA speed-up':>14}")
    for item in args.nets.split(","):
        net, layer = item.split(":")
        g = measure(net, layer, args.steps, args.batch, False)
        try:
            x = measure(net, layer, args.steps, args.batch, True)
        except Exception as e:   # an op without an XLA kernel on this device
            print(f"  (XLA failed: {type(e).__name__}: {str(e)[:120]})")
            x = float("nan")
        print(f"{net:<10}{layer:<8}{args.batch:>6}{g:>16.1f}{x:>14.1f}{g / x:>13.2f}×", flush=True)


if __name__ == "__main__":
    main()
