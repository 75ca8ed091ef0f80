"""Reading uncompressed local Zarr chunk files directly, with zarr's own reads as the oracle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.codecs import BytesCodec, ZstdCodec

from cellscale.io._raw_rows import RawRows, raw_rows
from cellscale.profiles._io import as_cell_array

ROWS, COLS, CHUNK = 1001, 37, 128  # the last chunk holds 105 rows


def _array(path: Path, zarr_format: int = 3, **options: Any) -> zarr.Array:
    values = np.random.default_rng(0).standard_normal((ROWS, COLS)).astype(np.float32)
    settings: dict[str, Any] = {
        "chunks": (CHUNK, COLS),
        "compressors": None,
        "fill_value": 0,
        "dtype": values.dtype,
    }
    settings.update(options)
    array = zarr.create_array(
        str(path),
        shape=values.shape,
        zarr_format=zarr_format,  # type: ignore[arg-type]
        **settings,
    )
    array[:] = values
    return array


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize(
    "key",
    [
        np.s_[:],
        np.s_[5:999],
        np.s_[127:129],
        np.s_[896:],
        np.s_[3:900:7],
        np.s_[100:300, 3:7],
        np.s_[10:20, [0, 5]],
        np.s_[1000:1001],
        np.s_[500:500],
    ],
)
def test_rows_equal_zarrs_own_read(tmp_path: Path, zarr_format: int, key: Any) -> None:
    array = _array(tmp_path / "x.zarr", zarr_format)
    raw = raw_rows(array)
    assert isinstance(raw, RawRows)
    np.testing.assert_array_equal(raw[key], array[key])


def test_missing_chunk_files_read_as_the_fill_value(tmp_path: Path) -> None:
    array = zarr.create_array(
        str(tmp_path / "x.zarr"), shape=(300, 4), chunks=(100, 4), dtype="int16", fill_value=7,
        compressors=None,
    )  # fmt: skip
    array[100:200] = np.arange(400, dtype=np.int16).reshape(100, 4)
    raw = raw_rows(array)
    assert raw is not None
    np.testing.assert_array_equal(raw[:], array[:])
    assert raw[0:1].tolist() == [[7, 7, 7, 7]]


def test_a_truncated_chunk_file_is_named(tmp_path: Path) -> None:
    array = _array(tmp_path / "x.zarr")
    raw = raw_rows(array)
    assert raw is not None
    chunk = tmp_path / "x.zarr" / raw.keys[1]
    chunk.write_bytes(chunk.read_bytes()[:1000])
    np.testing.assert_array_equal(raw[:CHUNK], array[:CHUNK])
    with pytest.raises(OSError, match=f"chunk file {chunk} is truncated"):
        raw[CHUNK : 2 * CHUNK]


def test_arrays_in_groups_are_found_by_their_path(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    array = group.create_array("emb/x", shape=(50, 3), chunks=(20, 3), dtype="float64",
                               compressors=None)  # fmt: skip
    array[:] = np.arange(150.0).reshape(50, 3)
    raw = raw_rows(group["emb/x"])
    assert raw is not None
    np.testing.assert_array_equal(raw[:], array[:])


@pytest.mark.parametrize(
    ("zarr_format", "options"),
    [
        (3, {"compressors": ZstdCodec(level=1)}),
        (3, {"serializer": BytesCodec(endian="big")}),
        (3, {"chunks": (CHUNK, 8)}),
        (3, {"shards": (2 * CHUNK, COLS)}),
        (2, {"compressors": None, "filters": None, "order": "F"}),
        (2, {"compressors": None, "dtype": ">f4"}),
    ],
    ids=["compressed", "big-endian", "column-chunks", "sharded", "fortran-order", "v2-big-endian"],
)
def test_chunks_zarr_must_decode_are_left_to_zarr(
    tmp_path: Path, zarr_format: int, options: dict[str, Any]
) -> None:
    array = _array(tmp_path / "x.zarr", zarr_format, **options)
    assert raw_rows(array) is None
    np.testing.assert_array_equal(as_cell_array(array).compute(), array[:])


def test_other_inputs_are_left_alone(tmp_path: Path) -> None:
    assert raw_rows(np.zeros((3, 3))) is None
    one_d = zarr.create_array(str(tmp_path / "v.zarr"), shape=(10,), dtype="f4", compressors=None)
    assert raw_rows(one_d) is None
    in_memory = zarr.create_array(zarr.storage.MemoryStore(), shape=(4, 4), dtype="f4",
                                  compressors=None)  # fmt: skip
    assert raw_rows(in_memory) is None


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_cell_arrays_over_raw_chunks_match_numpy(tmp_path: Path, zarr_format: int) -> None:
    array = _array(tmp_path / "x.zarr", zarr_format)
    cells = as_cell_array(array, chunk_bytes=3 * CHUNK * COLS * 4)
    assert cells.chunks[0] == (384, 384, 233)
    np.testing.assert_array_equal(cells.compute(), array[:])
    assert any(isinstance(v, RawRows) for v in cells.dask.values())  # zarr's pipeline bypassed
