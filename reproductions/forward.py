"""``--paper=forward``: run an image through a network and print each requested tap's shape and statistics."""
from __future__ import annotations

import dataclasses

import numpy as np

from tfrestore import data, nets
from tfrestore.core import files

from . import paper

DESCRIPTION = "forward pass: shape and statistics of each requested layer"


@dataclasses.dataclass(frozen=True)
class Flags:
    """The command-line flags of ``--paper=forward``."""
    net: str = paper.flag("caffenet", "the network (see --list)")
    layers: tuple[str, ...] | None = paper.flag(None, "the layers to report (default: every layer)")
    image: str = paper.flag("astronaut", "the image (a sample name or a file)")
    weights: str = paper.weights_flag()

    def __post_init__(self) -> None:
        if self.net not in nets.REGISTRY:
            raise ValueError(f"unknown net '{self.net}'; valid nets: {', '.join(nets.net_names())}")


def default_out(flags: Flags) -> str:
    return f"runs/forward_{flags.net}"


def run(flags: Flags, ctx: paper.RunContext) -> dict:
    """Print, for each layer, the shape (without the batch axis) and mean, std, min and max of its output on the
    image; write them to ``ctx.out/forward.json`` and return them."""
    net = flags.net
    model = nets.build(net, weights=flags.weights, seed=ctx.seed)
    layers = list(flags.layers or nets.layer_names(net))
    extractor = nets.feature_extractor(model, layers)
    img = data.load_image(flags.image, nets.input_size(net))
    feats = extractor(nets.preprocess(net, img[None]))
    rows = {}
    print(f"{net} on '{flags.image}' (weights: {nets.weights_source(model)})")
    print(f"{'layer':<24}{'shape':<22}{'mean':>12}{'std':>12}{'min':>12}{'max':>12}")
    for name in layers:
        a = np.asarray(feats[name])
        rows[name] = {"shape": list(a.shape[1:]), "mean": float(a.mean()), "std": float(a.std()),
                      "min": float(a.min()), "max": float(a.max())}
        r = rows[name]
        print(f"{name:<24}{str(tuple(r['shape'])):<22}{r['mean']:>12.4g}{r['std']:>12.4g}{r['min']:>12.4g}"
              f"{r['max']:>12.4g}")
    result = {"net": net, "image": flags.image, "weights": nets.weights_source(model), "layers": rows}
    files.write_json(ctx.out / "forward.json", result)
    return result
