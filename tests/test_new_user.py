"""What a new user hits (issue 25): every mistake is one `error:` line and exit code 2, before any work starts."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def main_py(*args, timeout=300, env_home=None):
    """main.py in a subprocess; ``env_home``: its own $TFRESTORE_HOME (a store nothing else shares)."""
    env = {**os.environ, **({"TFRESTORE_HOME": str(env_home)} if env_home else {})}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=env)


def one_error_line(r) -> str:
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (r.returncode, r.stderr[-800:])
    assert "Traceback" not in r.stderr and "FATAL" not in r.stderr
    return lines[0]


@pytest.mark.parametrize("args,words", [
    (["--paper=mv2015", "--stpes=10"], "Did you mean: steps"),
    (["--paper=mv2015", "--steps=abc"], "--steps=abc"),
    (["--paper=mv2015", "conv3"], "unexpected argument 'conv3'"),
    ([], "--list"),
    (["--steps=3"], "--paper is required"),
])
def test_flag_mistakes_are_one_line_and_exit_2_before_tensorflow_starts(args, words):
    r = main_py(*args, timeout=60)
    assert words in one_error_line(r)
    assert r.stdout == ""


def test_a_finished_or_interrupted_run_is_never_overwritten_without_a_word(tmp_path, capfd):
    """Issue 25 item 2: a rerun into a folder holding a finished run (metrics.json) or an interrupted one (ckpt/)
    is refused with one line naming --out= and --overwrite, and nothing in the folder changes; --overwrite and
    --resume together are refused too. The finished case through a subprocess, the others through main.main()."""
    finished, interrupted = tmp_path / "finished", tmp_path / "interrupted"
    (interrupted / "ckpt").mkdir(parents=True)
    finished.mkdir()
    (finished / "metrics.json").write_text('{"mine": 1}')
    (finished / "figure.png").write_bytes(b"my figure")
    r = main_py("--paper=mv2015", "--layers=conv1", "--steps=2", f"--out={finished}", timeout=120)
    line = one_error_line(r)
    assert "finished run" in line and "--out=" in line and "--overwrite" in line, line
    assert "expected:" not in r.stdout          # the cost line comes once the folder is accepted
    assert (finished / "metrics.json").read_text() == '{"mine": 1}'
    assert (finished / "figure.png").read_bytes() == b"my figure"
    assert sorted(p.name for p in finished.iterdir()) == ["figure.png", "metrics.json"]
    sys.path.insert(0, str(ROOT))
    import main
    for args, words in (([f"--out={interrupted}"], ("interrupted run", "--resume", "--overwrite", "--out=")),
                        ([f"--out={finished}", "--overwrite", "--resume"], ("give one of them",)),
                        ([f"--out={finished / 'figure.png' / 'run'}"], ("figure.png is a file, not a folder",))):
        main.FLAGS.unparse_flags()
        main.FLAGS(["main.py", "--paper=mv2015", "--layers=conv1", "--steps=2", *args])
        try:
            code, err = main.main(["main.py"]), capfd.readouterr().err
        finally:
            main.FLAGS.unparse_flags()
        lines = [l for l in err.splitlines() if l.strip()]
        assert code == 2 and len(lines) == 1 and all(w in lines[0] for w in words), (code, err)
    assert sorted(p.name for p in interrupted.iterdir()) == ["ckpt"] and not any((interrupted / "ckpt").iterdir())


def test_every_paper_claims_its_output_folder_before_any_work(tmp_path):
    """The rule is one (reproductions.common.claim_output) and every paper that writes metrics.json applies it
    before its first step: with main.py's rule set, each run refuses a finished folder at once."""
    import reproductions
    from reproductions import common, paper
    (tmp_path / "metrics.json").write_text("{}")
    common.set_output_rule(common.OutputRule())
    try:
        for name in reproductions.PAPERS:
            if name == "forward":                   # writes forward.json only where --out says; no metrics.json
                continue
            module = reproductions.get(name)
            flags = module.Flags()
            ctx = paper.RunContext.create(module.default_out(flags), out=tmp_path, progress=False)
            with pytest.raises(ValueError, match="--overwrite"):
                module.run(flags, ctx)
        common.set_output_rule(common.OutputRule(overwrite=True))
        assert common.claim_output(tmp_path) == tmp_path
        common.set_output_rule(common.OutputRule(resume=True))
        assert common.claim_output(tmp_path) == tmp_path
    finally:
        common.set_output_rule(None)
    assert common.claim_output(tmp_path) == tmp_path              # library calls: no rule


