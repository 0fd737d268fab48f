"""Harder's thesis: learned inversion modules (after Dosovitskiy & Brox), spec ``learned_inverters.md``, scores
``evaluation_protocols.md`` §4 (``frhrdr/deep_restoration`` ``modules/inv_default_modules.py``,
``net_inversion.py``, ``utils/db_benchmark.py``).

For each starting layer (``--layers``; default the thesis' evaluated ones: AlexNet conv1/lin … conv5/lin, VGG16
pool1 … pool3) the modules from it down to the image (DC_k … DC1) are
1. trained **solo** (each on the classifier's true features: Adam 3e-4, batch 32, 3,000 steps, images in list
   order; the thesis' schedule ((0, 3e-4), (3000, 1e-4), (2000, 3e-5)) under its after-the-step rule, which never
   leaves 3e-4) or loaded from the store (``$TFRESTORE_HOME/inverter/<net>/solo/``, keyed by the settings that
   determine the weights); chained as they are: **stacked**;
2. fine-tuned together on the sum of their MSE losses, each fed its predecessor's reconstruction: **merged**
   (Adam (0: 3e-6), (1000: 1e-6), (2000: 3e-7); the weights are saved, which the original forgot);
3. trained from scratch on the image loss alone: **end-to-end** (the early variant the thesis dropped).
The three are scored on held-out images (MSE, NMSE with the thesis' dot-product denominator, VGG Gram score)
beside the same chain untrained (the baseline training must beat), the spec's recorded numbers and M&V 2016's
optimisation-based inversion of the same images.

Training data: ``--data`` (a folder; the last 20 % of its sorted files are the validation images) or the embedded
photos with random crops and flips — a demonstration set. ``--steps`` sets every training's length (and M&V
2016's budget; the schedules are scaled). ``--net=digits`` (not the thesis'): the same module design on
tfrestore's trained digits net and the embedded digits, small enough to train whole stacks on a CPU (without the
M&V 2016 comparison, whose constants are the ImageNet nets').

``--experiment=early_findings`` (spec §5, the thesis diary of 3 May 2017): the module shapes before the dc
catalogue, solo-trained on the May targets (ReLU outputs and the net's own input, ``bgr_normed``) and scored side
by side — on AlexNet layer 1 (conv1/relu → image) a dc, a dd and a cd module (the thesis: dc and dd, whose first
operation is strided, show fewer artefacts than cd); on VGG16 three stacked cd modules pool1 → conv1_2/relu →
conv1_1/relu → image (the thesis: decent reconstructions). ``--net`` picks the finding (alexnet: the shapes; vgg16:
the stack); ``--net=digits`` runs both on tfrestore's trained digits net (the shapes from pool1, its first
strided layer; a two-module cd stack pool1 → relu1 → image). See :data:`EARLY`.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from tfrestore import data as data_lib
from tfrestore.models import inverters as I
from tfrestore.models import classifier
from tfrestore.measure import metrics
from tfrestore import nets
from tfrestore.core import report, store
from tfrestore.train import training
from tfrestore.optimize.inversion import Extractors, vgg16_gram_features

from . import common, mv2016, paper

DESCRIPTION = "thesis learned inversion modules: solo / stacked / merged / end-to-end, vs M&V 2016"
EXPERIMENTS = {"compare": "the DC stacks solo / stacked / merged / end-to-end, vs M&V 2016 (spec §4, §6)",
               "early_findings": "May 2017 shapes: layer-1 dc / dd / cd side by side (alexnet, digits) and stacked "
                                 "cd modules (vgg16 conv1_1 → pool1, digits) (spec §5)"}
DEFAULT_EXPERIMENT = "compare"
DIGITS_VALIDATION = 4           # held-out digits scored (and inverted by M&V 2016 too)
VGG_GRAM_TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@dataclasses.dataclass(frozen=True)
class NetSetting:
    """Per network: the starting layers evaluated by default, where its images come from, and whether the spec's
    recorded numbers and the M&V 2016 comparison apply."""
    layers: tuple[str, ...]
    images: str = "photos"          # "photos": --data or the embedded photos; "digits": the embedded digits
    recorded: bool = False          # the spec's §6 numbers are this net's (AlexNet)
    mv2016: bool = True             # M&V 2016's constants (B, the C tables) are the ImageNet nets'


NET_SETTINGS = {
    # spec §4.3: AlexNet stacks from DC1, DC4, DC7, DC8, DC9 (conv1/lin … conv5/lin); VGG16 from DC3, DC6, DC10
    "alexnet": NetSetting(("conv1/lin", "conv2/lin", "conv3/lin", "conv4/lin", "conv5/lin"), recorded=True),
    "vgg16": NetSetting(("pool1", "pool2", "pool3")),
    # not the thesis': the same design on tfrestore's trained digits net, without M&V 2016 (flat images on the
    # 0–255 zero-mean digits)
    "digits": NetSetting(("conv1", "pool1", "conv2", "pool2"), images="digits", mv2016=False),
}

# spec §6: AlexNet, subset10 averages, per starting layer (VGG score, MSE, NMSE)
RECORDED = {"learned stacks (thesis)": {"conv1": (0.06100, 188.45, 0.013477), "conv2": (0.51720, 457.82, 0.034307),
                                        "conv3": (0.66418, 845.15, 0.061944), "conv4": (0.69428, 1022.58, 0.074675),
                                        "conv5": (0.72961, 1419.92, 0.098018)},
            "M&V 2016 (thesis variant)": {"conv1": (0.1800, 868.60, 0.06101), "conv2": (0.4450, 1391.62, 0.09591),
                                          "conv3": (0.5295, 1714.48, 0.11889), "conv4": (0.6470, 2197.03, 0.15223),
                                          "conv5": (0.7292, 3085.13, 0.21977)}}


@dataclasses.dataclass(frozen=True)
class Regime:
    """How a stack's weights are obtained."""
    description: str
    trained_as: str          # the inverters' regime ("solo": per module; "merged"/"end_to_end": the chain)


