"""Learned inversion modules (``../shared/spec/learned_inverters.md``): the DC catalogue (§2), the training engine
(§3), the solo and merged regimes (§4), the evaluated stacks (§4.3) and the recorded scores (§6)."""
from spec_values import Row

P = "layer_inversion"
T = "test_inverters.py"
SCHEDULE = "test_training_schedule.py"
TINY = f"{T}::test_layer_inversion_tiny_run_on_digits_beats_the_mean_image_and_the_untrained_chain"
SHAPES = f"{T}::test_every_catalogue_module_maps_its_input_tap_to_its_target_tap"
IMAGE = "image"      # the thesis' rgb_scaled: the RGB image in [0, 255]

# spec §2, (source, target, hidden channels, op1 kernel, op1 stride, op1 padding, op2 kernel); None: not recorded
ALEXNET = {"DC1": ("conv1/lin", IMAGE, 96, 11, 4, "valid", 11),
           "DC2": ("lrn1", "conv1/lin", 96, 8, 1, "same", 8),
           "DC3": ("pool1", "lrn1", 96, 3, 2, "valid", 8),
           "DC4": ("conv2/lin", "pool1", 256, 8, None, "same", 8),
           "DC5": ("lrn2", "conv2/lin", 256, None, None, "same", None),
           "DC6": ("pool2", "lrn2", 256, 3, 2, "valid", 8),
           "DC7": ("conv3/lin", "pool2", 384, 8, None, "same", None),
           "DC8": ("conv4/lin", "conv3/lin", 384, None, None, "same", None),
           "DC9": ("conv5/lin", "conv4/lin", 384, None, None, "same", None)}
VGG16 = {"DC1": ("conv1_1/lin", IMAGE, 64, 5, 1, "same", 5),
         "DC2": ("conv1_2/lin", "conv1_1/lin", 64, None, None, "same", None),
         "DC3": ("pool1", "conv1_2/lin", 64, 5, 2, "same", None),
         "DC4": ("conv2_1/lin", "pool1", 128, None, None, "same", None),
         "DC5": ("conv2_2/lin", "conv2_1/lin", 128, None, None, "same", None),
         "DC6": ("pool2", "conv2_2/lin", 128, 5, 2, "same", None),
         "DC7": ("conv3_1/lin", "pool2", 256, None, None, "same", None),
         "DC8": ("conv3_2/lin", "conv3_1/lin", 256, None, None, "same", None),
         "DC9": ("conv3_3/lin", "conv3_2/lin", 256, None, None, "same", None),
         "DC10": ("pool3", "conv3_3/lin", 256, 5, 2, "same", None)}
FIELDS = ("source", "target", "hidden", "kernel1", "stride1", "padding1", "kernel2")


def _module_rows(net: str, table: dict) -> list[Row]:
    rows = []
    for name, values in table.items():
        known = [(f, v) for f, v in zip(FIELDS, values) if v is not None]
        fields = ", ".join(f"m.{f}" for f, _ in known)
        code = f"next(({fields}) for m in layer_inversion.I.CATALOGUE['{net}'] if m.name == '{name}')"
        rows.append(Row(P, "*", f"{net} {name}: " + ", ".join(f"{f} {v}" for f, v in known),
                        tuple(v for _, v in known), "learned_inverters.md §2", code, f"{SHAPES}[{net}]"))
    return rows


