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

No stage holds a per-cell table of the screen, nor of one plate. :func:`screen_cells`
describes the screen plate by plate (its cell table, digests, row count and lazy
embeddings) and reads each plate's metadata and shape columns once, a chunk of whole
(time point, well)s at a time (:data:`CHUNK_CELLS` cells, :class:`CellRows`), into the
small :class:`~cellscale.pipeline._cell_summary.CellSummary` the report shows; the scores
read the metadata of one chunk of embeddings at a time, and the embedding profiles that
of :data:`CHUNK_CELLS` embedded cells at a time. Only the columns used are read.

Each of these files is a :class:`~cellscale._stages.FileOutput` whose fingerprint names
its inputs by content (each plate's cell table and embeddings by their digests, the PCA
by its checksum), so a rerun makes again exactly the files whose inputs changed: a
corrected plate map changes that plate's cell table, hence that plate's scores and the
profiles' treatments and control set, without refitting a PCA whose embeddings did not
change or rewriting the scores of the other plates.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from cellscale._stages import FileOutput, Fingerprint
from cellscale.cells import CELL_ID, metadata_column
from cellscale.pipeline._cell_summary import CellSummary, merge, summarise_chunks
from cellscale.pipeline._config import ConfigError, PlateConfig, as_dict
from cellscale.pipeline._focus import FOCUS_COLUMN
from cellscale.pipeline._scores import SCORES, write_scores
from cellscale.pipeline._state import RunState, file_stage

if TYPE_CHECKING:
    from cellscale.measurement._parquet import CellField

__all__ = [
    "CHUNK_CELLS",
    "WELLS_AGGREGATED",
    "CellRows",
    "PlateCells",
    "Screen",
    "drop_legacy_scores",
    "drop_output",
    "drop_pca",
    "embedded_rows",
    "open_rows",
    "pca",
    "plate_cells",
    "profiles",
    "screen_cells",
]

#: Most rows of a plate's cell table the screen stages hold at once: a chunk is whole
#: (time point, well)s up to this many cells (a (time point, well) with more is one
#: chunk), or this many embedded cells for the scores' and embedding profiles' metadata.
CHUNK_CELLS = 65_536
#: The screen-level table of every cell's scores that earlier versions wrote; scores are
#: now per plate (:data:`~cellscale.pipeline._scores.SCORES`), and a run removes it.
LEGACY_SCORES = "cells.parquet"
#: The per-well profiles before normalisation and feature selection, beside ``wells.parquet``.
WELLS_AGGREGATED = "wells_aggregated.parquet"


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


