"""Turn the inputs the profile stage accepts into dask arrays of shape ``(cell, feature)``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from cellscale.io._raw_rows import RawRows, raw_rows
from cellscale.io._rows import check_rows_complete

__all__ = [
    "TARGET_CHUNK_BYTES",
    "CellInput",
    "as_cell_array",
    "as_row_mask",
    "cell_input",
    "row_bounds",
]

#: Rows per task are grown to about this many bytes when the stored chunks are smaller.
TARGET_CHUNK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class CellInput:
    """A ``(cell, feature)`` input as a dask array, with its raw chunk files if it has them.

    Attributes
    ----------
    array
        The rows as a dask array chunked along rows only.
    raw
        For an uncompressed local Zarr array, its chunk files (``array`` reads exactly
        these rows), which streaming passes can read slice by slice; otherwise ``None``.
    """

    array: da.Array
    raw: RawRows | None = None


def cell_input(x: Any, *, chunk_bytes: int = TARGET_CHUNK_BYTES) -> CellInput:
    """Return ``x`` as a :class:`CellInput` (see :func:`as_cell_array` for the chunking).

    Raises
    ------
    ValueError
        If the array is not 2-D.
    DamagedOutputError
        If ``x`` is a row array cellscale did not finish writing.
    """
    if isinstance(x, str | os.PathLike):
        import zarr

        x = zarr.open_array(os.fspath(x), mode="r")
    raw = None
    if isinstance(x, da.Array):
        arr = x
    elif isinstance(x, np.ndarray):
        arr = da.from_array(x, chunks=(_rows_for(x, chunk_bytes), -1))
    else:
        stored = getattr(x, "chunks", None) or (x.shape[0], x.shape[1])
        rows = max(stored[0], (_rows_for(x, chunk_bytes) // stored[0]) * stored[0])
        raw = raw_rows(x)
        if raw is not None and raw.strict:
            check_rows_complete(raw.root)
        if raw is not None:
            arr = da.from_array(
                raw, chunks=(rows, -1), lock=False, meta=np.empty((0, 0), raw.dtype)
            )
        elif _is_zarr(x):
            arr = da.from_zarr(x, chunks=(rows, -1))
        else:
            arr = da.from_array(x)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D (cell, feature) array, got shape {arr.shape}")
    if len(arr.chunks[1]) > 1:
        arr = arr.rechunk({1: -1})
    return CellInput(arr, raw)


def as_cell_array(x: Any, *, chunk_bytes: int = TARGET_CHUNK_BYTES) -> da.Array:
    """Return ``x`` as a 2-D dask array chunked along rows only.

    Parameters
    ----------
    x
        A dask or NumPy array, a Zarr array, or the path of a Zarr array, of shape
        ``(cell, feature)``. Uncompressed Zarr chunks on a local disk are read straight
        from their files (:mod:`cellscale.io._raw_rows`).
    chunk_bytes
        Row chunks are merged (never split) until a chunk holds about this many bytes.
        Existing dask row chunks are kept as they are.

    Returns
    -------
    dask.array.Array
        The same values, with every row chunk spanning all features.

    Raises
    ------
    ValueError
        If the array is not 2-D.
    """
    return cell_input(x, chunk_bytes=chunk_bytes).array


def row_bounds(arr: da.Array) -> list[tuple[int, int]]:
    """The ``(start, stop)`` row range of every row chunk of ``arr``."""
    stops = np.cumsum(arr.chunks[0]).tolist()
    return [(stop - size, stop) for stop, size in zip(stops, arr.chunks[0], strict=True)]


def _rows_for(x: Any, chunk_bytes: int) -> int:
    row_bytes = max(1, int(np.prod(x.shape[1:])) * np.dtype(x.dtype).itemsize)
    return int(max(1, min(x.shape[0], chunk_bytes // row_bytes)))


def _is_zarr(x: Any) -> bool:
    return type(x).__module__.startswith("zarr")


def as_row_mask(mask: Any, arr: da.Array) -> da.Array:
    """Return a boolean row mask as a dask array chunked like ``arr``'s rows.

    Raises
    ------
    ValueError
        If its length differs from the number of rows.
    """
    mask = mask if isinstance(mask, da.Array) else np.asarray(mask)
    if mask.ndim != 1 or mask.shape[0] != arr.shape[0]:
        raise ValueError(f"mask has shape {mask.shape}, expected ({arr.shape[0]},) booleans")
    if mask.dtype != bool:
        raise ValueError(f"mask must be boolean, got dtype {mask.dtype}")
    if isinstance(mask, da.Array):
        return mask.rechunk((arr.chunks[0],))
    return da.from_array(mask, chunks=(arr.chunks[0],))
