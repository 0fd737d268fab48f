"""What every inversion reproduction does around the engine: resolve flags, load net and image, run, report."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from tfrestore import data, nets
from tfrestore import optim as optimizers
from tfrestore.engine import Optimization
from tfrestore.inversion import Extractors, evaluate, print_table, write_outputs


@dataclasses.dataclass
class Setup:
    net: str
    model: object
    extractors: Extractors
    weights: str
    out: Path
    logdir: Path
    seed: int


def setup(paper: str, net: str, experiment: str, weights: str = "auto", out: str | None = None,
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
    """RGB uint8 at the net's input size, M&V's anisotropic resize."""
    return data.load_image(image, size or nets.input_size(net))


def resolve_layers(net: str, layers: Sequence[str]) -> list[str]:
    return [nets.resolve_layer(net, l) for l in layers]


def pick_optimizer(name: str | None, default: optimizers.Optimizer) -> optimizers.Optimizer:
    if name is None or name == default.name:
        return default
    return optimizers.get(name)


def optimise(s: Setup, p: dict, image_rgb: np.ndarray, config: dict, title: str, log_every: int,
             resume: bool = False, jit_compile: bool = False, progress: bool = True) -> dict:
    """Run a reproduction's problems (``p`` from its ``build()``) as one optimisation, then report and write.

    ``p`` holds objective, canvas, optimizer, schedule, labels, layers, x0 and optionally project and masks.
    """
    run = Optimization(p["objective"], p["canvas"], p["optimizer"], p["schedule"],
                       to_input=lambda x: nets.to_input(s.net, x), project=p.get("project"),
                       mean_rgb=nets.mean_rgb(s.net), labels=p["labels"], seed=s.seed, log_every=log_every,
                       jit_compile=jit_compile, config=config)
    print(f"{title}: {len(p['labels'])} problems in one graph, objective {p['objective']!r}", flush=True)
    result = run.run(out=s.out, logdir=s.logdir, resume=resume, progress=progress)
    rows = evaluate(s.extractors, s.net, p["layers"], p["x0"], result.images, p.get("masks"))
    table = print_table(rows, p["labels"])
    config = {**config, "weights": s.weights, "net": s.net, "seed": s.seed}
    originals = np.repeat(image_rgb[None], len(p["labels"]), 0)
    title = f"{title} ({'random weights' if s.weights == 'random' else 'converted weights'})"
    write_outputs(s.out, result, p["labels"], originals, nets.mean_rgb(s.net), rows, config, title, None, table)
    print(f"wall {result.seconds:.1f}s, {result.seconds_per_step * 1000:.1f} ms/step ({len(p['labels'])} problems "
          f"batched); outputs in {s.out} (figure.png, metrics.json); TensorBoard: tensorboard --logdir {s.logdir}",
          flush=True)
    return json.loads((s.out / "metrics.json").read_text())
