"""The fields an illumination fit reads, each reduced to one small image per channel.

A fit never holds full-size images: every ``(t, well, field)`` unit's image of each
channel is averaged over its Z planes and binned (block means) by an integer factor in
the task that reads it, so what flows on is about 128 pixels a side (and whatever a
method makes of it there, such as logs). All such tasks are one graph layer, built
directly rather than stacked from thousands of small arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from numpy.typing import DTypeLike

__all__ = [
    "WORKING_SIZE",
    "FieldReader",
    "Unit",
    "bin_factor",
    "bin_mean",
    "binned_image",
    "binned_shape",
    "field_block",
    "present_units",
    "reduced_fields",
    "spread",
    "upsample",
]

WORKING_SIZE = 128
"""Fields are binned to about this many pixels on their shorter side (BaSiC's working size).

Flatfields are smooth at a twentieth of the field and more, so the bins lose nothing of
them, and everything after the read is a fiftieth of the pixels at 1080 x 1080.
"""

Unit = tuple[int, int, int]
"""Positions ``(t, well, field)`` of one field of a plate."""

_UNIT_DIMS = ("t", "well", "field")


def present_units(plate: xr.DataArray) -> list[Unit]:
    """Every field the plate holds, in ``(t, well, field)`` order; holes are left out."""
    present = np.asarray(plate.coords["field_present"].values, dtype=bool)
    wells, fields = np.nonzero(present)
    return [
        (t, int(w), int(f))
        for t in range(plate.sizes["t"])
        for w, f in zip(wells, fields, strict=True)
    ]


def spread(units: Sequence[Unit], sample: int | None) -> list[Unit]:
    """At most ``sample`` of ``units``, evenly spaced from the first to the last.

    Examples
    --------
    >>> spread([(0, w, 0) for w in range(10)], 4)
    [(0, 0, 0), (0, 3, 0), (0, 6, 0), (0, 9, 0)]
    """
    if sample is None or sample >= len(units):
        return list(units)
    picked = np.linspace(0, len(units) - 1, sample).round().astype(int)
    return [units[i] for i in picked]


def bin_factor(shape: tuple[int, int]) -> int:
    """The integer binning that brings the shorter side of ``shape`` nearest to
    :data:`WORKING_SIZE`."""
    return max(1, round(min(shape) / WORKING_SIZE))


def binned_shape(shape: tuple[int, int], factor: int) -> tuple[int, int]:
    """The shape of an image of ``shape`` binned by ``factor`` (partial edge bins kept)."""
    return (-(-shape[0] // factor), -(-shape[1] // factor))


def bin_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Block means of a 2-D image over ``factor`` × ``factor`` blocks, float32.

    Edge blocks that the image does not fill are the means of the pixels they hold. The
    sums run over strided slices (every ``factor``-th row, then column), several times
    faster than reducing a reshaped array.
    """
    if factor == 1:
        return image.astype(np.float32)
    n_y, n_x = image.shape
    b_y, b_x = binned_shape((n_y, n_x), factor)
    rows = np.zeros((b_y, n_x), np.float32)
    for k in range(min(factor, n_y)):
        part = image[k::factor]
        rows[: len(part)] += part
    out = np.zeros((b_y, b_x), np.float32)
    for k in range(min(factor, n_x)):
        part = rows[:, k::factor]
        out[:, : part.shape[1]] += part
    out /= np.multiply.outer(
        np.minimum(factor, n_y - factor * np.arange(b_y)),
        np.minimum(factor, n_x - factor * np.arange(b_x)),
    ).astype(np.float32)
    return out


def binned_image(block: np.ndarray, factor: int) -> np.ndarray:
    """One image binned by ``factor`` (:func:`bin_mean`), its Z planes averaged: ``(y', x')``.

    ``block`` is one image of a plate, ``(…, [n_z,] n_y, n_x)`` with any leading dims of
    size 1. This is all a fit needs of the image: a pass that holds it (a projection
    writing it) can keep this instead, and the fit reads that (:class:`FieldReader`).

    Examples
    --------
    >>> stack = np.stack([np.full((4, 6), 2.0), np.full((4, 6), 4.0)])
    >>> binned_image(stack, 2)
    array([[3., 3., 3.],
           [3., 3., 3.]], dtype=float32)
    """
    planes = block.reshape(-1, *block.shape[-2:])
    small = bin_mean(planes[0], factor)
    for plane in planes[1:]:
        small += bin_mean(plane, factor)
    if len(planes) > 1:
        small /= np.float32(len(planes))
    return small


def field_block(
    small: np.ndarray, transform: Callable[[np.ndarray], np.ndarray] | None
) -> np.ndarray:
    """A binned image as one chunk of a :class:`FieldReader`'s array: ``(1, 1, planes, y', x')``."""
    out = small[None] if transform is None else transform(small)
    return out[None, None]


def _reduce(
    block: np.ndarray, factor: int, transform: Callable[[np.ndarray], np.ndarray] | None
) -> np.ndarray:
    """One image binned (then transformed), ``(1, 1, planes, y, x)``."""
    return field_block(binned_image(block, factor), transform)


class FieldReader(Protocol):
    """What a fit reads fields through: ``(positions, units, factor, *, transform, planes,
    dtype)`` to the lazy array :func:`reduced_fields` describes.

    :func:`reduced_fields` reads them from a plate's pixels; a reader of binned images a
    pass kept (:func:`binned_image` of every field) gives the same array without reading
    a pixel. Its array's name must be the name of its layer of read tasks, one task per
    ``(unit, channel)`` keyed ``(name, i, j, 0, 0, 0)``, for progress bars.
    """

    def __call__(
        self,
        positions: Sequence[int],
        units: Sequence[Unit],
        factor: int,
        *,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        planes: int = 1,
        dtype: DTypeLike = np.float32,
    ) -> da.Array: ...


def reduced_fields(
    plate: xr.DataArray,
    positions: Sequence[int],
    units: Sequence[Unit],
    factor: int,
    *,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    planes: int = 1,
    dtype: DTypeLike = np.float32,
) -> da.Array:
    """The binned images of ``units`` in channels ``positions``, lazily.

    Parameters
    ----------
    plate
        A plate, dims ``(t, well, field, [z,] c, y, x)``; it is rechunked to one image
        (with its whole Z stack) per chunk where it is not already.
    positions
        Channel positions, in the order of the result.
    units
        The fields to read.
    factor
        Binning factor (see :func:`bin_mean`).
    transform
        Applied to each binned image in the task that reads it; it returns ``planes``
        images of the binned shape, ``(planes, y', x')``.
    planes
        How many images ``transform`` makes of each (1 without one).
    dtype
        What ``transform`` returns (float32 without one).

    Returns
    -------
    dask.array.Array
        ``(len(units), len(positions), planes, y', x')``, one chunk (and task) per image
        read. Its name is the name of the layer of read tasks, for progress bars.
    """
    image_dims = ("y", "x", "z")
    data = plate.data.rechunk(tuple(-1 if d in image_dims else 1 for d in plate.dims))
    small = binned_shape((plate.sizes["y"], plate.sizes["x"]), factor)
    token = tokenize(data, list(positions), list(units), factor, transform, planes)
    name = f"illumination-fields-{token}"
    trailing = (0,) * (data.ndim - len(_UNIT_DIMS) - 1 - 2)  # the z chunk, if any
    dsk: dict[Any, Any] = {
        (name, i, j, 0, 0, 0): (_reduce, (data.name, *unit, *trailing, c, 0, 0), factor, transform)
        for i, unit in enumerate(units)
        for j, c in enumerate(positions)
    }
    # not blockwise: tasks read a chosen list of (t, well, field) images and channels, not a grid
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[data])
    chunks = ((1,) * len(units), (1,) * len(positions), (planes,), (small[0],), (small[1],))
    return da.Array(graph, name, chunks, meta=np.empty((0,) * 5, np.dtype(dtype)))


def upsample(small: np.ndarray, shape: tuple[int, int], factor: int) -> np.ndarray:
    """A binned image back at full ``shape``, float32: linear between bin centres, flat
    beyond them."""
    rows = _interpolation(shape[0], small.shape[0], factor)
    cols = _interpolation(shape[1], small.shape[1], factor)
    return (rows @ np.asarray(small, np.float64) @ cols.T).astype(np.float32)


def _interpolation(n: int, bins: int, factor: int) -> np.ndarray:
    """``(n, bins)`` weights that interpolate ``bins`` bins of ``factor`` pixels (the last
    may be partial) linearly at the centres of ``n`` pixels."""
    starts = factor * np.arange(bins)
    centres = (starts + np.minimum(starts + factor, n)) / 2.0
    where = np.interp(np.arange(n) + 0.5, centres, np.arange(bins, dtype=np.float64))
    low = np.minimum(np.floor(where).astype(int), bins - 1)
    high = np.minimum(low + 1, bins - 1)
    weights = np.zeros((n, bins))
    pixels = np.arange(n)
    np.add.at(weights, (pixels, low), 1.0 - (where - low))
    np.add.at(weights, (pixels, high), where - low)
    return weights
