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


def finish(s: Setup, run: Optimization, result, labels, layers, x0, originals_rgb, config: dict, title: str,
           masks=None, ncols=None) -> dict:
    """Evaluate, print the per-problem table and write every output."""
    rows = evaluate(s.extractors, s.net, layers, x0, result.images, masks)
    table = print_table(rows, labels)
    config = {**config, "weights": s.weights, "net": s.net, "seed": s.seed}
    write_outputs(s.out, result, labels, originals_rgb, nets.mean_rgb(s.net), rows, config, title, ncols, table)
    print(f"wall {result.seconds:.1f}s, {result.seconds_per_step * 1000:.1f} ms/step ({len(labels)} problems "
          f"batched); outputs in {s.out} (figure.png, metrics.json); TensorBoard: tensorboard --logdir {s.logdir}",
          flush=True)
    return json.loads((s.out / "metrics.json").read_text())
