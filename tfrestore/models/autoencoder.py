"""The autoencoder prior (the seeds' deep-image-prior exercise, ``../shared/seeds/003_*``).

A convolutional autoencoder on 28×28 digits (pixels mapped to [−1, 1], as the exercise) with a sigmoid latent of
size 10 or 100. The exercise's finding: a sigmoid keeps z in [0, 1]^d but the codes do not cover that cube, so an
out-of-class image can land where the decoder never learnt anything. The fix it settled on is a *coverage*
regulariser matching, over the batch, each latent dimension's variance and kurtosis to those of U(0, 1)
(1/12 and 9/5), weighted 1 against 20 for the reconstruction. Its other tries are kept as options:

=================  ===========================================================================================
``var_kurt``        Σ_d (var_d − 1/12)² + (kurt_d − 9/5)² over the batch (the final choice; the default)
``moments``         the same plus (mean_d − 1/2)² (collapses the codes towards the centre, as the exercise saw)
``kl_vector``       KL(z_b / Σ_d z_bd ‖ uniform over d), per vector, averaged (made z uniform *within* a vector)
``kl_batch_sum``    KL(Σ_b z_bd / Σ_bd z_bd ‖ uniform over d) (the batch sum per coordinate; pulled codes inward)
``none``            no regulariser (the exercise's Q1/Q2 network)
=================  ===========================================================================================

Each question's network is trained with its own settings (:data:`QUESTIONS`): Q1 and Q2 50 epochs of batch 48
at lr 1e-3 without the regulariser (latent 100 and 10), Q4 100 epochs of batch 48 at lr 5e-4 with it.

Restoration with the prior minimises ‖m ⊙ (x − y)‖² / (2σ²) + ‖AE(x) − x‖² over x (:class:`AutoencoderTerm`).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfrestore import data
from tfrestore.core import files, log, store
from tfrestore.train import training
from tfrestore.optimize.objectives import Context, Term

LOG = log.logger(__name__)

COVERAGE_MODES = ("var_kurt", "moments", "kl_vector", "kl_batch_sum", "none")
UNIFORM_MEAN, UNIFORM_VAR, UNIFORM_KURTOSIS = 0.5, 1.0 / 12.0, 9.0 / 5.0
RECONSTRUCTION_WEIGHT = 20.0     # "the loss for the AE had 20 times more weight" (exercise, Q4)
VAL_EVERY, CHECKPOINT_EVERY = 100, 500
# the loss and gradient as one XLA cluster (Trainer jit_compile): the step is small convolutions and many batch-norm
# and elementwise ops, dispatch-bound; 6.4 → 4.9 ms a Q4 step on 2 CPU cores, losses equal to ~1e-6 (issue 24)
JIT_COMPILE = True


@dataclasses.dataclass(frozen=True)
class Question:
    """How the exercise trained the network of one of its questions (seed 003: the answers' text and the saved
    models' names ``em-M1_dm-M1_e-<epochs>_b-<batch>_z-<latent>_lr-<lr>``). An epoch is one pass over the training
    digits, so the steps depend on the data (:meth:`config`)."""
    description: str
    latent: int
    coverage: str
    epochs: int
    batch: int
    learning_rate: float
    reconstruction_weight: float = 1.0

    def steps(self, n_train: int) -> int:
        """epochs × ⌈n_train / batch⌉ (1,437 bundled digits in batches of 48: 30 steps an epoch)."""
        return self.epochs * -(-n_train // self.batch)

    def config(self, n_train: int, *, steps: int | None = None, seed: int = 0) -> training.TrainingConfig:
        return training.TrainingConfig(steps=steps or self.steps(n_train), batch=self.batch,
                                       learning_rate=self.learning_rate, val_every=VAL_EVERY,
                                       checkpoint_every=CHECKPOINT_EVERY, seed=seed)


# Q3 trains nothing (it reads Q2's codes); Q5's restorations use Q4's network. Q1 and Q2 share the saved model
# "e-50_b-48_z-10_lr-0.001" (Q1's answer shows its 100-d latent, Q2 retrains with 10); Q4's is
# "e-100_b-48_z-10_lr-0.0005_..._method-5".
QUESTIONS = {
    "Q1": Question("Q1: the autoencoder with a 100-d latent", latent=100, coverage="none", epochs=50, batch=48,
                   learning_rate=1e-3),
    "Q2": Question("Q2: retrained with a 10-d latent (scatter by class)", latent=10, coverage="none", epochs=50,
                   batch=48, learning_rate=1e-3),
    "Q4": Question("Q4: variance and kurtosis matched to U(0, 1) over the batch, the AE loss weighted 20",
                   latent=10, coverage="var_kurt", epochs=100, batch=48, learning_rate=5e-4,
                   reconstruction_weight=RECONSTRUCTION_WEIGHT),
}


def unregularised_question(latent: int) -> str:
    """The exercise's network without the regulariser for a latent size: Q1's (100) or Q2's (10)."""
    return "Q1" if latent == QUESTIONS["Q1"].latent else "Q2"


def build(latent: int = 10, size: int = 28, seed: int = 0) -> keras.Model:
    """Encoder (two stride-2 3×3 convolutions of 32 and 64 channels, each with batch norm and ReLU; dense to
    ``latent``, sigmoid) and a mirrored decoder (dense to size/4 × size/4 × 64, two stride-2 transposed
    convolutions, batch norm and ReLU between, tanh). Input and output [N, size, size, 1] in [−1, 1]; ``size``
    divisible by 4. The model has ``encoder`` and ``decoder`` sub-models.

    Batch norm after the hidden convolutions is what lets it train on the (similar, smooth) up-sampled digits:
    without it the decoder settles on the mean digit within an epoch and the codes collapse (measured); it is
    not placed before the sigmoid, which would spread the codes by itself and hide what the coverage
    regulariser does."""
    if size % 4:
        raise ValueError(f"the autoencoder needs a size divisible by 4, got {size}")
    L = keras.layers
    init = lambda k: keras.initializers.GlorotUniform(seed=seed + k)       # noqa: E731
    x_in = keras.Input((size, size, 1), name="image")
    h = x_in
    for k, channels in enumerate((32, 64)):
        h = L.Conv2D(channels, 3, 2, "same", kernel_initializer=init(k), name=f"enc_conv{k + 1}")(h)
        h = L.ReLU()(L.BatchNormalization(name=f"enc_bn{k + 1}")(h))
    z = L.Dense(latent, activation="sigmoid", kernel_initializer=init(2), name="latent")(L.Flatten()(h))
    encoder = keras.Model(x_in, z, name="encoder")
    z_in = keras.Input((latent,), name="code")
    q = size // 4
    h = L.Dense(q * q * 64, kernel_initializer=init(3), name="dec_dense")(z_in)
    h = L.Reshape((q, q, 64))(L.ReLU()(L.BatchNormalization(name="dec_bn0")(h)))
    h = L.Conv2DTranspose(32, 3, 2, "same", kernel_initializer=init(4), name="dec_deconv1")(h)
    h = L.ReLU()(L.BatchNormalization(name="dec_bn1")(h))
    out = L.Conv2DTranspose(1, 3, 2, "same", activation="tanh", kernel_initializer=init(5), name="dec_deconv2")(h)
    decoder = keras.Model(z_in, out, name="decoder")
    return keras.Model(x_in, decoder(encoder(x_in)), name=f"autoencoder_z{latent}")


def coverage_loss(z: tf.Tensor, mode: str = "var_kurt") -> tf.Tensor:
    """The latent-coverage regulariser of a batch of codes z [B, d] in (0, 1) (see the module table)."""
    if mode not in COVERAGE_MODES:
        raise ValueError(f"unknown coverage mode {mode!r}; choose one of {', '.join(COVERAGE_MODES)}")
    z = tf.convert_to_tensor(z, tf.float32)
    d = tf.cast(tf.shape(z)[1], tf.float32)
    if mode == "none":
        return tf.constant(0.0)
    if mode in ("var_kurt", "moments"):
        mean = tf.reduce_mean(z, axis=0)
        c = z - mean
        var = tf.reduce_mean(c ** 2, axis=0)
        kurt = tf.reduce_mean(c ** 4, axis=0) / (var ** 2 + 1e-12)
        loss = tf.reduce_sum((var - UNIFORM_VAR) ** 2 + (kurt - UNIFORM_KURTOSIS) ** 2)
        if mode == "moments":
            loss += tf.reduce_sum((mean - UNIFORM_MEAN) ** 2)
        return loss
    if mode == "kl_vector":
        p = z / tf.reduce_sum(z, axis=1, keepdims=True)
        return tf.reduce_mean(tf.reduce_sum(p * tf.math.log(p * d + 1e-12), axis=1))
    s = tf.reduce_sum(z, axis=0)
    p = s / tf.reduce_sum(s)
    return tf.reduce_sum(p * tf.math.log(p * d + 1e-12))


def loss_fn(coverage: str = "var_kurt", reconstruction_weight: float = RECONSTRUCTION_WEIGHT):
    """The training loss for :class:`tfrestore.train.training.Trainer`: weight·MSE + coverage, on ``batch["x"]`` in
    [0, 1] (mapped to [−1, 1] here)."""
    if coverage not in COVERAGE_MODES:
        raise ValueError(f"unknown coverage mode {coverage!r}; choose one of {', '.join(COVERAGE_MODES)}")

    def fn(model, batch, training):
        x = batch["x"] * 2.0 - 1.0
        z = model.get_layer("encoder")(x, training=training)
        rec = tf.reduce_mean(tf.square(model.get_layer("decoder")(z, training=training) - x))
        cov = coverage_loss(z, coverage)
        return {"loss": reconstruction_weight * rec + cov, "reconstruction": rec, "coverage": cov}

    return fn


def codes(model: keras.Model, images01: np.ndarray, batch: int = 512) -> np.ndarray:
    """Latent codes [N, d] of images [N, H, W, 1] in [0, 1]."""
    enc = model.get_layer("encoder")
    return np.concatenate([np.asarray(enc(images01[i:i + batch] * 2 - 1, training=False))
                           for i in range(0, len(images01), batch)])


def reconstruct(model: keras.Model, images01: np.ndarray) -> np.ndarray:
    """AE(x) for x [N, H, W, 1] in [0, 1], returned in [0, 1]."""
    return (np.asarray(model(images01 * 2 - 1, training=False)) + 1) / 2


def out_of_class_probes(digit01: np.ndarray, photo01: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """The exercise's five out-of-class probes as [H, W, 1] in [0, 1]: a constant 0.5 image (in the [−1, 1]
    model space, i.e. 0.75 here), that constant plus N(0, 0.5²) noise (model space), the negative of a digit, the
    digit flipped left–right, and a grey photo."""
    h, w = digit01.shape[:2]
    rng = np.random.default_rng(seed)
    const = np.full((h, w, 1), 0.75, np.float32)
    noisy = np.clip(const + rng.normal(0, 0.25, const.shape), 0, 1).astype(np.float32)
    return {"const": const, "const+noise": noisy, "negative": (1 - digit01).astype(np.float32),
            "flipped": digit01[:, ::-1].astype(np.float32), "photo": photo01.astype(np.float32)}


class AutoencoderTerm(Term):
    """‖AE(x) − x‖² per problem (summed over pixels) for a canvas x in the model's [−1, 1] space: the exercise's
    prior term; restorations with it optimise in that space."""

    name = "ae_prior"

    def __init__(self, model: keras.Model):
        self.model = model
        super().__init__()

    def value(self, ctx: Context) -> tf.Tensor:
        x = ctx.canvas
        return tf.reduce_sum(tf.square(self.model(x, training=False) - x), axis=[1, 2, 3])


def key(*, question: str = "Q4", latent: int | None = None, steps: int | None = None, source=None,
        seed: int = 0) -> store.Key:
    """The store key of a question's network trained with these settings (``steps`` None: the question's own
    schedule on this data): the question's loss and optimiser settings, the latent size, the steps, the data and the
    seed — so ``--task=train --steps=N`` and a later task asking for the same N share one artifact."""
    q = _question(question)
    latent = latent or q.latent
    n_train = len(data.digits(28, source, "train")[0])
    cfg = q.config(n_train, steps=steps, seed=seed)
    return store.Key("autoencoder", f"{question}_z{latent}", {
        "question": question, "latent": latent, "coverage": q.coverage,
        "reconstruction_weight": q.reconstruction_weight, "data": training.data_tag(source),
        "training": cfg.identity()})


def command(*, question: str = "Q4", latent: int | None = None, steps: int | None = None, source=None,
            seed: int = 0) -> str:
    """The command line that trains (or, with ``--overwrite``, rebuilds) that network."""
    q = _question(question)
    latent = latent or q.latent
    return ("python main.py --paper=ae_prior --task=train" + (f" --steps={steps}" if steps else "") +
            (f" --latent={latent}" if latent != 10 else "") + (f" --data={source}" if source is not None else "") +
            (f" --seed={seed}" if seed else ""))


def stored(*, question: str = "Q4", latent: int | None = None, steps: int | None = None, source=None,
           seed: int = 0) -> store.Artifact | None:
    """That network's verified artifact, or None when it has not been trained (a damaged one: ArtifactError)."""
    return store.load(key(question=question, latent=latent, steps=steps, source=source, seed=seed))


def trained(*, question: str = "Q4", latent: int | None = None, steps: int | None = None, source=None,
            seed: int = 0, progress: bool = True, strategy=None, overwrite: bool = False) -> tuple[keras.Model, dict]:
    """The autoencoder of one of the exercise's questions (:data:`QUESTIONS`: latent size, regulariser, epochs,
    batch, learning rate, loss weight) from the store (``autoencoder/<question>_z<latent>/<digest>/``; trained
    there first, with checkpoints in its ``.work`` folder and TensorBoard, when missing or with ``overwrite``);
    returns (model, summary). ``latent`` overrides the question's; ``steps`` (default: the question's epochs on
    this data) the training length. The summary holds the validation losses before training (``initial_val``)
    and the trainer's history."""
    q = _question(question)
    latent = latent or q.latent
    k = key(question=question, latent=latent, steps=steps, source=source, seed=seed)
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = build(latent, seed=seed)

    def make(work: Path, out: Path) -> dict:
        summary = _fit(model, work, question=question, latent=latent, steps=steps, source=source, seed=seed,
                       progress=progress, strategy=strategy)
        files.save_keras_weights(out / "model.weights.h5", model)
        files.write_json(out / "summary.json", summary)
        training.keep_logs(work, out)
        return {k_: v for k_, v in summary.items() if k_ != "history"}

    art, built = training.stored(k, make, command=command(question=question, latent=latent, steps=steps,
                                                          source=source, seed=seed),
                                 overwrite=overwrite, what=f"autoencoder of {question}")
    if not built:
        model.load_weights(str(art.file("model.weights.h5")))
    return model, json.loads(art.file("summary.json").read_text())


def _fit(model: keras.Model, work: Path, *, question: str, latent: int, steps: int | None, source, seed: int,
         progress: bool, strategy) -> dict:
    """Train ``model`` as ``question`` says, checkpointing in ``work``; the summary with the run's settings."""
    q = _question(question)
    x, _, desc = data.digits(28, source, "train")
    xv, _, _ = data.digits(28, source, "val")
    cfg = q.config(len(x), steps=steps, seed=seed)
    probe = xv[:8]

    def images(m):
        return {"inputs": probe, "reconstructions": reconstruct(m, probe)}

    trainer = training.Trainer(model, loss_fn(q.coverage, q.reconstruction_weight), {"x": x}, cfg, val={"x": xv},
                               strategy=strategy, images_fn=images, name="autoencoder", jit_compile=JIT_COMPILE,
                               describe={"question": question, "latent": latent, "coverage": q.coverage,
                                         "reconstruction_weight": q.reconstruction_weight, "data": desc})
    if progress:
        log.say(LOG, f"training the autoencoder prior of {question} ({latent}-d latent, coverage {q.coverage}, "
                     f"{cfg.steps} steps of {cfg.batch} at lr {cfg.learning_rate:g}) on {desc}")
    initial_val = trainer.evaluate({"x": xv})
    summary = trainer.run(work, logdir=work / "tb", resume=True, progress=progress)
    summary.update({"data": desc, "question": question, "latent": latent, "coverage": q.coverage,
                    "batch": cfg.batch, "learning_rate": cfg.learning_rate,
                    "reconstruction_weight": q.reconstruction_weight, "initial_val": initial_val,
                    "history": trainer.history})
    return summary


def _question(question: str) -> Question:
    if question not in QUESTIONS:
        raise ValueError(f"unknown question {question!r}; the exercise trains {', '.join(QUESTIONS)}")
    return QUESTIONS[question]
