"""What every inversion reproduction does around the engine: load net and image, run a Problem, report, write."""
from __future__ import annotations

import dataclasses
import gc
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from tfrestore import data, nets
from tfrestore.nets import weights as weights_store
from tfrestore.optimize import optim as optimizers
from tfrestore.optimize.engine import Optimization, Problem, Result
from tfrestore.optimize.inversion import Extractors, evaluate, outputs, summarise, table

from . import paper


@dataclasses.dataclass
class Setup:
    """The run-level facts a reproduction's problem is optimised under."""
    net: str
    model: object
    extractors: Extractors
    weights: str          # "random" or the weight file's path
    out: Path
    logdir: Path
    seed: int


@dataclasses.dataclass
class OutputRule:
    """What a run may do to an output folder that already holds a run (issue 25 item 2). ``main.py`` sets it
    from ``--overwrite`` and ``--resume`` (:func:`set_output_rule`); library calls (tests, notebooks) have none
    and write where they are told."""
    overwrite: bool = False
    resume: bool = False
    announce: str | None = None         # printed once the folder is accepted: the expected cost (main.py)


_OUTPUT_RULE: OutputRule | None = None


def set_output_rule(rule: OutputRule | None) -> None:
    """Apply ``rule`` to every output folder this process claims (:func:`claim_output`); ``None``: no rule."""
    global _OUTPUT_RULE
    _OUTPUT_RULE = rule


def claim_output(folder: str | Path) -> Path:
    """The output folder of a run, checked before any work against the rule ``main.py`` set: a folder holding a
    finished run (its ``metrics.json``) or an interrupted one (a ``ckpt/`` without ``metrics.json``) is refused
    unless ``--overwrite`` (replace it) or ``--resume`` (continue it) was given, so that a rerun with other
    settings never replaces a previous run's figure, metrics and checkpoint without a word."""
    folder = Path(folder)
    for parent in (folder, *folder.parents):    # else TensorFlow's summary writer fails with a traceback
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"--out={folder}: {parent} is a file, not a folder; give a folder for the outputs")
    rule = _OUTPUT_RULE
    if rule is not None and not (rule.overwrite or rule.resume) and folder.is_dir():
        _refuse_a_run_in(folder)
    if rule is not None and rule.announce:
        print(rule.announce, flush=True)
        rule.announce = None
    return folder


def _refuse_a_run_in(folder: Path) -> None:
    """Raise (one line, exit 2) when ``folder`` holds a finished or an interrupted run."""
    if (folder / "metrics.json").exists():
        what, resume = "a finished run (metrics.json)", ""
    elif (folder / "ckpt").is_dir() or any(folder.glob("*/ckpt")):
        what, resume = "an interrupted run (a checkpoint, no metrics.json)", "continue it with --resume, "
    else:
        return
    raise ValueError(f"{folder} already holds {what}; {resume}write this run elsewhere with --out=DIR, or replace "
                     "it with --overwrite")


@dataclasses.dataclass(frozen=True)
class Cost:
    """What a long run costs on the 2-core CPU tfrestore is developed on, from measured short runs: the time is
    ``start_s`` plus, per phase, its share of the steps times its seconds per step; ``peak_gb`` is the process'
    peak resident memory (VmHWM). ``size``: the working size the numbers are for (DIP: time scales with
    size²)."""
    phases: tuple[tuple[float, float], ...]     # (share of the steps, seconds per step)
    start_s: float                              # start-up, evaluation, baselines, figure
    peak_gb: float
    default_steps: int                          # the paper's budget (no --steps)
    measured: str                               # how the numbers were measured
    size: int | None = None
    layers: int | None = None                   # the problems the step time is for (fewer --layers: less)


