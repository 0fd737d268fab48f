"""Supervised trainings on the one loop and the one store: a SIGTERM stops a Trainer at its next log point with a
checkpoint and the resumed training ends with the uninterrupted weights; stored classifiers and inverters are
checked on load (a damaged file is one ArtifactError line naming the file and the rebuild command); ae_prior's
restorations reuse the autoencoder ``--task=train`` stored with the same ``--steps`` and say so."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore import data as data_lib
from tfrestore.models import classifier
from tfrestore import nets
from tfrestore.core import store
from tfrestore.train import training
from tfrestore.models import inverters as I

ROOT = Path(__file__).resolve().parents[1]


def _tiny():
    x = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    y = (x @ np.arange(5, dtype=np.float32)[:, None]).astype(np.float32)
    i = keras.Input((5,))
    h = keras.layers.Dense(8, activation="tanh", kernel_initializer=keras.initializers.GlorotUniform(1))(i)
    model = keras.Model(i, keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(2))(h))

    def loss(m, batch, training_):
        return {"loss": tf.reduce_mean(tf.square(m(batch["x"], training=training_) - batch["y"]))}

    cfg = training.TrainingConfig(steps=12, batch=8, learning_rate=0.02, val_every=3, checkpoint_every=100)
    return model, loss, {"x": x, "y": y}, cfg


def test_sigterm_stops_at_the_next_log_point_with_a_checkpoint_and_the_resume_ends_uninterrupted(tmp_path):
    straight, loss, data, cfg = _tiny()
    training.Trainer(straight, loss, data, cfg).run(progress=False)

    sent = []

    def images(_model):                  # runs at every log point (TensorBoard); a real SIGTERM at the first one
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        return {}

    first, loss, data, cfg = _tiny()
    with pytest.raises(KeyboardInterrupt, match="SIGTERM at step 6 of 12"):
        training.Trainer(first, loss, data, cfg, images_fn=images).run(tmp_path, logdir=tmp_path / "tb",
                                                                        progress=False)
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")).endswith("-6")   # the stop's checkpoint, no other
    second, loss, data, cfg = _tiny()
    again = training.Trainer(second, loss, data, cfg)
    summary = again.run(tmp_path, resume=True, progress=False)
    assert summary["steps"] == 12 and [h["step"] for h in again.history] == [3, 6, 9, 12]
    for a, b in zip(straight.weights, second.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(straight.weights[0].numpy(), _tiny()[0].weights[0].numpy())   # it did train


def _one_line_naming(err: str, path: Path, command: str):
    assert "\n" not in err.strip() and str(path) in err and command in err, err


def test_a_damaged_stored_classifier_is_one_error_naming_the_file_and_the_command(capsys):
    model, summary = classifier.train(steps=20, progress=False)
    assert summary["steps"] == 20 and 0.0 <= summary["val_accuracy"] <= 1.0
    art = store.verify(classifier.key(steps=20))
    f = art.file(classifier.WEIGHTS_FILE)
    # what nets.build("digits") loads is that artifact's weights
    np.testing.assert_array_equal(nets.build("digits").get_weights()[0], model.get_weights()[0])
    capsys.readouterr()
    classifier.train(steps=20, progress=False)                              # stored: reused, said in one line
    assert f"using the stored digits classifier {art.path}" in "".join(capsys.readouterr())
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(store.ArtifactError) as e:
        classifier.train(steps=20, progress=False)
    _one_line_naming(str(e.value), f, "python -m tfrestore.models.classifier --steps=20 --overwrite")
    assert isinstance(e.value, ValueError)                                   # main.py's one error: line, exit 2
    r = subprocess.run([sys.executable, "-m", "tfrestore.models.classifier", "--steps=20"], capture_output=True, text=True,
                       cwd=ROOT, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    _one_line_naming(errors[0], f, "python -m tfrestore.models.classifier --steps=20 --overwrite")


def test_a_damaged_stored_inverter_is_one_error_naming_the_file_and_the_command(capsys):
    model = nets.build("digits", weights="random", seed=0)
    specs = [I.ModuleSpec("M1", "conv1", "image", hidden=8, kernel1=3, stride1=1, padding1="same", kernel2=3)]
    taps = I.Taps(model, specs)
    x, _, _ = data_lib.digit_images(None, "train")
    cfg = training.TrainingConfig(steps=3, batch=8, learning_rate=1e-3, val_every=3)
    key = I.stack_key("digits", "solo", specs, cfg, classifier=I.classifier_identity(model), data="embedded", seed=0)
    cmd = "python main.py --paper=layer_inversion --net=digits --steps=3"

    def train():
        mods = I.build_modules(taps, specs)
        return mods, I.train_stored(key, taps, mods, specs, training.ArraySource({"image": x[:64]}), x[:8], cfg,
                                    regime="solo", command=cmd, progress=False)

    trained, (art, summary) = train()
    assert summary["steps"] == 3 and art.file("M1.weights.h5").exists()
    capsys.readouterr()
    reused, (_, again) = train()
    assert again is None and f"using the stored solo inverter {art.path}" in "".join(capsys.readouterr())
    for a, b in zip(trained["M1"].get_weights(), reused["M1"].get_weights()):
        np.testing.assert_array_equal(a, b)
    f = art.file("M1.weights.h5")
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF                                            # same size, one byte changed
    f.write_bytes(bytes(data))
    with pytest.raises(store.ArtifactError) as e:
        train()
    _one_line_naming(str(e.value), f, cmd + " --overwrite")
    assert "changed after it was stored" in str(e.value)


@pytest.mark.experiment("ae_prior", "denoise")
def test_ae_prior_denoise_reuses_the_autoencoder_train_stored_with_the_same_steps(tmp_path, capsys):
    """``--task=train --steps=30`` stores Q2's and Q4's networks through ``_ae`` (Q4's alone here: the same call, half
    the time), then ``--task=denoise --steps=30`` restores with that Q4 network, saying which and why, and trains
    nothing."""
    from reproductions import ae_prior, paper
    flags = ae_prior.Flags(task="denoise", steps=30, sigma=0.5)
    ae_prior._ae(flags, paper.RunContext.create("unused", out=tmp_path), "Q4", flags.steps)
    assert "training the autoencoder prior of Q4" in "".join(capsys.readouterr())
    m = ae_prior.run(flags, paper.RunContext.create(ae_prior.default_out(flags), out=tmp_path / "denoise"))
    out = "".join(capsys.readouterr())
    q4 = store.load(ae_prior.autoencoder.key(question="Q4", steps=30))
    assert "training the autoencoder" not in out and f"using the stored autoencoder of Q4 {q4.path}" in out
    assert "trained for 30 steps — the one `--task=train --steps=30` stored" in out
    assert m["prior_steps"] == 30 and m["iterations"] == [30]


def test_a_training_killed_between_checkpoints_continues_on_rerun_to_the_uninterrupted_weights(tmp_path):
    """kill -9 (no chance to save) after the step-500 checkpoint of a 700-step classifier training: the rerun
    of the same command continues from the key's .work folder and stores exactly the uninterrupted weights."""
    def start(home):
        env = {**os.environ, "TFRESTORE_HOME": str(home)}
        return subprocess.Popen([sys.executable, "-m", "tfrestore.models.classifier", "--steps=700"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    straight = start(tmp_path / "a")
    killed = start(tmp_path / "b")
    k = classifier.key(steps=700)
    work = tmp_path / "b" / k.work.relative_to(store.home())
    deadline = time.time() + 240
    # the checkpoint counts once its manager's state file names it (written after the data and the index)
    while not any('"ckpt-500"' in f.read_text() for f in work.rglob("checkpoint")):
        assert killed.poll() is None and time.time() < deadline, killed.stdout.read()[-2000:]
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert straight.wait(timeout=240) == 0, straight.stdout.read()[-2000:]
    rerun = start(tmp_path / "b")
    out = rerun.communicate(timeout=240)[0]
    assert rerun.returncode == 0 and "resumed from" in out and "at step 500 of 700" in out, out[-2000:]
    files = [home / k.path.relative_to(store.home()) / classifier.WEIGHTS_FILE
             for home in (tmp_path / "a", tmp_path / "b")]
    import h5py
    with h5py.File(files[0], "r") as fa, h5py.File(files[1], "r") as fb:
        names = []
        fa.visit(lambda n: names.append(n) if isinstance(fa[n], h5py.Dataset) else None)
        assert names
        for n in names:
            np.testing.assert_array_equal(fa[n][()], fb[n][()], err_msg=n)
