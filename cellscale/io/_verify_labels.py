"""Verify the labels of a plate store: every field marked complete has all its chunks, intact.

A field whose label chunk is missing or damaged, at any pyramid level, is unmarked in that
label image's ledger (with ``repair``), so writing the labels again redoes exactly it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import zarr

from cellscale._stages import Ledger, VerifyReport, compute_units, output_lock, task_key
from cellscale.io._chunks import DamagedChunkError, read_image
from cellscale.io._labels import LABELS_KEY
from cellscale.io._store_setup import field_image_path, read_store_record
from cellscale.plate import PlateError

__all__ = ["verify_labels"]


def verify_labels(
    path: str | Path, *, repair: bool = True, client: Any = None, progress: bool = True
) -> list[VerifyReport]:
    """Check every label image of the plate store at ``path``; one report per label image.

    Parameters
    ----------
    path
        A plate store written by cellscale, with labels from :func:`cellscale.write_labels`
        (a store without labels gives an empty list).
    repair
        Unmark damaged fields in the label image's ledger.
    client, progress
        As for :func:`cellscale.verify_plate`.
    """
    path = Path(path)
    with output_lock(path):
        record = read_store_record(path)
        if record is None:
            raise PlateError(f"{path} is not a complete cellscale plate store")
        root = zarr.open_group(str(path), mode="r+" if repair else "r")
        group = root.get(LABELS_KEY)
        names = (
            sorted(n for n, g in group.groups() if "fingerprint" in g.attrs)
            if isinstance(group, zarr.Group)
            else []
        )
        wells, fields = record.layout.wells, record.layout.fields
        return [
            _verify_one(root, path, name, wells, fields, repair, client, progress) for name in names
        ]


def _verify_one(
    root: zarr.Group,
    path: Path,
    name: str,
    wells: list[str],
    fields: list[int],
    repair: bool,
    client: Any,
    progress: bool,
) -> VerifyReport:
    books = root[f"{LABELS_KEY}/{name}"]
    assert isinstance(books, zarr.Group)
    ledger = Ledger.open(books, "ledger")
    assert ledger is not None
    units = ledger.done_units()
    unit_names = [f"{wells[w]}/f{fields[f]}/t{t}" for t, w, f in units]
    tasks = [
        dask.delayed(_check_field, pure=True)(
            root,
            f"{field_image_path(wells[w], fields[f])}/labels/{name}",
            t,
            dask_key_name=task_key("verify-labels", str(path.resolve()), name, t, w, f),
        )
        for t, w, f in units
    ]
    results = compute_units(f"verify-labels-{name}", tasks, client=client, progress=progress)
    report = VerifyReport(path, checked=len(units), kind=f"labels {name!r}")
    for unit, unit_name, result in zip(units, unit_names, results, strict=True):
        if report.add(unit_name, result) and repair:
            ledger.clear(unit)
    report.repaired = repair and not report.ok
    return report


def _check_field(root: zarr.Group, label_path: str, t: int) -> str | None:
    """The first problem with one field's label chunks, at any pyramid level, or ``None``."""
    group = root[label_path]
    assert isinstance(group, zarr.Group)
    for level, array in sorted((int(k), a) for k, a in group.arrays() if k.isdigit()):
        at = f" at pyramid level {level}" if level else ""
        try:
            read_image(array, (slice(t, t + 1), slice(0, 1)), (t, 0, 0, 0, 0), "", hint=False)
        except DamagedChunkError as err:
            return f"labels{at}{err}"
    return None
