"""Reading a plate image's chunk so that a missing or damaged chunk is an error, never zeros.

zarr reads a chunk that does not exist as the fill value. Where a unit is marked
complete every one of its chunks was written, so a missing chunk file means the store
was damaged; :func:`read_image` checks that the chunk exists before reading it and
names the field, channel and file when it is missing or cannot be decoded. Chunks of the
layouts :mod:`cellscale.io._chunk_files` decodes are read from their file in the calling
thread; the rest through zarr.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from zarr.storage import LocalStore

from cellscale._compat import store_key_exists
from cellscale._stages import DamagedOutputError
from cellscale.io._chunk_files import chunk_of, read_chunk_file, within_chunk
from cellscale.plate import PlateError

__all__ = [
    "DamagedChunkError",
    "IncompleteStoreError",
    "chunk_exists",
    "chunk_location",
    "read_chunk",
    "read_image",
]


class DamagedChunkError(PlateError, DamagedOutputError):
    """A chunk of a unit marked complete is missing or cannot be decoded."""


class IncompleteStoreError(PlateError, DamagedOutputError):
    """Some units of a plate store (or of its labels) were never finished."""


def chunk_location(array: zarr.Array, coords: tuple[int, ...]) -> str:
    """Where the chunk at chunk-grid ``coords`` lives: a file path on a local disk."""
    key = array.metadata.encode_chunk_key(coords)
    if isinstance(array.store, LocalStore):
        return str(Path(array.store.root) / array.path / key)
    return f"{array.store}/{array.path}/{key}"


def chunk_exists(array: zarr.Array, coords: tuple[int, ...]) -> bool:
    """Whether the chunk at chunk-grid ``coords`` was ever written."""
    key = array.metadata.encode_chunk_key(coords)
    if isinstance(array.store, LocalStore):
        return (Path(array.store.root) / array.path / key).is_file()
    return store_key_exists(array.store, f"{array.path}/{key}")


_REPAIR = ". Run `cellscale verify` on the plate and write it again to repair it"


def read_image(
    array: zarr.Array,
    index: tuple[int | slice, ...],
    coords: tuple[int, ...],
    where: str,
    *,
    hint: bool = True,
) -> np.ndarray:
    """Read ``array[index]``, which is exactly the chunk at ``coords``, or raise naming ``where``.

    Raises
    ------
    DamagedChunkError
        If the chunk file is missing or cannot be decoded.
    """
    repair = _REPAIR if hint else ""
    if not chunk_exists(array, coords):
        raise DamagedChunkError(
            f"{where}: chunk {chunk_location(array, coords)} is missing, but the unit is marked "
            f"complete{repair}"
        )
    try:
        return read_chunk(array, index, missing_ok=False)
    except Exception as err:
        raise DamagedChunkError(
            f"{where}: chunk {chunk_location(array, coords)} cannot be decoded "
            f"({type(err).__name__}: {err}){repair}"
        ) from err


def read_chunk(
    array: zarr.Array, index: tuple[int | slice, ...], *, missing_ok: bool = True
) -> np.ndarray:
    """``array[index]``, read from the one chunk file it lies in where it does.

    A missing chunk reads as the fill value, as in zarr, unless ``missing_ok`` is false
    (then :class:`FileNotFoundError`); :func:`read_image` is the strict read.
    """
    coords = chunk_of(index, array.chunks, array.shape)
    relative = None if coords is None else within_chunk(index, coords, array.chunks, array.shape)
    if coords is None or relative is None:
        return np.asarray(array[index])
    try:
        chunk = read_chunk_file(array, coords)
    except FileNotFoundError:
        if not missing_ok:
            raise
        chunk = None
    return np.asarray(array[index]) if chunk is None else chunk[relative]
