"""Verify a plate store: every unit marked complete has all its chunks, and they decode.

A unit whose chunk is missing or damaged is unmarked in the ledger (with ``repair``),
so the next write of the plate writes it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import zarr

from cellscale._stages import Ledger, VerifyReport, compute_units, output_lock, task_key
from cellscale.io._chunks import DamagedChunkError, read_image
from cellscale.io._plate_index import drop_index, write_index
from cellscale.io._store_setup import (
    LEDGER_NAME,
    StoreRecord,
    field_image_path,
    read_store_record,
)
from cellscale.plate import PlateError

__all__ = ["VerifyReport", "verify_plate", "verify_units"]


def verify_plate(
    path: str | Path, *, repair: bool = True, client: Any = None, progress: bool = True
) -> VerifyReport:
    """Check that every complete unit of a plate store has all its chunks and that they decode.

    Every chunk of every unit the ledger marks complete, at every pyramid level, is read
    and decoded (one task per unit, on the current client if there is one). With
    ``repair``, damaged units are marked incomplete, so writing the plate again
    (``write_plate``, ``ingest``, ``cellscale project``) rewrites exactly them, and the
    index of a complete, intact plate is written again (see :func:`cellscale.open_plate`).

    Parameters
    ----------
    path
        A plate store written by cellscale.
    repair
        Unmark damaged units in the ledger.
    client
        A ``distributed.Client``; defaults to the current one, else local threads.
    progress
        Show a progress bar.

    Returns
    -------
    VerifyReport
        What was checked and what is damaged.
    """
    path = Path(path)
    with output_lock(path):
        return verify_units(path, repair=repair, client=client, progress=progress)


def verify_units(path: Path, *, repair: bool, client: Any, progress: bool) -> VerifyReport:
    """:func:`verify_plate` for a caller that already holds the store's lock."""
    record = read_store_record(path)
    if record is None:
        raise PlateError(f"{path} is not a complete cellscale plate store")
    layout = record.layout
    root = zarr.open_group(str(path), mode="r+" if repair else "r")
    ledger = Ledger.open(root, LEDGER_NAME)
    assert ledger is not None
    units = ledger.done_units()
    names = [f"{layout.wells[w]}/f{layout.fields[f]}/t{t}" for t, w, f in units]
    tasks = [
        dask.delayed(_check_unit, pure=True)(
            root,
            field_image_path(layout.wells[w], layout.fields[f]),
            t,
            layout.channels,
            _levels(record),
            name,
            dask_key_name=task_key("verify-plate", str(path.resolve()), t, w, f),
        )
        for (t, w, f), name in zip(units, names, strict=True)
    ]
    results = compute_units("verify-plate", tasks, client=client, progress=progress)
    report = VerifyReport(path, checked=len(units))
    for name, result in zip(names, results, strict=True):
        report.add(name, result)
    if repair and not report.ok:
        drop_index(path)  # first: the index must never describe an unmarked unit
        for unit, name in zip(units, names, strict=True):
            if name in report.damaged:
                ledger.clear(unit)
    elif repair:
        write_index(path, layout)
    report.repaired = repair and not report.ok
    return report


def _levels(record: StoreRecord) -> int:
    """How many pyramid levels the store's images have."""
    parameters = record.fingerprint.parameters if record.fingerprint is not None else {}
    return int(parameters.get("levels") or 1)


def _check_unit(
    root: zarr.Group, image_path: str, t: int, channels: list[str], levels: int, name: str
) -> str | None:
    """The first problem with one unit's chunks, at any pyramid level, or ``None``."""
    for level in range(levels):
        array = root[f"{image_path}/{level}"]
        assert isinstance(array, zarr.Array)
        at = f" at pyramid level {level}" if level else ""
        for c, channel in enumerate(channels):
            index = (slice(t, t + 1), slice(c, c + 1))
            try:
                read_image(array, index, (t, c, 0, 0, 0), "", hint=False)
            except DamagedChunkError as err:
                return f"channel {channel!r}{at}{err}"
    return None
