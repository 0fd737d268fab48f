"""M&V 2016 (``../shared/spec/mv2016.md``) and the thesis' variant of its inversion benchmark (§9)."""
from spec_values import Row

P = "mv2016"
RUNS = "test_mv_runs.py"
UNITS = "test_mv_units.py"
ACTMAX = "test_mv2016_actmax.py"
B = 80.0
F = B ** 2 / 6                                           # §9.3: the thesis' lr scale B²/α
ALEX = ("conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2", "conv3", "relu3", "conv4", "relu4",
        "conv5", "relu5", "pool5", "fc6", "relu6", "fc7", "relu7", "fc8")          # §6.1 layer indices 1–20
VGG = tuple(n for b, k in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
            for n in [x for i in range(1, k + 1) for x in (f"conv{b}_{i}", f"relu{b}_{i}")] + [f"pool{b}"]) + \
    ("fc6", "relu6", "fc7", "relu7", "fc8")


def _runs(order, *starts_values):
    """{layer: value} from (first layer of a run, value) pairs in ``order``."""
    out, value, starts = {}, None, dict(starts_values)
    for layer in order:
        value = starts.get(layer, value)
        out[layer] = value
    return out


ALEX_T = _runs(ALEX, ("conv1", 1), ("pool1", 2), ("pool2", 4), ("pool5", 8))              # §6.1
VGG_T = _runs(VGG, ("conv1_1", 1), ("pool3", 2), ("pool4", 4), ("pool5", 8))             # §6.2
ALEX_C = _runs(ALEX, ("conv1", 300.0), ("conv4", 100.0), ("conv5", 20.0), ("pool5", 1.0))  # §6.1, §9.3
VGG_C = _runs(VGG, ("conv1_1", 300.0), ("pool4", 100.0), ("conv5_2", 20.0), ("pool5", 1.0))   # §6.2, §9.3
THESIS_ALEX_T = ALEX_T                                                                   # §9.3: same values
THESIS_VGG_T = _runs(VGG, ("conv1_1", 0), ("pool2", 1), ("pool3", 2), ("pool4", 4), ("pool5", 8))   # §9.3
SLIM = "tfrestore.nets.build('{}', weights=None, quiet=True, width=1 / 64)"     # same strides, tiny weights

