"""tfrestore command line: reproduce a paper's figure and numbers.

    python main.py --list
    python main.py --paper=mv2015 --net=alexnet
    python main.py --paper=forward --net=vgg16 --layers=conv1_1,pool5 --image=chelsea

Each paper declares the flags it takes as a frozen ``Flags`` dataclass (reproductions/paper.py: typed fields,
defaults with their sources, validation) and runs as ``run(flags, ctx)`` with the run-level settings every paper
shares in a ``RunContext`` (--out, --logdir, --seed, --resume, --overwrite). A flag given on the command line that
the chosen paper does not take is an error that lists the ones it does.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import warnings

# Quiet TensorFlow's C++ start-up notices (cuInit on CPU-only machines, CPU feature lines) before it is imported;
# --verbose keeps them. The library itself changes no environment.
if "--verbose" not in sys.argv[1:]:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

from absl import flags  # noqa: E402

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
flags.DEFINE_string("prior", None, "a catalogue prior (foe_priors; see --list): full512, fullc1l6000, …")
flags.DEFINE_integer("prior_steps", None, "training steps for a prior that has to be trained first (default: the "
                     "thesis schedule)")
flags.DEFINE_string("attack", None, "adversarial: the attack that makes the dataset (deepfool, fgsm, itfgsm, pgd)")
flags.DEFINE_string("task", None, "the task within dip / ae_prior (see --list): denoise, inpaint, superres, ...")
flags.DEFINE_float("sigma", None, "noise level of a synthesised corruption (dip: 0-255 units; ae_prior: [-1, 1] units)")
flags.DEFINE_string("mask", None, "inpainting mask: random, block, strokes, or a mask image file (white = kept)")
flags.DEFINE_string("corrupted", None, "an observed (corrupted) image file to restore instead of a synthesised one")
flags.DEFINE_integer("size", None, "working image size in pixels (dip: cropped to a multiple of 32)")
flags.DEFINE_integer("latent", None, "autoencoder latent size (ae_prior: 10 or 100)")
flags.DEFINE_string("data", None, "a folder of images (or HR/LR, sharp/blur pairs) instead of the embedded samples")
flags.DEFINE_bool("resume", None, "continue an interrupted run from its last checkpoint in --out")
flags.DEFINE_bool("overwrite", False, "write into an --out folder that holds a finished or interrupted run, "
                  "replacing its outputs (without it such a folder is refused)")
flags.DEFINE_bool("list", False, "print papers, experiments, nets and their layer names, then exit")
flags.DEFINE_bool("verbose", False, "show TensorFlow's and absl's informational log lines")


def _print_list() -> None:
    import reproductions
    from reproductions import paper
    from tfrestore import nets

    print("Papers (--paper):")
    for name in reproductions.PAPERS:
        mod = reproductions.get(name)
        print(f"  {name:<22}{mod.DESCRIPTION}")
        default = getattr(mod, "DEFAULT_EXPERIMENT", None)
        flag = getattr(mod, "EXPERIMENT_FLAG", "experiment")
        for exp, text in getattr(mod, "EXPERIMENTS", {}).items():
            mark = " (default)" if exp == default else ""
            print(f"      --{flag}={exp:<{32 - len(flag)}} {text}{mark}")
        print(f"      flags: {', '.join('--' + f for f in accepted_flags(mod))}")
        for line in paper.describe(mod.Flags):
            print(f"        {line}")
    print("\nNets (--net) and their layers (--layers):")
    for name in nets.net_names():
        spec = nets.REGISTRY[name]
        print(f"  {name:<12}{spec.description}; input {spec.input_size}², {spec.channel_order}; "
              f"weights from {spec.original}")
        print("      " + " ".join(nets.layer_names(name)))
        al = nets.aliases(name)
        if al:
            print("      aliases: " + " ".join(f"{a}={c}" for a, c in al.items()))


_CONTEXT_FLAGS = ("out", "logdir", "seed", "resume")     # every paper's, in its RunContext (and --overwrite)


def accepted_flags(module) -> list[str]:
    """The command-line flags a paper takes: its ``Flags`` fields and the run context's."""
    names = {f.name for f in dataclasses.fields(module.Flags)} | set(_CONTEXT_FLAGS)
    return [name for name in _CONFIG_FLAGS if name in names]


