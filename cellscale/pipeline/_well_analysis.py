"""The analysis stage's per-well results: outlying wells, a UMAP of the wells, batch effects, mAP.

Each is one :class:`~cellscale._stages.FileOutput` in ``<output>/analysis/``, made from the
per-well profiles (``profiles/wells.parquet``, and ``profiles/wells_aggregated.parquet``
for the profiles before normalisation) and each plate's per-cell outlier scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellscale._stages import FileOutput, Fingerprint
from cellscale.cells import CELL_ID
from cellscale.pipeline._screen import PlateCells, drop_output
from cellscale.pipeline._state import RunState, file_stage

__all__ = ["CONDITION", "batch_effects", "condition_column", "mean_average_precision", "wells"]

#: The column that names a well's condition where several columns make it.
CONDITION = "Metadata_Condition"
#: Fewest wells a UMAP of the wells is drawn for.
_FEWEST_WELLS = 6


def condition_column(state: RunState, table: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """``table`` with one column naming each row's condition, and that column's name.

    One treatment column is used as it is; several (treatment and concentration) are
    joined into :data:`CONDITION`. ``None`` where the table has none.
    """
    from cellscale.pipeline._analysis_stage import conditions

    columns = conditions(state.config, list(table.columns))
    if not columns:
        return table, None
    if len(columns) == 1:
        return table, columns[0]
    joined = table[columns].astype(str).agg(" · ".join, axis=1)
    return table.assign(**{CONDITION: joined}), CONDITION


def _inputs(*paths: Path) -> dict[str, str | None]:
    return {path.name: FileOutput(path).digest() if path.exists() else None for path in paths}


def wells(state: RunState, plates: list[PlateCells], profiles: Path, folder: Path) -> None:
    """``analysis/wells.parquet``: every well's profile UMAP and outlier numbers."""
    from cellscale.pipeline._analysis_stage import CELL_ANALYSIS

    config = state.config.analysis
    cell_files = [p.folder / CELL_ANALYSIS for p in plates]
    fingerprint = Fingerprint(
        "well-analysis",
        inputs={
            "wells": _inputs(profiles / "wells.parquet"),
            "cells": {str(p.parent.name): _inputs(p) for p in cell_files},
        },
        parameters={"umap": config.umap, "outliers": config.outliers, "seed": config.seed},
    )

    def make(partial: Path) -> None:
        table = pd.read_parquet(FileOutput(profiles / "wells.parquet").open())
        keys = ["Metadata_Plate", "Metadata_Well"]
        out = table[[c for c in table.columns if c.startswith("Metadata_")]].copy()
        if config.umap and len(table) >= _FEWEST_WELLS:
            out[["UMAP1", "UMAP2"]] = _well_umap(table, config.seed)
        scored = [w for w in (_plate_wells(p) for p in plates) if w is not None]
        if config.outliers and scored:
            found = pd.concat(scored, ignore_index=True)
            found = found.drop(columns=["n_cells"]).rename(
                columns={c: f"Outlier_{c}" for c in found.columns if c not in keys}
            )
            out = out.merge(found, on=keys, how="left")
        out.to_parquet(partial, index=False)

    output = FileOutput(folder / "wells.parquet")
    file_stage(state, "analysis", None, len(plates), output, fingerprint, make)


def _well_umap(table: pd.DataFrame, seed: int) -> np.ndarray:
    """UMAP of the wells' features, with as many neighbours as a small screen allows."""
    from cellscale.analysis._umap import fit_umap
    from cellscale.profiles._table import feature_columns

    features = table[feature_columns(table)].to_numpy(dtype=np.float32)
    features = np.nan_to_num(features, nan=0.0)  # a feature NaN in one well: at the mean
    neighbours = min(15, len(table) - 1)
    model = fit_umap(features, sample=len(table), n_neighbors=neighbours, seed=seed)
    return np.asarray(model.embedding)


