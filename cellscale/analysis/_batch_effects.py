"""Batch effects: does batch or treatment shape the profiles more? Silhouettes, kNN mixing, figures.

Two numbers per grouping, each computed on the same seeded subsample of profiles:

- the **silhouette** of the profiles grouped by that column (scikit-learn; -1 to 1, about 0
  when the groups overlap completely);
- **kNN mixing**: the fraction of each profile's ``k`` nearest neighbours that share its value,
  against the fraction expected by chance, with an *excess* ``(observed - chance) / (1 - chance)``
  (0 at chance, 1 when every neighbour shares the value) and a permutation p-value.

A grouping by batch that beats the grouping by treatment means the screen reads batches
more than biology: normalise (e.g. per plate against controls) and compare again with
:func:`compare_batch_effect`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cellscale._optional import import_optional
from cellscale.plots import _draw_points, _finish
from cellscale.profiles._table import METADATA_PREFIX, feature_columns

__all__ = [
    "batch_effect",
    "compare_batch_effect",
    "plot_batch_effect",
    "plot_batch_effect_numbers",
]

#: Numeric columns of cellscale tables that identify rows and are never features.
IDENTIFIER_COLUMNS = ("cell_id",)
#: The groupings :func:`batch_effect` measures, in the order of its columns.
ROLES = ("batch", "treatment")


def batch_effect(
    profiles: Any,
    *,
    batch: str = "Metadata_Batch",
    treatment: str = "Metadata_Treatment",
    features: Sequence[str] | None = None,
    k: int = 15,
    sample: int = 5_000,
    metric: str = "euclidean",
    permutations: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Measure whether batch or treatment groups the profiles more tightly.

    Parameters
    ----------
    profiles
        Per-well profiles (``profiles/wells.parquet``) or per-cell PCA scores
        (``scores.parquet`` of one or several plates) as a pandas DataFrame, a pyarrow
        Table or a dask DataFrame (of which only a seeded sample of about ``sample`` rows
        is computed, partition by partition). Features should share a scale, as
        normalised profiles and PCA scores do.
    batch, treatment
        The metadata columns that name each row's batch and treatment.
    features
        Feature columns; by default every numeric column not prefixed ``Metadata_``
        (``cell_id`` excluded).
    k
        Neighbours per profile for kNN mixing.
    sample
        Most rows used; larger inputs are subsampled uniformly at random (silhouettes
        cost ``sample`` squared distances).
    metric
        Distance for silhouettes and neighbours (scikit-learn name, e.g. ``"cosine"``).
    permutations
        Label shuffles that give each kNN fraction its p-value.
    alpha
        A kNN excess counts when its p-value is below this.
    seed
        Seed of the subsample and the permutations.

    Returns
    -------
    pandas.DataFrame
        One row: ``n_profiles``, ``k``; for ``batch`` and ``treatment`` each a
        ``silhouette_<g>``, ``knn_<g>`` (observed same-value fraction), ``knn_<g>_chance``,
        ``knn_<g>_excess`` and ``knn_<g>_p``; and ``dominant``: ``"batch"`` or
        ``"treatment"`` (whichever has the larger significant kNN excess) or ``"neither"``.

    Raises
    ------
    ValueError
        If a column is missing (with the closest name), has one value, is empty in some
        rows or gives every row its own value; or if features are missing or not finite.

    See Also
    --------
    compare_batch_effect : The same numbers before and after normalisation.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> wells = pd.DataFrame(
    ...     {
    ...         "Metadata_Batch": np.repeat(["b1", "b2"], 20),
    ...         "Metadata_Treatment": np.tile(["x", "y"], 20),
    ...         "f1": rng.normal(size=40) + np.repeat([0.0, 5.0], 20),
    ...         "f2": rng.normal(size=40),
    ...     }
    ... )
    >>> batch_effect(wells, k=5)[["knn_batch", "dominant"]]
       knn_batch dominant
    0        1.0    batch
    """
    neighbors = import_optional("sklearn.neighbors", "batch-effect kNN mixing")
    frame = _sampled(profiles, sample, seed)
    x = feature_matrix(frame, features)
    codes = {
        "batch": _group_codes(frame, batch, "batch"),
        "treatment": _group_codes(frame, treatment, "treatment"),
    }
    if not 1 <= k < len(frame):
        raise ValueError(f"k must be between 1 and {len(frame) - 1} (rows - 1), got {k}")
    nearest = neighbors.NearestNeighbors(n_neighbors=k, metric=metric).fit(x)
    neighbours = nearest.kneighbors(return_distance=False)
    rng = np.random.default_rng(seed)
    row: dict[str, Any] = {"n_profiles": len(frame), "k": k}
    for role in ROLES:
        row[f"silhouette_{role}"] = _silhouette(x, codes[role], metric)
        row |= _knn_mixing(role, codes[role], neighbours, permutations, rng)
    row["dominant"] = _dominant(row, alpha)
    return pd.DataFrame([row])