# (paper, experiment, net) → cost; None for a paper whose net is not a choice. Measured one run at a time on the
# 2-core development machine (peak: /usr/bin/time's maximum RSS); README "What a run costs" has the table.
_MV2015 = Cost(((1.0, 0.58),), 14.0, 1.4, 400, "idle, issue 15's 4:06 on alexnet; peak 2026-12-08", layers=20)
_DIP = dict(start_s=43.0, peak_gb=1.5, size=256, measured="a --steps=60 run at load ~1.6, 2026-12-07, compiled log points")
COSTS: dict[tuple[str, str, str | None], Cost] = {
    ("mv2015", "layers", "alexnet"): _MV2015,
    ("mv2015", "layers", "caffenet"): _MV2015,         # the same layers and sizes as AlexNet
    # shallow (HOG / HOGb / DSIFT): the net flag is not used; the default (caffenet) keys it
    ("mv2015", "shallow", "caffenet"): Cost(((1.0, 3.2),), 20.0, 1.5, 800,
                                            "two 375×500 images at load ~9, 2026-12-07, ×4.5 for the 9 embedded "
                                            "photos; --data's images scale it (100: ~11×)"),
    ("mv2015", "shallow_lambda", "caffenet"): Cost(((1.0, 0.22),), 10.0, 0.95, 800,
                                                   "chelsea at 300×451, load ~9, 2026-12-07"),
    ("mv2016", "inversion", "alexnet"): Cost(((1.0, 0.97),), 18.0, 1.8, 350, "at load ~4.8, 2026-12-07", layers=20),
    # MSE phase, prior phase, and the M&V 2016 run beside them (as many steps as both phases)
    ("foe_priors", "image_rec", "alexnet"): Cost(((0.5, 0.11), (0.5, 0.79), (1.0, 0.14)), 57.0, 1.5, 10000,
                                                 "benchmarks/prior_phase.py on a quiet machine, 2026-12-07, after "
                                                 "the fast prior energy; without training the prior; peak of a "
                                                 "--steps=20 run, 2026-12-08 (the VGG score cut at relu5_1)"),
    ("dip", "denoise", None): Cost(((1.0, 0.6),), default_steps=3000, **_DIP),
    ("dip", "inpaint", None): Cost(((1.0, 0.6),), default_steps=3000, **_DIP),
    ("dip", "deblur", None): Cost(((1.0, 0.6),), default_steps=3000, **_DIP),
    ("dip", "superres", None): Cost(((1.0, 0.6),), default_steps=2000, **_DIP),
    ("dip", "invert", None): Cost(((1.0, 0.54),), 47.0, 1.7, 3100, "at load ~5.6, 2026-12-07", size=224),
    ("layer_inversion", "compare", "alexnet"): Cost(((1.0, 130.0),), 120.0, 5.7, 3000,
                                            "roughly: a --steps=10 run at load ~6, 2026-12-07", layers=5),
    ("layer_inversion", "early_findings", "alexnet"): Cost(((1.0, 57.0),), 25.0, 2.9, 3000,
                                                           "roughly: a --steps=2 run at load ~7, 2026-12-07"),
    ("layer_inversion", "early_findings", "vgg16"): Cost(((1.0, 48.0),), 70.0, 4.6, 3000,
                                                         "roughly: a --steps=1 run at load ~7, 2026-12-07"),
}


def expected_cost(paper: str, experiment: str, net: str | None, *, steps: int | None = None,
                  size: int | None = None, layers: int | None = None) -> str | None:
    """The line printed before a long run starts: "expected: ~X min, ~Y GB peak on 2 CPU cores (measured …)";
    None when the run has no measured cost. ``layers``: how many problems --layers asked for (the time is
    scaled down by their share; memory is not)."""
    c = COSTS.get((paper, experiment, net))
    if c is None:
        return None
    n, size = steps or c.default_steps, size or c.size
    scale = (size / c.size) ** 2 if c.size else 1.0
    share = min(1.0, layers / c.layers) if layers and c.layers else 1.0
    seconds = c.start_s + n * scale * share * sum(part * s for part, s in c.phases)
    memory = c.peak_gb * max(1.0, scale) if c.size else c.peak_gb
    when = (f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400
            else f"{seconds / 3600:.1f} h" if seconds < 36000 else f"{seconds / 3600:.0f} h")
    return (f"expected: ~{when}, ~{memory:.1f} GB peak on 2 CPU cores ({n:,} steps"
            + (f" at {size}²" if c.size else "") + f"; measured {c.measured})")


