"""Patch priors on the one Loop and the one store: interruption (stop_after, SIGTERM, kill -9) and resume give the
uninterrupted weights exactly; two processes train one prior once; a damaged prior is one error line (exit 2)
naming the file and the rebuild command; another --data trains its own artifact; bad or tiny --data images."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tfrestore.core import store
from tfrestore.core.loop import Callback
from tfrestore.priors import catalogue
from tfrestore.priors.model import PatchPrior
from tfrestore.priors.train import PriorTrainer, TrainConfig

from test_priors import _ica_setup

ROOT = Path(__file__).resolve().parents[1]
TC = TrainConfig(steps=40, batch=64, breakpoints=((0, 0.05), (20, 0.01)), grad_clip=0.5, val_every=5,
                 checkpoint_every=10)


def _weights(trainer) -> list[np.ndarray]:
    return [w.numpy() for w in trainer.prior.weights]


class _SigtermAt(Callback):
    """Sends this process SIGTERM at a log point, as a scheduler would."""

    def __init__(self, step: int):
        self.step = step

    def on_log_point(self, loop, point):
        if point.step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("how", ["stop_after", "sigterm"])
def test_loop_driven_training_interrupted_and_resumed_equals_the_uninterrupted_one(tmp_path, how):
    cfg, prepared, _, _ = _ica_setup(t=11000)
    full = PriorTrainer(cfg, prepared, TC)
    full.run(progress=False)
    cut = PriorTrainer(cfg, prepared, TC)
    loop = cut.loop(tmp_path / "ckpt", progress=False)
    if how == "sigterm":                         # sent after the point at 15: the run stops at the next one
        loop.callbacks.append(_SigtermAt(15))
        with pytest.raises(KeyboardInterrupt, match="SIGTERM at step 20 of 40"):
            loop.run()
    else:
        assert loop.run(stop_after=17).stopped == "stop_after"
    assert cut.steps_done == 20
    again = PriorTrainer(cfg, prepared, TC)
    summary = again.loop(tmp_path / "ckpt", resume=True, progress=False).run()
    assert summary.steps == 40 and summary.steps_run == 20
    for a, b in zip(_weights(full), _weights(again)):
        np.testing.assert_array_equal(a, b)                          # bit-identical, not merely close
    # the history continues over the resume: one record per log point, the same validation losses
    assert [h["step"] for h in summary.history] == list(range(5, 41, 5))
    full_val = [h["val_loss"] for h in full.history]
    assert [h["val_loss"] for h in summary.history] == full_val


def test_stop_on_overfit_ends_at_the_point_the_validation_loss_rose_patience_times():
    cfg, prepared, _, _ = _ica_setup(t=11000)
    tc = TrainConfig(steps=60, batch=64, breakpoints=((0, 0.05),), val_every=2, stop_on_overfit=True,
                     overfit_patience=2)
    prepared.val[:] = prepared.val * 3.0                       # a held-out set the training moves away from
    trainer = PriorTrainer(cfg, prepared, tc)
    summary = trainer.run(progress=False)
    vals = [h["val_loss"] for h in trainer.history]
    rises = [b > a for a, b in zip(vals, vals[1:])]
    # numpy's reading of the record: the first point where the last two changes were both rises
    first = next(i + 3 for i in range(len(rises) - 1) if rises[i] and rises[i + 1])     # points 0 … i + 2
    assert len(vals) == first and summary["stopped"].startswith("validation loss rose 2 times"), (vals, summary)


# ---- the store: kill -9 and a rerun, two processes, a damaged file, another --data --------------------------------

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tfrestore.priors import catalogue, train
    measure = train.PriorTrainer.measure
    def slow(self):                        # a slower training, so that the parent can act between log points
        time.sleep({pause})
        return measure(self)
    train.PriorTrainer.measure = slow
    print("ready", flush=True)
    go = Path(sys.argv[1])
    while not go.exists():
        time.sleep(0.02)
    catalogue.train("digits_full128", "digits", steps=60, patches=3000)
    print("finished", flush=True)
""")


def _child(tmp_path, home, go, pause):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(pause=pause))
    env = {**os.environ, "TFRESTORE_HOME": str(home), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(script), str(go)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)


def _read_until(proc, text, seen, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"{text!r} never came:\n{''.join(seen)}")


