"""tfrestore command line: reproduce a paper's figure and numbers.

    python main.py --list
    python main.py --paper=mv2015 --net=alexnet
    python main.py --paper=forward --net=vgg16 --layers=conv1_1,pool5 --image=chelsea
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("paper", None, "what to run; see --list")
flags.DEFINE_string("net", None, "network name; see --list (default: the paper's own network)")
flags.DEFINE_list("layers", None, "comma-separated layer names or aliases (default: the paper's layers)")
flags.DEFINE_string("image", None, "embedded sample image name or path to an image file (default: the paper's)")
flags.DEFINE_string("weights", "auto", "'auto' (weight store, else seeded random), 'random', or a .weights.h5 path")
flags.DEFINE_string("out", None, "output folder (default: runs/<paper>_<net>)")
flags.DEFINE_string("logdir", None, "TensorBoard log folder (default: <out>/tb)")
flags.DEFINE_integer("steps", None, "override the number of optimisation steps (scales the paper's schedule)")
flags.DEFINE_integer("seed", 0, "random seed (initialisation, jitter, random weights)")
flags.DEFINE_string("optimizer", None, "override the paper's optimiser (e.g. momentum, adagrad_momentum, adam, lbfgs)")
flags.DEFINE_string("experiment", None, "experiment / figure within a paper; see --list")
flags.DEFINE_string("data", None, "deconv experiments: a folder of images (or HR/LR, sharp/blur pairs) instead of "
                    "the embedded samples")
flags.DEFINE_bool("resume", False, "continue an interrupted run from its last checkpoint in --out")
flags.DEFINE_bool("list", False, "print papers, experiments, nets and their layer names, then exit")


def _print_list() -> None:
    import reproductions
    from tfrestore import nets

    print("Papers (--paper):")
    for name in reproductions.PAPERS:
        mod = reproductions.get(name)
        print(f"  {name:<22}{mod.DESCRIPTION}")
        for exp, text in getattr(mod, "EXPERIMENTS", {}).items():
            print(f"      --experiment={exp:<18}{text}")
    print("\nNets (--net) and their layers (--layers):")
    for name in nets.net_names():
        spec = nets.REGISTRY[name]
        print(f"  {name:<10}{spec.description}; input {spec.input_size}², {spec.channel_order}; "
              f"weights from {spec.original}")
        print("      " + " ".join(nets.layer_names(name)))
        al = nets.aliases(name)
        if al:
            print("      aliases: " + " ".join(f"{a}={c}" for a, c in al.items()))


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.list:
        _print_list()
        return 0
    import reproductions
    from tfrestore import nets

    if not FLAGS.paper:
        raise app.UsageError("--paper is required (or --list); valid papers: " + ", ".join(reproductions.PAPERS))
    try:
        module = reproductions.get(FLAGS.paper)
        if FLAGS.net is not None and FLAGS.net not in nets.REGISTRY and FLAGS.paper != "deconv":
            raise ValueError(f"unknown net '{FLAGS.net}'; valid nets: {', '.join(nets.net_names())}")
        config = {k: getattr(FLAGS, k) for k in ("net", "layers", "image", "weights", "out", "logdir", "steps",
                                                 "seed", "optimizer", "experiment", "resume")}
        config["data_dir"] = FLAGS.data
        config = {k: v for k, v in config.items() if v is not None}
        module.run(**config)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    app.run(main)