REGIMES = {"stacked": Regime("solo-trained modules chained as they are", "solo"),
           "merged": Regime("the chain fine-tuned on the sum of its modules' MSE losses", "merged"),
           "end_to_end": Regime("the chain trained from scratch on the image loss only", "end_to_end")}


def _config(base: training.TrainingConfig, steps: int | None, seed: int) -> training.TrainingConfig:
    return dataclasses.replace(base.scaled(steps) if steps else base, seed=seed)


@dataclasses.dataclass(frozen=True)
class Training:
    """What every training of a run shares: where the data and the classifier come from, the flags."""
    net: str
    taps: I.Taps
    source: training.Source
    val: np.ndarray
    data: str                   # the data's store tag
    classifier: str             # inverters.classifier_identity of the frozen net
    command: str                # the command line that trains (or rebuilds) this run's modules
    progress: bool
    legacy: bool
    overwrite: bool = False
    all_specs: tuple = ()       # every module of the run's chains, deepest first
    val_names: tuple[str, ...] = ()     # the validation images' names (files, or digit<i>)
    description: str = ""       # the training data, in words


def _key(t: Training, specs, regime: str, cfg, *, seed: int, start=()) -> store.Key:
    return I.stack_key(t.net, regime, specs, cfg, classifier=t.classifier, data=t.data, seed=seed,
                       legacy_train_all=t.legacy, start=start)


def _train(t: Training, modules, specs, regime: str, cfg, key: store.Key) -> dict | None:
    """``modules`` from the store under ``key``, or trained under ``regime`` and stored first (then the training
    summary is returned)."""
    t0 = time.perf_counter()
    _, summary = I.train_stored(key, t.taps, modules, specs, t.source, t.val, cfg, regime=regime, command=t.command,
                                progress=t.progress, overwrite=t.overwrite, legacy_train_all=t.legacy)
    if summary is not None:
        summary["wall"] = time.perf_counter() - t0
    return summary


def _solo(t: Training, specs, cfg, seed) -> tuple[dict, dict, dict]:
    """Solo modules, each loaded from the store or trained there first; (modules, summaries of those trained here,
    each module's store key)."""
    modules = I.build_modules(t.taps, specs, seed=seed)
    summaries, keys = {}, {}
    for i, s in enumerate(specs):
        keys[s.name] = key = _key(t, [s], "solo", cfg, seed=seed + i)     # build_modules seeds module i with seed + i
        if t.progress and not key.path.exists():
            print(f"training {s.name} ({s.source} → {s.target}) solo, {cfg.steps} steps", flush=True)
        summary = _train(t, {s.name: modules[s.name]}, [s], "solo", cfg, key)
        if summary is not None:
            summaries[s.name] = summary
    return modules, summaries, keys


def _copy(taps, specs, solo, seed):
    fresh = I.build_modules(taps, specs, seed=seed)
    for s in specs:
        fresh[s.name].set_weights(solo[s.name].get_weights())
    return fresh


def _vgg_size(images: np.ndarray) -> np.ndarray:
    """Images smaller than VGG16's 224² input (the digits) are enlarged bilinearly for the Gram score."""
    if images.shape[1] >= 224:
        return images
    import tensorflow as tf
    return tf.image.resize(np.asarray(images, np.float32), (224, 224)).numpy().astype(np.float64)


