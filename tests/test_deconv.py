"""The DFT deconvolution layer: exact inversion, closed-form response, multi-channel semantics, gradients, saving."""
import numpy as np
import pytest
import tensorflow as tf
import keras

from tfrestore.models.deconv import DeconvDFT2D
from tfrestore.restore.degrade import blur, four_factor_blur, four_factor_kernel, gaussian_kernel

RNG = np.random.default_rng(0)


def _layer_with_taps(h, **kw):
    layer = DeconvDFT2D(h.shape, **kw)
    layer.build((None, 16, 16, 1 if kw.get("filters") is None else kw.get("c_in", 1)))
    layer.taps.assign(np.asarray(h, np.float32).ravel()[1:])
    return layer


def test_four_factor_layer_exactly_inverts_circular_four_factor_blur():
    h = np.array([[1.0, 0.2, 0.0, 0.0], [0.2, 0.0, 0.0, 0.0]])          # notebook 01's kernel
    x = RNG.uniform(0, 1, (2, 24, 20, 3))
    blurred = four_factor_blur(x, h)
    assert np.abs(blurred - x).max() > 0.1
    layer = _layer_with_taps(h)
    restored = layer(tf.constant(blurred, tf.float32)).numpy()
    np.testing.assert_allclose(restored, x, atol=2e-5)


def test_four_factor_blur_equals_linear_kernel_circularly():
    h = RNG.uniform(-0.3, 0.3, (2, 3))
    h[0, 0] = 1
    x = RNG.uniform(0, 1, (1, 17, 15, 1))
    np.testing.assert_allclose(blur(x, four_factor_kernel(h), "circular"), four_factor_blur(x, h), atol=1e-12)


def test_frequency_response_closed_form():
    h = RNG.uniform(-0.2, 0.2, (3, 3))
    h[0, 0] = 1
    layer = _layer_with_taps(h)
    impulse = np.zeros((1, 16, 16, 1), np.float32)
    impulse[0, 0, 0, 0] = 1
    response = np.fft.fft2(layer(tf.constant(impulse)).numpy()[0, :, :, 0].astype(np.float64))
    full = np.zeros((16, 16))
    full[:3, :3] = h
    H = np.fft.fft2(full)
    H_neg1 = H[(-np.arange(16)) % 16, :]                 # H(−k1, k2) by index negation
    closed = 1.0 / (np.abs(H) ** 2 * np.abs(H_neg1) ** 2)
    np.testing.assert_allclose(response.real, closed, rtol=2e-4)
    assert np.abs(response.imag).max() < 1e-4 * closed.max()      # zero phase
    # the product of the four reciprocal factors is the same thing
    neg = lambda A, ax: np.roll(np.flip(A, ax), 1, ax)
    four = 1 / (H * neg(H, 0) * neg(H, 1) * neg(neg(H, 0), 1))
    np.testing.assert_allclose(four.real, closed, rtol=1e-9)


def test_single_factor_is_causal_inverse():
    h = np.array([[1.0, 0.3], [0.1, 0.0]])
    x = RNG.uniform(0, 1, (1, 12, 12, 1))
    full = np.zeros((12, 12))
    full[:2, :2] = h
    blurred = np.real(np.fft.ifft2(np.fft.fft2(x[0, :, :, 0]) * np.fft.fft2(full)))[None, :, :, None]
    layer = _layer_with_taps(h, four_factor=False)
    np.testing.assert_allclose(layer(tf.constant(blurred, tf.float32)).numpy(), x, atol=2e-5)


def test_multichannel_equals_per_pair_sum_scaled_plus_bias():
    layer = DeconvDFT2D((3, 3), filters=4, kernel_init="head", seed=1)
    x = RNG.uniform(0, 1, (2, 12, 10, 3)).astype(np.float32)
    y = layer(x).numpy()
    taps, bias = layer.taps.numpy(), layer.bias.numpy()
    want = np.zeros((2, 12, 10, 4))
    for o in range(4):
        for i in range(3):
            single = DeconvDFT2D((3, 3))
            single.build((None, 12, 10, 1))
            single.taps.assign(taps[o, i])
            want[..., o] += single(x[..., i:i + 1]).numpy()[..., 0]
    want = want / np.sqrt(3) + bias
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


