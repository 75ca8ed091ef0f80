"""The screen stages of a run: per-well profiles, and the PCA of every plate's embeddings.

The profiles (``wells.parquet``) come from the cell tables' measured features by default,
made as pycytominer makes them (:func:`cellscale.profile_wells`): each plate's cells are
aggregated per well one well at a time (:func:`cellscale.aggregate_cells`), annotated
with their metadata, normalised against the plate's control wells and feature-selected.
Where the run embeds cells and ``profiles.features`` asks for them, the aggregated
embeddings join them as ``Embedding_<i>`` columns: a plate's embeddings are aggregated
from its chunks (:func:`cellscale.aggregate`: means from per-chunk sums, exactly; a
median from one well's rows at a time, exactly). The PCA (``pca.npz``) is made only from
embeddings, fitted in one streaming pass over every plate's chunks; each plate's scores
are written next to its cell table (``plates/<name>/scores.parquet``,
:mod:`cellscale.pipeline._scores`).

No stage holds a per-cell table of the screen. :func:`screen_cells` describes the screen
plate by plate (its cell table, digests, row count and lazy embeddings) and reads each
plate's metadata and shape columns once, one plate at a time, into the small
:class:`~cellscale.pipeline._cell_summary.CellSummary` the report shows; the scores and
the embedding profiles read one plate's metadata columns at a time.

Each of these files is a :class:`~cellscale._stages.FileOutput` whose fingerprint names
its inputs by content (each plate's cell table and embeddings by their digests, the PCA
by its checksum), so a rerun makes again exactly the files whose inputs changed: a
corrected plate map changes that plate's cell table, hence that plate's scores and the
profiles' treatments and control set, without refitting a PCA whose embeddings did not
change or rewriting the scores of the other plates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from cellscale._stages import FileOutput, Fingerprint
from cellscale.cells import CELL_ID, metadata_column
from cellscale.pipeline._cell_summary import CellSummary, merge, summarise
from cellscale.pipeline._config import ConfigError, PlateConfig, as_dict
from cellscale.pipeline._focus import FOCUS_COLUMN
from cellscale.pipeline._scores import SCORES, write_scores
from cellscale.pipeline._state import RunState, file_stage

__all__ = [
    "PlateCells",
    "Screen",
    "drop_legacy_scores",
    "drop_pca",
    "embedded_cells",
    "pca",
    "plate_cells",
    "profiles",
    "screen_cells",
]

#: The screen-level table of every cell's scores that earlier versions wrote; scores are
#: now per plate (:data:`~cellscale.pipeline._scores.SCORES`), and a run removes it.
LEGACY_SCORES = "cells.parquet"


@dataclass(frozen=True)
class PlateCells:
    """One plate's cells as the screen stages see them: where, how many, by content."""

    config: PlateConfig
    folder: Path  # the plate's folder: cells.parquet, embeddings.zarr, scores.parquet
    rows: int  # the embedded cells where the run embeds, else every cell
    digests: dict[str, Any]  # the cell table and embeddings, by content
    embeddings: Any  # lazy (cell, feature) dask array, or None when nothing was embedded

    @property
    def name(self) -> str:
        """The plate's name."""
        return self.config.name


@dataclass(frozen=True)
class Screen:
    """Every plate's cells, described plate by plate, and what the report shows of them."""

    plates: tuple[PlateCells, ...]
    summary: CellSummary

    @property
    def cells(self) -> int:
        """Cells of the screen (the embedded ones where the run embeds)."""
        return sum(p.rows for p in self.plates)

    @property
    def digests(self) -> dict[str, Any]:
        """Each plate's cell table and embeddings, by content."""
        return {p.name: p.digests for p in self.plates}

    @property
    def embeddings(self) -> Any:
        """Every plate's embeddings, one lazy array, or ``None`` when nothing was embedded."""
        import dask.array as da

        arrays = [p.embeddings for p in self.plates if p.embeddings is not None]
        return da.concatenate(arrays) if arrays else None


