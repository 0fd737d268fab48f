"""Harder's thesis, last chapter: adversarial restoration with learned image priors (spec ``adversarial.md``;
``frhrdr/deep_restoration`` ``advex_experiments.py``, ``utils/mean_filter_benchmark.py``).

Experiments (``--experiment``):
- ``stability`` (default): for every (clean, oblivious adversarial) pair, the label after every step of Adam on
  the prior energy alone (full prior: lr 0.6, 30 steps; dropout prior, dropout off: 10 steps), recorded after
  step 1 too (the original's off-by-one: ``Options(legacy_log_offset=True)``); the spec's statistics and the trade-off
  curve. Where the net's setting lists margin attacks (digits), a sweep of attacks that leave their examples
  further across the boundary (DeepFool's overshoot, a fixed-ε PGD), restored counts after the last step.
- ``adaptive``: DeepFool (100 steps, explicit) against classifier ∘ defence (4 Adam steps at lr 0.6, gradients
  through the unrolled descent); oblivious vs adaptive perturbation norms and ``read_adaptive_log``'s summary;
  the adaptive examples under another prior (transfer); the dropout ensemble (10 fixed masks, mean log-softmax)
  attacked under "source probability below p" with p passed.
- ``mean_filter``: the weighted mean-filter baseline over w = 0, 0.1, …, 1 for k = 2 and 3, and an adaptive
  DeepFool against the w = 0.2, 2×2 filter.
- ``energies``: the prior energy of each clean image and of its adversarial (spec §6.2).
- ``lbfgs``: foolbox 1's targeted L-BFGS attack (box-constrained L-BFGS-B, c doubled then bisected; spec §2), each
  image towards one target, its perturbation beside the smallest targeted FGSM step reaching the same target.
- ``lbfgs_energies``: those targeted examples scored by the 12×12 image prior (``image12``; ``digits_image12`` on
  the digits net): clean vs adversarial vs same-norm noise, beside spec §6.1's recorded energies.
- ``saliency``: foolbox 1's saliency-map attack (spec §2) as the oblivious attack: elements changed against its
  bounds (≤ 2000 steps, ≤ 7 changes of θ·255 per element), and the full-prior defence beside same-norm noise.
- ``stability_dropout``: the stability statistics with the dropout prior's test-time dropout on (a fresh mask per
  Adam step, spec §5 / §7.2) beside the same prior with dropout off, and §7.2's recorded "dropout on" series.

Every restoration count stands beside its baseline: the same inputs plus seeded random noise with the L2 norm of
the defence's change (``tfrestore.restore.adversarial.same_norm_noise``). DeepFool's examples sit just across the
boundary, so almost any change of that size restores them (on the digits net, 49 of 200 even change back when
classified one at a time instead of in a batch, and 18 are labelled src by the compiled defence graph before its
first step); only the margin between the defence's count and the noise's says what the prior contributes.

Networks: ``alexnet`` (the thesis'; labels from ``fc8``; converted weights from the store, else seeded random —
then the labels mean little) on an image folder (``--data``) or the embedded photos, and ``digits`` — a small CNN
tfrestore trains here in about a minute on the embedded digits, with image priors trained on its digit patches,
so the experiments give meaningful restored / preserved counts on this machine. Adversarial examples are kept in
``$TFRESTORE_HOME/adversarial/<net>/<dataset>/<attack>_oblivious/{stem}_t{src}_f{fooled}.npy`` with the attack's
settings (``attack.json``) and reused while those settings hold.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrestore.restore import adversarial as A
from tfrestore.models import classifier
from tfrestore import data, nets
from tfrestore.core import files, report
from tfrestore.nets import weights
from tfrestore.priors import catalogue

from . import common, paper

DESCRIPTION = "thesis adversarial restoration: prior-descent defence, stability, adaptive attacks, mean filter"
EXPERIMENTS = {
    "stability": "labels after every defence step for clean / adversarial pairs; restored vs preserved",
    "adaptive": "DeepFool through the defence: perturbation norms oblivious vs adaptive; transfer; ensemble",
    "mean_filter": "weighted mean-filter baseline over w for k = 2, 3, and an adaptive attack at w = 0.2",
    "energies": "prior energy of clean images vs their adversarials",
    "lbfgs": "targeted L-BFGS-B attack (foolbox 1's): success and perturbation vs a targeted FGSM step",
    "lbfgs_energies": "the targeted L-BFGS examples under the 12×12 image prior: clean vs adversarial vs noise",
    "saliency": "saliency-map attack (foolbox 1's JSMA): elements changed, and the prior defence vs noise",
    "stability_dropout": "stability with the dropout prior's test-time dropout on (a mask per step) vs off",
}
NO_PAIRS = ("lbfgs", "lbfgs_energies")        # experiments on targeted examples, not oblivious pairs
DEFAULT_EXPERIMENT = "stability"

# spec §3 / §4 / §5
FULL_LR, FULL_STEPS = 0.6, 30                 # §3: full512, Adam lr 0.6, 30 steps, labels after every step
DROPOUT_LR, DROPOUT_STEPS = 0.6, 10           # §3: dropout priors, 10 steps (lr 0.6, §7.2)
ADAPTIVE_STEPS, ADAPTIVE_LR = 4, 0.6          # §4: "5 steps by default, 4 in the notes"
ENSEMBLE_MEMBERS, ENSEMBLE_TARGET_PROB = 10, 0.5
MEAN_FILTER_SIZES = (2, 3)
MEAN_FILTER_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))
MEAN_FILTER_ADAPTIVE = (2, 0.2)               # §5: the adaptive DeepFool against the w = 0.2, 2×2 filter

# Not the thesis': oblivious attacks that leave their examples well across the decision boundary. DeepFool's
# examples sit just across it (overshoot 0.02), and noise of the defence's norm restores them about as often as
# the defence does; with a margin the two part. The spec has no PGD: its iterative gradient sign walks
# ε = k/100·255, and the margin PGD runs at one point of that grid.
MARGIN_ATTACKS = {
    "deepfool_overshoot0.2": A.AttackSetting("deepfool", steps=300, overshoot=0.2),
    "deepfool_overshoot0.5": A.AttackSetting("deepfool", steps=300, overshoot=0.5),
    "deepfool_overshoot1": A.AttackSetting("deepfool", steps=300, overshoot=1.0),
    "pgd_eps0.05": A.AttackSetting("pgd", steps=40, epsilon=0.05 * 255),
}
# The thesis' L-BFGS examples are targeted (§2, §6.1; the lbfgs experiments); an oblivious L-BFGS run costs
# about a minute per digit image at its settings, so it is not offered for --attack.
OBLIVIOUS_ATTACKS = {**{k: v for k, v in A.ATTACKS.items() if k not in ("targeted", "lbfgs")}, **MARGIN_ATTACKS}
LBFGS = A.ATTACKS["lbfgs"]                    # §2: epsilon 1e-5, num_random_targets 0, maxiter 150
# §2: the targets of the subset10 images (evaluation_protocols §4.1); image i is attacked towards TARGETS[i]
ALEXNET_TARGETS = (844, 424, 970, 949, 906, 486, 934, 39, 277, 646)


@dataclasses.dataclass(frozen=True)
class NetSetting:
    """Per network: the priors (full, transfer, dropout), how many pairs each experiment uses, where its images
    come from and which margin attacks the stability experiment sweeps beside ``--attack``."""
    prior: str
    transfer_prior: str
    dropout_prior: str
    pairs: int                 # clean / adversarial pairs (at most; a folder may hold fewer images)
    adaptive_pairs: int
    ensemble_pairs: int
    images: str = "photos"     # "photos": --data or the embedded photos; "digits": the embedded digits (net trained here)
    margin_attacks: tuple[str, ...] = ()
    image12_prior: str = "image12"         # §6.1: the 12×12 image prior scoring the targeted examples
    targeted_images: int = 10              # §2: the subset10 images
    targets: tuple[int, ...] = ()          # image i's target; empty: (src + 1 + i mod 9) mod 10 (never src)


NET_SETTINGS = {
    # the thesis: full512; transfer to an image prior with log-cosh experts (the thesis used the conv1/lin
    # feature prior, which needs a partial-network defence not built here); dropout1024 for the ensemble
    "alexnet": NetSetting("full512", "full512logistic", "dropout1024", pairs=1069, adaptive_pairs=1069,
                          ensemble_pairs=50, targets=ALEXNET_TARGETS),
    "digits": NetSetting("digits_full128", "digits_logistic128", "digits_dropout128", pairs=200,
                         adaptive_pairs=50, ensemble_pairs=10, images="digits",
                         margin_attacks=("deepfool", "deepfool_overshoot0.2", "deepfool_overshoot0.5",
                                         "deepfool_overshoot1", "pgd_eps0.05"),
                         image12_prior="digits_image12"),
}

# Recorded on 1069 AlexNet DeepFool pairs (spec §7.2 "eval full", §8, §9).
RECORDED_FULL = {"preserved": [1069, 1068, 1067, 1067, 1065, 1064, 1062, 1061, 1059, 1055, 1051],
                 "restored": [0, 613, 705, 761, 797, 817, 831, 841, 851, 868, 874]}
RECORDED_ADAPTIVE = {"FoE prior, 4 steps, lr 0.6": {"mean_oblivious": 71.1893, "mean_adaptive": 56.5042,
                                                    "ratio_median": 0.7701, "adaptive_larger": 57,
                                                    "adaptive_smaller": 999},
                     "2×2 mean filter, w = 0.2": {"mean_oblivious": 70.5566, "mean_adaptive": 74.9628,
                                                  "ratio_median": 1.0665, "adaptive_larger": 684,
                                                  "adaptive_smaller": 384}}
RECORDED_MEAN_FILTER_2x2 = {"retained": [1069, 1027, 991, 964, 934, 895, 866, 821, 802, 780, 776],
                            "restored": [0, 766, 784, 782, 779, 757, 738, 729, 708, 697, 694]}
# §6.2: the early 200-image DeepFool subset (198 pairs; §1) under "the prior" (which one is not recorded)
RECORDED_ENERGIES = {"pairs": 198, "mean_difference": -0.00403496, "adversarial_higher": 147}
# §6.1: LBFGS targeted examples under the 12×12 image prior, as recorded ("… _fX" rows: the previous stem assumed)
RECORDED_LBFGS_ENERGIES = {
    "adversarial": [("val53_t844_f39", 33.0931), ("val53_t844_f844", 0.6284), ("val53_t844_f970", 3.6122),
                    ("val76_t860_f424", 2.5478), ("val81_t970_f970", 2.8565), ("val99_t949_f934", 11.1615),
                    ("val99_t949_f949", 1.4844), ("val99_t949_f970", 3.8146), ("val106_t824_f906", 2.6395),
                    ("val108_t889_f486", 4.5298)],
    "original": [("val53", 0.6284), ("val76", 2.5454), ("val81", 2.8565), ("val99", 1.4844), ("val106", 2.6216),
                 ("val108", 4.5153), ("val129", 3.3293), ("val153", 6.4354), ("val157", 0.5108),
                 ("val160", 4.6791)]}
# §7.2: the dropout prior with test-time dropout on, 1069 DeepFool pairs, lr 0.6 (points 0–19)
RECORDED_DROPOUT_ON = {"preserved": [1069, 1068, 1067, 1064, 1064, 1063, 1063, 1060, 1057, 1055, 1055, 1052, 1050,
                                     1047, 1045, 1045, 1042, 1042, 1040, 1037],
                       "restored": [0, 657, 724, 771, 803, 826, 835, 854, 865, 876, 883, 887, 889, 894, 903, 908, 910,
                                    913, 912, 915]}


@dataclasses.dataclass
class Pairs:
    stems: list[str]
    clean: np.ndarray          # [P, H, W, 3] RGB 0–255
    adversarial: np.ndarray
    src: np.ndarray            # clean predictions
    fooled: np.ndarray         # labels of the adversarials

    def perturbation_norms(self) -> np.ndarray:
        return A.l2_norms(self.clean, self.adversarial, np.ones(len(self.src), bool))


def _images(setting: NetSetting, net: str, folder: str | None, limit: int) -> tuple[list[str], np.ndarray, str]:
    if setting.images == "digits":
        if folder:
            raise ValueError(f"--net={net} uses the embedded digits; --data is for image folders (alexnet)")
        x, _, desc = data.digit_images(None, "val")
        return [f"digit{i:04d}" for i in range(min(limit, len(x)))], x[:limit], "embedded"
    size = nets.input_size(net)
    srcs = data.image_folder(folder) if folder else data.sample_image_names()
    srcs = list(srcs)[:limit]
    imgs = np.stack([data.load_image(s, size).astype(np.float32) for s in srcs])
    return [Path(str(s)).stem for s in srcs], imgs, Path(folder).name if folder else "embedded"


def _classifier(setting: NetSetting, net: str, weights_flag: str, seed: int) -> A.Classifier:
    if setting.images == "digits":
        model, summary = classifier.get(seed=seed)
        if "val_accuracy" in summary:
            print(f"digits classifier: validation accuracy {summary['val_accuracy']:.3f} ({summary['data']})",
                  flush=True)
    else:
        model = nets.build(net, weights=weights_flag, seed=seed)
    if nets.weights_source(model) == "random":
        print("=" * 78 + f"\n  weights: RANDOM ({net}, seed {seed}). Labels of a random network mean little; "
              "use --net=digits\n  for meaningful counts here, or convert the original weights.\n" + "=" * 78,
              flush=True)
    return A.Classifier(model)


def _example_folder(root: Path, name: str, setting, kind: str = "oblivious") -> Path:
    """The attack's example folder; examples made with other settings (e.g. an older FGSM grid) are removed."""
    where = A.example_folder(root, name, kind)
    meta = where / "attack.json"
    wanted = dataclasses.asdict(setting)
    if where.exists() and (not meta.exists() or json.loads(meta.read_text()) != wanted):
        stale = list(where.glob("*.npy"))
        print(f"{where}: {len(stale)} examples made with other attack settings; making them again", flush=True)
        for f in stale:
            f.unlink()
    files.write_json(meta, wanted)
    return where


