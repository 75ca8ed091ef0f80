"""Per-well profiles of a cell table on disk: one group's cells in memory at a time.

A cell table written by :func:`cellscale.write_cells` is one Parquet file per field.
:func:`aggregate_cells` first reads which groups (wells, by default) each file holds,
from the grouping columns alone, then computes every group's median or mean in a task of
its own that reads only that group's files, so no process holds more than one group of
cells. The result follows
pycytominer's ``aggregate`` and ``annotate``: one row per group, the group's columns, the
metadata constant within every group (plate-map columns, plate-level metadata),
``Metadata_Object_Count`` and the features.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd

from cellscale.cells import CELL_ID, metadata_column
from cellscale.profiles._aggregate import COUNT_COLUMN
from cellscale.profiles._table import METADATA_PREFIX

__all__ = ["aggregate_cells"]


def aggregate_cells(
    path: str | os.PathLike[str],
    by: str | Sequence[str] = ("Metadata_Plate", "Metadata_Well"),
    *,
    operation: str = "median",
    features: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Aggregate the cells of a cell table folder per group, out of core.

    Parameters
    ----------
    path
        A cell table written by :func:`cellscale.write_cells` (read strictly: a missing
        or damaged field is an error naming it).
    by
        Grouping column(s); each group's cells are loaded together.
    operation
        ``"median"`` (pycytominer's default) or ``"mean"``; missing values are skipped.
    features
        The feature columns; by default every numeric column but ``cell_id`` and the
        ``Metadata_`` columns.
    metadata
        Plate-level values added to every cell as ``Metadata_<key>`` columns (and so to
        every profile), e.g. ``{"batch": 1}``.

    Returns
    -------
    pandas.DataFrame
        One row per group in sorted order: the ``by`` columns, every other ``Metadata_``
        column constant within each group, ``Metadata_Object_Count``, then the features.
        No rows for a table without cells.

    Raises
    ------
    ValueError
        For an unknown operation, a missing column, or a ``metadata`` key naming a
        column the cells already have.
    """
    import cellscale

    if operation not in ("median", "mean"):
        raise ValueError(f"operation must be 'median' or 'mean', got {operation!r}")
    keys = [by] if isinstance(by, str) else list(by)
    path = Path(path)
    table = cellscale.read_cells(path)
    if list(table.columns) == [CELL_ID]:  # no cells
        return pd.DataFrame(columns=[*keys, COUNT_COLUMN, *(features or [])])
    extra = _plate_metadata(path, list(table.columns), metadata or {})
    columns = [*table.columns, *extra]
    missing = [k for k in keys if k not in columns]
    if missing:
        raise ValueError(f"{path}: grouping columns not in the cell table: {missing}")
    names = list(features) if features is not None else _features(table.dtypes)
    absent = [f for f in names if f not in columns]
    if absent:
        raise ValueError(f"{path}: feature columns not in the cell table: {absent[:5]}")
    describe = [c for c in columns if str(c).startswith(METADATA_PREFIX) and c not in keys]
    parts = table.to_delayed()
    stored = [k for k in keys if k in table.columns] or [CELL_ID]  # the first pass reads these
    groups = _groups(table[stored].to_delayed(), keys, extra)
    tasks = [
        dask.delayed(_group_profile)(
            [parts[i] for i in files], dict(zip(keys, key, strict=True)), extra, describe,
            names, operation,
        )
        for key, files in groups.items()
    ]  # fmt: skip
    return _assemble(list(dask.compute(*tasks)), keys, describe, names)


def _groups(
    parts: list[Any], keys: list[str], extra: dict[str, Any]
) -> dict[tuple[Any, ...], list[int]]:
    """Every group's key (sorted, missing values as ``None``) and the files that hold it."""
    found = dask.compute(*[dask.delayed(_group_keys)(p, keys, extra) for p in parts])
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, frame in enumerate(found):
        for key in frame.itertuples(index=False, name=None):
            groups.setdefault(tuple(None if pd.isna(v) else v for v in key), []).append(i)
    order = pd.DataFrame(list(groups), columns=keys).sort_values(keys, kind="stable").index
    ordered = list(groups)
    return {ordered[i]: groups[ordered[i]] for i in order}


def _plate_metadata(path: Path, columns: list[str], metadata: Mapping[str, Any]) -> dict[str, Any]:
    extra = {metadata_column(str(k)): v for k, v in metadata.items()}
    clash = [c for c in extra if c in columns]
    if clash:
        raise ValueError(
            f"{path}: plate metadata would replace the cell table's columns {clash}; rename "
            "its keys"
        )
    return extra


def _features(dtypes: pd.Series) -> list[str]:
    return [
        str(c)
        for c, dtype in dtypes.items()
        if c != CELL_ID
        and not str(c).startswith(METADATA_PREFIX)
        and pd.api.types.is_numeric_dtype(dtype)
    ]


def _group_keys(part: pd.DataFrame, keys: list[str], extra: dict[str, Any]) -> pd.DataFrame:
    return part.assign(**extra)[keys].drop_duplicates()


def _group_profile(
    parts: list[pd.DataFrame],
    key: dict[str, Any],
    extra: dict[str, Any],
    describe: list[str],
    names: list[str],
    operation: str,
) -> tuple[dict[str, Any], int, np.ndarray]:
    """One group's key and constant metadata, cell count and aggregated features."""
    cells = pd.concat(parts, ignore_index=True).assign(**extra)
    mine = np.ones(len(cells), dtype=bool)
    for column, value in key.items():
        same = cells[column].isna() if value is None else cells[column] == value
        mine &= same.to_numpy(dtype=bool)
    cells = cells[mine]
    values = cells[names].astype(np.float64)
    stats = values.median() if operation == "median" else values.mean()
    constant = {c: cells[c].iloc[0] for c in describe if cells[c].nunique(dropna=False) == 1}
    return {**key, **constant}, len(cells), stats.to_numpy()


def _assemble(
    rows: list[tuple[dict[str, Any], int, np.ndarray]],
    keys: list[str],
    describe: list[str],
    names: list[str],
) -> pd.DataFrame:
    kept = [c for c in describe if all(c in m for m, _, _ in rows)]
    profiles = pd.DataFrame([m for m, _, _ in rows], columns=[*keys, *kept])
    profiles[COUNT_COLUMN] = np.array([n for _, n, _ in rows], dtype=np.int64)
    values = np.stack([v for _, _, v in rows]) if rows else np.zeros((0, len(names)))
    return pd.concat([profiles, pd.DataFrame(values, columns=names)], axis="columns")
