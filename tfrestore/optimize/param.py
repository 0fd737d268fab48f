"""Parameterisations: what the engine optimises, and how it becomes an image.

A parameterisation owns its ``variables`` (any list of ``tf.Variable``; the optimiser keeps slots per variable)
and maps them to a batch of N images with ``image(seed)``:

- :class:`Pixels` — the image itself, optionally scaled (M&V 2015's σ trick: the variable is x̃ and the image σ·x̃,
  so a step of lr on x̃ is M&V's step of lr·σ² in image units). One slice per problem (``per_problem``).
- :class:`Generator` — a network's weights are the variables and its output for a fixed code z is the image (the
  deep image prior; an inverter's code). Shared by all N outputs.

Images are [N, H, W, C] in tfrestore's image space (RGB 0–255 mean-subtracted for the inversions; any C).
The papers' initialisations live here too.
"""
from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf


class Parameterization:
    """Base: ``variables``, ``image(seed=None)``, ``n``; ``per_problem`` says whether the first axis of every
    variable is the problem axis (then each problem gets its own learning rate and its own L-BFGS)."""

    per_problem = True
    variables: list[tf.Variable]

    @property
    def n(self) -> int:
        raise NotImplementedError

    def image(self, seed=None) -> tf.Tensor:
        """[N, H, W, C] image space. ``seed`` ([2] int) keys any per-step randomness; None at evaluation."""
        raise NotImplementedError

    def constrain(self, project: Callable[[tf.Tensor], tf.Tensor]) -> None:
        """Apply an image-space projection to the variables (only meaningful for pixels)."""
        raise ValueError(f"{type(self).__name__} cannot be projected onto an image-space constraint; "
                         "use a penalty term instead, or Pixels")

    def trackables(self) -> dict:
        """What a checkpoint must hold to restore this parameterisation."""
        return {f"var{i}": v for i, v in enumerate(self.variables)}


class Pixels(Parameterization):
    """The image as the variable. ``init`` is [N, H, W, C] image space; the variable holds init/scale."""

    def __init__(self, init: np.ndarray, scale: float = 1.0):
        init = np.asarray(init, np.float32)
        if init.ndim != 4:
            raise ValueError(f"Pixels needs init of shape [N, H, W, C], got {init.shape}")
        self.scale = float(scale)
        self.var = tf.Variable(init / self.scale, name="pixels")
        self.variables = [self.var]

    @property
    def n(self) -> int:
        return int(self.var.shape[0])

    @property
    def shape(self) -> tuple:
        return tuple(self.var.shape)

    def image(self, seed=None) -> tf.Tensor:
        return self.var * self.scale

    def constrain(self, project):
        self.var.assign(self.project_update(self.var, project))

    def project_update(self, x: tf.Tensor, project) -> tf.Tensor:
        """An updated variable value → its projection (variable units)."""
        return project(x * self.scale) / self.scale


class Generator(Parameterization):
    """A network's output as the image: ``image = model(z + noise_std·ε, training=training)``.

    Args:
        model: any Keras model mapping ``z`` to [N, H, W, C]; its trainable weights are the optimised variables.
        z: the fixed input code, [N, ...].
        noise_std: the deep image prior's input-noise regularisation σ_p (ε ~ N(0, 1) drawn afresh every step from
            the engine's stateless step seed; none at evaluation).
        training: passed to the model at every call (batch norm on batch statistics, as the deep image prior
            runs it, also when the result is read).
        output_scale, output_offset: image = output·scale + offset (e.g. a sigmoid output to 0–255 image space).
    """

    per_problem = False

    def __init__(self, model: keras.Model, z: np.ndarray, noise_std: float = 0.0, training: bool = True,
                 output_scale: float = 1.0, output_offset: float | np.ndarray = 0.0):
        self.model = model
        self.z = tf.constant(np.asarray(z, np.float32))
        self.noise_std, self.training = float(noise_std), bool(training)
        self.output_scale = float(output_scale)
        self.output_offset = tf.constant(output_offset, tf.float32)
        # Keras 3 variables wrap a tf.Variable; the engine's tape and updates work on that one
        self.variables = [v.value if not isinstance(v, tf.Variable) else v for v in model.trainable_variables]
        if not self.variables or not all(isinstance(v, tf.Variable) for v in self.variables):
            raise ValueError("Generator needs a Keras model (TensorFlow backend) with trainable weights")

    @property
    def n(self) -> int:
        return int(self.z.shape[0])

    def image(self, seed=None) -> tf.Tensor:
        z = self.z
        if seed is not None and self.noise_std > 0:
            z = z + self.noise_std * tf.random.stateless_normal(tf.shape(z), seed=seed)
        out = self.model(z, training=self.training)
        return out * self.output_scale + self.output_offset

    def trackables(self) -> dict:
        return {"generator": self.model}


def init_mv2015(n: int, size: int, sigma: float, seed: int) -> np.ndarray:
    """White Gaussian noise rescaled to total L2 norm σ per problem (M&V 2015 ``invert_nn.m``)."""
    x = np.random.default_rng(seed).standard_normal((n, size, size, 3)).astype(np.float32)
    return x * (sigma / np.sqrt((x.astype(np.float64) ** 2).sum(axis=(1, 2, 3))))[:, None, None, None]


MV2016_INIT_PERCENTILE = 95      # nnpreimage.m: the noise is divided by its 95th percentile (spec mv2016.md §3)


def init_mv2016(n: int, canvas: int, bound: float, seed: int) -> np.ndarray:
    """Uniform noise in [−1, 1] divided by its 95th percentile, times B/√3, per problem (``nnpreimage.m``)."""
    x = np.random.default_rng(seed).uniform(-1, 1, (n, canvas, canvas, 3)).astype(np.float32)
    p95 = np.percentile(x.reshape(n, -1), MV2016_INIT_PERCENTILE, axis=1)   # prctile(x(:), 95) ≈ 0.9
    return x / p95[:, None, None, None] * bound / np.sqrt(3)


def place_in_canvas(images: np.ndarray, canvas: int, offsets) -> np.ndarray:
    """[N, canvas, canvas, C] zeros with image i written at (offsets[i], offsets[i]): M&V 2016's ``initialImage``
    (the canvas starts at zero and the image goes into the middle of each problem's own canvas, spec mv2016.md
    §3). ``images`` is [N, H, W, C] image space."""
    images = np.asarray(images, np.float32)
    n, h, w = images.shape[:3]
    offsets = np.broadcast_to(np.asarray(offsets, int), (n,))
    if (offsets < 0).any() or (offsets + max(h, w) > canvas).any():
        raise ValueError(f"images of {h}×{w} at offsets {offsets.tolist()} do not fit a {canvas}² canvas")
    out = np.zeros((n, canvas, canvas, images.shape[3]), np.float32)
    for i, o in enumerate(offsets):
        out[i, o:o + h, o:o + w] = images[i]
    return out
