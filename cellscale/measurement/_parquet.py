"""The cell table on disk: a Parquet dataset, one folder per well, one file per field, resumable.

``write_cells`` measures and writes each (t, well, field) as one task:
``cells.parquet/B03/t00000-f00002-c000000000123.parquet`` holds that field's rows (the
last number is its first ``cell_id``). A ledger and the fingerprint live in
``cells.parquet/_cellscale/`` (Parquet readers skip names starting with ``_``), so a rerun
writes only what is missing, rewrites fields whose inputs changed (a changed field's
object count shifts the ``cell_id`` of every later field: those are rewritten too), and
refuses a table made from other labels or settings. ``pandas.read_parquet(path)`` and
``pycytominer`` read the folder as it is; :func:`read_cells` gives the rows in ``cell_id``
order as a dask DataFrame.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from dask.base import tokenize
from dask.delayed import Delayed

from cellscale._stages import (
    Fingerprint,
    Ledger,
    check_fingerprint,
    lazy_units,
    output_lock,
    remove_partials,
    run_units,
    task_key,
    unit_token,
)
from cellscale.cells import CELL_ID
from cellscale.measurement._table import FieldSpec, measure
from cellscale.plate import LINEAGE, UNIT_TOKEN, PlateError

__all__ = ["read_cells", "write_cells"]

_BOOKS = "_cellscale"
_PART = re.compile(r"^t(\d+)-f(\d+)-c(\d+)\.parquet$")


def write_cells(
    labels: xr.Dataset,
    plate: xr.DataArray,
    path: str | Path,
    *,
    channels: Sequence[str] | None = None,
    intensity: bool = True,
    cp_measure: Sequence[str] = (),
    overwrite: bool = False,
    client: Any = None,
    progress: bool = True,
    compute: bool = True,
) -> Any:
    """Measure every field and write the cell table as a Parquet dataset, resumably.

    Parameters
    ----------
    labels, plate, channels, intensity, cp_measure
        As for :func:`cellscale.measure`.
    path
        The dataset folder (``cells.parquet``).
    overwrite
        Replace a table made from other labels or settings.
    client, progress, compute
        As for :func:`cellscale.write_plate`.

    Returns
    -------
    pathlib.Path or dask.delayed.Delayed
        ``path``, or the lazy write when ``compute=False``.
    """
    path = Path(path)
    table = measure(labels, plate, channels=channels, intensity=intensity, cp_measure=cp_measure)
    specs = _specs(labels, plate)
    fingerprint = Fingerprint(
        stage="cells",
        inputs={
            "lineage": labels.attrs.get(LINEAGE, []),
            "labels": [labels[c].data.name for c in labels.attrs["compartments"]],
            "plate": plate.data.name,
        },
        parameters={
            "channels": list(channels) if channels else None,
            "intensity": intensity,
            "cp_measure": list(cp_measure),
        },
    )
    with output_lock(path):
        ledger = _open(path, fingerprint, specs, overwrite)
        remove_partials(path)
        tasks, names = _tasks(labels, table, specs, ledger, path)
        if not compute:
            return lazy_units("write-cells", tasks, names)
        run_units("write-cells", tasks, names, client=client, progress=progress)
    return path


def read_cells(path: str | Path, *, allow_incomplete: bool = False) -> dd.DataFrame:
    """Read a cell table written by :func:`write_cells`, in ``cell_id`` order.

    Raises
    ------
    PlateError
        If some fields were never written (unless ``allow_incomplete``).
    """
    path = Path(path)
    books = zarr.open_group(str(path / _BOOKS), mode="r")
    ledger = Ledger.open(books, "ledger")
    assert ledger is not None
    if not allow_incomplete:
        done = ledger.done()
        expected_array = books["expected"]
        assert isinstance(expected_array, zarr.Array)
        expected = np.asarray(expected_array[...], dtype=bool)
        if (expected & ~done).any():
            raise PlateError(
                f"{path}: {int((expected & ~done).sum())} field(s) of the cell table were never "
                "written; run write_cells again"
            )
    parts = sorted(
        (int(match.group(3)), folder / name)
        for folder in path.iterdir()
        if folder.is_dir() and not folder.name.startswith(("_", "."))
        for name in os.listdir(folder)
        if (match := _PART.match(name))
    )
    table = dd.read_parquet([str(p) for _, p in parts], index=False)
    return table.map_partitions(_indexed_by_cell_id, meta=table._meta)


def _indexed_by_cell_id(part: pd.DataFrame) -> pd.DataFrame:
    return part.set_axis(pd.Index(part[CELL_ID].to_numpy()), axis=0)


def _specs(labels: xr.Dataset, plate: xr.DataArray) -> list[FieldSpec]:
    from cellscale.measurement._table import unit_specs
    from cellscale.plate import as_plate, spatial_plate

    do_3d = "z" in labels[labels.attrs["compartments"][0]].dims
    return unit_specs(labels, spatial_plate(as_plate(plate), do_3d))


def _open(path: Path, fingerprint: Fingerprint, specs: list[FieldSpec], overwrite: bool) -> Ledger:
    """The table's ledger: set up afresh, or checked against the request."""
    books_path = path / _BOOKS
    shape = (
        tuple(int(n) + 1 for n in np.max([s.unit for s in specs], axis=0)) if specs else (0, 0, 0)
    )
    if books_path.exists() and not overwrite:
        books = zarr.open_group(str(books_path), mode="r+")
        stored = books.attrs.get("fingerprint")
        check_fingerprint(
            Fingerprint.from_json(stored) if isinstance(stored, dict) else None, fingerprint, path
        )
        ledger = Ledger.open(books, "ledger")
        assert ledger is not None
        return ledger
    if path.exists():
        shutil.rmtree(path)
    books = zarr.open_group(str(books_path), mode="w")
    ledger = Ledger.create(books, "ledger", shape)
    expected = np.zeros(shape, dtype=bool)
    for spec in specs:
        expected[spec.unit] = True
    books.create_array("expected", data=expected, chunks=shape or (1,))
    books.attrs["fingerprint"] = fingerprint.to_json()
    return ledger