def setup(*, paper: str, net: str, experiment: str, weights: str = "auto", out: str | None = None,
          logdir: str | None = None, seed: int = 0, layers: Sequence[str] | None = None) -> Setup:
    """Claim the output folder, build the net and say loudly when its weights are random. ``layers``: every
    layer the run reads, when that is all it reads: with random weights the net is then built only up to the
    deepest of them (``nets.build(up_to=...)``; a conv5 inversion of AlexNet holds no fc6–fc8, 234 MB less) and
    the run reports no top-1 label, which means nothing with random weights anyway."""
    out_path = claim_output(out or f"runs/{paper}_{net}_{experiment}")
    model = nets.build(net, weights=weights, seed=seed, quiet=True, up_to=deepest(net, layers) if layers else None)
    source = nets.weights_source(model)
    if source == "random":                 # one notice (nets.build's own warning is silenced: quiet=True)
        why = (f"no converted weights at {weights_store.weight_path(net)}" if weights == "auto"
               else f"--weights={weights}")
        print("=" * 78 + f"\n  {paper}/{experiment} on {net} with SEEDED RANDOM WEIGHTS (seed {seed}): {why}.\n"
              "  The run shows the method; the paper's pictures need the converted original weights:\n"
              f"  convert {nets.spec(net).original} with `python -m weights_convert` (README.md).\n" + "=" * 78,
              flush=True)
    return Setup(net, model, Extractors(model), source, out_path, Path(logdir or out_path / "tb"), seed)


def deepest(net: str, layers: Sequence[str]) -> str:
    """The layer of ``layers`` (names or aliases) that comes last in the net's forward order."""
    order = nets.layer_names(net)
    return max((nets.resolve_layer(net, l) for l in layers), key=order.index)


def load(net: str, image: str, size: int | None = None) -> np.ndarray:
    """RGB uint8 at the net's input size, M&V's anisotropic resize (with a warning when that enlarges it)."""
    size = size or nets.input_size(net)
    img = data.load_image(image)
    if min(img.shape[:2]) < size:
        print(f"warning: '{image}' is {img.shape[1]}×{img.shape[0]} pixels, smaller than {net}'s {size}×{size} "
              "input; it is enlarged, so fine detail in the reconstruction is interpolation", flush=True)
    return data.resize(img, size)


def resolve_layers(net: str, layers: Sequence[str]) -> list[str]:
    return [nets.resolve_layer(net, l) for l in layers]


def pick_optimizer(name: str | None, default: optimizers.Optimizer) -> optimizers.Optimizer:
    if name is None or name == default.name:
        return default
    return optimizers.get(name)


def layer_groups(net: str, layers: Sequence[str]) -> list[list[str]]:
    """The layers split by the net's M&V layer group (l1–l6, l7–l12, l13–l20 on the AlexNets), in order; nets
    without groups give one group.

    Why: on the 2-core CPU the 20-layer AlexNet figure as three graphs of one layer group each takes the same
    wall time as one graph of 20 problems (4:06 vs 4:07 for the default run; steps alone 526 vs 594 ms in
    ``benchmarks/inversion_speed.py --figure``, 20 one-layer graphs 631 ms) with 200 MB less peak memory
    (1.57 vs 1.77 GB), because only one group's activations are alive at a time (issue 15).
    """
    table = nets.spec(net).layer_group
    out: dict[int, list[str]] = {}
    for layer in layers:
        out.setdefault(table.get(layer, -1), []).append(layer)
    return list(out.values())


def _merged(parts: Sequence[Problem]) -> Problem:
    """One Problem describing the problems of several batches, in order (for evaluation and outputs)."""
    first = parts[0]
    masks = None if all(p.masks is None for p in parts) else \
        [m for p in parts for m in (p.masks or [None] * len(p.labels))]
    settings = {k: [v for p in parts for v in p.settings[k]] for k in first.settings}
    return dataclasses.replace(first, labels=[l for p in parts for l in p.labels],
                               layers=[l for p in parts for l in p.layers],
                               x0=np.concatenate([p.x0 for p in parts]), masks=masks, settings=settings)


def conditions(problem: Problem) -> list[str]:
    """A name per problem for what it was run under: its layer and every per-problem setting that varies across
    the run (λTV, β, mask, C, …). Problems with the same name differ only by restart or image — the groups the
    protocols average over (:func:`tfrestore.optimize.inversion.summarise`)."""
    n = len(problem.labels)
    varying = {k: v for k, v in problem.settings.items()
               if isinstance(v, (list, tuple)) and len(v) == n and len({repr(x) for x in v}) > 1}
    return [" ".join([problem.layers[i]] + [f"{k}={v[i]:g}" if isinstance(v[i], float) else f"{k}={v[i]}"
                                            for k, v in varying.items()]) for i in range(n)]


@dataclasses.dataclass(frozen=True)
class Reporting:
    """How :func:`solve` runs a reproduction's problem and reports it: the target image (RGB uint8, H×W×3) shown
    beside the reconstructions, the run's config (into metrics.json), the title, how often an iterate is logged
    (steps), resume / XLA / progress bar, and ``has_target=False`` for activation maximisation (no "original"
    panel and no feature error, which mean nothing without a target image)."""
    image_rgb: np.ndarray
    config: dict
    title: str
    log_every: int
    resume: bool = False
    jit_compile: bool = False
    progress: bool = True
    has_target: bool = True


