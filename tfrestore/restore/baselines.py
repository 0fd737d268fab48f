"""Classical restorations the network priors are compared with (scikit-image): total-variation denoising
(Chambolle), biharmonic inpainting, bicubic up-sampling and Richardson–Lucy deconvolution.

Every function takes and returns float images in [0, 1] (the observation's units), shape [H, W, C] (C = 1 or 3),
one image at a time, and is deterministic. The weighted mean filter the adversarial defences compare with is
:func:`tfrestore.restore.adversarial.mean_filter` (it acts on a batch inside the classifier's graph).
"""
from __future__ import annotations

import numpy as np


def tv_chambolle(image: np.ndarray, weight: float = 0.1) -> np.ndarray:
    """Total-variation denoising by Chambolle's projection (``skimage.restoration.denoise_tv_chambolle``).

    Args:
        image: [H, W, C] float in [0, 1], the noisy observation.
        weight: the TV weight in the image's [0, 1] units (larger: smoother); the DIP and autoencoder-prior
            comparisons use 0.1.
    Returns:
        [H, W, C] float64.
    """
    from skimage.restoration import denoise_tv_chambolle
    return denoise_tv_chambolle(image, weight=weight, channel_axis=-1)


def biharmonic(image: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Biharmonic inpainting (``skimage.restoration.inpaint_biharmonic``): the missing pixels filled by the
    smooth (biharmonic) interpolation of the kept ones.

    Args:
        image: [H, W, C] float in [0, 1]; the values at missing pixels are ignored.
        missing: [H, W] bool, True where a pixel is to be filled in.
    Returns:
        [H, W, C] float64.
    """
    from skimage.restoration import inpaint_biharmonic
    return inpaint_biharmonic(image, missing, channel_axis=-1)


def bicubic(image: np.ndarray, factor: int) -> np.ndarray:
    """Bicubic up-sampling by ``factor`` (``skimage.transform.resize``, order 3).

    Args:
        image: [h, w, C] float in [0, 1], the low-resolution observation.
        factor: integer scale; the output is [h·factor, w·factor, C] float64.
    """
    import skimage.transform
    h, w = image.shape[:2]
    return skimage.transform.resize(image, (h * factor, w * factor), order=3)


def richardson_lucy(image: np.ndarray, kernel: np.ndarray, iterations: int = 30) -> np.ndarray:
    """Richardson–Lucy deconvolution of each channel with the known blur kernel
    (``skimage.restoration.richardson_lucy``, which clips its output to [−1, 1]).

    Args:
        image: [H, W, C] float in [0, 1], the blurred (and noisy) observation.
        kernel: [k, k] the blur kernel (sums to 1).
        iterations: Richardson–Lucy iterations (the DIP comparison: 30).
    Returns:
        [H, W, C] float64.
    """
    from skimage.restoration import richardson_lucy as rl
    return np.stack([rl(image[..., c], kernel, num_iter=iterations) for c in range(image.shape[-1])], -1)
