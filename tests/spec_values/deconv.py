"""The learnable DFT deconvolution layer's notebooks (``../shared/spec/deconv_layer.md`` §2, §3, §6)."""
from spec_values import Row

P = "deconv"
T = "test_deconv.py::"
RESTORE = T + "test_restoration_experiments_degrade_train_and_start_as_the_notebooks"
FF = T + "test_four_factor_experiment_learns_the_inverse"
SR = T + "test_superres_reads_hr_lr_folder_pairs"
CLS = T + "test_classification_experiment_trains_both_arms_at_the_notebooks_settings"
RES = T + "test_resnet_experiment_deconv_arm_starts_as_the_bare_resnet"
M = "test_deconv_more.py::"
NB11 = M + "test_ssim_l1_experiment_trains_on_the_loss_and_beats_the_input"
SRCNN = M + "test_srcnn_experiments_train_the_arms"
LAYERS = M + "test_srcnn_arms_are_the_correct_and_the_notebook_layers"
AUDIO = M + "test_audio_experiment_trains_both_modes"


def arm(experiment: str, field: str, index: int = 0) -> str:
    return f"deconv.RESTORATIONS['{experiment}'][{index}].{field}"


def arms(experiment: str, field: str) -> str:
    return f"[a.{field} for a in deconv.RESTORATIONS['{experiment}']]"


