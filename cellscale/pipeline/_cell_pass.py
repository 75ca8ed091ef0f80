"""A plate's cell pass: measure every field and, when the run embeds, crop and embed it too.

When the run embeds (``embed.active``), the cell table and the embeddings are written by
one computation (:func:`cellscale.embedding.write_cell_pass`) that reads each field's
images and labels once; they stay two stages in the summary and the manifest,
``measure`` and ``embed``, each with its own status (a changed crop size rewrites the
embeddings and keeps the table). The pass's time is counted under ``measure``. Otherwise
the pass is the measurement alone. With ``crops.border: drop`` the rows of the embeddings
are known only once the table says which boxes reach past their field, so the crops are
then cut from the written table, reading the fields a second time, as they are when the
run trains its own network first (``train.enabled``): the cells are measured here and
embedded once the network is trained (:func:`embed_from_table`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cellscale._stages._run import progress_label
from cellscale.pipeline._config import PlateConfig
from cellscale.pipeline._segment_check import check_plate_segmentation
from cellscale.pipeline._state import REWRITTEN, RunState, step, store_stage
from cellscale.report import StageRecord

__all__ = ["cell_pass", "embed_from_table"]


def cell_pass(
    state: RunState, plate: PlateConfig, images: xr.DataArray, labels: xr.Dataset, fields: int
) -> None:
    """Write a plate's cell table, and its embeddings when the run embeds."""
    import cellscale

    folder = state.plate_dir(plate)
    cells_path = folder / "cells.parquet"
    n_cells = int(np.asarray(labels.coords["n_objects"].values).sum())
    embeds = state.config.embed.active and not state.config.train.enabled
    fused = embeds and state.config.crops.border == "pad" and n_cells > 0
    if fused:
        _measure_and_embed(state, plate, images, labels, fields, n_cells)
    else:
        _measure(state, plate, images, labels, fields, cells_path)
    cells = cellscale.read_cells(cells_path)
    check_plate_segmentation(state, plate, cells)
    if n_cells == 0:
        state.problems.append(f"plate {plate.name}: no cells were found")
    elif embeds and not fused:
        embed_from_table(state, plate, images, labels)


def _measure(
    state: RunState,
    plate: PlateConfig,
    images: xr.DataArray,
    labels: xr.Dataset,
    fields: int,
    path: Path,
) -> None:
    import cellscale

    store_stage(
        state,
        "measure",
        plate.name,
        fields,
        path,
        lambda overwrite: cellscale.write_cells(
            labels,
            images,
            path,
            intensity=state.config.measure.intensity,
            overwrite=overwrite,
            **state.common,
        ),
        lambda: _cells_complete(path),
    )


def _measure_and_embed(
    state: RunState,
    plate: PlateConfig,
    images: xr.DataArray,
    labels: xr.Dataset,
    fields: int,
    n_cells: int,
) -> None:
    """One computation for both outputs; each keeps its stage record and status."""
    from cellscale.embedding import StalePassOutputError, write_cell_pass

    folder = state.plate_dir(plate)
    paths = {"cells": folder / "cells.parquet", "embeddings": folder / "embeddings.zarr"}
    status = {
        "cells": _found(paths["cells"], lambda: _cells_complete(paths["cells"])),
        "embeddings": _found(paths["embeddings"], lambda: _rows_complete(paths["embeddings"])),
    }
    crops = state.config.crops
    entry = f"embed/{plate.name}"
    label = progress_label(f"measure+embed {plate.name}", unit="task")  # fields + row chunks
    with (
        label,
        step(state, "measure", plate.name, fields, status["cells"]) as measured,
        state.watch(plate.name, "measure"),
    ):
        state.manifest.start(entry)
        replace: set[Any] = set()
        while True:
            try:
                write_cell_pass(
                    labels,
                    images,
                    paths["cells"],
                    paths["embeddings"],
                    _embedder(state, images),
                    size=crops.size,
                    mask=crops.mask,
                    intensity=state.config.measure.intensity,
                    overwrite=replace,
                    **state.common,
                )
                break
            except StalePassOutputError as err:
                if err.output in replace:
                    raise
                replace.add(err.output)
                status[err.output] = REWRITTEN
        measured.status = status["cells"]
    state.manifest.finish(entry, seconds=0.0, units=n_cells)
    state.record(StageRecord("embed", 0.0, n_cells, status["embeddings"]), plate.name)


def embed_from_table(
    state: RunState, plate: PlateConfig, images: xr.DataArray, labels: xr.Dataset
) -> None:
    """Cut every cell's crop from the written table and embed it (``embeddings.zarr``).

    For ``crops.border: drop``, and after the run trained its network (``train``).
    """
    import cellscale

    path = state.plate_dir(plate) / "embeddings.zarr"
    cells = cellscale.read_cells(state.plate_dir(plate) / "cells.parquet")
    crops_config = state.config.crops
    crops = cellscale.extract_crops(
        images,
        cells,
        size=crops_config.size,
        mask=crops_config.mask,
        labels=labels,
        border=crops_config.border,
    )
    embeddings = cellscale.embed(crops, _embedder(state, images))

    def write(overwrite: bool) -> Any:
        return cellscale.write_embeddings(embeddings, path, overwrite=overwrite, **state.common)

    store_stage(
        state,
        "embed",
        plate.name,
        len(cells),
        path,
        write,
        lambda: _rows_complete(path),
        unit="cell",
    )


def _embedder(state: RunState, images: xr.DataArray) -> Any:
    from cellscale.embedding import TorchEmbedder

    config = state.config.embed
    return TorchEmbedder(
        config.model,
        in_channels=images.sizes["c"],
        weights=config.weights,
        layer=config.layer,
        batch_size=config.batch_size,
        device=config.device,
        seed=config.seed,
    )


def _found(path: Path, complete: Callable[[], bool]) -> str:
    """An output's status before it is written, as :func:`store_stage` tells it."""
    if not path.exists():
        return "ran"
    try:
        return "finished before, checked" if complete() else "resumed"
    except Exception:  # a store too damaged to tell: the write will say what is wrong
        return "resumed"


def _cells_complete(path: Path) -> bool:
    import cellscale

    return cellscale.read_cells(path) is not None


def _rows_complete(path: Path) -> bool:
    from cellscale.io._rows import check_rows_complete

    check_rows_complete(path)
    return True
