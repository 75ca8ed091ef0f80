"""The analysis stage of a run: UMAP, outliers, Grad-CAMO, batch effects and mAP.

Every result is a :class:`~cellscale._stages.FileOutput` with the fingerprint of what made
it, so a rerun that changed nothing redoes nothing and a corrected plate map redoes what
it reaches:

- ``analysis/umap.pkl``: UMAP of the cells' PCA scores, fitted on a seeded sample of
  ``analysis.umap_sample`` cells of the whole screen (runs that embed);
- ``plates/<name>/analysis.parquet``: each embedded cell's ``cell_id``, ``UMAP1``,
  ``UMAP2``, ``Outlier_Score`` (distance to its ``outlier_k``-th neighbour among the
  plate's cells of other wells, in PCA space) and, where the run trains its network,
  ``GradCAMO`` (its share of the network's attention inside the cell) with
  ``GradCAMO_Class``, the class it explains (the predicted one);
- ``analysis/wells.parquet``: every well's outlier numbers and the UMAP of the well
  profiles;
- ``analysis/batch_effect.parquet``: batch against treatment before and after
  normalisation; ``analysis/map_activity.parquet`` and ``map_consistency.parquet``: mean
  average precision of each treatment against controls and of its replicates.

The screen is read plate by plate, and each plate's scores chunk by chunk: no process
holds the per-cell table of the whole screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellscale._stages import FileOutput, Fingerprint
from cellscale.cells import CELL_ID
from cellscale.pipeline._config import ConfigError, RunConfig, as_dict
from cellscale.pipeline._gradcamo_stage import plate_gradcamo
from cellscale.pipeline._plate_stages import PlateImages
from cellscale.pipeline._profiles_stage import WELLS_AGGREGATED
from cellscale.pipeline._scores import SCORES
from cellscale.pipeline._screen import PlateCells, Screen, drop_output
from cellscale.pipeline._state import RunState, file_stage
from cellscale.pipeline._train_stage import TRAINING

__all__ = [
    "ANALYSIS",
    "CELL_ANALYSIS",
    "WELLS_AGGREGATED",
    "analysis_stage",
    "check_analysis",
    "conditions",
]

#: The screen's analysis folder, in the run's output folder.
ANALYSIS = "analysis"
#: Each plate's per-cell analysis, in the plate's folder.
CELL_ANALYSIS = "analysis.parquet"
#: The treatment columns looked for when ``analysis.treatment`` names none.
_CONDITIONS = ("Metadata_treatment", "Metadata_Treatment", "Metadata_concentration")


def check_analysis(config: RunConfig, columns: Sequence[str]) -> None:
    """Check the ``analysis`` section against the cell table's columns, before a run.

    Raises
    ------
    ConfigError
        For a batch or treatment column the cells will not have, mAP without
        ``profiles.controls``, or the analysis packages missing.
    """
    from cellscale._optional import import_optional
    from cellscale.pipeline._preflight import check_column

    analysis = config.analysis
    if not analysis.enabled:
        return
    for module in ("umap", "copairs", "sklearn"):
        try:
            import_optional(module, "analysis.enabled")
        except ImportError as err:
            raise ConfigError(str(err)) from None
    if analysis.batch is not None:
        check_column("analysis.batch", analysis.batch, list(columns))
    for name in _treatment_columns(analysis.treatment):
        check_column("analysis.treatment", name, list(columns))


def conditions(config: RunConfig, columns: Sequence[str]) -> list[str]:
    """The columns that name a well's treatment: ``analysis.treatment``, else those found."""
    named = _treatment_columns(config.analysis.treatment)
    return named or [c for c in _CONDITIONS if c in columns]


def _treatment_columns(treatment: Any) -> list[str]:
    if treatment is None:
        return []
    return [treatment] if isinstance(treatment, str) else [str(c) for c in treatment]


def analysis_stage(state: RunState, images: Sequence[PlateImages], screen: Screen) -> None:
    """Make every analysis the config asks for, each unless it is current."""
    folder = state.out / ANALYSIS
    folder.mkdir(exist_ok=True)
    embedded = [p for p in screen.plates if p.embeddings is not None and p.rows]
    model = None
    if state.config.analysis.umap and embedded:
        model = _cell_umap(state, embedded, folder)
    else:  # what an earlier run made of other settings is not shown as this run's
        drop_output(FileOutput(folder / "umap.pkl"))
    for plate, plate_images in zip(screen.plates, images, strict=True):
        if plate in embedded:
            _cell_analysis(state, plate, plate_images, model)
        else:
            drop_output(FileOutput(plate.folder / CELL_ANALYSIS))
    _well_analysis(state, embedded, folder)


def _digest(path: Path) -> str | None:
    output = FileOutput(path)
    return output.digest() if path.exists() or output.record_path.exists() else None


def plate_scores(plate: PlateCells) -> Any:
    """One plate's scores as a dask DataFrame, a partition per row group (per chunk)."""
    import dask.dataframe as dd

    return dd.read_parquet(FileOutput(plate.folder / SCORES).open(), split_row_groups=True)


def _components(scores: Any) -> list[str]:
    return [c for c in scores.columns if str(c).startswith("PC")]


def _pcs(scores: Any) -> Any:
    """The scores' PC columns as a dask array with known chunk sizes."""
    return scores[_components(scores)].to_dask_array(lengths=True).astype(np.float32)


