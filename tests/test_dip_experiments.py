"""The deep image prior's five tasks run through ``--paper=dip`` (``reproductions.dip.run``, in-process) at a tiny size, and the
command line's refusals.

Settings typed here from the DIP notebooks (DmitryUlyanov/deep-image-prior: denoising, super-resolution and
inpainting notebooks; ``feature_inversion.ipynb`` = spec ``mv2016.md`` §10), not from the code."""
import numpy as np
import pytest

from reproductions import dip, paper

RESTORATION_NET = {"channels_down": (128,) * 5, "channels_up": (128,) * 5, "channels_skip": (4,) * 5,
                   "kernel_down": 3, "kernel_up": 3, "kernel_skip": 1, "pad": "reflection", "downsample": "stride",
                   "upsample": "bilinear", "conv1x1_up": True}
FEATURE_INVERSION_NET = {"channels_down": (16, 32, 64, 128, 128, 128), "channels_up": (16, 32, 64, 128, 128, 128),
                         "channels_skip": (4,) * 6, "kernel_down": (7, 7, 5, 5, 3, 3),
                         "kernel_up": (7, 7, 5, 5, 3, 3), "kernel_skip": 1, "pad": "zero", "downsample": "avg",
                         "upsample": "nearest", "conv1x1_up": True}
RESTORATIONS = {   # task: (input noise σ_p, Adam lr, the data term's σ in [0, 1] units)
    "denoise": (1 / 30, 0.01, 25 / 255),
    "inpaint": (0.03, 0.01, 1 / 255),
    "superres": (0.03, 0.01, 1 / 255),
    "deblur": (1 / 30, 0.01, 2 / 255),          # not in the notebooks: tfrestore's, with the denoising settings
}


def _run(out, **flags) -> dict:
    """``--paper=dip`` in-process: the paper's own Flags, writing into ``out``, seed 0."""
    f = dip.Flags(**flags)
    return dip.run(f, paper.RunContext.create(dip.default_out(f), out=out, seed=0, progress=False))


@pytest.mark.parametrize("task", [
    pytest.param("denoise", marks=pytest.mark.experiment("dip", "denoise")),
    pytest.param("inpaint", marks=pytest.mark.experiment("dip", "inpaint")),
    pytest.param("superres", marks=pytest.mark.experiment("dip", "superres")),
    pytest.param("deblur", marks=pytest.mark.experiment("dip", "deblur")),
])
def test_dip_restoration_tasks_fit_their_observation(tmp_path, task, monkeypatch):
    """A few Adam steps of the 5 × 128 skip net at 64²: the notebook's settings are the ones used, the observation
    is the task's degradation, the data term falls and the output moves towards the clean image from where the
    untrained generator starts (the baseline a method that does not optimise keeps)."""
    noise_std, lr, data_sigma = RESTORATIONS[task]
    steps = 8
    extra = {"optimizer": "lbfgs"} if task == "superres" else {}      # the paper's L-BFGS finish, on one task
    monkeypatch.setattr(dip, "LBFGS_FINISH", 1)            # of 50
    m = _run(tmp_path, task=task, size=64, steps=steps, **extra)
    s = m["settings"]
    assert (s["steps"], s["learning_rate"], s["input_channels"], s["input_scale"], s["ema_decay"]) == \
        (steps, lr, 32, 0.1, 0.99)
    assert s["input_noise_std"] == pytest.approx(noise_std) and s["data_sigma"] == pytest.approx(data_sigma)
    assert s["generator"] == RESTORATION_NET
    rows = {r["method"]: r for r in m["rows"]}
    if task == "denoise":     # σ = 25/255 noise: 20·log10(255/25) = 20.17 dB, a little more where clipping cuts it
        assert 20.0 < rows["corrupted input"]["psnr"] < 21.5
    if task == "superres":    # ×4 down-sampling
        assert s["observation_shape"] == [1, 16, 16, 3]
        methods = [r["method"] for r in m["rows"]]
        assert methods[:2] == ["corrupted input", "bicubic"] and len(m["curve"]) >= 2
        assert any("L-BFGS finish" in x for x in methods)
        assert (tmp_path / "curve.png").exists() and (tmp_path / "figure.png").exists()
    history, curve = m["history"], m["curve"]
    assert history[-1]["loss"] < history[0]["loss"], history
    assert curve[-1]["psnr_output"] > curve[0]["psnr_output"] + 1.0, curve


@pytest.mark.experiment("dip", "invert")
def test_dip_feature_inversion_uses_the_notebooks_settings_and_lowers_the_feature_error(tmp_path, capsys):
    """feature_inversion.ipynb at a tiny size: the 6-scale zero-padded generator on a fixed code one multiple of
    64 above the target (224 → 256 in the notebook; 56 → 64 here), cropped to the target, Adam 1e-3 over its
    weights, AlexNet's fc6 matched by the mean squared error — which falls from the untrained generator's."""
    steps = 8
    m = _run(tmp_path, task="invert", size=56, steps=steps)
    s = m["settings"]
    assert (s["net"], s["layer"], s["learning_rate"], s["input_noise_std"], s["steps"]) == \
        ("alexnet", "fc6", 1e-3, 0.0, steps)
    assert (s["imsize"], s["generator_size"], s["input_channels"], s["input_scale"]) == (56, 64, 32, 0.1)
    assert s["generator"] == FEATURE_INVERSION_NET
    history = m["history"]
    assert history[-1]["loss"] < 0.5 * history[0]["loss"], history
    dip_row = next(r for r in m["rows"] if r["method"] == "DIP output")
    # the objective is the mean over fc6's 4,096 values (nn.MSELoss), not their sum nor a normalised error:
    # its last value (one step before the end) is of the order of the output's own mean squared feature error
    assert 0.3 < history[-1]["loss"] / dip_row["feature_mse"] < 3, (history[-1], dip_row)
    assert f"outputs in {tmp_path}" in capsys.readouterr().out        # issue 25 item 9: invert says where, too


def test_dip_command_line_refuses_what_a_task_does_not_take(capfd):
    """main.py in-process: exit status 2 and a one-line reason for flags a task does not take."""
    import main

    def cli(*args):
        main.FLAGS.unparse_flags()
        main.FLAGS(["main.py", *args])
        try:
            return main.main(["main.py"]), capfd.readouterr().err
        finally:
            main.FLAGS.unparse_flags()

    code, err = cli("--paper=dip", "--task=denoise", "--net=alexnet")
    assert code == 2 and "--task=invert" in err
    code, err = cli("--paper=dip", "--task=superres", "--corrupted=chelsea")
    assert code == 2 and "--image" in err
    code, err = cli("--paper=dip", "--task=invert", "--optimizer=lbfgs")
    assert code == 2 and "restoration tasks" in err
