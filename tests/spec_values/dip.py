"""The deep image prior (Ulyanov et al.): feature inversion from ``../shared/spec/mv2016.md`` §10 (also
``evaluation_protocols.md`` §3); the restoration tasks from the DIP notebooks the spec's §10 names the repository
of (DmitryUlyanov/deep-image-prior at 042e0d4: denoising, super-resolution, inpainting), which the spec does not
tabulate — the issue lists them (σ 25/255, steps, σ_p, lr 0.01, moving average 0.99, ×4 Lanczos)."""
from spec_values import Row

P = "dip"
X = "test_dip_experiments.py::"
RESTORE = X + "test_dip_restoration_tasks_fit_their_observation"
INVERT = X + "test_dip_feature_inversion_uses_the_notebooks_settings_and_lowers_the_feature_error"
ARCH = "test_dip_architecture.py::test_skip_generator_equals_the_reference_code_rebuilt_in_pytorch"
NB_DENOISE, NB_SR, NB_INPAINT = "DIP denoising.ipynb", "DIP super-resolution.ipynb", "DIP inpainting notebook"
INV = "mv2016.md §10"
G = "dip.INVERT.generator."
R = "tfrestore.models.dip.RESTORATION_NET."


def task(name: str, field: str) -> str:
    return f"dip.TASKS['{name}'].{field}"


ROWS = [
    # every task
    Row(P, "*", "input code: 32 channels", 32, INV, "tfrestore.models.dip.INPUT_CHANNELS", RESTORE + ", " + INVERT),
    Row(P, "*", "input code: U(0, 1) noise × 0.1 (get_noise, var 1/10)", 0.1, INV, "tfrestore.models.dip.INPUT_SCALE",
        RESTORE + ", " + INVERT),
    Row(P, "*", "LeakyReLU slope", 0.2, "DIP models/common.py (act)", "tfrestore.models.dip.LEAKY_SLOPE", ARCH),
    # the restoration net: get_net(..., 'skip', skip_n33d=128, skip_n33u=128, skip_n11=4, num_scales=5, bilinear)
    Row(P, "*", "restoration net: 5 scales of 128 channels down and up, 4 skip channels",
        ((128,) * 5, (128,) * 5, (4,) * 5), NB_DENOISE,
        f"({R}channels_down, {R}channels_up, {R}channels_skip)", ARCH + ", " + RESTORE),
    Row(P, "*", "restoration net: 3×3 convolutions, 1×1 skips", (3, 3, 1), NB_DENOISE,
        f"({R}kernel_down, {R}kernel_up, {R}kernel_skip)", ARCH),
    Row(P, "*", "restoration net: reflection padding, stride-2 down-sampling, bilinear up-sampling",
        ("reflection", "stride", "bilinear"), NB_DENOISE, f"({R}pad, {R}downsample, {R}upsample)",
        ARCH + ", " + RESTORE),
    # denoise
    Row(P, "denoise", "σ = 25 (0–255)", 25.0, NB_DENOISE, "dip.SIGMA", RESTORE),
    Row(P, "denoise", "3,000 iterations", 3000, NB_DENOISE, task("denoise", "steps")),
    Row(P, "denoise", "input noise σ_p = 1/30", 1 / 30, NB_DENOISE, task("denoise", "noise_std"), RESTORE),
    Row(P, "denoise", "Adam lr", 0.01, NB_DENOISE, task("denoise", "learning_rate"), RESTORE),
    Row(P, "denoise", "moving average of the outputs (exp_weight)", 0.99, NB_DENOISE, "tfrestore.models.dip.EMA_DECAY",
        "test_network_priors.py::test_moving_average_of_outputs_follows_the_papers_rule"),
    # superres
    Row(P, "superres", "×4", 4, NB_SR, "dip.FACTOR", RESTORE),
    Row(P, "superres", "Lanczos down-sampler", "lanczos", NB_SR, "dip.DOWNSAMPLER", RESTORE),
    Row(P, "superres", "2,000 iterations", 2000, NB_SR, task("superres", "steps")),
    Row(P, "superres", "input noise σ_p", 0.03, NB_SR, task("superres", "noise_std"), RESTORE),
    Row(P, "superres", "Adam lr", 0.01, NB_SR, task("superres", "learning_rate"), RESTORE),
    # inpaint
    Row(P, "inpaint", "3,000 iterations", 3000, NB_INPAINT, task("inpaint", "steps")),
    Row(P, "inpaint", "input noise σ_p", 0.03, NB_INPAINT, task("inpaint", "noise_std"), RESTORE),
    Row(P, "inpaint", "Adam lr", 0.01, NB_INPAINT, task("inpaint", "learning_rate"), RESTORE),
    # deblur: no DIP notebook; tfrestore runs it with the denoising notebook's settings
    Row(P, "deblur", "no notebook: the denoising settings (3,000 iterations, σ_p 1/30, lr 0.01)",
        (3000, 1 / 30, 0.01), NB_DENOISE,
        f"({task('deblur', 'steps')}, {task('deblur', 'noise_std')}, {task('deblur', 'learning_rate')})", RESTORE),
    # invert: feature_inversion.ipynb
    Row(P, "invert", "network alexnet_caffe (Caffe AlexNet)", "alexnet", INV, "dip.INVERT.net", INVERT),
    Row(P, "invert", "target layer fc6", "fc6", INV, "dip.INVERT.layer", INVERT),
    Row(P, "invert", "loss: nn.MSELoss (mean) between stored and current features", "mean", INV,
        "dip.INVERT.loss.split()[0]", INVERT),
    Row(P, "invert", "skip net: 6 scales, channels 16/32/64/128/128/128 down and up",
        ((16, 32, 64, 128, 128, 128), (16, 32, 64, 128, 128, 128)), INV, f"({G}channels_down, {G}channels_up)",
        ARCH + ", " + INVERT),
    Row(P, "invert", "4 skip channels per scale", (4,) * 6, INV, G + "channels_skip", ARCH),
    Row(P, "invert", "kernel sizes 7, 7, 5, 5, 3, 3 (down and up)", ((7, 7, 5, 5, 3, 3), (7, 7, 5, 5, 3, 3)), INV,
        f"({G}kernel_down, {G}kernel_up)", ARCH),
    Row(P, "invert", "average-pool down-sampling, nearest up-sampling, zero padding", ("avg", "nearest", "zero"),
        INV, f"({G}downsample, {G}upsample, {G}pad)", ARCH + ", " + INVERT),
    Row(P, "invert", "fixed input code (no input noise)", 0.0, INV, task("invert", "noise_std"), INVERT),
    Row(P, "invert", "Adam lr 0.001 over the network weights only", 1e-3, INV, task("invert", "learning_rate"),
        INVERT),
    Row(P, "invert", "3,100 iterations", 3100, INV, task("invert", "steps")),
    Row(P, "invert", "quirk: imsize 224 for 'alexnet_caffe' (227 only for 'alexnet')", 224, INV,
        "dip.INVERT.imsize"),
    Row(P, "invert", "network input 256² (imsize_net), output cropped to the target", 256, INV,
        "dip.INVERT.generator_size_for(dip.INVERT.imsize)",
        "test_dip_architecture.py::test_feature_inversion_generator_at_the_notebooks_sizes"),
]