def _flag_default(module, name: str):
    """A paper's own default for a flag (its ``Flags`` field), or None."""
    return next((f.default for f in dataclasses.fields(module.Flags) if f.name == name), None)


def _run_paper(module) -> None:
    """Builds the paper's ``Flags`` (validated there: one ValueError naming the fix) and its ``RunContext`` from the
    command line, and runs it."""
    from reproductions import paper
    config = {k: getattr(FLAGS, k) for k in _given_flags()}
    given = {k: paper.convert(v, paper.field_type(module.Flags, k)) for k, v in config.items()
             if k not in _CONTEXT_FLAGS}
    flags_ = module.Flags(**given)              # validation: one ValueError naming the fix
    ctx = paper.RunContext.create(module.default_out(flags_), out=FLAGS.out, logdir=FLAGS.logdir, seed=FLAGS.seed,
                                  resume=bool(FLAGS.resume), overwrite=FLAGS.overwrite)
    module.run(flags_, ctx)


_CONFIG_FLAGS = ("net", "layers", "image", "weights", "out", "logdir", "steps", "seed", "optimizer", "experiment",
                 "data", "resume", "prior", "prior_steps", "task", "sigma", "mask", "corrupted", "size", "latent", "attack")


def _given_flags() -> list[str]:
    """The configuration flags set on the command line (the rest keep each paper's own defaults)."""
    return [name for name in _CONFIG_FLAGS if FLAGS[name].present]


def _warning_text(message, category, filename, lineno, line=None) -> str:
    """A warning as its own text (``warning: …``, or a banner as it is), without Python's ``file:line: Category:``
    prefix and the echoed source line, which mean nothing to a user (--verbose keeps Python's format)."""
    text = str(message).strip("\n")
    return f"{text}\n" if "\n" in text else f"warning: {text}\n"


