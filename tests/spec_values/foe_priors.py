"""Harder's thesis patch priors and their inversions (``../shared/spec/patch_priors.md``; M&V 2016's thesis tables
in ``mv2016.md`` §9)."""
from spec_values import Row

P = "foe_priors"
TF = "test_priors_foe.py::"
TP = "test_priors.py::"
SCHEDULES = TF + "test_image_rec_schedules_and_result_steps_are_the_thesis"
TINY_REC = TF + "test_train_a_prior_then_invert_with_it"
FEATMAP = TF + "test_featmap_inv_recovers_conv1_from_conv2"
LEGACY = TF + "test_legacy_c2_to_c1_minimises_the_dot_normalised_mse"
FS = "test_feature_stats.py::"
FS_RUN = FS + "test_feature_stats_run_writes_its_outputs_and_numpys_channel_sdevs"
TRAINS = "test_priors_catalogue.py::test_every_catalogue_prior_trains_at_a_small_size"
TL = "test_priors_legacy.py::"
LEGACY_TRAINS = TL + "test_legacy_entries_train_at_a_small_size"
LBFGS = TL + "test_lbfgs_minimises_a_prior_regularised_inversion_as_scipy_does"
LEGACY_5X5 = "[e for n, e in tfrestore.priors.catalogue.CATALOGUE.items() if n in tfrestore.priors.catalogue.LEGACY " \
    "and e.config.patch == 5]"

ALEX_ORDER = "tfrestore.nets.spec('alexnet').matconvnet_order"
VGG_ORDER = "tfrestore.nets.spec('vgg16').matconvnet_order"
VGG_RESULT_LAYERS = ["pool1", "pool2", "pool3", "pool4", "pool5", "fc6", "fc7", "fc8"]


def _entry(name: str) -> str:
    """An expression for a catalogue entry's (patch, channels, K, n_white, expert, mean, sdev, whitening, kind,
    dropout in training, dropout at test, weight, tap)."""
    return ("(lambda e, c: (c.patch, c.channels, c.components, c.n_white, c.expert, c.mean_mode, c.sdev_mode, "
            "c.whiten_mode, c.kind, c.dropout_train, c.dropout_test, e.weight, e.tap))"
            f"(tfrestore.priors.catalogue.entry('{name}'), tfrestore.priors.catalogue.entry('{name}').config)")


def _training(name: str) -> str:
    return ("(lambda t: (t.batch, t.steps, t.breakpoints, t.grad_clip))"
            f"(tfrestore.priors.catalogue.entry('{name}').training)")


IMAGE_BREAKPOINTS = ((0, 1.0), (10000, 0.1), (13000, 3e-2), (15000, 1e-2), (17000, 3e-3), (19000, 1e-3),
                     (21000, 1e-4), (23000, 3e-5))
FEATURE_BREAKPOINTS = ((0, 1.0), (10000, 0.1), (12000, 3e-2), (13000, 1e-2), (14500, 3e-3), (15000, 1e-3),
                       (16000, 1e-4), (18000, 3e-4), (19000, 1e-5))
# conv1/lin: the spec's entries sorted by iteration (§9 item 7: the mistyped 85000 no longer blocks the later ones)
CONV1_BREAKPOINTS = ((0, 1.0), (6000, 0.1), (6500, 3e-2), (7000, 1e-2), (7500, 3e-3), (8000, 1e-3), (12000, 1e-4),
                     (13000, 1e-5), (85000, 1e-4))

