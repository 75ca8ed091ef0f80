"""The screen stages of a run: the screen described plate by plate, and the PCA of its embeddings.

No stage holds a per-cell table of the screen, nor of one plate. :func:`screen_cells`
describes the screen plate by plate (its cell table, digests, row count and lazy
embeddings) and reads each plate's metadata and shape columns once, a chunk of whole
(time point, well)s at a time (:mod:`cellscale.pipeline._cell_rows`), into the small
:class:`~cellscale.pipeline._cell_summary.CellSummary` the report shows. The PCA
(``pca.npz``) is made only from embeddings, fitted in one streaming pass over every
plate's chunks; each plate's scores are written next to its cell table
(``plates/<name>/scores.parquet``, :mod:`cellscale.pipeline._scores`), reading the
metadata of one chunk of embeddings at a time. The per-well profiles are
:mod:`cellscale.pipeline._profiles_stage`.

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
from typing import TYPE_CHECKING, Any

from cellscale._stages import FileOutput, Fingerprint
from cellscale.cells import CELL_ID
from cellscale.pipeline._cell_rows import CellRows, open_rows
from cellscale.pipeline._cell_summary import CellSummary, merge, summarise_chunks
from cellscale.pipeline._config import PlateConfig, as_dict
from cellscale.pipeline._scores import SCORES, write_scores
from cellscale.pipeline._state import RunState, file_stage

if TYPE_CHECKING:
    pass

__all__ = [
    "PlateCells",
    "Screen",
    "drop_legacy_scores",
    "drop_output",
    "drop_pca",
    "embedded_rows",
    "pca",
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
    naming it) one chunk of whole (time point, well)s at a time (:data:`CHUNK_CELLS`),
    summarised and dropped before the next chunk is read.
    """
    import cellscale
    from cellscale.io._rows import rows_digest
    from cellscale.measurement import cells_digest

    plates, summaries, columns = [], [], None
    for position, plate in enumerate(state.config.plates):
        folder = state.plate_dir(plate)
        digests: dict[str, Any] = {"cells": cells_digest(folder / "cells.parquet")}
        rows, embeddings = open_rows(state, plate, _is_shape), None
        if rows.cells and state.config.embed.active:
            path = folder / "embeddings.zarr"
            opened = cellscale.open_embeddings(path)
            digests["embeddings"] = rows_digest(path)
            rows = rows.embedded(opened.coords[CELL_ID].values)
            embeddings = opened.data
        columns = rows.names
        if len(rows):
            plates_in = len(state.config.plates)
            summary = summarise_chunks(
                plate.name, rows.chunks(), len(rows), position, plates_in, position == 0
            )
            summaries.append(summary)
        plates.append(PlateCells(plate, folder, len(rows), digests, embeddings))
    return Screen(tuple(plates), merge(summaries, columns))


def _is_shape(column: str) -> bool:
    return "_AreaShape_" in column


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
            drop_output(scores)
            continue
        scored = Fingerprint(
            "scores",
            inputs={"pca": digest, "cells": plate.digests},
            parameters={"metadata": dict(plate.config.metadata)},
        )

        def score(partial: Path, plate: PlateCells = plate) -> None:
            trained = cellscale.PCA.load(model.open())
            write_scores(partial, trained, plate.embeddings, embedded_rows(state, plate).between)

        file_stage(state, "pca", None, plate.rows, scores, scored, score)


def embedded_rows(state: RunState, plate: PlateCells) -> CellRows:
    """``cell_id`` and ``Metadata_`` columns of one plate's embedded cells, in embedding order."""
    import cellscale

    ids = cellscale.open_embeddings(plate.folder / "embeddings.zarr").coords[CELL_ID].values
    return open_rows(state, plate.config).embedded(ids)


def drop_pca(state: RunState, folder: Path) -> None:
    """Remove the PCA and scores an earlier run with embeddings left behind.

    A run without embeddings makes neither, and the report must not show stale ones.
    """
    drop_output(FileOutput(folder / "pca.npz"))
    for plate in state.config.plates:
        drop_output(FileOutput(state.plate_dir(plate) / SCORES))


def drop_legacy_scores(folder: Path) -> None:
    """Remove the screen-level :data:`LEGACY_SCORES` of an earlier version from ``folder``."""
    drop_output(FileOutput(folder / LEGACY_SCORES))


def drop_output(output: FileOutput) -> None:
    """Remove a one-file output and its record, so that no reader takes a stale one."""
    from cellscale._stages import output_lock

    if output.path.exists() or output.record_path.exists():
        with output_lock(output.path):
            output.record_path.unlink(missing_ok=True)
            output.path.unlink(missing_ok=True)