def _scores(originals, recs, vgg) -> dict:
    rec = np.clip(recs, 0, 255).astype(np.float64)
    big_o, big_r = _vgg_size(originals), _vgg_size(rec)
    return {"mse": float(np.mean(metrics.mse(originals, rec))), "nmse": float(np.mean(metrics.nmse_dot(originals, rec))),
            "vgg": float(np.mean(metrics.gram_score(vgg, big_o, big_r)))}


def _data(setting: NetSetting, net: str, folder: str | None, seed: int):
    """(training source, validation images [V, H, W, 3] RGB 0–255, their names, description)."""
    if setting.images == "digits":
        if folder:
            raise ValueError(f"--net={net} inverts the embedded digits; --data is for alexnet / vgg16")
        train_x, _, desc = data_lib.digit_images(None, "train")
        val_x, _, _ = data_lib.digit_images(None, "val")
        val = val_x[:DIGITS_VALIDATION]
        return training.ArraySource({"image": train_x}), val, [f"digit{i}" for i in range(len(val))], desc
    train_src, val_src, desc = I.image_sources(folder)
    size = nets.input_size(net)
    val = np.stack([data_lib.load_image(v, size, crop="center").astype(np.float32) for v in val_src])
    return I.ImageSource(train_src, size, seed=seed), val, val_src, desc


def _learned(t: Training, chains, solo, solo_keys, vgg, *, steps, seed) -> tuple[list, dict]:
    """Per starting layer: the stacked, merged and end-to-end chains scored, beside the same chain untrained."""
    feats = t.taps(t.val)
    rows, recs = [], {}
    merged_cfg, e2e_cfg = _config(I.MERGED, steps, seed), _config(I.SOLO, steps, seed)
    for start, specs in chains.items():
        merged = _copy(t.taps, specs, solo, seed)
        _train(t, merged, specs, "merged", merged_cfg,
               _key(t, specs, "merged", merged_cfg, seed=seed, start=[solo_keys[sp.name].digest for sp in specs]))
        e2e = I.build_modules(t.taps, specs, seed=seed + 1000)
        _train(t, e2e, specs, "end_to_end", e2e_cfg, _key(t, specs, "end_to_end", e2e_cfg, seed=seed + 1000))
        stacks = {"stacked": solo, "merged": merged, "end_to_end": e2e,
                  "untrained (baseline)": I.build_modules(t.taps, specs, seed=seed)}
        for name, mods in stacks.items():
            rec = np.asarray(I.run_chain(mods, specs, feats[I.tap(t.net, specs[0].source)])[-1])
            recs[(start, name)] = rec
            rows.append({"layer": start, "method": name, **_scores(t.val, rec, vgg)})
    return rows, recs


def _command(net: str, layers: list[str] | None, data: str | None, steps: int | None, seed: int,
             experiment: str = DEFAULT_EXPERIMENT) -> str:
    return (f"python main.py --paper=layer_inversion --net={net}"
            + (f" --experiment={experiment}" if experiment != DEFAULT_EXPERIMENT else "")
            + (f" --layers={','.join(layers)}" if layers else "")
            + (f" --data={data}" if data else "") + (f" --steps={steps}" if steps else "")
            + (f" --seed={seed}" if seed else ""))


def _mv2016(s, net, starts, val, vgg, *, steps, progress) -> tuple[list, dict]:
    """M&V 2016 on the same images and layers (one batched optimisation per image)."""
    ext, recs = Extractors(s.model), {}
    for i, img in enumerate(val.astype(np.uint8)):
        prob = mv2016.problem(mv2016.EXPERIMENT_SETTINGS["inversion"], net=net, image_rgb=img, extractors=ext,
                              layers=starts, seed=s.seed, steps=steps or None)
        common.optimise(prob, dataclasses.replace(s, out=s.out / f"mv2016_{i}", logdir=s.logdir / f"mv2016_{i}"),
                        image_rgb=img, config={"paper": "layer_inversion", "method": "mv2016"},
                        title=f"M&V 2016 on validation image {i}", log_every=50, progress=progress)
        out = np.load(s.out / f"mv2016_{i}" / "reconstructions.npy")
        for j, start in enumerate(starts):
            recs.setdefault((start, "mv2016"), np.zeros_like(val))[i] = out[j]
    rows = [{"layer": start, "method": "mv2016", **_scores(val, recs[(start, "mv2016")], vgg)} for start in starts]
    return rows, recs


