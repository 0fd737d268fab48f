"""The representation-inversion study (``../shared/seeds/004_*.txt``) and the choices ``reproductions/
representation_study.py`` documents where the seed leaves them open."""
from spec_values import Row

P = "representation_study"
RUNS = "test_mv_runs.py"
MODULE = "representation_study.py (documented choice)"
ROWS = [
    Row(P, "*", "network: VGG16 with batch normalisation (ONNX model zoo)", "vgg16_bn", "seeds/004 Backgrounds",
        "representation_study.STUDIES['layers'].net"),
    Row(P, "*", "the image is saved every 10 epochs", 10, "seeds/004 Backgrounds", "representation_study.LOG_EVERY"),
    Row(P, "*", "optimisation steps", 300, MODULE, "representation_study.STEPS"),
    Row(P, "*", "Adam ε (Keras' default, as the study's code)", 1e-7, MODULE, "representation_study.ADAM_EPSILON"),
    Row(P, "*", "initial noise std (normalised input units)", 0.1, MODULE, "representation_study.INIT_STD"),
    Row(P, "*", "normalised units: ImageNet std", (0.229, 0.224, 0.225), MODULE, "representation_study.IMAGENET_STD"),
    Row(P, "lr_schedules", "Q1 baseline: constant learning rate 1e-3", 1e-3, "seeds/004 Q1",
        "representation_study.BASELINE_LR", f"{RUNS}::test_study_lr_schedules_move_the_image_by_their_rates"),
    Row(P, "lr_schedules", "Q1 alternatives: constant 1e-2, step decay 1e-1/1e-2/1e-3 in thirds",
        (1e-2, (1e-1, 1e-2, 1e-3)), MODULE, "(representation_study.CONSTANT_LR, representation_study.STEP_DECAY_LRS)",
        f"{RUNS}::test_study_lr_schedules_move_the_image_by_their_rates"),
    Row(P, "lr_schedules", "Q1 inverts without TV", (0.0, 0.0, 0.0), "seeds/004 Q1 (TV enters in Q2)",
        "tuple(v.tv for v in representation_study.STUDIES['lr_schedules'].variants)"),
    Row(P, "tv_sweep", "Q2: TV weight 0 (Q1), then larger portions", (0.0, 1e-3, 1e-2, 1e-1), "seeds/004 Q2",
        "representation_study.TV_SWEEP", f"{RUNS}::test_study_tv_sweep_lowers_tv_as_the_weight_rises"),
    Row(P, "feature_weight", "Q2.3: the feature loss's portion raised (the seed gives no values: × 1, 10, 100)",
        (1.0, 10.0, 100.0), "seeds/004 Q2.3", "representation_study.FEATURE_WEIGHTS",
        f"{RUNS}::test_study_feature_weight_trades_tv_for_feature_error"),
    Row(P, "feature_weight", "Q2.3 against Q2.2's increased TV weight", 1e-1, "seeds/004 Q2.2–Q2.3",
        "representation_study.FEATURE_WEIGHT_TV", f"{RUNS}::test_study_feature_weight_trades_tv_for_feature_error"),
    Row(P, "layers", "Q3: conv1_1, pool5, conv3_1 + fc6", {"shallow": ("conv1_1",), "deep": ("pool5",),
        "multi": ("conv3_1", "fc6")}, "seeds/004 Q3",
        "{k: v for k, v in representation_study.LAYERS['vgg'].items() if k != 'baseline'}",
        f"{RUNS}::test_study_layers_sum_the_loss_over_each_problems_layers"),
    Row(P, "layers", "Q1/Q2's layer (the seed names none)", "relu3_3", MODULE, "representation_study.BASELINE_LAYER"),
    Row(P, "resnet", "Q4: ResNet-18", "resnet18", "seeds/004 Q4", "representation_study.STUDIES['resnet'].net",
        f"{RUNS}::test_study_resnet_inverts_the_second_stage_and_its_first_conv"),
    Row(P, "resnet", "Q4: 'res2' (the second residual stage) and a block's first conv ('middle')",
        ("layer2.1", "layer2.0.conv1"), "seeds/004 Q4",
        "tuple(tfrestore.nets.resolve_layer('resnet18', l) for l in ('res2', 'middle2'))",
        f"{RUNS}::test_study_resnet_inverts_the_second_stage_and_its_first_conv"),
]
