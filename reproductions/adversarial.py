"""Harder's thesis, last chapter: adversarial restoration with learned image priors (spec ``adversarial.md``;
``frhrdr/deep_restoration`` ``advex_experiments.py``, ``utils/mean_filter_benchmark.py``).

Experiments (``--experiment``):
- ``stability`` (default): for every (clean, oblivious adversarial) pair, the label after every step of Adam on
  the prior energy alone (full prior: lr 0.6, 30 steps; dropout prior, dropout off: 10 steps), recorded after
  step 1 too (the original's off-by-one: ``run(legacy_log_offset=True)``); the spec's statistics and the trade-off
  curve.
- ``adaptive``: DeepFool (100 steps, explicit) against classifier ∘ defence (4 Adam steps at lr 0.6, gradients
  through the unrolled descent); oblivious vs adaptive perturbation norms and ``read_adaptive_log``'s summary;
  the adaptive examples under another prior (transfer); the dropout ensemble (10 fixed masks, mean log-softmax)
  attacked under "source probability below p" with p passed.
- ``mean_filter``: the weighted mean-filter baseline over w = 0, 0.1, …, 1 for k = 2 and 3, and an adaptive
  DeepFool against the w = 0.2, 2×2 filter.
- ``energies``: the prior energy of each clean image and of its adversarial (spec §6.2).

Networks: ``alexnet`` (the thesis'; labels from ``fc8``; converted weights from the store, else seeded random —
then the labels mean little) on an image folder (``--data``) or the embedded photos, and ``digits`` — a small CNN
tfrestore trains here in about a minute on the embedded digits, with image priors trained on its digit patches,
so the experiments give meaningful restored / preserved counts on this machine. Adversarial examples are kept in
``$TFRESTORE_HOME/adversarial/<net>/<dataset>/<attack>_oblivious/{stem}_t{src}_f{fooled}.npy`` and reused.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrestore import adversarial as A
from tfrestore import classifier, data, nets, report, weights
from tfrestore.priors import catalogue

DESCRIPTION = "thesis adversarial restoration: prior-descent defence, stability, adaptive attacks, mean filter"
EXPERIMENTS = {
    "stability": "labels after every defence step for clean / adversarial pairs; restored vs preserved",
    "adaptive": "DeepFool through the defence: perturbation norms oblivious vs adaptive; transfer; ensemble",
    "mean_filter": "weighted mean-filter baseline over w for k = 2, 3, and an adaptive attack at w = 0.2",
    "energies": "prior energy of clean images vs their adversarials",
}
DEFAULT_EXPERIMENT = "stability"

# spec §3 / §4 / §5
FULL_LR, FULL_STEPS = 0.6, 30
DROPOUT_STEPS = 10
ADAPTIVE_STEPS, ADAPTIVE_LR = 4, 0.6          # "5 steps by default, 4 in the notes"
ENSEMBLE_MEMBERS, ENSEMBLE_TARGET_PROB = 10, 0.5
MEAN_FILTER_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))
MEAN_FILTER_ADAPTIVE = (2, 0.2)


@dataclasses.dataclass(frozen=True)
class NetSetting:
    """Per network: the priors (full, transfer, dropout) and how many pairs each experiment uses."""
    prior: str
    transfer_prior: str
    dropout_prior: str
    pairs: int                 # clean / adversarial pairs (at most; a folder may hold fewer images)
    adaptive_pairs: int
    ensemble_pairs: int


NET_SETTINGS = {
    # the thesis: full512; transfer to an image prior with log-cosh experts (the thesis used the conv1/lin
    # feature prior, which needs a partial-network defence not built here); dropout1024 for the ensemble
    "alexnet": NetSetting("full512", "full512logistic", "dropout1024", pairs=1069, adaptive_pairs=1069,
                          ensemble_pairs=50),
    "digits": NetSetting("digits_full128", "digits_logistic128", "digits_dropout128", pairs=200,
                         adaptive_pairs=50, ensemble_pairs=10),
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
RECORDED_ENERGIES = {"pairs": 198, "mean_difference": -0.00403496, "adversarial_higher": 147}


@dataclasses.dataclass
class Pairs:
    stems: list[str]
    clean: np.ndarray          # [P, H, W, 3] RGB 0–255
    adversarial: np.ndarray
    src: np.ndarray            # clean predictions
    fooled: np.ndarray         # labels of the adversarials


def _images(net: str, folder: str | None, limit: int) -> tuple[list[str], np.ndarray, str]:
    if net == "digits":
        if folder:
            raise ValueError("--net=digits uses the embedded digits; --data is for image folders (alexnet)")
        x, _, desc = classifier.digit_images(None, "val")
        return [f"digit{i:04d}" for i in range(min(limit, len(x)))], x[:limit], "embedded"
    size = nets.input_size(net)
    srcs = data.image_folder(folder) if folder else data.sample_image_names()
    srcs = list(srcs)[:limit]
    imgs = np.stack([data.load_image(s, size).astype(np.float32) for s in srcs])
    return [Path(str(s)).stem for s in srcs], imgs, Path(folder).name if folder else "embedded"


def _classifier(net: str, weights_flag: str, seed: int) -> A.Classifier:
    if net == "digits":
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


def make_pairs(clf: A.Classifier, net: str, folder: str | None, limit: int, attack_kind: str) -> Pairs:
    """Oblivious untargeted examples against the clean prediction, made once and reused from the dataset folder."""
    stems, clean, dataset = _images(net, folder, limit)
    src = clf.labels(clean)
    where = A.example_folder(weights.home() / "adversarial" / net / dataset, attack_kind)
    have = A.load_examples(where) if where.exists() else {}
    todo = [i for i, s in enumerate(stems) if s not in have]
    if todo:
        print(f"{attack_kind}: attacking {len(todo)} images (the others are reused from {where})", flush=True)
        t0 = time.perf_counter()
        for at in range(0, len(todo), 50):
            idx = todo[at:at + 50]
            adv, ok = A.attack(clf, clean[idx], src[idx], attack_kind)
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
    pairs: Pairs
    prior: str | None          # --prior (default: the setting's)
    steps: int | None          # --steps: defence steps (default: the experiment's)
    prior_steps: int | None
    seed: int
    out: Path
    dataset: str               # the example folder's dataset name
    legacy_log_offset: bool = False   # record labels after steps 2 … n + 1 (the original's bug 2)


def _histories(defence: A.PriorDefence, clf, x: np.ndarray, batch: int = 50, legacy: bool = False) -> np.ndarray:
    """[P, n + 1] labels before and after each defence step (legacy: after steps 2 … n + 1)."""
    if legacy:
        defence = dataclasses.replace(defence, steps=defence.steps + 1)
    out = []
    for i in range(0, len(x), batch):
        _, labels = defence.labels_per_step(tf.constant(x[i:i + batch]), clf)
        out.append(np.asarray(labels).T)
    h = np.concatenate(out)
    return np.concatenate([h[:, :1], h[:, 2:]], 1) if legacy else h


def _tradeoff_plot(path: Path, curves: dict[str, dict], pairs: int):
    with report.plot(path) as (fig, ax):
        for name, st in curves.items():
            ax.plot(np.array(st["preserved"]) / st["pairs"], np.array(st["restored"]) / st["pairs"], "o-", ms=3,
                    label=name)
        rec = RECORDED_FULL
        ax.plot(np.array(rec["preserved"]) / 1069, np.array(rec["restored"]) / 1069, "k--", lw=1,
                label="recorded: full prior, AlexNet (1069)")
        ax.set_xlabel("clean images keeping their label (preserved)")
        ax.set_ylabel("adversarials back to the source label (restored)")
        ax.set_title(f"trade-off over defence steps ({pairs} pairs)", fontsize=9)
        ax.legend(fontsize=7)


def _series_table(st: dict, recorded: dict | None = None) -> str:
    """The spec's layout: one row per series, one column per step."""
    n = st["steps"]
    rows = [("changes in images", st["changes_images"], 1), ("first changes in images", st["first_changes_images"], 1),
            ("changes in adversarials", st["changes_adversarials"], 1),
            ("first changes in adversarials", st["first_changes_adversarials"], 1),
            ("first return to the source label", st["first_returns"], 1),
            ("preserved (incl. start)", st["preserved"], 0), ("restored (incl. start)", st["restored"], 0)]
    if recorded:
        rows += [(f"recorded {k} (AlexNet, 1069)", v, 0) for k, v in recorded.items()]
    cols = [("series", "series", "")] + [(str(t), f"s{t}", "d") for t in range(0, n + 1)]
    table_rows = [{"series": name, **{f"s{t + start}": v for t, v in enumerate(vals)}} for name, vals, start in rows]
    return report.table(table_rows, cols)