@dataclasses.dataclass(frozen=True)
class Flags:
    """The command-line flags of layer_inversion (main.py builds them from these fields)."""
    net: str = paper.flag("alexnet", "alexnet, vgg16 (the thesis') or digits (trained here)",
                          source="learned_inverters.md §4.3")
    layers: tuple[str, ...] | None = paper.flag(None, "starting layers (default: the thesis' evaluated ones: "
                                                "AlexNet conv1/lin … conv5/lin, VGG16 pool1 … pool3)",
                                                source="learned_inverters.md §4.3")
    data: str | None = paper.flag(None, "an image folder (the last 20 % of its sorted files: validation); default: "
                                  "the embedded photos")
    steps: int | None = paper.flag(None, "every training's length and M&V 2016's budget (schedules scaled); "
                                   "default: the thesis' 3,000", source="learned_inverters.md §4.1")
    weights: str = paper.flag("auto", "'auto', 'random' or a .weights.h5 file of the inverted net")
    experiment: str = paper.flag(DEFAULT_EXPERIMENT, "compare or early_findings (see --list)")

    def __post_init__(self):
        if self.net not in NET_SETTINGS:
            raise ValueError(f"layer_inversion runs on {', '.join(NET_SETTINGS)}, not '{self.net}'")
        if self.experiment not in EXPERIMENTS:
            raise ValueError(f"unknown experiment '{self.experiment}' for layer_inversion; valid: "
                             f"{', '.join(EXPERIMENTS)}")
        if self.experiment == "early_findings" and self.layers:
            raise ValueError("--experiment=early_findings inverts the thesis' own layers (--net picks them); "
                             "leave out --layers")
        for start in self.layers or ():
            I.chain(self.net, start)                                        # names the valid starting layers


def default_out(flags: Flags) -> str:
    return f"runs/layer_inversion_{flags.net}_{flags.experiment}"


@dataclasses.dataclass(frozen=True)
class Options(Flags):
    """:class:`Flags` plus what only the library sets: the original's behaviour, behind an explicit option."""
    legacy_train_all: bool = paper.flag(False, "update every module of a merged / end-to-end chain whatever its "
                                        "trainable flag (the original's behaviour)",
                                        source="learned_inverters.md §3, §7")


def _recorded_rows(setting: NetSetting, net: str, starts: list[str]) -> list[dict]:
    """The spec's recorded AlexNet numbers (§6) for the starting layers they cover."""
    rows = []
    for start in starts:
        layer = nets.resolve_layer(net, start)
        for label, rec in RECORDED.items():
            if setting.recorded and layer in rec:
                v, m, nm = rec[layer]
                rows.append({"layer": start, "method": f"{label}, recorded", "vgg": v, "mse": m, "nmse": nm})
    return rows


def _training(flags: Flags, ctx: paper.RunContext, s: common.Setup, chains: dict) -> Training:
    """The facts every training of this run shares (data, taps, store tags, the rebuild command)."""
    setting = NET_SETTINGS[flags.net]
    source, val, val_src, desc = _data(setting, flags.net, flags.data, ctx.seed)
    print(f"training data: {desc}; {len(val)} validation images", flush=True)
    all_specs = sorted({sp for c in chains.values() for sp in c}, key=lambda sp: int(sp.name[2:]), reverse=True)
    return Training(net=flags.net, taps=I.Taps(s.model, all_specs), source=source, val=val,
                    data=training.data_tag(flags.data), classifier=I.classifier_identity(s.model),
                    command=_command(flags.net, flags.layers, flags.data, flags.steps, ctx.seed),
                    progress=ctx.progress, legacy=isinstance(flags, Options) and flags.legacy_train_all,
                    overwrite=ctx.overwrite,
                    all_specs=tuple(all_specs), val_names=tuple(str(v) for v in val_src), description=desc)


def _panels(val: np.ndarray, recs: dict, starts: list[str], methods: tuple[str, ...]) -> list:
    """Per starting layer: the first validation image, then each method's reconstruction and its |error| ×4."""
    panels = []
    for start in starts:
        panels.append((val[0] / 255.0, f"original ({start})"))
        for name in methods:
            rec = np.clip(recs[(start, name)][0], 0, 255) / 255.0
            panels += [(rec, f"{name} from {start}"), (np.abs(rec - val[0] / 255.0).mean(-1) * 4, "|error| ×4")]
    return panels


