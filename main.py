"""tfrestore command line: reproduce a paper's figure and numbers.

    python main.py --list
    python main.py --paper=mv2015 --net=alexnet
    python main.py --paper=forward --net=vgg16 --layers=conv1_1,pool5 --image=chelsea

Each paper's ``run()`` declares, by its keyword arguments, which flags it takes; a flag given on the command line
that the chosen paper does not take is an error that lists the ones it does.
"""
from __future__ import annotations

import inspect
import logging
import os
import sys

# Quiet TensorFlow's C++ start-up notices before it is imported (the library itself changes no environment).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("paper", None, "what to run; see --list")
flags.DEFINE_string("net", None, "network name; see --list (default: the paper's own network)")
flags.DEFINE_list("layers", None, "comma-separated layer names or aliases (default: the paper's layers)")
flags.DEFINE_string("image", None, "embedded sample image name or path to an image file (default: the paper's)")
flags.DEFINE_string("weights", None, "'auto' (weight store, else seeded random), 'random', or a .weights.h5 path")
flags.DEFINE_string("out", None, "output folder (default: runs/<paper>_<net>_<experiment>)")
flags.DEFINE_string("logdir", None, "TensorBoard log folder (default: <out>/tb)")
flags.DEFINE_integer("steps", None, "number of optimisation (or training) steps; the paper's schedule is rescaled")
flags.DEFINE_integer("seed", None, "random seed (initialisation, jitter, random weights)")
flags.DEFINE_string("optimizer", None, "override the paper's optimiser (e.g. momentum, adagrad_momentum, adam, lbfgs)")
flags.DEFINE_string("experiment", None, "experiment / figure within a paper; see --list")
flags.DEFINE_string("data", None, "a folder of images (or HR/LR, sharp/blur pairs) instead of the embedded samples")
flags.DEFINE_bool("resume", None, "continue an interrupted run from its last checkpoint in --out")
flags.DEFINE_bool("list", False, "print papers, experiments, nets and their layer names, then exit")


def _print_list() -> None:
    import reproductions
    from tfrestore import nets

    print("Papers (--paper):")
    for name in reproductions.PAPERS:
        mod = reproductions.get(name)
        print(f"  {name:<22}{mod.DESCRIPTION}")
        default = getattr(mod, "DEFAULT_EXPERIMENT", None)
        for exp, text in getattr(mod, "EXPERIMENTS", {}).items():
            mark = " (default)" if exp == default else ""
            print(f"      --experiment={exp:<22} {text}{mark}")
        print(f"      flags: {', '.join('--' + f for f in accepted_flags(mod))}")
    print("\nNets (--net) and their layers (--layers):")
    for name in nets.net_names():
        spec = nets.REGISTRY[name]
        print(f"  {name:<10}{spec.description}; input {spec.input_size}², {spec.channel_order}; "
              f"weights from {spec.original}")
        print("      " + " ".join(nets.layer_names(name)))
        al = nets.aliases(name)
        if al:
            print("      aliases: " + " ".join(f"{a}={c}" for a, c in al.items()))


def accepted_flags(module) -> list[str]:
    """The command-line flags a paper's ``run()`` takes: its keyword arguments that are flags."""
    params = inspect.signature(module.run).parameters
    return [name for name in _CONFIG_FLAGS if name in params]


_CONFIG_FLAGS = ("net", "layers", "image", "weights", "out", "logdir", "steps", "seed", "optimizer", "experiment",
                 "data", "resume")


def _given_flags() -> list[str]:
    """The configuration flags set on the command line (the rest keep each paper's own defaults)."""
    return [name for name in _CONFIG_FLAGS if FLAGS[name].present]


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if FLAGS.list:
        _print_list()
        return 0
    import reproductions
    from tfrestore import nets

    if not FLAGS.paper:
        raise app.UsageError("--paper is required (or --list); valid papers: " + ", ".join(reproductions.PAPERS))
    try:
        module = reproductions.get(FLAGS.paper)
        accepted = accepted_flags(module)
        wrong = [f for f in _given_flags() if f not in accepted]
        if wrong:
            raise ValueError(f"--paper={FLAGS.paper} does not take {', '.join('--' + f for f in wrong)}; "
                             f"it takes {', '.join('--' + f for f in accepted)}")
        if FLAGS.steps is not None and FLAGS.steps <= 0:
            raise ValueError(f"--steps must be a positive number of steps, got {FLAGS.steps}")
        if FLAGS.net is not None and FLAGS.net not in nets.REGISTRY:
            raise ValueError(f"unknown net '{FLAGS.net}'; valid nets: {', '.join(nets.net_names())}")
        config = {k: getattr(FLAGS, k) for k in _given_flags()}
        module.run(**config)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    app.run(main)
