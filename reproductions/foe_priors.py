"""Harder's thesis, "Fields of Experts for network inversion": learned patch priors as inversion regularisers
(``frhrdr/deep_restoration``; spec ``patch_priors.md`` §5–§8, scores ``evaluation_protocols.md`` §4).

Experiments:
- ``image_rec`` (default): every layer inverted in two phases — pure feature MSE, then MSE + the prior (default
  ``full512``) from that result with a fresh Adam state — beside M&V 2016 on the same image and total budget. The
  thesis engine: Adam (TF1, ε 1e-8) at a constant lr (AlexNet 1.0 / VGG16 0.3), gradients clipped at 1e4, jitter
  per layer switched off late in each phase (AlexNet 3,200 of 5,000; VGG16 6,900), initial image N(114.8, 1.1)
  clipped to [100, 155]. Scores per layer: MSE, NMSE (Σ(t − r)²/Σ(t·r)) and the Gram/VGG score, on the
  reconstructions clipped to [0, 255], with the thesis' recorded ``full512`` numbers beside ours.
- ``featmap_inv``: the conv1/lin map itself is the variable (from N(0, 0.1)), matched through conv2/lin, then
  regularised by a feature-map prior (default ``fullc1l6000``): 10,000 + 10,000 Adam steps at lr 1.0.
- ``legacy_c2_to_c1``: normalised MSE on conv2/lin, conv1/lin optimised directly with each regulariser of the
  thesis' comparison (none, TV, 3×3 slim, channel-wise, both, 8×8 full), Adam lr 0.3 for 500 steps and a restart
  for 19,500.
- ``train``: train (or continue training) a catalogue prior (``--prior``, ``--data``, ``--steps``).

Priors come from ``$TFRESTORE_HOME/priors/<net>/<name>/`` and are trained there first when missing (``--data`` for
your own images; ``--prior_steps`` shortens that training). Differences from the thesis: jitter is M&V 2016's
canvas jitter with T = t + 1 offsets (the thesis zero-padded and cropped); the VGG score uses tfrestore's VGG16
(relu1_1 … relu5_1) where the thesis used VGG19.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from tfrestore import metrics, nets, report
from tfrestore import objectives as O
from tfrestore import optim as optimizers
from tfrestore import param, transforms
from tfrestore.engine import Problem
from tfrestore.inversion import feature_objective, gram_features, image_space
from tfrestore.priors import PriorTerm, catalogue

from . import common, mv2016

DESCRIPTION = "thesis FoE / ICA patch priors: prior-regularised inversion vs pure MSE vs M&V 2016; prior training"
NETS = ("alexnet", "vgg16")

ADAM_LR = {"alexnet": 1.0, "vgg16": 0.3}
PHASE_STEPS = {"alexnet": (5000, 5000), "vgg16": (10000, 15000)}      # (pure MSE, with the prior)
JITTER_OFF = {"alexnet": 3200 / 5000, "vgg16": 6900 / 10000}         # fraction of each phase run with jitter
GRAD_CLIP = 1e4
INIT_MEAN, INIT_STD, INIT_RANGE = 114.8, 1.1, (100.0, 155.0)
ADAM_EPSILON = 1e-8

# get_imagerec_jitter_and_prior_weight: per-layer prior weight and jitter t (offsets 0…t).
ALEX_WEIGHT = {"conv1": 1e-6, "relu1": 1e-4, "norm1": 3e-4, "pool1": 1e-3, "conv2": 3e-3, "relu2": 3e-3,
               "norm2": 3e-3, "pool2": 1e-3, "conv3": 1e-3, "relu3": 1e-3}            # later layers: 1e-4
ALEX_JITTER = {"conv1": 0, "relu1": 0, "norm1": 1, "pool1": 2, "conv2": 2, "relu2": 2, "norm2": 2}  # pool2…relu5: 4
VGG_JITTER_BY_BLOCK = {1: 0, 2: 0, 3: 1, 4: 2, 5: 4}                   # pool_b uses block b + 1's; pool5 on: 8
DEFAULT_LAYERS = {"alexnet": ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"),
                  "vgg16": ("pool1", "pool2", "pool3", "pool4", "pool5", "fc6", "fc7", "fc8")}

# Recorded full512 image reconstructions, AlexNet, mean over the thesis' subset10 images (spec §8.1), and the
# thesis M&V 2016 benchmark's VGG scores (mv2016.md §9.7).
RECORDED_FULL512 = {
    "conv1": (9.5155e-6, 2.7856, 2.2975e-4), "conv2": (0.21567, 543.155, 0.044630),
    "conv3": (0.37127, 923.226, 0.073392), "conv4": (0.43931, 1334.41, 0.10048),
    "conv5": (0.59910, 2317.36, 0.17614), "fc6": (0.84566, 4882.86, 0.40931),
    "fc7": (0.93710, 5157.54, 0.43728), "fc8": (0.95888, 5241.95, 0.44052)}          # (VGG score, MSE, NMSE)
RECORDED_MV2016_VGG = {"conv1": 0.1800, "conv2": 0.4450, "conv3": 0.5295, "conv4": 0.6470, "conv5": 0.7292}


def prior_weight(net: str, layer: str) -> float:
    if nets.spec(net).family == "alexnet":
        return ALEX_WEIGHT.get(layer, 1e-4)
    return 1e-3 if layer.startswith("pool") else 1e-4


def jitter_t(net: str, layer: str) -> int:
    """The thesis' jitter t (offsets 0…t) of a layer."""
    if nets.spec(net).family == "alexnet":
        order = nets.spec(net).matconvnet_order
        if layer in ALEX_JITTER:
            return ALEX_JITTER[layer]
        return 4 if order.index(layer) < order.index("pool5") else 8
    if layer.startswith(("conv", "relu")):
        return VGG_JITTER_BY_BLOCK[int(layer[4])]
    if layer.startswith("pool") and int(layer[4]) < 5:
        return VGG_JITTER_BY_BLOCK[int(layer[4]) + 1]
    return 8


