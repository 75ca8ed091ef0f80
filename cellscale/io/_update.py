"""Correct a plate store's plate map without rewriting a pixel."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from cellscale._stages import output_lock
from cellscale.io._layout import PlateLayout
from cellscale.io._platemap import check_plate_map, read_plate_map
from cellscale.io._store_setup import read_store_record, write_store_record
from cellscale.plate import PlateError, build_plate

__all__ = ["update_plate_map"]


def update_plate_map(path: str | Path, plate_map: str | Path | pd.DataFrame) -> None:
    """Replace the plate map of a plate store; only metadata is written.

    Writing a plate into a store that holds another plate map is refused, so that a
    plate is never silently relabelled; use this to correct the annotations of a
    written plate (a wrong treatment, a missing column) instead of re-ingesting it.

    Parameters
    ----------
    path
        A plate store written by cellscale.
    plate_map
        A CSV/TSV file or table with a well column (see :func:`cellscale.read_plate_map`);
        every imaged well must be in it.

    Raises
    ------
    PlateError
        If the store is not a complete cellscale plate, or the plate map misses
        imaged wells.
    """
    path = Path(path)
    table = read_plate_map(plate_map)
    label = "the plate map" if isinstance(plate_map, pd.DataFrame) else f"plate map {plate_map}"
    with output_lock(path):
        record = read_store_record(path)
        if record is None or record.fingerprint is None:
            raise PlateError(f"{path} is not a complete plate store written by cellscale")
        layout = record.layout
        check_plate_map(table, layout.wells, label=label)
        mapped = PlateLayout.from_plate(_annotated(layout, table))
        root = zarr.open_group(str(path), mode="r+")
        updated = dataclasses.replace(layout, plate_map=mapped.plate_map)
        write_store_record(path, root, updated, record.fingerprint)


def _annotated(layout: PlateLayout, table: pd.DataFrame) -> xr.DataArray:
    """A tiny stand-in plate with the layout's wells and the new plate-map coordinates."""
    shape = (1, len(layout.wells), 1, 1, 1, 1, 1)
    return build_plate(
        da.zeros(shape, chunks=shape, dtype=np.uint8),
        name=layout.name,
        wells=layout.wells,
        fields=[0],
        channels=["c"],
        plate_map=table,
    )
