"""Feature selection on profiles, by pycytominer's named operations and their meanings.

Each operation looks at the feature columns of a profiles table (optionally only at the
rows a ``samples`` query selects) and names the columns to drop;
:func:`feature_select` runs operations in turn, each on the features the earlier ones
kept, and drops every column named. The definitions are pycytominer's (1.7), so the
same table gives the same columns:

- ``variance_threshold``: population variance (NaN ignored) not above ``min_variance``;
- ``frequency_threshold``: the second most common value is rarer than ``freq_cut`` times
  the most common one (a column of one value counts as 0), or there are fewer distinct
  values than ``unique_cut`` times the rows;
- ``correlation_threshold``: for every pair correlated above ``corr_threshold`` (signed),
  the member whose summed absolute correlation with all features is larger goes;
- ``drop_na_columns``: more than ``na_cutoff`` of the values are missing;
- ``blocklist``: the name matches :data:`~cellscale.profiles._blocklist.BLOCKLIST`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cellscale.profiles._blocklist import BLOCKLIST, blocklist_features
from cellscale.profiles._table import feature_columns

__all__ = ["DEFAULT_OPERATIONS", "OPERATIONS", "feature_select"]

DEFAULT_OPERATIONS: tuple[str, ...] = (
    "variance_threshold",
    "frequency_threshold",
    "correlation_threshold",
    "drop_na_columns",
    "blocklist",
)
"""The operations :func:`feature_select` runs unless told otherwise, in this order."""


def feature_select(
    profiles: pd.DataFrame,
    features: Sequence[str] | None = None,
    *,
    operation: str | Sequence[str] = DEFAULT_OPERATIONS,
    samples: str = "all",
    min_variance: float = 1e-6,
    freq_cut: float = 0.05,
    unique_cut: float = 0.01,
    corr_threshold: float = 0.9,
    corr_method: str = "pearson",
    na_cutoff: float = 0.05,
    blocklist: Sequence[str] = BLOCKLIST,
) -> pd.DataFrame:
    """Drop the feature columns that the operations name (pycytominer's ``feature_select``).

    Parameters
    ----------
    profiles
        A profiles table: ``Metadata_`` columns and features.
    features
        The feature columns; by default every numeric column not prefixed ``Metadata_``.
    operation
        One operation or several, run in order: ``variance_threshold``,
        ``frequency_threshold``, ``correlation_threshold``, ``drop_na_columns``,
        ``blocklist`` (see the module).
    samples
        ``"all"``, or a pandas query selecting the rows the operations look at, e.g.
        ``"Metadata_control == True"``; every row is kept either way.
    min_variance, freq_cut, unique_cut, corr_threshold, corr_method, na_cutoff
        The operations' thresholds, as pycytominer names them; ``corr_method`` is
        ``"pearson"``, ``"spearman"`` or ``"kendall"``.
    blocklist
        Regular expressions (or plain names) of blocked features.

    Returns
    -------
    pandas.DataFrame
        ``profiles`` without the dropped columns, the others in their order.

    Raises
    ------
    ValueError
        For an unknown operation, a threshold out of range, a missing feature column or
        a ``samples`` query that selects no rows.

    Examples
    --------
    >>> table = pd.DataFrame({"Metadata_Well": ["A01", "A02", "A03"],
    ...                       "Cells_AreaShape_Area": [1.0, 2.0, 4.0],
    ...                       "Cells_AreaShape_Perimeter": [2.0, 4.1, 8.0],
    ...                       "Cells_Location_Center_X": [5.0, 1.0, 3.0],
    ...                       "Nuclei_AreaShape_Area": [3.0, 3.0, 3.0]})
    >>> list(feature_select(table).columns)
    ['Metadata_Well', 'Cells_AreaShape_Area']
    """
    operations = [operation] if isinstance(operation, str) else list(operation)
    unknown = [op for op in operations if op not in OPERATIONS]
    if unknown:
        raise ValueError(f"unknown feature selection operations {unknown}; known: {OPERATIONS}")
    names = feature_columns(profiles, features)
    rows = profiles if samples == "all" else profiles.query(samples)
    if rows.empty:
        raise ValueError(f"samples {samples!r} selects no rows of the profiles")
    settings = {
        "min_variance": min_variance,
        "freq_cut": freq_cut,
        "unique_cut": unique_cut,
        "corr_threshold": corr_threshold,
        "corr_method": corr_method,
        "na_cutoff": na_cutoff,
        "blocklist": blocklist,
    }
    dropped: set[str] = set()
    for op in operations:
        kept = [n for n in names if n not in dropped]
        dropped.update(OPERATIONS[op](rows[kept], settings))
    return profiles.drop(columns=[c for c in profiles.columns if c in dropped])


def _fraction(value: float, name: str) -> float:
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")
    return value


def _low_variance(values: pd.DataFrame, settings: dict[str, Any]) -> list[str]:
    threshold = float(settings["min_variance"])
    if threshold < 0:
        raise ValueError(f"min_variance must not be negative, got {threshold}")
    matrix = values.to_numpy(dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: dropped below
        variance = np.nanvar(matrix, axis=0)
        if threshold == 0:  # the range tells a constant column exactly
            variance = np.nanmin([variance, np.ptp(matrix, axis=0)], axis=0)
    keep = variance > threshold
    return [c for c, k in zip(values.columns, keep, strict=True) if not k]


def _infrequent(values: pd.DataFrame, settings: dict[str, Any]) -> list[str]:
    freq_cut = _fraction(settings["freq_cut"], "freq_cut")
    unique_cut = _fraction(settings["unique_cut"], "unique_cut")
    dropped = []
    for column in values.columns:
        counts = np.sort(values[column].value_counts().to_numpy())[::-1]
        ratio = counts[1] / counts[0] if len(counts) > 1 else 0.0
        if ratio < freq_cut or len(counts) / len(values) < unique_cut:
            dropped.append(str(column))
    return dropped


def _correlated(values: pd.DataFrame, settings: dict[str, Any]) -> list[str]:
    threshold = _fraction(settings["corr_threshold"], "corr_threshold")
    method = settings["corr_method"]
    if method not in ("pearson", "spearman", "kendall"):
        raise ValueError(f"corr_method must be 'pearson', 'spearman' or 'kendall', got {method!r}")
    matrix = values.to_numpy(dtype=np.float64)
    if method == "pearson" and np.isfinite(matrix).all():
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.atleast_2d(np.corrcoef(matrix, rowvar=False))
    else:
        corr = values.corr(method=method).to_numpy()
    # rank of each feature by its summed |correlation|: the higher-ranked one of a pair goes
    rank = np.empty(len(corr), dtype=np.int64)
    rank[np.argsort(np.nansum(np.abs(corr), axis=0), kind="stable")] = np.arange(len(corr))
    later, earlier = np.nonzero(np.tril(corr > threshold, k=-1))
    loser = np.where(rank[later] > rank[earlier], later, earlier)
    names = np.asarray(values.columns, dtype=object)
    return sorted({str(n) for n in names[loser]})


def _mostly_missing(values: pd.DataFrame, settings: dict[str, Any]) -> list[str]:
    cutoff = _fraction(settings["na_cutoff"], "na_cutoff")
    missing = values.isna().mean()
    return [str(c) for c in missing.index[missing.to_numpy() > cutoff]]


def _blocked(values: pd.DataFrame, settings: dict[str, Any]) -> list[str]:
    return blocklist_features([str(c) for c in values.columns], settings["blocklist"])


OPERATIONS: dict[str, Callable[[pd.DataFrame, dict[str, Any]], list[str]]] = {
    "variance_threshold": _low_variance,
    "frequency_threshold": _infrequent,
    "correlation_threshold": _correlated,
    "drop_na_columns": _mostly_missing,
    "blocklist": _blocked,
}
"""Every operation :func:`feature_select` knows, by pycytominer's name."""