def thesis_init(n: int, size: int, net: str, seed: int) -> np.ndarray:
    """N(114.8, 1.1) clipped to [100, 155] in RGB, as image space."""
    x = np.random.default_rng(seed).normal(INIT_MEAN, INIT_STD, (n, size, size, 3)).clip(*INIT_RANGE)
    return (x - nets.mean_rgb(net)).astype(np.float32)


def _adam():
    return optimizers.Adam(epsilon=ADAM_EPSILON, epsilon_form="tf1", clip_value=GRAD_CLIP)


def _phase_schedule(lr: float, steps: int, jitter_fraction: float) -> optimizers.Schedule:
    on = min(max(1, int(round(steps * jitter_fraction))), steps)
    stages = [optimizers.Stage(on, lr, jitter=True)]
    if steps > on:
        stages.append(optimizers.Stage(steps - on, lr, jitter=False))
    return optimizers.Schedule(stages)


# ---- image reconstruction ---------------------------------------------------------------------------------------

def image_rec_problems(*, net: str, image_rgb: np.ndarray, extractors, prior, layers, seed: int,
                       steps: tuple[int, int]) -> tuple[Problem, Callable[[np.ndarray], Problem]]:
    """Phase 1 (pure MSE) and a function of phase 1's canvas that builds phase 2 (MSE + prior)."""
    n, size = len(layers), image_rgb.shape[0]
    x0 = np.repeat(image_space(net, image_rgb[None]), n, axis=0)
    mse, _ = feature_objective(extractors, net, layers, x0, normalise=False, mean=True)
    t = np.array([jitter_t(net, l) + 1 for l in layers])
    jitter = transforms.Jitter(size, t, n)
    hc = size + jitter.margin
    lr, frac = ADAM_LR[net], JITTER_OFF[net]
    settings = {"prior_weight": [prior_weight(net, l) for l in layers], "jitter_t": (t - 1).tolist(),
                "adam_lr": lr}
    phase1 = Problem(objective=mse, param=param.Pixels(thesis_init(n, hc, net, seed)), optimizer=_adam(),
                     schedule=_phase_schedule(lr, steps[0], frac), labels=list(layers), jitter=jitter,
                     layers=list(layers), x0=x0, settings=settings)
    weights = np.array(settings["prior_weight"], np.float32)

    def phase2(canvas: np.ndarray) -> Problem:
        term = PriorTerm(prior, name="prior", offset=nets.mean_rgb(net))
        return dataclasses.replace(phase1, objective=mse + weights * term, param=param.Pixels(canvas),
                                   optimizer=_adam(), schedule=_phase_schedule(lr, steps[1], frac))
    return phase1, phase2


