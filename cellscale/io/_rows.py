"""Cell-space arrays on disk: ``(cell, ...)`` Zarr arrays written chunk of rows by chunk, resumably.

Crops and embeddings are aligned row for row with the cell table. :func:`write_rows` writes a
lazy ``(cell, ...)`` array as a Zarr array at ``path`` (so ``zarr.open_array(path)`` and
:class:`cellscale.PCA` read it as it is), chunked along cells only, one task per chunk of
rows. Its ledger and fingerprint live in ``path/.cellscale/``, which zarr ignores.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import dask
import numpy as np
import zarr

from cellscale._stages import (
    Fingerprint,
    Ledger,
    check_fingerprint,
    delayed_blocks,
    lazy_units,
    output_lock,
    remove_partials,
    run_units,
    task_key,
    unit_token,
)

__all__ = ["BOOKS", "write_rows"]

BOOKS = ".cellscale"


def write_rows(
    data: Any,
    path: str | Path,
    *,
    fingerprint: Fingerprint,
    attrs: dict[str, Any],
    chunk_rows: int,
    compressors: Any,
    stage: str,
    overwrite: bool = False,
    client: Any = None,
    progress: bool = True,
    compute: bool = True,
) -> Any:
    """Write the dask array ``data`` (rows first) to a Zarr array at ``path``, chunk by chunk.

    Parameters
    ----------
    data
        A ``(cell, ...)`` dask array.
    path
        The Zarr array to write.
    fingerprint
        What produced the rows; a store with another is refused unless ``overwrite``.
    attrs
        Attributes of the array (model name, weights hash, layer …).
    chunk_rows
        Rows per chunk (and per task); every other axis is whole in each chunk.
    compressors
        zarr compressors (``None`` keeps the rows as raw bytes).
    stage
        The stage's name, for task keys and progress bars (``"write-embeddings"``).
    overwrite, client, progress, compute
        As for :func:`cellscale.write_plate`.
    """
    path = Path(path)
    data = data.rechunk((chunk_rows, *data.shape[1:]))
    with output_lock(path):
        array, ledger = _open(path, data, fingerprint, attrs, chunk_rows, compressors, overwrite)
        remove_partials(path)
        recorded = ledger.tokens()
        blocks = delayed_blocks(data).ravel()
        tasks, names = [], []
        start = 0
        for i, (block, rows) in enumerate(zip(blocks, data.chunks[0], strict=True)):
            token = unit_token(data.name, i)
            if int(recorded[i]) != token:
                if recorded[i]:
                    ledger.clear((i,))
                tasks.append(
                    dask.delayed(_write_block, pure=False)(
                        block,
                        array,
                        start,
                        ledger,
                        i,
                        token,
                        dask_key_name=task_key(stage, str(path.resolve()), data.name, i),
                    )
                )
                names.append(f"rows {start}:{start + rows}")
            start += rows
        if not compute:
            return lazy_units(stage, tasks, names)
        run_units(stage, tasks, names, client=client, progress=progress)
    return path


def _open(
    path: Path,
    data: Any,
    fingerprint: Fingerprint,
    attrs: dict[str, Any],
    chunk_rows: int,
    compressors: Any,
    overwrite: bool,
) -> tuple[zarr.Array, Ledger]:
    books_path = path / BOOKS
    if books_path.exists() and not overwrite:
        books = zarr.open_group(str(books_path), mode="r+")
        stored: Any = books.attrs.get("fingerprint")
        check_fingerprint(Fingerprint.from_json(stored) if stored else None, fingerprint, path)
        array = zarr.open_array(str(path), mode="r+")
        ledger = Ledger.open(books, "ledger")
        assert ledger is not None
        return array, ledger
    if path.exists():
        shutil.rmtree(path)
    array = zarr.create_array(
        str(path),
        shape=data.shape,
        chunks=(chunk_rows, *data.shape[1:]),
        dtype=data.dtype,
        fill_value=0,
        compressors=compressors,
        attributes=attrs,
        config={"write_empty_chunks": True},
    )
    books = zarr.open_group(str(books_path), mode="w")
    ledger = Ledger.create(books, "ledger", (len(data.chunks[0]),))
    books.attrs["fingerprint"] = fingerprint.to_json()
    return array, ledger


def _write_block(
    block: np.ndarray, array: zarr.Array, start: int, ledger: Ledger, index: int, token: int
) -> None:
    values = np.asarray(block)
    array[start : start + len(values)] = values
    ledger.mark((index,), token)
