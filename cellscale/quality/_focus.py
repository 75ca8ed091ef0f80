"""Focus measures of one image: variance of the Laplacian and the power-spectrum slope.

Both are computed on part of the image so that QC keeps up with reading it (see
:mod:`cellscale.quality._metrics` for which rows, and :data:`SPECTRUM_CROP`): a defocused field
is blurred everywhere, so a systematic sample measures it as well as every pixel does.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import fft

__all__ = ["SPECTRUM_CROP", "laplacian_variance", "power_log_log_slope"]

SPECTRUM_CROP = 256
"""Side of the central crop whose power spectrum gives :func:`power_log_log_slope`."""


def laplacian_variance(image: np.ndarray, rows: np.ndarray | None = None) -> float:
    """Variance of the 4-neighbour Laplacian over the interior pixels of the given rows.

    Parameters
    ----------
    image
        A 2-D image.
    rows
        Row indices, each with a row above and below it (``1 <= r <= n_y - 2``); all
        such rows by default.

    Returns
    -------
    float
        ``var(I[r-1, x] + I[r+1, x] + I[r, x-1] + I[r, x+1] - 4 I[r, x])`` over the rows
        and columns ``1 … n_x - 2``, leaving out pixels with a NaN or infinite value among
        these five; ``nan`` for an image too small to have any, or with none left.

    Examples
    --------
    >>> image = np.zeros((3, 5)); image[1, 2] = 1.0
    >>> round(laplacian_variance(image), 4)  # values 1, -4, 1
    5.5556
    """
    if rows is None:
        rows = np.arange(1, image.shape[0] - 1)
    if rows.size == 0 or image.shape[1] < 3:
        return float("nan")
    triplets = image[rows[:, None] + np.array([-1, 0, 1])].astype(np.float32)
    middle = triplets[:, 1]
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, left out below
        laplacian = triplets[:, 0, 1:-1] + triplets[:, 2, 1:-1]
        laplacian += middle[:, :-2]
        laplacian += middle[:, 2:]
        laplacian -= 4 * middle[:, 1:-1]
        flat = laplacian.ravel().astype(np.float64)  # float32 sums of squares lose digits
        total = flat.sum()
    if not np.isfinite(total):  # NaN or infinite pixels: where the Laplacian is defined
        flat = flat[np.isfinite(flat)]
        if flat.size == 0:
            return float("nan")
        total = flat.sum()
    mean = total / flat.size
    # einsum, not a BLAS dot: BLAS threads spinning beside dask's would cost more than the sum
    return float(np.einsum("i,i->", flat, flat) / flat.size - mean * mean)


def power_log_log_slope(image: np.ndarray) -> float:
    """Slope of log power against log spatial frequency, as CellProfiler's PowerLogLogSlope.

    The power spectrum of the central ``SPECTRUM_CROP`` × ``SPECTRUM_CROP`` crop (or the
    whole image if smaller) is summed over rings of radius ``r`` (frequency-index units,
    ``r - 1 <= |k| < r``) for ``r = 2 … floor(n / 8) - 1``, ``n`` the crop's shorter side,
    skipping the mean and the high frequencies as CellProfiler does; the slope is the
    least-squares fit of ``log(power)`` against ``log(r)``. Blur removes high frequencies,
    so a blurred image has a steeper (more negative) slope; flat noise gives about ``+1``.
    The slope does not depend on the image's scale or offset.

    Rings hold each frequency by its true distance from zero; CellProfiler's (centrosome's
    ``rps``) counts negative frequencies one index nearer, which shifts the slope of small
    images. The crop keeps the cost at a fraction of reading a megapixel image.

    Returns
    -------
    float
        The slope, or ``nan`` for a constant image, a crop under 32 pixels on a side or
        a crop with NaN or infinite pixels (which have no spectrum).
    """
    crop = _central_crop(image).astype(np.float32)
    labels, weights, n_rings = _rings(crop.shape)
    with np.errstate(invalid="ignore"):  # inf - inf: NaN
        centre = crop.mean(dtype=np.float64)
    if n_rings < 2 or not np.isfinite(centre):
        return float("nan")
    crop -= centre
    spectrum = fft.rfft2(crop, workers=1)
    low = spectrum[_low_rows(crop.shape[0], n_rings + 1), : n_rings + 2]
    power = (low.real.astype(np.float64) ** 2 + low.imag**2) * weights
    sums = np.bincount(labels.ravel(), power.ravel(), minlength=n_rings + 2)[2:]
    return _fit_slope(np.arange(2, n_rings + 2), sums)


def _central_crop(image: np.ndarray) -> np.ndarray:
    n_y, n_x = (min(side, SPECTRUM_CROP) for side in image.shape)
    y0, x0 = (image.shape[0] - n_y) // 2, (image.shape[1] - n_x) // 2
    return image[y0 : y0 + n_y, x0 : x0 + n_x]


def _low_rows(n_y: int, reach: int) -> np.ndarray:
    """Rows of the spectrum within ``reach`` of zero frequency, non-negative ones first."""
    positive = np.arange(min(reach + 1, n_y))
    negative = np.arange(max(n_y - reach, positive[-1] + 1), n_y)
    return np.concatenate([positive, negative])


@lru_cache(maxsize=8)
def _rings(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Ring labels and half-spectrum weights of the low-frequency block of an ``rfft2``.

    Label ``r`` marks frequencies with ``r - 1 <= |k| < r``; labels outside
    ``2 … n_rings + 1`` are 0 or 1 and dropped. A half-spectrum column other than the
    first stands for itself and its mirror image, so it weighs 2.
    """
    n_y, n_x = shape
    n_rings = max(int(np.floor(min(n_y, n_x) / 8.0)) - 2, 0)
    ky = _low_rows(n_y, n_rings + 1)
    ky = np.minimum(ky, n_y - ky)[:, None]
    kx = np.arange(min(n_rings + 2, n_x // 2 + 1))[None, :]
    label = np.floor(np.sqrt(ky**2 + kx**2)).astype(np.intp) + 1
    label[label > n_rings + 1] = 0
    weights = np.where(kx == 0, 1.0, 2.0) * np.ones_like(label, dtype=np.float64)
    return label, weights, n_rings


def _fit_slope(radii: np.ndarray, power: np.ndarray) -> float:
    usable = power > 0
    if usable.sum() < 2:
        return float("nan")
    x, y = np.log(radii[usable]), np.log(power[usable])
    x_centred = x - x.mean()
    return float(np.dot(x_centred, y - y.mean()) / np.dot(x_centred, x_centred))