def _cell_umap(state: RunState, plates: list[PlateCells], folder: Path) -> FileOutput | None:
    """Fit UMAP on a seeded sample of every plate's PCA scores: ``analysis/umap.pkl``."""
    import dask.array as da

    from cellscale.analysis._umap import fit_umap

    if not plates:
        return None
    config = state.config.analysis
    output = FileOutput(folder / "umap.pkl")
    fingerprint = Fingerprint(
        "umap",
        inputs={"scores": {p.name: _digest(p.folder / SCORES) for p in plates}},
        parameters={
            "sample": config.umap_sample,
            "sphere": config.sphere,
            "controls": state.config.profiles.controls,
            "seed": config.seed,
        },
    )

    def fit(partial: Path) -> None:
        tables = [plate_scores(p) for p in plates]
        rows = da.concatenate([_pcs(t) for t in tables])
        controls = None
        if config.sphere and state.config.profiles.controls is not None:
            query = state.config.profiles.controls
            controls = da.concatenate([_is_control(t, query) for t in tables])
        model = fit_umap(
            rows,
            sample=config.umap_sample,
            controls=controls,
            sphere=config.sphere,
            seed=config.seed,
        )
        model.save(partial)

    total = sum(p.rows for p in plates)
    file_stage(state, "analysis", None, total, output, fingerprint, fit)
    return output


def _is_control(scores: Any, query: str) -> Any:
    """Whether each row of a plate's scores is a control cell, as a dask array."""

    def mark(part: pd.DataFrame) -> pd.Series:
        return pd.Series(part.eval(query).astype(bool).to_numpy(), index=part.index)

    return scores.map_partitions(mark, meta=(None, bool)).to_dask_array(lengths=True)


def _cell_analysis(
    state: RunState, plate: PlateCells, images: PlateImages, umap: FileOutput | None
) -> None:
    """One plate's per-cell UMAP coordinates, outlier scores and Grad-CAMO."""
    config = state.config.analysis
    gradcamo = config.gradcamo and state.config.train.enabled
    weights = state.out / TRAINING / "model" / "model.pt"
    output = FileOutput(plate.folder / CELL_ANALYSIS)
    fingerprint = Fingerprint(
        "cell-analysis",
        inputs={
            "scores": _digest(plate.folder / SCORES),
            "umap": umap.digest() if umap is not None else None,
            "model": _digest(weights) if gradcamo else None,
            "crops": as_dict(state.config.crops) if gradcamo else None,
        },
        parameters={"outliers": config.outliers, "k": config.outlier_k, "seed": config.seed},
    )

    def make(partial: Path) -> None:
        _cells_table(state, plate, images, umap, gradcamo).to_parquet(partial, index=False)

    file_stage(state, "analysis", plate.name, plate.rows, output, fingerprint, make)


def _cells_table(
    state: RunState,
    plate: PlateCells,
    images: PlateImages,
    umap: FileOutput | None,
    gradcamo: bool,
) -> pd.DataFrame:
    """One plate's ``analysis.parquet``: its cells' UMAP, outlier scores and Grad-CAMO."""
    import dask

    from cellscale.analysis._outliers import outlier_scores
    from cellscale.analysis._umap import UmapModel

    config = state.config.analysis
    scores = plate_scores(plate)
    table = scores[[CELL_ID, "Metadata_Well"]].compute()  # the ids and wells in one read
    wells = table.pop("Metadata_Well").to_numpy()
    rows = _pcs(scores)
    lazy: dict[str, Any] = {}
    if umap is not None:
        lazy["umap"] = UmapModel.load(umap.open()).transform(rows)
    if config.outliers and _outliers_possible(state, plate.name, wells):
        lazy["outliers"] = outlier_scores(
            rows, k=config.outlier_k, leave_out=wells, seed=config.seed
        )
    (computed,) = dask.compute(lazy)
    if "umap" in computed:
        table["UMAP1"], table["UMAP2"] = computed["umap"][:, 0], computed["umap"][:, 1]
    if "outliers" in computed:
        table["Outlier_Score"] = computed["outliers"]
    if gradcamo:
        table = table.merge(plate_gradcamo(state, plate, images), on=CELL_ID, how="left")
    return table


def _outliers_possible(state: RunState, plate: str, wells: np.ndarray) -> bool:
    """Whether every cell has ``outlier_k`` neighbours in other wells; else say why not."""
    k = state.config.analysis.outlier_k
    largest = int(pd.Series(wells).value_counts().max()) if len(wells) else 0
    if len(wells) - largest >= k:
        return True
    state.problems.append(
        f"plate {plate}: no outlier scores: a cell of its largest well has "
        f"{len(wells) - largest} cells of other wells, fewer than analysis.outlier_k={k}"
    )
    return False


def _well_analysis(state: RunState, plates: list[PlateCells], folder: Path) -> None:
    """Per-well outliers and UMAP, batch effects and mAP, from the per-well profiles."""
    from cellscale.pipeline._well_analysis import batch_effects, mean_average_precision, wells

    profiles = state.out / "profiles"
    batch, mean_ap = folder / "batch_effect.parquet", folder / "map.parquet"
    if not (profiles / "wells.parquet").exists():  # nothing of an earlier run shown as this one's
        for path in (folder / "wells.parquet", batch, mean_ap):
            drop_output(FileOutput(path))
        return
    wells(state, plates, profiles, folder)
    if state.config.analysis.batch is not None:
        batch_effects(state, profiles, folder)
    else:
        drop_output(FileOutput(batch))
    if state.config.analysis.map:
        mean_average_precision(state, profiles, folder)
    else:
        drop_output(FileOutput(mean_ap))