def _scores(net, image_rgb, recs: dict[str, np.ndarray], layers, vgg) -> list[dict]:
    """Per layer and method: MSE, NMSE, VGG score of the clipped reconstructions, with the recorded numbers."""
    rows = []
    originals = np.repeat(image_rgb[None].astype(np.float64), len(layers), 0)
    for method, rec in recs.items():
        rec = np.clip(rec, 0, 255)
        mse, nmse = metrics.mse(originals, rec), metrics.nmse_dot(originals, rec)
        vgg_score = metrics.gram_score(vgg, originals, rec)
        for i, layer in enumerate(layers):
            rows.append({"layer": layer, "method": method, "mse": float(mse[i]), "nmse": float(nmse[i]),
                         "vgg": float(vgg_score[i])})
    for layer in layers:
        if net == "alexnet" and layer in RECORDED_FULL512:
            v, m, nm = RECORDED_FULL512[layer]
            rows.append({"layer": layer, "method": "full512 (thesis, recorded)", "mse": m, "nmse": nm, "vgg": v})
        if net == "alexnet" and layer in RECORDED_MV2016_VGG:
            rows.append({"layer": layer, "method": "M&V 2016 (thesis, recorded)", "vgg": RECORDED_MV2016_VGG[layer]})
    return sorted(rows, key=lambda r: (layers.index(r["layer"]), r["method"]))


SCORE_COLUMNS = [("layer", "layer", ""), ("method", "method", ""), ("MSE", "mse", ".4g"), ("NMSE", "nmse", ".4g"),
                 ("VGG score", "vgg", ".4g")]


def _sub(s: common.Setup, name: str) -> common.Setup:
    return dataclasses.replace(s, out=s.out / name, logdir=s.logdir / name)


