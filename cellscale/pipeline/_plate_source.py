"""The first stage of a plate: its images as a plate store, whatever the config's source.

A TIFF ``folder`` is ingested into the run's ``raw.zarr`` with every option of
:func:`cellscale.ingest` the plate entry gives, a ``synthetic`` plate is written there, and
a ``zarr`` plate is read in place: nothing is written to it, and a ``plate_map`` given
with it annotates the plate for this run only. Ingest errors advise the plate entry's
keys, not Python keywords.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xarray as xr

from cellscale._hints import as_config_keys
from cellscale.pipeline._config import PlateConfig
from cellscale.pipeline._state import RunState, store_stage
from cellscale.report import StageRecord

__all__ = ["fields_present", "plate_source"]


def plate_source(state: RunState, plate: PlateConfig, path: Path) -> xr.DataArray:
    """The plate's raw images, ingested or generated into ``path`` unless read in place."""
    import cellscale

    if plate.zarr is not None:
        raw = cellscale.open_plate(plate.zarr).rename(plate.name)
        read = StageRecord("ingest", 0.0, fields_present(raw), f"read in place: {plate.zarr}")
        state.record(read, plate.name)
        return raw if plate.plate_map is None else _annotated(raw, plate)
    store_stage(
        state,
        "ingest",
        plate.name,
        lambda: fields_present(cellscale.open_plate(path)),
        path,
        lambda overwrite: _write(state, plate, path, overwrite),
        lambda: cellscale.open_plate(path) is not None,
    )
    return cellscale.open_plate(path)


def _write(state: RunState, plate: PlateConfig, path: Path, overwrite: bool) -> None:
    import cellscale
    from cellscale.io._patterns import resolve_pattern
    from cellscale.plate import PlateError

    if plate.synthetic is not None:
        _write_synthetic(state, plate, path, overwrite)
        return
    assert plate.folder is not None  # one source, checked when the config loaded
    options: dict[str, Any] = {
        "channels": plate.channels,
        "fill_missing": plate.fill_missing,
        "on_unmatched": plate.on_unmatched,
        "on_nonfinite": plate.on_nonfinite,
        "rgb": plate.rgb,
        "project_z": plate.project_z,
        "well_column": plate.well_column,
        "levels": plate.levels,
    }
    try:
        cellscale.ingest(
            plate.folder,
            path,
            resolve_pattern(plate.pattern, plate.defaults or None),
            plate.plate_map,
            name=plate.name,
            overwrite=overwrite,
            **options,
            **state.common,
        )
    except PlateError as err:
        raise PlateError(as_config_keys(str(err), plate.name)) from err


def _write_synthetic(state: RunState, plate: PlateConfig, path: Path, overwrite: bool) -> None:
    from cellscale.synthetic import write_synthetic_plate

    s = plate.synthetic
    assert s is not None
    write_synthetic_plate(
        path,
        wells=s.wells,
        fields=s.fields,
        n_t=len(s.t_hours) if s.t_hours else s.timepoints,
        t_hours=s.t_hours,
        n_z=s.planes,
        channels=list(s.channels),
        shape=(s.size, s.size),
        cells_per_field=s.cells_per_field,
        seed=s.seed,
        name=plate.name,
        overwrite=overwrite,
        **state.common,
    )


def _annotated(raw: xr.DataArray, plate: PlateConfig) -> xr.DataArray:
    """``raw`` with the config's plate map as its ``well`` coordinates, in memory only."""
    from cellscale.io._platemap import check_plate_map, read_plate_map
    from cellscale.plate import plate_map_columns, plate_map_coords

    table = read_plate_map(str(plate.plate_map), well_column=plate.well_column)
    wells = [str(w) for w in raw.coords["well"].values]
    check_plate_map(table, wells, label=f"plate map {plate.plate_map}")
    return raw.drop_vars(plate_map_columns(raw)).assign_coords(plate_map_coords(table, wells))


def fields_present(raw: xr.DataArray) -> int:
    """The fields the plate holds: every time point of every present well field."""
    return int(raw.sizes["t"] * raw.coords["field_present"].values.sum())
