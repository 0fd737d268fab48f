"""Inversion speed side by side: the engine (graph and XLA) against a plain PyTorch loop on identical weights.

    python benchmarks/inversion_speed.py                        # the five cases, 5 interleaved rounds
    python benchmarks/inversion_speed.py --cases alexnet:conv5 --rounds 9 --json runs/speed.json
    python benchmarks/inversion_speed.py --baseline runs/speed.json      # also print the ratio to an earlier run
    python benchmarks/inversion_speed.py --profile alexnet:conv5         # where the engine's step spends its time
    python benchmarks/inversion_speed.py --batched --figure --rss        # throughput and memory sections
    python benchmarks/inversion_speed.py --end-to-end alexnet:conv5,caffenet:conv5   # whole main.py runs vs torch

Every case is M&V 2015's objective at one layer (seeded random weights, ``chelsea``, the paper's initialisation,
lr 0.004, momentum 0.9). The engine, its XLA variant and the PyTorch loop (``benchmarks/torch_loop.py`` in a
process of its own, as PyTorch users run it, with the same thread count; the Keras weights copied into ``torch.nn``
modules by ``benchmarks/torch_reference.py``) start from the same image; after a warm-up step (which traces
and compiles) and ``--check`` more steps, their objective values must agree to 1e-3 relative or that column is
void (lr 0.004 is M&V's large first stage: float32 differences grow over the steps, most at VGG16 pool5).
Then ``--rounds`` rounds time ``--steps`` steps of each, in rotating order, so a noisy shared machine slows all
of them alike; min and median ms/step are reported and the headline is engine / torch steps/s.

GFLOP/s counts the multiply-adds of the convolutions and fc layers of one forward pass ×2 (forward + the input
gradient; the weight gradient is never computed). Peak RSS is the process's high-water mark after the row (TF,
torch and every earlier row included); ``--rss`` measures a single-layer ``main.py`` inversion in its own process.

torch is an optional benchmark dependency: ``pip install -e ".[bench]"`` (CPU wheels: add
``--extra-index-url https://download.pytorch.org/whl/cpu``). Without it only the engine columns are printed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CASES = ("alexnet:conv5", "caffenet:conv5", "alexnet:fc8", "vgg16:conv3_3", "vgg16:pool5")
LR = 0.004
AGREEMENT = 1e-3


def parse_args(argv=None):
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--cases", default=",".join(CASES), help="net:layer,… (chain nets: alexnet, caffenet, vgg16)")
    a.add_argument("--steps", type=int, default=10, help="steps per timed call")
    a.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per case")
    a.add_argument("--check", type=int, default=5, help="steps after the warm-up before the objectives are compared")
    a.add_argument("--batch", type=int, default=1, help="problems (restarts) per optimisation")
    a.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads for TF and torch")
    a.add_argument("--inter-op", type=int, default=os.cpu_count(),
                   help="TF inter-op threads (default: TF's own default, the core count, as main.py runs it; 1 "
                   "runs one op at a time like torch's autograd: about 12 %% slower here)")
    a.add_argument("--onednn", choices=("0", "1"), default=None,
                   help="set TF_ENABLE_ONEDNN_OPTS before TensorFlow starts (default: TensorFlow's choice; off on "
                   "CPUs without AVX-512)")
    a.add_argument("--no-xla", action="store_true", help="skip the XLA column")
    a.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    a.add_argument("--json", help="write the rows (and the machine) to this JSON file")
    a.add_argument("--baseline", help="an earlier --json file: print this run's engine ms/step over that one's")
    a.add_argument("--profile", metavar="NET:LAYER", help="profile the engine's step on one case, by op")
    a.add_argument("--batched", action="store_true", help="restarts of one layer: one graph vs one after another")
    a.add_argument("--figure", action="store_true", help="the 20-layer AlexNet figure: one graph vs per group")
    a.add_argument("--rss", action="store_true", help="peak RSS of a single-layer main.py inversion (own process)")
    a.add_argument("--end-to-end", metavar="NET:LAYER,…",
                   help="whole runs: main.py (trace, log points, TensorBoard, checkpoints included) against the "
                        "PyTorch loop's whole run, each in its own process, --rounds rotating rounds")
    a.add_argument("--e2e-steps", type=int, default=400, help="steps per whole run (M&V 2015's schedule: 400)")
    return a.parse_args(argv)


def configure_threads(threads: int, inter_op: int, onednn: str | None) -> dict:
    if onednn is not None:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = onednn
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    info = {"tf_intra_op": threads, "tf_inter_op": inter_op, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "TF default")}
    try:
        import torch
        torch.set_num_threads(threads)
        info["torch_threads"] = threads
    except ImportError:
        pass
    return info


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def engine_run(net, model, layer, batch, total, jit):
    """An Optimization of M&V 2015 at one layer with a constant lr, and its problem."""
    from reproductions import mv2015
    from tfrestore import data, nets
    from tfrestore.optimize import optim
    from tfrestore.optimize.engine import Optimization
    from tfrestore.optimize.inversion import Extractors
    img = data.resize(data.load_image("chelsea"), nets.input_size(net))
    p = mv2015.problem(mv2015.FIGURES["layers"], net=net, image_rgb=img, extractors=Extractors(model),
                       layers=[layer] * batch)
    p.schedule = optim.Schedule([optim.Stage(total, LR)])
    return Optimization.from_problem(p, to_input=lambda x: nets.to_input(net, x), jit_compile=jit), p


def timed(fn, steps):
    t = time.perf_counter()
    fn(steps)
    return (time.perf_counter() - t) / steps * 1000


def bench_case(case: str, args) -> dict:
    from reproductions import mv2015
    from tfrestore import nets
    from tfrestore.optimize.inversion import Extractors
    net, layer = case.split(":")
    layer = nets.resolve_layer(net, layer)
    model = nets.build(net, weights=None, quiet=True)
    total = 1 + args.check + args.rounds * args.steps
    runners, losses = {}, {}
    graph, p = engine_run(net, model, layer, args.batch, total, jit=False)
    runners["engine"] = lambda n: (graph.step(n), graph.steps_done)
    if not args.no_xla:
        xla, _ = engine_run(net, model, layer, args.batch, total, jit=True)
        runners["engine_xla"] = lambda n: (xla.step(n), xla.steps_done)
    flops, worker = None, None
    if torch_available(args):
        from benchmarks.torch_reference import chain_to_torch, forward_flops
        tnet = chain_to_torch(model, layer)
        target = Extractors(model).features(net, layer, p.x0[:1])
        worker = TorchWorker(dict(net=tnet, target=target.repeat(args.batch, 0), x_init=p.param.image().numpy(),
                                  sigma=mv2015.SIGMA, lambda_tv=mv2015.lambda_tv_for(net, layer),
                                  lambda_l2=mv2015.LAMBDA_L2, lr=LR), args)
        runners["torch"] = worker.round
        flops = forward_flops(tnet, nets.input_size(net)) * 2 * args.batch
    for name, fn in runners.items():                 # warm-up (trace, compile) and the agreement check
        if name != "torch":                           # (the worker did its own at start)
            fn(1 + args.check)
    losses["engine"] = float(graph.evaluate()[0].sum())
    if "engine_xla" in runners:
        losses["engine_xla"] = float(xla.evaluate()[0].sum())
    if worker is not None:
        losses["torch"] = float(np.sum(worker.loss))
    ref = losses.get("torch", losses["engine"])
    agree = {k: abs(v - ref) / abs(ref) for k, v in losses.items()}
    times = defaultdict(list)
    names = list(runners)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(runners[name](args.steps) if name == "torch" else timed(runners[name], args.steps))
    if worker is not None:
        worker.close()
    row = {"case": case, "batch": args.batch, "steps": args.steps, "rounds": args.rounds, "loss": losses,
           "relative_difference": agree, "void": sorted(k for k, d in agree.items() if d > AGREEMENT),
           "ms_per_step": {k: {"min": min(v), "median": statistics.median(v), "all": v} for k, v in times.items()},
           "gflops_per_step": flops / 1e9 if flops else None, "peak_rss_mb": peak_rss_mb()}
    if "torch" in times:
        row["engine_over_torch_speed"] = min(times["torch"]) / min(times["engine"])
        row["engine_over_torch_speed_median"] = statistics.median(times["torch"]) / statistics.median(times["engine"])
    return row


class TorchWorker:
    """The PyTorch loop in a process of its own (``benchmarks/torch_loop.py``), as its users run it: TensorFlow's
    thread pools, idle but spinning in this process, slowed an in-process torch loop several-fold. It warms up and
    reports its objective at start; each :meth:`round` times ``steps`` steps there while this process waits."""

    def __init__(self, spec: dict, args):
        import torch
        self._dir = tempfile.TemporaryDirectory()
        path = Path(self._dir.name) / "spec.pt"
        torch.save(spec, path)
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "torch_loop.py"), str(path), "--threads", str(args.threads),
             "--steps", str(args.steps), "--warmup", str(1 + args.check)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        first = json.loads(self.proc.stdout.readline())
        self.loss, self.threads = first["loss"], first["threads"]

    def round(self, steps: int) -> float:
        """ms per step of one timed round in the worker."""
        self.proc.stdin.write("round\n")
        self.proc.stdin.flush()
        return float(json.loads(self.proc.stdout.readline())["ms_per_step"])

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self._dir.cleanup()


def torch_available(args) -> bool:
    if args.no_torch:
        return False
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        print("(torch is not installed: engine columns only; pip install -e '.[bench]')", flush=True)
        args.no_torch = True
        return False


def print_rows(rows, baseline=None):
    cols = ["engine", "engine_xla", "torch"]
    head = f"{'case':<16}{'b':>3}" + "".join(f"{c + ' min/med ms':>24}" for c in cols) + \
        f"{'engine/torch':>14}{'GFLOP/s':>9}{'agree':>9}{'RSS MB':>8}"
    print(head)
    for r in rows:
        line = f"{r['case']:<16}{r['batch']:>3}"
        for c in cols:
            t = r["ms_per_step"].get(c)
            line += f"{t['min']:>14.1f} / {t['median']:>7.1f}" if t else f"{'—':>24}"
        ratio = r.get("engine_over_torch_speed")
        line += f"{ratio:>13.2f}×" if ratio else f"{'—':>14}"
        g = r["gflops_per_step"]
        line += f"{g / r['ms_per_step']['engine']['min'] * 1000:>9.1f}" if g else f"{'—':>9}"
        worst = max(r["relative_difference"].values())
        line += f"{worst:>9.1e}" + f"{r['peak_rss_mb']:>8.0f}"
        if r["void"]:
            line += f"  VOID: {', '.join(r['void'])} (objective more than {AGREEMENT:g} off the torch loop's)"
        print(line, flush=True)
    if baseline:
        old = {(r["case"], r["batch"]): r for r in json.loads(Path(baseline).read_text())["rows"]}
        for r in rows:
            o = old.get((r["case"], r["batch"]))
            if o:
                print(f"  {r['case']}: engine {r['ms_per_step']['engine']['min']:.1f} ms vs baseline "
                      f"{o['ms_per_step']['engine']['min']:.1f} ms "
                      f"({o['ms_per_step']['engine']['min'] / r['ms_per_step']['engine']['min']:.2f}× speed)")


# ---- sections ------------------------------------------------------------------------------------------------
def profile_case(case: str, args, top: int = 15) -> list[dict]:
    """Trace ``--steps`` engine steps with TensorFlow's profiler and total the host time of each op type."""
    from op_profile import op_times
    from tfrestore import nets
    net, layer = case.split(":")
    model = nets.build(net, weights=None, quiet=True)
    run, _ = engine_run(net, model, nets.resolve_layer(net, layer), args.batch, 2 + args.steps, jit=False)
    run.step(1)
    rows, total = op_times(lambda: run.step(args.steps), args.steps, tf_op_lines_only=True)
    print(f"profile of {case}, batch {args.batch}: op time summed over threads, per step "
          f"(total {total:.1f} ms of op time per step)")
    for r in rows[:top]:
        print(f"  {r['op']:<34}{r['ms_per_step']:>9.2f} ms{r['share']:>8.1%}")
    return rows


