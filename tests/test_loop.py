"""The one loop: log points, history and wall time over resumes, checkpoints by steps and minutes (with their cost
bounded), SIGINT / SIGTERM, stop_after — on a toy stepper whose exact trajectory numpy gives in closed form."""
import io
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from tfrestore.core import loop as L


class Decay:
    """x ← x − lr·(x − target) + noise(step): a compiled stepper whose every step numpy can replay."""

    def __init__(self, total=40, every=5, lr=0.1, seed=3):
        self.total_steps, self.every, self.lr, self.seed = total, every, lr, seed
        self.x = tf.Variable(np.full(4, 10.0, np.float32))
        self.step = tf.Variable(0, dtype=tf.int64)
        self.begun_at = None
        self._block = tf.function(self._steps)

    @property
    def steps_done(self):
        return int(self.step.numpy())

    def log_points(self):
        return sorted(set(range(self.every, self.total_steps + 1, self.every)) | {self.total_steps})

    def state(self):
        return {"x": self.x, "step": self.step}

    def begin(self):
        self.begun_at = self.steps_done

    def _steps(self, stop):
        for t in tf.range(self.step, stop):
            noise = tf.random.stateless_normal([4], seed=tf.stack([tf.cast(self.seed, tf.int64), t]))
            self.x.assign(self.x - self.lr * (self.x - 1.0) + 0.01 * noise)
            self.step.assign(t + 1)

    def advance(self, stop):
        self._block(tf.constant(stop, tf.int64))

    def measure(self):
        x = self.x.numpy()
        return L.Measurement(loss=(x - 1.0) ** 2, values={"dist": np.abs(x - 1.0)}, scalars={"lr": self.lr})

    def describe(self):
        return {"lr": self.lr, "total": self.total_steps}

    def snapshot(self):
        return {"x": np.clip(self.x.numpy().reshape(1, 2, 2, 1) / 10, 0, 1)}


def replay(steps, seed=3, lr=0.1):
    x = np.full(4, 10.0, np.float32)
    for t in range(steps):
        noise = tf.random.stateless_normal([4], seed=tf.constant([seed, t], tf.int64)).numpy()
        x = x - lr * (x - 1.0) + 0.01 * noise
    return x


def test_runs_to_the_end_through_the_log_points_and_records_history(tmp_path):
    s = Decay()
    out = io.StringIO()
    summary = L.Loop(s, [L.Progress(stream=out), L.TensorBoard(tmp_path / "tb", labels=list("abcd"))]).run()
    np.testing.assert_allclose(s.x.numpy(), replay(40), rtol=1e-5)
    assert summary.steps == summary.steps_run == 40 and summary.stopped == "done"
    assert [h["step"] for h in summary.history] == list(range(5, 41, 5))
    assert summary.history[-1]["loss"] == pytest.approx(float(np.mean((replay(40) - 1) ** 2)), rel=1e-4)
    assert summary.seconds_total == pytest.approx(summary.seconds)          # never less than this invocation's
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("step      5/40") and "40 steps in" in lines[-1]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ev = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0, "images": 0}).Reload()
    tags = set(ev.Tags()["tensors"])
    assert {"loss/mean", "lr", "a/loss", "d/dist", "config", "x"} <= tags


@pytest.mark.parametrize("how", ["signal", "stop_after"])
def test_interrupted_then_resumed_equals_the_uninterrupted_run(tmp_path, how):
    class Interrupt(L.Callback):
        def on_log_point(self, loop, point):
            if point.step == 15:
                os.kill(os.getpid(), signal.SIGTERM)
    first = Decay()
    cbs = [L.Checkpoint(tmp_path / "ckpt", every=1000, every_seconds=1e9)]
    if how == "signal":
        with pytest.raises(KeyboardInterrupt, match="SIGTERM at step 20 of 40"):
            L.Loop(first, cbs + [Interrupt()]).run()             # stops at the next log point after the signal
        stopped_at = 20
    else:
        summary = L.Loop(first, cbs).run(stop_after=12)
        assert summary.stopped == "stop_after" and summary.steps == 15
        stopped_at = 15
    said = []
    second = Decay()
    ck = L.Checkpoint(tmp_path / "ckpt", resume=True, say=said.append)
    summary = L.Loop(second, [ck]).run()
    assert second.begun_at == stopped_at and summary.steps_run == 40 - stopped_at
    assert f"at step {stopped_at} of 40" in said[0]
    np.testing.assert_array_equal(second.x.numpy(), replay(40))            # bit for bit: same blocks, same noise
    uninterrupted = Decay()
    L.Loop(uninterrupted, []).run()
    np.testing.assert_array_equal(second.x.numpy(), uninterrupted.x.numpy())
    assert [h["step"] for h in summary.history] == list(range(5, 41, 5))   # the history crossed the resume
    assert summary.seconds_total > summary.seconds


