"""The per-plate stages of a run: ingest, project, segment, measure and embed.

Each writes one store through :func:`~cellscale.pipeline._state.store_stage`, which
resumes what the store has not finished and writes it again when it was made from other
inputs or settings; QC and illumination (:mod:`cellscale.pipeline._image_stages`) run
between them, and the cell pass (:mod:`cellscale.pipeline._cell_pass`) measures and
embeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pandas as pd
import xarray as xr

from cellscale.ops._projection import ProjectionMethod
from cellscale.pipeline import _field_stats as field_stats
from cellscale.pipeline._cell_pass import cell_pass
from cellscale.pipeline._config import PlateConfig
from cellscale.pipeline._image_stages import illumination, quality_control
from cellscale.pipeline._plate_source import fields_present, plate_source
from cellscale.pipeline._preflight import check_channels
from cellscale.pipeline._state import RunState, store_stage

__all__ = ["PlateImages", "run_plate"]


@dataclass(frozen=True)
class PlateImages:
    """A plate's images as the run left them: projected, as measured (corrected), labels."""

    projected: xr.DataArray
    images: xr.DataArray
    labels: xr.Dataset


def run_plate(state: RunState, plate: PlateConfig) -> PlateImages:
    """Ingest, project, segment, measure and embed one plate; return its images."""
    folder = state.plate_dir(plate)
    folder.mkdir(parents=True, exist_ok=True)
    raw = plate_source(state, plate, folder / "raw.zarr")
    fields = fields_present(raw)
    check_channels(state.config, [str(c) for c in raw.coords["c"].values])
    projected = _project(state, plate, raw, folder / "projected.zarr", fields)
    exclude = quality_control(state, plate, projected, folder / "qc.parquet", fields)
    images = illumination(state, plate, projected, folder / "illumination.npz", fields)
    seen = images if state.config.segment.corrected else projected
    labels = _segment(state, plate, seen, exclude, folder / "projected.zarr", fields)
    cell_pass(state, plate, images, labels, fields)
    return PlateImages(projected, images, labels)


def _project(
    state: RunState, plate: PlateConfig, raw: xr.DataArray, path: Path, fields: int
) -> xr.DataArray:
    """Project the plate, keeping each field's QC measures and binned images beside it."""
    import cellscale

    config = state.config.project
    focus = config.focus_channel or state.config.segment.channel
    method = cast(ProjectionMethod, config.method)  # checked when the config loaded
    projection = (
        cellscale.project(raw, method, focus_channel=focus or 0)
        if method == "best_focus"
        else cellscale.project(raw, method)
    )
    store_stage(
        state,
        "project",
        plate.name,
        fields,
        path,
        lambda overwrite: cellscale.write_plate(
            projection, path, overwrite=overwrite, records=field_stats.recorder, **state.common
        ),
        lambda: _opens(path),
    )
    projected = cellscale.open_plate(path)
    field_stats.complete(projected, path, **state.common)  # fields projected without them
    return projected


def _segment(
    state: RunState,
    plate: PlateConfig,
    images: xr.DataArray,
    exclude: pd.DataFrame | None,
    path: Path,
    fields: int,
) -> xr.Dataset:
    import cellscale

    config = state.config.segment
    labels = cellscale.segment(
        images,
        config.method,
        channel=str(config.channel),
        nuclei_channel=config.nuclei_channel,
        exclude_border=config.exclude_border,
        exclude=exclude,
        **config.options,
    )
    store_stage(
        state,
        "segment",
        plate.name,
        fields,
        path,
        lambda overwrite: cellscale.write_labels(labels, path, overwrite=overwrite, **state.common),
        lambda: cellscale.open_labels(path) is not None,
    )
    return cellscale.open_labels(path)


def _opens(path: Path) -> bool:
    import cellscale

    return cellscale.open_plate(path) is not None
