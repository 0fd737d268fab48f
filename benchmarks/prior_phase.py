"""foe_priors image_rec on a CPU: the prior phase's step against the MSE phase's, before and after the fast energy.

    python benchmarks/prior_phase.py                              # 2 interleaved rounds, JSON to runs/prior_phase.json
    python benchmarks/prior_phase.py --rounds 3 --steps 5 --wait-quiet --json runs/pp.json

The thesis' AlexNet reconstruction (spec patch_priors §7.1): the eight layers conv1 … fc8 as one batch of 8
problems (``reproductions.foe_priors.image_rec_problems``, ``chelsea``, seeded random weights — the cost does not
depend on them), Adam lr 1 with jitter. Three variants, each in a process of its own so that each peak RSS
(``VmHWM``) is its own:

- ``mse``: phase 1, the pure feature MSE;
- ``fast``: phase 2, MSE + the 8×8×3 K 512 prior (``full512``'s shape: gc/gc, PCA to 191) through
  :class:`~tfrestore.priors.PriorTerm` as it is now (``energy(path="fast")``: strips of rows, folded filters);
- ``before``: phase 2 with the energy as it was (``path="auto"``: one VALID convolution over the whole batch,
  differentiated by TensorFlow);
- ``mv2016``: the M&V 2016 inversion of the same eight layers that image_rec runs beside them (10,000 steps).

Every process takes one warm-up step (tracing), then times ``--steps`` steps; the rounds rotate the order so that a
noisy shared machine slows all alike, and the median ms/step is reported with the ratio prior / MSE phase. The
projection of the thesis budget (5,000 MSE + 5,000 prior steps) is 5000·(t_mse + t_prior); with ``mv2016``
measured, the whole image_rec run adds 10,000·t_mv2016. ``--wait-quiet`` first waits (up to 20 min, checking every 30 s) for the 1-minute load
average to fall below 1.0; the loads are recorded either way.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

VARIANTS = ("mse", "fast", "before", "mv2016")
THESIS_STEPS = (5000, 5000)          # AlexNet image_rec: MSE phase, prior phase
MV2016_STEPS = 10000                 # the M&V 2016 run image_rec puts beside them (as many steps as both phases)


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def peak_rss_mb() -> float:
    """VmHWM: this process's own high-water mark."""
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def worker(variant: str, steps: int) -> dict:
    """One variant's ms/step after a warm-up step, in this process."""
    import numpy as np
    import tensorflow as tf
    from reproductions import foe_priors
    from tfrestore import data, nets
    from tfrestore.optimize.engine import Optimization
    from tfrestore.optimize.inversion import Extractors
    from tfrestore.priors import PriorTerm
    from tfrestore.priors.model import PatchPrior, PriorConfig
    from tfrestore.priors.whitening import Normalisation, fit_whitening

    class BeforeTerm(PriorTerm):
        """The prior term as it was before the fast path: the whole-batch energy under TensorFlow's autodiff."""
        def value(self, ctx):
            return self.prior.energy(ctx.canvas + self.offset, path="auto")

    net, layers = "alexnet", list(foe_priors.DEFAULT_LAYERS["alexnet"])
    model = nets.build(net, weights=None, quiet=True)
    img = data.resize(data.load_image("chelsea"), nets.input_size(net))
    rng = np.random.default_rng(0)
    cfg = PriorConfig()                                              # full512's shape
    d = cfg.features
    a = rng.normal(size=(4 * d, d))
    norm = Normalisation(cfg.channels, cfg.positions, "gc", "gc", np.repeat([123.0, 117.0, 104.0], cfg.positions),
                         np.full(d, 50.0))
    prior = PatchPrior(cfg, norm, fit_whitening(a.T @ a / len(a), "pca", cfg.n_white), seed=0)
    if variant == "before":
        foe_priors.PriorTerm = BeforeTerm                           # image_rec_problems builds its term by this name
    plan = foe_priors.image_rec_plan(net, layers, steps=2 * (steps + 1) + 2)
    p1, phase2 = foe_priors.image_rec_problems(net=net, image_rgb=img, extractors=Extractors(model), prior=prior,
                                               layers=layers, seed=0, plan=plan)
    problem = {"mse": p1, "mv2016": None}.get(variant) or phase2(p1.param.image().numpy())
    if variant == "mv2016":
        from reproductions import mv2016
        problem = mv2016.problem(mv2016.EXPERIMENT_SETTINGS["inversion"], net=net, image_rgb=img,
                                 extractors=Extractors(model), layers=layers, seed=0, steps=2 * (steps + 1) + 2)
    run = Optimization.from_problem(problem, to_input=lambda x: nets.to_input(net, x))
    t0 = time.perf_counter()
    run.step(1)                                                      # traces
    warm = time.perf_counter() - t0
    load_before = load1()
    t0 = time.perf_counter()
    run.step(steps)
    ms = (time.perf_counter() - t0) / steps * 1000
    assert np.isfinite(run.param.image().numpy()).all()
    return {"variant": variant, "ms_per_step": ms, "warmup_s": warm, "peak_rss_mb": peak_rss_mb(),
            "load1": [load_before, load1()], "problems": len(layers),
            "canvas": list(problem.param.image().shape), "tf": tf.__version__}