def run(flags: Flags, ctx: paper.RunContext) -> paper.Result:
    """Trains (or loads from ``tfrestore.core.store``, ``inverter/<net>/<regime>/…``) the modules of every chain, scores
    them on the validation images and writes figure, table and metrics into ``ctx.out`` at the end.
    ``ctx.overwrite`` trains stored modules again; ``flags`` may be :class:`Options` (the original's training of
    every module)."""
    if flags.experiment == "early_findings":
        return _early_run(flags, ctx)
    net, setting, seed = flags.net, NET_SETTINGS[flags.net], ctx.seed
    starts = list(flags.layers or setting.layers)
    chains = {l: I.chain(net, l) for l in starts}
    if setting.images == "digits" and flags.weights == "auto":
        classifier.get(seed=seed, progress=ctx.progress)                # trained here when not in the store
    s = common.setup(paper="layer_inversion", net=net, experiment="compare", weights=flags.weights,
                     out=str(ctx.out), logdir=str(ctx.logdir), seed=seed)
    t = _training(flags, ctx, s, chains)
    t0 = time.perf_counter()
    solo, solo_summaries, solo_keys = _solo(t, list(t.all_specs), _config(I.SOLO, flags.steps, seed), seed)
    vgg = vgg16_gram_features(VGG_GRAM_TAPS)        # VGG16 up to relu5_1: no fc head (issue 24 item 4)
    rows, recs_all = _learned(t, chains, solo, solo_keys, vgg, steps=flags.steps, seed=seed)
    rows += _recorded_rows(setting, net, starts)
    learned_seconds = time.perf_counter() - t0
    if setting.mv2016:
        mv_rows, mv_recs = _mv2016(s, net, starts, t.val, vgg, steps=flags.steps, progress=ctx.progress)
        rows += mv_rows
        recs_all.update(mv_recs)
    rows.sort(key=lambda r: (starts.index(r["layer"]), r["method"]))
    methods = ("stacked", "merged", "end_to_end") + (("mv2016",) if setting.mv2016 else ())
    head = (f"net: {net}   weights: " + ("RANDOM (seeded) — the method, not the paper's network" if s.weights ==
                                          "random" else s.weights) + f"   data: {t.description}   VGG score: "
            "tfrestore's VGG16")
    text = head + "\n" + report.table(rows, [("layer", "layer", ""), ("method", "method", ""), ("MSE", "mse", ".4g"),
                                             ("NMSE", "nmse", ".4g"), ("VGG score", "vgg", ".4g")])
    print(text, flush=True)
    summary = {"net": net, "weights": s.weights, "layers": starts, "data": t.description, "scores": rows,
               "solo_training": solo_summaries, "learned_seconds": learned_seconds,
               "training": {"solo": dataclasses.asdict(_config(I.SOLO, flags.steps, seed)),
                            "merged": dataclasses.asdict(_config(I.MERGED, flags.steps, seed))},
               "validation_images": list(t.val_names)}
    result = paper.Result(title=f"learned inverters — {net}", metrics=summary, table=text,
                          figure_panels=_panels(t.val, recs_all, starts, methods),
                          figure_columns=1 + 2 * len(methods))
    result.write(s.out)
    print(f"outputs in {s.out} (figure.png, table.txt, metrics.json); modules in "
          f"{store.home() / 'inverter' / net} (python -m tfrestore.core.store list inverter)", flush=True)
    return result


# ---- --experiment=early_findings (learned_inverters.md §5) ------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EarlyModule:
    """One module of the May 2017 runs and how it was trained (Adam at a constant rate, solo)."""
    spec: I.ModuleSpec
    learning_rate: float
    batch: int


@dataclasses.dataclass(frozen=True)
class EarlySetting:
    """Per network: the layer-1 shapes compared side by side and the stack (deepest first), either may be empty."""
    shapes: tuple[EarlyModule, ...]
    stack: tuple[EarlyModule, ...]
    about: str                      # which finding this net reproduces, in words


def _m(name: str, kind: str, source: str, target: str, hidden: int, op1: tuple, op2: tuple, *,
       train: tuple[float, int] = (3e-4, 32)) -> EarlyModule:
    """``op1`` / ``op2``: (kernel, stride, padding); ``train``: (learning rate, batch)."""
    (k1, s1, p1), (k2, s2, p2) = op1, op2
    return EarlyModule(I.ModuleSpec(name, source, target, hidden, k1, s1, p1, k2, kind, s2, p2), *train)