def batched_section(args) -> list[dict]:
    """AlexNet conv5: B restarts in one compiled optimisation vs B single runs one after another."""
    from tfrestore import nets
    model = nets.build("alexnet", weights=None, quiet=True)
    out = []
    for b in (2, 4, 8):
        together, _ = engine_run("alexnet", model, "conv5", b, 2 + args.rounds * args.steps, jit=False)
        single, _ = engine_run("alexnet", model, "conv5", 1, 2 + args.rounds * args.steps, jit=False)
        together.step(1), single.step(1)
        t_b = [timed(together.step, args.steps) / b for _ in range(args.rounds)]
        t_1 = [timed(single.step, args.steps) for _ in range(args.rounds)]
        out.append({"batch": b, "ms_per_problem_step_batched": min(t_b), "ms_per_problem_step_single": min(t_1)})
        print(f"alexnet conv5 restarts ×{b}: one graph {min(t_b):.1f} ms per problem-step, one after another "
              f"{min(t_1):.1f} ms ({min(t_1) / min(t_b):.2f}× throughput)", flush=True)
    return out


def figure_section(args) -> dict:
    """M&V 2015's 20-layer AlexNet figure: all 20 problems in one graph vs one graph per layer group."""
    from reproductions import mv2015
    from tfrestore import data, nets
    from tfrestore.optimize import optim
    from tfrestore.optimize.engine import Optimization
    from tfrestore.optimize.inversion import Extractors
    net = "alexnet"
    model = nets.build(net, weights=None, quiet=True)
    img = data.resize(data.load_image("chelsea"), nets.input_size(net))
    layers = nets.figure_layers(net)
    groups = defaultdict(list)
    for l in layers:
        groups[nets.spec(net).layer_group[l]].append(l)

    def make(ls):
        p = mv2015.problem(mv2015.FIGURES["layers"], net=net, image_rgb=img, extractors=Extractors(model), layers=ls)
        p.schedule = optim.Schedule([optim.Stage(2 + args.rounds * args.steps, LR)])
        run = Optimization.from_problem(p, to_input=lambda x: nets.to_input(net, x))
        run.step(1)
        return run
    whole = make(layers)
    parts = [make(ls) for ls in groups.values()]
    singles = [make([l]) for l in layers]
    t_whole, t_parts, t_single = [], [], []
    for _ in range(args.rounds):
        t_whole.append(timed(whole.step, args.steps))
        t_parts.append(sum(timed(r.step, args.steps) for r in parts))
        t_single.append(sum(timed(r.step, args.steps) for r in singles))
    res = {"one_graph_ms_per_step": min(t_whole), "per_group_ms_per_step": min(t_parts),
           "per_layer_ms_per_step": min(t_single), "groups": {str(k): v for k, v in groups.items()}}
    print(f"alexnet 20-layer figure, ms per figure step: one graph {min(t_whole):.0f}, {len(parts)} group graphs "
          f"{min(t_parts):.0f}, 20 one-layer graphs {min(t_single):.0f} (400 steps ≈ {min(t_whole) * 0.4:.0f} / "
          f"{min(t_parts) * 0.4:.0f} / {min(t_single) * 0.4:.0f} s)", flush=True)
    return res