def solve(problem: Problem | Sequence[Problem], s: Setup, how: Reporting) -> paper.Result:
    """Optimise a reproduction's problem as one batched run — or several batches (a list of problems, e.g. one
    per layer group) one after another, each in its own graph with its checkpoints in ``out/graph<k>`` — print one
    table, and return the outputs in memory (:meth:`paper.Result.write` writes them; :func:`finish` too)."""
    parts = [problem] if isinstance(problem, Problem) else list(problem)
    whole = parts[0] if len(parts) == 1 else _merged(parts)
    config = {**how.config, **whole.settings, "layers": whole.layers, "steps": whole.total_steps,
              "weights": s.weights, "net": s.net, "seed": s.seed, "graphs": [p.layers for p in parts]}
    result, canvas = _run_parts(parts, s, how, config)
    rows = evaluate(s.extractors, s.net, whole.layers, whole.x0, result.images, whole.masks)
    summary = summarise(rows, conditions(whole))
    text = table(rows, whole.labels, s.net, s.weights, summary=summary)
    print(text, flush=True)
    originals = np.repeat(how.image_rgb[None], len(whole.labels), 0) if how.has_target else None
    title = f"{how.title} ({'random weights' if s.weights == 'random' else 'converted weights'})"
    out = paper.Result(**outputs(result, whole.labels, originals, nets.mean_rgb(s.net), rows, config, title,
                                 table_text=text, summary=summary))
    out.arrays["canvas"] = canvas          # the whole variable (jitter margin too): a later phase starts here
    return out


def _run_parts(parts: Sequence[Problem], s: Setup, how: Reporting, config: dict) -> tuple[Result, np.ndarray]:
    """Each batch in its own graph, one after another: their results as one, and the whole canvases."""
    results, canvases = [], []
    for k, part in enumerate(parts):
        out, logdir = (s.out, s.logdir) if len(parts) == 1 else (s.out / f"graph{k}", s.logdir / f"graph{k}")
        run = Optimization.from_problem(part, to_input=lambda x: nets.to_input(s.net, x),
                                        display_offset=nets.mean_rgb(s.net), seed=s.seed, log_every=how.log_every,
                                        jit_compile=how.jit_compile, config=config)
        where = "one graph" if len(parts) == 1 else f"graph {k + 1} of {len(parts)}"
        print(f"{how.title}: {len(part.labels)} problems in {where}, objective {part.objective!r}", flush=True)
        try:
            results.append(run.run(out=out, logdir=logdir, resume=how.resume, progress=how.progress))
        except KeyboardInterrupt as e:
            raise KeyboardInterrupt(f"{e}; continue with --resume --out={s.out}") from None
        canvases.append(run.param.image().numpy())
        # A finished graph's Optimization (traced steps, variables, targets) sits in reference cycles (its
        # tf.functions close over it), so only a cycle collection frees it, and Python's came too late for the
        # next graph and the outputs to reuse that memory: the 20-layer AlexNet run peaked ~90 MB higher.
        del run
        gc.collect()
    return (results[0] if len(results) == 1 else Result.concatenate(results)), np.concatenate(canvases)


def finish(result: paper.Result, s: Setup) -> dict:
    """Write a solved run's outputs into ``s.out`` once, print where they are, and return its metrics as
    metrics.json holds them (JSON types: lists, not tuples or arrays)."""
    result.write(s.out)
    m = result.metrics
    n, graphs = len(m["problems"]), len(m["config"]["graphs"])
    print(f"wall {m['seconds']:.1f}s, {m['seconds_per_step'] * 1000:.1f} ms/step ({n} problems "
          f"in {graphs} graph{'s' if graphs > 1 else ''}); outputs in {s.out} (figure.png, metrics.json); "
          f"TensorBoard: tensorboard --logdir {s.logdir}", flush=True)
    return json.loads(json.dumps({"title": result.title, **m}, default=str))


def optimise(problem: Problem | Sequence[Problem], s: Setup, **how) -> dict:
    """:func:`solve` and :func:`finish` in one call; ``how``: the fields of :class:`Reporting` (``image_rgb``,
    ``config``, ``title``, ``log_every``, …). Returns the metrics."""
    return finish(solve(problem, s, Reporting(**how)), s)
