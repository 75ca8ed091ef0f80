"""Deterministic, lazy synthetic plates in the plate schema."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import DTypeLike

from cellscale.plate import build_plate, image_chunks
from cellscale.synthetic._graph import image_data
from cellscale.synthetic._model import ATTRS_KEY, CellModel, Recipe
from cellscale.synthetic._platemap import default_plate_map, resolve_wells
from cellscale.synthetic._render import CHANNEL_KINDS

__all__ = ["DTYPES", "synthetic_plate"]

DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
"""The pixel types a synthetic plate can have."""

_HOURS_APART = 24.0


def _stains(channels: int | Sequence[str] | Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``(channel name, stain)`` pairs from a count, stain names or a name -> stain map."""
    if isinstance(channels, int):
        if not 1 <= channels <= len(CHANNEL_KINDS):
            raise ValueError(f"channels={channels}: choose 1 to {len(CHANNEL_KINDS)} stains")
        return tuple((kind, kind) for kind in CHANNEL_KINDS[:channels])
    pairs = (
        [(str(k), str(v)) for k, v in channels.items()]
        if isinstance(channels, Mapping)
        else [(str(c), str(c)) for c in channels]
    )
    unknown = sorted({kind for _, kind in pairs} - set(CHANNEL_KINDS))
    if unknown or not pairs:
        raise ValueError(f"unknown stains {unknown}; synthetic channels show {CHANNEL_KINDS}")
    return tuple(pairs)


def _hours(n_t: int, t_hours: Sequence[float] | None) -> list[float]:
    if t_hours is None:
        if n_t < 1:
            raise ValueError(f"n_t must be at least 1, got {n_t}")
        return [_HOURS_APART * (i + 1) for i in range(n_t)]
    hours = [float(h) for h in t_hours]
    if n_t not in (1, len(hours)):
        raise ValueError(f"n_t={n_t} disagrees with {len(hours)} t_hours")
    if not hours or min(hours) < 0 or len(set(hours)) != len(hours):
        raise ValueError(f"t_hours must be distinct and not negative, got {hours}")
    return hours


def _check_sizes(fields: int, n_z: int, shape: tuple[int, int], cells_per_field: float) -> None:
    if fields < 1 or n_z < 1 or len(shape) != 2 or min(shape) < 1:
        raise ValueError(
            f"need fields >= 1, n_z >= 1 and a (y, x) shape of positive sizes; "
            f"got fields={fields}, n_z={n_z}, shape={shape}"
        )
    if not (math.isfinite(cells_per_field) and cells_per_field >= 0):
        raise ValueError(f"cells_per_field must be a number >= 0, got {cells_per_field}")