def _stability(ctx: Context) -> dict:
    s, clf, pairs = ctx.setting, ctx.clf, ctx.pairs
    results, texts = {}, []
    for name, prior_name, steps in (("full prior", ctx.prior or s.prior, ctx.steps or FULL_STEPS),
                                    ("dropout prior (dropout off)", s.dropout_prior, ctx.steps or DROPOUT_STEPS)):
        prior = catalogue.get(prior_name, ctx.net, steps=ctx.prior_steps)
        defence = A.PriorDefence(prior, steps=steps, lr=FULL_LR)
        t0 = time.perf_counter()
        st = A.stability_statistics(_histories(defence, clf, pairs.clean, legacy=ctx.legacy_log_offset),
                                    _histories(defence, clf, pairs.adversarial, legacy=ctx.legacy_log_offset),
                                    pairs.src)
        st.update({"prior": prior_name, "defence_seconds": time.perf_counter() - t0, "defence": defence.describe()})
        results[f"{name}: {prior_name}"] = st
        text = _series_table(st, RECORDED_FULL if name == "full prior" else None)
        texts.append(f"{name} '{prior_name}', {defence.describe()}, {st['pairs']} pairs\n{text}")
        print(texts[-1], flush=True)
    _tradeoff_plot(ctx.out / "tradeoff.png", results, len(pairs.src))
    return {"series": results, "text": "\n\n".join(texts)}


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
            adv, ok = A.attack(model, pairs.clean[sub], pairs.src[sub], "deepfool", steps=A.ADAPTIVE_DEEPFOOL_STEPS)
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
    text = _format_norm_rows(rows)
    # transfer: the adaptive examples under a defence with another prior, and under their own
    found = np.isfinite(norms) & (norms > 0)
    other = catalogue.get(s.transfer_prior, net, steps=ctx.prior_steps)
    lab_own = np.argmax(np.asarray(defended(adv[found])), -1) if found.any() else np.array([])
    lab_other = (np.argmax(np.asarray(A.Defended(clf, dataclasses.replace(defence, prior=other))(adv[found])), -1)
                 if found.any() else np.array([]))
    src_found = pairs.src[attack_idx][found]
    transfer = {"examples": int(found.sum()), "fooling_own_defence": int(np.sum(lab_own != src_found)),
                "restored_by_other_prior": int(np.sum(lab_other == src_found)), "other_prior": s.transfer_prior}
    # the dropout ensemble with its target probability passed
    dprior = catalogue.get(s.dropout_prior, net, steps=ctx.prior_steps)
    ens = A.Ensemble(clf, A.PriorDefence(dprior, steps=ctx.steps or ADAPTIVE_STEPS, lr=ADAPTIVE_LR),
                     A.ensemble_masks(dprior, ENSEMBLE_MEMBERS, ctx.seed))
    eidx = idx[:s.ensemble_pairs]
    crit = A.SourceProbabilityBelow(pairs.src[eidx], ENSEMBLE_TARGET_PROB).criterion
    t1 = time.perf_counter()
    eadv, eok = A.attack(ens, pairs.clean[eidx], pairs.src[eidx], "deepfool", steps=A.ADAPTIVE_DEEPFOOL_STEPS,
                         criterion=crit)
    ens_norms = A.l2_norms(pairs.clean[eidx], eadv, eok)
    ens_obl = A.l2_norms(pairs.clean[eidx], pairs.adversarial[eidx], np.ones(len(eidx), bool))
    ens_summ = A.adaptive_summary(ens_obl, ens_norms)
    ens_text = _format_norm_rows([_norm_row(f"ours: {s.dropout_prior} ensemble of {ENSEMBLE_MEMBERS}, "
                                            f"p(src) < {ENSEMBLE_TARGET_PROB}", ens_summ)])
    text_all = (f"adaptive DeepFool ({A.ADAPTIVE_DEEPFOOL_STEPS} steps) through {defence.describe()} "
                f"'{prior_name}' ({seconds:.0f} s)\n{text}\n\ntransfer of the adaptive examples: "
                f"{transfer['fooling_own_defence']} of {transfer['examples']} fool their own defence; "
                f"{transfer['restored_by_other_prior']} are restored by '{s.transfer_prior}'\n\n"
                f"dropout ensemble ({time.perf_counter() - t1:.0f} s)\n{ens_text}")
    print(text_all, flush=True)
    _histogram(ctx.out / "norms.png", summ, f"perturbation norms, {prior_name}")
    return {"summary": summ, "transfer": transfer, "ensemble": ens_summ, "text": text_all, "attack_seconds": seconds}


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