def main(argv) -> int:
    if len(argv) > 1:
        print(f"error: unexpected argument{'s' if len(argv) > 2 else ''} {' '.join(argv[1:])!r}: every setting is "
              "a --flag (python main.py --help)", file=sys.stderr)
        return 2
    if not FLAGS.paper and not FLAGS.list:
        print("error: --paper is required; `python main.py --list` shows the papers, their experiments and flags",
              file=sys.stderr)
        return 2
    if not FLAGS.verbose:
        from tfrestore.core import quiet
        quiet.start_tensorflow()        # without the C++ start-up notices (tfrestore.core.quiet)
        warnings.formatwarning = _warning_text
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.WARNING)      # e.g. the checkpoint saver's "Sharding callback"
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if FLAGS.list:
        _print_list()
        return 0
    import reproductions
    from reproductions import common
    try:
        module = reproductions.get(FLAGS.paper)
        _check_flags(module)
        common.set_output_rule(common.OutputRule(overwrite=FLAGS.overwrite, resume=bool(FLAGS.resume),
                                                 announce=_expected(module)))
        _run_paper(module)
    except (ValueError, OSError, KeyError) as e:     # OSError: a path that is not there, not a folder, not writable
        print(f"error: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
        return 2
    except Exception as e:                  # noqa: BLE001 — only a user's error wrapped by TensorFlow is caught
        message = _wrapped_user_error(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:          # SIGINT / SIGTERM: the engine saved a checkpoint first
        print(f"interrupted: {e or 'stopped'}", file=sys.stderr)
        return 130
    finally:
        common.set_output_rule(None)        # main() is also called in-process (tests): leave no rule behind
    return 0


def _expected(module) -> str | None:
    """The expected time and memory of this run (reproductions.common.COSTS), for the long papers."""
    from reproductions import common
    flag = getattr(module, "EXPERIMENT_FLAG", "experiment")
    experiment = FLAGS[flag].value or getattr(module, "DEFAULT_EXPERIMENT", "")
    net = FLAGS.net or _flag_default(module, "net")
    return common.expected_cost(FLAGS.paper, experiment, net, steps=FLAGS.steps, size=FLAGS.size,
                                layers=len(FLAGS.layers) if FLAGS.layers else None)


def _check_flags(module) -> None:
    """The checks every paper shares, before any network is built: flags the paper takes, positive sizes, a
    readable --image, a known --net and --layers of it, --overwrite or --resume (one ValueError each: one line,
    exit 2)."""
    from tfrestore import nets
    accepted = accepted_flags(module)
    wrong = [f for f in _given_flags() if f not in accepted]
    if wrong:
        raise ValueError(f"--paper={FLAGS.paper} does not take {', '.join('--' + f for f in wrong)}; "
                         f"it takes {', '.join('--' + f for f in accepted)}")
    for name in ("steps", "prior_steps", "size", "sigma"):
        if FLAGS[name].value is not None and FLAGS[name].value <= 0:
            raise ValueError(f"--{name} must be positive, got {FLAGS[name].value}")
    if FLAGS.image is not None:
        from tfrestore import data
        data.load_image(FLAGS.image)
    if FLAGS.net is not None and FLAGS.net not in nets.REGISTRY:
        raise ValueError(f"unknown net '{FLAGS.net}'; valid nets: {', '.join(nets.net_names())}")
    net = FLAGS.net or _flag_default(module, "net")
    if FLAGS.layers and net in nets.REGISTRY:   # a wrong name: one line, before the net and its random-weights notice
        for layer in FLAGS.layers:
            nets.resolve_layer(net, layer)
    if FLAGS.overwrite and FLAGS.resume:
        raise ValueError("--overwrite replaces the run in --out and --resume continues it: give one of them")


_USER_ERRORS = ("ValueError", "FileNotFoundError", "KeyError", "WeightsMismatchError", "ArtifactError")


def _wrapped_user_error(e: Exception) -> str | None:
    """The message of a user's error (a ValueError, FileNotFoundError, … raised by our code) that TensorFlow wrapped
    on its way out — e.g. an unreadable image in a ``--data`` folder, read inside a ``tf.data`` pipeline, comes
    back as an ``InvalidArgumentError`` holding the Python traceback; ``None`` for anything else (a bug: its
    traceback is shown)."""
    import re
    try:
        import tensorflow as tf
    except ImportError:
        return None
    if not isinstance(e, tf.errors.OpError):
        return None
    found = re.findall(rf"^(?:{'|'.join(_USER_ERRORS)}): (.+)$", str(e), flags=re.M)
    return found[-1].strip() if found else None


def _parse(argv: list[str]) -> list[str] | int:
    """absl's parsing, with its errors as one ``error:`` line and exit code 2 (absl itself prints a FATAL line and
    the whole help, and exits 1)."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        hint = "" if "Did you mean" in str(e) else " (python main.py --help lists the flags)"
        print(f"error: {e}{hint}".replace("\n", " "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    if any(a in ("-h", "--help", "--helpshort", "-?") for a in sys.argv[1:]):
        FLAGS(sys.argv[:1])
        print(__doc__ + "\n" + FLAGS.main_module_help())
        sys.exit(0)
    parsed = _parse(sys.argv)
    code = parsed if isinstance(parsed, int) else main(parsed)
    if code == 130:     # interrupted: the state is checkpointed and every file closed; the interpreter's teardown of
        sys.stdout.flush()      # TensorFlow's objects (data pipelines, a large model) can take tens of seconds
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)