_NI = I.NET_INPUT
# spec §5: May 2017 targets are ReLU outputs and bgr_normed; the image module of the stack batch 10 / lr 1e-4, the
# others batch 32 / lr 3e-4. The spec gives no kernels for these shapes: they are the thesis scripts' (server_script
# of 2-3 May 2017: AlexNet l1_cd/run2, l1_dc/run2, l1_dd/run1, 11×11 kernels, op1 / op2 stride 1 / 4 for cd and 4 / 1
# for dc and dd, 96 channels, 3e-4 / 32; logs/.../stack_l123_cd_cd_cd/stack_log.py: VGG16 5×5, 64 channels, op2
# stride 2 on pool1). The May AlexNet was the 224², SAME-conv1 variant (networks.md §12.1) with SAME modules;
# tfrestore's is the full 227² build, so the stride-4 operation is VALID (55 → 227) like the catalogue's DC1 (§2).
_A11 = (11, 4, "valid")
EARLY = {
    "alexnet": EarlySetting(shapes=(_m("L1dc", "dc", "conv1/relu", _NI, 96, _A11, (11, 1, "same")),
                                    _m("L1dd", "dd", "conv1/relu", _NI, 96, _A11, (11, 1, "same")),
                                    _m("L1cd", "cd", "conv1/relu", _NI, 96, (11, 1, "same"), _A11)),
                            stack=(), about="AlexNet layer 1 (conv1/relu → image): dc, dd and cd side by side"),
    "vgg16": EarlySetting(shapes=(), stack=(
        _m("S3cd", "cd", "pool1", "conv1_2/relu", 64, (5, 1, "same"), (5, 2, "same")),
        _m("S2cd", "cd", "conv1_2/relu", "conv1_1/relu", 64, (5, 1, "same"), (5, 1, "same")),
        _m("S1cd", "cd", "conv1_1/relu", _NI, 64, (5, 1, "same"), (5, 1, "same"), train=(1e-4, 10))),
        about="VGG16 conv1_1 → pool1: three stacked cd modules, each trained solo"),
    # not the thesis': the digits net's first strided layer is pool1 (conv1 3×3 → relu1 → 2×2 pool), so its
    # "layer 1" comparison starts there (3×3 kernels as the digits catalogue, stride 2 — a kernel the stride does
    # not divide, like AlexNet's 11 / 4); its stack is VGG16's with one convolution fewer
    "digits": EarlySetting(shapes=(_m("L1dc", "dc", "pool1", _NI, 32, (3, 2, "same"), (3, 1, "same")),
                                   _m("L1dd", "dd", "pool1", _NI, 32, (3, 2, "same"), (3, 1, "same")),
                                   _m("L1cd", "cd", "pool1", _NI, 32, (3, 1, "same"), (3, 2, "same"))),
                           stack=(_m("S2cd", "cd", "pool1", "relu1", 32, (3, 1, "same"), (3, 2, "same")),
                                  _m("S1cd", "cd", "relu1", _NI, 32, (3, 1, "same"), (3, 1, "same"),
                                     train=(1e-4, 10))),
                           about="digits (trained here; not the thesis'): pool1 → image with dc, dd and cd side "
                                 "by side, and two stacked cd modules pool1 → relu1 → image"),
}


def _early_config(m: EarlyModule, steps: int | None, seed: int) -> training.TrainingConfig:
    """The solo engine (§3, §4.1) at the module's constant May rate and batch."""
    base = dataclasses.replace(I.SOLO, learning_rate=m.learning_rate, batch=m.batch, breakpoints=((0, m.learning_rate),))
    return _config(base, steps, seed)


def phase_mse_ratio(reference: np.ndarray, estimate: np.ndarray, stride: int) -> float:
    """The checkerboard index of a reconstruction: the squared error averaged per output phase (row mod ``stride``,
    column mod ``stride``, over images, rows, columns and channels of [N, H, W, C] arrays), largest over smallest.
    1 for an error spread evenly over the stride lattice; a strided last operation that covers its phases
    unevenly shows as more."""
    err = (np.asarray(estimate, np.float64) - np.asarray(reference, np.float64)) ** 2
    phases = [err[:, a::stride, b::stride].mean() for a in range(stride) for b in range(stride)]
    return float(max(phases) / max(min(phases), 1e-300))


def _early_training(flags: Flags, ctx: paper.RunContext, s: common.Setup, early: EarlySetting) -> Training:
    """The facts the early run's trainings share (data, taps, store tags, the rebuild command)."""
    specs = [m.spec for m in early.shapes + early.stack]
    source, val, val_src, desc = _data(NET_SETTINGS[flags.net], flags.net, flags.data, ctx.seed)
    print(f"training data: {desc}; {len(val)} validation images", flush=True)
    return Training(net=flags.net, taps=I.Taps(s.model, specs), source=source, val=val,
                    data=training.data_tag(flags.data), classifier=I.classifier_identity(s.model),
                    command=_command(flags.net, None, flags.data, flags.steps, ctx.seed, "early_findings"),
                    progress=ctx.progress, legacy=False, overwrite=ctx.overwrite, all_specs=tuple(specs),
                    val_names=tuple(str(v) for v in val_src), description=desc)


