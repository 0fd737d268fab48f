"""The autoencoder prior of the deep-image-prior exercise (``../shared/seeds/003_*``: its answers to Q1–Q5 and the
names of its saved models, ``em-M1_dm-M1_e-<epochs>_b-<batch>_z-<latent>_lr-<lr>``). The spec has no section on
it; the seed is the source."""
from spec_values import Row

P = "ae_prior"
SEED = "seed 003"
N = "test_network_priors.py::"
TRAIN = N + "test_ae_prior_train_task_trains_q2_and_q4_with_their_settings"
SCATTER = N + "test_ae_prior_scatter_task_shows_the_regulariser_spreading_the_codes"
DENOISE = N + "test_autoencoder_prior_raises_psnr_on_noisy_digits"
INPAINT = N + "test_autoencoder_prior_fills_in_missing_pixels"
LEARN = N + "test_autoencoder_learns_the_digits_and_resumes_exactly"


def q(name: str) -> str:
    x = f"ae_prior.QUESTIONS['{name}']"
    return f"({x}.latent, {x}.coverage, {x}.epochs, {x}.batch, {x}.learning_rate)"


ROWS = [
    # each question's own training (the issue: Q1 was trained with Q4's settings)
    Row(P, "*", "Q1: latent 100, no regulariser, 50 epochs, batch 48, lr 1e-3 (model e-50_b-48_lr-0.001)",
        (100, "none", 50, 48, 1e-3), SEED + " Q1, submission files", q("Q1"), TRAIN),
    Row(P, "*", "Q2: retrained with latent 10, same schedule (model e-50_b-48_z-10_lr-0.001)",
        (10, "none", 50, 48, 1e-3), SEED + " Q2, submission files", q("Q2"), TRAIN),
    Row(P, "*", "Q4: latent 10, variance and kurtosis over the batch, 100 epochs, batch 48, lr 5e-4 "
        "(model e-100_b-48_z-10_lr-0.0005_method-5)", (10, "var_kurt", 100, 48, 5e-4),
        SEED + " Q4, submission files", q("Q4"), TRAIN + ", " + LEARN),
    Row(P, "*", "Q4: the AE loss weighted 20 against the regulariser", 20.0, SEED + " Q4",
        "ae_prior.QUESTIONS['Q4'].reconstruction_weight", LEARN),
    Row(P, "*", "U(0, 1) targets: variance 1/12, kurtosis 9/5", (1 / 12, 9 / 5), SEED + " Q4",
        "(tfrestore.models.autoencoder.UNIFORM_VAR, tfrestore.models.autoencoder.UNIFORM_KURTOSIS)",
        N + "test_coverage_regulariser_against_numpy"),
    # the tasks
    Row(P, "train", "the unregularised network beside Q4's: Q2's at latent 10, Q1's at 100", ("Q2", "Q1"),
        SEED + " Q1, Q2", "(tfrestore.models.autoencoder.unregularised_question(10), "
        "tfrestore.models.autoencoder.unregularised_question(100))", TRAIN),
    Row(P, "scatter", "out-of-class probes: const 0.5, const + noise (std 0.5), negative, flipped, a photo",
        ["const", "const+noise", "negative", "flipped", "photo"], SEED + " Q4",
        "list(tfrestore.models.autoencoder.out_of_class_probes(np.zeros((28, 28, 1)), np.zeros((28, 28, 1))))", SCATTER),
    Row(P, "scatter", "the constant probe is 0.5 in the model's [−1, 1] space", 0.5, SEED + " Q4",
        "float(tfrestore.models.autoencoder.out_of_class_probes(np.zeros((28, 28, 1)), np.zeros((28, 28, 1)))"
        "['const'].mean() * 2 - 1)", SCATTER),
    Row(P, "denoise", "σ 0.1 and 0.5", (0.1, 0.5), SEED + " Q5", "ae_prior.SIGMAS", DENOISE),
    Row(P, "denoise", "compared after 1,000 and 10,000 iterations", (1000, 10000), SEED + " Q5",
        "ae_prior.ITERATIONS", DENOISE),
    Row(P, "denoise", "restores with the final (Q4) network", "Q4", SEED + " Q4–Q5", "ae_prior.RESTORATION_QUESTION",
        DENOISE),
    Row(P, "inpaint", "compared after 1,000 and 10,000 iterations", (1000, 10000), SEED + " Q5",
        "ae_prior.ITERATIONS", INPAINT),
    Row(P, "inpaint", "restores with the final (Q4) network", "Q4", SEED + " Q4–Q5", "ae_prior.RESTORATION_QUESTION",
        INPAINT),
]