def image_rec(s: common.Setup, *, image: str, layers, steps, prior_name, prior_steps, data, resume, progress,
              jit_compile) -> dict:
    net = s.net
    img = common.load(net, image)
    layers = common.resolve_layers(net, layers) if layers else list(DEFAULT_LAYERS[net])
    phases = PHASE_STEPS[net] if not steps else (max(1, steps // 2), max(1, steps - steps // 2))
    prior = catalogue.get(prior_name, net, data=data, steps=prior_steps, seed=s.seed)
    p1, phase2 = image_rec_problems(net=net, image_rgb=img, extractors=s.extractors, prior=prior, layers=layers,
                                    seed=s.seed, steps=phases)
    run = dict(image_rgb=img, log_every=max(1, min(100, phases[0] // 4)), resume=resume, jit_compile=jit_compile,
               progress=progress)
    config = {"paper": "foe_priors", "experiment": "image_rec", "image": image, "prior": prior_name}
    common.optimise(p1, _sub(s, "pure_mse"), config=config, title=f"pure MSE — {net}", **run)
    canvas = np.load(s.out / "pure_mse" / "canvas.npy")
    common.optimise(phase2(canvas), _sub(s, prior_name), config=config, title=f"MSE + {prior_name} — {net}", **run)
    mv = mv2016.problem(mv2016.EXPERIMENT_SETTINGS["inversion"], net=net, image_rgb=img, extractors=s.extractors,
                        layers=layers, seed=s.seed, steps=sum(phases))
    common.optimise(mv, _sub(s, "mv2016"), config={**config, "method": "mv2016"}, title=f"M&V 2016 — {net}", **run)
    recs = {m: np.load(s.out / m / "reconstructions.npy") for m in ("pure_mse", prior_name, "mv2016")}
    energies = {m: prior.energy(np.clip(r, 0, 255)).numpy().tolist() for m, r in recs.items()}
    vgg = gram_features(nets.build("vgg16", weights="auto", quiet=True), "vgg16",
                        ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"])
    rows = _scores(net, img, recs, layers, vgg)
    text = (_header(s) + "   (VGG score: tfrestore's VGG16, random unless converted)\n"
            + report.table(rows, SCORE_COLUMNS))
    text += "\n\nprior energy of the clipped reconstructions (" + prior_name + "):\n" + "\n".join(
        f"  {m:<12} " + "  ".join(f"{l} {e:.4g}" for l, e in zip(layers, es)) for m, es in energies.items())
    print(text, flush=True)
    panels = [p for m in recs for p in [(img / 255.0, f"original / {m}")] +
              [(np.clip(recs[m][i], 0, 255) / 255.0, f"{m}\n{l}") for i, l in enumerate(layers)]]   # a row each
    report.write(s.out, title=f"FoE prior inversion — {net} ({_weights_word(s)})", table=text,
                 figure_panels=panels, figure_columns=len(layers) + 1,
                 metrics={"net": net, "weights": s.weights, "prior": prior_name, "layers": layers,
                          "steps": list(phases), "scores": rows, "prior_energy": energies})
    return {"scores": rows, "prior_energy": energies}


def _weights_word(s) -> str:
    return "random weights" if s.weights == "random" else "converted weights"


def _header(s) -> str:
    return f"net: {s.net}   weights: " + ("RANDOM (seeded) — the method, not the paper's network" if s.weights ==
                                            "random" else s.weights)


# ---- feature-map inversions ----------------------------------------------------------------------------------------

def _map_problem(s: common.Setup, *, image_rgb, match: str, target: str, normalise: bool, n: int, seed: int):
    """The conv1/lin map as the variable: (tail model target → match, the true target map, data objective, init)."""
    model = s.model
    x0 = image_space(s.net, image_rgb[None])
    feats = nets.feature_extractor(model, [target, match])(nets.to_input(s.net, x0))
    true_map, true_match = np.asarray(feats[target]), np.asarray(feats[match])
    tail = nets.tail(model, target, match)
    data = O.feature_loss(tail, match, np.repeat(true_match, n, 0), normalise=normalise, mean=not normalise)
    init = np.random.default_rng(seed).normal(0, 0.1, (n,) + true_map.shape[1:]).astype(np.float32)
    return true_map, data, init


def _run_phases(s, objective_phases, init, labels, lr, log_every, progress, title, name):
    """Optimise the map through successive phases, each with a fresh Adam state; returns the final map."""
    from tfrestore.engine import Optimization
    x = init
    for k, (objective, n_steps) in enumerate(objective_phases):
        run = Optimization(objective, param.Pixels(x), _adam(), optimizers.Schedule([optimizers.Stage(n_steps, lr)]),
                           labels=labels, seed=s.seed, log_every=log_every, config={"title": title, "phase": k})
        print(f"{title}: phase {k + 1} of {len(objective_phases)}, {n_steps} steps", flush=True)
        run.run(logdir=s.logdir / name / f"phase{k + 1}", progress=progress)
        x = run.images()
    return x


def featmap_inv(s: common.Setup, *, image: str, layers, steps, prior_name, prior_steps, data, resume, progress,
                jit_compile) -> dict:
    match, target = (common.resolve_layers(s.net, layers) if layers else ["conv2", "conv1"])[:2]
    img = common.load(s.net, image)
    prior = catalogue.get(prior_name, s.net, data=data, steps=prior_steps, seed=s.seed)
    e = catalogue.entry(prior_name)
    if nets.resolve_layer(s.net, e.tap) != target:
        raise ValueError(f"prior '{prior_name}' models {e.tap}, but the variable here is {target}")
    true_map, data_term, init = _map_problem(s, image_rgb=img, match=match, target=target, normalise=False, n=1,
                                             seed=s.seed)
    n1, n2 = (10000, 10000) if not steps else (max(1, steps // 2), max(1, steps - steps // 2))
    mse_only = _run_phases(s, [(data_term, n1)], init, ["mse"], 1.0, max(1, n1 // 4), progress,
                           "feature-map inversion", "mse_only")
    with_prior = _run_phases(s, [(data_term + e.weight * PriorTerm(prior), n2)], mse_only, [prior_name], 1.0,
                             max(1, n2 // 4), progress, "feature-map inversion", prior_name)
    rows = []
    for label, m in (("MSE only", mse_only), (f"MSE + {prior_name}", with_prior)):
        rows.append({"method": label, f"{target}_mse": float(metrics.mse(true_map, m)[0]),
                     f"{target}_rel": float(metrics.rel_sq_error(true_map, m)[0]),
                     "prior_energy": float(prior.energy(m).numpy()[0])})
    cols = [("method", "method", ""), (f"{target} MSE", f"{target}_mse", ".4g"),
            (f"{target} rel. sq.", f"{target}_rel", ".4g"), ("prior energy", "prior_energy", ".4g")]
    text = _header(s) + f"\n{target} map recovered from {match}\n" + report.table(rows, cols)
    print(text, flush=True)
    ch = lambda m: report.stretch(m[0, ..., :3])
    report.write(s.out, title=f"{target} from {match} — {s.net} ({_weights_word(s)})", table=text,
                 metrics={"rows": rows, "steps": [n1, n2], "prior": prior_name, "weights": s.weights},
                 figure_panels=[(ch(true_map), f"true {target} (channels 0–2)"), (ch(mse_only), "MSE only"),
                                (ch(with_prior), f"+ {prior_name}")],
                 arrays={"true_map": true_map, "mse_only": mse_only, "with_prior": with_prior})
    return {"rows": rows}


LEGACY_VARIANTS = (("none", ()), ("TV β2 1e-9", (("tv", 1e-9),)), ("slim 3×3", (("slimc1l2000", 1e-9),)),
                   ("channel", (("chanpriorc1l150", None),)),
                   ("slim + channel", (("slimc1l2000", 1e-9), ("chanpriorc1l150", None))),
                   ("full 8×8", (("fullc1l6000", 1e-10),)))


def legacy_c2_to_c1(s: common.Setup, *, image: str, layers, steps, prior_name, prior_steps, data, resume,
                    progress, jit_compile) -> dict:
    img = common.load(s.net, image)
    n = len(LEGACY_VARIANTS)
    true_map, data_term, init = _map_problem(s, image_rgb=img, match="conv2", target="conv1", normalise=True, n=n,
                                             seed=s.seed)
    objective = data_term
    names = sorted({name for _, regs in LEGACY_VARIANTS for name, _ in regs})
    for name in names:
        # a variant's weight for this regulariser (None: the catalogue's), 0 where the variant does not use it
        w = np.array([(dict(regs)[name] if dict(regs)[name] is not None else catalogue.entry(name).weight)
                      if name in dict(regs) else 0.0 for _, regs in LEGACY_VARIANTS], np.float32)
        term = O.tv(2.0) if name == "tv" else PriorTerm(    # evaluated only where a variant uses it
            catalogue.get(name, s.net, data=data, steps=prior_steps, seed=s.seed), name=name,
            problems=np.flatnonzero(w).tolist())
        objective = objective + w * term
    first = 500 if not steps else max(1, steps // 40)          # the thesis: 500, then a restart for 19,500
    rest = 19500 if not steps else max(1, steps - first)
    labels = [v[0] for v in LEGACY_VARIANTS]
    rec = _run_phases(s, [(objective, first), (objective, rest)], init, labels, 0.3, max(1, rest // 4),
                      progress, "conv2/lin → conv1/lin", "variants")
    rows = [{"variant": lab, "conv1_mse": float(m), "conv1_rel": float(r)}
            for lab, m, r in zip(labels, metrics.mse(np.repeat(true_map, n, 0), rec),
                                 metrics.rel_sq_error(np.repeat(true_map, n, 0), rec))]
    text = _header(s) + "\nconv1/lin recovered from conv2/lin (normalised MSE), Adam 0.3 with a restart\n" + \
        report.table(rows, [("regulariser", "variant", ""), ("conv1 MSE", "conv1_mse", ".4g"),
                            ("conv1 rel. sq.", "conv1_rel", ".4g")])
    print(text, flush=True)
    report.write(s.out, title=f"conv2/lin → conv1/lin — {s.net} ({_weights_word(s)})", table=text,
                 metrics={"rows": rows, "steps": [first, rest], "weights": s.weights},
                 figure_panels=[(report.stretch(true_map[0, ..., :3]), "true conv1 (ch 0–2)")] +
                 [(report.stretch(rec[i, ..., :3]), lab) for i, lab in enumerate(labels)])
    return {"rows": rows}


def train_prior(s: common.Setup, *, image, layers, steps, prior_name, prior_steps, data, resume, progress,
                jit_compile) -> dict:
    prior, summary = catalogue.train(prior_name, s.net, data=data, steps=steps or prior_steps, seed=s.seed,
                                     resume=resume, progress=progress)
    where = catalogue.folder(s.net, prior_name)
    print(f"prior {prior_name} for {s.net}: {summary['steps']} steps in {summary['seconds']:.0f} s "
          f"({summary['patches_per_s']:,.0f} patches/s), final train {summary['final'].get('train_loss', 0):.5g}, "
          f"validation {summary['final'].get('val_loss', 0):.5g}; stored in {where} (filters.png)", flush=True)
    return summary


@dataclasses.dataclass(frozen=True)
class Experiment:
    description: str
    runner: Callable
    prior: str


EXPERIMENT_TABLE = {
    "image_rec": Experiment("layers inverted: pure MSE, then + the prior; M&V 2016 beside; MSE / NMSE / VGG score",
                            image_rec, "full512"),
    "featmap_inv": Experiment("the conv1/lin map as the variable, matched through conv2/lin, + a feature-map prior",
                              featmap_inv, "fullc1l6000"),
    "legacy_c2_to_c1": Experiment("conv2/lin → conv1/lin with none / TV / slim / channel / both / full priors",
                                  legacy_c2_to_c1, "fullc1l6000"),
    "train": Experiment("train a catalogue prior (--prior, --data, --steps)", train_prior, "full512"),
}
EXPERIMENTS = {k: v.description for k, v in EXPERIMENT_TABLE.items()}
DEFAULT_EXPERIMENT = "image_rec"


def run(*, net: str = "alexnet", experiment: str = DEFAULT_EXPERIMENT, prior: str | None = None,
        layers: list[str] | None = None, image: str = "chelsea", weights: str = "auto", out: str | None = None,
        logdir: str | None = None, steps: int | None = None, prior_steps: int | None = None, data: str | None = None,
        seed: int = 0, resume: bool = False, jit_compile: bool = False, progress: bool = True) -> dict:
    if experiment not in EXPERIMENT_TABLE:
        raise ValueError(f"unknown experiment '{experiment}' for foe_priors; valid: {', '.join(EXPERIMENT_TABLE)}")
    if net not in NETS:
        raise ValueError(f"foe_priors runs on {' or '.join(NETS)}, not '{net}'")
    exp = EXPERIMENT_TABLE[experiment]
    prior_name = prior or exp.prior
    catalogue.entry(prior_name)
    s = common.setup(paper="foe_priors", net=net, experiment=experiment, weights=weights, out=out, logdir=logdir,
                     seed=seed)
    return exp.runner(s, image=image, layers=layers, steps=steps, prior_name=prior_name, prior_steps=prior_steps,
                      data=data, resume=resume, progress=progress, jit_compile=jit_compile)
