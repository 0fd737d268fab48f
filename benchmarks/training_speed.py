"""Training speed side by side: tfrestore's compiled training steps against PyTorch twins in their own processes.

    python benchmarks/training_speed.py                              # the five cases, 5 interleaved rounds
    python benchmarks/training_speed.py --cases foe,dip --rounds 3 --json runs/train_speed.json
    python benchmarks/training_speed.py --tiny --rounds 1             # every path at toy sizes (debugging)
    python benchmarks/training_speed.py --checkpoints                 # checkpoint share of short prior trainings
    python benchmarks/training_speed.py --cases classifier --tf-data --no-xla   # the Trainer as it was (before)
    python benchmarks/training_speed.py --profile dip                 # tfrestore's step by op type (tf.profiler)
    python benchmarks/training_speed.py --reprint runs/train_speed.json   # the table of an earlier --json run

Cases (the library's own training code, timed through its stepper's ``advance``):

- ``foe``: ``full512`` score matching (8×8 RGB, K 512, 191 whitened dims, batch 250, grad clip 1e-3, Adam at the
  schedule's first rate) — :class:`tfrestore.priors.train.PriorTrainer`'s block; patches/s.
- ``dip``: the skip generator (RESTORATION_NET) at 256², Adam (paper form, lr 0.01) on a data term, input noise
  σ_p 1/30, the moving average of outputs — :class:`tfrestore.optimize.engine.Optimization`'s block; steps/s.
- ``inverter``: AlexNet (seeded random weights) to conv3 and pool2, the dc module DC7 (conv3 → pool2) trained on
  their MSE, batch 32 of 227² images, the thesis' Adam — :class:`tfrestore.train.training.Trainer`.
- ``classifier``: the digits net, cross-entropy, batch 64 — the Trainer as ``models/classifier.py`` drives it.
- ``autoencoder``: the digits autoencoder with the coverage regulariser (Q4: batch 48, lr 5e-4).

Each PyTorch twin (``benchmarks/torch_train.py``) gets the Keras model's initial weights in PyTorch layouts, the
same data and the same batch sequence (for the deep image prior the same input noise); before timing, the loss of
its first ``--check`` steps must agree with tfrestore's: the first step (identical weights and batch: the same
function) to ``AGREEMENT_FIRST`` relative, later steps to ``AGREEMENT`` (Adam divides every gradient element by its
own scale, so float-order differences on near-zero elements become whole steps, and Keras' ε sits elsewhere than
torch's: trajectories part at the 1e-3–1e-2 level within three DIP steps), or that column is VOID. Twins: eager, ``channels_last``, ``torch.compile`` (with the
fused Adam), and both; "best torch" is the fastest valid one. Rounds rotate the order of all columns, one process
running at a time, the same thread count everywhere; min and median ms/step are reported and the headline ratio is
tfrestore's speed over the best twin's (min over rounds).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
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

CASES = ("foe", "dip", "inverter", "classifier", "autoencoder")
TWINS = {"torch_eager": [], "torch_cl": ["--channels-last"], "torch_compile": ["--compile"],
         "torch_compile_cl": ["--compile", "--channels-last"]}
AGREEMENT_FIRST = 1e-4
AGREEMENT = 5e-2
UNIT = {"foe": ("patches/s", 250), "dip": ("steps/s", 1), "inverter": ("images/s", 32),
        "classifier": ("images/s", 64), "autoencoder": ("images/s", 48)}


def parse_args(argv=None):
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    a.add_argument("--steps", type=int, default=0, help="steps per timed round (default: per case)")
    a.add_argument("--rounds", type=int, default=5)
    a.add_argument("--check", type=int, default=3, help="steps whose losses are compared before timing")
    a.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads for TF and torch")
    a.add_argument("--twins", default=",".join(TWINS), help=f"PyTorch columns, of {', '.join(TWINS)}")
    a.add_argument("--tiny", action="store_true", help="toy sizes: check that every path runs")
    a.add_argument("--checkpoints", action="store_true", help="checkpoint share of short full512 trainings")
    a.add_argument("--json", help="write the rows and the machine to this JSON file")
    a.add_argument("--reprint", metavar="JSON", help="print an earlier --json run's table (agreement re-judged)")
    a.add_argument("--profile", metavar="CASE", help="tf.profiler's op time of tfrestore's step, by op type")
    a.add_argument("--tf-data", action="store_true",
                   help="the Trainer cases read the tf.data pipeline (gather_in_graph=False): the earlier path")
    a.add_argument("--no-xla", action="store_true",
                   help="the Trainer cases without XLA whatever the model module chooses (jit_compile=False)")
    return a.parse_args(argv)


DEFAULT_STEPS = {"foe": 50, "dip": 3, "inverter": 2, "classifier": 50, "autoencoder": 50}
TRAINER_OPTIONS: dict = {}          # extra Trainer keywords of the inverter, classifier and autoencoder cases (main)
XLA = {"allowed": True}             # False (--no-xla): jit_compile off where a model module turns it on


# ---- the tfrestore side of each case: (runner, twin spec) ------------------------------------------------------
class Runner:
    """``check(k)``: the losses of the next k steps, one compiled block each; ``run(n)``: n steps in one block."""

    def __init__(self, advance, losses, done):
        self._advance, self._losses, self._done = advance, losses, done

    def check(self, k: int) -> list[float]:
        out = []
        for _ in range(k):
            out.append(self._losses())
        return out

    def run(self, n: int) -> None:
        self._advance(self._done() + n)
        self._done()                                    # a read of the step counter: the block has finished


def _conv_params(layer) -> tuple:
    return np.asarray(layer.kernel), np.asarray(layer.bias)


def _bn_params(layer) -> tuple:
    return tuple(np.asarray(v) for v in (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance))


def _nchw(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2))


def foe_case(total: int, tiny: bool):
    import tensorflow as tf
    from tfrestore.priors import catalogue, whitening as W
    from tfrestore.priors.patches import Prepared
    from tfrestore.priors.train import PriorTrainer, TrainConfig
    cfg = catalogue.CATALOGUE["full512"].config
    if tiny:
        import dataclasses
        cfg = dataclasses.replace(cfg, components=32, n_white=40, patch=4)
    d = cfg.features
    rng = np.random.default_rng(0)
    x = rng.laplace(size=(20000, d)) @ rng.normal(size=(d, d)).T / np.sqrt(d)
    norm = W.fit_normalisation(lambda: [x], cfg.channels, cfg.positions, "none", "none")
    wh = W.fit_whitening(W.second_moment([x]), "pca", cfg.n_white)
    xw = (x @ wh.whiten.T).astype(np.float32)
    batch = 250
    tc = TrainConfig(steps=total, batch=batch, breakpoints=((0, 1.0),), grad_clip=1e-3, val_every=total)
    tr = PriorTrainer(cfg, Prepared(norm, wh, xw[:16000], xw[16000:]), tc)
    tr.begin()

    def losses():
        tr.advance(tr.steps_done + 1)
        return float(tr._loss_sum.numpy())
    n = 16000
    index = (np.arange(total)[:, None] * batch + np.arange(batch)[None]) % n
    spec = {"case": "foe", "w": tr.prior.w.numpy(), "a": tr.prior.a.numpy(), "data": {"x": xw[:16000]},
            "index": index, "lr": 1.0, "eps": 1e-8, "clip": 1e-3}
    return Runner(tr.advance, losses, lambda: tr.steps_done), spec


def dip_case(total: int, tiny: bool):
    import keras
    import tensorflow as tf
    from tfrestore.models import dip
    from tfrestore.optimize import objectives as O, optim
    from tfrestore.optimize.engine import Optimization, _NOISE_STREAM
    size, kw = (64, dict(channels_down=(8,) * 3, channels_up=(8,) * 3, channels_skip=(4,) * 3)) if tiny else \
        (256, dip.RESTORATION_NET.kwargs())
    sigma = 25 / 255
    p = dip.generator_parameterization(size, noise_std=dip.NOISE_STD_DENOISE, seed=0, **kw)
    y = np.random.default_rng(1).uniform(0, 1, (1, size, size, 3)).astype(np.float32)
    run = Optimization(O.DataTerm(y, sigma=sigma), p, optim.Adam(epsilon_form="paper"),
                       optim.Schedule([optim.Stage(total, dip.LEARNING_RATE, jitter=False)]), seed=0)
    params = {"conv": {}, "bn": {}}
    for layer in p.model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            params["conv"][layer.name] = _conv_params(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            params["bn"][layer.name] = _bn_params(layer)
    noise_tf = lambda t: p.noise_std * tf.random.stateless_normal(tf.shape(p.z), seed=tf.stack(   # noqa: E731
        [run.seed + _NOISE_STREAM, t]))

    def losses():
        t = run.steps_done
        with keras.StatelessScope():       # the loss step t computes, without touching the model's state
            out = p.model(p.z + noise_tf(t), training=True)
        value = float(tf.reduce_sum(tf.square(out - y)) / (2 * sigma ** 2))
        run.step(1)
        return value
    spec = {"case": "dip", "params": params, "scales": len(kw["channels_down"]), "z": _nchw(p.z),
            "y": _nchw(y), "sigma": sigma, "noise_std": p.noise_std, "lr": dip.LEARNING_RATE, "eps": 1e-8,
            "noise": [_nchw(noise_tf(t)) for t in range(8)], "data": {}, "index": np.zeros((1, 1), np.int64)}
    return Runner(lambda stop: run.step(stop - run.steps_done), losses, lambda: run.steps_done), spec


def _trainer_runner(trainer):
    trainer.begin()

    def losses():
        trainer.advance(trainer.steps_done + 1)
        return float(trainer._sums["loss"].numpy())
    return Runner(trainer.advance, losses, lambda: trainer.steps_done)


def inverter_case(total: int, tiny: bool):
    import dataclasses
    from benchmarks.torch_reference import chain_to_torch
    from tfrestore import nets
    from tfrestore.models import inverters as I
    from tfrestore.train import training
    model = nets.build("alexnet", weights=None, quiet=True)
    spec_dc = next(s for s in I.catalogue("alexnet") if s.name == "DC7")
    if tiny:
        spec_dc = dataclasses.replace(spec_dc, hidden=16, kernel1=3, kernel2=3)
    taps = I.Taps(model, [spec_dc])
    modules = I.build_modules(taps, [spec_dc])
    n, batch = (8, 4) if tiny else (64, 32)
    images = np.random.default_rng(2).uniform(0, 255, (n, 227, 227, 3)).astype(np.float32)
    cfg = dataclasses.replace(I.SOLO, steps=total, batch=batch, breakpoints=())
    trainer = training.Trainer(modules["DC7"], I.loss_fn(taps, modules, [spec_dc], "solo"), {"image": images}, cfg,
                               name="inverter", **TRAINER_OPTIONS)
    m = modules["DC7"]
    deconv = next(l for l in m.layers if l.name.endswith("_deconv"))
    conv = next(l for l in m.layers if l.name.endswith("_conv"))
    trunk = chain_to_torch(model, nets.resolve_layer("alexnet", spec_dc.source))
    target_index = len(chain_to_torch(model, nets.resolve_layer("alexnet", spec_dc.target))) - 1
    spec = {"case": "inverter", "trunk": trunk, "target_index": target_index,
            "params": {"deconv": _conv_params(deconv), "conv": _conv_params(conv)},
            "data": {"x": _nchw(nets.preprocess("alexnet", images))},
            "index": training.batch_indices(n, total, batch, cfg.shuffle, cfg.seed), "lr": cfg.learning_rate,
            "eps": cfg.epsilon}
    return _trainer_runner(trainer), spec


def classifier_case(total: int, tiny: bool):
    import dataclasses
    import tensorflow as tf
    from tfrestore import data, nets
    from tfrestore.models import classifier
    from tfrestore.train import training
    x, y, _ = data.digit_images(None, "train")
    model = nets.build("digits", weights="random", seed=0)

    def loss(m, batch, training_):       # models/classifier.py's loss
        logits = m(nets.preprocess("digits", batch["x"]), training=training_)
        ce = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(batch["y"], logits, from_logits=True))
        return {"loss": ce}
    cfg = dataclasses.replace(classifier.TRAINING, steps=total)
    trainer = training.Trainer(model, loss, {"x": x, "y": y}, cfg, name="classifier",
                               jit_compile=classifier.JIT_COMPILE and XLA["allowed"], **TRAINER_OPTIONS)
    params = {name: _conv_params(model.get_layer(name)) for name in ("conv1", "conv2", "fc3", "fc4")}
    spec = {"case": "classifier", "params": params, "data": {"x": _nchw(nets.preprocess("digits", x))},
            "labels": y, "index": training.batch_indices(len(x), total, cfg.batch, cfg.shuffle, cfg.seed),
            "lr": cfg.learning_rate, "eps": cfg.epsilon}
    return _trainer_runner(trainer), spec


def autoencoder_case(total: int, tiny: bool):
    import dataclasses
    from tfrestore import data
    from tfrestore.models import autoencoder as A
    from tfrestore.train import training
    x, _, _ = data.digits(28, None, "train")
    q = A.QUESTIONS["Q4"]
    model = A.build(q.latent)
    cfg = dataclasses.replace(q.config(len(x)), steps=total)
    trainer = training.Trainer(model, A.loss_fn(q.coverage, q.reconstruction_weight), {"x": x}, cfg,
                               name="autoencoder", jit_compile=A.JIT_COMPILE and XLA["allowed"],
                               **TRAINER_OPTIONS)
    enc, dec = model.get_layer("encoder"), model.get_layer("decoder")
    params = {n: _conv_params(enc.get_layer(n)) for n in ("enc_conv1", "enc_conv2", "latent")}
    params.update({n: _conv_params(dec.get_layer(n)) for n in ("dec_dense", "dec_deconv1", "dec_deconv2")})
    params.update({n: _bn_params(enc.get_layer(n)) for n in ("enc_bn1", "enc_bn2")})
    params.update({n: _bn_params(dec.get_layer(n)) for n in ("dec_bn0", "dec_bn1")})
    spec = {"case": "autoencoder", "params": params, "data": {"x": _nchw(x)},
            "index": training.batch_indices(len(x), total, cfg.batch, cfg.shuffle, cfg.seed),
            "lr": cfg.learning_rate, "eps": cfg.epsilon}
    return _trainer_runner(trainer), spec


BUILDERS = {"foe": foe_case, "dip": dip_case, "inverter": inverter_case, "classifier": classifier_case,
            "autoencoder": autoencoder_case}


# ---- the PyTorch side --------------------------------------------------------------------------------------------
class TorchWorker:
    """One twin in a process of its own (``benchmarks/torch_train.py``): it runs the check steps at start and
    reports their losses (or why it could not run); each :meth:`round` times ``steps`` steps there."""

    def __init__(self, spec_path: Path, flags: list[str], args, steps: int):
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "torch_train.py"), str(spec_path), "--threads",
             str(args.threads), "--steps", str(steps), "--check", str(args.check), *flags],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        first = json.loads(line) if line else {"error": "the worker exited without a word"}
        self.losses, self.error = first.get("losses"), first.get("error")

    def round(self, steps: int) -> float:
        self.proc.stdin.write("round\n")
        self.proc.stdin.flush()
        return float(json.loads(self.proc.stdout.readline())["ms_per_step"])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=120)


def agreement(ours: list[float], theirs: list[float]) -> dict:
    rel = [abs(a - b) / max(abs(a), 1e-12) for a, b in zip(ours, theirs)]
    return {"first": rel[0], "later": max(rel[1:], default=0.0),
            "ok": rel[0] <= AGREEMENT_FIRST and max(rel[1:], default=0.0) <= AGREEMENT}


def timed(fn, steps: int) -> float:
    t = time.perf_counter()
    fn(steps)
    return (time.perf_counter() - t) / steps * 1000


def bench_case(case: str, args) -> dict:
    import torch
    steps = args.steps or DEFAULT_STEPS[case]
    total = args.check + 2 + args.rounds * steps + 1
    runner, spec = BUILDERS[case](total, args.tiny)
    ours = runner.check(args.check)
    runner.run(1)                                                # warm: the timed block's own trace
    workers, rows = {}, {"case": case, "steps": steps, "rounds": args.rounds, "losses": {"tfrestore": ours}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.pt"
        torch.save(spec, path)
        for name in args.twins.split(","):
            w = TorchWorker(path, TWINS[name], args, steps)
            if w.error:
                rows.setdefault("errors", {})[name] = w.error
                w.close()
                continue
            rows["losses"][name] = w.losses
            workers[name] = w
    runners = {"tfrestore": lambda n: timed(runner.run, n), **{k: w.round for k, w in workers.items()}}
    names, times = list(runners), defaultdict(list)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(runners[name](steps))
    for w in workers.values():
        w.close()
    rows["ms_per_step"] = {k: {"min": min(v), "median": statistics.median(v), "all": v} for k, v in times.items()}
    return rejudge(rows)


def print_row(r: dict) -> None:
    unit, per = UNIT[r["case"]]
    cols = ["tfrestore", *TWINS]
    line = f"{r['case']:<12}"
    for c in cols:
        t = r["ms_per_step"].get(c)
        line += f"{t['min']:>10.1f}/{t['median']:<8.1f}" if t else f"{'—':>19}"
    ratio = r.get("tfrestore_over_best_torch")
    line += f"{ratio:>7.2f}× ({r.get('best_torch', '')})" if ratio else "      —"
    rate = per / r["ms_per_step"]["tfrestore"]["min"] * 1000
    line += f"  tfrestore {rate:,.1f} {unit}"
    print(line, flush=True)
    for k, a in r["agreement"].items():
        print(f"    {k}: loss agrees to {a['first']:.1e} (step 1), {a['later']:.1e} (steps 2–)"
              + ("" if a["ok"] else "  VOID"), flush=True)
    for k, e in r.get("errors", {}).items():
        print(f"    {k}: not run — {e}", flush=True)


def print_header() -> None:
    print(f"{'case':<12}" + "".join(f"{c + ' ms min/med':>19}" for c in ["tfrestore", *TWINS])
          + "  tfrestore / best torch", flush=True)


# ---- checkpoints of short prior trainings --------------------------------------------------------------------
def checkpoint_section(args) -> list[dict]:
    """``full512`` trained for a few lengths with the catalogue's schedule squeezed to them (``TrainConfig.scaled``:
    a checkpoint asked for every 1/25 of the run) through :meth:`PriorTrainer.run`: the share of the wall time
    its checkpoints took."""
    from tfrestore.priors import catalogue, whitening as W
    from tfrestore.priors.patches import Prepared
    from tfrestore.priors.train import PriorTrainer
    entry = catalogue.CATALOGUE["full512"]
    cfg, d = entry.config, entry.config.features
    rng = np.random.default_rng(0)
    x = rng.laplace(size=(20000, d)) @ rng.normal(size=(d, d)).T / np.sqrt(d)
    norm = W.fit_normalisation(lambda: [x], cfg.channels, cfg.positions, "none", "none")
    wh = W.fit_whitening(W.second_moment([x]), "pca", cfg.n_white)
    xw = (x @ wh.whiten.T).astype(np.float32)
    out = []
    for steps in ((100, 300) if args.tiny else (500, 2500, 10000)):
        tc = entry.training.scaled(steps)
        tr = PriorTrainer(cfg, Prepared(norm, wh, xw[:16000], xw[16000:]), tc)
        with tempfile.TemporaryDirectory() as tmp:
            loop = tr.loop(Path(tmp) / "ckpt", progress=False)
            s = loop.run()
        share = s.checkpoint_seconds / s.seconds
        out.append({"steps": steps, "checkpoint_every": tc.checkpoint_every, "seconds": s.seconds,
                    "checkpoint_seconds": s.checkpoint_seconds, "share": share})
        print(f"full512 {steps} steps (checkpoint asked every {tc.checkpoint_every}): {s.seconds:.1f} s, "
              f"checkpoints {s.checkpoint_seconds * 1000:.0f} ms = {share:.1%} of the run", flush=True)
    return out


def rejudge(r: dict) -> dict:
    """A row's agreement, VOID columns and ratios under this file's tolerances."""
    ours = r["losses"]["tfrestore"]
    r["agreement"] = {k: agreement(ours, v) for k, v in r["losses"].items() if k != "tfrestore"}
    valid = [k for k, a in r["agreement"].items() if a["ok"]]
    r["void"] = sorted(set(r["agreement"]) - set(valid))
    ms = r["ms_per_step"]
    if valid:
        r["best_torch"] = min(valid, key=lambda k: ms[k]["min"])
        r["tfrestore_over_best_torch"] = ms[r["best_torch"]]["min"] / ms["tfrestore"]["min"]
    r["tfrestore_over_torch_eager"] = ms["torch_eager"]["min"] / ms["tfrestore"]["min"] \
        if "torch_eager" in valid else None
    return r


def profile_case(case: str, args, top: int = 15) -> list[dict]:
    """Trace ``--steps`` of tfrestore's steps with TensorFlow's profiler; the host op time by op type."""
    from op_profile import op_times
    steps = args.steps or DEFAULT_STEPS[case]
    runner, _ = BUILDERS[case](steps + 3, args.tiny)
    runner.run(1)
    rows, total = op_times(lambda: runner.run(steps), steps)
    print(f"profile of {case}: op time per step summed over threads ({total:.1f} ms)")
    for r in rows[:top]:
        print(f"  {r['op']:<34}{r['ms_per_step']:>10.2f} ms{r['share']:>8.1%}")
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.reprint:
        report = json.loads(Path(args.reprint).read_text())
        print("machine: " + ", ".join(f"{k}={v}" for k, v in report["machine"].items()))
        print_header()
        for r in report["rows"]:
            print_row(rejudge(r))
        return
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    TRAINER_OPTIONS["gather_in_graph"] = not args.tf_data
    XLA["allowed"] = not args.no_xla
    import torch
    machine = {"python": platform.python_version(), "tensorflow": tf.__version__, "torch": torch.__version__,
               "cpus": os.cpu_count(), "threads": args.threads, "processor": platform.processor() or platform.machine(),
               "trainer_input": "tf.data" if args.tf_data else "gather", "trainer_xla": not args.no_xla,
               "loadavg_start": open("/proc/loadavg").read().split()[:3]}
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()), flush=True)
    report = {"machine": machine, "args": vars(args), "rows": []}
    if args.profile:
        report["profile"] = profile_case(args.profile, args)
    elif args.checkpoints:
        report["checkpoints"] = checkpoint_section(args)
    else:
        print_header()
        for case in args.cases.split(","):
            report["rows"].append(bench_case(case, args))
            print_row(report["rows"][-1])
        report["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    if args.json:
        from tfrestore.core import files
        files.write_json(args.json, report)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