def test_unreadable_files_in_data_are_one_line_not_a_tensorflow_traceback(tmp_path):
    """A --data folder of files named .png that are not images: read inside a tf.data pipeline, the ValueError
    comes back wrapped in TensorFlow's InvalidArgumentError; main.py still gives one line and exit 2."""
    junk = tmp_path / "junk"
    junk.mkdir()
    for i in range(3):
        (junk / f"f{i}.png").write_text(f"not an image {i}")
    r = main_py("--paper=foe_priors", f"--data={junk}", "--steps=2", "--prior_steps=2", f"--out={tmp_path / 'o'}",
                timeout=180, env_home=tmp_path / "home")
    assert "f0.png" in one_error_line(r) and "--data" in one_error_line(r)


def test_a_users_error_wrapped_by_tensorflow_is_unwrapped_and_a_bug_is_not():
    """main.py's fallback for errors raised inside TensorFlow (tf.data's py_function, tf.numpy_function): the
    innermost user error's message, as one line; anything else stays a traceback."""
    import tensorflow as tf
    sys.path.insert(0, str(ROOT))
    import main
    text = ("Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: cannot read 'a.png' as an "
            "image\n\n\t [[{{node PyFunc}}]] [Op:IteratorGetNext] name: ")
    assert main._wrapped_user_error(tf.errors.InvalidArgumentError(None, None, text)) == \
        "cannot read 'a.png' as an image"
    assert main._wrapped_user_error(tf.errors.InvalidArgumentError(None, None, "ZeroDivisionError: boom")) is None
    assert main._wrapped_user_error(RuntimeError("ValueError: not wrapped by TensorFlow")) is None


def test_dip_refuses_an_all_black_mask_before_the_first_step(tmp_path):
    """Issue 25 item 4: a mask that keeps no pixel is refused at once (it used to run the whole optimisation and
    fail in the scikit-image baseline)."""
    from PIL import Image
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "black.png")
    r = main_py("--paper=dip", "--task=inpaint", f"--mask={tmp_path / 'black.png'}", "--size=64", "--steps=1",
                f"--out={tmp_path / 'o'}", timeout=120)
    assert "keeps no pixel" in one_error_line(r) and "step " not in r.stdout
    assert not (tmp_path / "o" / "ckpt").exists()


def test_dip_says_what_it_did_to_a_mask_or_observation_of_another_size(tmp_path, capsys):
    """Issue 25 item 5: a grey-level mask is thresholded and a mask or --corrupted file of another size is resized
    — each with one warning line saying so; a mask at the working size in black and white gives none."""
    from PIL import Image
    from reproductions import dip as NP
    grey = np.full((80, 100), 255, np.uint8)
    grey[:, :30] = 0
    grey[10:20, 40:50] = 128                     # 100 of 8,000 pixels grey
    Image.fromarray(grey).save(tmp_path / "grey.png")
    m = NP.mask_array(str(tmp_path / "grey.png"), (64, 64), 0)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "1.2 % grey" in lines[0] and "thresholded at 127" in lines[0], lines
    assert "100×80" in lines[1] and "resized to 64×64" in lines[1], lines
    # centre crop (80×80 from x = 10) then resize: the black band x < 30 becomes the left quarter
    assert m.shape == (64, 64) and set(np.unique(m)) == {0.0, 1.0}
    assert m[:, :14].max() == 0 and m[:, 18:].mean() > 0.9
    bw = np.zeros((64, 64), np.uint8)
    bw[:, 32:] = 255
    Image.fromarray(bw).save(tmp_path / "bw.png")
    np.testing.assert_array_equal(NP.mask_array(str(tmp_path / "bw.png"), (64, 64), 0), bw / 255.0)
    assert capsys.readouterr().out == ""
    Image.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(tmp_path / "small.png")
    y = NP._observation_file(str(tmp_path / "small.png"), np.zeros((1, 16, 16, 3), np.float32))
    line, = capsys.readouterr().out.splitlines()
    assert y.shape == (1, 16, 16, 3) and "30×40" in line and "resized to that" in line
    np.testing.assert_allclose(y, 200 / 255.0, atol=1e-6)


def test_a_run_prints_only_its_own_progress_and_results(tmp_path):
    """Issue 25 items 8, 9: a tiny mv2015 run writes nothing to stderr (no C++ start-up notice, no Python warning
    with its source line), names its random weights once, and reports seconds_total = seconds for a run never
    resumed."""
    import json
    out = tmp_path / "o"
    r = main_py("--paper=mv2015", "--layers=conv1", "--steps=2", f"--out={out}", env_home=tmp_path / "home",
                timeout=180)
    assert r.returncode == 0 and r.stderr == "", r.stderr[-1500:]
    assert r.stdout.count("SEEDED RANDOM") == 1 and "Warning" not in r.stdout and "I0000" not in r.stdout
    assert r.stdout.startswith("expected: ~") and "GB peak on 2 CPU cores" in r.stdout.splitlines()[0], r.stdout
    first = json.loads((out / "metrics.json").read_text())
    assert first["seconds_total"] == first["seconds"] > 0


