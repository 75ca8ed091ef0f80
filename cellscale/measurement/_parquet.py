"""The cell table on disk: a Parquet dataset, one folder per well, one file per field, resumable.

``write_cells`` measures and writes each (t, well, field) as one task:
``cells.parquet/B03/t00000-f00002-c000000000123.parquet`` holds that field's rows (the
last number is its first ``cell_id``). A ledger and the fingerprint live in
``cells.parquet/_cellscale/`` (Parquet readers skip names starting with ``_``), so a rerun
writes only what is missing, rewrites fields whose inputs changed (a changed field's
object count shifts the ``cell_id`` of every later field: those are rewritten too), and
refuses a table made from other labels or settings. ``pandas.read_parquet(path)`` and
``pycytominer`` read the folder as it is; :func:`read_cells` gives the rows in ``cell_id``
order as a dask DataFrame (all its columns, or those asked for), strictly: a field never
written, a missing or truncated file, or a file with other than its field's number of rows
is an error naming the field and the file. :func:`cell_fields` lists the checked fields and
:func:`read_cell_fields` reads a few of them in the calling process, as strictly, so a
reader can hold one chunk of a table at a time.
:func:`verify_cells` reads every file and unmarks damaged fields, so that writing the table
again redoes exactly them.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xarray as xr
import zarr
from dask.base import tokenize
from dask.dataframe.utils import pyarrow_strings_enabled
from dask.delayed import Delayed

from cellscale._compat import frame_meta, frame_name
from cellscale._stages import (
    DamagedOutputError,
    Fingerprint,
    Ledger,
    Opaque,
    VerifyReport,
    atomic_path,
    check_fingerprint,
    lazy_units,
    output_lock,
    remove_partials,
    run_units,
    take_lease,
    task_key,
    unit_token,
)
from cellscale.cells import CELL_ID
from cellscale.measurement._table import FieldSpec, MeasuredFields, measured_fields
from cellscale.plate import LINEAGE, UNIT_TOKEN

__all__ = [
    "CellField",
    "cell_fields",
    "cell_units",
    "cells_digest",
    "cells_fingerprint",
    "read_cell_fields",
    "read_cells",
    "verify_cells",
    "write_cells",
]

_BOOKS = "_cellscale"


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
    fields = measured_fields(
        labels, plate, channels=channels, intensity=intensity, cp_measure=cp_measure
    )
    fingerprint = cells_fingerprint(labels, plate, channels, intensity, cp_measure)
    with output_lock(path):
        tasks, names = cell_units(labels, fields, fingerprint, path, overwrite=overwrite)
        if not compute:
            return lazy_units(
                "write-cells", tasks, names, lease=take_lease(path), then=lambda: seal_cells(path)
            )
        run_units("write-cells", tasks, names, client=client, progress=progress)
        seal_cells(path)
    return path


def seal_cells(path: Path) -> None:
    """Seal the ledger of the cell table at ``path`` (see :meth:`Ledger.seal`); hold its lock."""
    ledger = Ledger.open(_books(path, "r+"), "ledger")
    assert ledger is not None
    ledger.seal()


def cells_fingerprint(
    labels: xr.Dataset,
    plate: xr.DataArray,
    channels: Sequence[str] | None,
    intensity: bool,
    cp_measure: Sequence[str],
) -> Fingerprint:
    """What a cell table measured from ``labels`` and ``plate`` with these settings is made of."""
    return Fingerprint(
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


def cell_units(
    labels: xr.Dataset,
    fields: MeasuredFields,
    fingerprint: Fingerprint,
    path: Path,
    *,
    overwrite: bool,
) -> tuple[list[Delayed], list[str]]:
    """The tasks writing each field the table at ``path`` lacks, and the fields' names.

    Sets the table up (or checks it against ``fingerprint``) and clears what a killed
    writer left; call it holding :func:`~cellscale._stages.output_lock` of ``path``.

    Raises
    ------
    StaleOutputError
        If the table was made from other labels or settings and not ``overwrite``.
    """
    ledger = _open(path, fingerprint, fields.specs, overwrite)
    remove_partials(path)
    return _tasks(labels, fields, ledger, path)


def read_cells(
    path: str | Path,
    *,
    columns: Sequence[str] | None = None,
    allow_incomplete: bool = False,
) -> dd.DataFrame:
    """Read a cell table written by :func:`write_cells`, in ``cell_id`` order.

    Every field's file is checked before anything is read: it must be there, whole (its
    Parquet footer reads) and hold the number of rows the field was written with.

    Parameters
    ----------
    path
        The dataset folder (``cells.parquet``).
    columns
        Read only these columns (and ``cell_id``, which indexes the rows); all by default.
    allow_incomplete
        Read the fields that were written and leave out those never written (a damaged
        file of a written field is still an error).

    Raises
    ------
    DamagedOutputError
        If some fields were never written (unless ``allow_incomplete``), or a field's file
        is missing, truncated or holds the wrong number of rows; the message names the
        field and the file.
    KeyError
        If ``columns`` names a column the table does not have.
    """
    fields = cell_fields(path, allow_incomplete=allow_incomplete)
    if not fields:
        return dd.from_pandas(pd.DataFrame({CELL_ID: np.zeros(0, np.int64)}), npartitions=1)
    names = None if columns is None else _columns(fields[0], columns)
    table = dd.read_parquet([str(f.file) for f in fields], columns=names, index=False)
    return table.map_partitions(_indexed_by_cell_id, meta=frame_meta(table))


@dataclass(frozen=True)
class CellField:
    """One written field of a cell table: its file, first ``cell_id`` and rows, checked.

    Attributes
    ----------
    unit
        The field's (t, well, field) index.
    name
        Its folder and file stem in the table, e.g. ``B03/t00000-f00002``.
    first
        Its first ``cell_id``.
    rows
        The rows its file holds (those it was written with).
    file
        Its Parquet file.
    """

    unit: tuple[int, int, int]
    name: str
    first: int
    rows: int
    file: Path


def cell_fields(path: str | Path, *, allow_incomplete: bool = False) -> list[CellField]:
    """Every written field of a cell table, checked as :func:`read_cells` checks them.

    In ``cell_id`` order; read a few of them with :func:`read_cell_fields`.

    Raises
    ------
    DamagedOutputError
        As :func:`read_cells`.
    """
    path = Path(path)
    books = _books(path)
    done = Ledger.open(books, "ledger")
    assert done is not None
    complete = done.done()
    units = _units(books, path)
    never = [name for unit, name in units.items() if not complete[unit]]
    if never and not allow_incomplete:
        shown = ", ".join(never[:5]) + (f" and {len(never) - 5} more" if len(never) > 5 else "")
        raise DamagedOutputError(
            f"{path}: {len(never)} field(s) of the cell table were never written ({shown}); "
            "run write_cells again"
        )
    written = np.asarray(_array(books, "written")[...])
    fields = [
        _checked_field(path, unit, name, *map(int, written[unit]))
        for unit, name in units.items()
        if complete[unit]
    ]
    return sorted(fields, key=lambda f: f.first)


def read_cell_fields(
    fields: Sequence[CellField], columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """The rows of ``fields`` (of :func:`cell_fields`) in their order, read in this process.

    As :func:`read_cells` gives them (the same columns, dtypes and ``cell_id`` index),
    and as strictly: a file that no longer reads, or holds other than its field's rows,
    is an error naming the field and the file.

    Parameters
    ----------
    fields
        Fields of one cell table.
    columns
        Read only these columns (and ``cell_id``); all by default.

    Raises
    ------
    DamagedOutputError
        If a field's file cannot be read or holds other than its rows.
    KeyError
        If ``columns`` names a column the table does not have.
    """
    if not fields:
        return pd.DataFrame({CELL_ID: np.zeros(0, np.int64)})
    names = None if columns is None else _columns(fields[0], columns)
    tables = []
    for field in fields:
        where = f"{field.file.parent.parent}: field {field.name}"
        try:
            table = pq.read_table(field.file, columns=names)
        except Exception as err:
            raise DamagedOutputError(
                f"{where}: {field.file} cannot be read ({type(err).__name__}: {err}); run "
                "`cellscale verify` on the table and write it again"
            ) from err
        if table.num_rows != field.rows:
            raise DamagedOutputError(
                f"{where}: {field.file} holds {table.num_rows} rows, but {field.rows} were "
                "written; run `cellscale verify` on the table and write it again"
            )
        tables.append(table)
    joined = pa.concat_tables(tables, promote_options="default")
    strings = pd.StringDtype("pyarrow") if pyarrow_strings_enabled() else None
    mapper = {pa.string(): strings, pa.large_string(): strings}.get
    frame = joined.to_pandas(types_mapper=mapper, use_threads=False, ignore_metadata=False)
    return _indexed_by_cell_id(frame)


def verify_cells(path: str | Path, *, repair: bool = True) -> VerifyReport:
    """Check that every written field of a cell table has its file, whole, with its rows.

    Each file is read in full. With ``repair``, damaged fields are unmarked and their
    files removed, so writing the table again (or rerunning) redoes exactly them.
    """
    path = Path(path)
    with output_lock(path):
        books = _books(path, "r+" if repair else "r")
        ledger = Ledger.open(books, "ledger")
        assert ledger is not None
        complete = ledger.done()
        written = np.asarray(_array(books, "written")[...])
        fields = {u: n for u, n in _units(books, path).items() if complete[u]}
        report = VerifyReport(path, checked=len(fields), kind="cell table")
        for unit, name in fields.items():
            try:
                pq.read_table(_checked_field(path, unit, name, *map(int, written[unit])).file)
            except Exception as err:
                report.damaged[name] = str(err)
                if repair:
                    ledger.clear(unit)
        report.repaired = repair and not report.ok
    return report


def cells_digest(path: str | Path) -> str:
    """A token of what the table holds: its fingerprint and the token of every field.

    Later outputs refer to the table by it; it never depends on the table's path.
    """
    books = _books(Path(path))
    ledger = Ledger.open(books, "ledger")
    assert ledger is not None
    return str(tokenize(books.attrs.get("fingerprint"), ledger.tokens()))


def _books(path: Path, mode: Literal["r", "r+"] = "r") -> zarr.Group:
    books = path / _BOOKS
    if not (books / "zarr.json").is_file():
        raise DamagedOutputError(
            f"{path} is not a cell table written by cellscale ({_BOOKS}/ is missing), or its "
            "write never began; run write_cells"
        )
    return zarr.open_group(str(books), mode=mode)


def _array(group: zarr.Group, name: str) -> zarr.Array:
    node = group[name]
    assert isinstance(node, zarr.Array)
    return node


def _units(books: zarr.Group, path: Path) -> dict[tuple[int, int, int], str]:
    """Every field the table holds: its unit and its name (``B03/t00000-f00002``)."""
    stored: Any = books.attrs.get("units")
    if stored is None:
        raise DamagedOutputError(
            f"{path}: the table's list of fields is missing (written by an older cellscale?); "
            "write it again with overwrite=True"
        )
    return {(int(t), int(w), int(f)): str(name) for t, w, f, name in stored}


def _checked_field(
    path: Path, unit: tuple[int, int, int], name: str, rows: int, first: int
) -> CellField:
    """The one file of a written field, checked whole."""
    file = path / f"{name}-c{first:012d}.parquet"
    where = f"{path}: field {name} (t, well, field index {unit})"
    if not file.is_file():
        raise DamagedOutputError(
            f"{where}: {file.name} is missing, but the field is marked written; run "
            "`cellscale verify` on the table and write it again"
        )
    try:
        stored = pq.read_metadata(file).num_rows
    except Exception as err:
        raise DamagedOutputError(
            f"{where}: {file} cannot be read ({type(err).__name__}: {err}); run "
            "`cellscale verify` on the table and write it again"
        ) from err
    if rows >= 0 and stored != rows:
        raise DamagedOutputError(
            f"{where}: {file} holds {stored} rows, but {rows} were written; run "
            "`cellscale verify` on the table and write it again"
        )
    return CellField(unit, name, first, stored, file)


def _columns(field: CellField, columns: Sequence[str]) -> list[str]:
    """``columns`` (after ``cell_id`` unless they name it), checked against ``field``'s schema."""
    names = list(columns) if CELL_ID in columns else [CELL_ID, *columns]
    stored = pq.read_schema(field.file).names
    missing = [c for c in names if c not in stored]
    if missing:
        raise KeyError(
            f"{field.file.parent.parent}: the cell table has no column(s) {missing}; it has "
            f"{stored}"
        )
    return names