ROWS = [
    # the layer the notebooks nb01–nb11 ran (§0, §1.6, §1.7, §6 item 1)
    Row(P, "*", "Feb-2023 layer: taps initialised to zeros (h = δ, the identity)", "zeros", "deconv_layer.md §1.7",
        "tfrestore.models.deconv.DeconvDFT2D().kernel_init",
        T + "test_zero_init_is_identity_and_gaussian_is_centred, " + RESTORE),
    Row(P, "*", "Feb-2023 layer: one filter shared by every channel (no filters argument)", None,
        "deconv_layer.md §1.6", "tfrestore.models.deconv.DeconvDFT2D().filters",
        T + "test_multichannel_equals_per_pair_sum_scaled_plus_bias"),
    Row(P, "*", "four-factor (zero-phase) form by default", True, "deconv_layer.md §1.3",
        "tfrestore.models.deconv.DeconvDFT2D().four_factor", T + "test_frequency_response_closed_form"),
    Row(P, "*", "epochs as gradient updates: ⌈50,000 / 32⌉ = 1,563 batches an epoch", 1563, "deconv_layer.md §2.3",
        "deconv._steps_for(1, 50_000, deconv.CLASSIFICATION_BATCH)", CLS),
    # nb01
    Row(P, "four_factor", "blur kernel h_true", [[1, 0.2, 0, 0], [0.2, 0, 0, 0]], "deconv_layer.md §2.1",
        "deconv.FOUR_FACTOR_H.tolist()", FF),
    Row(P, "four_factor", "Deconv2D((2,4))", (2, 4), "deconv_layer.md §2.1",
        arm("four_factor", "deconv['kernel_size']"), FF),
    Row(P, "four_factor", "Lena 48² framed by 24 px of zeros (96²)", (48, 24), "deconv_layer.md §2.1",
        f"({arm('four_factor', 'size')}, {arm('four_factor', 'pad')})", FF),
    Row(P, "four_factor", "Adam lr", 1e-2, "deconv_layer.md §2.1", arm("four_factor", "lr"), FF),
    Row(P, "four_factor", "2,000 full-batch steps", (2000, None), "deconv_layer.md §2.1",
        f"({arm('four_factor', 'epochs')}, {arm('four_factor', 'batch')})", FF),
    # nb03
    Row(P, "gopro", "Deconv2D((10,10))", (10, 10), "deconv_layer.md §2.2", arm("gopro", "deconv['kernel_size']"),
        RESTORE),
    Row(P, "gopro", "grey 128² centre crops framed by 64 px of zeros", (128, "crop", 64), "deconv_layer.md §2.2",
        f"({arm('gopro', 'size')}, {arm('gopro', 'load')}, {arm('gopro', 'pad')})", RESTORE),
    Row(P, "gopro", "Adam lr", 1e-3, "deconv_layer.md §2.2", arm("gopro", "lr"), RESTORE),
    Row(P, "gopro", "batch 16, 100 epochs", (16, 100), "deconv_layer.md §2.2",
        f"({arm('gopro', 'batch')}, {arm('gopro', 'epochs')})", RESTORE),
    # nb04
    Row(P, "classification", "Deconv2D((4,4)) in front of conv1", (4, 4), "deconv_layer.md §2.3, §3.1",
        "deconv.CLASSIFICATION_DECONV", CLS),
    Row(P, "classification", "Adam lr", 1e-4, "deconv_layer.md §2.3", "deconv.CLASSIFICATIONS['classification'].lr",
        CLS),
    Row(P, "classification", "5 epochs", 5, "deconv_layer.md §2.3", "deconv.CLASSIFICATIONS['classification'].epochs",
        CLS),
    Row(P, "classification", "batch 32", 32, "deconv_layer.md §2.3", "deconv.CLASSIFICATION_BATCH", CLS),
    Row(P, "classification", "ConvNetTiny2's head: 100 outputs whatever the classes argument", 100,
        "deconv_layer.md §3.1", "deconv.CLASSIFICATION_CLASSES", CLS),
    # nb05
    Row(P, "box", "3×3 box blur, linear with a zero border (conv2d 'same')", (3, "zero"), "deconv_layer.md §2.4",
        "(deconv.BOX_SIZE, deconv.BOX_BOUNDARY)", RESTORE),
    Row(P, "box", "128² images, unpadded (PAD_SIZE 0), and the README's SIZE // 4 padding", [(128, 0), (128, 32)],
        "deconv_layer.md §2.4, §5", "[(a.size, a.pad) for a in deconv.RESTORATIONS['box']]", RESTORE),
    Row(P, "box", "Deconv2D((4,4)) × a learnable scale starting at 0.5", [(4, 4), True, 0.5],
        "deconv_layer.md §2.4, §1.9",
        "[" + ", ".join(arm("box", f"deconv['{k}']") for k in ("kernel_size", "learnable_scale", "scale_init")) + "]",
        RESTORE),
    Row(P, "box", "Adam lr", [1e-3, 1e-3], "deconv_layer.md §2.4", arms("box", "lr"), RESTORE),
    Row(P, "box", "batch 8, 500 epochs", (8, 500), "deconv_layer.md §2.4",
        f"({arm('box', 'batch')}, {arm('box', 'epochs')})", RESTORE),
    # nb06
    Row(P, "gaussian", "5×5 Gaussian, σ 1, applied circularly (FFT)", (5, 1.0, "circular"), "deconv_layer.md §2.5",
        "(deconv.GAUSSIAN_SIZE, deconv.GAUSSIAN_SIGMA, deconv.GAUSSIAN_BOUNDARY)", RESTORE),
    Row(P, "gaussian", "kernel stored in the top-left corner (a (2, 2) shift): the notebook's arm", "top-left",
        "deconv_layer.md §2.5", arm("gaussian", "extra['kernel_anchor']", 1), RESTORE),
    Row(P, "gaussian", "128² framed by 32 px of zeros (192²)", (128, 32), "deconv_layer.md §2.5",
        f"({arm('gaussian', 'size')}, {arm('gaussian', 'pad')})", RESTORE),
    Row(P, "gaussian", "Deconv2D((4,4)), Adam lr 5e-3", ((4, 4), 5e-3), "deconv_layer.md §2.5",
        "(" + arm("gaussian", "deconv['kernel_size']") + ", " + arm("gaussian", "lr") + ")", RESTORE),
    Row(P, "gaussian", "batch 16, 300 epochs", (16, 300), "deconv_layer.md §2.5",
        f"({arm('gaussian', 'batch')}, {arm('gaussian', 'epochs')})", RESTORE),
    # nb07
    Row(P, "classification_resnet", "Deconv2D((4,4)) in front of ResNet18", (4, 4), "deconv_layer.md §2.6, §3.2",
        "deconv.CLASSIFICATION_DECONV", RES),
    Row(P, "classification_resnet", "Adam lr over all parameters", 1e-4, "deconv_layer.md §2.6",
        "deconv.CLASSIFICATIONS['classification_resnet'].lr", RES),
    Row(P, "classification_resnet", "10 epochs", 10, "deconv_layer.md §2.6",
        "deconv.CLASSIFICATIONS['classification_resnet'].epochs", RES),
    Row(P, "classification_resnet", "fc replaced by Linear(512 → 100)", 100, "deconv_layer.md §3.2",
        "deconv.CLASSIFICATION_CLASSES", RES),
    # nb08–nb10
    Row(P, "superres", "HR and LR brought to 384², framed by 48 px of zeros (480²)", [(384, "resize", 48)] * 3,
        "deconv_layer.md §2.7", "[(a.size, a.load, a.pad) for a in deconv.RESTORATIONS['superres']]", SR),
    Row(P, "superres", "losses: MSE (nb08), L1 (nb09), 1 − SSIM (nb10)", ["l2", "l1", "ssim"],
        "deconv_layer.md §2.7–§2.9", arms("superres", "loss"), SR),
    Row(P, "superres", "deconv kernels (6,6), (6,6), (2,4)", [(6, 6), (6, 6), (2, 4)], "deconv_layer.md §2.7–§2.9",
        "[a.deconv['kernel_size'] for a in deconv.RESTORATIONS['superres']]", SR),
    Row(P, "superres", "deconv Adam lr 1e-3 in all three", [1e-3] * 3, "deconv_layer.md §2.7–§2.9",
        arms("superres", "lr"), SR),
    Row(P, "superres", "3×3 conv baseline Adam lr: 1e-2 (nb08), 1e-3 (nb09, nb10)", [1e-2, 1e-3, 1e-3],
        "deconv_layer.md §2.7–§2.9, §6 item 11", arms("superres", "baseline_lr"), SR),
    Row(P, "superres", "conv baseline 3×3", [(3, 3)] * 3, "deconv_layer.md §2.7", arms("superres", "conv_size"), SR),
    Row(P, "superres", "batch 8, 200 epochs", [(8, 200)] * 3, "deconv_layer.md §2.7",
        "[(a.batch, a.epochs) for a in deconv.RESTORATIONS['superres']]", SR),
    # nb11
    Row(P, "ssim_l1", "loss (1 − SSIM) + L1", "ssim_l1", "deconv_layer.md §2.10", arm("ssim_l1", "loss"), NB11),
    Row(P, "ssim_l1", "deconv (2,4) vs conv 3×3, both Adam 1e-3", ((2, 4), (3, 3), 1e-3, 1e-3),
        "deconv_layer.md §2.10, §2.9", "(" + ", ".join(arm("ssim_l1", f) for f in (
            "deconv['kernel_size']", "conv_size", "lr", "baseline_lr")) + ")", NB11),
    Row(P, "ssim_l1", "nb10's data: 384² framed by 48 px, batch 8, 200 epochs", (384, 48, 8, 200),
        "deconv_layer.md §2.10, §2.7", "(" + ", ".join(arm("ssim_l1", f) for f in ("size", "pad", "batch", "epochs"))
        + ")", NB11),
    # nb12, nb13
    Row(P, "srcnn", "96² HR / 48² LR random co-located crops, MSE", (96, "l2"), "deconv_layer.md §2.11",
        "(deconv.SUPERRES_CNN['srcnn'].crop, deconv.SUPERRES_CNN['srcnn'].loss)", SRCNN),
    Row(P, "srcnn_dct", "32² HR / 16² LR crops, DCT-MSE", (32, "dct_mse"), "deconv_layer.md §2.12",
        "(deconv.SUPERRES_CNN['srcnn_dct'].crop, deconv.SUPERRES_CNN['srcnn_dct'].loss)", SRCNN),
    *[Row(P, e, "Adam lr: deconv 1e-3, CNN 1e-4", (1e-3, 1e-4), f"deconv_layer.md {sec}",
          f"(deconv.SUPERRES_CNN['{e}'].deconv_lr, deconv.SUPERRES_CNN['{e}'].cnn_lr)", SRCNN)
      for e, sec in (("srcnn", "§2.11"), ("srcnn_dct", "§2.12"))],
    *[Row(P, e, "batch 4, 30 epochs, 20 files", (4, 30, 20), f"deconv_layer.md {sec}",
          f"(deconv.SUPERRES_CNN['{e}'].batch, deconv.SUPERRES_CNN['{e}'].epochs, deconv.SR_FILES)", SRCNN)
      for e, sec in (("srcnn", "§2.11"), ("srcnn_dct", "§2.12"))],
    *[Row(P, e, "first layer 9×9, 64 maps (deconv filters or conv 1→64)", ((9, 9), 64), f"deconv_layer.md {sec}",
          f"(deconv.SUPERRES_CNN['{e}'].kernel_size, deconv.SUPERRES_CNN['{e}'].filters)", SRCNN)
      for e, sec in (("srcnn", "§2.11"), ("srcnn_dct", "§2.12"))],
    Row(P, "srcnn", "the notebook layer's reversal bug: 03-20 (filter and row axes)", "nb12", "deconv_layer.md §1.6",
        "deconv.SUPERRES_CNN['srcnn'].layer", LAYERS),
    Row(P, "srcnn_dct", "the notebook layer's reversal bug: 03-21 (output and input channel axes)", "nb13",
        "deconv_layer.md §1.6", "deconv.SUPERRES_CNN['srcnn_dct'].layer", LAYERS),
    *[Row(P, e, "arms: the correct deconv, the notebook's reversals, the CNN", ["spatial", bug, "cnn"],
          "deconv_layer.md §1.6, §6 item 1", f"[k for k, _ in deconv._sr_arms(deconv.SUPERRES_CNN['{e}']).values()]",
          LAYERS) for e, bug in (("srcnn", "nb12"), ("srcnn_dct", "nb13"))],
    # the 1-D layer and AudioDNN (HEAD train_1d_classification.py)
    Row(P, "audio", "Deconv1D two-factor by default, HEAD's fft2-over-channels bug off", (True, False),
        "deconv_layer.md §1.10", "(tfrestore.models.deconv.DeconvDFT1D().two_factor, "
        "tfrestore.models.deconv.DeconvDFT1D().channel_fft)", M + "test_1d_layer_matches_numpy_fft"),
    Row(P, "audio", "AudioDNN: Deconv1D(1 → 1, k = 2, no bias) → ReLU → Linear(89009 → 10)", (2, 89009, 10),
        "deconv_layer.md §1.10", "(deconv.AUDIO_KERNEL, deconv.AUDIO_LENGTH, 10)", AUDIO),
    Row(P, "audio", "the script's two runs: mode deconv and mode conv", ("deconv", "conv"), "deconv_layer.md §1.10",
        "deconv.AUDIO_MODES", AUDIO),
    Row(P, "audio", "Adam 1e-3, batch 32, 10 epochs", (1e-3, 32, 10), "deconv_layer.md §1.10",
        "(deconv.CLASSIFICATIONS['audio'].lr, deconv.CLASSIFICATION_BATCH, deconv.CLASSIFICATIONS['audio'].epochs)",
        AUDIO),
]