def _early_train(t: Training, early: EarlySetting, steps: int | None, seed: int) -> tuple[dict, dict, dict]:
    """Every module solo-trained (or loaded from the store): (trained modules, the same modules untrained,
    summaries of those trained here)."""
    trained, untrained, summaries = {}, {}, {}
    for i, m in enumerate(early.shapes + early.stack):
        cfg = _early_config(m, steps, seed)
        untrained.update(I.build_modules(t.taps, [m.spec], seed=seed + i))
        mods = I.build_modules(t.taps, [m.spec], seed=seed + i)
        key = _key(t, [m.spec], "solo", cfg, seed=seed + i)
        if t.progress and not key.path.exists():
            print(f"training {m.spec.name} ({m.spec.kind}: {m.spec.source} → {m.spec.target}) solo, {cfg.steps} "
                  f"steps, batch {m.batch}, lr {m.learning_rate:g}", flush=True)
        summary = _train(t, mods, [m.spec], "solo", cfg, key)
        if summary is not None:
            summaries[m.spec.name] = summary
        trained.update(mods)
    return trained, untrained, summaries


def _target_mse(target, rec) -> float:
    return float(np.mean((np.asarray(rec, np.float64) - np.asarray(target, np.float64)) ** 2))


def _image_scores(t: Training, target: str, rec, stride: int) -> dict:
    """A reconstruction of the image against the validation images, RGB 0–255 clipped: MSE, the thesis' NMSE and
    the checkerboard index on the stride lattice."""
    img = np.clip(I.rgb(t.net, target, rec), 0, 255)
    return {"image_mse": float(np.mean(metrics.mse(t.val, img))), "nmse": float(np.mean(metrics.nmse_dot(t.val, img))),
            "checker": phase_mse_ratio(t.val, img, stride), "_rgb": img}


MEAN_SAMPLES = 64          # training images whose mean target is the constant baseline


def _mean_targets(t: Training, names: set) -> dict:
    """The mean of each tap in ``names`` over the first :data:`MEAN_SAMPLES` training samples (as the training
    draws them): the best constant prediction a module has to beat."""
    import tensorflow as tf
    n = min(MEAN_SAMPLES, t.source.size)
    imgs = np.stack([np.asarray(t.source.load(tf.constant(i), tf.constant(i))["image"]) for i in range(n)])
    sums = {}
    for lo in range(0, n, 16):
        feats = t.taps(imgs[lo:lo + 16])
        for k in names:
            sums[k] = sums.get(k, 0.0) + np.asarray(feats[k], np.float64).sum(0)
    return {k: v / n for k, v in sums.items()}


def _early_row(t: Training, feats: dict, m: EarlyModule, modules: tuple[dict, dict, dict], part: str) -> dict:
    """One module on the true features of its source: the target-space MSE trained, untrained and of the
    training targets' mean (a constant the module must beat), its geometry and, for an image target, image
    scores. ``modules``: (trained, untrained, mean targets by tap)."""
    (trained, untrained, means), sp = modules, m.spec
    x, target = feats[I.tap(t.net, sp.source)], np.asarray(feats[I.tap(t.net, sp.target)])
    rec = np.asarray(trained[sp.name](x, training=False))
    geo = I.receptive_geometry(sp)
    row = {"part": part, "module": sp.name, "kind": sp.kind, "path": f"{sp.source} → {sp.target}",
           "mse": _target_mse(target, rec), "untrained": _target_mse(target, untrained[sp.name](x, training=False)),
           "mean_image": _target_mse(target, np.broadcast_to(means[I.tap(t.net, sp.target)], target.shape)),
           "footprint": geo["footprint"], "paths": "{}–{}".format(*geo["paths"]), "last_stride": geo["last_stride"]}
    if sp.target in (I.IMAGE, I.NET_INPUT):
        row.update(_image_scores(t, sp.target, rec, max(sp.stride1, sp.stride2)))
    return row