def test_a_fresh_run_says_nothing_about_resuming_and_resume_without_a_checkpoint_says_so(tmp_path):
    said = []
    L.Loop(Decay(total=5), [L.Checkpoint(tmp_path / "a", say=said.append)]).run()
    assert said == []
    L.Loop(Decay(total=5), [L.Checkpoint(tmp_path / "b", resume=True, say=said.append)]).run()
    assert len(said) == 1 and "no checkpoint" in said[0]


def test_checkpoints_by_steps_by_minutes_and_their_cost_is_bounded(tmp_path, monkeypatch):
    saved = []

    class Counting(L.Checkpoint):
        def save(self, step):
            saved.append(step)
            super().save(step)
    L.Loop(Decay(total=40), [Counting(tmp_path / "a", every=10, every_seconds=1e9, max_share=1.0)]).run()
    assert saved == [10, 20, 30, 40]
    saved.clear()
    L.Loop(Decay(total=40), [Counting(tmp_path / "b", every=1000, every_seconds=0.0)]).run()
    assert saved == list(range(5, 41, 5))                                  # time-triggered: every log point
    saved.clear()
    # a checkpoint that costs far more than the steps between them: step-triggered ones are skipped, the last kept
    slow = Counting(tmp_path / "c", every=5, every_seconds=1e9, max_share=0.02)
    real_save = L.Checkpoint.save

    def expensive(self, step):
        real_save(self, step)
        self.seconds_spent += 10.0
    monkeypatch.setattr(L.Checkpoint, "save", expensive)
    L.Loop(Decay(total=40), [slow]).run()
    assert saved[0] == 5 and saved[-1] == 40 and len(saved) == 2


def test_a_stepper_stops_where_it_measures_a_callback_at_the_next_point(tmp_path):
    class Patient(Decay):
        def measure(self):
            m = super().measure()
            m.stop = "validation loss rose" if self.steps_done >= 10 else None
            return m
    saved = []

    class Counting(L.Checkpoint):
        def save(self, step):
            saved.append(step)
            super().save(step)
    summary = L.Loop(Patient(), [Counting(tmp_path / "c", every=1000, every_seconds=1e9)]).run()
    assert summary.stopped == "validation loss rose" and summary.steps == 10 and summary.last.last
    assert saved == [10]                                                   # checkpointed where it stopped

    class Impatient(L.Callback):
        def on_log_point(self, loop, point):
            if point.step >= 10:
                loop.request_stop("enough")
    summary = L.Loop(Decay(), [Impatient()]).run()
    assert summary.stopped == "enough" and summary.steps == 15 and summary.last.last


def test_tensorboard_once_is_the_same_writer_for_a_job_without_a_loop(tmp_path):
    """An analysis written in one go (foe_priors' feature_stats) goes through the loop's TensorBoard writer: its
    scalars and the configuration land in the folder, an earlier run's events are set aside, not interleaved."""
    from tfrestore.core.loop import TensorBoard
    for value in (1.0, 2.0):
        with TensorBoard.once(tmp_path, config={"net": "alexnet", "value": value}):
            tf.summary.scalar("stat", value, step=0)
    (current,) = tmp_path.glob("events.out.tfevents.*")
    (earlier,) = (tmp_path / "previous-1").glob("events.out.tfevents.*")

    def read(path):
        tags = {}
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                tags[v.tag] = float(tf.make_ndarray(v.tensor)) if v.tag == "stat" else v.metadata.plugin_data.plugin_name
        return tags
    assert read(earlier)["stat"] == 1.0 and read(current)["stat"] == 2.0
    assert read(current)["config"] == "text"