def test_autodiff_gradient_matches_finite_differences():
    keras.config.set_floatx("float64")
    try:
        layer = DeconvDFT2D((2, 3), filters=2, kernel_init="head", seed=3, dtype="float64", pad_fraction=0.25,
                            learnable_scale=True)
        x = tf.constant(RNG.uniform(0, 1, (1, 8, 8, 2)))
        t = tf.constant(RNG.uniform(0, 1, (1, 8, 8, 2)))
        loss = lambda: tf.reduce_sum(tf.square(layer(x) - t))
        with tf.GradientTape() as tape:
            value = loss()
        g = tape.gradient(value, layer.taps).numpy()
        base = layer.taps.numpy()
        for idx in [(0, 0, 0), (1, 1, 4), (0, 1, 2)]:
            eps = 1e-6
            for sign, store in ((1, "p"), (-1, "m")):
                v = base.copy()
                v[idx] += sign * eps
                layer.taps.assign(v)
                if store == "p":
                    lp = float(loss())
                else:
                    lm = float(loss())
            layer.taps.assign(base)
            assert (lp - lm) / (2 * eps) == pytest.approx(g[idx], rel=1e-5, abs=1e-8)
    finally:
        keras.config.set_floatx("float32")


def test_save_load_round_trip_and_xla(tmp_path):
    inp = keras.Input((16, 16, 1))
    out = DeconvDFT2D((3, 3), kernel_init="head", seed=2, learnable_scale=True, pad_fraction=0.5)(inp)
    model = keras.Model(inp, out)
    x = RNG.uniform(0, 1, (2, 16, 16, 1)).astype(np.float32)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(again(x).numpy(), model(x).numpy(), rtol=1e-6)
    assert again.layers[1].get_config()["pad_fraction"] == 0.5
    xla = tf.function(model, jit_compile=True)
    np.testing.assert_allclose(xla(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_zero_init_is_identity_and_gaussian_is_centred():
    x = RNG.uniform(0, 1, (1, 10, 10, 3)).astype(np.float32)
    np.testing.assert_allclose(DeconvDFT2D((4, 4))(x).numpy(), x, atol=1e-6)
    g = gaussian_kernel(5, 1.0)
    assert g.sum() == pytest.approx(1) and np.unravel_index(g.argmax(), g.shape) == (2, 2)
    spike = np.zeros((1, 15, 15, 1))
    spike[0, 7, 7] = 1
    centred = blur(spike, g, "circular")
    shifted = blur(spike, g, "circular", centred=False)       # notebook 06's storage: moves the image by (2, 2)
    assert np.unravel_index(centred[0, :, :, 0].argmax(), (15, 15)) == (7, 7)
    assert np.unravel_index(shifted[0, :, :, 0].argmax(), (15, 15)) == (9, 9)
    np.testing.assert_allclose(blur(spike, g, "zero"), centred, atol=1e-12)   # no wrap-around for a centred spike


# ---- the notebooks' experiments, tiny runs through deconv_layer.run ------------------------------------------
def _grey_photos(names, size, load):
    """The held-out photos as the notebooks prepare them, written out here: grey = the RGB mean / 255, the whole
    photo resized to size² ("resize") or its centre size² pixels ("crop")."""
    from tfrestore import data
    out = []
    for n in names:
        img = data.load_image(n, size) if load == "resize" else data.load_image(n)
        if load == "crop":
            top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
            img = img[top:top + size, left:left + size]
        out.append(img.astype(np.float64).mean(-1) / 255.0)
    return np.stack(out)


def _psnr(a, b):
    return float(np.mean([10 * np.log10(1.0 / np.mean((x - y) ** 2)) for x, y in zip(a, b)]))


def _reference_pairs(label, names):
    """(blurred, clean) [N, H, W] for these photos, framed and blurred as the spec gives the arm (§2.2, §2.4,
    §2.5) with scipy's own convolutions, and the pad."""
    from scipy import ndimage
    box, gauss = np.full((3, 3), 1 / 9), gaussian_kernel(5, 1.0)
    spec = {   # (size, load, pad, padded before blurring, blur of one [H, W] image)
        "box, padding 0": (128, "resize", 0, True, lambda x: ndimage.convolve(x, box, mode="constant")),
        "box, padding 32": (128, "resize", 32, True, lambda x: ndimage.convolve(x, box, mode="constant")),
        "gaussian, centred": (128, "resize", 32, True, lambda x: ndimage.convolve(x, gauss, mode="wrap")),
        # stored in the top-left corner: the centred blur moved by (2, 2) pixels, circularly
        "gaussian, off-centre (nb06: shifts by 2 px)": (128, "resize", 32, True, lambda x: np.roll(
            ndimage.convolve(x, gauss, mode="wrap"), (2, 2), axis=(0, 1))),
        "GOPRO-style deblurring (synthetic motion blur)": (128, "crop", 64, False, lambda x: ndimage.convolve(
            x, np.full((1, 9), 1 / 9), mode="constant")),
    }[label]
    size, load, pad, before, blur = spec
    frame = lambda a: np.pad(a, ((0, 0), (pad, pad), (pad, pad)))      # noqa: E731
    clean = _grey_photos(names, size, load)
    blurred = np.stack([blur(x) for x in frame(clean)]) if before else frame(np.stack([blur(x) for x in clean]))
    return blurred, frame(clean), pad


def _run(out, **flags) -> dict:
    """``--paper=deconv`` in-process: the paper's own Flags, writing into ``out``, seed 0."""
    from reproductions import deconv_layer, paper
    f = deconv_layer.Flags(**flags)
    return deconv_layer.run(f, paper.RunContext.create(deconv_layer.default_out(f), out=out, seed=0,
                                                       progress=False))


@pytest.mark.parametrize("batch, shuffle", [(4, False), (4, True), (None, False)])
def test_training_gives_the_weights_keras_fit_gave(tmp_path, batch, shuffle):
    """The experiments train through training.Trainer with the batches they gave keras.Model.fit before: 11
    images in batches of 4 (4, 4, 3 per pass, a batch never spanning two passes), reshuffled per pass with the
    seed (classification), or the whole set; 9 steps of Adam give fit's weights and first / last losses bit for
    bit."""
    import keras
    import tensorflow as tf
    from reproductions import deconv_layer, paper
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (11, 8, 8, 1)).astype(np.float32)
    y = (0.5 * x + 0.1).astype(np.float32)
    seed, steps = 3, 9

    def model():
        keras.utils.set_random_seed(seed)
        inp = keras.Input((8, 8, 1))
        return keras.Model(inp, deconv_layer.torch_default_conv(1, 3, 1, seed)(inp))
    ref = model()
    ref.compile(keras.optimizers.Adam(1e-2), "mse")
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = (ds.shuffle(11, seed=seed) if shuffle else ds).batch(batch or 11).repeat()
    losses = ref.fit(ds, epochs=steps, steps_per_epoch=1, verbose=0, shuffle=False).history["loss"]
    trained = model()
    ctx = paper.RunContext.create("unused", out=tmp_path, seed=seed, progress=False)
    batches = deconv_layer._FitBatches({"x": x, "y": y}, batch or 11, shuffle_seed=seed if shuffle else None)
    terms = deconv_layer._train(trained, batches, lambda m, b, t: {"loss": deconv_layer.LOSSES["l2"](
        b["y"], m(b["x"], training=t))}, lr=1e-2, steps=steps, ctx=ctx, name="arm")
    for a, b in zip(ref.weights, trained.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert (terms["initial_train_loss"], terms["train_loss"]) == (losses[0], losses[-1])
    assert (tmp_path / "arm" / "ckpt").is_dir()          # the Trainer's checkpoint: --resume continues it


@pytest.mark.experiment("deconv", "four_factor")
def test_four_factor_experiment_learns_the_inverse(tmp_path):
    from reproductions import deconv_layer
    res = _run(tmp_path, experiment="four_factor", steps=400)["results"]["four_factor"]
    k, truth = np.array(res["deconv"]["kernel"]), np.array(res["true_kernel"])
    identity = np.zeros_like(truth)
    identity[0, 0] = 1
    # 400 of the notebook's 2000 steps: the kernel has moved most of the way from δ to the blur's own kernel
    assert np.linalg.norm(k - truth) < 0.6 * np.linalg.norm(identity - truth)
    assert res["deconv"]["psnr"] > res["blurred input"]["psnr"] + 3      # on held-out images
    assert res["deconv"]["psnr"] > res["conv"]["psnr"]
    assert res["setting"]["image_size"] == [96, 96] and res["deconv"]["lr"] == 1e-2      # 48² + 24 px, Adam 1e-2
    assert (tmp_path / "figure.png").exists() and (tmp_path / "metrics.json").exists()


RESTORATION_RUNS = {   # experiment: (deconv kernel, conv kernel, deconv lr, conv lr, batch, epochs, pad) per §2
    "box": ((4, 4), (4, 4), 1e-3, 1e-3, 8, 500, None),
    "gaussian": ((4, 4), (4, 4), 5e-3, 5e-3, 16, 300, 32),
    "gopro": ((10, 10), (10, 10), 1e-3, 1e-3, 16, 100, 64),
}


@pytest.mark.parametrize("experiment", [
    pytest.param("box", marks=pytest.mark.experiment("deconv", "box")),
    pytest.param("gaussian", marks=pytest.mark.experiment("deconv", "gaussian")),
    pytest.param("gopro", marks=pytest.mark.experiment("deconv", "gopro")),
])
def test_restoration_experiments_degrade_train_and_start_as_the_notebooks(tmp_path, experiment):
    """Each arm: the held-out blurred input is the spec's blur (scipy's convolution of the same photos), the
    notebook's kernel sizes, rates, batch, epochs and padding are the ones used, the deconv layer starts as the
    identity (zero taps: its first loss is the blurred input's own error over the training photos, × 0.5 with
    nb05's scale), and training lowers the baseline convolution's loss from its random start."""
    from reproductions import deconv_layer
    from tfrestore import data
    k_deconv, k_conv, lr, conv_lr, batch, epochs, pad = RESTORATION_RUNS[experiment]
    steps = 6
    res = _run(tmp_path, experiment=experiment, steps=steps)["results"]
    assert len(res) == len(deconv_layer.RESTORATIONS[experiment])
    train_names = [n for n in data.sample_image_names() if n not in deconv_layer.TEST_IMAGES]
    for label, arm in res.items():
        blurred, clean, p = _reference_pairs(label, deconv_layer.TEST_IMAGES)
        inner = (slice(None), slice(p, clean.shape[1] - p), slice(p, clean.shape[2] - p))
        assert arm["blurred input"]["psnr"] == pytest.approx(_psnr(np.clip(blurred[inner], 0, 1), clean[inner]),
                                                             abs=2e-3)
        s = arm["setting"]
        assert (s["deconv_kernel_size"], s["conv_size"], s["batch"], s["epochs"], s["steps"]) == \
            (list(k_deconv), list(k_conv), batch, epochs, steps)
        assert (arm["deconv"]["lr"], arm["conv"]["lr"]) == (lr, conv_lr)
        assert s["pad"] == (pad if pad is not None else int(label.split()[-1]))
        blurred, clean, _ = _reference_pairs(label, train_names)      # one batch holds every training photo
        scale = 0.5 if experiment == "box" else 1.0
        assert arm["deconv"]["initial_train_loss"] == pytest.approx(np.mean((scale * blurred - clean) ** 2),
                                                                    rel=1e-4)
        assert arm["conv"]["train_loss"] < arm["conv"]["initial_train_loss"]
        if experiment == "box":
            assert arm["deconv"]["scale"] != 0.5      # learnable


@pytest.mark.experiment("deconv", "classification")
def test_classification_experiment_trains_both_arms_at_the_notebooks_settings(tmp_path):
    """nb04: ConvNetTiny2 (100 outputs whatever the data) with the deconv or a 3×3 conv in front, Adam 1e-4,
    batches of 32, 5 epochs over all the training images (50,000 with CIFAR-100, else the stated stand-in); a
    few steps lower both arms' held-out loss from its start."""
    from reproductions import deconv_layer
    res = _run(tmp_path, experiment="classification", steps=40)["results"]
    (heading, arms), = res.items()
    setting = arms.pop("setting")
    assert set(arms) == {"deconv 4×4 in front", "conv 3×3 in front"}
    assert (setting["lr"], setting["epochs"], setting["batch"], setting["steps"]) == (1e-4, 5, 32, 40)
    assert setting["train_images"] == (2000 if "stand-in" in heading else 50_000)
    for a in arms.values():
        assert a["outputs"] == 100                          # ConvNetTiny2's head (§3.1)
        assert a["test_loss"] < a["initial_test_loss"] - 0.3, a


@pytest.mark.experiment("deconv", "classification_resnet")
def test_resnet_experiment_deconv_arm_starts_as_the_bare_resnet(tmp_path):
    """nb07: the zero-initialised deconv in front is the identity, so that arm starts exactly where the bare
    ResNet-18 does, while a random 3×3 conv in front changes the start (§2.6); training lowers every arm's
    held-out loss."""
    from reproductions import deconv_layer
    res = _run(tmp_path, experiment="classification_resnet", steps=3)["results"]
    (heading, arms), = res.items()
    setting = arms.pop("setting")
    assert (setting["lr"], setting["epochs"], setting["batch"], setting["steps"]) == (1e-4, 10, 32, 3)
    deconv, conv, alone = (arms[k] for k in ("resnet18 + deconv 4×4", "resnet18 + conv 3×3",
                                             "resnet18 alone (the superseded identity run)"))
    assert deconv["initial_test_loss"] == pytest.approx(alone["initial_test_loss"], rel=1e-5)
    assert abs(conv["initial_test_loss"] - alone["initial_test_loss"]) > 1e-2
    for a in (deconv, conv, alone):
        assert a["outputs"] == 100 and a["test_loss"] < a["initial_test_loss"]


@pytest.mark.experiment("deconv", "superres")
def test_superres_reads_hr_lr_folder_pairs(tmp_path):
    """nb08–nb10 on an HR/ + LR/ folder: the pairs are read (matched by sorted name), kept at the notebooks'
    384², framed by 48 px of zeros, the last one held out; the blurred-input score is that pair's own PSNR
    (computed here from the files); each loss arm has its kernel and rates (the 3×3 conv at 1e-2 only with MSE)."""
    import skimage.io
    from reproductions import deconv_layer
    from tfrestore import data
    hr_all, lr_all = [], []
    for i, name in enumerate(["astronaut", "chelsea", "coffee"]):
        hr = data.load_image(name, 384, crop="center")
        lr = data.load_image(name, 192, crop="center")
        lr = np.repeat(np.repeat(lr, 2, 0), 2, 1)            # up-sampled LR, already at the HR size
        for folder, img in (("HR", hr), ("LR", lr)):
            (tmp_path / folder).mkdir(exist_ok=True)
            skimage.io.imsave(tmp_path / folder / f"{i:04d}.png", img, check_contrast=False)
        hr_all.append(hr.astype(np.float64).mean(-1) / 255)
        lr_all.append(lr.astype(np.float64).mean(-1) / 255)
    (tr_in, tr_out), (te_in, te_out) = deconv_layer._pairs(tmp_path, "HR", "LR", 384)
    assert tr_in.shape == (2, 384, 384, 1) and te_out.shape == (1, 384, 384, 1)
    np.testing.assert_allclose(te_out[0, ..., 0], hr_all[-1], atol=1e-6)
    res = _run(tmp_path / "out", experiment="superres", steps=2, data=str(tmp_path))
    assert res["data"] == str(tmp_path)
    want = {"l2": ((6, 6), 1e-3, 1e-2), "l1": ((6, 6), 1e-3, 1e-3), "ssim": ((2, 4), 1e-3, 1e-3)}
    for label, arm in res["results"].items():
        loss = label.split(", ")[1].split()[0]
        kernel, lr, conv_lr = want.pop(loss)
        assert arm["blurred input"]["psnr"] == pytest.approx(_psnr(lr_all[-1:], hr_all[-1:]), abs=1e-3)
        assert arm["setting"]["image_size"] == [480, 480] and arm["setting"]["train_images"] == 2
        assert (arm["setting"]["deconv_kernel_size"], arm["deconv"]["lr"], arm["conv"]["lr"]) == \
            (list(kernel), lr, conv_lr)
        assert arm["conv"]["train_loss"] < arm["conv"]["initial_train_loss"]
    assert not want