def test_weights_convert_prints_its_result_line_only(tmp_path):
    """Issue 25 item 8: the converter printed 7 lines (TensorFlow's C++ notices, cuInit, two progress bars); with
    --quiet now one result line on stdout and nothing on stderr."""
    sys.path.insert(0, str(ROOT / "tests"))
    import caffe_files
    proto, model, _ = caffe_files.write(tmp_path, caffe_files.alexnet_layers(width=1 / 16), 227)
    r = subprocess.run([sys.executable, "-m", "weights_convert", "caffe", "--net=alexnet", f"--caffemodel={model}",
                        f"--prototxt={proto}", "--width=0.0625", f"--out={tmp_path / 'a.weights.h5'}", "--quiet"],
                       capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert r.returncode == 0 and r.stderr == "", r.stderr[-1500:]
    assert len(r.stdout.splitlines()) == 1 and r.stdout.startswith("converted "), r.stdout


def test_an_unknown_layer_is_a_short_line_with_the_nearest_names():
    """Issue 25 item 9: the unknown-layer error listed every tap and alias (about 1,500 characters on ResNet-18);
    now the nearest names and a pointer to --list."""
    from tfrestore import nets
    with pytest.raises(ValueError) as e:
        nets.resolve_layer("resnet18", "layer9")
    text = str(e.value)
    assert len(text) < 200 and "did you mean layer4" in text and "python main.py --list" in text, text
    with pytest.raises(ValueError, match="its layers include conv1, relu1"):
        nets.resolve_layer("alexnet", "zzz")


def test_the_maximisation_figure_has_no_original_and_no_error(tmp_path, monkeypatch):
    """Issue 25 item 9: activation maximisation has no target image; its figure showed an "original" panel and an
    "err" caption that meant nothing there (an inversion keeps both)."""
    from reproductions import mv2016, paper
    from tfrestore.core import report
    seen = []
    monkeypatch.setattr(report, "figure", lambda path, panels, *a, **k: seen.append([c for _, c in panels]))
    flags = mv2016.Flags(experiment="maximization", steps=2, weights="random")
    mv2016.run(flags, paper.RunContext.create(mv2016.default_out(flags), out=tmp_path / "max", progress=False))
    captions, = seen
    assert captions and "original" not in captions and not any("err" in c for c in captions), captions


def test_the_expected_cost_line_is_worked_out_from_the_measured_table(monkeypatch):
    """The start-up line "expected: ~X min, ~Y GB peak on 2 CPU cores (…)": start-up plus each phase's share of
    the steps times its seconds per step; DIP's step time scales with size²; fewer --layers scale the time by
    their share; a run without a measured cost prints nothing."""
    from reproductions import common
    monkeypatch.setitem(common.COSTS, ("p", "e", "n"), common.Cost(((0.5, 1.0), (0.5, 5.0)), 60.0, 2.5, 1000,
                                                                   "test", layers=20))
    monkeypatch.setitem(common.COSTS, ("d", "e", None), common.Cost(((1.0, 2.0),), 30.0, 1.5, 3000, "test",
                                                                    size=256))
    line = common.expected_cost("p", "e", "n")                   # 60 + 1000 · (0.5 + 2.5) s = 51 min
    assert line.startswith("expected: ~51 min, ~2.5 GB peak on 2 CPU cores (1,000 steps;"), line
    assert common.expected_cost("p", "e", "n", steps=100, layers=5).startswith("expected: ~2 min")  # 60 + 75 s
    assert common.expected_cost("d", "e", None).startswith("expected: ~1.7 h")   # 30 + 3000 · 2 s = 6,030 s
    assert common.expected_cost("d", "e", None, size=128, steps=600).startswith("expected: ~6 min")  # 30 + 300
    assert common.expected_cost("p", "e", "n", steps=2, layers=1).startswith("expected: ~60 s")  # 60 + 0.3 s
    assert common.expected_cost("p", "other", "n") is None


def test_the_thesis_nmse_of_an_orthogonal_estimate_is_inf_without_a_warning_line():
    """A 2-step layer_inversion run printed "warning: divide by zero encountered in divide": the dot-product NMSE
    of an all-zero reconstruction. The value (inf) says it; no warning line."""
    import warnings
    from tfrestore.measure import metrics
    t, r = np.ones((2, 3)), np.stack([np.zeros(3), np.full(3, 2.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = metrics.nmse_dot(t, r)
    np.testing.assert_array_equal(got, [np.inf, 3.0 / 6.0])        # Σ(t − r)² / Σ(t·r): 3 / 6
