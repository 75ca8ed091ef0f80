"""Plate stores never lie: stale reruns, shared clients, damaged chunks, kills, full disks."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr
import zarr

import cellscale
from cellscale._stages import Ledger, OutputLockedError, StaleOutputError, output_lock
from cellscale.cli import main
from cellscale.io._chunks import DamagedChunkError
from cellscale.io._store_setup import LEDGER_NAME
from cellscale.plate import PlateError
from cellscale.testing import default_plate_map, synthetic_plate, write_synthetic_plate

SMALL = {"wells": 3, "fields": 2, "n_z": 3, "shape": (48, 40), "seed": 4}


def _files(store: Path) -> dict[str, bytes]:
    """Every file of a store and its bytes (the lock beside it is not part of it)."""
    return {
        str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()
    }


def _chunk(store: Path, well_path: str = "A/01/1", t: int = 0, c: int = 0) -> Path:
    return store / well_path / "0" / "c" / str(t) / str(c) / "0" / "0" / "0"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_synthetic_plate(tmp_path / "source.zarr", **SMALL).attrs["source"]


def test_projecting_with_another_method_into_an_existing_store_is_refused(
    source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mip.zarr"
    assert main(["project", source, str(out), "--method", "max"]) == 0
    before = _files(out)
    assert main(["project", source, str(out), "--method", "middle"]) == 1
    error = capsys.readouterr().err
    assert "input lineage[1].method: 'max' in the output, 'middle' requested" in error
    assert "--overwrite" in error or "overwrite=True" in error
    assert _files(out) == before  # nothing was touched
    assert main(["project", source, str(out), "--method", "middle", "--overwrite"]) == 0
    expected = cellscale.project(cellscale.open_plate(source), "middle").values
    np.testing.assert_array_equal(cellscale.open_plate(out).values[:, :, :, 0], expected)


def test_another_source_or_plate_name_is_refused_naming_the_difference(
    source: str, tmp_path: Path
) -> None:
    out = tmp_path / "mip.zarr"
    cellscale.write_plate(
        cellscale.project(cellscale.open_plate(source), "max"), out, progress=False
    )
    other = write_synthetic_plate(tmp_path / "other.zarr", **{**SMALL, "seed": 5})
    with pytest.raises(StaleOutputError, match=r"input lineage\[0\]\.fingerprint"):
        cellscale.write_plate(cellscale.project(other, "max"), out, progress=False)
    renamed = cellscale.project(cellscale.open_plate(source), "max").rename("another")
    with pytest.raises(StaleOutputError, match=r"name: 'synthetic' in the output, 'another'"):
        cellscale.write_plate(renamed, out, progress=False)


def test_the_same_write_resumes_to_a_bitwise_identical_store(source: str, tmp_path: Path) -> None:
    plate = cellscale.project(cellscale.open_plate(source), "best_focus")
    reference = cellscale.write_plate(plate, tmp_path / "reference.zarr", progress=False)
    out = cellscale.write_plate(plate, tmp_path / "out.zarr", progress=False)
    ledger = zarr.open_array(str(out / LEDGER_NAME), mode="r+")
    Ledger(ledger).clear((0, 1, 0))  # as if the write had stopped before this unit
    _chunk(out, "A/02/1").unlink()
    cellscale.write_plate(
        cellscale.project(cellscale.open_plate(source), "best_focus"), out, progress=False
    )
    assert _files(out) == _files(reference)


def test_a_changed_plate_map_is_refused_and_can_be_updated_without_rewriting_pixels(
    tmp_path: Path,
) -> None:
    plate = synthetic_plate(**SMALL)
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", progress=False)
    corrected = default_plate_map(list(plate.coords["well"].values))
    corrected.loc["A03", "treatment"] = "drug"
    relabelled = synthetic_plate(**SMALL, plate_map=corrected)
    with pytest.raises(
        StaleOutputError,
        match=r"plate map: column 'treatment' at wells A03 \('compound' stored, 'drug' now\)",
    ):
        cellscale.write_plate(relabelled, out, progress=False)
    pixels = {k: v for k, v in _files(out).items() if "/c/" in k}
    cellscale.update_plate_map(out, corrected.reset_index())
    reopened = cellscale.open_plate(out)
    assert list(reopened.coords["treatment"].values) == ["DMSO", "compound", "drug"]
    assert {k: v for k, v in _files(out).items() if "/c/" in k} == pixels
    cellscale.write_plate(relabelled, out, progress=False)  # now it resumes (nothing to do)


def test_concurrent_writes_of_same_named_plates_through_one_client_are_both_complete(
    source: str, tmp_path: Path
) -> None:
    from distributed import Client

    plate = cellscale.open_plate(source)
    maximum, best = cellscale.project(plate, "max"), cellscale.project(plate, "best_focus")
    assert maximum.name == best.name
    with Client(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0"
    ) as client:
        writes = [
            cellscale.write_plate(maximum, tmp_path / "max.zarr", compute=False),
            cellscale.write_plate(best, tmp_path / "best.zarr", compute=False),
        ]
        client.compute(writes, sync=True)
    np.testing.assert_array_equal(
        cellscale.open_plate(tmp_path / "max.zarr").values[:, :, :, 0], maximum.values
    )
    np.testing.assert_array_equal(
        cellscale.open_plate(tmp_path / "best.zarr").values[:, :, :, 0], best.values
    )


def test_reader_graph_names_are_tokens_of_the_store(source: str, tmp_path: Path) -> None:
    assert cellscale.open_plate(source).data.name == cellscale.open_plate(source).data.name
    other = write_synthetic_plate(tmp_path / "other.zarr", **{**SMALL, "seed": 6})
    assert other.data.name != cellscale.open_plate(source).data.name


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_damaged_chunk_is_an_error_and_verify_then_rewrite_repairs_it(
    tmp_path: Path, damage: str
) -> None:
    plate = synthetic_plate(**SMALL)
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", progress=False)
    intact = _files(out)
    chunk = _chunk(out, "A/02/2", c=1)
    if damage == "deleted":
        chunk.unlink()
    else:
        chunk.write_bytes(chunk.read_bytes()[:40])
    reopened = cellscale.open_plate(out)
    what = "is missing" if damage == "deleted" else "cannot be decoded"
    with pytest.raises(
        DamagedChunkError, match=rf"well A02 field 2 t=0 channel 'cytoplasm': chunk .*{what}"
    ):
        reopened.sel(well="A02", field=2).compute()
    np.testing.assert_array_equal(reopened.sel(well="A01").values, plate.sel(well="A01").values)
    # rerunning the write alone does not look at complete units ...
    cellscale.write_plate(plate, out, progress=False)
    with pytest.raises(DamagedChunkError):
        cellscale.open_plate(out).compute()
    # ... verify finds the damage and unmarks the unit, and the rerun repairs it
    report = cellscale.verify_plate(out, progress=False)
    assert not report.ok and list(report.damaged) == ["A02/f2/t0"]
    assert "channel 'cytoplasm'" in report.damaged["A02/f2/t0"]
    with pytest.raises(PlateError, match="incomplete: units A02/f2/t0"):
        cellscale.open_plate(out)
    cellscale.write_plate(plate, out, progress=False)
    assert _files(out) == intact
    assert cellscale.verify_plate(out, progress=False).ok


def test_write_with_verify_repairs_in_one_call(tmp_path: Path) -> None:
    plate = synthetic_plate(**SMALL)
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", progress=False)
    intact = _files(out)
    _chunk(out, "A/01/1").unlink()
    cellscale.write_plate(plate, out, verify=True, progress=False)
    assert _files(out) == intact


def test_leftover_partial_files_are_removed_on_resume(tmp_path: Path) -> None:
    plate = synthetic_plate(**SMALL)
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", progress=False)
    leftover = _chunk(out).with_name("0.0a1b.partial")
    leftover.write_bytes(b"half a chunk")
    cellscale.write_plate(plate, out, progress=False)
    assert not list(out.rglob("*.partial"))


def test_a_stop_during_store_setup_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plate = synthetic_plate(**SMALL)
    out = tmp_path / "p.zarr"
    from cellscale.io import _store_setup

    def stop(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_store_setup.Ledger, "create", stop)
    with pytest.raises(KeyboardInterrupt):
        cellscale.write_plate(plate, out, progress=False)
    assert (out / "zarr.json").exists() and not (out / LEDGER_NAME).exists()
    with pytest.raises(PlateError, match="never completely set up"):
        cellscale.open_plate(out)
    monkeypatch.undo()
    cellscale.write_plate(plate, out, progress=False)
    np.testing.assert_array_equal(cellscale.open_plate(out).values, plate.values)


def test_two_writers_on_one_store_get_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "p.zarr"
    with output_lock(out), pytest.raises(OutputLockedError, match="being written by another"):
        cellscale.write_plate(synthetic_plate(**SMALL), out, progress=False)


_KILL_SCRIPT = """
import sys
from cellscale.testing import write_synthetic_plate
write_synthetic_plate(sys.argv[1], wells=6, fields=3, n_t=2, n_z=4, shape=(192, 192), seed=9)
"""


@pytest.mark.slow
def test_sigkill_at_random_moments_resumes_to_an_identical_store(tmp_path: Path) -> None:
    reference = tmp_path / "reference.zarr"
    subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(reference)], check=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(tmp_path / "timing.zarr")], check=True)
    duration = time.perf_counter() - start
    rng = random.Random(11)
    for attempt in range(4):
        out = tmp_path / f"killed{attempt}.zarr"
        writer = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(out)])
        time.sleep(rng.uniform(0.3, 0.9) * duration)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        write_synthetic_plate(out, wells=6, fields=3, n_t=2, n_z=4, shape=(192, 192), seed=9)
        assert not list(out.rglob("*.partial"))
        assert _files(out) == _files(reference), f"attempt {attempt}"


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 256 KiB tmpfs; skips where mounting is not allowed."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_names_the_unit_and_the_file_and_is_an_oserror(small_disk: Path) -> None:
    plate = synthetic_plate(wells=4, fields=2, n_z=2, shape=(128, 128), seed=2, channels=2)
    out = small_disk / "p.zarr"
    with pytest.raises(OSError) as info:
        cellscale.write_plate(plate, out, codec="none", progress=False)
    error = info.value
    assert error.errno == errno.ENOSPC
    assert isinstance(error, cellscale.UnitFailure)
    unit, cause = next(iter(error.failures.items()))
    assert unit.count("/") == 2 and unit[0] in "ABCDEFGH"  # e.g. "B04/f2/t0"
    assert str(out) in str(cause) and "/c/0/" in str(cause)
    done = np.asarray(zarr.open_array(str(out / LEDGER_NAME), mode="r")[...]) != 0
    assert done.sum() == 4 * 2 - len(error.failures)  # failed units are never marked
    os.sync()


def test_as_plate_turns_a_plain_data_array_into_a_plate_that_round_trips(tmp_path: Path) -> None:
    values = np.arange(2 * 3 * 1 * 2 * 6 * 5, dtype=np.uint16).reshape(2, 3, 1, 2, 6, 5)
    raw = xr.DataArray(
        values,
        dims=("t", "well", "field", "c", "y", "x"),
        coords={"well": ["a1", "A2", "b12"], "c": ["DNA", "GFP"]},
        name="hand-made",
    )
    plate = cellscale.as_plate(raw)
    assert list(plate.coords["well"].values) == ["A01", "A02", "B12"]
    assert list(plate.coords["col"].values) == [1, 2, 12]
    assert plate.coords["field_present"].values.all()
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", progress=False)
    back = cellscale.open_plate(out)
    np.testing.assert_array_equal(back.values[:, :, :, 0], values)
    assert back.name == "hand-made" and list(back.coords["c"].values) == ["DNA", "GFP"]
    again = cellscale.write_plate(raw, tmp_path / "q.zarr", progress=False)  # write_plate takes it
    np.testing.assert_array_equal(cellscale.open_plate(again).values[:, :, :, 0], values)
    with pytest.raises(PlateError, match="needs well names"):
        cellscale.as_plate(raw.drop_vars("well"))
    with pytest.raises(PlateError, match="a plate has dims"):
        cellscale.as_plate(raw.isel(t=0))


def test_writes_can_share_one_graph_with_compute_false(tmp_path: Path) -> None:
    plate = synthetic_plate(**SMALL)
    lazy = cellscale.write_plate(plate, tmp_path / "p.zarr", compute=False)
    assert (
        not cellscale.open_plate(tmp_path / "p.zarr", allow_incomplete=True)
        .coords["unit_token"]
        .values.any()
    )
    (result,) = dask.compute(lazy)
    assert result is None
    np.testing.assert_array_equal(cellscale.open_plate(tmp_path / "p.zarr").values, plate.values)
