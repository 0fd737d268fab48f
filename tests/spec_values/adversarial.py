"""Adversarial restoration (``../shared/spec/adversarial.md``): attacks (§2), the stability experiment (§3), the
adaptive attack (§4), ensembles and the mean filter (§5), recorded numbers (§6–§9)."""
from spec_values import Row

P = "adversarial"
T = "test_adversarial.py"
STABILITY = f"{T}::test_stability_tiny_run_the_defence_beats_same_norm_noise_only_against_a_margin_attack"
ADAPTIVE = f"{T}::test_adaptive_tiny_run_examples_made_through_the_defence_are_not_restored_by_it"
MEAN_FILTER = f"{T}::test_mean_filter_tiny_run_restores_oblivious_but_not_adaptive_examples_at_the_attacked_weight"
ENERGIES = f"{T}::test_energies_tiny_run_adversarials_have_higher_prior_energy"
FGSM = f"{T}::test_fgsm_line_search_keeps_foolboxs_smallest_successful_epsilon_of_the_grid"
ITFGSM = f"{T}::test_iterative_gradient_sign_takes_foolbox1s_steps_of_epsilon_over_steps"
DROPOUT_OFF = f"{T}::test_dropout_defence_runs_with_dropout_off_and_the_ensemble_averages_fixed_mask_members"
M = "test_adversarial_more.py"
LBFGS_T = f"{M}::test_lbfgs_reaches_its_targets_with_less_than_a_targeted_fgsm_step,{M}::test_lbfgs_tiny_run"
SALIENCY_T = (f"{M}::test_saliency_first_step_lowers_the_element_of_largest_target_gradient_and_stays_within_its_"
              f"bounds,{M}::test_saliency_tiny_run")
LBFGS_E = f"{M}::test_lbfgs_energies_tiny_run_the_prior_scores_adversarials_above_their_images"
DROP_T = f"{M}::test_test_time_dropout_descends_under_a_fresh_mask_at_every_step,{M}::test_stability_dropout_tiny_run"