ROWS = _module_rows("alexnet", ALEXNET) + _module_rows("vgg16", VGG16) + [
    Row(P, "*", "every catalogue module is a dc (DeconvConv) module", ["dc"] * 19, "learned_inverters.md §2",
        "[m.kind for net in ('alexnet', 'vgg16') for m in layer_inversion.I.CATALOGUE[net]]", SHAPES),
    Row(P, "*", "biases glorot-uniform, like the weights (tf.get_variable's default)", "glorot",
        "learned_inverters.md §1, §7", "layer_inversion.I.BIAS_INIT",
        f"{T}::test_module_biases_are_glorot_uniform_and_the_loss_is_plain_mse"),
    Row(P, "*", "solo training: Adam lr 3e-4, batch 32, 3,000 iterations", (3e-4, 32, 3000),
        "learned_inverters.md §4.1", "(layer_inversion.I.SOLO.learning_rate, layer_inversion.I.SOLO.batch, "
        "layer_inversion.I.SOLO.steps)", TINY),
    Row(P, "*", "Adam β1, β2, ε (TF1 defaults)", (0.9, 0.999, 1e-8), "learned_inverters.md §3, §4.1",
        "(layer_inversion.I.SOLO.beta1, layer_inversion.I.SOLO.beta2, layer_inversion.I.SOLO.epsilon)"),
    Row(P, "*", "solo schedule ((0, 3e-4), (3000, 1e-4), (2000, 3e-5)), as typed", ((0, 3e-4), (3000, 1e-4),
        (2000, 3e-5)), "learned_inverters.md §4.1", "layer_inversion.I.SOLO.breakpoints",
        f"{SCHEDULE}::test_inverter_configs_use_the_thesis_rule_and_schedules"),
    Row(P, "*", "breakpoints adopted after the step that reaches them, consumed in order (one per step)", "after",
        "learned_inverters.md §3; mv2016.md §9.2", "layer_inversion.I.SOLO.breakpoint_rule",
        f"{SCHEDULE}::test_after_rule_is_the_thesis_loop,{SCHEDULE}::test_the_trainer_steps_at_the_scheduled_rate"),
    Row(P, "*", "under that rule the solo schedule stays at 3e-4 for all 3,000 steps", True,
        "learned_inverters.md §4.1, §7", "bool((layer_inversion.I.SOLO.learning_rates() == np.float32(3e-4)).all())",
        f"{SCHEDULE}::test_the_two_rules_differ_where_the_thesis_said_they_would"),
    Row(P, "*", "merged: 3,000 iterations, batch 32, lr (0: 3e-6), (1000: 1e-6), (2000: 3e-7)",
        (3000, 32, ((0, 3e-6), (1000, 1e-6), (2000, 3e-7))), "learned_inverters.md §4.2",
        "(layer_inversion.I.MERGED.steps, layer_inversion.I.MERGED.batch, layer_inversion.I.MERGED.breakpoints)",
        f"{TINY},{SCHEDULE}::test_inverter_configs_use_the_thesis_rule_and_schedules"),
    Row(P, "*", "validation every 100 iterations, checkpoints every 500", (100, 500), "learned_inverters.md §4.1",
        "(layer_inversion.I.SOLO.val_every, layer_inversion.I.SOLO.checkpoint_every)"),
    Row(P, "*", "images taken sequentially in list order, never shuffled, wrapping around", False,
        "learned_inverters.md §3", "layer_inversion.I.SOLO.shuffle or layer_inversion.I.MERGED.shuffle",
        f"{SCHEDULE}::test_unshuffled_batches_walk_the_list_in_order_and_wrap_like_the_thesis"),
    Row(P, "*", "evaluated AlexNet stacks: from DC1, DC4, DC7, DC8, DC9 (conv1/lin … conv5/lin)",
        ("conv1/lin", "conv2/lin", "conv3/lin", "conv4/lin", "conv5/lin"), "learned_inverters.md §4.3",
        "layer_inversion.NET_SETTINGS['alexnet'].layers"),
    Row(P, "*", "evaluated VGG16 stacks: from DC3, DC6, DC10 (pool1, pool2, pool3)", ("pool1", "pool2", "pool3"),
        "learned_inverters.md §4.3", "layer_inversion.NET_SETTINGS['vgg16'].layers"),
    Row(P, "*", "VGG score taps: conv1_1 … conv5_1 ReLU outputs (VGG19 in the thesis; tfrestore's VGG16 here)",
        ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), "learned_inverters.md §6",
        "layer_inversion.VGG_GRAM_TAPS", TINY),
    Row(P, "*", "recorded learned stacks, AlexNet (VGG score, MSE, NMSE) from conv1 … conv5",
        {"conv1": (0.06100, 188.45, 0.013477), "conv2": (0.51720, 457.82, 0.034307),
         "conv3": (0.66418, 845.15, 0.061944), "conv4": (0.69428, 1022.58, 0.074675),
         "conv5": (0.72961, 1419.92, 0.098018)}, "learned_inverters.md §6",
        "layer_inversion.RECORDED['learned stacks (thesis)']"),
    Row(P, "*", "recorded M&V 2016 (thesis variant), AlexNet (VGG score, MSE, NMSE) from conv1 … conv5",
        {"conv1": (0.1800, 868.60, 0.06101), "conv2": (0.4450, 1391.62, 0.09591), "conv3": (0.5295, 1714.48, 0.11889),
         "conv4": (0.6470, 2197.03, 0.15223), "conv5": (0.7292, 3085.13, 0.21977)}, "learned_inverters.md §6",
        "layer_inversion.RECORDED['M&V 2016 (thesis variant)']"),
]

