"""The plate index: a complete plate opens without visiting its fields, and the index never lies."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr
import zarr

import cellscale
from cellscale._stages import Ledger
from cellscale.io import _hcs_read
from cellscale.io._plate_index import INDEX_NAME, drop_index
from cellscale.io._store_setup import LEDGER_NAME
from cellscale.plate import PlateError
from cellscale.testing import synthetic_plate, write_synthetic_plate


def _no_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the plate was opened by visiting every field")

    monkeypatch.setattr(_hcs_read, "_field_images", refuse)


_PARAMS = {"wells": 3, "fields": 2, "n_t": 2, "n_z": 2, "shape": (40, 36), "seed": 2}


@pytest.fixture(params=["0.5", "0.4"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    out = tmp_path / "p.zarr"
    write_synthetic_plate(out, version=request.param, **_PARAMS)
    return out


def test_a_complete_plate_opens_from_its_index_as_from_the_walk(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (store / INDEX_NAME).is_dir()
    drop_index(store)
    walked = cellscale.open_plate(store)
    cellscale.verify_plate(store)  # an intact plate gets its index again
    with monkeypatch.context() as patch:
        _no_walk(patch)
        indexed = cellscale.open_plate(store)
    xr.testing.assert_identical(indexed, walked)
    assert indexed.data.name == walked.data.name
    np.testing.assert_array_equal(indexed.values, walked.values)


def test_an_incomplete_write_leaves_no_index(tmp_path: Path) -> None:
    plate = synthetic_plate(wells=2, fields=2, shape=(32, 32), seed=1)

    def fail_b(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        if block_info is not None and block_info[0]["chunk-location"][1] == 1:
            raise OSError("the source disk went away")
        return block

    broken = plate.copy(data=plate.data.map_blocks(fail_b, dtype=plate.dtype))
    out = tmp_path / "p.zarr"
    with pytest.raises(cellscale.UnitFailure):
        cellscale.write_plate(broken, out, progress=False)
    assert not (out / INDEX_NAME).exists()
    with pytest.raises(PlateError, match="is incomplete"):
        cellscale.open_plate(out)


def test_a_failed_rewrite_is_never_hidden_by_the_index(store: Path) -> None:
    plate = synthetic_plate(**_PARAMS)

    def fail(block: np.ndarray) -> np.ndarray:
        raise OSError("interrupted")

    broken = plate.copy(data=plate.data.map_blocks(fail, dtype=plate.dtype))
    with pytest.raises(cellscale.UnitFailure):
        cellscale.write_plate(broken, store, rewrite=True, progress=False)
    assert not (store / INDEX_NAME).exists()
    with pytest.raises(PlateError, match="is incomplete"):
        cellscale.open_plate(store)


def test_verify_that_repairs_drops_the_index(store: Path) -> None:
    chunk_dir = store / "A" / "02" / "1" / "0"
    chunk = next(
        p for p in chunk_dir.rglob("*") if p.is_file() and not p.name.startswith((".", "zarr"))
    )
    chunk.unlink()
    report = cellscale.verify_plate(store, progress=False)
    assert not report.ok
    assert not (store / INDEX_NAME).exists()
    with pytest.raises(PlateError, match="A02/f1"):
        cellscale.open_plate(store)


def test_a_partly_written_index_is_ignored(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = zarr.open_group(str(store), mode="r+")
    index = root[INDEX_NAME]
    assert isinstance(index, zarr.Group)
    index.attrs.put({})  # as if the writer stopped before the index's attributes
    ledger = zarr.open_array(str(store / LEDGER_NAME), mode="r+")
    Ledger(ledger).clear((0, 1, 0))  # the walk must then see the truth
    with pytest.raises(PlateError, match=r"A02/f1/t0"):
        cellscale.open_plate(store)


def test_a_lazy_write_indexes_the_plate_when_computed(tmp_path: Path) -> None:
    plate = synthetic_plate(wells=2, fields=1, shape=(32, 32), seed=4)
    lazy = cellscale.write_plate(plate, tmp_path / "p.zarr", compute=False)
    assert not (tmp_path / "p.zarr" / INDEX_NAME).exists()
    dask.compute(lazy)
    assert (tmp_path / "p.zarr" / INDEX_NAME).is_dir()


def test_a_write_with_nothing_to_do_leaves_the_index_alone(tmp_path: Path) -> None:
    plate = synthetic_plate(wells=2, fields=1, shape=(32, 32), seed=4)
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", progress=False)
    files = sorted(p for p in (out / INDEX_NAME).rglob("*") if p.is_file())
    before = [p.stat().st_mtime_ns for p in files]
    cellscale.write_plate(plate, out, progress=False)
    assert [p.stat().st_mtime_ns for p in files] == before
