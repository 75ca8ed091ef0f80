"""Cell-space arrays on disk: ``(cell, ...)`` Zarr arrays written chunk of rows by chunk, resumably.

Crops and embeddings are aligned row for row with the cell table. :func:`write_rows` writes a
lazy ``(cell, ...)`` array as a Zarr array at ``path`` (so ``zarr.open_array(path)`` and
:class:`cellscale.PCA` read it as it is), chunked along cells only, one task per chunk of
rows. Its ledger and fingerprint live in ``path/.cellscale/``, which zarr ignores.
:func:`open_rows` reads it back strictly (an unfinished chunk of rows, or a missing or
damaged chunk file, is an error naming the rows and the file) and :func:`verify_rows` finds
and unmarks damaged chunks, so that writing again redoes exactly them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize

from cellscale._stages import (
    DamagedOutputError,
    Fingerprint,
    Ledger,
    VerifyReport,
    check_fingerprint,
    compute_units,
    delayed_blocks,
    lazy_units,
    output_lock,
    remove_partials,
    run_units,
    take_lease,
    task_key,
    unit_token,
)
from cellscale.io._chunks import DamagedChunkError, read_image
from cellscale.io._raw_rows import BOOKS, raw_rows

__all__ = [
    "BOOKS",
    "check_rows_complete",
    "open_rows",
    "row_units",
    "rows_digest",
    "verify_rows",
    "write_rows",
]


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
    with output_lock(path):
        tasks, names, sizes = row_units(
            data,
            path,
            fingerprint=fingerprint,
            attrs=attrs,
            chunk_rows=chunk_rows,
            compressors=compressors,
            stage=stage,
            overwrite=overwrite,
        )
        if not compute:
            return lazy_units(
                stage, tasks, names, lease=take_lease(path), then=lambda: seal_rows(path)
            )
        run_units(stage, tasks, names, client=client, progress=progress, weights=sizes)
        seal_rows(path)
    return path


def seal_rows(path: Path) -> None:
    """Seal the ledger of the row array at ``path`` (see :meth:`Ledger.seal`); hold its lock."""
    ledger = Ledger.open(zarr.open_group(str(path / BOOKS), mode="r+"), "ledger")
    assert ledger is not None
    ledger.seal()


def row_units(
    data: Any,
    path: Path,
    *,
    fingerprint: Fingerprint,
    attrs: dict[str, Any],
    chunk_rows: int,
    compressors: Any,
    stage: str,
    overwrite: bool,
) -> tuple[list[Any], list[str], list[int]]:
    """The tasks writing each chunk of rows the array at ``path`` lacks; names and rows.

    Parameters are as for :func:`write_rows`. Sets the array up (or checks it against
    ``fingerprint``) and clears what a killed writer left; call it holding
    :func:`~cellscale._stages.output_lock` of ``path``.
    """
    data = data.rechunk((chunk_rows, *data.shape[1:]))
    array, ledger = _open(path, data, fingerprint, attrs, chunk_rows, compressors, overwrite)
    remove_partials(path)
    recorded = ledger.tokens()
    blocks = delayed_blocks(data).ravel()
    tasks, names, sizes = [], [], []
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
            sizes.append(rows)
        start += rows
    return tasks, names, sizes


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


def check_rows_complete(path: str | Path) -> None:
    """Refuse a row array that cellscale did not finish writing, naming the missing rows.

    Raises
    ------
    DamagedOutputError
        If ``path`` has no books (not written by cellscale, or its write never began) or
        some chunks of rows were never written.
    """
    path = Path(path)
    ledger = _ledger(path, "r")
    array = zarr.open_array(str(path), mode="r")
    missing = np.flatnonzero(~ledger.done())
    if len(missing):
        shown = ", ".join(_rows_name(array, int(i)) for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DamagedOutputError(
            f"{path}: {len(missing)} of {len(ledger.done())} chunks of rows were never written "
            f"({shown}{more}); run the write again to finish them"
        )


def open_rows(path: str | Path) -> da.Array:
    """The rows of a row array written by :func:`write_rows`, lazily and strictly.

    Raises
    ------
    DamagedOutputError
        If the array is incomplete (when opened), or a chunk file is missing or cannot
        be decoded (when read).
    """
    path = Path(path)
    check_rows_complete(path)
    array = zarr.open_array(str(path), mode="r")
    raw = raw_rows(array)
    reader: Any = raw if raw is not None else _StrictRows(array, path)
    chunks = (array.chunks[0], *array.shape[1:])
    meta = np.empty((0,) * array.ndim, array.dtype)
    return da.from_array(reader, chunks=chunks, lock=False, meta=meta, name=_name(path))


def verify_rows(
    path: str | Path, *, repair: bool = True, client: Any = None, progress: bool = True
) -> VerifyReport:
    """Check that every complete chunk of rows has its chunk file and that it decodes.

    With ``repair``, damaged chunks are unmarked, so writing the rows again (or rerunning
    the pipeline) redoes exactly them.
    """
    path = Path(path)
    with output_lock(path):
        ledger = _ledger(path, "r+" if repair else "r")
        array = zarr.open_array(str(path), mode="r")
        done = np.flatnonzero(ledger.done())
        reader = _StrictRows(array, path)
        tasks = [
            dask.delayed(_check_chunk, pure=True)(
                reader, int(i), dask_key_name=task_key("verify-rows", _name(path), int(i))
            )
            for i in done
        ]
        results = compute_units("verify-rows", tasks, client=client, progress=progress)
        report = VerifyReport(path, checked=len(done), kind="rows")
        for i, result in zip(done, results, strict=True):
            if report.add(_rows_name(array, int(i)), result) and repair:
                ledger.clear((int(i),))
        report.repaired = repair and not report.ok
    return report


class _StrictRows:
    """Rows of a Zarr array read chunk by chunk, a missing or damaged chunk being an error."""

    def __init__(self, array: zarr.Array, path: Path) -> None:
        self.array, self.path = array, path
        self.shape, self.dtype, self.ndim = array.shape, np.dtype(array.dtype), array.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        rows = key[0] if isinstance(key, tuple) else key
        start, stop, step = rows.indices(self.shape[0])
        size = self.array.chunks[0]
        parts = [self.chunk(i) for i in range(start // size, -(-stop // size))]
        whole = np.concatenate(parts) if parts else np.empty((0, *self.shape[1:]), self.dtype)
        first = (start // size) * size
        rest = key[1:] if isinstance(key, tuple) else ()
        return whole[(slice(start - first, stop - first, step), *rest)]

    def chunk(self, i: int) -> np.ndarray:
        """Chunk ``i`` of rows, whole."""
        size = self.array.chunks[0]
        index = (slice(i * size, min((i + 1) * size, self.shape[0])),)
        index += (slice(None),) * (self.ndim - 1)
        where = f"{self.path}: {_rows_name(self.array, i)}"
        try:
            return read_image(self.array, index, (i,) + (0,) * (self.ndim - 1), where, hint=False)
        except DamagedChunkError as err:
            raise DamagedOutputError(
                f"{err}. Run `cellscale verify` on it and write it again"
            ) from err


def _check_chunk(reader: _StrictRows, i: int) -> str | None:
    """What is wrong with chunk ``i`` of rows, or ``None``."""
    try:
        rows = reader.chunk(i)
    except DamagedOutputError as err:
        return str(err)
    expected = min(reader.array.chunks[0], reader.shape[0] - i * reader.array.chunks[0])
    return None if len(rows) == expected else f"holds {len(rows)} rows, expected {expected}"


def _ledger(path: Path, mode: Literal["r", "r+"]) -> Ledger:
    books = path / BOOKS
    fingerprint, ledger = None, None
    if books.is_dir():
        group = zarr.open_group(str(books), mode=mode)
        fingerprint = group.attrs.get("fingerprint")
        ledger = Ledger.open(group, "ledger")
    if not fingerprint or ledger is None:
        raise DamagedOutputError(
            f"{path} is not a row array written by cellscale (it has no {BOOKS}/ledger and "
            "fingerprint), or its write never began"
        )
    return ledger


def _rows_name(array: zarr.Array, i: int) -> str:
    size = array.chunks[0]
    return f"rows {i * size}:{min((i + 1) * size, array.shape[0])}"


def rows_digest(path: str | Path) -> str:
    """A token of what the row array holds: its fingerprint and the token of every chunk.

    It names the array's graph and is what later outputs refer to it by; it never
    depends on the array's path, so a moved array keeps it.
    """
    books = zarr.open_group(str(Path(path) / BOOKS), mode="r")
    ledger = Ledger.open(books, "ledger")
    assert ledger is not None
    return str(tokenize(books.attrs.get("fingerprint"), ledger.tokens()))


def _name(path: Path) -> str:
    return f"rows-{rows_digest(path)}"
