"""main.py entry points and the image loaders."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.io

from tfrestore import data

ROOT = Path(__file__).resolve().parents[1]


def run_main(*args, **kw):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, **kw)


def test_main_list_prints_nets_and_layers():
    r = run_main("--list")
    assert r.returncode == 0, r.stderr
    for word in ("alexnet", "caffenet", "vgg16_bn", "resnet18", "layer2.0.conv1", "relu5_3", "norm2", "forward", "vgg19", "resnet18_v2", "relu5_4",
                 "bn_data"):
        assert word in r.stdout


def test_main_bad_net_and_bad_layer_fail_clearly():
    r = run_main("--paper=forward", "--net=alexnet9")
    assert r.returncode != 0 and "valid nets: alexnet" in r.stderr
    r = run_main("--paper=forward", "--net=alexnet", "--layers=conv7")
    errors = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(errors) == 1 and "did you mean conv5 or conv4 or conv3" in errors[0], r.stderr
    assert "--list" in errors[0]
    r = run_main("--paper=nope")
    assert r.returncode != 0 and "valid: " in r.stderr


def test_main_forward_prints_shapes(tmp_path):
    r = run_main("--paper=forward", "--net=caffenet", "--layers=conv1/lin,l4,fc8", "--image=chelsea",
                 f"--out={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert "(27, 27, 96)" in r.stdout and "(1000,)" in r.stdout
    assert '"weights": "random"' in (tmp_path / "forward.json").read_text()


def test_sample_images_are_natural_colour_photos():
    names = data.sample_image_names()
    assert {"astronaut", "chelsea", "coffee", "grace_hopper"} <= set(names)
    img = data.load_image("chelsea", 227)
    assert img.shape == (227, 227, 3) and img.dtype == np.uint8
    assert img.std() > 20 and np.ptp(img.reshape(-1, 3).mean(0)) > 5   # textured and coloured


def test_load_image_conversions(tmp_path):
    grey16 = (np.linspace(0, 65535, 40 * 30).reshape(30, 40)).astype(np.uint16)
    skimage.io.imsave(tmp_path / "g16.png", grey16, check_contrast=False)
    img = data.load_image(tmp_path / "g16.png")
    assert img.shape == (30, 40, 3) and img.dtype == np.uint8 and img.max() == 255
    np.testing.assert_array_equal(img[..., 0], img[..., 2])
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    rgba[:5, :, 3] = 0                                   # transparent half → white
    skimage.io.imsave(tmp_path / "a.png", rgba, check_contrast=False)
    img = data.load_image(tmp_path / "a.png")
    assert tuple(img[7, 0]) == (200, 0, 0) and tuple(img[0, 0]) == (255, 255, 255)
    crop = data.load_image(tmp_path / "g16.png", 16, crop="center")
    assert crop.shape == (16, 16, 3)
    with pytest.raises(FileNotFoundError, match="neither an embedded sample image"):
        data.load_image("no_such_picture")
