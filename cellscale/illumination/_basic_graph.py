"""BaSiC on a plate: sampled fields binned to the working size, one solve per channel, lazily."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from dask.delayed import Delayed, delayed

from cellscale.illumination._basic import basic
from cellscale.illumination._fields import FieldReader, Unit, upsample

__all__ = ["DEFAULT_SAMPLE", "basic_graph"]

DEFAULT_SAMPLE = 500
"""The most fields BaSiC holds (binned) in memory by default."""


def basic_graph(
    plate: xr.DataArray,
    read: FieldReader,
    positions: Sequence[int],
    units: Sequence[Unit],
    factor: int,
    *,
    smoothing: float,
    darkfield: bool,
) -> tuple[str, list[Delayed]]:
    """Each channel's lazy ``(flatfield, darkfield or None, solver record)``, and the name of
    the layer of read tasks.

    The binned fields of a channel meet in one task that runs :func:`basic` on them, so
    channels are solved in parallel where the scheduler has room. ``read`` reads the
    binned fields (from the plate's pixels, or binned images kept before); the plate gives
    the image shape.
    """
    stack = read(positions, units, factor)
    channels = stack.rechunk({0: -1}).to_delayed(optimize_graph=False)[0, :, 0, 0, 0]
    shape = (int(plate.sizes["y"]), int(plate.sizes["x"]))
    solve = delayed(_solve_channel, pure=True)
    return stack.name, [solve(fields, shape, factor, smoothing, darkfield) for fields in channels]


def _solve_channel(
    fields: np.ndarray, shape: tuple[int, int], factor: int, smoothing: float, darkfield: bool
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """BaSiC on one channel's binned fields ``(n, 1, 1, y', x')``; profiles at full size."""
    fit = basic(fields[:, 0, 0], darkfield=darkfield, smoothing=smoothing)
    flat = upsample(fit.flatfield, shape, factor)
    dark = None if fit.darkfield is None else upsample(fit.darkfield, shape, factor)
    record = {
        "smoothness": fit.smoothness,
        "iterations": fit.iterations,
        "reweightings": fit.reweightings,
        "converged": fit.converged,
    }
    return flat / flat.mean(dtype=np.float64), dark, record