def run_worker(variant: str, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--steps", str(steps)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise RuntimeError(f"{variant} worker failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def wait_quiet(limit_s: float = 1200, every_s: float = 30, below: float = 1.0) -> dict:
    t0, first = time.time(), load1()
    while load1() >= below and time.time() - t0 < limit_s:
        time.sleep(every_s)
    return {"load_at_start": first, "load_when_started": load1(), "waited_s": round(time.time() - t0),
            "quiet": load1() < below}


def summarise(rows: list[dict]) -> dict:
    by = {v: [r for r in rows if r["variant"] == v] for v in VARIANTS}
    med = {v: statistics.median(r["ms_per_step"] for r in rs) for v, rs in by.items() if rs}
    out = {v: {"ms_per_step_median": round(med[v], 1), "ms_per_step_min": round(min(r["ms_per_step"] for r in rs), 1),
               "peak_rss_mb": round(max(r["peak_rss_mb"] for r in rs))} for v, rs in by.items() if rs}
    for v in ("fast", "before"):
        if v in med and "mse" in med:
            out[v]["ratio_to_mse_phase"] = round(med[v] / med["mse"], 2)
            out[v]["thesis_budget_h"] = round((THESIS_STEPS[0] * med["mse"] + THESIS_STEPS[1] * med[v]) / 3.6e6, 2)
            if "mv2016" in med:        # the whole image_rec run: both phases and the M&V 2016 comparison
                out[v]["thesis_run_with_mv2016_h"] = round(out[v]["thesis_budget_h"] + MV2016_STEPS * med["mv2016"]
                                                           / 3.6e6, 2)
    if "fast" in med and "before" in med:
        out["speedup_prior_phase"] = round(med["before"] / med["fast"], 2)
    return out


def main(argv=None) -> dict:
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--steps", type=int, default=3, help="timed steps per process (after one warm-up step)")
    a.add_argument("--rounds", type=int, default=2, help="interleaved rounds (each runs every variant once)")
    a.add_argument("--variants", default=",".join(VARIANTS), help="a subset of " + ",".join(VARIANTS))
    a.add_argument("--wait-quiet", action="store_true", help="wait for the 1-minute load average to fall below 1.0")
    a.add_argument("--json", default=str(ROOT / "runs" / "prior_phase.json"), help="where the JSON goes")
    a.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = a.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps)), flush=True)
        return {}
    variants = [v for v in args.variants.split(",") if v]
    if unknown := set(variants) - set(VARIANTS):
        sys.exit(f"error: unknown variant(s) {', '.join(sorted(unknown))}; give a subset of {','.join(VARIANTS)}")
    machine = wait_quiet() if args.wait_quiet else {"load_at_start": load1()}
    rows = []
    for r in range(args.rounds):
        for v in variants[r % len(variants):] + variants[:r % len(variants)]:      # rotate the order
            rows.append(run_worker(v, args.steps))
            print(f"round {r + 1} {v:7s} {rows[-1]['ms_per_step']:8.0f} ms/step  peak {rows[-1]['peak_rss_mb']:6.0f} MB"
                  f"  load {rows[-1]['load1'][0]:.1f}", flush=True)
    result = {"summary": summarise(rows), "rows": rows, "machine": {**machine, "cpus": os.cpu_count()},
              "steps": args.steps, "rounds": args.rounds}
    print(json.dumps(result["summary"], indent=1))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)                                             # atomic: an earlier result is never half-lost
    return result


if __name__ == "__main__":
    main()
