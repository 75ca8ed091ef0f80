"""Each plate's PCA scores, written chunk by chunk next to its cell table.

``plates/<name>/scores.parquet`` holds one row per embedded cell of the plate, in the
embeddings' row order: ``cell_id``, the cell's ``Metadata_`` columns (those of the cell
table and the plate's config metadata) and ``PC1`` … ``PCk`` (float32). It is written
one row group per chunk of embeddings: a few chunks' scores are computed at a time and
appended, each with the metadata of its rows only (read for that chunk), so no process
holds more than a few chunks of scores and one chunk's metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cellscale.cells import CELL_ID

__all__ = ["SCORES", "read_scores", "write_scores"]

#: The file name of a plate's scores, in the plate's folder.
SCORES = "scores.parquet"
#: Chunks of embeddings scored at once.
_BATCH = 8


def write_scores(
    path: Path, model: Any, embeddings: Any, metadata: Callable[[int, int], pd.DataFrame]
) -> None:
    """Score ``embeddings`` with ``model`` and write them with their metadata to ``path``.

    Parameters
    ----------
    path
        The Parquet file to write.
    model
        A fitted :class:`cellscale.PCA`.
    embeddings
        One plate's ``(cell, feature)`` dask array.
    metadata
        ``metadata(start, stop)``: ``cell_id`` and ``Metadata_`` columns of the embedded
        rows ``start`` to ``stop`` (the same columns for every range, an empty range too).

    Raises
    ------
    ValueError
        If ``metadata`` gives other than the rows asked for.
    """
    scores = model.transform(embeddings)
    names = model.get_feature_names_out()
    blocks = list(scores.to_delayed().ravel())
    bounds = np.cumsum([0, *scores.chunks[0]])
    writer: pq.ParquetWriter | None = None
    try:
        for first in range(0, len(blocks), _BATCH):
            computed = dask.compute(*blocks[first : first + _BATCH])
            for i, values in enumerate(computed, start=first):
                rows = _rows(metadata, int(bounds[i]), int(bounds[i + 1]), path)
                frame = pd.concat([rows, pd.DataFrame(values, columns=names)], axis="columns")
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
        if writer is None:  # no rows: the file still says which columns it would have
            empty = pd.concat(
                [metadata(0, 0), pd.DataFrame(columns=names, dtype=np.float32)], axis=1
            )
            pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), path)
    finally:
        if writer is not None:
            writer.close()


def _rows(
    metadata: Callable[[int, int], pd.DataFrame], start: int, stop: int, path: Path
) -> pd.DataFrame:
    """``metadata(start, stop)``, checked to hold those rows."""
    rows = metadata(start, stop).reset_index(drop=True)
    if len(rows) != stop - start:
        raise ValueError(
            f"{path.parent.name}: {len(rows)} cells for embedded rows {start} to {stop}"
        )
    return rows


def read_scores(path: Path, cell_ids: np.ndarray) -> pd.DataFrame:
    """``cell_id`` and ``PC1`` … of the cells ``cell_ids`` of one plate's scores file.

    Only the ``cell_id`` and ``PC`` columns are read, and each row group is filtered as
    it is read; rows come in the file's order.
    """
    names = [n for n in pq.read_schema(path).names if n == CELL_ID or n.startswith("PC")]
    table = pq.read_table(path, columns=names, filters=[(CELL_ID, "in", cell_ids.tolist())])
    return table.to_pandas()
