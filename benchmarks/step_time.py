"""Time per optimisation step of the engine, graph mode vs XLA, side by side in one process.

    python benchmarks/step_time.py [--steps 20] [--nets alexnet:conv5,vgg16:pool5] [--batch 1]

Prints one line per (net, layer): ms/step of ``Optimization.step`` after a warm-up step that traces and compiles
the block (the block takes its bounds as tensors, so the timed call does not trace again).
"""
from __future__ import annotations

import argparse
import time

from reproductions import mv2015
from tfrestore import data, nets, optim
from tfrestore.engine import Optimization
from tfrestore.inversion import Extractors


def measure(net: str, layer: str, steps: int, batch: int, jit: bool) -> float:
    model = nets.build(net, weights=None, quiet=True)
    img = data.load_image("chelsea", nets.input_size(net))
    p = mv2015.problem(mv2015.FIGURES["layers"], net=net, image_rgb=img, extractors=Extractors(model),
                       layers=[layer] * batch)
    p.schedule = optim.Schedule([optim.Stage(1 + steps, 0.004)])
    run = Optimization.from_problem(p, to_input=lambda x: nets.to_input(net, x), jit_compile=jit)
    run.step(1)                                        # trace + compile
    t = time.perf_counter()
    run.step(steps)
    run.steps_done                                     # waits for the device
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