@dataclass(frozen=True, eq=False)
class CellRows:
    """One plate's cells as the screen stages read them: a chunk at a time, strictly.

    The rows are the plate's embedded cells in embedding order where :attr:`ids` (the
    embeddings' ``cell_id``) are set (:meth:`embedded`), else all its cells in
    ``cell_id`` order. Each row has ``cell_id``, the ``Metadata_`` columns with the
    plate's config metadata and the kept columns; a chunk's frames are those of the old
    whole-plate read (:func:`plate_cells`, aligned to the embeddings), sliced.
    """

    plate: PlateConfig
    fields: tuple[CellField, ...]  # the table's checked fields, in cell_id order
    columns: tuple[str, ...]  # the columns read from the table
    ids: np.ndarray | None = None

    @property
    def cells(self) -> int:
        """Cells of the table."""
        return sum(f.rows for f in self.fields)

    @property
    def names(self) -> list[str]:
        """The columns of the rows: those read, then the plate's config metadata."""
        return [*self.columns, *(metadata_column(str(k)) for k in self.plate.metadata)]

    def __len__(self) -> int:
        return self.cells if self.ids is None else len(self.ids)

    def embedded(self, ids: np.ndarray) -> CellRows:
        """The cells ``ids`` (the embeddings' ``cell_id``), in that order.

        Raises
        ------
        ValueError
            If some of them are not in the cell table.
        """
        ids = np.asarray(ids, dtype=np.int64)
        ordered = np.sort(ids)
        ends = self._firsts + np.array([f.rows for f in self.fields], dtype=np.int64)
        held = np.searchsorted(ordered, ends) - np.searchsorted(ordered, self._firsts)
        if int(held.sum()) != len(ids):
            raise ValueError(
                f"plate {self.plate.name!r}: {len(ids) - int(held.sum())} embedded cells are "
                "not in its cell table; embed the plate again"
            )
        columns = (CELL_ID, *(c for c in self.columns if c != CELL_ID))
        return replace(self, columns=columns, ids=ids)

    def chunks(self) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
        """The rows, a chunk of whole (time point, well)s at a time, each row with its position.

        A chunk holds at most :data:`CHUNK_CELLS` rows of the table, or one (time point,
        well) that has more; its rows are in row order, indexed as :func:`plate_cells`
        indexes them (by ``cell_id``), or by position where :attr:`ids` are set.
        """
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, field in enumerate(self.fields):
            groups.setdefault(field.unit[:2], []).append(i)
        chunk: list[int] = []
        size = 0
        for members in groups.values():
            rows = sum(self.fields[i].rows for i in members)
            if chunk and size + rows > CHUNK_CELLS:
                yield self._chunk(chunk)
                chunk, size = [], 0
            chunk += members
            size += rows
        if chunk:
            yield self._chunk(chunk)

    def between(self, start: int, stop: int) -> pd.DataFrame:
        """Embedded rows ``start`` to ``stop``, read from the fields that hold them."""
        assert self.ids is not None
        ids = self.ids[start:stop]
        owners = np.unique(np.searchsorted(self._firsts, ids, side="right") - 1)
        cells = self._read([self.fields[i] for i in owners[owners >= 0]])
        missing = ~np.isin(ids, cells.index.to_numpy())
        if missing.any():
            raise ValueError(
                f"plate {self.plate.name!r}: embedded cells {ids[missing][:5].tolist()} are "
                "not in its cell table; embed the plate again"
            )
        return _with_plate_metadata(cells.loc[ids].reset_index(drop=True), self.plate)

    def table(self) -> pd.DataFrame:
        """Every cell of the table at once (:func:`plate_cells`)."""
        return _with_plate_metadata(self._read(list(self.fields)), self.plate)

    @cached_property
    def _firsts(self) -> np.ndarray:
        """Each field's first ``cell_id``."""
        return np.array([f.first for f in self.fields], dtype=np.int64)

    @cached_property
    def _id_order(self) -> np.ndarray:
        """The positions of :attr:`ids` in ``cell_id`` order."""
        assert self.ids is not None
        return np.argsort(self.ids, kind="stable")

    def _chunk(self, members: list[int]) -> tuple[np.ndarray, pd.DataFrame]:
        members = sorted(members)
        cells = self._read([self.fields[i] for i in members])
        if self.ids is None:  # every cell, in cell_id order: a field's rows follow those before
            starts = np.cumsum([0, *(f.rows for f in self.fields)])
            positions = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in members])
            return positions, _with_plate_metadata(cells, self.plate)
        ordered = self.ids[self._id_order]
        at = np.minimum(np.searchsorted(ordered, cells.index.to_numpy()), len(ordered) - 1)
        mine = ordered[at] == cells.index.to_numpy()
        positions = self._id_order[at[mine]]
        by_position = np.argsort(positions, kind="stable")
        cells = cells[mine].iloc[by_position].set_axis(positions[by_position], axis=0)
        return positions[by_position], _with_plate_metadata(cells, self.plate)

    def _read(self, fields: list[CellField]) -> pd.DataFrame:
        """The kept columns of ``fields``; none: an empty frame with the table's dtypes."""
        from cellscale.measurement._parquet import read_cell_fields

        if fields:
            return read_cell_fields(fields, self.columns)
        return read_cell_fields(self.fields[:1], self.columns).iloc[:0]


def open_rows(state: RunState, plate: PlateConfig, keep: Any = None) -> CellRows:
    """One plate's :class:`CellRows`: ``cell_id``, the ``Metadata_`` columns and those
    ``keep(name)`` selects, of every cell (its fields checked now)."""
    import pyarrow.parquet as pq

    from cellscale.measurement._parquet import cell_fields

    fields = tuple(cell_fields(state.plate_dir(plate) / "cells.parquet"))
    stored = pq.read_schema(fields[0].file).names if fields else [CELL_ID]
    kept = tuple(
        c
        for c in stored
        if c == CELL_ID or c.startswith("Metadata_") or (keep is not None and keep(c))
    )
    return CellRows(plate, fields, kept)


