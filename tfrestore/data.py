"""Natural sample images shipped inside installed packages, and loading of any user image.

All loaders return RGB ``uint8`` arrays of shape (H, W, 3), the convention used throughout tfrestore.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import skimage
import skimage.io
import skimage.transform

# Colour photographs that ship with scikit-image and matplotlib (no download needed).
_SKIMAGE = {"astronaut": "astronaut.png", "chelsea": "chelsea.png", "coffee": "coffee.png", "rocket": "rocket.jpg",
            "motorcycle_left": "motorcycle_left.png", "hubble_deep_field": "hubble_deep_field.jpg",
            "retina": "retina.jpg", "immunohistochemistry": "ihc.png"}
_MATPLOTLIB = {"grace_hopper": "grace_hopper.jpg"}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")


def _sample_path(name: str) -> Path:
    if name in _SKIMAGE:
        return Path(skimage.__file__).parent / "data" / _SKIMAGE[name]
    if name in _MATPLOTLIB:
        import matplotlib
        return Path(matplotlib.get_data_path()) / "sample_data" / _MATPLOTLIB[name]
    raise KeyError(name)


def sample_image_names() -> list[str]:
    """Names of the embedded natural colour photos that are present in this install."""
    return [n for n in list(_SKIMAGE) + list(_MATPLOTLIB) if _sample_path(n).exists()]


def sample_images(size: int | None = None, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """``{name: RGB uint8 image}`` for the embedded photos, optionally resized to ``size``² (M&V convention)."""
    return {n: load_image(n, size) for n in (names or sample_image_names())}


def to_rgb_uint8(img: np.ndarray) -> np.ndarray:
    """Grey → RGB, RGBA → RGB (composited on white), 16-bit / float → 8-bit."""
    img = np.asarray(img)
    if img.dtype == np.uint16:
        img = (img.astype(np.float64) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    elif img.dtype == bool:
        img = img.astype(np.uint8) * 255
    elif np.issubdtype(img.dtype, np.floating):
        scale = 255.0 if img.max() <= 1.0 else 1.0
        img = np.clip(img * scale + 0.5, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.ndim == 3 and img.shape[-1] == 4:
        a = img[..., 3:].astype(np.float64) / 255.0
        img = (img[..., :3] * a + 255.0 * (1 - a) + 0.5).astype(np.uint8)
    if img.ndim == 3 and img.shape[-1] == 2:      # grey + alpha
        img = to_rgb_uint8(np.concatenate([img[..., :1]] * 3 + [img[..., 1:]], axis=-1))
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"cannot interpret an image of shape {img.shape} as RGB")
    return img


def resize(img: np.ndarray, size: int | tuple[int, int], crop: str = "none") -> np.ndarray:
    """Resize an RGB uint8 image.

    ``crop="none"``: anisotropic resize of the whole image to ``size`` (M&V 2015 ``cnn_normalize``, MATLAB
    ``imresize`` bicubic with antialiasing); ``crop="center"``: cut the largest centred square first (thesis
    convention, bilinear). Returns uint8.
    """
    h, w = (size, size) if isinstance(size, int) else size
    if crop == "center":
        s = min(img.shape[:2])
        y0, x0 = (img.shape[0] - s) // 2, (img.shape[1] - s) // 2
        img = img[y0:y0 + s, x0:x0 + s]
        order = 1
    elif crop == "none":
        order = 3
    else:
        raise ValueError(f"crop must be 'none' or 'center', got {crop!r}")
    if img.shape[:2] == (h, w):
        return img
    out = skimage.transform.resize(img, (h, w), order=order, anti_aliasing=True, preserve_range=True)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def load_image(name_or_path: str | os.PathLike, size: int | tuple[int, int] | None = None,
               crop: str = "none") -> np.ndarray:
    """Load a sample image by name or any image file by path as RGB uint8, optionally resized (see :func:`resize`)."""
    key = str(name_or_path)
    try:
        path = _sample_path(key)
    except KeyError:
        path = Path(key).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"'{key}' is neither an embedded sample image ({', '.join(sample_image_names())})"
                                    f" nor an existing file") from None
    if path.is_dir():
        raise ValueError(f"'{key}' is a folder, not an image file (give one image; folders go to --data)")
    try:
        if path.suffix == ".npy":
            img = np.load(path)
        else:
            img = skimage.io.imread(path)
            if img.ndim == 4:   # animated / multipage: first frame
                img = img[0]
    except Exception as e:   # imageio's messages point at video plugins; say what is wrong with the file
        raise ValueError(f"cannot read '{key}' as an image: not a readable {path.suffix or 'image'} file "
                         f"({type(e).__name__}); use PNG, JPEG, BMP, TIFF, GIF or WebP") from None
    img = to_rgb_uint8(img)
    return resize(img, size, crop) if size is not None else img


def image_folder(path: str | os.PathLike) -> list[Path]:
    """Image files in a folder, sorted by name."""
    p = Path(path)
    if not p.is_dir():
        raise NotADirectoryError(f"{p} is not a folder")
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {p}")
    return files


# ---- digits: scikit-learn's bundled 8×8 set (embedded) or MNIST from a local copy ------------------------------
def digits(size: int = 28, source: str | os.PathLike | None = None, split: str = "train",
           val_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, str]:
    """Grey-level digits as ``(images [N, size, size, 1] float32 in [0, 1], labels [N] int64, description)``.

    ``source=None``: scikit-learn's bundled 1,797 8×8 digits (values 0–16), bilinearly up-sampled to ``size`` —
    a demonstration set, not MNIST. ``split`` "train" / "val" takes a fixed, seeded 80 / 20 division of it.
    ``source`` = a folder with MNIST's four IDX files (optionally ``.gz``) or an ``.npz`` with ``x_train``,
    ``y_train``, ``x_test``, ``y_test`` (Keras' ``mnist.npz``); "train" / "val" are MNIST's train / test sets.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if source is None:
        from sklearn.datasets import load_digits
        d = load_digits()
        order = np.random.default_rng(0).permutation(len(d.target))
        cut = int(round(len(order) * (1 - val_fraction)))
        rows = order[:cut] if split == "train" else order[cut:]
        small = d.images[rows].astype(np.float64) / 16.0
        big = np.stack([skimage.transform.resize(im, (size, size), order=1, anti_aliasing=False) for im in small])
        return (np.clip(big, 0, 1)[..., None].astype(np.float32), d.target[rows].astype(np.int64),
                f"scikit-learn bundled 8x8 digits up-sampled to {size}x{size} (demonstration set, not MNIST)")
    x, y = _mnist(Path(source).expanduser(), split)
    if x.shape[1] != size:
        x = np.stack([skimage.transform.resize(im, (size, size), order=1) for im in x])
    return x[..., None].astype(np.float32), y, f"MNIST {split} from {source}"


def _mnist(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if path.suffix == ".npz":
        with np.load(path) as z:
            key = "train" if split == "train" else "test"
            if f"x_{key}" not in z:
                raise ValueError(f"{path} has no x_{key} / y_{key} arrays (found {', '.join(z.files)})")
            return z[f"x_{key}"].astype(np.float32) / 255.0, z[f"y_{key}"].astype(np.int64)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: give a folder with MNIST's IDX files or an .npz")
    prefix = "train" if split == "train" else "t10k"

    def read(stem):
        import gzip
        for name in (stem, stem + ".gz"):
            f = path / name
            if f.exists():
                raw = (gzip.open if name.endswith(".gz") else open)(f, "rb").read()
                dims = raw[3]
                shape = np.frombuffer(raw, ">u4", count=dims, offset=4)
                return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)
        raise FileNotFoundError(f"{path} has no {stem}[.gz] (MNIST's IDX files)")

    return read(f"{prefix}-images-idx3-ubyte").astype(np.float32) / 255.0, \
        read(f"{prefix}-labels-idx1-ubyte").astype(np.int64)


def digit_images(source=None, split: str = "train") -> tuple[np.ndarray, np.ndarray, str]:
    """(RGB 0–255 float32 [N, 28, 28, 3], labels [N], description)."""
    x, y, desc = digits(28, source, split)
    return np.repeat(x * 255.0, 3, axis=-1).astype(np.float32), y, desc
