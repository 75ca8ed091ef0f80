"""Decode a whole chunk of a local Zarr array from its file (and encode one), in the caller.

zarr 3 runs every read through one event loop per process, so two dask threads that read
plate images at once mostly wait on each other: on 2 cores, reading the fields of a plate
with 2 threads through zarr ran at 1.9× one thread's rate, where reading each chunk file
and decoding it here ran at 3.1× (the codecs release the GIL). :func:`read_chunk_file`
does that for the layouts it can decode byte for byte (little-endian bytes, optionally
Blosc- or Zstd-compressed, no filters, transposes or sharding, C order, on a local
disk) and returns ``None`` for anything else, which zarr then reads.

A chunk file that is truncated, or that decodes to another size than the chunk's, is an
error (zarr's own Blosc path does not check the compressed length against the file's).

:func:`write_chunk_file` is the other direction, for the same layouts: a writer hands
it whole chunks, which it encodes with the array's own codec settings and writes to a
``.partial`` file that is then renamed into place. Through zarr, each write of a chunk
costs about 1.4 ms besides the encoding, and writers' threads queue on zarr's one event
loop; a plate writer with pyramid levels writes three chunks per image.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr
from numcodecs import blosc
from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec
from zarr.storage import LocalStore

from cellscale._compat import blosc_sizes, regular_chunk_grid

__all__ = [
    "ChunkDecodeError",
    "chunk_of",
    "holds_raw_bytes",
    "read_chunk_file",
    "within_chunk",
    "write_chunk_file",
]


class ChunkDecodeError(ValueError):
    """A chunk file's bytes are not a valid encoding of the chunk."""


def read_chunk_file(array: zarr.Array, coords: tuple[int, ...]) -> np.ndarray | None:
    """The chunk at chunk-grid ``coords``, decoded from its file, or ``None``.

    Parameters
    ----------
    array
        The array; only a regular-grid array on a :class:`~zarr.storage.LocalStore` with a
        codec this module decodes qualifies.
    coords
        The chunk's position on the chunk grid.

    Returns
    -------
    numpy.ndarray or None
        The chunk, full chunk shape (edge chunks keep their padding), or ``None`` when the
        array's layout is left to zarr.

    Raises
    ------
    FileNotFoundError
        If the chunk was never written.
    ChunkDecodeError
        If the file is truncated or does not decode to the chunk's size.
    """
    decode = _decoder(array)
    if decode is None or not isinstance(array.store, LocalStore):
        return None
    path = Path(array.store.root) / array.path / array.metadata.encode_chunk_key(coords)
    data = path.read_bytes()
    out = np.empty(array.chunks, dtype=np.dtype(array.dtype))
    decode(data, out)
    return out


def write_chunk_file(array: zarr.Array, coords: tuple[int, ...], chunk: np.ndarray) -> bool:
    """Encode ``chunk`` and write it as the chunk at ``coords``; ``False`` if left to zarr.

    The file is written beside its place as ``<key>.partial`` and renamed over it, so a
    reader never sees half a chunk and a killed writer leaves only a ``.partial`` file.

    Parameters
    ----------
    array
        The array; it qualifies as for :func:`read_chunk_file`.
    coords
        The chunk's position on the chunk grid.
    chunk
        The whole chunk: exactly the array's chunk shape and dtype.

    Returns
    -------
    bool
        Whether the chunk was written; ``False`` (another layout, a partial chunk, a
        read-only store) means the caller must write it through zarr.
    """
    encode = _encoder(array)
    if encode is None or chunk.shape != tuple(array.chunks) or chunk.dtype != array.dtype:
        return False
    if array.store.read_only:
        return False  # zarr says why
    assert isinstance(array.store, LocalStore)
    path = Path(array.store.root) / array.path / array.metadata.encode_chunk_key(coords)
    data = encode(np.ascontiguousarray(chunk))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
    return True