def make_pairs(clf: A.Classifier, setting: NetSetting, net: str, folder: str | None, limit: int,
               attack_name: str) -> Pairs:
    """Oblivious untargeted examples against the clean prediction, made once and reused from the dataset folder."""
    attack_setting = OBLIVIOUS_ATTACKS[attack_name]
    stems, clean, dataset = _images(setting, net, folder, limit)
    src = clf.labels(clean)
    where = _example_folder(weights.home() / "adversarial" / net / dataset, attack_name, attack_setting)
    have = A.load_examples(where)
    todo = [i for i, s in enumerate(stems) if s not in have]
    if todo:
        reused = len(stems) - len(todo)     # none on a first run: say so only when some are
        print(f"{attack_name} ({attack_setting.describe()}): attacking {len(todo)} images"
              + (f" ({reused} made before are reused from {where})" if reused else f"; kept in {where}"), flush=True)
        t0 = time.perf_counter()
        for at in range(0, len(todo), 50):
            idx = todo[at:at + 50]
            adv, ok = A.attack(clf, clean[idx], src[idx], attack_setting)
            fooled = clf.labels(adv)
            for i, a, good, f in zip(idx, adv, ok, fooled):
                if good and f != src[i]:
                    A.save_example(where, stems[i], a, src[i], f)
                    have[stems[i]] = (a, int(src[i]), int(f))
        print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
    keep = [i for i, s in enumerate(stems) if s in have and have[s][1] == src[i]]
    return Pairs([stems[i] for i in keep], clean[keep], np.stack([have[stems[i]][0] for i in keep]),
                 src[keep], np.array([have[stems[i]][2] for i in keep]))


