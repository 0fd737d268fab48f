"""Learning-rate breakpoints of tfrestore.train.training: tfrestore's own before-the-step rule and the thesis' rule
(learned_inverters.md §3 = mv2016.md §9.2), checked against a hand-written transcription of the thesis' loop and
through a real Trainer run whose per-step updates reveal the rate it used."""
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.models import inverters as I
from tfrestore.train import training


def thesis_rates(lr_lower_points, n_iterations):
    """The thesis' ``train_on_dataset`` loop, transcribed: the rate fed at each count 1 … n."""
    lr, points, fed = lr_lower_points[0][1], list(lr_lower_points), []
    for count in range(1, n_iterations + 1):
        fed.append(lr)                                   # sess.run(train_op, feed_dict={lr_pl: lr})
        if points and points[0][0] <= count:             # after the step: the next point, if reached
            lr = points[0][1]
            points = points[1:]
    return np.array(fed, np.float32)


SCHEDULES = {
    "solo (out of order, spec §4.1)": (((0, 3e-4), (3000, 1e-4), (2000, 3e-5)), 3000),
    "merged (spec §4.2)": (((0, 3e-6), (1000, 1e-6), (2000, 3e-7)), 3000),
    "VGG DC3 continuation (§4.1)": (((0, 1e-3), (1000, 3e-4), (4000, 1e-4), (7000, 3e-5), (10000, 1e-5),
                                     (13000, 3e-6), (14000, 1e-6)), 15000),
    "points one step apart": (((0, 1.0), (1, 0.5), (2, 0.25), (3, 0.125)), 8),
    "first point late": (((5, 1.0), (6, 0.1)), 10),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_after_rule_is_the_thesis_loop(name):
    points, steps = SCHEDULES[name]
    cfg = training.TrainingConfig(steps=steps, learning_rate=points[0][1], breakpoints=points,
                                  breakpoint_rule="after")
    np.testing.assert_array_equal(cfg.learning_rates(), thesis_rates(points, steps))


def test_the_two_rules_differ_where_the_thesis_said_they_would():
    # the solo schedule: the thesis never leaves 3e-4; sorted and applied before the step it drops to 3e-5 at 2000
    solo = training.TrainingConfig(steps=3000, learning_rate=3e-4, breakpoints=I.SOLO_SCHEDULE,
                                   breakpoint_rule="after").learning_rates()
    assert np.all(solo == np.float32(3e-4))
    before = training.TrainingConfig(steps=3000, learning_rate=3e-4, breakpoints=I.SOLO_SCHEDULE).learning_rates()
    assert before[1999] == np.float32(3e-4) and np.all(before[2000:] == np.float32(3e-5))
    # entries one step apart: the thesis consumes one per step, so each lands a step later than "before" puts it
    pts = ((0, 1.0), (1, 0.5), (2, 0.25))
    after = training.TrainingConfig(steps=5, learning_rate=1.0, breakpoints=pts, breakpoint_rule="after")
    np.testing.assert_array_equal(after.learning_rates(), [1.0, 1.0, 0.5, 0.25, 0.25])
    np.testing.assert_array_equal(training.TrainingConfig(steps=5, learning_rate=1.0, breakpoints=pts)
                                  .learning_rates(), [1.0, 0.5, 0.25, 0.25, 0.25])


def test_inverter_configs_use_the_thesis_rule_and_schedules():
    assert I.SOLO.breakpoint_rule == I.MERGED.breakpoint_rule == "after"
    np.testing.assert_array_equal(I.SOLO.learning_rates(), thesis_rates(I.SOLO_SCHEDULE, 3000))
    np.testing.assert_array_equal(I.MERGED.learning_rates(), thesis_rates(I.MERGED_SCHEDULE, 3000))
    # scaled to a tiny run the order survives: still 3e-4 throughout
    assert np.all(I.SOLO.scaled(30).learning_rates() == np.float32(3e-4))
    with pytest.raises(ValueError, match="first entry's rate"):
        training.TrainingConfig(learning_rate=1e-3, breakpoints=((0, 3e-4),), breakpoint_rule="after")
    with pytest.raises(ValueError, match="breakpoint_rule"):
        training.TrainingConfig(breakpoint_rule="during")


@pytest.mark.parametrize("rule", ["after", "before"])
def test_the_trainer_steps_at_the_scheduled_rate(rule):
    """loss = Σ w has the constant gradient 1, so Adam's bias-corrected step is exactly lr_t·1/(1 + ε): the loss
    falls by (number of weights)·lr_t at step t, which the per-step training losses reveal."""
    pts = ((0, 0.1), (1, 0.05), (3, 0.02))
    cfg = training.TrainingConfig(steps=6, batch=2, learning_rate=0.1, epsilon=1e-12, val_every=1,
                                  checkpoint_every=100, breakpoints=pts, breakpoint_rule=rule)
    model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2, use_bias=False)])
    n = 6

    def loss(m, batch, training_):
        return {"loss": tf.reduce_sum(m.trainable_variables[0]) + 0.0 * tf.reduce_sum(batch["x"])}

    trainer = training.Trainer(model, loss, {"x": np.zeros((4, 3), np.float32)}, cfg)
    trainer.run(progress=False)
    seen = [h["train_loss"] for h in trainer.history] + [float(np.sum(model.get_weights()[0]))]   # before each step
    used = -np.diff(seen) / n
    want = thesis_rates(pts, 6) if rule == "after" else np.array([0.1, 0.05, 0.05, 0.02, 0.02, 0.02])
    np.testing.assert_allclose(used, want, rtol=1e-4)