ROWS = [
    Row(P, "*", "B (bounded range)", B, "mv2016.md §1.2", "mv2016.B"),
    Row(P, "*", "B+ = 2B (hard per-pixel colour-norm bound)", 160.0, "mv2016.md §1.4", "mv2016.B_PLUS",
        f"{RUNS}::test_mv2016_caricature_raises_the_codes_inner_product_above_the_regularisers_alone"),
    Row(P, "*", "V = B/6.5 (TV scale)", 80 / 6.5, "mv2016.md §1.3", "mv2016.V", rel=1e-9),
    Row(P, "*", "α (bounded-range exponent)", 6.0, "mv2016.md §1.2", "mv2016.ALPHA"),
    Row(P, "*", "β (TV exponent)", 2.0, "mv2016.md §1.3", "mv2016.BETA"),
    Row(P, "*", "LR = 0.05·B²/α", 0.05 * 6400 / 6, "mv2016.md §2", "mv2016.LR"),
    Row(P, "*", "ρ (AdaGrad-momentum decay)", 0.9, "mv2016.md §2", "mv2016.RHO",
        "test_engine.py::test_adagrad_momentum_two_stages_against_numpy"),
    Row(P, "*", "300 jittered iterations at η = H·W·LR (227²)", (300, 227 * 227 * 0.05 * 6400 / 6, True),
        "mv2016.md §2, §4",
        "[(s.steps, s.lr, s.jitter) for s in mv2016.authors_schedule(mv2016.EXPERIMENT_SETTINGS['maximization'], "
        "None, 227).stages][0]", "test_reproductions.py::test_mv2016_jitter_tables_and_step_size"),
    Row(P, "*", "initial noise: uniform [−1, 1] over its 95th percentile × B/√3 (95th percentile of the canvas)",
        80 / 3 ** 0.5, "mv2016.md §3",
        "float(np.percentile(tfrestore.optimize.param.init_mv2016(1, 64, mv2016.B, 0), 95))", rel=1e-5),
    Row(P, "*", "the 95th percentile", 95, "mv2016.md §3", "tfrestore.optimize.param.MV2016_INIT_PERCENTILE"),
    Row(P, "*", "iterates saved every 20 iterations", 20, "mv2016.md §3", "mv2016.LOG_EVERY"),
    Row(P, "*", "jitter T = max(round(s/4), 1), AlexNet", ALEX_T, "mv2016.md §6.1",
        f"(lambda m: {{l: tfrestore.nets.jitter_t(m, l) for l in {ALEX!r}}})({SLIM.format('alexnet')})",
        "test_reproductions.py::test_mv2016_jitter_tables_and_step_size"),
    Row(P, "*", "jitter T = max(round(s/4), 1), VGG16", VGG_T, "mv2016.md §6.2",
        f"(lambda m: {{l: tfrestore.nets.jitter_t(m, l) for l in {VGG!r}}})({SLIM.format('vgg16')})",
        "test_reproductions.py::test_mv2016_jitter_tables_and_step_size"),
    Row(P, "inversion", "second stage: 50 iterations at 0.1·η without jitter", (50, 227 * 227 * 0.05 * 6400 / 6 / 10,
        False), "mv2016.md §2, §4",
        "[(s.steps, s.lr, s.jitter) for s in mv2016.authors_schedule(mv2016.EXPERIMENT_SETTINGS['inversion'], "
        "None, 227).stages][1]", f"{UNITS}::test_inversion_weights_the_data_term_by_c_and_restarts_the_optimiser_at_the_stage_change"),
    Row(P, "inversion", "the stage change restarts G and m (exp_inversion.m chains two nnpreimage calls)", True,
        "mv2016.md §4 (§2's typo: G kept, the option)", "mv2016.RESET_ACCUMULATOR_AT_STAGE_CHANGE",
        "test_engine.py::test_adagrad_momentum_two_stages_against_numpy,"
        f"{UNITS}::test_inversion_weights_the_data_term_by_c_and_restarts_the_optimiser_at_the_stage_change"),
    Row(P, "inversion", "data term weighted by C (C/‖Φ0‖²)", True, "mv2016.md §1.5, §5",
        "mv2016.EXPERIMENT_SETTINGS['inversion'].weighted_by_c",
        f"{UNITS}::test_inversion_weights_the_data_term_by_c_and_restarts_the_optimiser_at_the_stage_change"),
    Row(P, "inversion", "thesis C per layer, AlexNet", ALEX_C, "mv2016.md §6.1, §9.3",
        f"{{l: mv2016.c_for('alexnet', l) for l in {ALEX!r}}}",
        f"{RUNS}::test_mv2016_inversion_lowers_the_error_from_the_noise_it_starts_at"),
    Row(P, "inversion", "thesis C per layer, VGG16", VGG_C, "mv2016.md §6.2, §9.3",
        f"{{l: mv2016.c_for('vgg16', l) for l in {VGG!r}}}"),
    Row(P, "inversion", "thesis variant (--optimizer=adam): Adam", "adam", "mv2016.md §9.3",
        "mv2016.THESIS_OPTIMIZER", f"{UNITS}::test_thesis_variant_first_step_equals_the_thesis_engine_written_out"),
    Row(P, "inversion", "thesis variant: lr breakpoints (iteration, lr) with f = B²/α", [(0, 1e-2 * F),
        (1000, 3e-3 * F), (2000, 1e-3 * F)], "mv2016.md §9.3",
        "[(it, lr * mv2016.THESIS_LR_FACTOR) for it, lr in mv2016.THESIS_LR_BREAKPOINTS]",
        f"{UNITS}::test_thesis_schedule_follows_the_engines_after_the_step_breakpoint_rule"),
    Row(P, "inversion", "thesis variant: 3,500 iterations, jitter off after 2,750, breakpoints after the step",
        [(1000, 1e-2 * F, True), (1000, 3e-3 * F, True), (750, 1e-3 * F, True), (750, 1e-3 * F, False)],
        "mv2016.md §9.2, §9.3", "[(s.steps, s.lr, s.jitter) for s in mv2016.thesis_schedule().stages]",
        f"{UNITS}::test_thesis_schedule_follows_the_engines_after_the_step_breakpoint_rule"),
    Row(P, "inversion", "thesis variant: gradient clipped by value at 100", 100.0, "mv2016.md §9.2, §9.3",
        "mv2016.THESIS_GRAD_CLIP", f"{UNITS}::test_thesis_variant_first_step_equals_the_thesis_engine_written_out"),
    Row(P, "inversion", "thesis variant: data weight C/Σ(Φ0·Φ(x)) (NormedMSELoss)", "dot", "mv2016.md §9.1, §9.4",
        "mv2016.THESIS_DATA_NORMALISATION",
        f"{UNITS}::test_thesis_variant_first_step_equals_the_thesis_engine_written_out"),
    Row(P, "inversion", "thesis variant: SoftRange weight 1/(H·W·B^α) at 227²", 7.40e-17, "mv2016.md §9.3",
        "float(mv2016.ThesisSoftRange(6.0, 80.0, 0.0)(tfrestore.optimize.objectives.Context(np.pad(np.array([[[[1.0, -1.0, "
        "0.0]]]], np.float32), ((0, 0), (0, 226), (0, 226), (0, 0)))))[0][0]) / 8",
        f"{UNITS}::test_thesis_soft_range_closed_form_and_gradient", rel=2e-3),
    Row(P, "inversion", "thesis variant: range ball around μ_RGB (also for AlexNet)", (123.68, 116.779, 103.939),
        "mv2016.md §9.2, §9.4", "mv2016.THESIS_RANGE_CENTRE",
        f"{UNITS}::test_thesis_variant_first_step_equals_the_thesis_engine_written_out"),
    Row(P, "inversion", "thesis variant: NormModule offsets (AlexNet scalar 114.799, VGG the RGB mean)",
        {"alexnet": (114.799,) * 3, "vgg": (123.68, 116.779, 103.939)}, "mv2016.md §9.3",
        "mv2016.THESIS_NETWORK_MEAN", f"{UNITS}::test_thesis_variant_first_step_equals_the_thesis_engine_written_out"),
    Row(P, "inversion", "thesis variant: jitter t (offsets 0…t), AlexNet", THESIS_ALEX_T, "mv2016.md §9.3",
        f"{{l: mv2016.thesis_jitter_t('alexnet', l) for l in {ALEX!r}}}",
        f"{UNITS}::test_thesis_jitter_tables_for_alexnet_and_vgg16"),
    Row(P, "inversion", "thesis variant: jitter t (offsets 0…t), VGG16", THESIS_VGG_T, "mv2016.md §9.3",
        f"{{l: mv2016.thesis_jitter_t('vgg16', l) for l in {VGG!r}}}",
        f"{UNITS}::test_thesis_jitter_tables_for_alexnet_and_vgg16"),
    Row(P, "restarts", "variability across restarts: 4 random restarts", 4, "evaluation_protocols.md §2.3",
        "mv2016.EXPERIMENT_SETTINGS['restarts'].restarts",
        f"{RUNS}::test_mv2016_restarts_batch_four_noises_per_layer_and_report_their_spread"),
    Row(P, "c_sweep", "C ∈ {1, 20, 100, 300}", (1.0, 20.0, 100.0, 300.0), "mv2016.md §1.5, §6.1",
        "mv2016.EXPERIMENT_SETTINGS['c_sweep'].c_sweep",
        f"{RUNS}::test_mv2016_c_sweep_weights_each_problems_data_term_by_its_c"),
    Row(P, "c_sweep", "300 + 50 iterations (inversion)", True, "mv2016.md §4",
        "mv2016.EXPERIMENT_SETTINGS['c_sweep'].plain_stage"),
    Row(P, "maximization", "data term −⟨w, Φ(x)⟩ with weight 1 (not C)", False, "mv2016.md §1.5, §5",
        "mv2016.EXPERIMENT_SETTINGS['maximization'].weighted_by_c",
        f"{RUNS}::test_mv2016_maximisation_raises_the_chosen_channels_above_the_regularisers_alone"),
    Row(P, "maximization", "300 jittered iterations only", False, "mv2016.md §4",
        "mv2016.EXPERIMENT_SETTINGS['maximization'].plain_stage"),
    Row(P, "maximization", "w scaled by 10000/rf²", 10000.0, "mv2016.md §5", "mv2016.NEURON_SCALE"),
    Row(P, "maximization", "category visualisations (fc8 units, exp_all.m)",
        ("black swan", "goose", "tree frog", "cheeseburger", "coffee mug", "comic book", "vending machine"),
        "mv2016.md §5", "tuple(mv2016.CATEGORIES)",
        f"{UNITS}::test_maximisation_units_are_categories_at_fc8_and_channels_elsewhere"),
    Row(P, "maximization", "default layer fc8 (AlexNet, VGG16)", ["fc8"], "mv2016.md §5",
        "mv2016.default_layers(mv2016.EXPERIMENT_SETTINGS['maximization'], 'vgg16')",
        f"{UNITS}::test_maximisation_units_are_categories_at_fc8_and_channels_elsewhere"),
    Row(P, "mosaic", "25-filter mosaics: one neuron of each of 25 filters in one image", 25, "mv2016.md §5",
        "mv2016.MOSAIC_FILTERS", f"{ACTMAX}::test_mv2016_mosaic_raises_every_lattice_neuron_above_its_start_and_a_same_norm_noise"),
    Row(P, "mosaic", "data term −⟨w, Φ(x)⟩ with weight 1, 300 jittered iterations only", (False, False), "mv2016.md §5",
        "(mv2016.EXPERIMENT_SETTINGS['mosaic'].weighted_by_c, mv2016.EXPERIMENT_SETTINGS['mosaic'].plain_stage)"),
    Row(P, "mosaic", "lattice spacing round(1.1·rf/stride), made odd: AlexNet conv1 (11/4), conv2 (51/8), conv5 "
        "(163/16), pool5 (195/32)", [3, 7, 11, 7], "mv2016.md §5",
        f"(lambda m: [tfrestore.nets.lattice.lattice_spacing(*tfrestore.nets.receptive_field(m, l)) for l in "
        f"('conv1', 'conv2', 'conv5', 'pool5')])({SLIM.format('alexnet')})",
        f"{ACTMAX}::test_lattice_spacing_and_positions_follow_the_rule_worked_out_by_hand"),
    Row(P, "mosaic", "image size whose map holds the lattice, AlexNet conv1 25-mosaic (5 cells of 5): the spec's "
        "smallest (25 − 1)·4 + 11, which the run uses, and the released loop's largest (+ stride − 1)", (107, 110),
        "mv2016.md §5 (exp_maximization.m find_image_size)",
        f"(lambda m: (tfrestore.nets.lattice.find_image_size(m, 'conv1', 25), "
        f"tfrestore.nets.lattice.find_image_size(m, 'conv1', 25, smallest=False)))({SLIM.format('alexnet')})",
        f"{ACTMAX}::test_find_image_size_against_the_builders_at_each_size"),
    Row(P, "maximization", "w divided by max_k, the channel's largest response over images (--data) and positions: "
        "single units and mosaics", ("maximization", "mosaic"), "mv2016.md §5 (get_neuron_stats.m)",
        "mv2016.MAX_K_EXPERIMENTS",
        f"{ACTMAX}::test_max_k_over_a_folder_is_the_numpy_max_of_the_feature_maps"),
    Row(P, "caricature", "data term −⟨w, Φ(x)⟩ with weight 1 (not C)", False, "mv2016.md §1.5, §5",
        "mv2016.EXPERIMENT_SETTINGS['caricature'].weighted_by_c",
        f"{RUNS}::test_mv2016_caricature_raises_the_codes_inner_product_above_the_regularisers_alone"),
    Row(P, "caricature", "initialised from the image itself, in the middle of each problem's canvas", True,
        "mv2016.md §3, §5", "mv2016.EXPERIMENT_SETTINGS['caricature'].init_from_image",
        f"{UNITS}::test_batched_caricatures_start_in_the_middle_of_their_own_canvas"),
    Row(P, "caricature", "300 jittered iterations only", False, "mv2016.md §4",
        "mv2016.EXPERIMENT_SETTINGS['caricature'].plain_stage"),
    Row(P, "caricature", "layers: AlexNet conv5 and fc8", ["conv5", "fc8"], "mv2016.md §5",
        "mv2016.default_layers(mv2016.EXPERIMENT_SETTINGS['caricature'], 'alexnet')",
        f"{UNITS}::test_caricature_default_layers_per_net_family"),
    Row(P, "caricature", "layers: VGG16 29 (conv5_3) and 36 (fc8), exp_enhance.m", ["conv5_3", "fc8"],
        "mv2016.md §6.2", "mv2016.default_layers(mv2016.EXPERIMENT_SETTINGS['caricature'], 'vgg16')",
        f"{UNITS}::test_caricature_default_layers_per_net_family"),
]
