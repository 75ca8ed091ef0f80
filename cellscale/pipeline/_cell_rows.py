"""One plate's cell table as the screen stages read it: a chunk of whole wells at a time.

:class:`CellRows` reads only the columns it is asked for (``cell_id``, the ``Metadata_``
columns with the plate's config metadata, and those ``keep(name)`` selects), strictly
(a missing or damaged piece is an error naming it), a few fields at a time in the calling
process: :meth:`CellRows.chunks` gives whole (time point, well)s of at most
:data:`CHUNK_CELLS` cells, :meth:`CellRows.between` the rows of one chunk of embeddings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cellscale.cells import CELL_ID, metadata_column
from cellscale.pipeline._config import ConfigError, PlateConfig
from cellscale.pipeline._state import RunState

if TYPE_CHECKING:
    from cellscale.measurement._parquet import CellField

__all__ = ["CHUNK_CELLS", "CellRows", "open_rows", "plate_cells"]

#: Most rows of a plate's cell table the screen stages hold at once: a chunk is whole
#: (time point, well)s up to this many cells (a (time point, well) with more is one
#: chunk), or this many embedded cells for the scores' and embedding profiles' metadata.
CHUNK_CELLS = 65_536


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
