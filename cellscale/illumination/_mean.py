"""The "mean" flatfield: a smoothed geometric mean of many fields (CellProfiler's way).

CellProfiler's ``CorrectIlluminationCalculate`` averages the images of a plate pixel by
pixel and smooths the average. Here the average is of log intensities, so the estimate
is the geometric mean of the fields (a flatfield multiplies every image, so it adds
``log F`` to every log image), and it is an average of background only: a pixel of a
field counts while it lies within a factor 1.5 either way of the field's local
background (the median of each of 4 × 4 blocks, interpolated between block centres),
and not at all otherwise. Cells, which land at random places in random fields, drop
out rather than being averaged in, and so does dark debris. A window set by the
field's local background, rather than by one global percentile, never cuts the
background itself however strong the vignetting; symmetric in log, it truncates the
background's own noise about equally on both sides (and binning averages that noise
down first).

Each field is binned to about 128 px a side as it is read, and per pixel the sum of
its logs where it counted and how many fields counted stream through a float64 dask
tree reduction. Their ratio is smoothed by a Gaussian local-linear fit weighted by
those counts (:mod:`._smooth`: edges keep their falloff, pixels no field counted are
bridged) of sigma ``min(y, x) / 20`` times ``smoothing``, exponentiated, brought back to
full size by linear interpolation and scaled to mean 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import xarray as xr
from dask.delayed import Delayed, delayed

from cellscale.illumination._fields import FieldReader, Unit, upsample
from cellscale.illumination._smooth import smooth

__all__ = [
    "BACKGROUND_GRID",
    "LOG_FLOORS",
    "SIGMA_FRACTION",
    "WINDOW",
    "background_logs",
    "log_background",
    "mean_graph",
]

SIGMA_FRACTION = 1.0 / 20.0
"""The default smoothing sigma as a fraction of the shorter image side."""

LOG_FLOORS = {"integer": 1.0, "float": 1e-6}
"""Binned values below these (one grey level; a millionth) count as them in the logs."""

WINDOW = 1.5
"""A pixel counts while within this factor of its field's local background, either way."""

BACKGROUND_GRID = 4
"""A field's local background is the median of each block of a grid this many by this many."""

_SPLIT_EVERY = 16
_MEDIAN_SIDE = 32


def mean_graph(
    plate: xr.DataArray,
    read: FieldReader,
    positions: Sequence[int],
    units: Sequence[Unit],
    factor: int,
    sigma: float,
) -> tuple[str, list[Delayed]]:
    """The lazy flatfield of each channel and the name of the layer of read tasks.

    Parameters
    ----------
    plate
        The plate (its dtype and image shape).
    read
        Reads the binned fields (from the plate's pixels, or binned images kept before).
    positions
        Channel positions.
    units
        The fields to average.
    factor
        Binning factor of the fields.
    sigma
        Smoothing sigma, in pixels of the full-size image.
    """
    kind = "integer" if np.dtype(plate.dtype).kind in "iub" else "float"
    transform = partial(background_logs, floor=LOG_FLOORS[kind])
    logs = read(positions, units, factor, transform=transform, planes=2, dtype=np.float64)
    sums = logs.sum(axis=0, split_every=_SPLIT_EVERY).to_delayed(optimize_graph=False)
    shape = (int(plate.sizes["y"]), int(plate.sizes["x"]))
    finish = delayed(_flatfield, pure=True)
    return logs.name, [finish(block[0, 0, 0], shape, factor, sigma) for block in sums]


def background_logs(image: np.ndarray, floor: float) -> np.ndarray:
    """Where a field is background, its log: ``(log * counts, counts)``, float64.

    A pixel counts (1, else 0) while within a factor :data:`WINDOW` of the field's local
    background (see :func:`log_background`); values below ``floor`` are taken as
    ``floor``.

    Examples
    --------
    >>> field = np.full((8, 8), 100.0)
    >>> field[2, 3] = 5000.0  # a bright cell
    >>> logs, counts = background_logs(field, 1.0)
    >>> int(counts.sum()), round(float(np.exp(logs.sum() / counts.sum())), 4)
    (63, 100.0)
    """
    logs = np.log(np.maximum(image, np.float32(floor)), dtype=np.float32)
    distance = logs - log_background(image, floor)
    counts = np.abs(distance, out=distance) <= np.float32(np.log(WINDOW))
    out = np.empty((2, *image.shape), np.float64)
    np.multiply(logs, counts, out=out[0])
    out[1] = counts
    return out


def log_background(image: np.ndarray, floor: float) -> np.ndarray:
    """The log of a field's local background: the medians of square blocks, about
    :data:`BACKGROUND_GRID` to the shorter side, interpolated in log between block centres.

    Rows and columns beyond the last whole block are left out of the medians; each
    median is of at most about 32 × 32 pixels of its block, evenly spaced.
    """
    block = max(1, min(image.shape) // BACKGROUND_GRID)
    grid_y, grid_x = image.shape[0] // block, image.shape[1] // block
    step = max(1, block // _MEDIAN_SIDE)
    blocks = image[: grid_y * block, : grid_x * block].reshape(grid_y, block, grid_x, block)
    samples = blocks[:, ::step, :, ::step].transpose(0, 2, 1, 3).reshape(grid_y, grid_x, -1)
    middle = samples.shape[-1] // 2  # the upper median: one partition, no averaging
    medians = np.partition(samples, middle, axis=-1)[..., middle]
    return upsample(np.log(np.maximum(medians, floor)), image.shape, block)


def _flatfield(sums: np.ndarray, shape: tuple[int, int], factor: int, sigma: float) -> np.ndarray:
    """Full-size flatfield (mean 1) from the binned sums of background logs and counts."""
    logs, counts = sums[0]
    log_mean = smooth(logs / np.maximum(counts, 1.0), sigma / factor, weights=counts)
    if not np.isfinite(log_mean).all():
        raise ValueError(
            "too few pixels near their field's background to estimate a flatfield: "
            "try method='basic' or more fields"
        )
    flat = upsample(np.exp(log_mean - log_mean.mean()), shape, factor)
    return flat / flat.mean(dtype=np.float64)
