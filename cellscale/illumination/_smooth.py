"""Gaussian smoothing that keeps slopes at the image edges (local linear regression).

A plain Gaussian filter pads the image (reflecting or repeating its edge), which
flattens a falloff towards the edge: a vignetted flatfield smoothed that way is too
bright in the corners, exactly where correction matters most. Here every output pixel
is instead the value at that pixel of a straight line fitted by Gaussian-weighted least
squares to the pixels that exist along the axis, one axis after the other. Inside the
image this equals the Gaussian filter up to the kernel's truncation; at the edges a
linear trend is kept rather than bent flat. Pixels can carry weights (how many fields
saw background there), and pixels of weight 0 are gaps the fit bridges.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["smooth"]

_TRUNCATE = 3.0


def smooth(image: np.ndarray, sigma: float, weights: np.ndarray | None = None) -> np.ndarray:
    """Local-linear Gaussian smoothing of a 2-D image, float64.

    Parameters
    ----------
    image
        The image.
    sigma
        Standard deviation of the Gaussian weights, in pixels; below half a pixel the
        image comes back as it is.
    weights
        Non-negative weight of each pixel (all 1 by default). Where no pixel of a
        window has weight, the result is NaN.

    Examples
    --------
    >>> ramp = np.add.outer(np.arange(8.0), np.zeros(5))
    >>> bool(np.allclose(smooth(ramp, 2.0), ramp))
    True
    >>> gappy = np.where(ramp == 3, 99.0, ramp)  # a bad row, given no weight
    >>> bool(np.allclose(smooth(gappy, 2.0, weights=(gappy != 99).astype(float)), ramp))
    True
    """
    values = np.asarray(image, dtype=np.float64)
    weight = np.ones_like(values) if weights is None else np.asarray(weights, np.float64)
    for axis in range(values.ndim):
        values, weight = _smooth_axis(values, weight, sigma, axis)
    return values


def _smooth_axis(
    values: np.ndarray, weight: np.ndarray, sigma: float, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """One axis of :func:`smooth`: the fitted values and the weight each fit rests on."""
    radius = min(int(_TRUNCATE * sigma + 0.5), values.shape[axis] - 1)
    if radius < 1:  # one pixel along the axis, or a kernel narrower than a pixel
        return values, weight
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)

    def window_sum(array: np.ndarray, moment: int) -> np.ndarray:
        taps = kernel * offsets**moment
        return ndimage.correlate1d(array, taps, axis=axis, mode="constant", cval=0.0)

    weighted = np.where(weight > 0, values, 0.0) * weight
    m0, m1, m2 = (window_sum(weight, k) for k in range(3))
    s0, s1 = window_sum(weighted, 0), window_sum(weighted, 1)
    det = m0 * m2 - m1 * m1
    with np.errstate(invalid="ignore", divide="ignore"):
        line = (m2 * s0 - m1 * s1) / det
        level = s0 / m0  # where one point alone carries the window, a line is undefined
    fitted = np.where(det > 1e-9 * m0 * m0, line, level)
    return fitted, m0
