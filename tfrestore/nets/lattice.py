"""M&V 2016's neuron lattice and image size for activation maximisation (``exp_maximization.m``, spec mv2016.md §5).

A mosaic maximises k neurons — one per filter, each at its own cell of a ⌈√k⌉ × ⌈√k⌉ lattice — in one image. A cell
is ``spacing`` output positions wide: round(1.1·rf/stride) (at least 4 for a mosaic), made odd so that the neuron
sits at the cell's centre; rf and stride are the layer's receptive-field size and stride in input pixels
(:func:`tfrestore.nets.receptive_field`). The image is as large as the lattice needs: :func:`find_image_size` gives
the input size whose output map at the layer is exactly the lattice, :func:`conv_trunk` the network up to the layer
at that size (the model's weights copied).
"""
from __future__ import annotations

import math

import keras
import numpy as np

from .layers import ChannelMajorFlatten, MaxPool, pool_output_size
from .taps import net_of, resolve_layer, tag, weights_source

SPACING_FACTOR = 1.1         # cell width ≈ 1.1·rf/stride output positions (exp_maximization.m)
MOSAIC_MIN_SPACING = 4       # with more than one filter the cell is at least 4 positions wide
MAX_IMAGE_SIZE = 4096        # find_image_size's search bound, as in exp_maximization.m


def lattice_spacing(rf: int, stride: int, filters: int = 1) -> int:
    """Cell width in output positions: round(1.1·rf/stride) with MATLAB's rounding (halves away from zero), at
    least 4 when ``filters`` > 1, then made odd (+1 if even) so each neuron has a centre."""
    reps = int(math.floor(SPACING_FACTOR * rf / stride + 0.5))
    if filters > 1:
        reps = max(reps, MOSAIC_MIN_SPACING)
    return reps + 1 if reps % 2 == 0 else reps


def lattice(filters: int, spacing: int) -> tuple[int, list[tuple[int, int]]]:
    """(side, positions): the square output map of ⌈√filters⌉ cells a side, and the (row, column) of filter i's
    neuron, filling the rows first (exp_maximization.m's column-major index, transposed by its ``permute``)."""
    if filters < 1 or spacing < 1:
        raise ValueError(f"a lattice needs at least one filter and a spacing ≥ 1, got {filters} and {spacing}")
    per_row = math.ceil(math.sqrt(filters))
    centre = (spacing - 1) // 2
    positions = [((i // per_row) * spacing + centre, (i % per_row) * spacing + centre) for i in range(filters)]
    return per_row * spacing, positions


def _chain(model: keras.Model, layer: str) -> list[keras.layers.Layer]:
    """The layers from the input up to ``layer``, refusing what has no spatial map (fc) or is not a chain."""
    target = resolve_layer(model, layer)
    names = [l.name for l in model.layers]
    if target not in names:
        raise ValueError(f"layer {layer} not found in {model.name}")
    chain = model.layers[1:names.index(target) + 1]
    for prev, l in zip(model.layers, chain):
        if isinstance(l, (keras.layers.Dense, keras.layers.Flatten, ChannelMajorFlatten)):
            raise ValueError(f"{net_of(model)} {layer} is fully connected: it has a map only at the network's input "
                             "size, so no lattice and no image size to find; pick a convolutional layer")
        inbound = [t._keras_history[0].name for t in keras.tree.flatten(l.input)]
        if inbound != [prev.name]:
            raise ValueError(f"{net_of(model)} is not a chain up to {layer} (layer '{l.name}' reads {inbound}); "
                             "the lattice geometry needs a sequential network (AlexNet, CaffeNet, VGG)")
    return chain


def output_size(model: keras.Model, layer: str, size: int) -> int:
    """Side of ``layer``'s output map for a size × size input, in closed form from the chain's paddings, kernels
    and strides (Caffe's ceil rounding for pooling); 0 when the input is smaller than the layer's window."""
    n = size
    for l in _chain(model, layer):
        if isinstance(l, keras.layers.ZeroPadding2D):
            (top, bottom), _ = l.padding
            n += top + bottom
        elif isinstance(l, keras.layers.Conv2D):
            k, s = l.kernel_size[0], l.strides[0]
            n = -(-n // s) if l.padding == "same" else (n - k) // s + 1
        elif isinstance(l, MaxPool):
            n = pool_output_size(n, l.pool_size, l.strides, l.pad, l.ceil_mode) if n >= l.pool_size else 0
        if n <= 0:
            return 0
    return n


def find_image_size(model: keras.Model, layer: str, side: int, *, smallest: bool = True) -> int:
    """The input size whose output map at ``layer`` is ``side`` × ``side`` (the lattice's).

    Default: the *smallest* input whose map holds the lattice (the spec's and the issue's definition, mv2016.md
    §5). ``smallest=False``: what exp_maximization.m's loop returns — it tries sizes 1, 2, … and stops at the first
    whose map is larger than the lattice, taking the size before it (the *largest* input with a ``side`` map).
    Both maps equal the lattice; they differ by < stride pixels (AlexNet conv1, 25 positions: 107 vs 110).
    """
    first = None
    for n in range(1, MAX_IMAGE_SIZE + 1):
        out = output_size(model, layer, n)
        if out == side and first is None:
            first = n
        if out > side:
            if first is None:
                raise ValueError(f"no input size gives {net_of(model)} {layer} a {side}×{side} map (it jumps "
                                 f"from below to {out} at {n}×{n})")
            return first if smallest else n - 1
    raise ValueError(f"{net_of(model)} {layer} needs an input larger than {MAX_IMAGE_SIZE}² for a {side}×{side} map")


def conv_trunk(model: keras.Model, layer: str, size: int) -> keras.Model:
    """The network from its input up to ``layer`` (names kept, weights copied) for a size × size input: what
    activation maximisation optimises when the lattice sets the image size. Tagged like ``model`` (net name, weight
    source), so taps, aliases and receptive fields resolve as on the full network."""
    chain = _chain(model, layer)
    inp = keras.Input((size, size, model.input.shape[-1]), name=model.layers[0].name)
    x = inp
    for l in chain:
        clone = l.__class__.from_config(l.get_config())
        x = clone(x)
        clone.set_weights(l.get_weights())
    trunk = keras.Model(inp, x, name=f"{model.name}_to_{chain[-1].name}_{size}")
    tag(trunk, net_of(model), weights_source(model))
    return trunk


def lattice_weights(shape: tuple[int, ...], channels, scales, spacing: int) -> np.ndarray:
    """[1, side, side, C] zeros with filter i's neuron — channel ``channels[i]`` at its lattice position — set to
    ``scales[i]``; ``shape`` is the layer's map (side, side, C), which must be the lattice's."""
    side, positions = lattice(len(channels), spacing)
    if tuple(shape[:2]) != (side, side):
        raise ValueError(f"the layer's map is {shape[0]}×{shape[1]}, the lattice {side}×{side}: build the net at "
                         "find_image_size's input size")
    w = np.zeros((1, *shape), np.float32)
    for (r, c), ch, v in zip(positions, channels, scales):
        w[0, r, c, ch] = v
    return w
