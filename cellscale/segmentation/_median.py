"""The 3 x 3 median filter of a 2D image, exactly as ``scipy.ndimage.median_filter(image, 3)``.

Each pixel's 3 x 3 window is three columns of three. Sorting every vertical triple of the
image once gives each column's low, middle and high value; a window's median is then the
median of the largest of its three lows, the median of its three middles and the smallest
of its three highs (the median of nine values is at least four of them and at most four
others, which those three bound). That is about 18 elementwise minima and maxima over the
image, where ``median_filter`` selects within each of the image's windows one at a time:
several times faster on a field, and the same values, since a median only selects.
Borders are mirrored as ``median_filter``'s default ``mode="reflect"``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["median3"]


def median3(image: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.median_filter(image, 3)``, by sorted columns for a 2D image.

    Images that are not 2D go to ``median_filter`` itself.

    Examples
    --------
    >>> image = np.random.default_rng(0).random((7, 9)).astype(np.float32)
    >>> bool(np.array_equal(median3(image), ndi.median_filter(image, 3)))
    True
    """
    if image.ndim != 2 or min(image.shape) < 1:
        return ndi.median_filter(image, 3)
    padded = np.pad(image, 1, mode="symmetric")
    top, middle, bottom = padded[:-2], padded[1:-1], padded[2:]
    low, high = np.minimum(top, middle), np.maximum(top, middle)
    middle = np.maximum(low, np.minimum(high, bottom))  # each vertical triple's median,
    low, high = np.minimum(low, bottom), np.maximum(high, bottom)  # its least and greatest
    lows = np.maximum(np.maximum(low[:, :-2], low[:, 1:-1]), low[:, 2:])
    highs = np.minimum(np.minimum(high[:, :-2], high[:, 1:-1]), high[:, 2:])
    middles = _median_of_three(middle[:, :-2], middle[:, 1:-1], middle[:, 2:])
    return _median_of_three(lows, middles, highs).astype(image.dtype, copy=False)


def _median_of_three(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