# spec §5 (the May 2017 diary): --experiment=early_findings
E, SH = "early_findings", "test_inverters_shapes.py"
EARLY_SPEC = f"{SH}::test_early_modules_follow_the_spec_and_fit_the_nets_taps"
EARLY_TINY = f"{SH}::test_early_findings_tiny_run_on_digits"
_A = "layer_inversion.EARLY['alexnet'].shapes"
_V = "layer_inversion.EARLY['vgg16'].stack"
ROWS += [
    Row(P, E, "AlexNet layer 1: a dc, a dd and a cd module side by side", ("dc", "dd", "cd"), "learned_inverters.md §5",
        f"tuple(m.spec.kind for m in {_A})", f"{EARLY_SPEC}[alexnet]"),
    Row(P, E, "dc and dd: the first operation is strided (AlexNet conv1: 11×11 / 4 VALID, 96 channels, as DC1); cd: "
        "the first operation unstrided, the stride in its second", ((11, 4, "valid", 96), (11, 4, "valid", 96),
                                                                    (11, 1, 11, 4, "valid", 96)),
        "learned_inverters.md §2 (DC1), §5",
        f"tuple((m.spec.kernel1, m.spec.stride1, m.spec.padding1, m.spec.hidden) if m.spec.kind != 'cd' else "
        f"(m.spec.kernel1, m.spec.stride1, m.spec.kernel2, m.spec.stride2, m.spec.padding2, m.spec.hidden) "
        f"for m in {_A})", f"{SH}::test_the_geometry_of_alexnet_layer_1_in_closed_form,{EARLY_SPEC}[alexnet]"),
    Row(P, E, "targets then: ReLU outputs and the bgr_normed image (AlexNet: conv1/relu → bgr_normed)",
        ("conv1/relu", "bgr_normed"), "learned_inverters.md §5",
        f"({_A}[0].spec.source, {_A}[0].spec.target)", f"{EARLY_SPEC}[alexnet],{EARLY_TINY}"),
    Row(P, E, "VGG16 conv1_1 → pool1: three stacked cd modules, ReLU targets down to bgr_normed",
        (("pool1", "conv1_2/relu", "cd"), ("conv1_2/relu", "conv1_1/relu", "cd"), ("conv1_1/relu", "bgr_normed", "cd")),
        "learned_inverters.md §5", f"tuple((m.spec.source, m.spec.target, m.spec.kind) for m in {_V})",
        f"{EARLY_SPEC}[vgg16]"),
    Row(P, E, "the image module batch 10 and lr 1e-4, the others batch 32 and lr 3e-4", ((32, 3e-4), (32, 3e-4),
        (10, 1e-4)), "learned_inverters.md §5", f"tuple((m.batch, m.learning_rate) for m in {_V})",
        f"{EARLY_SPEC}[vgg16],{EARLY_TINY}"),
    Row(P, E, "the VGG16 modules' hidden channels: 64 (as every VGG16 module of §2)", (64, 64, 64),
        "learned_inverters.md §2", f"tuple(m.spec.hidden for m in {_V})", f"{EARLY_SPEC}[vgg16]"),
]