def plate_cells(state: RunState, plate: PlateConfig, keep: Any = None) -> pd.DataFrame:
    """One plate's ``cell_id``, ``Metadata_`` columns (with the plate's config metadata) and
    the columns ``keep(name)`` selects, in ``cell_id`` order, all at once.

    Only these columns are read; the screen stages read a plate a chunk at a time
    (:func:`open_rows`).
    """
    return open_rows(state, plate, keep).table()


def _is_shape(column: str) -> bool:
    return "_AreaShape_" in column


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


def profiles(state: RunState, screen: Screen, plates: list[xr.DataArray], folder: Path) -> None:
    """Make the per-well profiles and the field quality table.

    The wells are aggregated and annotated into ``wells_aggregated.parquet``
    (:data:`WELLS_AGGREGATED`, pycytominer's "augmented" profiles), then normalised and
    feature-selected into ``wells.parquet``; a change to the normalisation alone
    aggregates nothing again.
    """
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

    aggregated = FileOutput(folder / WELLS_AGGREGATED)
    by_wells = Fingerprint(
        "aggregated",
        inputs={"cells": inputs},
        parameters={
            "features": config.features,
            "aggregate": config.aggregate,
            "by": list(config.by),
            "metadata": metadata,
        },
    )

    def aggregate(partial: Path) -> None:
        _aggregated_wells(state, screen).to_parquet(partial, index=False)

    def normalise(partial: Path) -> None:
        aggregated_wells = pd.read_parquet(aggregated.open())
        _normalised_wells(state, aggregated_wells).to_parquet(partial, index=False)

    if screen.cells:
        file_stage(state, "profiles", None, screen.cells, aggregated, by_wells, aggregate)
        output = FileOutput(folder / "wells.parquet")
        file_stage(state, "profiles", None, screen.cells, output, wells, normalise)
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


def _aggregated_wells(state: RunState, screen: Screen) -> pd.DataFrame:
    """Every plate's wells aggregated and annotated (the profiles before normalisation)."""
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
    return pd.concat(tables, ignore_index=True)


def _normalised_wells(state: RunState, profiles: pd.DataFrame) -> pd.DataFrame:
    """The aggregated wells normalised against controls and feature-selected."""
    import cellscale

    config = state.config.profiles
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

    The groups are read from the metadata :data:`CHUNK_CELLS` embedded cells at a time,
    each row given its group's number; then, from the plate's chunks of embeddings, a mean
    from per-chunk sums, a median from one group's rows at a time
    (:func:`~cellscale.profiles._aggregate.aggregate_codes`), both exact and the same as
    :func:`cellscale.aggregate` with all the metadata at once.
    """
    from cellscale.profiles._aggregate import aggregate_codes

    by = list(state.config.profiles.by)
    rows = embedded_rows(state, plate)
    known: pd.DataFrame | None = None  # each group's key, numbered by its first row
    codes = []
    for start in range(0, len(rows), CHUNK_CELLS):
        grouped = rows.between(start, start + CHUNK_CELLS).groupby(by, sort=False, dropna=False)
        mine = grouped.size().reset_index()[by]
        keys = mine if known is None else pd.concat([known, mine], ignore_index=True)
        numbers = keys.groupby(by, sort=False, dropna=False).ngroup().to_numpy()
        codes.append(numbers[len(keys) - len(mine) :][grouped.ngroup().to_numpy()])
        known = keys.iloc[np.unique(numbers, return_index=True)[1]].reset_index(drop=True)
    assert known is not None, "a plate with embedded cells"
    found = known.groupby(by, sort=True, dropna=False).ngroup().to_numpy()
    names = [f"Embedding_{i}" for i in range(plate.embeddings.shape[1])]
    table = aggregate_codes(
        plate.embeddings,
        found[np.concatenate(codes)],
        known.iloc[np.argsort(found)],
        operation=state.config.profiles.aggregate,
        features=names,
    )
    return table[[*by, *names]]


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
