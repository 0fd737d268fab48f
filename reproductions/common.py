"""What every inversion reproduction does around the engine: load net and image, run a Problem, report, write."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from tfrestore import data, files, nets
from tfrestore import optim as optimizers
from tfrestore.engine import Optimization, Problem
from tfrestore.inversion import Extractors, evaluate, table, write_outputs


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


def setup(*, paper: str, net: str, experiment: str, weights: str = "auto", out: str | None = None,
          logdir: str | None = None, seed: int = 0) -> Setup:
    model = nets.build(net, weights=weights, seed=seed)
    source = nets.weights_source(model)
    if source == "random":
        print("=" * 78 + f"\n  {paper}/{experiment} on {net} with SEEDED RANDOM WEIGHTS (seed {seed}).\n"
              "  The run shows the method; the paper's pictures need the converted original weights.\n" + "=" * 78,
              flush=True)
    out_path = Path(out or f"runs/{paper}_{net}_{experiment}")
    return Setup(net, model, Extractors(model), source, out_path, Path(logdir or out_path / "tb"), seed)


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


def optimise(problem: Problem, s: Setup, *, image_rgb: np.ndarray, config: dict, title: str, log_every: int,
             resume: bool = False, jit_compile: bool = False, progress: bool = True) -> dict:
    """Optimise a reproduction's problem as one batched run, then print its table and write its outputs."""
    config = {**config, **problem.settings, "layers": problem.layers, "steps": problem.total_steps,
              "weights": s.weights, "net": s.net, "seed": s.seed}
    run = Optimization.from_problem(problem, to_input=lambda x: nets.to_input(s.net, x),
                                    display_offset=nets.mean_rgb(s.net), seed=s.seed, log_every=log_every,
                                    jit_compile=jit_compile, config=config)
    print(f"{title}: {len(problem.labels)} problems in one graph, objective {problem.objective!r}", flush=True)
    try:
        result = run.run(out=s.out, logdir=s.logdir, resume=resume, progress=progress)
    except KeyboardInterrupt as e:
        raise KeyboardInterrupt(f"{e}; continue with --resume --out={s.out}") from None
    rows = evaluate(s.extractors, s.net, problem.layers, problem.x0, result.images, problem.masks)
    text = table(rows, problem.labels, s.net, s.weights)
    print(text, flush=True)
    originals = np.repeat(image_rgb[None], len(problem.labels), 0)
    title = f"{title} ({'random weights' if s.weights == 'random' else 'converted weights'})"
    write_outputs(s.out, result, problem.labels, originals, nets.mean_rgb(s.net), rows, config, title, text)
    files.save_npy(s.out / "canvas.npy", run.param.image().numpy())   # the whole variable: a later phase starts here
    print(f"wall {result.seconds:.1f}s, {result.seconds_per_step * 1000:.1f} ms/step ({len(problem.labels)} problems "
          f"batched); outputs in {s.out} (figure.png, metrics.json); TensorBoard: tensorboard --logdir {s.logdir}",
          flush=True)
    return json.loads((s.out / "metrics.json").read_text())