def _tasks(
    labels: xr.Dataset, table: dd.DataFrame, specs: list[FieldSpec], ledger: Ledger, path: Path
) -> tuple[list[Delayed], list[str]]:
    recorded = ledger.tokens()
    sources = (
        np.asarray(labels.coords[UNIT_TOKEN].values, dtype=np.uint64)
        if UNIT_TOKEN in labels.coords
        else None
    )
    partitions = table.to_delayed()
    tasks, names = [], []
    for spec, partition in zip(specs, partitions, strict=True):
        source = int(sources[spec.unit]) if sources is not None else 0
        token = unit_token(tokenize(table._name), spec.unit, spec.first_id, spec.count, source)
        if int(recorded[spec.unit]) == token:
            continue
        if recorded[spec.unit]:
            ledger.clear(spec.unit)
        tasks.append(
            dask.delayed(_write_field, pure=False)(
                partition,
                path / spec.metadata["Metadata_Well"],
                spec,
                ledger,
                token,
                dask_key_name=task_key("write-cells", str(path.resolve()), table._name, spec.unit),
            )
        )
        well, site = spec.metadata["Metadata_Well"], spec.metadata["Metadata_Site"]
        names.append(f"{well}/f{site}/t{spec.unit[0]}")
    return tasks, names


def _write_field(
    frame: pd.DataFrame, folder: Path, spec: FieldSpec, ledger: Ledger, token: int
) -> None:
    """Write one field's rows atomically, drop its older files, then mark it complete."""
    t, _, _ = spec.unit
    site = int(spec.metadata["Metadata_Site"])
    folder.mkdir(parents=True, exist_ok=True)
    name = f"t{t:05d}-f{site:05d}-c{spec.first_id:012d}.parquet"
    for old in folder.glob(f"t{t:05d}-f{site:05d}-c*.parquet"):
        if old.name != name:
            old.unlink()
    partial = folder / f".{name}.partial"
    frame.to_parquet(partial, index=False)
    partial.replace(folder / name)
    ledger.mark(spec.unit, token)