def screen_cells(state: RunState) -> Screen:
    """Describe the screen's cells plate by plate, and summarise them for the report.

    Where the run embeds (``embed.active``), a plate's cells are its embedded cells, row
    for row with its embeddings; otherwise every cell, and no embeddings. Each plate's
    metadata and shape columns are read (strictly: a missing or damaged piece is an error
    naming it), summarised and dropped before the next plate is read.
    """
    import cellscale
    from cellscale.io._rows import rows_digest
    from cellscale.measurement import cells_digest

    plates, summaries, columns = [], [], None
    for position, plate in enumerate(state.config.plates):
        folder = state.plate_dir(plate)
        digests: dict[str, Any] = {"cells": cells_digest(folder / "cells.parquet")}
        cells, embeddings = plate_cells(state, plate, _is_shape), None
        columns = list(cells.columns)
        if len(cells) and state.config.embed.active:
            path = folder / "embeddings.zarr"
            opened = cellscale.open_embeddings(path)
            digests["embeddings"] = rows_digest(path)
            cells = _aligned(cells, opened.coords[CELL_ID].values)
            embeddings = opened.data
        if len(cells):
            first = position == 0
            plates_in = len(state.config.plates)
            summaries.append(summarise(plate.name, cells, position, plates_in, first))
        plates.append(PlateCells(plate, folder, len(cells), digests, embeddings))
        del cells
    return Screen(tuple(plates), merge(summaries, columns))


def plate_cells(state: RunState, plate: PlateConfig, keep: Any = None) -> pd.DataFrame:
    """One plate's ``cell_id``, ``Metadata_`` columns (with the plate's config metadata) and
    the columns ``keep(name)`` selects, in ``cell_id`` order.

    The one reader of cell tables in the screen stages: each call holds one plate's cells.
    """
    import cellscale

    table = cellscale.read_cells(state.plate_dir(plate) / "cells.parquet")
    kept = [
        c
        for c in table.columns
        if c == CELL_ID or c.startswith("Metadata_") or (keep is not None and keep(c))
    ]
    return _with_plate_metadata(table[kept].compute(), plate)


def _is_shape(column: str) -> bool:
    return "_AreaShape_" in column


def _aligned(cells: pd.DataFrame, ids: Any) -> pd.DataFrame:
    """The rows of ``cells`` with the ``cell_id`` values ``ids``, in that order."""
    return cells.set_index(CELL_ID).loc[ids].reset_index()


def _with_plate_metadata(cells: pd.DataFrame, plate: PlateConfig) -> pd.DataFrame:
    for key, value in plate.metadata.items():
        column = metadata_column(str(key))
        if column in cells.columns:
            raise ConfigError(
                f"plate {plate.name!r}: metadata key {key!r} would replace the cell table's "
                f"column {column} (from the plate map); rename the key"
            )
        cells[column] = value
    return cells


def pca(state: RunState, screen: Screen, folder: Path) -> None:
    """Fit the PCA (``pca.npz``) and score each plate's embedded cells (``scores.parquet``).

    Each plate's scores are an output of their own, made from the PCA and that plate's
    cell table and embeddings: a change to one plate rewrites only its scores.
    """
    import cellscale

    model = FileOutput(folder / "pca.npz")
    embeddings = {name: d.get("embeddings") for name, d in screen.digests.items()}
    fitted = Fingerprint(
        "pca", inputs={"embeddings": embeddings}, parameters=as_dict(state.config.pca)
    )

    def fit(partial: Path) -> None:
        k = min(state.config.pca.n_components, *screen.embeddings.shape)
        cellscale.PCA(k).fit(screen.embeddings).save(partial)

    file_stage(state, "pca", None, screen.cells, model, fitted, fit)
    digest = model.digest()
    for plate in screen.plates:
        scores = FileOutput(plate.folder / SCORES)
        if plate.embeddings is None:
            _drop(scores)
            continue
        scored = Fingerprint(
            "scores",
            inputs={"pca": digest, "cells": plate.digests},
            parameters={"metadata": dict(plate.config.metadata)},
        )

        def score(partial: Path, plate: PlateCells = plate) -> None:
            trained = cellscale.PCA.load(model.open())
            write_scores(partial, trained, plate.embeddings, embedded_cells(state, plate))

        file_stage(state, "pca", None, plate.rows, scores, scored, score)


def embedded_cells(state: RunState, plate: PlateCells) -> pd.DataFrame:
    """``cell_id`` and ``Metadata_`` columns of one plate's embedded cells, in embedding order."""
    import cellscale

    ids = cellscale.open_embeddings(plate.folder / "embeddings.zarr").coords[CELL_ID].values
    return _aligned(plate_cells(state, plate.config), ids)