def _indexed_by_cell_id(part: pd.DataFrame) -> pd.DataFrame:
    return part.set_axis(pd.Index(part[CELL_ID].to_numpy()), axis=0)


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
    books.create_array(  # each field's rows and first cell_id, once written
        "written", shape=(*shape, 2), chunks=(1,) * len(shape) + (2,), dtype="int64", fill_value=-1
    )
    books.attrs["units"] = [[*spec.unit, _field_name(spec)] for spec in specs]
    books.attrs["fingerprint"] = fingerprint.to_json()
    return ledger


def _field_name(spec: FieldSpec) -> str:
    """A field's folder and file stem in the table: ``B03/t00000-f00002``."""
    well, site = spec.metadata["Metadata_Well"], int(spec.metadata["Metadata_Site"])
    return f"{well}/t{spec.unit[0]:05d}-f{site:05d}"


def _tasks(
    labels: xr.Dataset, fields: MeasuredFields, ledger: Ledger, path: Path
) -> tuple[list[Delayed], list[str]]:
    recorded = ledger.tokens()
    books = zarr.open_group(str(path / _BOOKS), mode="r+")
    written = _array(books, "written")
    sources = (
        np.asarray(labels.coords[UNIT_TOKEN].values, dtype=np.uint64)
        if UNIT_TOKEN in labels.coords
        else None
    )
    table = frame_name(fields.table())
    tasks, names = [], []
    for spec, partition in zip(fields.specs, fields.parts, strict=True):
        source = int(sources[spec.unit]) if sources is not None else 0
        token = unit_token(tokenize(table), spec.unit, spec.first_id, spec.count, source)
        if int(recorded[spec.unit]) == token:
            continue
        if recorded[spec.unit]:
            ledger.clear(spec.unit)
        tasks.append(
            dask.delayed(_write_field, pure=False)(
                partition,
                path,
                spec,
                Opaque((ledger, written)),
                token,
                dask_key_name=task_key("write-cells", str(path.resolve()), table, spec.unit),
            )
        )
        well, site = spec.metadata["Metadata_Well"], spec.metadata["Metadata_Site"]
        names.append(f"{well}/f{site}/t{spec.unit[0]}")
    return tasks, names


def _write_field(
    frame: pd.DataFrame, path: Path, spec: FieldSpec, books: Opaque, token: int
) -> None:
    """Write one field's rows atomically, drop its older files, record its rows, mark it."""
    ledger, written = books.value
    well, stem = _field_name(spec).split("/")
    folder = path / well
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{stem}-c{spec.first_id:012d}.parquet"
    for old in folder.glob(f"{stem}-c*.parquet"):
        if old.name != name:
            old.unlink()
    with atomic_path(folder / name) as partial:
        frame.to_parquet(partial, index=False)
    written[spec.unit] = (len(frame), spec.first_id)
    ledger.mark(spec.unit, token)