def synthetic_plate(
    wells: int | Sequence[str] = 4,
    *,
    fields: int = 2,
    n_t: int = 1,
    t_hours: Sequence[float] | None = None,
    n_z: int = 6,
    channels: int | Sequence[str] | Mapping[str, str] = ("nuclei", "cytoplasm"),
    shape: tuple[int, int] = (256, 256),
    cells_per_field: float = 25.0,
    dtype: DTypeLike = np.uint16,
    plate_map: pd.DataFrame | None = None,
    plate_format: int = 96,
    seed: int = 0,
    pixel_size_um: float = 0.65,
    model: CellModel | None = None,
    name: str = "synthetic",
) -> xr.DataArray:
    """A deterministic, lazy plate of synthetic cells with plate-map-driven phenotypes.

    Each ``(t, well, field, c)`` image is one dask task that draws its field from a
    seed derived from ``(seed, t, well, field)``: a chunk computed alone equals the
    same chunk of the whole plate, and nothing is drawn until the plate is computed.
    Fields show ellipsoidal cells with a nucleus, stain texture, vignetting, a per-field
    focal plane with defocus blur growing away from it, and camera offset, shot and
    read noise.

    Phenotypes follow the plate map: a well's response is
    ``r = c / (c + ec50) * (1 - exp(-t / 24 h))`` for concentration ``c`` (0 in control
    wells). At full response cells are 1.5 times wider and twice as long as wide, their
    nuclei 1.3 times wider and 1.6 times brighter, their cytoplasm 0.6 times as bright,
    and there are half as many; cell numbers also grow with time in every well.

    Parameters
    ----------
    wells
        Well names, or a count meaning the first ``n`` wells of ``plate_format``.
    fields
        Fields (sites) per well, numbered from 1.
    n_t, t_hours
        Time points: ``n_t`` of them 24 h apart from 24 h, or the hours after
        treatment given by ``t_hours``. The ``t`` coordinate holds seconds.
    n_z
        Z planes per field.
    channels
        A count of stains (the first of ``CHANNEL_KINDS``: nuclei, cytoplasm,
        membrane, mito, er), stain names, or a mapping of channel names to stains.
    shape
        ``(y, x)`` size of each image.
    cells_per_field
        Mean number of cells of an untreated field at 24 h (Poisson; fewer are placed
        when they do not fit without overlap).
    dtype
        ``uint16`` (default), ``uint8`` (both spanning their range) or ``float32``
        (0 to 1).
    plate_map
        Table indexed by well; its ``concentration`` (µM), ``control`` and optional
        ``ec50_um`` columns drive the phenotypes and every column becomes a well
        coordinate. Defaults to :func:`default_plate_map` of the wells.
    plate_format
        Plate format for ``wells`` given as a count (96, 384, …).
    seed
        Seed of the whole plate.
    pixel_size_um
        Pixel size in micrometres.
    model
        Cell sizes, potency and defocus; :class:`CellModel` defaults when omitted.
    name
        Plate name.

    Returns
    -------
    xarray.DataArray
        A plate ``(t, well, field, z, c, y, x)`` whose ``attrs["synthetic"]`` records
        the recipe used by :func:`synthetic_labels` and :func:`synthetic_cells`.

    See Also
    --------
    synthetic_labels, synthetic_cells, synthetic_focal_planes, write_synthetic_plate

    Examples
    --------
    >>> from cellscale.synthetic import synthetic_plate
    >>> plate = synthetic_plate(wells=2, fields=1, n_z=3, shape=(64, 64), seed=1)
    >>> dict(plate.sizes)
    {'t': 1, 'well': 2, 'field': 1, 'z': 3, 'c': 2, 'y': 64, 'x': 64}
    >>> plate.isel(well=0).compute().dtype
    dtype('uint16')
    """
    pixel_type = np.dtype(dtype)
    if pixel_type not in DTYPES:
        raise ValueError(f"dtype {pixel_type} is not one of {[str(d) for d in DTYPES]}")
    shape = (int(shape[0]), int(shape[1]))
    _check_sizes(fields, n_z, shape, cells_per_field)
    well_names = resolve_wells(wells, plate_format)
    stains = _stains(channels)
    hours = _hours(n_t, t_hours)
    recipe = Recipe(
        seed=int(seed),
        cells_per_field=float(cells_per_field),
        n_z=int(n_z),
        pixel_size_um=float(pixel_size_um),
        model=model or CellModel(),
        stains=stains,
    )
    full_shape = (len(hours), len(well_names), fields, n_z, len(stains), *shape)
    template = build_plate(
        da.empty(full_shape, chunks=image_chunks(full_shape), dtype=pixel_type),
        name=name,
        wells=well_names,
        fields=range(1, fields + 1),
        channels=[channel for channel, _ in stains],
        t=[h * 3600.0 for h in hours],
        plate_map=default_plate_map(well_names) if plate_map is None else plate_map,
        pixel_size_um=[pixel_size_um, pixel_size_um],
        attrs={ATTRS_KEY: recipe.to_attrs()},
    )
    return template.copy(data=image_data(template, recipe, pixel_type))