def chunk_of(
    index: tuple[int | slice, ...], chunks: tuple[int, ...], shape: tuple[int, ...]
) -> tuple[int, ...] | None:
    """The chunk-grid position of the chunk holding ``index``'s first element, or ``None``.

    ``None`` when ``index`` has more items than the array has axes.
    """
    if len(index) > len(shape):
        return None
    index = tuple(index) + (slice(None),) * (len(shape) - len(index))
    coords = []
    for item, size, extent in zip(index, chunks, shape, strict=True):
        first = item.indices(extent)[0] if isinstance(item, slice) else int(item) % max(extent, 1)
        coords.append(first // size)
    return tuple(coords)


def within_chunk(
    index: tuple[int | slice, ...],
    coords: tuple[int, ...],
    chunks: tuple[int, ...],
    shape: tuple[int, ...],
) -> tuple[int | slice, ...] | None:
    """``index`` (into the array) made relative to the chunk at ``coords``, or ``None``.

    ``None`` when ``index`` reaches outside that chunk or uses steps; integers and unit
    slices are supported.
    """
    if len(index) > len(shape):
        return None
    index = tuple(index) + (slice(None),) * (len(shape) - len(index))
    relative: list[int | slice] = []
    for item, coord, size, extent in zip(index, coords, chunks, shape, strict=True):
        origin = coord * size
        end = min(origin + size, extent)
        if isinstance(item, slice):
            start, stop, step = item.indices(extent)
            if step != 1 or start < origin or stop > end:
                return None
            relative.append(slice(start - origin, stop - origin))
        else:
            position = int(item) + (extent if int(item) < 0 else 0)
            if not origin <= position < end:
                return None
            relative.append(position - origin)
    return tuple(relative)


def holds_raw_bytes(array: zarr.Array) -> bool:
    """Whether each chunk file of ``array`` holds its elements as plain native-order C bytes."""
    return _decoder(array) is _raw


def _decoder(array: zarr.Array) -> Any:
    """A function ``(file bytes, out)`` that decodes a chunk of ``array``, or ``None``."""
    if not isinstance(array.store, LocalStore):
        return None
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biuf" or not dtype.isnative or sys.byteorder != "little":
        return None
    meta = array.metadata
    if meta.zarr_format == 2:
        stored = meta.dtype.to_native_dtype()
        if meta.filters or meta.order != "C" or stored.byteorder not in "=|<" or stored != dtype:
            return None
        return _compressor_decoder(meta.compressor)
    if not regular_chunk_grid(meta):
        return None
    codecs = meta.codecs
    first = codecs[0] if codecs else None
    if not isinstance(first, BytesCodec) or (first.endian and first.endian.value != "little"):
        return None
    if len(codecs) == 1:
        return _raw
    if len(codecs) == 2 and isinstance(codecs[1], BloscCodec):
        return _blosc
    if len(codecs) == 2 and isinstance(codecs[1], ZstdCodec):
        return _zstd
    return None


def _encoder(array: zarr.Array) -> Any:
    """A function ``(chunk) -> file bytes`` that encodes a chunk of ``array``, or ``None``."""
    decoder = _decoder(array)
    if decoder is None:
        return None
    if decoder is _raw:
        return _raw_bytes
    meta = array.metadata
    if meta.zarr_format == 2:
        assert meta.compressor is not None
        return meta.compressor.encode  # numcodecs Blosc or Zstd, with the array's settings
    codec = meta.codecs[1]
    if isinstance(codec, ZstdCodec):
        return numcodecs.Zstd(level=codec.level, checksum=codec.checksum).encode
    assert isinstance(codec, BloscCodec)
    if codec.typesize not in (None, np.dtype(array.dtype).itemsize):
        return None
    shuffle = {"noshuffle": blosc.NOSHUFFLE, "shuffle": blosc.SHUFFLE}.get(
        codec.shuffle.value if codec.shuffle is not None else "noshuffle", blosc.BITSHUFFLE
    )
    cname = codec.cname.value.encode() if codec.cname is not None else b"lz4"

    def encode(chunk: np.ndarray) -> bytes:
        return bytes(blosc.compress(chunk, cname, int(codec.clevel), shuffle, codec.blocksize))

    return encode


def _raw_bytes(chunk: np.ndarray) -> bytes:
    return chunk.tobytes()


def _compressor_decoder(compressor: Any) -> Any:
    if compressor is None:
        return _raw
    if isinstance(compressor, numcodecs.Blosc):
        return _blosc
    if isinstance(compressor, numcodecs.Zstd):
        return _zstd
    return None


def _raw(data: bytes, out: np.ndarray) -> None:
    if len(data) != out.nbytes:
        raise ChunkDecodeError(f"the file holds {len(data)} bytes, the chunk {out.nbytes}")
    out.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, dtype=np.uint8)


def _blosc(data: bytes, out: np.ndarray) -> None:
    if len(data) < 16:
        raise ChunkDecodeError(f"the file holds {len(data)} bytes, fewer than a Blosc header")
    nbytes, cbytes = blosc_sizes(data)
    if cbytes != len(data):
        raise ChunkDecodeError(f"the Blosc header says {cbytes} bytes, the file holds {len(data)}")
    if nbytes != out.nbytes:
        raise ChunkDecodeError(f"the file decodes to {nbytes} bytes, the chunk holds {out.nbytes}")
    blosc.decompress(data, out)


def _zstd(data: bytes, out: np.ndarray) -> None:
    decoded = numcodecs.Zstd().decode(data)
    if len(decoded) != out.nbytes:
        raise ChunkDecodeError(
            f"the file decodes to {len(decoded)} bytes, the chunk holds {out.nbytes}"
        )
    out.reshape(-1).view(np.uint8)[:] = np.frombuffer(decoded, dtype=np.uint8)