def _filter_counts(clf, pairs_clean, pairs_adv, src, k) -> dict:
    out = {"retained": [], "restored": [], "same": []}
    for w in MEAN_FILTER_WEIGHTS:
        li = clf.labels(np.asarray(A.mean_filter(pairs_clean, k, w)))
        la = clf.labels(np.asarray(A.mean_filter(pairs_adv, k, w)))
        out["retained"].append(int(np.sum(li == src)))
        out["restored"].append(int(np.sum(la == src)))
        out["same"].append(int(np.sum(li == la)))
    return out


def _mean_filter(ctx: Context) -> dict:
    clf, pairs = ctx.clf, ctx.pairs
    res, rows = {}, []
    for k in (2, 3):
        res[f"{k}x{k}"] = c = _filter_counts(clf, pairs.clean, pairs.adversarial, pairs.src, k)
        rows += [{"setting": f"{k}×{k}, oblivious", "series": s, **{f"w{w}": v for w, v in zip(MEAN_FILTER_WEIGHTS, c[s])}}
                 for s in ("retained", "restored", "same")]
    k, w = MEAN_FILTER_ADAPTIVE
    filt = A.Defended(ctx.clf, A.MeanFilter(k, w))
    idx = np.arange(min(ctx.setting.adaptive_pairs, len(pairs.src)))
    invariant = np.argmax(np.asarray(filt(pairs.clean[idx])), -1) == pairs.src[idx]
    aidx = idx[invariant]
    adv, norms = _adaptive_attack(filt, pairs, aidx, weights.home() / "adversarial" / ctx.net / ctx.dataset
                                  / f"deepfool_adaptive_meanfilter{k}_{w}")
    found = np.isfinite(norms) & (norms > 0)
    res["adaptive_2x2_w0.2"] = c = _filter_counts(clf, pairs.clean[aidx][found], adv[found], pairs.src[aidx][found], k)
    rows += [{"setting": f"{k}×{k}, adaptive at w={w}", "series": s,
              **{f"w{ww}": v for ww, v in zip(MEAN_FILTER_WEIGHTS, c[s])}} for s in ("retained", "restored", "same")]
    rows += [{"setting": "recorded 2×2 (AlexNet, 1069)", "series": s,
              **{f"w{ww}": v for ww, v in zip(MEAN_FILTER_WEIGHTS, vals)}} for s, vals in RECORDED_MEAN_FILTER_2x2.items()]
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
    e_img = np.concatenate([prior.energy(pairs.clean[i:i + 50]).numpy() for i in range(0, len(pairs.src), 50)])
    e_adv = np.concatenate([prior.energy(pairs.adversarial[i:i + 50]).numpy()
                            for i in range(0, len(pairs.src), 50)])
    rows = [{"set": f"ours ({prior_name}, {ctx.net})", "pairs": len(e_img),
             "mean_difference": float(np.mean(e_img - e_adv)), "adversarial_higher": int(np.sum(e_adv > e_img)),
             "lower_or_equal": int(np.sum(e_adv <= e_img))},
            {"set": "recorded (12×12 prior, AlexNet DeepFool)", **RECORDED_ENERGIES,
             "lower_or_equal": RECORDED_ENERGIES["pairs"] - RECORDED_ENERGIES["adversarial_higher"]}]
    text = report.table(rows, [("set", "set", ""), ("pairs", "pairs", "d"),
                               ("mean E(image) − E(adv.)", "mean_difference", ".6g"),
                               ("adv. higher", "adversarial_higher", "d"), ("lower / equal", "lower_or_equal", "d")])
    print(text, flush=True)
    return {"rows": rows, "text": text}


