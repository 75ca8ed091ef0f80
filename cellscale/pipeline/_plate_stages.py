"""The per-plate stages of a run: ingest, project, segment, measure and embed.

Each writes one store through :func:`~cellscale.pipeline._state.store_stage`, which
resumes what the store has not finished and writes it again when it was made from other
inputs or settings; QC and illumination (:mod:`cellscale.pipeline._image_stages`) run
between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pandas as pd
import xarray as xr

from cellscale.ops._projection import ProjectionMethod
from cellscale.pipeline._config import PlateConfig
from cellscale.pipeline._image_stages import illumination, quality_control
from cellscale.pipeline._plate_source import fields_present, plate_source
from cellscale.pipeline._preflight import check_channels
from cellscale.pipeline._segment_check import check_plate_segmentation
from cellscale.pipeline._state import RunState, store_stage

__all__ = ["run_plate"]


def run_plate(state: RunState, plate: PlateConfig) -> xr.DataArray:
    """Ingest, project, segment, measure and embed one plate; return the projected plate."""
    import cellscale

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
    cells_path = folder / "cells.parquet"
    store_stage(
        state,
        "measure",
        plate.name,
        fields,
        cells_path,
        lambda overwrite: cellscale.write_cells(
            labels,
            images,
            cells_path,
            intensity=state.config.measure.intensity,
            overwrite=overwrite,
            **state.common,
        ),
        lambda: cellscale.read_cells(cells_path) is not None,
    )
    check_plate_segmentation(state, plate, cellscale.read_cells(cells_path))
    _embed(state, plate, images, labels, cells_path, folder / "embeddings.zarr")
    return projected


def _project(
    state: RunState, plate: PlateConfig, raw: xr.DataArray, path: Path, fields: int
) -> xr.DataArray:
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
            projection, path, overwrite=overwrite, **state.common
        ),
        lambda: _opens(path),
    )
    return cellscale.open_plate(path)


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


def _embed(
    state: RunState,
    plate: PlateConfig,
    images: xr.DataArray,
    labels: xr.Dataset,
    cells_path: Path,
    path: Path,
) -> None:
    """Cut and embed every cell's crop, when the run embeds (``embed.active``)."""
    import cellscale
    from cellscale.embedding import TorchEmbedder
    from cellscale.io._rows import check_rows_complete

    table = cellscale.read_cells(cells_path)
    if len(table) == 0:
        state.problems.append(f"plate {plate.name}: no cells were found")
        return
    if not state.config.embed.active:
        return
    cells = table.compute()
    crops_config, embed_config = state.config.crops, state.config.embed
    crops = cellscale.extract_crops(
        images,
        cells,
        size=crops_config.size,
        mask=crops_config.mask,
        labels=labels,
        border=crops_config.border,
    )
    model = TorchEmbedder(
        embed_config.model,
        in_channels=images.sizes["c"],
        weights=embed_config.weights,
        layer=embed_config.layer,
        batch_size=embed_config.batch_size,
        device=embed_config.device,
        seed=embed_config.seed,
    )
    embeddings = cellscale.embed(crops, model)

    def write(overwrite: bool) -> Any:
        return cellscale.write_embeddings(embeddings, path, overwrite=overwrite, **state.common)

    def complete() -> bool:
        check_rows_complete(path)
        return True

    store_stage(state, "embed", plate.name, len(cells), path, write, complete, unit="cell")