def _early_scores(t: Training, early: EarlySetting, trained: dict, untrained: dict) -> tuple[list, dict]:
    """The table's rows and the reconstructions (RGB 0–255) by row label."""
    feats = t.taps(t.val)
    mods = (trained, untrained, _mean_targets(t, {I.tap(t.net, m.spec.target) for m in early.shapes + early.stack}))
    rows = [_early_row(t, feats, m, mods, "layer 1") for m in early.shapes]
    rows += [_early_row(t, feats, m, mods, "stack, solo") for m in early.stack]
    if early.stack:
        specs = [m.spec for m in early.stack]
        rec = np.asarray(I.run_chain(trained, specs, feats[I.tap(t.net, specs[0].source)])[-1])
        target = np.asarray(feats[I.tap(t.net, specs[-1].target)])
        rows.append({"part": "stack, chained", "module": "_to_".join(s.name for s in specs), "kind": "+".join(
            s.kind for s in specs), "path": f"{specs[0].source} → {specs[-1].target}", "mse": _target_mse(target, rec),
            "mean_image": _target_mse(target, np.broadcast_to(mods[2][I.tap(t.net, specs[-1].target)], target.shape)),
            **_image_scores(t, specs[-1].target, rec, max(max(s.stride1, s.stride2) for s in specs))})
    recs = {r["module"]: r.pop("_rgb") for r in rows if "_rgb" in r}
    return rows, recs


EARLY_COLUMNS = [("part", "part", ""), ("module", "module", ""), ("kind", "kind", ""), ("from → to", "path", ""),
                 ("MSE (target)", "mse", ".4g"), ("untrained", "untrained", ".4g"), ("mean image", "mean_image", ".4g"),
                 ("image MSE", "image_mse", ".4g"), ("NMSE", "nmse", ".4g"), ("checkerboard", "checker", ".3f"),
                 ("footprint", "footprint", ""), ("paths", "paths", ""), ("last stride", "last_stride", "")]
RANDOM_EARLY = ("!" * 78 + "\n  RANDOM CLASSIFIER WEIGHTS: the modules invert a random network. The dc / dd /\n"
                "  cd comparison below measures the modules' GEOMETRY only (footprint, uneven\n"
                "  phase coverage), not what the thesis compared on the trained {net};\n"
                "  convert its weights for that (README.md).\n" + "!" * 78)


def _early_panels(val: np.ndarray, recs: dict) -> list:
    """The first validation image, then each reconstruction and its |error| ×4."""
    panels = [(val[0] / 255.0, "original")]
    for name, rec in recs.items():
        r = rec[0] / 255.0
        panels += [(r, name), (np.abs(r - val[0] / 255.0).mean(-1) * 4, f"{name} |error| ×4")]
    return panels


def _early_run(flags: Flags, ctx: paper.RunContext) -> paper.Result:
    """``--experiment=early_findings``: every module of :data:`EARLY` for ``flags.net`` solo-trained (or loaded from
    the store: ``inverter/<net>/solo/L1dc`` …), scored on the validation images; figure, table, metrics."""
    net, seed, early = flags.net, ctx.seed, EARLY[flags.net]
    if NET_SETTINGS[net].images == "digits" and flags.weights == "auto":
        classifier.get(seed=seed, progress=ctx.progress)                # trained here when not in the store
    s = common.setup(paper="layer_inversion", net=net, experiment="early_findings", weights=flags.weights,
                     out=str(ctx.out), logdir=str(ctx.logdir), seed=seed)
    if s.weights == "random":
        print(RANDOM_EARLY.format(net=net), flush=True)
    t = _early_training(flags, ctx, s, early)
    trained, untrained, summaries = _early_train(t, early, flags.steps, seed)
    rows, recs = _early_scores(t, early, trained, untrained)
    weights = "RANDOM (seeded) — geometry only, not the thesis' comparison" if s.weights == "random" else s.weights
    text = (f"{early.about}\nnet: {net}   weights: {weights}   data: {t.description}\n"
            "MSE (target): in the target's own units (the net's input for the image); image MSE / NMSE: RGB 0–255; "
            "checkerboard: largest / smallest phase MSE on the stride lattice (1: even); footprint / paths: one "
            "axis, closed form\n" + report.table(rows, EARLY_COLUMNS))
    print(text, flush=True)
    summary = {"net": net, "experiment": "early_findings", "weights": s.weights, "data": t.description,
               "about": early.about, "scores": rows, "solo_training": summaries,
               "modules": {m.spec.name: {**dataclasses.asdict(m.spec), "learning_rate": m.learning_rate,
                                         "batch": m.batch, "steps": _early_config(m, flags.steps, seed).steps}
                           for m in early.shapes + early.stack},
               "validation_images": list(t.val_names)}
    result = paper.Result(title=f"learned inverters, early findings — {net}", metrics=summary, table=text,
                          figure_panels=_early_panels(t.val, recs), figure_columns=1 + 2 * len(recs),
                          arrays={f"rec_{k}": v.astype(np.float32) for k, v in recs.items()})
    result.write(s.out)
    print(f"outputs in {s.out} (figure.png, table.txt, metrics.json); modules in "
          f"{store.home() / 'inverter' / net} (python -m tfrestore.core.store list inverter)", flush=True)
    return result