def profiles(state: RunState, screen: Screen, plates: list[xr.DataArray], folder: Path) -> None:
    """Make the per-well profiles (``wells.parquet``) and the field quality table."""
    config = state.config.profiles
    metadata = {p.name: p.metadata for p in state.config.plates}
    inputs = {
        name: {k: v for k, v in digest.items() if k == "cells" or config.features != "measured"}
        for name, digest in screen.digests.items()
    }
    wells = Fingerprint(
        "profiles",
        inputs={"cells": inputs},
        parameters={**as_dict(config), "metadata": metadata},
    )

    def make(partial: Path) -> None:
        _well_profiles(state, screen).to_parquet(partial, index=False)

    if screen.cells:
        output = FileOutput(folder / "wells.parquet")
        file_stage(state, "profiles", None, screen.cells, output, wells, make)
    else:
        state.problems.append("no cells on any plate: no well profiles")
    quality = Fingerprint(
        "field_quality",
        inputs={"plates": [p.data.name for p in plates], "qc": _qc_digests(state)},
        parameters={"channel": state.config.segment.channel, "measure": FOCUS_COLUMN},
    )
    focus = FileOutput(folder / "field_quality.parquet")
    file_stage(
        state,
        "profiles",
        None,
        screen.cells,
        focus,
        quality,
        lambda partial: _field_quality(state, plates).to_parquet(partial, index=False),
    )


def drop_pca(state: RunState, folder: Path) -> None:
    """Remove the PCA and scores an earlier run with embeddings left behind.

    A run without embeddings makes neither, and the report must not show stale ones.
    """
    _drop(FileOutput(folder / "pca.npz"))
    for plate in state.config.plates:
        _drop(FileOutput(state.plate_dir(plate) / SCORES))


def drop_legacy_scores(folder: Path) -> None:
    """Remove the screen-level :data:`LEGACY_SCORES` of an earlier version from ``folder``."""
    _drop(FileOutput(folder / LEGACY_SCORES))


def _drop(output: FileOutput) -> None:
    from cellscale._stages import output_lock

    if output.path.exists() or output.record_path.exists():
        with output_lock(output.path):
            output.record_path.unlink(missing_ok=True)
            output.path.unlink(missing_ok=True)


def _well_profiles(state: RunState, screen: Screen) -> pd.DataFrame:
    """Every plate's wells aggregated and annotated, then normalised and feature-selected."""
    import cellscale

    config = state.config.profiles
    tables = []
    for plate in screen.plates:
        if not plate.rows:
            continue
        wells = cellscale.aggregate_cells(
            plate.folder / "cells.parquet",
            list(config.by),
            operation=config.aggregate,
            metadata=plate.config.metadata,
        )
        if config.features != "measured":
            measured = config.features == "both"
            kept = [c for c in wells.columns if measured or c.startswith("Metadata_")]
            embedded = _embedding_wells(state, plate)
            wells = wells[kept].merge(embedded, on=list(config.by), how="left")
        if config.per_plate:
            _check_controls(config.controls, wells, plate.name)
        tables.append(wells)
    profiles = pd.concat(tables, ignore_index=True)
    _check_controls(config.controls, profiles, None)
    return cellscale.profile_wells(
        profiles,
        plate="Metadata_Plate" if config.per_plate else None,
        controls=config.controls,
        normalize=None if config.normalize == "none" else config.normalize,
        operation=config.feature_select,
    )


def _embedding_wells(state: RunState, plate: PlateCells) -> pd.DataFrame:
    """One plate's embeddings aggregated per group, as ``Embedding_<i>`` columns.

    From the plate's chunks: a mean from per-chunk sums, a median from one group's rows
    at a time (:func:`cellscale.aggregate`), both exact.
    """
    import cellscale

    config = state.config.profiles
    names = [f"Embedding_{i}" for i in range(plate.embeddings.shape[1])]
    table = cellscale.aggregate(
        plate.embeddings,
        list(config.by),
        operation=config.aggregate,
        features=names,
        metadata=embedded_cells(state, plate),
    )
    return table[[*config.by, *names]]


def _check_controls(controls: str | None, wells: pd.DataFrame, plate: str | None) -> None:
    if controls is not None and wells.query(controls).empty:
        where = f" of plate {plate}" if plate else ""
        raise ConfigError(f"profiles.controls: {controls!r} selects no wells{where}")


def _qc_digests(state: RunState) -> dict[str, str]:
    if not state.config.qc.enabled:
        return {}
    return {
        p.name: FileOutput(state.plate_dir(p) / "qc.parquet").digest() for p in state.config.plates
    }


def _field_quality(state: RunState, plates: list[xr.DataArray]) -> pd.DataFrame:
    from cellscale.pipeline._focus import field_quality

    return pd.concat([field_quality(state, p) for p in plates], ignore_index=True)
