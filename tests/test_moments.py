"""Streaming moments, from arrays and straight from raw chunk files, against NumPy in float64."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
import zarr

from cellscale.io._raw_rows import RawRows, raw_rows
from cellscale.profiles import _moments
from cellscale.profiles._io import as_row_mask, cell_input
from cellscale.profiles._moments import Moments, chunk_moments, moments_graph, raw_chunk_moments

ROWS, COLS = 1003, 9


@pytest.fixture(autouse=True)
def small_gemm_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices of 64 rows, so every chunk spans several slices and a ragged last one."""
    monkeypatch.setattr(_moments, "GEMM_ROWS", 64)


def _values(dtype: type = np.float32, offset: float = 1e3) -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.standard_normal((ROWS, COLS)) * np.linspace(3, 0.1, COLS) + offset).astype(dtype)


def _raw(tmp_path: Path, values: np.ndarray, chunk_rows: int = 100) -> RawRows:
    array = zarr.create_array(
        str(tmp_path / "x.zarr"),
        shape=values.shape,
        chunks=(chunk_rows, values.shape[1]),
        dtype=values.dtype,
        compressors=None,
    )
    array[:] = values
    raw = raw_rows(array)
    assert raw is not None
    return raw


def _assert_moments(moments: Moments, rows: np.ndarray, rtol: float) -> None:
    x = rows.astype(np.float64)
    centred = x - x.mean(axis=0)
    assert moments.n == len(x)
    np.testing.assert_allclose(moments.mean, x.mean(axis=0), rtol=1e-12)
    expected = (centred**2).sum(axis=0) if moments.m2.ndim == 1 else centred.T @ centred
    np.testing.assert_allclose(moments.m2, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


@pytest.mark.parametrize(("start", "stop"), [(0, 300), (100, 1003), (900, 1003), (250, 251)])
def test_raw_rows_equal_the_in_memory_pass(tmp_path: Path, start: int, stop: int) -> None:
    values = _values()
    raw = _raw(tmp_path, values)
    moments = raw_chunk_moments(raw, start, stop)
    _assert_moments(moments, values[start:stop], rtol=1e-5)
    in_memory = chunk_moments(values[start:stop], start=start)
    np.testing.assert_allclose(moments.m2, in_memory.m2, rtol=1e-6, atol=1e-6 * moments.m2.max())


@pytest.mark.parametrize("pattern", ["random", "none", "one", "every-third", "last-slice"])
def test_masked_raw_rows_count_only_selected_rows(tmp_path: Path, pattern: str) -> None:
    values = _values()
    raw = _raw(tmp_path, values)
    start, stop = 100, 400
    mask = {
        "random": np.random.default_rng(0).random(stop - start) < 0.3,
        "none": np.zeros(stop - start, bool),
        "one": np.arange(stop - start) == 77,
        "every-third": np.arange(stop - start) % 3 == 0,
        "last-slice": np.arange(stop - start) >= 290,
    }[pattern]
    moments = raw_chunk_moments(raw, start, stop, mask)
    if not mask.any():
        assert moments.n == 0
        return
    _assert_moments(moments, values[start:stop][mask], rtol=1e-5)


def test_other_product_dtypes_and_the_diagonal_read_whole_rows(tmp_path: Path) -> None:
    values = _values()
    raw = _raw(tmp_path, values)
    exact = raw_chunk_moments(raw, 0, ROWS, compute_dtype=np.float64)
    _assert_moments(exact, values, rtol=1e-12)
    diagonal = raw_chunk_moments(raw, 0, ROWS, diagonal=True)
    _assert_moments(diagonal, values, rtol=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_raw_rows_are_named(tmp_path: Path, bad: float) -> None:
    values = _values()
    values[321, 4] = bad
    raw = _raw(tmp_path, values)
    with pytest.raises(ValueError, match=r"rows 300:600 \(first at row 321\)"):
        raw_chunk_moments(raw, 300, 600)
    mask = np.ones(300, bool)
    mask[21] = False  # the bad row is not selected: no error
    _assert_moments(raw_chunk_moments(raw, 300, 600, mask), values[300:600][mask], rtol=1e-5)


@pytest.mark.parametrize("chunk_rows", [100, 1003, 7])
def test_graph_over_raw_rows_equals_numpy(tmp_path: Path, chunk_rows: int) -> None:
    values = _values(np.float64, offset=-5e4)
    _raw(tmp_path, values, chunk_rows)
    cells = cell_input(tmp_path / "x.zarr", chunk_bytes=300 * COLS * 8)
    assert isinstance(cells.raw, RawRows)
    mask = np.random.default_rng(1).random(ROWS) < 0.5
    graph = moments_graph(cells.array, as_row_mask(mask, cells.array), raw=cells.raw)
    (moments,) = dask.compute(graph)
    _assert_moments(moments, values[mask], rtol=1e-9)


def test_graph_refuses_raw_rows_of_another_shape(tmp_path: Path) -> None:
    raw = _raw(tmp_path, _values())
    with pytest.raises(ValueError, match="do not match"):
        moments_graph(cell_input(np.zeros((5, COLS))).array, raw=raw)


def test_slices_without_selected_rows_are_not_read(tmp_path: Path) -> None:
    values = _values()
    raw = _raw(tmp_path, values)
    (tmp_path / "x.zarr" / raw.keys[1]).write_bytes(b"")  # rows 100:200 unreadable
    mask = np.arange(400) >= 256  # GEMM slices 0:64 … 192:256 hold no selected row
    _assert_moments(raw_chunk_moments(raw, 0, 400, mask), values[:400][mask], rtol=1e-5)
    with pytest.raises(OSError, match="truncated"):
        raw_chunk_moments(raw, 0, 400)
