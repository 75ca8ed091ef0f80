"""Per-group (e.g. per-well) mean or median profiles, written as pycytominer-readable Parquet."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd

from cellscale.profiles._io import as_cell_array, row_bounds
from cellscale.profiles._moments import check_finite
from cellscale.profiles._table import METADATA_PREFIX, is_table, split_table

__all__ = ["aggregate", "aggregate_codes"]

COUNT_COLUMN = "Metadata_Object_Count"


def aggregate(
    data: Any,
    by: str | Sequence[str] = ("Metadata_Plate", "Metadata_Well"),
    *,
    operation: str = "mean",
    features: list[str] | None = None,
    metadata: pd.DataFrame | None = None,
    output: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Aggregate cells into per-group profiles (pycytominer's ``aggregate``).

    Parameters
    ----------
    data
        A cell table (pandas DataFrame or pyarrow Table) whose features are its numeric
        non-``Metadata_`` columns, or a ``(cell, feature)`` dask/NumPy/Zarr array of
        features or embeddings aligned row for row with ``metadata``.
    by
        Grouping column(s), e.g. ``["Metadata_Plate", "Metadata_Well"]`` or ``"well"``.
    operation
        ``"mean"`` (out of core for arrays: per-chunk group sums merged in a dask tree)
        or ``"median"`` (exact; for arrays one group's rows are loaded at a time).
    features
        Feature columns of a table, or names for an array's columns (default
        ``feature_0000``, ...; for PCA scores pass ``pca.get_feature_names_out()``,
        which names them ``PC1``, ``PC2``, ...).
    metadata
        The cell table for array input (must hold the ``by`` columns).
    output
        If given, the profiles are also written to this Parquet file.

    Returns
    -------
    pandas.DataFrame
        One row per group: the group columns and every other metadata column that is
        constant within each group, prefixed ``Metadata_`` where needed,
        ``Metadata_Object_Count``, then the aggregated features.

    Raises
    ------
    ValueError
        For an unknown operation or missing columns, or (arrays) NaN/inf in a chunk.
    """
    if operation not in ("mean", "median"):
        raise ValueError(f"operation must be 'mean' or 'median', got {operation!r}")
    keys = [by] if isinstance(by, str) else list(by)
    if is_table(data):
        split = split_table(data, features)
        meta = split.frame.drop(columns=split.features)
        arr = as_cell_array(split.values)
        names = split.features
    else:
        if metadata is None:
            raise ValueError("array input needs a metadata table aligned with its rows")
        arr = as_cell_array(data)
        meta = metadata
        names = features or [f"feature_{i:04d}" for i in range(arr.shape[1])]
    if len(meta) != arr.shape[0]:
        raise ValueError(f"metadata has {len(meta)} rows, the data {arr.shape[0]}")
    missing = [k for k in keys if k not in meta.columns]
    if missing:
        raise ValueError(f"grouping columns not found: {missing}")
    groups = meta.reset_index(drop=True).groupby(keys, sort=True, dropna=False)
    codes = groups.ngroup().to_numpy()
    profiles = _group_metadata(meta.reset_index(drop=True), keys, groups)
    profiles = _profiles(arr, codes, profiles, len(keys), operation, names)
    if output is not None:
        profiles.to_parquet(output, index=False)
    return profiles


def aggregate_codes(
    data: Any,
    codes: np.ndarray,
    groups: pd.DataFrame,
    *,
    operation: str = "mean",
    features: list[str] | None = None,
) -> pd.DataFrame:
    """Aggregate the rows of an array by a group code given for each row.

    As :func:`aggregate` for array input, for a caller that numbered the groups itself
    (e.g. from its metadata read chunk by chunk): the same values, exactly.

    Parameters
    ----------
    data
        A ``(cell, feature)`` dask/NumPy/Zarr array.
    codes
        Each row's group: ``i`` is row ``i`` of ``groups``.
    groups
        One row per group: the columns naming it.
    operation, features
        As for :func:`aggregate`.

    Returns
    -------
    pandas.DataFrame
        ``groups``, ``Metadata_Object_Count`` and the aggregated features.
    """
    if operation not in ("mean", "median"):
        raise ValueError(f"operation must be 'mean' or 'median', got {operation!r}")
    arr = as_cell_array(data)
    if len(codes) != arr.shape[0]:
        raise ValueError(f"{len(codes)} group codes, the data has {arr.shape[0]} rows")
    names = features or [f"feature_{i:04d}" for i in range(arr.shape[1])]
    profiles = groups.reset_index(drop=True)
    return _profiles(arr, codes, profiles, profiles.shape[1], operation, names)


def _profiles(
    arr: da.Array,
    codes: np.ndarray,
    profiles: pd.DataFrame,
    keys: int,
    operation: str,
    names: list[str],
) -> pd.DataFrame:
    """``profiles`` (one row per group code, its first ``keys`` columns naming the group)
    with each group's count and aggregated features."""
    if operation == "mean":
        values = _group_means(arr, codes, len(profiles))
    else:
        labels = profiles.iloc[:, :keys].astype(str).agg("/".join, axis=1).tolist()
        values = _group_medians(arr, codes, labels)
    profiles[COUNT_COLUMN] = np.bincount(codes, minlength=len(profiles))
    return pd.concat([profiles, pd.DataFrame(values, columns=names)], axis="columns")


def _group_metadata(meta: pd.DataFrame, keys: list[str], groups: Any) -> pd.DataFrame:
    """Group keys plus metadata columns constant within every group, ``Metadata_``-prefixed."""
    constant = groups.nunique(dropna=False).le(1).all()
    extra = [c for c in constant.index[constant.to_numpy()] if c not in keys]
    frame = groups[extra].first().reset_index() if extra else groups.size().reset_index()
    frame = frame[keys + extra]
    return frame.rename(
        columns=lambda c: c if str(c).startswith(METADATA_PREFIX) else f"{METADATA_PREFIX}{c}"
    )


def _chunk_sums(block: np.ndarray, codes: np.ndarray, n_groups: int, start: int) -> np.ndarray:
    """``(n_groups, d)`` float64 sums of the rows of one chunk by group code."""
    check_finite(block, start, start + block.shape[0])
    order = np.argsort(codes, kind="stable")
    present, first = np.unique(codes[order], return_index=True)
    sums = np.zeros((n_groups, block.shape[1]))
    sums[present] = np.add.reduceat(block[order].astype(np.float64), first, axis=0)
    return sums


def _group_means(arr: da.Array, codes: np.ndarray, n_groups: int) -> np.ndarray:
    parts = [
        dask.delayed(_chunk_sums, pure=True)(block, codes[start:stop], n_groups, start)
        for block, (start, stop) in zip(arr.to_delayed().ravel(), row_bounds(arr), strict=True)
    ]
    while len(parts) > 1:
        parts = [dask.delayed(sum)(parts[i : i + 8]) for i in range(0, len(parts), 8)]
    (sums,) = dask.compute(parts[0])
    return sums / np.bincount(codes, minlength=n_groups)[:, None]


def _median_of(rows: np.ndarray, group: str) -> np.ndarray:
    if not np.isfinite(rows).all():
        raise ValueError(f"non-finite values (NaN or inf) in the rows of group {group}")
    return np.median(rows.astype(np.float64), axis=0)


def _group_medians(arr: da.Array, codes: np.ndarray, labels: list[str]) -> np.ndarray:
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(labels) + 1))
    tasks = [
        dask.delayed(_median_of)(arr[order[lo:hi]], label)
        for lo, hi, label in zip(bounds[:-1], bounds[1:], labels, strict=True)
    ]
    return np.stack(dask.compute(*tasks))