def thesis_batches(n_files, batch_size, batches):
    """The thesis' ``get_batch_generator``, transcribed: file indices in list order, wrapping around."""
    files, begin, out = list(range(n_files)), 0, []
    for _ in range(batches):
        end = begin + batch_size
        if end < len(files):
            batch = files[begin:end]
        else:
            end = end - len(files)
            batch = files[begin:] + files[:end]
        begin = end
        out.append(batch)
    return np.array(out)


def test_unshuffled_batches_walk_the_list_in_order_and_wrap_like_the_thesis():
    cfg = training.TrainingConfig(steps=7, batch=4, learning_rate=1.0, shuffle=False, val_every=7)
    assert I.SOLO.shuffle is False and I.MERGED.shuffle is False
    trainer = training.Trainer(tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(1)]),
                               lambda m, b, t: {"loss": tf.reduce_mean(m(b["x"]))},
                               {"x": np.zeros((5, 1), np.float32), "i": np.arange(5)}, cfg)
    fed = np.stack([b["i"].numpy() for b in trainer.dataset(0)])
    np.testing.assert_array_equal(fed, thesis_batches(5, 4, 7))
    np.testing.assert_array_equal(np.stack([b["i"].numpy() for b in trainer.dataset(3)]), fed[3:])   # resumed


def test_one_schedule_type_serves_every_breakpoint_rule():
    """optim.Schedule is the trainings' schedule too: each rule's rates by hand, and the stages they compress to."""
    from tfrestore.optimize import optim
    bps = ((0, 3e-4), (3, 1e-4), (2, 3e-5))
    before = optim.Schedule.from_breakpoints(bps, 6, rule="before", initial=1.0)     # sorted: 2 → 3e-5, 3 → 1e-4
    np.testing.assert_array_equal(before.rates(), np.float32([3e-4, 3e-4, 3e-5, 1e-4, 1e-4, 1e-4]))
    after = optim.Schedule.from_breakpoints(bps, 6, rule="after", initial=3e-4)     # in order, after the step
    np.testing.assert_array_equal(after.rates(), np.float32([3e-4, 3e-4, 3e-4, 1e-4, 3e-5, 3e-5]))
    count = optim.Schedule.from_breakpoints(((0, 1.0), (3, 0.1)), 5, rule="count")  # from the 3rd step (count 3)
    np.testing.assert_array_equal(count.rates(), np.float32([1.0, 1.0, 0.1, 0.1, 0.1]))
    assert [(s.steps, s.lr) for s in count.stages] == [(2, 1.0), (3, pytest.approx(0.1))]
    with pytest.raises(ValueError, match="must be one of before, after, count"):
        optim.Schedule.from_breakpoints(bps, 6, rule="later")