_REPORT_PEAK = """
import atexit, runpy, sys
def peak():   # VmHWM: this process's own high-water mark (ru_maxrss would carry the forking parent's over exec)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print("PEAK_RSS_KB", line.split()[1], flush=True)
atexit.register(peak)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def rss_section() -> dict:
    """Peak RSS of ``main.py --paper=mv2015 --net=alexnet --layers=conv5 --steps=20`` in its own process, as the
    child's own ``VmHWM`` (Linux)."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-c", _REPORT_PEAK, str(ROOT / "main.py"), "--paper=mv2015", "--net=alexnet",
               "--layers=conv5", "--steps=20", "--weights=random", f"--out={out}"]
        t = time.perf_counter()
        r = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t
    peak = int(r.stdout.rsplit("PEAK_RSS_KB", 1)[1].split()[0]) / 1024
    print(f"single-layer AlexNet inversion (main.py, 20 steps): peak RSS {peak:.0f} MB, wall {wall:.1f} s", flush=True)
    return {"peak_rss_mb": peak, "wall_s": wall}


def end_to_end_case(case: str, args) -> dict:
    """One layer's whole run, rotating rounds: ``main.py --paper=mv2015 --net=NET --layers=LAYER
    --steps=--e2e-steps --weights=random`` (its loop's seconds from metrics.json: the first step's trace, every log
    point's measure, TensorBoard and checkpoint included; and the process' wall time, imports and the net's build
    included) against ``torch_loop.py --run`` (the same steps from a cold start with a log point every 25 steps:
    the objective read to Python and the iterate copied out, in its own process; its wall time includes importing
    torch and loading the twin). Headline: torch loop seconds / main.py loop seconds."""
    from benchmarks.torch_reference import chain_to_torch
    from reproductions import mv2015
    from tfrestore import data, nets
    from tfrestore.optimize.inversion import Extractors, image_space
    net, layer = case.split(":")
    layer = nets.resolve_layer(net, layer)
    model = nets.build(net, weights=None, quiet=True)
    img = data.resize(data.load_image("chelsea"), nets.input_size(net))
    x0 = image_space(net, img[None])
    init = np.asarray(mv2015.problem(mv2015.FIGURES["layers"], net=net, image_rgb=img, extractors=Extractors(model),
                                     layers=[layer]).param.image())
    times = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        import torch
        spec = Path(tmp) / "spec.pt"
        torch.save(dict(net=chain_to_torch(model, layer), target=Extractors(model).features(net, layer, x0),
                        x_init=init, sigma=mv2015.SIGMA, lambda_tv=mv2015.lambda_tv_for(net, layer),
                        lambda_l2=mv2015.LAMBDA_L2, lr=LR,
                        rates=mv2015.SCHEDULE.scaled(args.e2e_steps).rates()), spec)
        commands = {
            "main.py": [sys.executable, str(ROOT / "main.py"), "--paper=mv2015", f"--net={net}", f"--layers={layer}",
                        f"--steps={args.e2e_steps}", "--weights=random"],
            "torch": [sys.executable, str(ROOT / "benchmarks" / "torch_loop.py"), str(spec), "--threads",
                      str(args.threads), "--run", str(args.e2e_steps), "--log-every", "25"]}
        for r in range(args.rounds):
            for name in (list(commands) if r % 2 == 0 else list(commands)[::-1]):
                out = Path(tmp) / f"{name}-{r}"
                cmd = commands[name] + ([f"--out={out}"] if name == "main.py" else [])
                t = time.perf_counter()
                res = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
                wall = time.perf_counter() - t
                loop_s = (json.loads((out / "metrics.json").read_text())["seconds"] if name == "main.py"
                          else json.loads(res.stdout.strip().splitlines()[-1])["seconds"])
                times[f"{name} loop"].append(loop_s)
                times[f"{name} process"].append(wall)
    row = {"case": case, "steps": args.e2e_steps, "rounds": args.rounds,
           "seconds": {k: {"min": min(v), "median": statistics.median(v), "all": v} for k, v in times.items()}}
    row["engine_over_torch_speed"] = min(times["torch loop"]) / min(times["main.py loop"])
    row["process_ratio"] = min(times["torch process"]) / min(times["main.py process"])
    print(f"{case:16s} {args.e2e_steps} steps: main.py loop {min(times['main.py loop']):.2f} s "
          f"(process {min(times['main.py process']):.1f} s), torch loop {min(times['torch loop']):.2f} s "
          f"(process {min(times['torch process']):.1f} s): {row['engine_over_torch_speed']:.2f}× steps/s "
          f"({row['process_ratio']:.2f}× process)", flush=True)
    return row


def main(argv=None):
    args = parse_args(argv)
    threads = configure_threads(args.threads, args.inter_op, args.onednn)
    import tensorflow as tf
    machine = {"python": platform.python_version(), "tensorflow": tf.__version__, "cpus": os.cpu_count(),
               "processor": platform.processor() or platform.machine(),
               "gpus": [d.name for d in tf.config.list_physical_devices("GPU")], **threads}
    if torch_available(args):
        import torch
        machine["torch"] = torch.__version__
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()), flush=True)
    report = {"machine": machine, "args": vars(args), "rows": []}
    if args.profile:
        report["profile"] = profile_case(args.profile, args)
    elif args.end_to_end:
        report["end_to_end"] = [end_to_end_case(case, args) for case in args.end_to_end.split(",")]
    else:
        for case in args.cases.split(","):
            report["rows"].append(bench_case(case, args))
            print_rows(report["rows"][-1:])
        print("\nsummary (min / median over rounds):")
        print_rows(report["rows"], args.baseline)
    if args.batched:
        report["batched"] = batched_section(args)
    if args.figure:
        report["figure"] = figure_section(args)
    if args.rss:
        report["rss"] = rss_section()
    if args.json:
        from tfrestore.core import files
        files.write_json(args.json, report)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