def compare_batch_effect(before: Any, after: Any, **options: Any) -> pd.DataFrame:
    """:func:`batch_effect` of the same screen before and after normalisation, side by side.

    Parameters
    ----------
    before, after
        Profiles before and after normalisation (any input :func:`batch_effect` takes).
    **options
        Passed to :func:`batch_effect` for both (``batch``, ``treatment``, ``k`` …).

    Returns
    -------
    pandas.DataFrame
        :func:`batch_effect`'s columns, one row each, indexed ``"before"`` and ``"after"``.
    """
    rows = [batch_effect(before, **options), batch_effect(after, **options)]
    table = pd.concat(rows, ignore_index=True)
    table.index = pd.Index(["before", "after"], name="profiles")
    return table


def plot_batch_effect(
    coords: Any,
    metadata: pd.DataFrame,
    columns: Sequence[str] = ("Metadata_Plate", "Metadata_Batch", "Metadata_Treatment"),
    *,
    axis_labels: tuple[str, str] | None = None,
    max_points: int = 20_000,
    seed: int = 0,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Scatter PCA or UMAP coordinates once per column, coloured by its values.

    Parameters
    ----------
    coords
        ``(n, 2)`` coordinates (array, or DataFrame whose two column names label the axes).
    metadata
        ``n`` rows of metadata aligned with ``coords``.
    columns
        One panel each, drawn as categories. A column with a single value is skipped and
        named in the figure's title.
    axis_labels
        Names of the two axes; default the DataFrame's column names, else ``"1"``, ``"2"``.
    max_points
        Rows drawn; larger inputs are subsampled uniformly at random (one subsample for all
        panels).
    seed
        Seed of the subsampling.
    path
        Write a PNG here.

    Raises
    ------
    ValueError
        If ``coords`` is not ``(n, 2)`` of ``metadata``'s length, a column is missing, or
        every column has a single value.
    """
    xy = np.asarray(coords, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(metadata):
        raise ValueError(
            f"coords must be (n, 2) for the {len(metadata)} metadata rows, got {xy.shape}"
        )
    names = axis_labels or _axis_names(coords)
    for column in columns:
        require_column(metadata, column, "colour")
    shown = [c for c in columns if metadata[c].nunique(dropna=False) > 1]
    if not shown:
        raise ValueError(f"every column of {list(columns)} has a single value: nothing to colour")
    rows = np.arange(len(xy))
    if len(xy) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(len(xy), max_points, replace=False))
    fig = _new_figure((5.6 * len(shown), 4.8))
    for ax, column in zip(fig.subplots(1, len(shown), squeeze=False)[0], shown, strict=True):
        values = metadata[column].iloc[rows].astype(str).reset_index(drop=True)
        _draw_points(fig, ax, xy[rows], values, column.removeprefix(METADATA_PREFIX), log=False)
        ax.set(xlabel=names[0], ylabel=names[1], title=f"by {column}")
    fig.suptitle(_scatter_title(len(rows), len(xy), metadata, columns, shown))
    return _finish(fig, path)


def plot_batch_effect_numbers(
    table: pd.DataFrame, *, path: str | os.PathLike[str] | None = None
) -> Figure:
    """Bars of the silhouettes and kNN excesses by batch and by treatment, row by row.

    Parameters
    ----------
    table
        :func:`batch_effect` (one row) or :func:`compare_batch_effect` (before, after).
    path
        Write a PNG here.
    """
    fig = _new_figure((8.0, 3.6))
    labels = [str(i) for i in table.index]
    width = 0.38
    places = np.arange(len(table))
    panels = (("silhouette_{}", "silhouette"), ("knn_{}_excess", "kNN excess over chance"))
    for ax, (pattern, title) in zip(fig.subplots(1, 2), panels, strict=True):
        for offset, role, color in (
            (-width / 2, "batch", "#d1495b"),
            (width / 2, "treatment", "#3b6ea5"),
        ):
            heights = table[pattern.format(role)].to_numpy(float)
            ax.bar(places + offset, heights, width, label=f"by {role}", color=color)
        ax.axhline(0, color="0.3", linewidth=0.8)
        ax.set(xticks=places, xticklabels=labels, title=title)
    fig.axes[1].legend(frameon=False, fontsize="small", loc="center left", bbox_to_anchor=(1, 0.5))
    readings = [
        f"{label}: {_reading(d)}" for label, d in zip(labels, table["dominant"], strict=True)
    ]
    fig.suptitle(" · ".join(readings))
    return _finish(fig, path)


def require_column(frame: pd.DataFrame, column: str, role: str) -> None:
    """Raise a ValueError naming ``column`` and the closest existing name if it is missing."""
    if column in frame.columns:
        return
    names = [str(c) for c in frame.columns]
    close = difflib.get_close_matches(column, names, n=1)
    metadata = [c for c in names if c.startswith(METADATA_PREFIX)]
    hint = f"did you mean {close[0]!r}?" if close else f"its metadata columns are {metadata[:12]}"
    raise ValueError(f"the {role} column {column!r} is not in the profiles; {hint}")


def feature_matrix(frame: pd.DataFrame, features: Sequence[str] | None) -> np.ndarray:
    """The ``(rows, features)`` float64 matrix of ``frame``, checked present and finite."""
    if features is None:
        names = [c for c in feature_columns(frame) if c not in IDENTIFIER_COLUMNS]
    else:
        for name in features:
            require_column(frame, name, "feature")
        names = list(features)
    if not names:
        raise ValueError("the profiles have no feature columns (numeric, not Metadata_)")
    x = frame[names].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(x).all(axis=0)
    if bad.any():
        culprits = [n for n, b in zip(names, bad, strict=True) if b]
        raise ValueError(
            f"feature columns {culprits[:5]} hold NaN or infinite values; drop or impute them"
        )
    return x


def _sampled(profiles: Any, sample: int, seed: int) -> pd.DataFrame:
    """At most ``sample`` rows of ``profiles`` as pandas, chosen uniformly at random."""
    if hasattr(profiles, "dask"):
        total = len(profiles)
        fraction = min(1.0, sample / max(total, 1))
        profiles = profiles.sample(frac=fraction, random_state=seed).compute()
    elif not isinstance(profiles, pd.DataFrame):
        profiles = profiles.to_pandas()
    if len(profiles) <= sample:
        return profiles
    rows = np.sort(np.random.default_rng(seed).choice(len(profiles), sample, replace=False))
    return profiles.iloc[rows]


def _group_codes(frame: pd.DataFrame, column: str, role: str) -> np.ndarray:
    """Integer codes of ``column``'s values, checked to form at least two real groups."""
    require_column(frame, column, role)
    values = frame[column]
    empty = int(values.isna().sum())
    if empty:
        raise ValueError(
            f"the {role} column {column!r} is empty in {empty} rows; fill or drop them"
        )
    codes, uniques = pd.factorize(values)
    if len(uniques) < 2:
        raise ValueError(
            f"the {role} column {column!r} has one value ({uniques[0]!r}) in these profiles; "
            f"a {role} effect needs profiles of at least two (e.g. a sample of several plates)"
        )
    if len(uniques) == len(values):
        raise ValueError(
            f"the {role} column {column!r} gives every profile its own value; "
            "groups need at least two profiles"
        )
    return np.asarray(codes)


def _silhouette(x: np.ndarray, codes: np.ndarray, metric: str) -> float:
    metrics = import_optional("sklearn.metrics", "batch-effect silhouettes")
    return float(metrics.silhouette_score(x, codes, metric=metric))


def _knn_mixing(
    role: str,
    codes: np.ndarray,
    neighbours: np.ndarray,
    permutations: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Observed same-value neighbour fraction, its chance level, excess and permutation p."""
    observed = _same_fraction(codes, neighbours)
    counts = np.bincount(codes).astype(np.float64)
    n = len(codes)
    chance = float((counts * (counts - 1)).sum() / (n * (n - 1)))
    null = np.array(
        [_same_fraction(rng.permutation(codes), neighbours) for _ in range(permutations)]
    )
    return {
        f"knn_{role}": observed,
        f"knn_{role}_chance": chance,
        f"knn_{role}_excess": (observed - chance) / (1 - chance),
        f"knn_{role}_p": float((1 + (null >= observed).sum()) / (permutations + 1)),
    }


def _same_fraction(codes: np.ndarray, neighbours: np.ndarray) -> float:
    """Mean share of each row's neighbours that carry the row's own code."""
    return float((codes[neighbours] == codes[:, np.newaxis]).mean())


def _dominant(row: dict[str, Any], alpha: float) -> str:
    significant = {r: row[f"knn_{r}_excess"] for r in ROLES if row[f"knn_{r}_p"] < alpha}
    return max(significant, key=significant.__getitem__) if significant else "neither"


def _reading(dominant: str) -> str:
    return "no grouping dominates" if dominant == "neither" else f"{dominant} dominates"


def _axis_names(coords: Any) -> tuple[str, str]:
    if isinstance(coords, pd.DataFrame):
        return str(coords.columns[0]), str(coords.columns[1])
    return "1", "2"


def _scatter_title(
    drawn: int, total: int, metadata: pd.DataFrame, columns: Sequence[str], shown: list[str]
) -> str:
    title = f"{drawn:,} of {total:,} points" if drawn < total else f"{total:,} points"
    skipped = [
        f"{c} not shown: one value ({metadata[c].iloc[0]!r})" for c in columns if c not in shown
    ]
    return "; ".join([title, *skipped])


def _new_figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig
