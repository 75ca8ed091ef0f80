"""Read row blocks of uncompressed Zarr arrays on a local disk straight from their chunk files.

Embedding and feature matrices are float arrays that barely compress, so they are
usually stored without a codec. For those, zarr's codec pipeline costs more than the
disk: it reads each chunk file into a new buffer and then copies that into the output.
:class:`RawRows` reads the same files with ``readinto`` straight into the output, one
copy in all. Anything it cannot read byte for byte (compressors, filters, transposes,
sharding, big-endian data, chunks that split the columns, remote stores) is left to
zarr: :func:`raw_rows` returns ``None`` for it.

Row arrays cellscale wrote (they have a ``.cellscale`` folder of books) are read strictly:
a missing chunk file is an error naming it, never the fill value.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from cellscale._stages import DamagedOutputError
from cellscale.io._chunk_files import holds_raw_bytes

__all__ = ["BOOKS", "RawRows", "raw_rows"]

#: The folder inside a cellscale row array that holds its ledger, fingerprint and cell ids.
BOOKS = ".cellscale"


class RawRows:
    """An array-like over a 2-D row-chunked Zarr array whose chunks are raw native bytes.

    Indexing reads only the chunk files that the rows touch. Missing chunk files read
    as the fill value, as in zarr, unless ``strict``: then they are an error.

    Parameters
    ----------
    root
        The array's folder.
    keys
        The chunk file of each row chunk, relative to ``root``.
    shape, dtype, chunk_rows, fill_value
        As in the array's metadata.
    strict
        Raise :class:`~cellscale._stages.DamagedOutputError` for a missing chunk file.
    """

    def __init__(
        self,
        root: Path,
        keys: list[str],
        shape: tuple[int, int],
        dtype: np.dtype[Any],
        chunk_rows: int,
        fill_value: Any,
        strict: bool = False,
    ) -> None:
        self.root = root
        self.keys = keys
        self.shape = shape
        self.dtype = dtype
        self.ndim = 2
        self.chunk_rows = chunk_rows
        self.fill_value = fill_value
        self.strict = strict

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return (type(self).__name__, str(self.root), self.shape, str(self.dtype), self.chunk_rows)

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols = _as_pair(key)
        start, stop, step = rows.indices(self.shape[0])
        if step != 1:
            return self[slice(start, stop), cols][::step]
        out = np.empty((max(0, stop - start), self.shape[1]), self.dtype)
        if len(out):
            self.read_into(out, start)
        return out if cols == slice(None) else out[:, cols]

    def read_into(self, out: np.ndarray, start: int) -> None:
        """Fill the C-contiguous ``out`` with rows ``start:start + len(out)``."""
        row_bytes = self.shape[1] * self.dtype.itemsize
        stop = start + len(out)
        for chunk in range(start // self.chunk_rows, -(-stop // self.chunk_rows)):
            first = chunk * self.chunk_rows
            lo, hi = max(start, first), min(stop, first + self.chunk_rows)
            target = out[lo - start : hi - start]
            path = self.root / self.keys[chunk]
            try:
                file = io.FileIO(path, "r")  # unbuffered: reads go straight into the target
            except FileNotFoundError:
                if self.strict:
                    raise DamagedOutputError(
                        f"{self.root}: rows {first}:{min(first + self.chunk_rows, self.shape[0])} "
                        f"are missing their chunk file {path}. Run `cellscale verify` on it and "
                        "write it again"
                    ) from None
                target[...] = self.fill_value
                continue
            with file:
                file.seek((lo - first) * row_bytes)
                _read_exactly(file, target.data.cast("B"), path)


def _read_exactly(file: io.FileIO, view: memoryview, path: Path) -> None:
    """Fill ``view`` from ``file``'s position."""
    offset, done = file.tell(), 0
    while done < len(view):
        got = file.readinto(view[done:])
        if not got:
            raise OSError(
                f"chunk file {path} is truncated: expected at least {offset + len(view)} bytes, "
                f"found {offset + done}. Run `cellscale verify` on the array and write it again"
            )
        done += got


def _as_pair(key: Any) -> tuple[slice, Any]:
    if not isinstance(key, tuple):
        key = (key,)
    if len(key) > 2 or not isinstance(key[0], slice):
        raise IndexError(f"RawRows takes a row slice and an optional column index, got {key!r}")
    return key[0], key[1] if len(key) == 2 else slice(None)


def raw_rows(array: Any) -> RawRows | None:
    """A :class:`RawRows` reader for ``array``, or ``None`` if zarr must decode its chunks.

    Parameters
    ----------
    array
        Any object; only a 2-D ``zarr.Array`` on a ``LocalStore`` whose chunks span all
        columns and hold raw native-endian bytes qualifies.
    """
    if not isinstance(array, zarr.Array) or not isinstance(array.store, LocalStore):
        return None
    if array.ndim != 2 or array.chunks[1] != array.shape[1] or not holds_raw_bytes(array):
        return None
    chunk_rows = array.chunks[0]
    n_chunks = -(-array.shape[0] // chunk_rows)
    root = Path(array.store.root) / array.path
    return RawRows(
        root=root,
        keys=[array.metadata.encode_chunk_key((i, 0)) for i in range(n_chunks)],
        shape=(array.shape[0], array.shape[1]),
        dtype=np.dtype(array.dtype),
        chunk_rows=chunk_rows,
        fill_value=0 if array.fill_value is None else array.fill_value,
        strict=(root / BOOKS).is_dir(),
    )