RUNNERS = {"stability": _stability, "adaptive": _adaptive, "mean_filter": _mean_filter, "energies": _energies}


def run(*, net: str = "alexnet", experiment: str = DEFAULT_EXPERIMENT, data: str | None = None,
        prior: str | None = None, steps: int | None = None, prior_steps: int | None = None,
        attack: str = "deepfool", weights: str = "auto", out: str | None = None, seed: int = 0,
        legacy_log_offset: bool = False) -> dict:
    """``steps``: defence steps (default: the experiment's); ``prior_steps``: training steps for priors trained on
    demand; ``attack``: the oblivious attack making the dataset (deepfool, fgsm, itfgsm, pgd);
    ``legacy_log_offset``: the original's stability logging (labels after steps 2 … n + 1, spec §10 item 2)."""
    if experiment not in RUNNERS:
        raise ValueError(f"unknown experiment '{experiment}' for adversarial; valid: {', '.join(RUNNERS)}")
    if net not in NET_SETTINGS:
        raise ValueError(f"adversarial runs on {' or '.join(NET_SETTINGS)}, not '{net}'")
    if attack not in A.ATTACKS or attack == "targeted":
        raise ValueError(f"--attack must be one of deepfool, fgsm, itfgsm, pgd, got '{attack}'")
    if prior is not None:
        catalogue.entry(prior)
    setting = NET_SETTINGS[net]
    out_path = Path(out or f"runs/adversarial_{net}_{experiment}")
    clf = _classifier(net, weights, seed)
    t0 = time.perf_counter()
    pairs = make_pairs(clf, net, data, setting.pairs, attack)
    if len(pairs.src) == 0:
        raise ValueError("no adversarial pairs: every attack failed")
    print(f"{len(pairs.src)} (clean, {attack}) pairs; median L2 perturbation "
          f"{np.median(A.l2_norms(pairs.clean, pairs.adversarial, np.ones(len(pairs.src), bool))):.2f}", flush=True)
    ctx = Context(net=net, setting=setting, clf=clf, pairs=pairs, prior=prior, steps=steps, prior_steps=prior_steps,
                  seed=seed, out=out_path, dataset="embedded" if not data else Path(data).name,
                  legacy_log_offset=legacy_log_offset)
    out_path.mkdir(parents=True, exist_ok=True)
    result = RUNNERS[experiment](ctx)
    weights_src = nets.weights_source(clf.model)
    summary = {"experiment": experiment, "net": net, "weights": weights_src, "attack": attack,
               "pairs": len(pairs.src), "seconds": time.perf_counter() - t0,
               **{k: v for k, v in result.items() if k != "text"}}
    report.write(out_path, title=f"adversarial {experiment} on {net} (weights: {weights_src})", metrics=summary,
                 table=result["text"])
    print(f"{summary['seconds']:.0f} s; outputs in {out_path} (table.txt, metrics.json"
          f"{', tradeoff.png' if experiment == 'stability' else ''})", flush=True)
    return summary