ROWS = [
    Row(P, "*", "networks", ("alexnet", "vgg16"), "patch_priors.md §7.1", "foe_priors.NETS"),
    # ---- image reconstruction (§7.1) ----
    Row(P, "image_rec", "Adam lr, AlexNet (constant)", 1.0, "patch_priors.md §7.1",
        "foe_priors.IMAGE_REC['alexnet'].lr", TINY_REC),
    Row(P, "image_rec", "Adam lr, VGG16 (constant)", 0.3, "patch_priors.md §7.1", "foe_priors.IMAGE_REC['vgg16'].lr"),
    Row(P, "image_rec", "AlexNet steps: 5,000 MSE + 5,000 with the prior", (5000, 5000), "patch_priors.md §7.1",
        "foe_priors.image_rec_plan('alexnet', ['conv1']).phase_steps", SCHEDULES),
    Row(P, "image_rec", "VGG16 steps: 10,000 MSE + 15,000 with the prior", (10000, 15000), "patch_priors.md §7.1",
        "foe_priors.image_rec_plan('vgg16', ['pool1']).phase_steps", SCHEDULES),
    Row(P, "image_rec", "AlexNet jitter off at steps 3,200 and 8,200 (jitterations 3,200 per phase)", (3200, 8200),
        "patch_priors.md §7.1", "(lambda p: (p.jitter_steps[0], p.phase_steps[0] + p.jitter_steps[1]))"
        "(foe_priors.image_rec_plan('alexnet', ['conv1']))", SCHEDULES),
    Row(P, "image_rec", "VGG16 jitter off at 6,900 and 10,000 + 6,900 (jitterations 6,900)", (6900, 16900),
        "patch_priors.md §7.1", "(lambda p: (p.jitter_steps[0], p.phase_steps[0] + p.jitter_steps[1]))"
        "(foe_priors.image_rec_plan('vgg16', ['pool1']))", SCHEDULES),
    Row(P, "image_rec", "VGG16 result steps: pools 25k, fc6 21k, fc7 and fc8 23k (MSE phase counted)",
        dict(zip(VGG_RESULT_LAYERS, [25000] * 5 + [21000, 23000, 23000])), "patch_priors.md §7.1, §8.2",
        f"dict(zip({VGG_RESULT_LAYERS!r}, foe_priors.image_rec_plan('vgg16', {VGG_RESULT_LAYERS!r}).result_steps))",
        SCHEDULES + ", " + TF + "test_result_steps_keep_each_problems_iterate_at_its_own_step"),
    Row(P, "image_rec", "AlexNet result: rec_10000 (the last step) for every layer", [10000] * 8,
        "patch_priors.md §7.1",
        "foe_priors.image_rec_plan('alexnet', foe_priors.DEFAULT_LAYERS['alexnet']).result_steps", TINY_REC),
    Row(P, "image_rec", "scored layers, AlexNet: conv1–5/lin, fc6–8/lin",
        ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"), "patch_priors.md §7.1",
        "foe_priors.DEFAULT_LAYERS['alexnet']"),
    Row(P, "image_rec", "scored layers, VGG16: pool1–5, fc6/7/8 lin", tuple(VGG_RESULT_LAYERS), "patch_priors.md §7.1",
        "foe_priors.DEFAULT_LAYERS['vgg16']"),
    Row(P, "image_rec", "AlexNet prior weight by layer (conv1/lin 1e-6; conv1/relu 1e-4; lrn1 3e-4; pool1 1e-3; "
        "conv2, relu2, lrn2 3e-3; pool2 1e-3; conv3/lin, relu 1e-3; conv4/lin onward 1e-4)",
        [1e-6, 1e-4, 3e-4, 1e-3, 3e-3, 3e-3, 3e-3, 1e-3, 1e-3, 1e-3] + [1e-4] * 11, "patch_priors.md §7.1",
        f"[foe_priors.prior_weight('alexnet', l) for l in {ALEX_ORDER}]", TINY_REC),
    Row(P, "image_rec", "AlexNet jitter t by layer (recorded 0, 0, 1, 2, 2, 2, 2, 4 …; 4 presumed through "
        "conv5/relu; 8 from pool5)", [0, 0, 1, 2, 2, 2, 2] + [4] * 7 + [8] * 7, "patch_priors.md §7.1",
        f"[foe_priors.jitter_t('alexnet', l) for l in {ALEX_ORDER}]"),
    Row(P, "image_rec", "VGG16 prior weight by layer (1e-4; pool1–pool5 1e-3)",
        [1e-3 if l.startswith("pool") else 1e-4 for l in
         ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"] + ["conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2"]
         + [f"{k}{b}_{i}" for b in (3,) for i in (1, 2, 3) for k in ("conv", "relu")] + ["pool3"]
         + [f"{k}{b}_{i}" for b in (4,) for i in (1, 2, 3) for k in ("conv", "relu")] + ["pool4"]
         + [f"{k}{b}_{i}" for b in (5,) for i in (1, 2, 3) for k in ("conv", "relu")] + ["pool5"]
         + ["fc6", "relu6", "fc7", "relu7", "fc8", "prob"]], "patch_priors.md §7.1",
        f"[foe_priors.prior_weight('vgg16', l) for l in {VGG_ORDER}]"),
    Row(P, "image_rec", "VGG16 jitter t (mv2016 thesis table: 0 to conv2_2/relu; 1 pool2…conv3_3/relu; 2 pool3…"
        "conv4_3/relu; 4 pool4…conv5_3/relu; 8 from pool5)", [0] * 9 + [1] * 7 + [2] * 7 + [4] * 7 + [8] * 7,
        "patch_priors.md §7.1; mv2016.md §9.3", f"[foe_priors.jitter_t('vgg16', l) for l in {VGG_ORDER}]"),
    Row(P, "image_rec", "data term: MSELoss (mean squared error, weight 1)", {"normalise": False, "mean": True},
        "patch_priors.md §7.1; mv2016.md §9.1", "foe_priors.DATA_TERMS[foe_priors.IMAGE_REC['alexnet'].data_term]",
        TINY_REC),
    Row(P, "image_rec", "initial image N(114.8, 1.1) clipped to [100, 155]", (114.8, 1.1, (100.0, 155.0)),
        "patch_priors.md §7.1; mv2016.md §9.2", "(foe_priors.INIT_MEAN, foe_priors.INIT_STD, foe_priors.INIT_RANGE)",
        SCHEDULES),
    Row(P, "image_rec", "default prior", "full512", "patch_priors.md §7.1",
        "foe_priors.EXPERIMENT_TABLE['image_rec'].prior", TINY_REC),
    Row(P, "image_rec", "recorded full512 AlexNet (VGG score, MSE, NMSE), subset10 means",
        {"conv1": (9.5155e-6, 2.7856, 2.2975e-4), "conv2": (0.21567, 543.155, 0.044630),
         "conv3": (0.37127, 923.226, 0.073392), "conv4": (0.43931, 1334.41, 0.10048),
         "conv5": (0.59910, 2317.36, 0.17614), "fc6": (0.84566, 4882.86, 0.40931),
         "fc7": (0.93710, 5157.54, 0.43728), "fc8": (0.95888, 5241.95, 0.44052)},
        "patch_priors.md §8.1", "foe_priors.RECORDED_FULL512['alexnet']", TINY_REC),
    Row(P, "image_rec", "recorded thesis M&V 2016 VGG scores, conv1–5/lin",
        {"conv1": 0.1800, "conv2": 0.4450, "conv3": 0.5295, "conv4": 0.6470, "conv5": 0.7292},
        "patch_priors.md §8.1; mv2016.md §9.7", "foe_priors.RECORDED_MV2016_VGG['alexnet']"),
    # ---- the thesis engine, shared by the inversions ----
    Row(P, "*", "gradient clip by value", 1e4, "patch_priors.md §7.1, §7.2", "foe_priors.thesis_adam().clip_value"),
    Row(P, "*", "Adam ε (TF1's, inside the bias correction)", (1e-8, "tf1"), "patch_priors.md §4.5; mv2016.md §9.2",
        "(foe_priors.thesis_adam().epsilon, foe_priors.thesis_adam().epsilon_form)",
        "test_engine.py::test_adam_update_two_steps"),
    # ---- feature-map inversion (§7.2) ----
    Row(P, "featmap_inv", "conv1/lin optimised, matched through conv2/lin", ("conv2", "conv1"),
        "patch_priors.md §7.2", "(foe_priors.FEATMAP_INV.match, foe_priors.FEATMAP_INV.target)", FEATMAP),
    Row(P, "featmap_inv", "10,000 MSE steps, then 10,000 with the prior", ((10000, 10000), 1), "patch_priors.md §7.2",
        "(foe_priors.FEATMAP_INV.phases, foe_priors.FEATMAP_INV.prior_from)", FEATMAP),
    Row(P, "featmap_inv", "Adam lr", 1.0, "patch_priors.md §7.2", "foe_priors.FEATMAP_INV.lr", FEATMAP),
    Row(P, "featmap_inv", "initial map N(0, 0.1)", 0.1, "patch_priors.md §7.2; mv2016.md §9.2",
        "foe_priors.FEATMAP_INV.init_std", FEATMAP),
    Row(P, "featmap_inv", "data term: MSE", "mse", "patch_priors.md §7.2", "foe_priors.FEATMAP_INV.data_term"),
    Row(P, "featmap_inv", "default prior fullc1l6000 (weight 1e-5)", ("fullc1l6000", 1e-5), "patch_priors.md §7.2, §6",
        "(foe_priors.EXPERIMENT_TABLE['featmap_inv'].prior, tfrestore.priors.catalogue.entry('fullc1l6000').weight)",
        FEATMAP),
    # ---- legacy conv2/lin → conv1/lin (§7.3) ----
    Row(P, "legacy_c2_to_c1", "NormedMSE Σ(t − r)²/Σ(t·r) on conv2/lin, conv1/lin optimised",
        ("normed_dot", "conv2", "conv1"), "patch_priors.md §7.3; mv2016.md §9.1",
        "(foe_priors.LEGACY.data_term, foe_priors.LEGACY.match, foe_priors.LEGACY.target)", LEGACY),
    Row(P, "legacy_c2_to_c1", "Adam lr 0.3: 500 steps, then a restart for 19,500", (0.3, (500, 19500)),
        "patch_priors.md §7.3", "(foe_priors.LEGACY.lr, foe_priors.LEGACY.phases)", LEGACY),
    Row(P, "legacy_c2_to_c1", "regulariser weights: TV β2 1e-9, slim 3×3 (K 2000) 1e-9, channel prior "
        "(catalogue 1e-4), 8×8 full (K 6000) 1e-10",
        {"tv_prior": 1e-9, "slimc1l2000": 1e-9, "chanpriorc1l150": 1e-4, "fullc1l6000": 1e-10},
        "patch_priors.md §7.3, §6",
        "{n: float(foe_priors._legacy_weights(n).max()) for n in ('tv_prior', 'slimc1l2000', 'chanpriorc1l150', "
        "'fullc1l6000')}", LEGACY),
    # ---- the catalogue (§6) and training (§5) ----
    Row(P, "train", "full512", (8, 3, 512, 191, "student", "gc", "gc", "pca", "full", False, False, 1e-5, "image"),
        "patch_priors.md §6, §5.1", _entry("full512"), TRAINS),
    Row(P, "train", "full512logistic",
        (8, 3, 512, 191, "logistic", "gc", "gc", "pca", "full", False, False, 1e-5, "image"),
        "patch_priors.md §6", _entry("full512logistic"), TRAINS),
    Row(P, "train", "dropout1024 (dropout in training and at test)",
        (8, 3, 1024, 191, "student", "gc", "gc", "pca", "dropout", True, True, 1e-5, "image"),
        "patch_priors.md §6", _entry("dropout1024"), TRAINS),
    Row(P, "train", "dropout_nodrop_train512 (no dropout in training, off at test)",
        (8, 3, 512, 191, "student", "gc", "gc", "pca", "dropout", False, False, 1e-5, "image"),
        "patch_priors.md §6", _entry("dropout_nodrop_train512"), TRAINS),
    Row(P, "train", "dropout_nodrop_train1024 (no dropout in training, on at test)",
        (8, 3, 1024, 191, "student", "gc", "gc", "pca", "dropout", False, True, 1e-5, "image"),
        "patch_priors.md §6", _entry("dropout_nodrop_train1024"), TRAINS),
    Row(P, "train", "dropout_nodrop_train256 (K 256, trained without dropout; off at test as the thesis code)",
        (8, 3, 256, 191, "student", "gc", "gc", "pca", "dropout", False, False, 1e-5, "image"),
        "patch_priors.md §6, §5.1 note", _entry("dropout_nodrop_train256"), TRAINS),
    Row(P, "train", "fullc1l6000", (8, 96, 6000, 3000, "student", "gc", "gc", "pca", "full", False, False, 1e-5,
                                    "conv1/lin"), "patch_priors.md §6, §5.1", _entry("fullc1l6000"), TRAINS),
    Row(P, "train", "slimc5l5000", (3, 256, 5000, 2304, "student", "gc", "gc", "pca", "full", False, False, 1e-7,
                                    "conv5/lin"), "patch_priors.md §6, §5.1", _entry("slimc5l5000"), TRAINS),
    Row(P, "train", "slimc3l7000 (n_white 9·C)", (3, 384, 7000, 3456, "student", "gc", "gc", "pca", "full", False,
                                                  False, 1e-9, "conv3/lin"), "patch_priors.md §6, §5.1",
        _entry("slimc3l7000"), TRAINS),
    Row(P, "train", "slimc1l2000 (n_white 9·C)", (3, 96, 2000, 864, "student", "gc", "gc", "pca", "full", False,
                                                  False, 1e-9, "conv1/lin"), "patch_priors.md §6, §7.3",
        _entry("slimc1l2000"), TRAINS),
    Row(P, "train", "chanpriorc1l150: channel-wise 8×8, K 150, 64 per channel, ZCA, logistic, weight 1e-4",
        (8, 96, 150, 64, "logistic", "zca", "channelwise", 1e-4, "conv1/lin"), "patch_priors.md §6, §5.1",
        "(lambda e, c: (c.patch, c.channels, c.components, c.n_white, c.expert, c.whiten_mode, c.kind, e.weight, "
        "e.tap))(tfrestore.priors.catalogue.entry('chanpriorc1l150'), "
        "tfrestore.priors.catalogue.entry('chanpriorc1l150').config)", TRAINS),
    Row(P, "train", "tv_prior: TV β 2, weight 1e-9 (nothing to train)", (2.0, 1e-9), "patch_priors.md §6",
        "(tfrestore.priors.catalogue.entry('tv_prior').beta, tfrestore.priors.catalogue.entry('tv_prior').weight)",
        TP + "test_tv_prior_is_total_variation_usable_as_a_prior_and_not_trained"),
    Row(P, "train", "8×8 image priors: batch 250, 25,000 steps, breakpoints, grad clip 1e-3",
        (250, 25000, IMAGE_BREAKPOINTS, 1e-3), "patch_priors.md §5.1", _training("full512"), TRAINS),
    Row(P, "train", "3×3 feature priors: batch 500, 20,000 steps, breakpoints, grad clip 100",
        (500, 20000, FEATURE_BREAKPOINTS, 100.0), "patch_priors.md §5.1", _training("slimc5l5000"), TRAINS),
    Row(P, "train", "channel-wise conv1/lin: batch 500, 20,000 steps, the 3×3 schedule",
        (500, 20000, FEATURE_BREAKPOINTS), "patch_priors.md §5.1",
        "(lambda t: (t.batch, t.steps, t.breakpoints))(tfrestore.priors.catalogue.entry('chanpriorc1l150').training)",
        TRAINS),
    Row(P, "train", "conv1/lin 8×8: batch 500, about 24k steps, breakpoints (sorted, §9 item 7), grad clip 100",
        (500, 24000, CONV1_BREAKPOINTS, 100.0), "patch_priors.md §5.1, §9 item 7", _training("fullc1l6000"), TRAINS),
    Row(P, "train", "LR breakpoints act before the step they name (steps counted from 1): (0: 1), (2: 0.1) over 4",
        [1.0, 0.1, 0.1, 0.1], "patch_priors.md §5",
        "tfrestore.priors.train.learning_rates(((0, 1.0), (2, 0.1)), 4).tolist()",
        TP + "test_learning_rate_breakpoints_act_before_the_step_they_name"),
    Row(P, "train", "patches: 100,000 training, 500 validation (image priors)", (100000, 500),
        "patch_priors.md §1.1, §5", "(tfrestore.priors.catalogue.entry('full512').patches, "
        "tfrestore.priors.catalogue.entry('full512').val_patches)", TINY_REC),
    Row(P, "train", "patches: 100,000 training, 1,000 validation (feature-map priors)", (100000, 1000),
        "patch_priors.md §1.1, §5", "(tfrestore.priors.catalogue.entry('fullc1l6000').patches, "
        "tfrestore.priors.catalogue.entry('fullc1l6000').val_patches)"),
    Row(P, "train", "validation every 100 steps (test_freq)", 100, "patch_priors.md §5",
        "tfrestore.priors.train.TrainConfig().val_every"),
    Row(P, "train", "initialisation a ~ N(0, 1) (α = softplus a), W ~ N(0, 0.001)", (1.0, 1e-3), "patch_priors.md §3",
        "(tfrestore.priors.model.INIT_A_STD, tfrestore.priors.model.INIT_W_STD)"),
    Row(P, "train", "dropout: keep 0.5 of component columns, survivors ×2, op seed 42", (0.5, 2.0, 42),
        "patch_priors.md §4.4, §9", "(tfrestore.priors.model.DROPOUT_KEEP, 1 / tfrestore.priors.model.DROPOUT_KEEP, "
        "tfrestore.priors.model.DROPOUT_SEED)",
        TP + "test_dropout_masks_are_seeded_42_fresh_per_step_and_reproducible, " + TF +
        "test_a_dropout_prior_in_an_inversion_draws_each_steps_seeded_mask_and_resumes_exactly"),
    Row(P, "train", "PCA drops the smallest eigenvalues (eigenvalues 1, 4, 9; n_white 2 keeps 4 and 9)", [4.0, 9.0],
        "patch_priors.md §1.3, §9", "sorted(np.round(1 / np.linalg.norm(tfrestore.priors.whitening.fit_whitening("
        "np.diag([1.0, 4.0, 9.0]), 'pca', 2).whiten, axis=1) ** 2, 9).tolist())",
        TP + "test_whitening_gives_identity_second_moment"),
    Row(P, "train", "patches flattened in (c, h, w) order (a 2×2×3 map's only 2×2 patch)",
        [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11], "patch_priors.md §1.1, §9",
        "tfrestore.priors.patches._sample([(0, np.arange(12).reshape(2, 2, 3))], 1, 2, np.random.default_rng(0), "
        "False)[0, 0].tolist()", TP + "test_patch_file_pipeline_save_load_and_catalogue"),
    Row(P, "train", "the thesis' bugs off by default (score-matching broadcast, channel-wise Student-t ÷ C)",
        (False, False), "patch_priors.md §9 items 2, 3",
        "(tfrestore.priors.train.TrainConfig().legacy_broadcast, "
        "tfrestore.priors.train.TrainConfig().legacy_channelwise_student_norm)",
        TP + "test_score_matching_against_numpy_and_the_broadcast_flag"),
    # ---- the legacy priors (§5.1 "Earlier experiments"): sizes from the spec; schedules and weights, which it does
    # not give, those of the default entries of the same kind ----
    Row(P, "train", "image12: 12×12 RGB image prior, K 1000, 432 features (Student-t, gc/gc, pca: the default "
        "image priors')", (12, 3, 1000, 432, "student", "gc", "gc", "pca", "full", False, False, 1e-5, "image"),
        "patch_priors.md §5.1; adversarial.md §6.1; modes and weight: full512's (§6), not given for it",
        _entry("image12"), LEGACY_TRAINS),
    Row(P, "train", "image12's schedule: not given — the 8×8 image priors' (batch 250, 25,000 steps, clip 1e-3)",
        (250, 25000, IMAGE_BREAKPOINTS, 1e-3), "patch_priors.md §5.1 (the 8×8 image row)", _training("image12"),
        LEGACY_TRAINS),
    Row(P, "train", "slimc1r2000: 3×3 conv1/relu prior, K 2000, 864 features (weight: slimc1l2000's)",
        (3, 96, 2000, 864, "student", "gc", "gc", "pca", "full", False, False, 1e-9, "conv1/relu"),
        "patch_priors.md §5.1; weight and modes: slimc1l2000's (§6), not given for it", _entry("slimc1r2000"),
        LEGACY_TRAINS),
    Row(P, "train", "legacy feature-map priors' schedule: not given — the 3×3 feature-map priors' (batch 500, 20,000 "
        "steps, clip 100)", [(500, 20000, FEATURE_BREAKPOINTS, 100.0)] * 6, "patch_priors.md §5.1 (the 3×3 row)",
        "[(t.batch, t.steps, t.breakpoints, t.grad_clip) for t in (tfrestore.priors.catalogue.entry(n).training for n "
        "in tfrestore.priors.catalogue.LEGACY[1:])]", LEGACY_TRAINS),
    Row(P, "train", "5×5 priors on conv1/lin, conv2/lin and pool1, 1,000–6,400 components (K and n_white per prior: "
        "the thesis code's)", (("conv1/lin", "conv2/lin", "pool1"), True), "patch_priors.md §5.1",
        f"(tuple(sorted({{e.tap for e in {LEGACY_5X5}}})), all(1000 <= e.config.components <= 6400 for e in "
        f"{LEGACY_5X5}))", LEGACY_TRAINS),
    Row(P, "train", "5×5 normalisations lc/gc, gc/gc, lf (lf: the mean mode; a constant sdev is undone by whitening)",
        ["gc/gc", "lc/gc", "lf"], "patch_priors.md §5.1, §1.2",
        f"sorted({{e.config.mean_mode + ('' if e.config.sdev_mode == 'none' else '/' + e.config.sdev_mode) for e in "
        f"{LEGACY_5X5}}})", LEGACY_TRAINS),
    Row(P, "train", "5×5 priors' weight: not given — fullc1l6000's", [1e-5] * 5, "patch_priors.md §6 (fullc1l6000)",
        f"[e.weight for e in {LEGACY_5X5}]", TL + "test_main_runs_featmap_inv_with_lbfgs_and_a_legacy_prior"),
    # ---- --optimizer (the thesis engine's optimisers, mv2016.md §9.2) ----
    Row(P, "*", "optimisers of the inversions: Adam (default) or L-BFGS-B", ("adam", "lbfgs"), "mv2016.md §9.2",
        "foe_priors.OPTIMIZERS", TL + "test_main_refuses_an_unknown_optimizer_listing_the_valid_ones"),
    Row(P, "*", "L-BFGS: SciPy's L-BFGS-B with maxiter = the iterations and its defaults (memory maxcor 10, gtol 1e-5)",
        (10, 1e-5), "mv2016.md §9.2 (SciPy's defaults: the thesis passed maxiter only)",
        "(lambda o: (o.num_correction_pairs, o.tolerance))(foe_priors.inversion_optimizer('lbfgs'))", LBFGS),
    # ---- feature statistics (evaluation_protocols.md §4.4) ----
    Row(P, "feature_stats", "statistics over 200 images (the first 200 of --data)", 200, "evaluation_protocols.md §4.4",
        "foe_priors.STATS_IMAGES", FS + "test_feature_stats_uses_the_first_images_of_the_folder_by_name"),
    Row(P, "feature_stats", "VGG16 pool5 among the layers measured", "pool5", "evaluation_protocols.md §4.4",
        "foe_priors.STATS_LAYERS['vgg16'][-1]", FS_RUN),
    Row(P, "feature_stats", "statistics: Gini sparsity, average Gram, covariance, inverse covariance",
        ("gini", "gram", "cov", "inv_cov"), "evaluation_protocols.md §4.4",
        "tuple(k for k in ('gini', 'gram', 'cov', 'inv_cov') if k in "
        "tfrestore.measure.feature_stats.Summary.__dataclass_fields__)",
        FS + "test_streamed_statistics_equal_numpy_on_the_whole_array"),
    Row(P, "feature_stats", "per-channel sdevs (diary, trained VGG16): image ~20–30; conv 2–70 and 12–300",
        {"image": (20.0, 30.0), "conv": ((2.0, 70.0), (12.0, 300.0))}, "evaluation_protocols.md §4.4",
        "foe_priors.DIARY_SDEV", FS_RUN),
]
