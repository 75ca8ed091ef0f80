"""The progress page follows a run from the units its stages finish, not by polling ledgers."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import dask
import zarr

from cellscale._stages import Ledger
from cellscale._stages._run import run_units
from cellscale.pipeline._progress import PROGRESS_PAGE, ProgressPage
from cellscale.testing import write_synthetic_plate

_OPENED: list[str] = []
_WATCHING: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _WATCHING and isinstance(args[0], str | bytes):
        path = args[0].decode() if isinstance(args[0], bytes) else args[0]
        if path.startswith(_WATCHING[0]) and "cellscale_ledger/c/" in path:
            _OPENED.append(path)


sys.addaudithook(_audit)


def _plate(tmp_path: Path) -> Path:
    folder = tmp_path / "plates" / "P1"
    write_synthetic_plate(folder / "raw.zarr", wells=3, fields=2, n_z=1, shape=(32, 32))
    ledger = zarr.open_array(str(folder / "raw.zarr" / "cellscale_ledger"), mode="r+")
    Ledger(ledger).clear((0, 1, 0))  # the second well's first field not done
    return folder


def test_drawing_the_page_often_reads_each_ledger_once(tmp_path: Path) -> None:
    _plate(tmp_path)
    _OPENED.clear()
    _WATCHING.append(str(tmp_path))
    try:
        with ProgressPage(tmp_path, ["P1"], interval=0.01):
            time.sleep(0.5)  # about 50 drawings
    finally:
        _WATCHING.clear()
    page = (tmp_path / PROGRESS_PAGE).read_text()
    assert "<caption>ingest: 5 / 6 fields</caption>" in page
    # the 6 units' chunks: read once as the page starts, once for the last page
    assert 0 < len(_OPENED) <= 2 * 6, len(_OPENED)


def test_a_finished_store_is_checked_in_one_read_of_its_sealed_ledger(tmp_path: Path) -> None:
    folder = tmp_path / "plates" / "P1"
    write_synthetic_plate(folder / "raw.zarr", wells=3, fields=2, n_z=1, shape=(32, 32))
    _OPENED.clear()
    _WATCHING.append(str(tmp_path))
    try:
        with ProgressPage(tmp_path, ["P1"], interval=60):
            pass
    finally:
        _WATCHING.clear()
    assert "<caption>ingest: 6 / 6 fields</caption>" in (tmp_path / PROGRESS_PAGE).read_text()
    assert _OPENED == []  # no unit's chunk: the sealed record in the ledger's metadata


def test_a_watched_stage_is_counted_from_its_finished_units(tmp_path: Path) -> None:
    _plate(tmp_path)
    with ProgressPage(tmp_path, ["P1"], interval=60) as page:
        with page.watch("P1", "ingest"):
            noop = dask.delayed(lambda: None, pure=False)()
            run_units("write-plate", [noop], ["A02/f0/t0"], progress=False)
            page.write(final=False)
            during = (tmp_path / PROGRESS_PAGE).read_text()
        page.write(final=False)
        after = (tmp_path / PROGRESS_PAGE).read_text()
    assert "<caption>ingest: 6 / 6 fields</caption>" in during  # told of A02's field
    # the ledger is the truth once the stage ends: this unit never marked itself done
    assert "<caption>ingest: 5 / 6 fields</caption>" in after


def test_a_failed_unit_is_not_counted(tmp_path: Path) -> None:
    _plate(tmp_path)

    def fail() -> None:
        raise ValueError("no")

    with ProgressPage(tmp_path, ["P1"], interval=60) as page, page.watch("P1", "ingest"):
        with contextlib.suppress(ValueError):
            run_units("write-plate", [dask.delayed(fail)()], ["A02/f0/t0"], progress=False)
        page.write(final=False)
        assert "<caption>ingest: 5 / 6 fields</caption>" in (tmp_path / PROGRESS_PAGE).read_text()