ROWS = [
    # §1, §10 item 7: the classifier and its labels
    Row(P, "*", "AlexNet labels from fc8/lin (never the softmax of ReLU(fc8))", "fc8", "adversarial.md §1, §10",
        "tfrestore.nets.spec('alexnet').logits", f"{T}::test_deepfool_flips_the_trained_digits_classifier_and_files_carry_both_labels"),
    Row(P, "*", "pixel bounds of the foolbox model (RGB)", (0.0, 255.0), "adversarial.md §1", "adversarial.A.BOUNDS",
        FGSM),
    Row(P, "*", "the thesis' net: AlexNet, 1069 DeepFool pairs", 1069, "adversarial.md §1, §7.2",
        "adversarial.NET_SETTINGS['alexnet'].pairs"),
    # §2: the attacks
    Row(P, "*", "oblivious DeepFool: steps 300 (§2's text; the notes' 100 is foolbox 1's default, see adaptive)", 300,
        "adversarial.md §2", "adversarial.A.ATTACKS['deepfool'].steps", STABILITY),
    Row(P, "*", "DeepFool subsample (candidate classes)", 10, "adversarial.md §2",
        "adversarial.A.ATTACKS['deepfool'].candidates", STABILITY),
    Row(P, "*", "gradient sign (FGSM): epsilons 1000", 1000, "adversarial.md §2",
        "adversarial.A.ATTACKS['fgsm'].epsilons", FGSM),
    Row(P, "*", "iterative gradient sign: epsilons 100, steps 10", (100, 10), "adversarial.md §2",
        "(adversarial.A.ATTACKS['itfgsm'].epsilons, adversarial.A.ATTACKS['itfgsm'].steps)", ITFGSM),
    Row(P, "*", "targeted iterative gradient sign: epsilons 1000, steps 50", (1000, 50), "adversarial.md §2",
        "(adversarial.A.ATTACKS['targeted'].epsilons, adversarial.A.ATTACKS['targeted'].steps)"),
    Row(P, "*", "unrolled / defence Adam: β1 0.9, β2 0.999, ε 1e-8", (0.9, 0.999, 1e-8), "adversarial.md §4",
        "(adversarial.A.ADAM_BETA1, adversarial.A.ADAM_BETA2, adversarial.A.ADAM_EPSILON)", DROPOUT_OFF),
    # §3: stability
    Row(P, "stability", "full prior: full512", "full512", "adversarial.md §3",
        "adversarial.NET_SETTINGS['alexnet'].prior"),
    Row(P, "stability", "full prior: Adam lr 0.6, 30 steps", (0.6, 30), "adversarial.md §3",
        "(adversarial.FULL_LR, adversarial.FULL_STEPS)", STABILITY),
    Row(P, "stability", "dropout priors: Adam lr 0.6, 10 steps", (0.6, 10), "adversarial.md §3, §7.2",
        "(adversarial.DROPOUT_LR, adversarial.DROPOUT_STEPS)", STABILITY),
    Row(P, "stability", "labels recorded after every step, step 1 included (bug 2 fixed; legacy behind a flag)", False,
        "adversarial.md §3, §10", "adversarial.Options.__dataclass_fields__['legacy_log_offset'].default",
        f"{T}::test_legacy_stability_logging_is_the_originals_off_by_one,"
        f"{T}::test_defence_gradients_match_finite_differences_and_labels_follow_each_step"),
    Row(P, "stability", "recorded 'eval full' preserved, points 0–10", [1069, 1068, 1067, 1067, 1065, 1064, 1062, 1061,
        1059, 1055, 1051], "adversarial.md §7.2", "adversarial.RECORDED_FULL['preserved']"),
    Row(P, "stability", "recorded 'eval full' restored, points 0–10", [0, 613, 705, 761, 797, 817, 831, 841, 851, 868,
        874], "adversarial.md §7.2", "adversarial.RECORDED_FULL['restored']"),
    # §4, §5: adaptive attack, transfer, ensemble
    Row(P, "adaptive", "defence: 4 Adam steps (the notes) at lr 0.6", (4, 0.6), "adversarial.md §4",
        "(adversarial.ADAPTIVE_STEPS, adversarial.ADAPTIVE_LR)", ADAPTIVE),
    Row(P, "adaptive", "adaptive DeepFool: steps 100, subsample 10 (the notes; foolbox 1's defaults, which bug 4 "
        "left in force), now passed explicitly", (100, 10), "adversarial.md §2, §4, §10",
        "(adversarial.A.ADAPTIVE_DEEPFOOL.steps, adversarial.A.ADAPTIVE_DEEPFOOL.candidates)", ADAPTIVE),
    Row(P, "adaptive", "dropout off inside the defence (no mask: every component, ×1)", None, "adversarial.md §4",
        "adversarial.A.PriorDefence.__dataclass_fields__['mask'].default", DROPOUT_OFF),
    Row(P, "adaptive", "dropout ensemble: 10 members with fixed masks", 10, "adversarial.md §5",
        "adversarial.ENSEMBLE_MEMBERS", f"{ADAPTIVE},{DROPOUT_OFF}"),
    Row(P, "adaptive", "recorded FoE defence (4 steps, lr 0.6): mean norms oblivious / adaptive, ratio median, "
        "adaptive larger / smaller", {"mean_oblivious": 71.1893, "mean_adaptive": 56.5042, "ratio_median": 0.7701,
                                      "adaptive_larger": 57, "adaptive_smaller": 999}, "adversarial.md §8",
        "adversarial.RECORDED_ADAPTIVE['FoE prior, 4 steps, lr 0.6']"),
    # §5, §9: mean filter
    Row(P, "mean_filter", "filter sizes k ∈ {2, 3}", (2, 3), "adversarial.md §5", "adversarial.MEAN_FILTER_SIZES",
        MEAN_FILTER),
    Row(P, "mean_filter", "weights w = 0, 0.1, …, 1", (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
        "adversarial.md §5, §9", "adversarial.MEAN_FILTER_WEIGHTS", MEAN_FILTER),
    Row(P, "mean_filter", "adaptive DeepFool against the 2×2 filter at w = 0.2", (2, 0.2), "adversarial.md §5",
        "adversarial.MEAN_FILTER_ADAPTIVE", MEAN_FILTER),
    Row(P, "mean_filter", "recorded 2×2 DeepFool: images retained", [1069, 1027, 991, 964, 934, 895, 866, 821, 802,
        780, 776], "adversarial.md §9", "adversarial.RECORDED_MEAN_FILTER_2x2['retained']"),
    Row(P, "mean_filter", "recorded 2×2 DeepFool: adversarials restored", [0, 766, 784, 782, 779, 757, 738, 729, 708,
        697, 694], "adversarial.md §9", "adversarial.RECORDED_MEAN_FILTER_2x2['restored']"),
    # §6.2: energies
    Row(P, "energies", "recorded 200-image DeepFool subset: 198 pairs, mean E(image) − E(adv.) −0.00403496, 147 "
        "adversarials higher", {"pairs": 198, "mean_difference": -0.00403496, "adversarial_higher": 147},
        "adversarial.md §1, §6.2", "adversarial.RECORDED_ENERGIES", ENERGIES),
    # §2: the thesis' L-BFGS and saliency-map attacks (foolbox 1's, written here)
    Row(P, "lbfgs", "L-BFGS: epsilon 1e-5, maxiter 150 (num_random_targets 0: the gradient attack's class when "
        "untargeted)", (1e-5, 150), "adversarial.md §2", "(adversarial.LBFGS.epsilon, adversarial.LBFGS.maxiter)",
        LBFGS_T),
    Row(P, "lbfgs", "targeted examples: the subset10 images towards 844, 424, 970, 949, 906, 486, 934, 39, 277, 646",
        (844, 424, 970, 949, 906, 486, 934, 39, 277, 646), "adversarial.md §2, evaluation_protocols.md §4.1",
        "adversarial.NET_SETTINGS['alexnet'].targets", LBFGS_T),
    Row(P, "saliency", "saliency map: max_iter 2000, theta 0.1, max_perturbations_per_pixel 7, fast",
        (2000, 0.1, 7, True), "adversarial.md §2",
        "(adversarial.A.ATTACKS['saliency'].max_iter, adversarial.A.ATTACKS['saliency'].theta, "
        "adversarial.A.ATTACKS['saliency'].max_perturbations_per_pixel, adversarial.A.ATTACKS['saliency'].fast)",
        SALIENCY_T),
    # §6.1: the targeted examples under the 12×12 image prior
    Row(P, "lbfgs_energies", "scored by the 12×12 image prior (image12)", "image12", "adversarial.md §6.1",
        "adversarial.NET_SETTINGS['alexnet'].image12_prior", LBFGS_E),
    Row(P, "lbfgs_energies", "recorded: val53_t844_f39 33.0931 beside val53 0.6284; val99_t949_f934 11.1615",
        (33.0931, 0.6284, 11.1615), "adversarial.md §6.1",
        "(dict(adversarial.RECORDED_LBFGS_ENERGIES['adversarial'])['val53_t844_f39'], "
        "dict(adversarial.RECORDED_LBFGS_ENERGIES['original'])['val53'], "
        "dict(adversarial.RECORDED_LBFGS_ENERGIES['adversarial'])['val99_t949_f934'])"),
    # §5, §7.2: stability with test-time dropout
    Row(P, "stability_dropout", "dropout prior: Adam lr 0.6, 10 steps, a fresh mask per step", (0.6, 10),
        "adversarial.md §3, §5, §7.2", "(adversarial.DROPOUT_LR, adversarial.DROPOUT_STEPS)", DROP_T),
    Row(P, "stability_dropout", "recorded 'test-time dropout on' restored, points 0–5", [0, 657, 724, 771, 803, 826],
        "adversarial.md §7.2", "adversarial.RECORDED_DROPOUT_ON['restored'][:6]"),
]
