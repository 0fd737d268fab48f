"""``--paper=forward``: run an image through a network and print each requested tap's shape and statistics."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tfrestore import data, files, nets

DESCRIPTION = "forward pass: shape and statistics of each requested layer"


def run(*, net: str = "caffenet", layers: list[str] | None = None, image: str = "astronaut", weights: str = "auto",
        out: str | None = None, seed: int = 0) -> dict:
    model = nets.build(net, weights=weights, seed=seed)
    layers = layers or nets.layer_names(net)
    extractor = nets.feature_extractor(model, layers)
    img = data.load_image(image, nets.input_size(net))
    feats = extractor(nets.preprocess(net, img[None]))
    rows = {}
    print(f"{net} on '{image}' (weights: {nets.weights_source(model)})")
    print(f"{'layer':<24}{'shape':<22}{'mean':>12}{'std':>12}{'min':>12}{'max':>12}")
    for name in layers:
        a = np.asarray(feats[name])
        rows[name] = {"shape": list(a.shape[1:]), "mean": float(a.mean()), "std": float(a.std()),
                      "min": float(a.min()), "max": float(a.max())}
        r = rows[name]
        print(f"{name:<24}{str(tuple(r['shape'])):<22}{r['mean']:>12.4g}{r['std']:>12.4g}{r['min']:>12.4g}"
              f"{r['max']:>12.4g}")
    result = {"net": net, "image": image, "weights": nets.weights_source(model), "layers": rows}
    if out:
        files.write_json(Path(out) / "forward.json", result)
    return result
