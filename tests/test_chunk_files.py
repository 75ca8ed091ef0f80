"""Chunks decoded from their files equal zarr's own reads; damaged files are errors."""

from __future__ import annotations

from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
import zarr.codecs

from cellscale.io._chunk_files import (
    ChunkDecodeError,
    chunk_of,
    read_chunk_file,
    within_chunk,
    write_chunk_file,
)
from cellscale.io._chunks import DamagedChunkError, read_chunk, read_image

SHAPE = (3, 2, 37, 29)
CHUNKS = (1, 2, 16, 29)  # uneven along y: the last chunk is padded

V3_COMPRESSORS = {
    "none": None,
    "blosc-lz4": zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),
    "blosc-zstd": zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
    "zstd": zarr.codecs.ZstdCodec(level=3),
}
V2_COMPRESSORS = {
    "none": None,
    "blosc": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE),
    "zstd": numcodecs.Zstd(3),
}


def _values(dtype: str = "uint16") -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, SHAPE).astype(dtype)


def _array(path: Path, zarr_format: int, compressor: object, dtype: str = "uint16") -> zarr.Array:
    array = zarr.create_array(
        str(path),
        shape=SHAPE,
        chunks=CHUNKS,
        dtype=dtype,
        zarr_format=zarr_format,
        compressors=compressor,
    )
    array[...] = _values(dtype)
    return zarr.open_array(str(path), mode="r")


def _chunk_path(array: zarr.Array, coords: tuple[int, ...]) -> Path:
    return Path(array.store.root) / array.path / array.metadata.encode_chunk_key(coords)


@pytest.mark.parametrize(
    ("zarr_format", "name"),
    [(3, name) for name in V3_COMPRESSORS] + [(2, name) for name in V2_COMPRESSORS],
)
@pytest.mark.parametrize("dtype", ["uint16", "float32", "uint8"])
def test_decoded_chunks_equal_zarr_reads(
    tmp_path: Path, zarr_format: int, name: str, dtype: str
) -> None:
    compressors = V3_COMPRESSORS if zarr_format == 3 else V2_COMPRESSORS
    array = _array(tmp_path / "a.zarr", zarr_format, compressors[name], dtype)
    for coords in [(0, 0, 0, 0), (2, 0, 1, 0), (1, 0, 2, 0)]:
        chunk = read_chunk_file(array, coords)
        assert chunk is not None, "this layout should be decoded from its file"
        origin = [c * s for c, s in zip(coords, CHUNKS, strict=True)]
        region = tuple(
            slice(o, min(o + s, n)) for o, s, n in zip(origin, CHUNKS, SHAPE, strict=True)
        )
        expected = array[region]
        got = chunk[tuple(slice(0, r.stop - r.start) for r in region)]
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "index",
    [
        (1, slice(None), slice(16, 32)),
        (2, 1, slice(32, 37), slice(3, 9)),
        (slice(0, 1), slice(0, 2), slice(0, 16)),
        (-1, 0, slice(32, None)),
    ],
)
def test_read_chunk_equals_zarr_for_indices_within_a_chunk(
    tmp_path: Path, index: tuple[int | slice, ...]
) -> None:
    array = _array(tmp_path / "a.zarr", 3, V3_COMPRESSORS["blosc-lz4"])
    np.testing.assert_array_equal(read_chunk(array, index), array[index])


def test_indices_across_chunks_are_left_to_zarr(tmp_path: Path) -> None:
    array = _array(tmp_path / "a.zarr", 3, V3_COMPRESSORS["blosc-lz4"])
    index = (slice(0, 2), 0, slice(10, 20))
    coords = chunk_of(index, CHUNKS, SHAPE)
    assert coords is not None
    assert within_chunk(index, coords, CHUNKS, SHAPE) is None
    np.testing.assert_array_equal(read_chunk(array, index), array[index])
    assert within_chunk((0, 0, slice(0, 16, 2)), (0, 0, 0, 0), CHUNKS, SHAPE) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shards": (1, 2, 32, 29)},
        {"filters": [zarr.codecs.TransposeCodec(order=(0, 1, 3, 2))]},
        {"compressors": zarr.codecs.GzipCodec()},
    ],
    ids=["sharded", "transposed", "gzip"],
)
def test_layouts_it_cannot_decode_are_left_to_zarr(tmp_path: Path, kwargs: dict) -> None:
    zarr.create_array(str(tmp_path / "a.zarr"), shape=SHAPE, chunks=CHUNKS, dtype="u2", **kwargs)[
        ...
    ] = _values()
    array = zarr.open_array(str(tmp_path / "a.zarr"), mode="r")
    assert read_chunk_file(array, (0, 0, 0, 0)) is None
    index = (1, 0, slice(0, 16))
    np.testing.assert_array_equal(read_chunk(array, index), _values()[index])


