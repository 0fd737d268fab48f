"""What a log point costs and changes: a generator's log point reads its image from a compiled call (no eager
pass) that leaves batch-norm moving statistics alone, and the checkpoints of the one Loop stay under their share
of the wall time."""
import io
import time

import keras
import numpy as np
import tensorflow as tf

from tfrestore.core.loop import Callback, Checkpoint, Loop, Measurement
from tfrestore.models import dip
from tfrestore.optimize import callbacks, optim
from tfrestore.optimize import objectives as O
from tfrestore.optimize.engine import Optimization

SIZE = 32


def _dip_run(steps: int, log_every: int, seed: int = 0):
    """A tiny deep-image-prior optimisation (one scale of 4 channels at 32², input noise on, batch norm in
    training mode as the paper runs it): (run, parameterisation, target)."""
    target = np.random.default_rng(1).uniform(0, 1, (1, SIZE, SIZE, 3)).astype(np.float32)
    p = dip.generator_parameterization(SIZE, noise_std=0.05, channels_down=(4,), channels_up=(4,),
                                       channels_skip=(2,), seed=seed)
    run = Optimization(O.DataTerm(target, sigma=0.1), p, optim.Adam(epsilon_form="paper"),
                       optim.Schedule([optim.Stage(steps, 0.01, jitter=False)]), seed=seed, log_every=log_every)
    return run, p, target


def _moving_statistics(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: v.numpy().copy() for v in model.non_trainable_variables}


class _Watch(Callback):
    """At every log point: the image the callbacks see, the moving statistics, and how the generator was called."""

    def __init__(self, p):
        self.images, self.stats, self.eager_calls = [], [], []
        original = p.image

        def image(seed=None):               # records whether the generator runs outside a compiled function
            self.eager_calls.append(tf.executing_eagerly())
            return original(seed)
        p.image = image

    def on_log_point(self, loop, point):
        self.images.append(loop.stepper.images())
        self.stats.append(_moving_statistics(loop.stepper.param.model))


def test_log_points_change_nothing_and_show_the_forward_pass():
    """The same optimisation with a log point after every step and with none: identical moving statistics,
    weights and moving average at the end (a log point that ran the generator in training mode would have moved
    the statistics once more per point), no eager generator call; and the image the last log point handed its
    callbacks equals a separate copy of the generator (same weights) on the noise-free code with batch
    statistics, the measured loss the data term of that image."""
    logged, p_logged, target = _dip_run(4, log_every=1)
    plain, p_plain, _ = _dip_run(4, log_every=1)
    before = _moving_statistics(p_logged.model)
    watch = _Watch(p_logged)
    result = logged.run([callbacks.SavedIterate(1), watch, callbacks.Progress(stream=io.StringIO())])
    plain.step(4)
    assert len(watch.stats) == 4
    moved = [k for k in before if not np.array_equal(before[k], watch.stats[0][k])]
    assert moved, "the optimisation step itself must move the moving statistics (the test would be vacuous)"
    for k, v in _moving_statistics(p_plain.model).items():
        np.testing.assert_array_equal(_moving_statistics(p_logged.model)[k], v, err_msg=k)
    for a, b in zip(p_logged.variables, p_plain.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(p_logged.average(), p_plain.average())
    assert not any(watch.eager_calls), "the generator ran eagerly at a log point"

    twin = keras.models.clone_model(p_logged.model)
    twin.set_weights(p_logged.model.get_weights())
    want = twin(p_logged.z, training=True).numpy()
    np.testing.assert_allclose(watch.images[-1], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.images, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.saved_iterate, want, rtol=1e-5, atol=1e-6)
    data = ((want.astype(np.float64) - target) ** 2).sum() / (2 * 0.1 ** 2)
    np.testing.assert_allclose(result.loss[0], data, rtol=1e-4)


class _SlowStepper:
    """A stepper whose blocks take ``block_s`` seconds and whose state is a large variable (so a save costs
    something), with a log point after every step."""

    def __init__(self, steps: int, block_s: float):
        self.total_steps, self.block_s = steps, block_s
        self.step = tf.Variable(0, dtype=tf.int64)
        self.weights = tf.Variable(tf.zeros([256, 1024]))

    @property
    def steps_done(self):
        return int(self.step.numpy())

    def log_points(self):
        return list(range(1, self.total_steps + 1))

    def state(self):
        return {"step": self.step, "weights": self.weights}

    def begin(self):
        pass

    def advance(self, stop):
        time.sleep(self.block_s * (stop - self.steps_done))
        self.step.assign(stop)

    def measure(self):
        return Measurement(loss=np.zeros(1))

    def describe(self):
        return {}


def test_step_checkpoints_stay_within_their_share_of_the_run(tmp_path):
    """Checkpoints asked for at every step: the step-triggered ones stop once they have taken max_share of the
    wall time, so checkpointing costs at most that share plus one save and the final save (measured as each
    save's own duration by the callback, and checked against the run's wall time)."""
    stepper = _SlowStepper(60, block_s=0.01)
    ckpt = Checkpoint(tmp_path / "ckpt", every=1, max_share=0.02, say=lambda _: None)
    durations, save = [], ckpt.save

    def timed_save(step):
        t = time.perf_counter()
        save(step)
        durations.append(time.perf_counter() - t)
    ckpt.save = timed_save
    summary = Loop(stepper, [ckpt]).run()
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")).endswith("ckpt-60")     # the final one is written
    assert len(durations) < 30, f"{len(durations)} saves in 60 steps: the share bound did not act"
    assert sum(durations) <= 0.02 * summary.seconds + 2 * max(durations), (durations, summary.seconds)
    np.testing.assert_allclose(summary.checkpoint_seconds, sum(durations), rtol=0.05, atol=2e-3)


def test_training_validation_at_a_log_point_is_compiled_and_exact():
    """A Trainer's log point evaluates the validation set through a traced graph (no eager loss call) in chunks,
    and the mean it reports equals NumPy's MSE of the same linear model over all rows."""
    from tfrestore.train import training
    rng = np.random.default_rng(0)
    x, xv = rng.normal(size=(64, 3)).astype(np.float32), rng.normal(size=(300, 3)).astype(np.float32)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    eager = []

    def loss(m, batch, training_):
        eager.append(tf.executing_eagerly())
        return {"loss": tf.reduce_mean(tf.square(m(batch["x"], training=training_) - 1.0))}
    tr = training.Trainer(model, loss, {"x": x}, training.TrainingConfig(steps=2, batch=8, val_every=1),
                          val={"x": xv})
    tr.begin()
    eager.clear()                                   # begin() probes the loss terms' names eagerly once
    tr.advance(1)
    m = tr.measure()
    w = model.get_weights()[0].astype(np.float64)
    np.testing.assert_allclose(m.scalars["val_loss"], np.mean((xv @ w - 1.0) ** 2), rtol=1e-5)
    assert eager and not any(eager), "the validation loss ran eagerly"