def test_kill_9_between_checkpoints_then_a_rerun_continues_and_matches(tmp_path, monkeypatch):
    home, go = tmp_path / "home", tmp_path / "go"
    proc, seen = _child(tmp_path, home, go, pause=0.15), []
    _read_until(proc, "ready", seen)
    go.touch()
    _read_until(proc, "step     36/60", seen)                       # checkpointed at 18 (every 15 steps) by now
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    monkeypatch.setenv("TFRESTORE_HOME", str(home))
    key = catalogue.key("digits_full128", "digits", steps=60, patches=3000)
    assert key.work.is_dir() and not key.path.exists()             # nothing half-stored: no prior.h5, no history
    out = subprocess.run([sys.executable, str(tmp_path / "child.py"), str(go)], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "TFRESTORE_HOME": str(home), "PYTHONPATH": str(ROOT)},
                         timeout=120)
    assert out.returncode == 0 and "finished" in out.stdout, out.stdout + out.stderr
    resumed = [l for l in out.stdout.splitlines() if "resumed from" in l]
    assert len(resumed) == 1 and "extracting" not in out.stdout, out.stdout       # patches kept in .work too
    at = int(resumed[0].split(" at step ")[1].split()[0])
    assert 18 <= at < 60
    assert "SEEDED RANDOM" not in "".join(seen) + out.stdout + out.stderr        # an image prior builds no net
    stored = PatchPrior.load(store.verify(key).path)
    assert not key.work.exists()
    monkeypatch.setenv("TFRESTORE_HOME", str(tmp_path / "reference"))           # the same, never interrupted
    reference, summary = catalogue.train("digits_full128", "digits", steps=60, patches=3000, progress=False)
    for a, b in zip(reference.weights, stored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    history = json.loads((key.path / "history.json").read_text())           # the record over both invocations
    assert history == [{**h, "patches_per_s": history[i]["patches_per_s"]}
                       for i, h in enumerate(json.loads((Path(summary["path"]) / "history.json").read_text()))]


def test_two_processes_asking_for_one_prior_train_it_once(tmp_path):
    home = tmp_path / "home"
    go_a, go_b = tmp_path / "go_a", tmp_path / "go_b"
    a, b, seen_a, seen_b = _child(tmp_path, home, go_a, 0.3), _child(tmp_path, home, go_b, 0.3), [], []
    _read_until(a, "ready", seen_a)
    _read_until(b, "ready", seen_b)
    go_a.touch()
    _read_until(a, "extracting", seen_a)                            # a holds the lock and trains
    go_b.touch()
    out_a, _ = a.communicate(timeout=120)
    out_b, _ = b.communicate(timeout=120)
    out_a, out_b = "".join(seen_a) + out_a, "".join(seen_b) + out_b
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b
    assert f"waiting for process {a.pid} to finish building prior digits/digits_full128" in out_b, out_b
    assert "using the stored" in out_b and "extracting" not in out_b and "prior step" not in out_b, out_b
    assert out_a.count("extracting") == 1 and "prior step     60/60" in out_a
    manifests = list((home / "prior" / "digits" / "digits_full128").glob("*/manifest.json"))
    assert len(manifests) == 1


def test_a_truncated_prior_is_one_error_line_naming_the_file_and_the_rebuild_command(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("TFRESTORE_HOME", str(home))
    catalogue.train("digits_full128", "digits", steps=5, progress=False)          # as the command line would
    f = catalogue.find("digits_full128", "digits", steps=5).path / "prior.h5"
    f.write_bytes(f.read_bytes()[:-100])
    cmd = [sys.executable, "main.py", "--paper=foe_priors", "--experiment=train", "--prior=digits_full128",
           "--net=digits", "--steps=5"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env={**os.environ, "TFRESTORE_HOME": str(home)})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert str(f) in lines[0] and "truncated" in lines[0] and "Traceback" not in r.stdout + r.stderr
    assert ("python main.py --paper=foe_priors --experiment=train --prior=digits_full128 --net=digits --steps=5 "
            "--overwrite") in lines[0]
    # in a library call the same: get (an inversion's prior) refuses it; --overwrite trains it anew
    with pytest.raises(store.ArtifactError, match="prior.h5 has"):
        catalogue.get("digits_full128", "digits", steps=5)
    prior, summary = catalogue.train("digits_full128", "digits", steps=5, overwrite=True, progress=False)
    assert summary["steps"] == 5 and not summary["reused"]
    store.verify(catalogue.key("digits_full128", "digits", steps=5))


def _image_folder(folder: Path, seed: int, size: int, count: int = 5) -> str:
    from PIL import Image
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return str(folder)


def test_another_data_folder_trains_its_own_artifact_and_leaves_the_first_untouched(tmp_path, capsys):
    one = _image_folder(tmp_path / "one", 0, 240)
    two = _image_folder(tmp_path / "two", 1, 60)                     # smaller than alexnet's 227: enlarged
    kw = dict(steps=3, patches=2000, progress=False)
    first, s1 = catalogue.train("full512", "alexnet", data=one, **kw)
    said = "".join(capsys.readouterr())
    assert "warning" not in said
    k1 = catalogue.key("full512", "alexnet", data=one, steps=3, patches=2000)
    before = json.loads((k1.path / "manifest.json").read_text())
    second, s2 = catalogue.train("full512", "alexnet", data=two, **kw)
    said = "".join(capsys.readouterr())
    assert f"warning: --data {two}: 5 of 5 images are smaller than 227×227; they are enlarged to 227×227" in said
    assert s1["path"] != s2["path"] and not s2["reused"]
    assert json.loads((k1.path / "manifest.json").read_text()) == before
    store.verify(k1)                                                # every file as it was stored
    assert not np.array_equal(first.w.numpy(), second.w.numpy())
    # the same folder again: reused, said in one line naming it; touching a file makes it other data
    _, again = catalogue.train("full512", "alexnet", data=one, **kw)
    assert again["reused"] and said.count("\n") >= 1 and s1["path"] in "".join(capsys.readouterr())
    os.utime(Path(one) / "0.png", ns=(1, 1))
    assert catalogue.key("full512", "alexnet", data=one, steps=3, patches=2000).digest != k1.digest


def test_a_data_folder_without_readable_images_is_one_error(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        (bad / f"{i}.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"none of its 3 image files can be read \(e.g. 0.png"):
        catalogue.train("full512", "alexnet", data=str(bad), steps=2, patches=500, progress=False)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        catalogue.train("full512", "alexnet", data=str(tmp_path / "missing"), steps=2, progress=False)
