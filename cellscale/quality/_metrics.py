"""The numbers QC measures on one image, from a single read of it.

The maximum and the counts of pixels at it and at saturation are exact, since a few
saturated pixels matter. Everything else comes from a systematic sample of rows, every
``n_y // SAMPLED_ROWS``-th one starting half a step in (every row of images under
``2 * SAMPLED_ROWS`` rows), which keeps QC as fast as reading the images: percentiles,
mean and background from the sampled rows, the Laplacian at those of them with a row above
and below, and the power spectrum from a central crop (:mod:`cellscale.quality._focus`).

Floating-point images may hold NaN or infinite pixels (``ingest(on_nonfinite="keep")``):
their fraction is counted exactly, and every other measure is of the finite pixels, so
one such image cannot spoil the plate maxima the other images are judged by.
"""

from __future__ import annotations

import numpy as np

from cellscale.quality._focus import laplacian_variance, power_log_log_slope

__all__ = [
    "BACKGROUND_PERCENTILE",
    "IMAGE_METRICS",
    "PERCENTILES",
    "SAMPLED_ROWS",
    "image_metrics",
    "percentiles",
    "sampled_rows",
]

SAMPLED_ROWS = 64
"""About how many rows of an image the sampled statistics use."""

PERCENTILES = {"p01": 1.0, "p50": 50.0, "p99": 99.0}
"""The intensity percentiles reported, by column name."""

BACKGROUND_PERCENTILE = 5.0
"""The percentile taken as an image's background level."""

IMAGE_METRICS = (
    "max",
    "n_at_max",
    "n_saturated",
    "mean",
    *PERCENTILES,
    "background",
    "focus_laplacian_var",
    "focus_powerlog_slope",
    "nonfinite_fraction",
)
"""What :func:`image_metrics` returns, in order."""


def image_metrics(block: np.ndarray, saturation: float | None) -> np.ndarray:
    """Every number of :data:`IMAGE_METRICS` for one image, as float64.

    Parameters
    ----------
    block
        One image of a plate, any leading dims of size 1 and optionally a Z stack:
        shape ``(…, [n_z,] n_y, n_x)``. A stack is measured on its maximum projection.
    saturation
        The value from which a pixel counts as saturated; ``None`` leaves
        ``n_saturated`` as ``nan`` (decided from the plate's maximum later).

    Returns
    -------
    numpy.ndarray
        Values in the order of :data:`IMAGE_METRICS`. ``nonfinite_fraction`` is the
        fraction of the block's values (of every Z plane) that are NaN or infinite; the
        other values are of the finite pixels: counts of 0 and ``nan`` elsewhere where
        there are none.
    """
    image = _plane(block)
    nonfinite = _nonfinite_fraction(block)
    values = image if nonfinite == 0.0 else image[np.isfinite(image)]
    high = values.max() if values.size else np.nan
    n_at_max = int(np.count_nonzero(values == high))
    rows = sampled_rows(image.shape[0])
    inner = rows[(rows >= 1) & (rows <= image.shape[0] - 2)]
    return np.array(
        [
            high,
            n_at_max,
            _n_saturated(values, high, n_at_max, saturation),
            *_sample_levels(image[rows], finite_only=nonfinite > 0.0),
            laplacian_variance(image, inner),
            power_log_log_slope(image),
            nonfinite,
        ],
        dtype=np.float64,
    )


def sampled_rows(n_y: int) -> np.ndarray:
    """The rows the sampled statistics use: every ``max(1, n_y // SAMPLED_ROWS)``-th one.

    Examples
    --------
    >>> sampled_rows(5).tolist(), sampled_rows(1080)[:3].tolist(), len(sampled_rows(1080))
    ([0, 1, 2, 3, 4], [8, 24, 40], 67)
    """
    step = max(1, n_y // SAMPLED_ROWS)
    return np.arange(step // 2, n_y, step)


def percentiles(values: np.ndarray, q: list[float]) -> np.ndarray:
    """``numpy.percentile(values, q)`` (linear), from a histogram for 8- and 16-bit unsigned data.

    Examples
    --------
    >>> values = np.array([[3, 1], [4, 1]], dtype=np.uint16)
    >>> percentiles(values, [0.0, 50.0, 100.0]).tolist()
    [1.0, 2.0, 4.0]
    """
    if values.dtype.kind == "u" and values.dtype.itemsize <= 2:
        return _histogram_percentiles(np.bincount(values.ravel()), q)
    return np.percentile(values, q).astype(np.float64)


def _histogram_percentiles(counts: np.ndarray, q: list[float]) -> np.ndarray:
    """Linearly interpolated percentiles of the values ``0 … len(counts) - 1`` counted."""
    cumulative = np.cumsum(counts)
    last = int(cumulative[-1]) - 1
    position = last * np.asarray(q, dtype=np.float64) / 100.0
    below = np.floor(position)
    lower = np.searchsorted(cumulative, below, side="right")
    upper = np.searchsorted(cumulative, np.minimum(below + 1, last), side="right")
    return lower + (position - below) * (upper - lower)


def _sample_levels(sample: np.ndarray, *, finite_only: bool) -> list[float]:
    """The mean, :data:`PERCENTILES` and background of the sampled pixels (the finite ones)."""
    if finite_only:
        sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return [np.nan] * (len(PERCENTILES) + 2)
    levels = percentiles(sample, [*PERCENTILES.values(), BACKGROUND_PERCENTILE])
    return [sample.mean(dtype=np.float64), *levels]


def _nonfinite_fraction(block: np.ndarray) -> float:
    """The fraction of ``block``'s values that are NaN or infinite (0 for integer dtypes)."""
    if block.dtype.kind not in "fc":
        return 0.0
    return float(block.size - np.count_nonzero(np.isfinite(block))) / block.size


def _plane(block: np.ndarray) -> np.ndarray:
    stack = block.reshape(-1, *block.shape[-2:])
    return stack[0] if stack.shape[0] == 1 else stack.max(axis=0)


def _n_saturated(values: np.ndarray, high: float, n_at_max: int, saturation: float | None) -> float:
    if saturation is None:
        return float("nan")
    if high < saturation:
        return 0.0
    if high == saturation:
        return float(n_at_max)
    return float(np.count_nonzero(values >= saturation))