def test_in_memory_batches_are_the_seeded_permutations_rows_in_graph_and_through_the_pipeline():
    """gather_in_graph (the default for arrays on one replica) feeds the rows the tf.data pipeline feeds: each
    step's batch recorded by the loss, against seeded per-epoch permutations drawn here with numpy; two blocks
    (3 + 4 steps) as the loop runs them; and the trained weight equal either way."""
    n, batch, steps, seed = 10, 4, 7, 3
    rng = np.random.default_rng(seed)
    want = np.concatenate([rng.permutation(n) for _ in range(3)])[:steps * batch].reshape(steps, batch)
    seen = tf.Variable(tf.fill([steps, batch], tf.constant(-1, tf.int64)))
    count = tf.Variable(0, dtype=tf.int64)

    def loss(m, b, training_):
        if training_:
            seen.scatter_nd_update(tf.reshape(count, [1, 1]), b["i"][None])
            count.assign_add(1)
        return {"loss": tf.reduce_mean(tf.square(m(b["x"]) - 1.0))}

    weights = {}
    for flag in (True, False):
        seen.assign(tf.fill([steps, batch], tf.constant(-1, tf.int64)))
        count.assign(0)
        model = tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(1, kernel_initializer="ones")])
        cfg = training.TrainingConfig(steps=steps, batch=batch, learning_rate=0.1, seed=seed, val_every=3)
        trainer = training.Trainer(model, loss, {"x": np.arange(n, dtype=np.float32)[:, None], "i": np.arange(n)},
                                   cfg, gather_in_graph=flag)
        assert trainer.in_graph is flag
        trainer.begin()
        trainer.advance(3)
        trainer.advance(steps)
        np.testing.assert_array_equal(seen.numpy(), want)
        weights[flag] = [w.numpy() for w in model.weights]
    for a, b in zip(weights[True], weights[False]):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_xla_trains_the_autoencoder_to_the_same_losses_and_is_used():
    """jit_compile (the autoencoder's choice, models/autoencoder.py) against the plain graph: the same 6 steps of
    the Q4 loss reach the same per-step losses (the first to float32 tolerance), and the step is really an XLA
    cluster."""
    from tfrestore.models import autoencoder as A
    assert A.JIT_COMPILE is True
    x = np.random.default_rng(0).uniform(0, 1, (24, 28, 28, 1)).astype(np.float32)
    cfg = training.TrainingConfig(steps=6, batch=8, learning_rate=5e-4, val_every=6)
    losses = {}
    for jit in (False, True):
        trainer = training.Trainer(A.build(4), A.loss_fn("var_kurt", A.RECONSTRUCTION_WEIGHT), {"x": x}, cfg,
                                   jit_compile=jit)
        trainer.begin()
        losses[jit] = []
        for t in range(1, cfg.steps + 1):
            trainer.advance(t)
            losses[jit].append(float(trainer._sums["loss"].numpy()))
    # step 1 is the same function of the same weights and batch; after it Adam divides each gradient element by
    # its own scale, so float-order differences on near-zero elements grow (measured 7e-5 by step 4)
    np.testing.assert_allclose(losses[True][0], losses[False][0], rtol=1e-5)
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-3)
    assert losses[True][-1] < losses[True][0]                         # it trains
    hlo = trainer._loss_and_grads.experimental_get_compiler_ir({"x": tf.constant(x[:8])})(stage="hlo")
    assert "convolution" in hlo