def test_big_endian_is_left_to_zarr(tmp_path: Path) -> None:
    array = zarr.create_array(
        str(tmp_path / "a.zarr"),
        shape=SHAPE,
        chunks=CHUNKS,
        dtype="u2",
        serializer=zarr.codecs.BytesCodec(endian="big"),
    )
    array[...] = _values()
    assert read_chunk_file(zarr.open_array(str(tmp_path / "a.zarr")), (0, 0, 0, 0)) is None


@pytest.mark.parametrize("name", ["none", "blosc-lz4", "zstd"])
def test_truncated_chunk_file_is_an_error(tmp_path: Path, name: str) -> None:
    array = _array(tmp_path / "a.zarr", 3, V3_COMPRESSORS[name])
    path = _chunk_path(array, (1, 0, 0, 0))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises((ChunkDecodeError, RuntimeError, ValueError)):
        read_chunk_file(array, (1, 0, 0, 0))
    with pytest.raises(DamagedChunkError, match=str(path)):
        read_image(array, (1, slice(None), slice(0, 16)), (1, 0, 0, 0), "field A01/1")


def test_a_chunk_of_another_size_is_an_error(tmp_path: Path) -> None:
    array = _array(tmp_path / "a.zarr", 3, V3_COMPRESSORS["blosc-lz4"])
    other = numcodecs.Blosc(cname="lz4").encode(np.zeros(10, "u2").tobytes())
    _chunk_path(array, (0, 0, 0, 0)).write_bytes(other)
    with pytest.raises(ChunkDecodeError, match="decodes to 20 bytes"):
        read_chunk_file(array, (0, 0, 0, 0))


def test_missing_chunks_read_as_fill_unless_strict(tmp_path: Path) -> None:
    array = _array(tmp_path / "a.zarr", 3, V3_COMPRESSORS["blosc-lz4"])
    _chunk_path(array, (0, 0, 1, 0)).unlink()
    with pytest.raises(FileNotFoundError):
        read_chunk_file(array, (0, 0, 1, 0))
    index = (0, 0, slice(16, 32))
    assert not read_chunk(array, index).any()
    with pytest.raises(FileNotFoundError):
        read_chunk(array, index, missing_ok=False)
    with pytest.raises(DamagedChunkError, match="is missing"):
        read_image(array, index, (0, 0, 1, 0), "field A01/1")


@pytest.mark.parametrize(
    ("zarr_format", "name"),
    [(3, name) for name in V3_COMPRESSORS] + [(2, name) for name in V2_COMPRESSORS],
)
@pytest.mark.parametrize("dtype", ["uint16", "float32", "uint32"])
def test_written_chunks_read_back_through_zarr(
    tmp_path: Path, zarr_format: int, name: str, dtype: str
) -> None:
    compressors = V3_COMPRESSORS if zarr_format == 3 else V2_COMPRESSORS
    zarr.create_array(
        str(tmp_path / "a.zarr"),
        shape=SHAPE,
        chunks=CHUNKS,
        dtype=dtype,
        zarr_format=zarr_format,
        compressors=compressors[name],
    )
    array = zarr.open_array(str(tmp_path / "a.zarr"), mode="r+")
    chunk = (np.arange(np.prod(CHUNKS)) % 3001).reshape(CHUNKS).astype(dtype)
    assert write_chunk_file(array, (2, 0, 1, 0), chunk)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "a.zarr"))[2:3, :, 16:32], chunk)
    assert not list((tmp_path / "a.zarr").rglob("*.partial"))


def test_chunks_it_cannot_encode_are_left_to_zarr(tmp_path: Path) -> None:
    array = zarr.create_array(
        str(tmp_path / "a.zarr"),
        shape=SHAPE,
        chunks=CHUNKS,
        dtype="u2",
        compressors=zarr.codecs.GzipCodec(),
    )
    whole = np.zeros(CHUNKS, dtype="u2")
    assert not write_chunk_file(array, (0, 0, 0, 0), whole)
    plain = _array(tmp_path / "b.zarr", 3, None)
    assert not write_chunk_file(plain, (0, 0, 0, 0), whole[:, :, :5])  # not a whole chunk
    assert not write_chunk_file(plain, (0, 0, 0, 0), whole.astype("u4"))  # another dtype
    assert not list(tmp_path.rglob("c/0/0/0/0.partial"))


def test_a_read_only_array_is_left_to_zarr(tmp_path: Path) -> None:
    array = _array(tmp_path / "a.zarr", 3, None)  # opened read-only
    before = _chunk_path(array, (0, 0, 0, 0)).read_bytes()
    assert not write_chunk_file(array, (0, 0, 0, 0), np.zeros(CHUNKS, dtype="u2"))
    assert _chunk_path(array, (0, 0, 0, 0)).read_bytes() == before
