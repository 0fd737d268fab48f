"""What a GPU buys: the batched-restart throughput curve, mixed precision's agreement, the DIP step at 256² / 512².

    python benchmarks/gpu_throughput.py --json runs/gpu_throughput.json          # on the GPU machine (benchmarks/gpu.sh)
    python benchmarks/gpu_throughput.py --quick                                  # a minute on a CPU: the script works

Sections (each a key of the JSON):

- ``restarts``: M&V 2015's objective at one layer (AlexNet conv5, VGG16 conv3_3; seeded random weights) with B
  restarts in one compiled optimisation, B = 1, 8, 32, 128: ms per optimisation step and problem-steps per second;
  ``speedup`` is the throughput over B = 1's. The issue's goal on a GPU: ≥ 20× at the largest batch that fits.
- ``mixed_precision``: the same optimisation with the network under Keras' ``mixed_float16`` policy (float16
  convolutions, float32 variables and objective) against float32, from the same start: the relative difference of
  the objective after the check steps (kept where ≤ 1e-3) and the speed ratio.
- ``dip``: the deep image prior's skip generator (the restoration net) fitted by Adam at 256² and 512²: ms per step.

Times are the minimum over ``--rounds`` rounds of ``--steps`` steps after a warm-up (tracing) call. A batch that
does not fit in memory is recorded as ``"out of memory"`` and the curve stops there.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BATCHES = (1, 8, 32, 128)
CASES = ("alexnet:conv5", "vgg16:conv3_3")
LR = 0.004                 # M&V 2015's first stage
AGREEMENT = 1e-3


def parse_args(argv=None):
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--cases", default=",".join(CASES))
    a.add_argument("--batches", default=",".join(map(str, BATCHES)))
    a.add_argument("--steps", type=int, default=10, help="steps per timed round")
    a.add_argument("--rounds", type=int, default=3)
    a.add_argument("--check", type=int, default=5, help="steps before mixed precision's objective is compared")
    a.add_argument("--dip-sizes", default="256,512")
    a.add_argument("--quick", action="store_true", help="a CPU smoke run: batches 1,2; 2 steps; DIP at 64²")
    a.add_argument("--json", help="write the sections to this JSON file")
    args = a.parse_args(argv)
    if args.quick:
        args.batches, args.steps, args.rounds, args.check, args.dip_sizes = "1,2", 2, 1, 2, "64"
        args.cases = "alexnet:conv5"
    return args


def _inversion(net: str, layer: str, batch: int, total: int):
    """M&V 2015 at one layer, ``batch`` restarts from their own noise, a constant learning rate."""
    from reproductions import mv2015
    from tfrestore import data, nets
    from tfrestore.optimize import optim
    from tfrestore.optimize.engine import Optimization
    from tfrestore.optimize.inversion import Extractors
    model = nets.build(net, weights="random", quiet=True)
    img = data.resize(data.load_image("chelsea"), nets.input_size(net))
    p = mv2015.problem(mv2015.FIGURES["layers"], net=net, image_rgb=img, extractors=Extractors(model),
                       layers=[layer] * batch)
    p.schedule = optim.Schedule([optim.Stage(total, LR)])
    return Optimization.from_problem(p, to_input=lambda x: nets.to_input(net, x))


def _timed(run, steps: int, rounds: int) -> float:
    """Minimum ms per step over ``rounds`` calls of ``steps`` steps (the evaluation syncs the device)."""
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        run.step(steps)
        run.evaluate()
        best = min(best, (time.perf_counter() - t) * 1e3 / steps)
    return best


def _is_oom(e: Exception) -> bool:
    import tensorflow as tf
    return isinstance(e, tf.errors.ResourceExhaustedError) or "out of memory" in str(e).lower()


def restarts(args) -> list[dict]:
    rows = []
    for case in args.cases.split(","):
        net, layer = case.split(":")
        base = None
        for b in map(int, args.batches.split(",")):
            try:
                run = _inversion(net, layer, b, 2 + args.steps * (args.rounds + 1))
                run.step(1)
                ms = _timed(run, args.steps, args.rounds)
            except Exception as e:                      # noqa: BLE001 — only memory exhaustion is recorded
                if not _is_oom(e):
                    raise
                rows.append({"case": case, "batch": b, "result": "out of memory"})
                print(f"{case} ×{b}: out of memory", flush=True)
                break
            throughput = b * 1e3 / ms
            base = base or throughput
            rows.append({"case": case, "batch": b, "ms_per_step": ms, "problem_steps_per_s": throughput,
                         "speedup": throughput / base})
            print(f"{case} ×{b:<4} {ms:9.1f} ms/step  {throughput:9.1f} problem-steps/s  "
                  f"{throughput / base:6.1f}× batch 1", flush=True)
    return rows


def mixed_precision(args) -> list[dict]:
    import keras
    rows = []
    for case in args.cases.split(","):
        net, layer = case.split(":")
        found = {}
        for policy in ("float32", "mixed_float16"):
            keras.mixed_precision.set_global_policy(policy)
            try:
                run = _inversion(net, layer, 1, 2 + args.check + args.steps * (args.rounds + 1))
                run.step(1 + args.check)
                loss = float(np.sum(run.evaluate()[0]))
                found[policy] = (loss, _timed(run, args.steps, args.rounds))
            finally:
                keras.mixed_precision.set_global_policy("float32")
        (l32, t32), (l16, t16) = found["float32"], found["mixed_float16"]
        diff = abs(l16 - l32) / abs(l32)
        rows.append({"case": case, "objective_float32": l32, "objective_mixed": l16, "relative_difference": diff,
                     "kept": diff <= AGREEMENT, "ms_float32": t32, "ms_mixed": t16, "speed_ratio": t32 / t16})
        print(f"{case} mixed_float16: objective {diff:.1e} from float32 after {1 + args.check} steps "
              f"({'kept' if diff <= AGREEMENT else 'NOT kept: > 1e-3'}), {t32 / t16:.2f}× float32's speed", flush=True)
    return rows


def dip(args) -> list[dict]:
    from tfrestore.models import dip as dip_lib
    from tfrestore.optimize import objectives as O, optim
    from tfrestore.optimize.engine import Optimization
    rows = []
    for size in map(int, args.dip_sizes.split(",")):
        try:
            p = dip_lib.generator_parameterization(size, noise_std=1 / 30, seed=0, **dip_lib.RESTORATION_NET.kwargs())
            target = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
            run = Optimization(O.CustomTerm("mse", lambda ctx: _mse(ctx, target)), p,
                               optim.Adam(epsilon_form="paper"),
                               optim.Schedule([optim.Stage(2 + args.steps * (args.rounds + 1), 0.01, jitter=False)]))
            run.step(1)
            ms = _timed(run, args.steps, args.rounds)
        except Exception as e:                          # noqa: BLE001
            if not _is_oom(e):
                raise
            rows.append({"size": size, "result": "out of memory"})
            continue
        rows.append({"size": size, "ms_per_step": ms})
        print(f"DIP restoration net at {size}²: {ms:.1f} ms per Adam step", flush=True)
    return rows


def _mse(ctx, target):
    import tensorflow as tf
    return tf.reduce_mean(tf.square(ctx.canvas - target), axis=[1, 2, 3])


def main(argv=None) -> dict:
    args = parse_args(argv)
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    for g in gpus:
        tf.config.experimental.set_memory_growth(g, True)
    report = {"machine": {"python": platform.python_version(), "tensorflow": tf.__version__,
                          "gpus": [g.name for g in gpus], "cpus": os.cpu_count()}, "args": vars(args)}
    print("machine: " + ", ".join(f"{k}={v}" for k, v in report["machine"].items()), flush=True)
    if not gpus:
        print("no GPU visible: these are CPU figures (the script's smoke run), not the GPU's", flush=True)
    report["restarts"] = restarts(args)
    report["mixed_precision"] = mixed_precision(args)
    report["dip"] = dip(args)
    if args.json:
        from tfrestore.core import files
        files.write_json(args.json, report)
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