def _plate_wells(plate: PlateCells) -> pd.DataFrame | None:
    """One plate's outlying wells, from its cells' outlier scores; ``None`` without them."""
    import pyarrow.parquet as pq

    from cellscale.analysis._outliers import well_outliers
    from cellscale.pipeline._analysis_stage import CELL_ANALYSIS, plate_scores

    path = FileOutput(plate.folder / CELL_ANALYSIS).open()
    if "Outlier_Score" not in pq.read_schema(path).names:
        return None
    cells = pd.read_parquet(path, columns=[CELL_ID, "Outlier_Score"])
    where = plate_scores(plate)[[CELL_ID, "Metadata_Plate", "Metadata_Well"]].compute()
    cells = cells.merge(where, on=CELL_ID, how="left", validate="one_to_one")
    return well_outliers(cells["Outlier_Score"].to_numpy(), cells)


def batch_effects(state: RunState, profiles: Path, folder: Path) -> None:
    """``analysis/batch_effect.parquet``: batch against treatment, before and after normalising."""
    from cellscale.analysis._batch_effects import compare_batch_effect
    from cellscale.pipeline._analysis_stage import WELLS_AGGREGATED

    config = state.config.analysis
    before_path, after_path = profiles / WELLS_AGGREGATED, profiles / "wells.parquet"
    output = FileOutput(folder / "batch_effect.parquet")
    after, treatment = condition_column(state, pd.read_parquet(FileOutput(after_path).open()))
    batches = after[config.batch].nunique() if config.batch in after else 0
    why = (
        "the well profiles name no treatment (set analysis.treatment)"
        if treatment is None
        else f"the wells have {batches} value(s) of {config.batch}, it takes two"
        if batches < 2
        else None
    )
    if why is not None:
        state.problems.append(f"analysis.batch: no batch effect measured: {why}")
        drop_output(output)
        return
    fingerprint = Fingerprint(
        "batch-effect",
        inputs=_inputs(before_path, after_path),
        parameters={"batch": config.batch, "treatment": config.treatment, "seed": config.seed},
    )

    def make(partial: Path) -> None:
        before, _ = condition_column(state, pd.read_parquet(FileOutput(before_path).open()))
        features = _shared_features(before, after)
        table = compare_batch_effect(
            before,
            after,
            batch=config.batch,
            treatment=treatment,
            features=features,
            k=_neighbours(len(after)),
            seed=config.seed,
        )
        table.reset_index().to_parquet(partial, index=False)

    file_stage(state, "analysis", None, 1, output, fingerprint, make)


def _shared_features(before: pd.DataFrame, after: pd.DataFrame) -> list[str]:
    """The features left after selection, which the aggregated profiles hold too."""
    from cellscale.profiles._table import feature_columns

    return [c for c in feature_columns(after) if c in before.columns]


def _neighbours(wells: int) -> int:
    return max(1, min(15, wells // 4))


def mean_average_precision(state: RunState, profiles: Path, folder: Path) -> None:
    """``analysis/map_activity.parquet`` and ``map_consistency.parquet`` of the well profiles."""
    from cellscale.analysis._map import mean_average_precision as score

    controls = state.config.profiles.controls
    output = FileOutput(folder / "map.parquet")
    if controls is None:
        state.problems.append(
            "analysis.map: no mAP against controls, as profiles.controls names none"
        )
        drop_output(output)
        return
    path = profiles / "wells.parquet"
    fingerprint = Fingerprint(
        "map",
        inputs=_inputs(path),
        parameters={
            "controls": controls,
            "treatment": state.config.analysis.treatment,
            "seed": state.config.analysis.seed,
        },
    )

    def make(partial: Path) -> None:
        table, treatment = condition_column(state, pd.read_parquet(FileOutput(path).open()))
        if treatment is None:
            raise ValueError(
                "mAP needs a treatment column: set analysis.treatment to the plate map's "
                "column of treatments"
            )
        seed = state.config.analysis.seed
        result = score(table, controls=controls, treatment=treatment, seed=seed)
        _map_table(result).to_parquet(partial, index=False)

    file_stage(state, "analysis", None, 1, output, fingerprint, make)


def _map_table(result: Any) -> pd.DataFrame:
    """Both mAP tables as one, with a ``kind`` column (``activity`` or ``consistency``)."""
    parts = [
        result.activity.assign(kind="activity"),
        result.consistency.assign(kind="consistency"),
    ]
    table = pd.concat(parts, ignore_index=True)
    return table.rename(columns={result.treatment: "condition"}).assign(threshold=result.threshold)
