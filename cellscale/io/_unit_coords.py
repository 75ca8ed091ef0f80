"""Per-unit coordinates kept beside a plate's pixels (``focus_plane`` of a best-focus projection).

A step can compute one value per ``(t, well, field)``, lazily, with the pixels: the
plane a best-focus projection kept is one. The writer stores each such coordinate in
``cellscale_unit_coords/<name>`` (one chunk per unit, written by the unit's own task
before it is marked complete), and :func:`cellscale.open_plate` gives it back as a lazy
coordinate. Reading it is strict like the pixels: a unit marked complete whose value is
missing is an error, never a fill value.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import zarr

from cellscale.io._chunks import DamagedChunkError, chunk_exists, chunk_location
from cellscale.io._layout import PlateLayout

__all__ = ["UNIT_COORDS", "create_unit_coords", "open_unit_coords", "read_unit_coords"]

UNIT_COORDS = "cellscale_unit_coords"


def create_unit_coords(root: zarr.Group, layout: PlateLayout) -> dict[str, zarr.Array]:
    """Create one empty array per unit coordinate of ``layout``."""
    if not layout.unit_coords:
        return {}
    group = root.require_group(UNIT_COORDS)
    shape = (len(layout.t), len(layout.wells), len(layout.fields))
    return {
        name: group.create_array(
            name,
            shape=shape,
            chunks=(1, 1, 1),
            dtype=dtype,
            fill_value=_fill(np.dtype(dtype)),
            compressors=None,
            overwrite=True,
        )
        for name, dtype in layout.unit_coords.items()
    }


def open_unit_coords(root: zarr.Group, layout: PlateLayout) -> dict[str, zarr.Array]:
    """The unit-coordinate arrays of an existing store."""
    arrays = {}
    for name in layout.unit_coords:
        array = root[f"{UNIT_COORDS}/{name}"]
        assert isinstance(array, zarr.Array)
        arrays[name] = array
    return arrays


def read_unit_coords(
    root: zarr.Group, layout: PlateLayout, tokens: np.ndarray | None
) -> dict[str, da.Array]:
    """Each unit coordinate as a lazy ``(t, well, field)`` array, read strictly."""
    done = tokens != 0 if tokens is not None else None
    out = {}
    for name, array in open_unit_coords(root, layout).items():
        values = dask.delayed(_read_strictly, pure=True)(array, done, name)
        out[name] = da.from_delayed(values, shape=array.shape, dtype=array.dtype)
    return out


def _read_strictly(array: zarr.Array, done: np.ndarray | None, name: str) -> np.ndarray:
    if done is not None:
        for unit in np.argwhere(done):
            coords = tuple(int(i) for i in unit)
            if not chunk_exists(array, coords):
                raise DamagedChunkError(
                    f"{name} of unit (t, well, field) {coords}: chunk "
                    f"{chunk_location(array, coords)} is missing, but the unit is marked complete"
                )
    return np.asarray(array[...])


def _fill(dtype: np.dtype) -> object:
    if dtype.kind == "f":
        return float("nan")
    if dtype.kind == "i":
        return -1
    return 0
