"""What the report shows of the analysis stage: a sample of cells with their crops, the tables.

The cells are the first ``analysis.page_cells`` of the report's seeded sample, shared
among the plates; their analysis values are read from each plate's
``analysis.parquet`` with a filter on their ``cell_id``, and their crops are cut plate by
plate from the fields they lie in. Nothing reads a whole plate's cells.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from cellscale._stages import FileOutput
from cellscale.cells import CELL_ID
from cellscale.pipeline._analysis_stage import ANALYSIS, CELL_ANALYSIS
from cellscale.pipeline._gradcamo_stage import gradcamo_layer
from cellscale.pipeline._scores import SCORES, read_scores
from cellscale.pipeline._screen import Screen
from cellscale.pipeline._state import RunState
from cellscale.pipeline._train_stage import TRAINING
from cellscale.pipeline._well_analysis import condition_column
from cellscale.report import AnalysisResults, Figures

__all__ = ["analysis_digests", "analysis_results"]

#: The analysis stage's screen-wide files the report draws.
_FILES = ("umap.pkl", "wells.parquet", "batch_effect.parquet", "map.parquet")
#: Cells of each kind (best, worst) the Grad-CAMO gallery shows.
_GRADCAMO_CELLS = 6


def analysis_digests(state: RunState) -> dict[str, str | None]:
    """The checksums of every analysis file the report draws from (``None``: not made)."""
    if not state.config.analysis.enabled:
        return {}
    paths = [state.out / ANALYSIS / name for name in _FILES]
    paths += [state.plate_dir(p) / CELL_ANALYSIS for p in state.config.plates]
    return {str(p.relative_to(state.out)): _digest(p) for p in paths}


def _digest(path: Path) -> str | None:
    output = FileOutput(path)
    return output.digest() if path.exists() or output.record_path.exists() else None


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(FileOutput(path).open()) if path.exists() else None


def analysis_results(
    state: RunState, screen: Screen, plates: list[xr.DataArray]
) -> AnalysisResults | None:
    """The analyses of the run for its report; ``None`` when the run made none."""
    if not state.config.analysis.enabled:
        return None
    folder = state.out / ANALYSIS
    cells, crops = _page_cells(state, screen, plates)
    cells, condition = condition_column(state, cells)
    wells = _read(folder / "wells.parquet")
    if wells is not None:
        wells, _ = condition_column(state, wells)
    return AnalysisResults(
        cells=cells,
        crops=crops,
        wells=wells,
        batch_effect=_read(folder / "batch_effect.parquet"),
        mean_average_precision=_read(folder / "map.parquet"),
        figures=_gradcamo_gallery(state, screen, cells),
        condition=condition,
    )


def _page_cells(
    state: RunState, screen: Screen, plates: list[xr.DataArray]
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The page's cells with their analysis values and PCA scores, and their crops."""
    per_plate = max(1, state.config.analysis.page_cells // max(len(screen.plates), 1))
    images = {str(p.name): p for p in plates}
    tables, crops = [], []
    for plate in screen.plates:
        path = plate.folder / CELL_ANALYSIS
        sample = screen.summary.samples.get(plate.name)
        if sample is None or sample.empty or not path.exists():
            continue
        sample = sample.head(per_plate)
        ids = sample[CELL_ID].to_numpy()
        found = pd.read_parquet(FileOutput(path).open(), filters=[(CELL_ID, "in", ids.tolist())])
        scores = read_scores(FileOutput(plate.folder / SCORES).open(), ids)
        pcs = scores[[CELL_ID, *[c for c in ("PC1", "PC2") if c in scores]]]
        table = sample.merge(found, on=CELL_ID).merge(pcs, on=CELL_ID)
        table = table.sort_values(CELL_ID, ignore_index=True)  # field order: each read once
        tables.append(table)
        crops.append(_crops(state, images[plate.name], plate.name, table))
    if not tables:
        return pd.DataFrame(columns=[CELL_ID]), None
    return pd.concat(tables, ignore_index=True), np.concatenate(crops)


def _crops(state: RunState, plate: xr.DataArray, name: str, cells: pd.DataFrame) -> np.ndarray:
    """The crops of ``cells`` (some of one plate's), in their order, as the run cut them.

    Cut field by field (each field read once) as the training datasets cut them, since
    :func:`cellscale.extract_crops` takes whole fields' cells.
    """
    from cellscale.learning import CellDataset

    crops = CellDataset(
        plate,
        cells,
        label="Metadata_Plate",  # one class, named: the dataset serves crops, not labels
        classes=[name],
        size=state.config.crops.size,
        mask=state.config.crops.mask,
        labels=state.plate_dir(name) / "projected.zarr",
        normalize=None,
    )
    cut = {int(i): crops[n][0].numpy() for n, i in enumerate(crops.rows[CELL_ID])}
    return np.stack([cut[int(i)] for i in cells[CELL_ID]]).astype(np.float32)


def _gradcamo_gallery(state: RunState, screen: Screen, cells: pd.DataFrame) -> list[Figures]:
    """The best- and worst-scoring sampled cells with the network's attention over them."""
    from cellscale.learning import PlateInput
    from cellscale.learning._gradcamo import plot_gradcamo_gallery

    if "GradCAMO" not in cells or cells["GradCAMO"].notna().sum() < 2:
        return []
    first = screen.plates[0]
    scores = cells[cells["Metadata_Plate"] == first.name].rename(
        columns={"GradCAMO": "gradcamo", "GradCAMO_Class": "predicted"}
    )
    if scores["gradcamo"].notna().sum() < 2:
        return []
    crops = state.config.crops
    source: list[Any] = [
        PlateInput(
            first.name,
            first.folder / "projected.zarr",
            first.folder / "cells.parquet",
            first.folder / "projected.zarr",
        )
    ]
    figure = plot_gradcamo_gallery(
        state.out / TRAINING / "model" / "model.pt",
        source,
        scores,
        layer=gradcamo_layer(state.config.embed.model, crops.size),
        n=_GRADCAMO_CELLS,
        size=crops.size,
        mask=crops.mask,
        device=state.config.embed.device,
    )
    title = (
        f"Plate {first.name}: the sampled cells where the trained network looked most and "
        "least inside the cell (Grad-CAMO)"
    )
    return [Figures(title, figure)]