@dataclasses.dataclass(frozen=True)
class Context:
    """What every experiment runs on: the net, its classifier, the pairs and the flags."""
    net: str
    setting: NetSetting
    clf: A.Classifier
    pairs: Pairs | None        # None for the experiments on targeted examples (NO_PAIRS)
    attack: str                # the oblivious attack that made ``pairs``
    prior: str | None          # --prior (default: the setting's)
    steps: int | None          # --steps: defence steps (default: the experiment's)
    prior_steps: int | None
    seed: int
    out: Path
    folder: str | None         # --data
    dataset: str               # the example folder's dataset name
    legacy_log_offset: bool = False   # record labels after steps 2 … n + 1 (the original's bug 2)


def _histories(defence: A.PriorDefence, clf, sets: list[np.ndarray], batch: int = 50,
               legacy: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each set of inputs: ([P, n + 1] labels, [P, n + 1] ‖x_t − x‖₂) before and after each defence step
    (legacy: after steps 2 … n + 1), from one compiled graph."""
    record = (dataclasses.replace(defence, steps=defence.steps + 1) if legacy else defence).recorder(clf)
    out = []
    for x in sets:
        parts = [record(x[i:i + batch]) for i in range(0, len(x), batch)]
        h, c = np.concatenate([p[0].T for p in parts]), np.concatenate([p[1].T for p in parts])
        if legacy:
            h, c = np.concatenate([h[:, :1], h[:, 2:]], 1), np.concatenate([c[:, :1], c[:, 2:]], 1)
        out.append((h, c))
    return out


def defence_statistics(defence: A.PriorDefence, clf, pairs: Pairs, *, legacy: bool = False,
                       seed: int = A.NOISE_SEED) -> dict:
    """Spec §3's statistics of the defence on the pairs, and under ``"noise"`` the same statistics of the
    baseline: each input plus seeded noise with the L2 norm of the defence's change after each step."""
    (img_labels, img_changes), (adv_labels, adv_changes) = _histories(defence, clf, [pairs.clean, pairs.adversarial],
                                                                      legacy=legacy)
    st = A.stability_statistics(img_labels, adv_labels, pairs.src)
    st["noise"] = A.stability_statistics(A.noise_labels(clf, pairs.clean, img_changes, seed),
                                         A.noise_labels(clf, pairs.adversarial, adv_changes, seed + 1), pairs.src)
    st["median_change_adversarials"] = np.median(adv_changes, 0).tolist()
    return st


def _tradeoff_plot(path: Path, curves: dict[str, dict], pairs: int):
    with report.plot(path) as (fig, ax):
        for name, st in curves.items():
            for label, series, style in ((name, st, "o-"), (f"{name}: same-norm noise", st["noise"], "x:")):
                ax.plot(np.array(series["preserved"]) / st["pairs"], np.array(series["restored"]) / st["pairs"],
                        style, ms=3, label=label)
        rec = RECORDED_FULL
        ax.plot(np.array(rec["preserved"]) / 1069, np.array(rec["restored"]) / 1069, "k--", lw=1,
                label="recorded: full prior, AlexNet (1069)")
        ax.set_xlabel("clean images keeping their label (preserved)")
        ax.set_ylabel("adversarials back to the source label (restored)")
        ax.set_title(f"trade-off over defence steps ({pairs} pairs)", fontsize=9)
        ax.legend(fontsize=7)


def _series_table(st: dict, recorded: dict | None = None) -> str:
    """The spec's layout: one row per series, one column per step; the noise baseline beside the defence."""
    n, noise = st["steps"], st["noise"]
    rows = [("changes in images", st["changes_images"], 1), ("first changes in images", st["first_changes_images"], 1),
            ("changes in adversarials", st["changes_adversarials"], 1),
            ("first changes in adversarials", st["first_changes_adversarials"], 1),
            ("first return to the source label", st["first_returns"], 1),
            ("preserved (incl. start)", st["preserved"], 0), ("restored (incl. start)", st["restored"], 0),
            ("preserved, same-norm noise", noise["preserved"], 0), ("restored, same-norm noise", noise["restored"], 0)]
    if recorded:
        rows += [(f"recorded {k} (AlexNet, 1069)", v, 0) for k, v in recorded.items()]
    cols = [("series", "series", "")] + [(str(t), f"s{t}", "d") for t in range(0, n + 1)]
    table_rows = [{"series": name, **{f"s{t + start}": v for t, v in enumerate(vals)}} for name, vals, start in rows]
    return report.table(table_rows, cols)


def _stability(ctx: Context) -> dict:
    s, clf, pairs = ctx.setting, ctx.clf, ctx.pairs
    results, texts, defences = {}, [], {}
    for name, prior_name, steps, lr in (("full prior", ctx.prior or s.prior, ctx.steps or FULL_STEPS, FULL_LR),
                                        ("dropout prior (dropout off)", s.dropout_prior, ctx.steps or DROPOUT_STEPS,
                                         DROPOUT_LR)):
        prior = catalogue.get(prior_name, ctx.net, steps=ctx.prior_steps)
        defences[name] = defence = A.PriorDefence(prior, steps=steps, lr=lr)
        t0 = time.perf_counter()
        st = defence_statistics(defence, clf, pairs, legacy=ctx.legacy_log_offset, seed=ctx.seed)
        st.update({"prior": prior_name, "defence_seconds": time.perf_counter() - t0, "defence": defence.describe(),
                   "lr": lr})
        results[f"{name}: {prior_name}"] = st
        text = _series_table(st, RECORDED_FULL if name == "full prior" else None)
        texts.append(f"{name} '{prior_name}', {defence.describe()}, {st['pairs']} pairs\n{text}")
        print(texts[-1], flush=True)
    margin, margin_text = _margin(ctx, defences["full prior"], next(iter(results.values())))
    texts += [margin_text] if margin_text else []
    return {"series": results, "margin": margin, "text": "\n\n".join(texts),
            "plots": {"tradeoff.png": functools.partial(_tradeoff_plot, curves=results, pairs=len(pairs.src))}}


_MARGIN_COLUMNS = [("oblivious attack", "attack", ""), ("pairs", "pairs", "d"),
                   ("median ‖adv − img‖₂", "median_perturbation", ".1f"),
                   ("median defence change", "median_change", ".1f"),
                   ("restored: defence", "restored", "d"), ("same-norm noise", "restored_noise", "d"),
                   ("preserved: defence", "preserved", "d"), ("same-norm noise", "preserved_noise", "d")]


def _margin(ctx: Context, defence: A.PriorDefence, main: dict) -> tuple[dict, str]:
    """The full-prior defence after its n steps against oblivious attacks of growing margin, each beside the
    same-norm noise baseline (``NetSetting.margin_attacks``; ``main``: the statistics on ``--attack``'s pairs)."""
    if not ctx.setting.margin_attacks:
        return {}, ""
    prior_name = ctx.prior or ctx.setting.prior
    rows = {}
    for name in ctx.setting.margin_attacks:
        pairs = ctx.pairs if name == ctx.attack else make_pairs(ctx.clf, ctx.setting, ctx.net, ctx.folder,
                                                                 ctx.setting.pairs, name)
        if not len(pairs.src):
            continue
        reuse = name == ctx.attack and not ctx.legacy_log_offset
        st = main if reuse else defence_statistics(defence, ctx.clf, pairs, seed=ctx.seed)
        rows[name] = {"attack": name, "setting": OBLIVIOUS_ATTACKS[name].describe(), "pairs": st["pairs"],
                      "median_perturbation": float(np.median(pairs.perturbation_norms())),
                      "median_change": st["median_change_adversarials"][-1],
                      "restored": st["restored"][-1], "restored_noise": st["noise"]["restored"][-1],
                      "preserved": st["preserved"][-1], "preserved_noise": st["noise"]["preserved"][-1]}
    text = (f"margin sweep: '{prior_name}', {defence.describe()}; counts after the last step\n"
            + report.table(list(rows.values()), _MARGIN_COLUMNS))
    print(text, flush=True)
    return rows, text


def _norm_row(name, summ) -> dict:
    return {"defence": name, **{k: summ.get(k, "") for k in ("samples", "correct_with_defence", "failed", "errors",
                                                             "successful", "mean_oblivious", "mean_adaptive",
                                                             "max_adaptive", "min_adaptive", "diff_mean",
                                                             "diff_median", "ratio_mean", "ratio_median",
                                                             "adaptive_larger", "adaptive_smaller")}}


_NORM_COLUMNS = [("defence", "defence", ""), ("n", "samples", "d"), ("correct w/ def.", "correct_with_defence", "d"),
                 ("failed", "failed", "d"), ("errors", "errors", "d"), ("successful", "successful", "d"),
                 ("mean obl.", "mean_oblivious", ".2f"), ("mean adapt.", "mean_adaptive", ".2f"),
                 ("max / min adapt.", "maxmin", ""), ("diff mean / median", "diff", ""),
                 ("ratio mean / median", "ratio", ""), ("adapt > / < obl.", "larger", "")]


def _format_norm_rows(rows):
    for r in rows:
        f = lambda a, b: "" if r.get(a, "") == "" else f"{r[a]:.4g} / {r[b]:.4g}"     # noqa: E731
        r["maxmin"], r["diff"], r["ratio"] = (f("max_adaptive", "min_adaptive"), f("diff_mean", "diff_median"),
                                              f("ratio_mean", "ratio_median"))
        r["larger"] = "" if r.get("adaptive_larger", "") == "" else f"{r['adaptive_larger']} / {r['adaptive_smaller']}"
    return report.table(rows, _NORM_COLUMNS)


def _adaptive_attack(model, pairs: Pairs, idx, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """DeepFool (explicit steps) against ``model``; norms (inf = not found, −inf = the attack raised)."""
    norms = np.full(len(idx), np.inf)
    examples = pairs.clean[idx].copy()
    for at in range(0, len(idx), 25):
        sl = slice(at, at + 25)
        sub = idx[sl]
        try:
            adv, ok = A.attack(model, pairs.clean[sub], pairs.src[sub], A.ADAPTIVE_DEEPFOOL)
        except (AssertionError, tf.errors.InvalidArgumentError):
            norms[sl] = -np.inf
            continue
        examples[sl] = adv
        norms[sl] = A.l2_norms(pairs.clean[sub], adv, ok)
        fooled = np.argmax(np.asarray(model(adv)), -1)
        for j, i in enumerate(sub):
            if ok[j]:
                A.save_example(folder, pairs.stems[i], adv[j], pairs.src[i], fooled[j])
    return examples, norms


def restoration(defence, clf, x: np.ndarray, src: np.ndarray, seed: int, batch: int = 50) -> dict:
    """How many of ``x`` the ``defence`` (an RGB → RGB map) brings back to ``src``, and how many the same-norm
    noise baseline does."""
    if not len(x):
        return {"inputs": 0, "restored": 0, "restored_noise": 0}
    out = np.concatenate([np.asarray(defence(tf.constant(x[i:i + batch]))) for i in range(0, len(x), batch)])
    change = A.l2_norms(x, out, np.ones(len(x), bool))
    noise = A.noise_labels(clf, x, change[:, None], seed)[:, 0]
    return {"inputs": int(len(x)), "restored": int(np.sum(clf.labels(out) == src)),
            "restored_noise": int(np.sum(noise == src)), "median_change": float(np.median(change))}


def _adaptive(ctx: Context) -> dict:
    s, clf, pairs, net = ctx.setting, ctx.clf, ctx.pairs, ctx.net
    prior_name = ctx.prior or s.prior
    prior = catalogue.get(prior_name, net, steps=ctx.prior_steps)
    defence = A.PriorDefence(prior, steps=ctx.steps or ADAPTIVE_STEPS, lr=ADAPTIVE_LR)
    defended = A.Defended(clf, defence)
    idx = np.arange(min(s.adaptive_pairs, len(pairs.src)))
    clean_def = np.argmax(np.asarray(defended(pairs.clean[idx])), -1)
    invariant = clean_def == pairs.src[idx]
    attack_idx = idx[invariant]
    root = weights.home() / "adversarial" / net / ctx.dataset
    t0 = time.perf_counter()
    adv, norms = _adaptive_attack(defended, pairs, attack_idx, root / f"deepfool_adaptive_{prior_name}")
    seconds = time.perf_counter() - t0
    oblivious = A.l2_norms(pairs.clean[attack_idx], pairs.adversarial[attack_idx], np.ones(len(attack_idx), bool))
    summ = A.adaptive_summary(oblivious, norms, invariant)
    summ["samples"] = int(len(idx))
    rows = [_norm_row(f"ours: {prior_name}, {defence.describe()}", summ)]
    rows += [_norm_row(f"recorded: {k} (AlexNet)", v) for k, v in RECORDED_ADAPTIVE.items()]
    src = pairs.src[attack_idx]
    # the defence on the oblivious examples (what the adaptive attack undoes), and the adaptive examples under
    # their own defence and under one with another prior (transfer); each beside the same-norm noise
    found = np.isfinite(norms) & (norms > 0)
    other = A.PriorDefence(catalogue.get(s.transfer_prior, net, steps=ctx.prior_steps), steps=defence.steps,
                           lr=defence.lr)
    restore = {"oblivious, own defence": restoration(defence, clf, pairs.adversarial[attack_idx], src, ctx.seed),
               "adaptive, own defence": restoration(defence, clf, adv[found], src[found], ctx.seed),
               f"adaptive, '{s.transfer_prior}' defence": restoration(other, clf, adv[found], src[found], ctx.seed)}
    transfer = {"examples": int(found.sum()), "other_prior": s.transfer_prior,
                "fooling_own_defence": restore["adaptive, own defence"]["inputs"]
                - restore["adaptive, own defence"]["restored"],
                "restored_by_other_prior": restore[f"adaptive, '{s.transfer_prior}' defence"]["restored"]}
    ens_summ, ens_text, ens_seconds = _ensemble(ctx, idx)
    text_all = (f"adaptive DeepFool ({A.ADAPTIVE_DEEPFOOL.describe()}) through {defence.describe()} "
                f"'{prior_name}' ({seconds:.0f} s)\n{_format_norm_rows(rows)}\n\n"
                f"restored to the source label ({defence.describe()}), beside noise of the defence's change:\n"
                + report.table([{"examples": k, **v} for k, v in restore.items()],
                               [("examples", "examples", ""), ("n", "inputs", "d"), ("restored", "restored", "d"),
                                ("same-norm noise", "restored_noise", "d")])
                + f"\n\ndropout ensemble ({ens_seconds:.0f} s)\n{ens_text}")
    print(text_all, flush=True)
    norms_plot = functools.partial(_histogram, summ=summ, title=f"perturbation norms, {prior_name}")
    return {"plots": {"norms.png": norms_plot}, "summary": summ, "restoration": restore, "transfer": transfer,
            "ensemble": ens_summ,
            "attack": dataclasses.asdict(A.ADAPTIVE_DEEPFOOL), "defence": {"steps": defence.steps, "lr": defence.lr},
            "text": text_all, "attack_seconds": seconds}


def _ensemble(ctx: Context, idx: np.ndarray) -> tuple[dict, str, float]:
    """The dropout ensemble (fixed masks, mean log-softmax) attacked with its target probability passed."""
    s, pairs = ctx.setting, ctx.pairs
    dprior = catalogue.get(s.dropout_prior, ctx.net, steps=ctx.prior_steps)
    ens = A.Ensemble(ctx.clf, A.PriorDefence(dprior, steps=ctx.steps or ADAPTIVE_STEPS, lr=ADAPTIVE_LR),
                     A.ensemble_masks(dprior, ENSEMBLE_MEMBERS, ctx.seed))
    eidx = idx[:s.ensemble_pairs]
    crit = A.SourceProbabilityBelow(pairs.src[eidx], ENSEMBLE_TARGET_PROB).criterion
    t0 = time.perf_counter()
    eadv, eok = A.attack(ens, pairs.clean[eidx], pairs.src[eidx], A.ADAPTIVE_DEEPFOOL, criterion=crit)
    ens_norms = A.l2_norms(pairs.clean[eidx], eadv, eok)
    ens_obl = A.l2_norms(pairs.clean[eidx], pairs.adversarial[eidx], np.ones(len(eidx), bool))
    summ = A.adaptive_summary(ens_obl, ens_norms)
    summ["members"] = len(ens.members)
    text = _format_norm_rows([_norm_row(f"ours: {s.dropout_prior} ensemble of {ENSEMBLE_MEMBERS}, "
                                        f"p(src) < {ENSEMBLE_TARGET_PROB}", summ)])
    return summ, text, time.perf_counter() - t0


def _histogram(path: Path, summ: dict, title: str):
    if "histogram_edges" not in summ:
        return
    e = np.array(summ["histogram_edges"])
    with report.plot(path, figsize=(5, 3.2)) as (fig, ax):
        ax.stairs(summ["histogram_oblivious"], e, label="oblivious")
        ax.stairs(summ["histogram_adaptive"], e, label="adaptive")
        ax.set_xscale("log")
        ax.set_xlabel("‖image − adversarial‖₂ (0–255 units)")
        ax.set_title(title, fontsize=9)
        ax.legend()


def filter_counts(clf, clean: np.ndarray, adversarial: np.ndarray, src: np.ndarray, k: int, seed: int) -> dict:
    """Per w: clean images keeping src (``retained``), adversarials back to src (``restored``), pairs whose two
    filtered versions agree (``same``) — and the same three with noise of the filter's change instead
    (``*_noise``)."""
    out = {key: [] for key in ("retained", "restored", "same", "retained_noise", "restored_noise", "same_noise")}
    ones = np.ones(len(src), bool)
    for w in MEAN_FILTER_WEIGHTS:
        fi, fa = np.asarray(A.mean_filter(clean, k, w)), np.asarray(A.mean_filter(adversarial, k, w))
        li, la = clf.labels(fi), clf.labels(fa)
        ni = A.noise_labels(clf, clean, A.l2_norms(clean, fi, ones)[:, None], seed)[:, 0]
        na = A.noise_labels(clf, adversarial, A.l2_norms(adversarial, fa, ones)[:, None], seed + 1)[:, 0]
        for key, a, b in (("", li, la), ("_noise", ni, na)):
            out["retained" + key].append(int(np.sum(a == src)))
            out["restored" + key].append(int(np.sum(b == src)))
            out["same" + key].append(int(np.sum(a == b)))
    return out


def _filter_rows(setting: str, counts: dict) -> list[dict]:
    return [{"setting": setting, "series": f"{series}{', same-norm noise' if key.endswith('_noise') else ''}",
             **{f"w{w}": v for w, v in zip(MEAN_FILTER_WEIGHTS, counts[key])}}
            for series in ("retained", "restored", "same") for key in (series, f"{series}_noise")]


def _mean_filter(ctx: Context) -> dict:
    clf, pairs = ctx.clf, ctx.pairs
    res, rows = {}, []
    for k in MEAN_FILTER_SIZES:
        res[f"{k}x{k}"] = c = filter_counts(clf, pairs.clean, pairs.adversarial, pairs.src, k, ctx.seed)
        rows += _filter_rows(f"{k}×{k}, oblivious", c)
    k, w = MEAN_FILTER_ADAPTIVE
    filt = A.Defended(ctx.clf, A.MeanFilter(k, w))
    idx = np.arange(min(ctx.setting.adaptive_pairs, len(pairs.src)))
    invariant = np.argmax(np.asarray(filt(pairs.clean[idx])), -1) == pairs.src[idx]
    aidx = idx[invariant]
    adv, norms = _adaptive_attack(filt, pairs, aidx, weights.home() / "adversarial" / ctx.net / ctx.dataset
                                  / f"deepfool_adaptive_meanfilter{k}_{w}")
    found = np.isfinite(norms) & (norms > 0)
    res[f"adaptive_{k}x{k}_w{w}"] = c = filter_counts(clf, pairs.clean[aidx][found], adv[found],
                                                      pairs.src[aidx][found], k, ctx.seed)
    rows += _filter_rows(f"{k}×{k}, adaptive at w={w}", c)
    rows += [{"setting": "recorded 2×2 (AlexNet, 1069)", "series": s,
              **{f"w{ww}": v for ww, v in zip(MEAN_FILTER_WEIGHTS, vals)}}
             for s, vals in RECORDED_MEAN_FILTER_2x2.items()]
    obl = A.l2_norms(pairs.clean[aidx], pairs.adversarial[aidx], np.ones(len(aidx), bool))
    summ = A.adaptive_summary(obl, norms, invariant)
    summ["samples"] = int(len(idx))
    cols = [("setting", "setting", ""), ("series", "series", "")] + [(f"w={w:g}", f"w{w}", "d")
                                                                     for w in MEAN_FILTER_WEIGHTS]
    text = (f"{len(pairs.src)} pairs\n" + report.table(rows, cols) + "\n\nnorms, adaptive vs oblivious:\n"
            + _format_norm_rows([_norm_row(f"ours: {k}×{k} mean filter, w = {w}", summ),
                                 _norm_row("recorded: 2×2 mean filter, w = 0.2 (AlexNet)",
                                           RECORDED_ADAPTIVE["2×2 mean filter, w = 0.2"])]))
    print(text, flush=True)
    return {"counts": res, "adaptive": summ, "text": text}


def _energies(ctx: Context) -> dict:
    s, pairs = ctx.setting, ctx.pairs
    prior_name = ctx.prior or s.prior
    prior = catalogue.get(prior_name, ctx.net, steps=ctx.prior_steps)

    def energy(x):
        return np.concatenate([prior.energy(x[i:i + 50]).numpy() for i in range(0, len(x), 50)])
    e_img, e_adv = energy(pairs.clean), energy(pairs.adversarial)
    # the baseline: the clean image plus noise as large as its adversarial perturbation
    e_noise = energy(A.same_norm_noise(pairs.clean, pairs.perturbation_norms(), ctx.seed))

    def row(name, e_other):
        return {"set": name, "pairs": len(e_img), "mean_difference": float(np.mean(e_img - e_other)),
                "adversarial_higher": int(np.sum(e_other > e_img)), "lower_or_equal": int(np.sum(e_other <= e_img))}
    rows = [row(f"ours: adversarials ({prior_name}, {ctx.net}, {ctx.attack})", e_adv),
            row("ours: clean + noise of the adversarial's norm", e_noise),
            {"set": "recorded: 198-pair DeepFool subset (AlexNet, prior not recorded)", **RECORDED_ENERGIES,
             "lower_or_equal": RECORDED_ENERGIES["pairs"] - RECORDED_ENERGIES["adversarial_higher"]}]
    text = report.table(rows, [("set", "set", ""), ("pairs", "pairs", "d"),
                               ("mean E(image) − E(other)", "mean_difference", ".6g"),
                               ("other higher", "adversarial_higher", "d"), ("lower / equal", "lower_or_equal", "d")])
    print(text, flush=True)
    return {"rows": rows, "text": text}


# ---- targeted L-BFGS (§2), its examples under the 12×12 prior (§6.1) -------------------------------------------
@dataclasses.dataclass
class Targeted:
    stems: list[str]
    clean: np.ndarray          # [N, H, W, 3] RGB 0–255
    src: np.ndarray            # clean predictions
    targets: np.ndarray
    examples: np.ndarray       # the attack's result (the image where it failed)
    fooled: np.ndarray         # labels of the examples
    success: np.ndarray        # labelled the target


def make_targeted(ctx: Context) -> Targeted:
    """Each of the setting's first ``targeted_images`` images attacked with :data:`LBFGS` towards its target;
    examples kept as ``lbfgs_targeted/{stem}_t{target}_f{fooled}.npy`` (spec §6.1's names) and reused."""
    s = ctx.setting
    stems, clean, dataset = _images(s, ctx.net, ctx.folder, s.targeted_images)
    src = ctx.clf.labels(clean)
    n = len(src)
    targets = (np.array(s.targets[:n]) if s.targets else (src + 1 + np.arange(n) % 9) % 10).astype(np.int64)
    where = _example_folder(weights.home() / "adversarial" / ctx.net / dataset, "lbfgs", LBFGS, kind="targeted")
    have = A.load_examples(where)
    todo = [i for i in range(n) if stems[i] not in have or have[stems[i]][1] != targets[i]]
    if todo:
        print(f"lbfgs ({LBFGS.describe()}): attacking {len(todo)} images towards their targets; kept in {where}",
              flush=True)
        for i in todo:          # one image at a time, each kept at once (about a minute each at §2's settings)
            t0 = time.perf_counter()
            adv, ok = A.lbfgs_attack(ctx.clf, clean[i:i + 1], src[i:i + 1], LBFGS, targets=targets[i:i + 1])
            fooled = int(ctx.clf.labels(adv)[0])
            print(f"  {stems[i]}: {src[i]} → target {targets[i]}: {'reached' if ok[0] else 'not reached'} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
            if ok[0]:
                A.save_example(where, stems[i], adv[0], targets[i], fooled)
                have[stems[i]] = (adv[0], int(targets[i]), fooled)
    got = [stems[i] in have and have[stems[i]][1] == targets[i] for i in range(n)]
    examples = np.stack([have[stems[i]][0] if got[i] else clean[i] for i in range(n)])
    fooled = ctx.clf.labels(examples)
    return Targeted(stems, clean, src, targets, examples, fooled, np.array(got) & (fooled == targets))


def _lbfgs(ctx: Context) -> dict:
    """Targeted L-BFGS beside the smallest targeted FGSM step (one gradient sign, ε on foolbox 1's 1000-grid)."""
    t = make_targeted(ctx)
    f_adv, f_ok = A.attack(ctx.clf, t.clean, t.src, "fgsm", targets=t.targets)
    l2 = A.l2_norms(t.clean, t.examples, t.success)
    f_l2 = A.l2_norms(t.clean, f_adv, f_ok)
    rows = [{"example": f"{t.stems[i]}_t{t.targets[i]}_f{t.fooled[i]}", "src": int(t.src[i]),
             "target": int(t.targets[i]), "reached": bool(t.success[i]), "l2": float(l2[i]),
             "linf": float(np.abs(t.examples[i] - t.clean[i]).max()), "fgsm_l2": float(f_l2[i])}
            for i in range(len(t.src))]
    both = t.success & f_ok
    summ = {"images": len(rows), "reached": int(t.success.sum()), "fgsm_reached": int(f_ok.sum()),
            "median_l2": float(np.median(l2[t.success])) if t.success.any() else None,
            "median_fgsm_l2": float(np.median(f_l2[f_ok])) if f_ok.any() else None,
            "smaller_than_fgsm": int(np.sum(l2[both] < f_l2[both])), "both_reached": int(both.sum()),
            "setting": dataclasses.asdict(LBFGS)}
    text = (f"targeted {LBFGS.describe()} vs one targeted FGSM step (smallest ε of 1000 reaching the target)\n"
            + report.table(rows, [("example", "example", ""), ("src", "src", "d"), ("target", "target", "d"),
                                  ("reached", "reached", ""), ("‖r‖₂ L-BFGS", "l2", ".1f"),
                                  ("‖r‖∞ L-BFGS", "linf", ".1f"), ("‖r‖₂ FGSM", "fgsm_l2", ".1f")])
            + f"\n\nreached: L-BFGS {summ['reached']} / FGSM {summ['fgsm_reached']} of {len(rows)}; L-BFGS smaller "
            f"where both reached: {summ['smaller_than_fgsm']} of {summ['both_reached']} (the spec records no "
            "attack statistics, only §6.1's energies)")
    print(text, flush=True)
    return {"rows": rows, "summary": summ, "text": text}


def _lbfgs_energies(ctx: Context) -> dict:
    """§6.1: the targeted examples, their images and same-norm noise under the 12×12 image prior."""
    t = make_targeted(ctx)
    name = ctx.prior or ctx.setting.image12_prior
    prior = catalogue.get(name, ctx.net, steps=ctx.prior_steps)
    ok = t.success
    if not ok.any():
        raise ValueError("no targeted L-BFGS example reached its target: nothing to score")

    def energy(x):
        return np.concatenate([prior.energy(x[i:i + 50]).numpy() for i in range(0, len(x), 50)]).astype(np.float64)
    norms = A.l2_norms(t.clean[ok], t.examples[ok], np.ones(int(ok.sum()), bool))
    e_img, e_adv = energy(t.clean[ok]), energy(t.examples[ok])
    e_noise = energy(A.same_norm_noise(t.clean[ok], norms, ctx.seed))
    stems = [f"{s}_t{g}_f{f}" for s, g, f, k in zip(t.stems, t.targets, t.fooled, ok) if k]
    rows = [{"adversarial": a, "energy": float(ea), "original": a.split("_t")[0], "original_energy": float(ei),
             "noise_energy": float(en)} for a, ea, ei, en in zip(stems, e_adv, e_img, e_noise)]
    rec = RECORDED_LBFGS_ENERGIES
    recorded = [{"adversarial": f"recorded: {a}", "energy": ea, "original": o, "original_energy": eo}
                for (a, ea), (o, eo) in zip(rec["adversarial"], rec["original"])]
    summ = {"prior": name, "examples": len(rows), "adversarial_higher": int(np.sum(e_adv > e_img)),
            "noise_higher": int(np.sum(e_noise > e_img)), "adversarial_above_noise": int(np.sum(e_adv > e_noise)),
            "mean_adversarial_minus_image": float(np.mean(e_adv - e_img)),
            "mean_noise_minus_image": float(np.mean(e_noise - e_img))}
    text = (f"energies under '{name}' (12×12 image prior) of the targeted L-BFGS examples, their images and the "
            "images plus noise of the adversarial's norm; §6.1's recorded AlexNet rows below\n"
            + report.table(rows + recorded, [("adversarial", "adversarial", ""), ("energy", "energy", ".4f"),
                                             ("original", "original", ""), ("energy", "original_energy", ".4f"),
                                             ("image + noise", "noise_energy", ".4f")])
            + f"\n\nadversarial above its image: {summ['adversarial_higher']} of {len(rows)}; noise of the same "
            f"norm above its image: {summ['noise_higher']} of {len(rows)}; adversarial above that noise: "
            f"{summ['adversarial_above_noise']} of {len(rows)}")
    print(text, flush=True)
    return {"rows": rows, "summary": summ, "text": text}


# ---- the saliency-map attack as the oblivious attack (§2) ------------------------------------------------------
def _saliency(ctx: Context) -> dict:
    """The saliency-map pairs: elements changed against foolbox 1's bounds, and the full-prior defence (its
    §3 steps) beside same-norm noise."""
    pairs, setting = ctx.pairs, OBLIVIOUS_ATTACKS["saliency"]
    diff = (pairs.adversarial - pairs.clean).reshape(len(pairs.src), -1)
    changed = np.sum(np.abs(diff) > 0, 1)
    bound = setting.max_perturbations_per_pixel * setting.theta * (A.BOUNDS[1] - A.BOUNDS[0])
    prior_name = ctx.prior or ctx.setting.prior
    defence = A.PriorDefence(catalogue.get(prior_name, ctx.net, steps=ctx.prior_steps),
                             steps=ctx.steps or FULL_STEPS, lr=FULL_LR)
    restore = restoration(defence, ctx.clf, pairs.adversarial, pairs.src, ctx.seed)
    summ = {"pairs": len(pairs.src), "elements": int(diff.shape[1]), "median_changed": float(np.median(changed)),
            "max_changed": int(changed.max()), "max_iter": setting.max_iter,
            "max_abs_change": float(np.abs(diff).max()), "change_bound": bound,
            "median_l2": float(np.median(pairs.perturbation_norms())), "restoration": restore}
    text = (f"{setting.describe()}: {len(pairs.src)} pairs; input elements changed median "
            f"{summ['median_changed']:.0f}, "
            f"max {summ['max_changed']} of {summ['elements']} (bound: one per step, {setting.max_iter} steps); "
            f"largest change {summ['max_abs_change']:.1f} (bound {setting.max_perturbations_per_pixel} × θ·255 = "
            f"{bound:.1f}); median ‖r‖₂ {summ['median_l2']:.1f}\n"
            f"{defence.describe()} '{prior_name}': restored {restore['restored']} of {restore['inputs']}, "
            f"same-norm noise {restore['restored_noise']} (the spec records no saliency-map numbers)")
    print(text, flush=True)
    return {"summary": summ, "text": text}


# ---- stability with test-time dropout (§5, §7.2) ----------------------------------------------------------------
def _stability_dropout(ctx: Context) -> dict:
    """The dropout prior's defence with a fresh mask per step, and with dropout off, each beside its noise."""
    name = ctx.setting.dropout_prior
    prior = catalogue.get(name, ctx.net, steps=ctx.prior_steps)
    results, texts = {}, []
    for label, on in (("test-time dropout on", True), ("dropout off", False)):
        defence = A.PriorDefence(prior, steps=ctx.steps or DROPOUT_STEPS, lr=DROPOUT_LR, test_dropout=on)
        st = defence_statistics(defence, ctx.clf, ctx.pairs, legacy=ctx.legacy_log_offset, seed=ctx.seed)
        st.update({"prior": name, "defence": defence.describe(), "lr": DROPOUT_LR, "test_dropout": on})
        results[f"{label}: {name}"] = st
        recorded = {k: v[:st["steps"] + 1] for k, v in RECORDED_DROPOUT_ON.items()} if on else None
        texts.append(f"{label} '{name}', {defence.describe()}, {st['pairs']} pairs\n{_series_table(st, recorded)}")
        print(texts[-1], flush=True)
    return {"series": results, "text": "\n\n".join(texts),
            "plots": {"tradeoff.png": functools.partial(_tradeoff_plot, curves=results, pairs=len(ctx.pairs.src))}}


RUNNERS = {"stability": _stability, "adaptive": _adaptive, "mean_filter": _mean_filter, "energies": _energies,
           "lbfgs": _lbfgs, "lbfgs_energies": _lbfgs_energies, "saliency": _saliency,
           "stability_dropout": _stability_dropout}


@dataclasses.dataclass(frozen=True)
class Flags:
    """The command-line flags of adversarial (main.py builds them from these fields)."""
    net: str = paper.flag("alexnet", "alexnet (the thesis') or digits (trained here)", source="adversarial.md §1")
    experiment: str = paper.flag(DEFAULT_EXPERIMENT, "stability, adaptive, mean_filter, energies, lbfgs, "
                                 "lbfgs_energies, saliency or stability_dropout")
    data: str | None = paper.flag(None, "an image folder (alexnet); default: the embedded photos / digits")
    prior: str | None = paper.flag(None, "the defence's catalogue prior (default: the net's, e.g. full512)",
                                   source="adversarial.md §3")
    steps: int | None = paper.flag(None, "defence steps (default: the experiment's: 30 / 10 / 4)",
                                   source="adversarial.md §3, §4")
    prior_steps: int | None = paper.flag(None, "training steps for priors trained on demand")
    attack: str = paper.flag("deepfool", "the oblivious attack making the dataset (deepfool, fgsm, itfgsm, pgd, "
                             "saliency — the thesis' settings — or deepfool_overshoot0.2 / 0.5 / 1, pgd_eps0.05)",
                             source="adversarial.md §2")
    weights: str = paper.flag("auto", "'auto', 'random' or a .weights.h5 file of the classifier")

    def __post_init__(self):
        if self.experiment not in RUNNERS:
            raise ValueError(f"unknown experiment '{self.experiment}' for adversarial; valid: {', '.join(RUNNERS)}")
        if self.net not in NET_SETTINGS:
            raise ValueError(f"adversarial runs on {' or '.join(NET_SETTINGS)}, not '{self.net}'")
        if self.attack not in OBLIVIOUS_ATTACKS:
            raise ValueError(f"--attack must be one of {', '.join(OBLIVIOUS_ATTACKS)}, got '{self.attack}'")
        if self.prior is not None:
            catalogue.entry(self.prior)


def default_out(flags: Flags) -> str:
    return f"runs/adversarial_{flags.net}_{flags.experiment}"


@dataclasses.dataclass(frozen=True)
class Options(Flags):
    """:class:`Flags` plus what only the library sets: the original's bug, behind an explicit option."""
    legacy_log_offset: bool = paper.flag(False, "the original's stability logging (labels after steps 2 … n + 1)",
                                         source="adversarial.md §10 item 2")


def _context(flags: Flags, ctx: paper.RunContext, clf: A.Classifier) -> Context:
    """The attacked pairs (made or reused) and the flags every experiment reads."""
    setting = NET_SETTINGS[flags.net]
    attack = "saliency" if flags.experiment == "saliency" else flags.attack
    pairs = None
    if flags.experiment not in NO_PAIRS:
        pairs = make_pairs(clf, setting, flags.net, flags.data, setting.pairs, attack)
        if len(pairs.src) == 0:
            raise ValueError("no adversarial pairs: every attack failed")
        print(f"{len(pairs.src)} (clean, {attack}) pairs; median L2 perturbation "
              f"{float(np.median(pairs.perturbation_norms())):.2f}", flush=True)
    return Context(net=flags.net, setting=setting, clf=clf, pairs=pairs, attack=attack, prior=flags.prior,
                   steps=flags.steps, prior_steps=flags.prior_steps, seed=ctx.seed, out=ctx.out, folder=flags.data,
                   dataset="embedded" if not flags.data else Path(flags.data).name,
                   legacy_log_offset=isinstance(flags, Options) and flags.legacy_log_offset)


def run(flags: Flags, ctx: paper.RunContext) -> paper.Result:
    """Makes (or reuses) the oblivious pairs, runs ``flags.experiment`` on them and writes its table, plots and
    metrics into ``ctx.out`` at the end. ``flags`` may be :class:`Options` (the original's stability logging)."""
    out_path = common.claim_output(ctx.out)
    clf = _classifier(NET_SETTINGS[flags.net], flags.net, flags.weights, ctx.seed)
    t0 = time.perf_counter()
    ex = _context(flags, ctx, clf)
    out_path.mkdir(parents=True, exist_ok=True)
    outcome = RUNNERS[flags.experiment](ex)
    weights_src = nets.weights_source(clf.model)
    pairs = {} if ex.pairs is None else {
        "attack": ex.attack, "attack_setting": dataclasses.asdict(OBLIVIOUS_ATTACKS[ex.attack]),
        "pairs": len(ex.pairs.src), "median_perturbation": float(np.median(ex.pairs.perturbation_norms()))}
    summary = {"experiment": flags.experiment, "net": flags.net, "weights": weights_src, **pairs,
               "seconds": time.perf_counter() - t0,
               **{k: v for k, v in outcome.items() if k not in ("text", "plots")}}
    result = paper.Result(title=f"adversarial {flags.experiment} on {flags.net} (weights: {weights_src})",
                          metrics=summary, table=outcome["text"], plots=outcome.get("plots", {}))
    result.write(out_path)
    print(f"{summary['seconds']:.0f} s; outputs in {out_path} (table.txt, metrics.json"
          f"{''.join(', ' + k for k in outcome.get('plots', {}))})", flush=True)
    return result
