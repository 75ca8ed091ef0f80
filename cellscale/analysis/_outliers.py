"""Outlying cells and wells: distance to the k-th neighbour in a seeded reference sample.

:func:`outlier_scores` gives every cell the distance to its k-th nearest neighbour among
a seeded sample of reference cells of its own plate (or other group), so the cost is
``O(n · sample)`` and the rows stream chunk by chunk; :func:`well_outliers` turns the
cell scores into per-well scores against the plate's other wells.
:func:`plot_outlier_gallery` and :func:`plot_outlier_wells` draw them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
from dask.base import tokenize
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cellscale.plots import _finish, plate_heatmap
from cellscale.profiles._io import as_cell_array

__all__ = ["outlier_scores", "plot_outlier_gallery", "plot_outlier_wells", "well_outliers"]

#: Rows queried against the reference at once inside a chunk (bounds the distance matrix).
QUERY_ROWS = 4096
#: Scale of the median absolute deviation that estimates a normal standard deviation.
MAD_SCALE = 1.4826
PLATE, WELL = "Metadata_Plate", "Metadata_Well"


@dataclass(frozen=True)
class _Reference:
    """One group's reference cells: a fitted neighbour index and what to leave out of it."""

    index: Any
    leave_out: np.ndarray  # per reference row: its leave-out code (or its row position)
    skip: int  # most reference rows a query can have to skip
    projection: Any  # a fitted PCA, or None


def outlier_scores(
    data: Any,
    *,
    k: int = 10,
    by: Any = None,
    leave_out: Any = None,
    sample: int = 10_000,
    n_components: int | None = None,
    seed: int = 0,
) -> Any:
    """Each cell's distance to its ``k``-th nearest reference cell of its group.

    Parameters
    ----------
    data
        ``(n, d)`` dask, NumPy or Zarr array or xarray DataArray: PCA scores, or
        embeddings with ``n_components``.
    k
        Which neighbour's distance is the score.
    by
        Group of each row (e.g. the ``Metadata_Plate`` column), or ``None`` for one
        group. Each group is scored against its own reference sample, so scores compare
        within a group; call per plate file to keep memory per plate.
    leave_out
        Label of each row (e.g. ``Metadata_Well``) whose cells are not neighbours of
        each other: a cell's neighbours come from other labels, so a whole well of
        artefacts cannot hide behind its own cells (wells of a treatment with no
        replicate on the plate then score high as well). ``None``: only a cell itself
        is left out.
    sample
        Reference cells drawn per group, uniformly with a seed (all if fewer).
    n_components
        Project each group on this many principal components of its reference sample
        first (scikit-learn PCA); ``None`` uses ``data`` as it is.
    seed
        Seed of the reference samples.

    Returns
    -------
    dask.array.Array or numpy.ndarray
        ``(n,)`` float64 scores (higher: more outlying); lazy for lazy input, NumPy for
        NumPy input. One task per row chunk; the references are one key of the graph
        (sent once to each worker).

    Raises
    ------
    ValueError
        If ``by`` or ``leave_out`` has another length than ``data``, or a group has too
        few reference cells for ``k`` neighbours outside any one label.
    """
    eager = isinstance(data, np.ndarray)
    values = getattr(data, "data", data) if hasattr(data, "dims") else data
    rows = as_cell_array(values)
    if eager:
        rows = rows.rechunk({0: 65_536})
    n = rows.shape[0]
    groups = np.zeros(n, np.int64) if by is None else _codes(by, n, "by")
    labels = None if leave_out is None else _codes(leave_out, n, "leave_out")
    references = _references(rows, groups, labels, k, sample, n_components, seed)
    key = f"outlier-references-{tokenize(rows.name, k, sample, n_components, seed, groups, labels)}"
    model = dask.delayed(references, name=key, traverse=False)
    column = (rows.chunks[0], (1,))  # (n, 1), so map_blocks aligns them with the rows
    scores = da.map_blocks(
        _score_block,
        rows,
        da.from_array(groups[:, None], chunks=column),
        da.from_array((np.arange(n) if labels is None else labels)[:, None], chunks=column),
        model,
        k=k,
        drop_axis=1,
        chunks=(rows.chunks[0],),
        dtype=np.float64,
        meta=np.empty((0,), np.float64),
        name=f"outlier-scores-{tokenize(key)}",
    )
    return scores.compute() if eager else scores


def _codes(values: Any, n: int, name: str) -> np.ndarray:
    if hasattr(values, "compute"):
        values = values.compute()
    codes, _ = pd.factorize(pd.Series(np.asarray(values)), use_na_sentinel=False)
    if len(codes) != n:
        raise ValueError(f"outlier_scores: {name} has {len(codes):,} labels for {n:,} rows")
    return codes.astype(np.int64)


def _references(
    rows: da.Array,
    groups: np.ndarray,
    labels: np.ndarray | None,
    k: int,
    sample: int,
    n_components: int | None,
    seed: int,
) -> dict[int, _Reference]:
    """Draw each group's reference rows (one pass over the chunks) and index them."""
    rng = np.random.default_rng(seed)
    picked = {}
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        chosen = members if len(members) <= sample else rng.choice(members, sample, replace=False)
        picked[int(group)] = np.sort(chosen)
    every = np.sort(np.concatenate(list(picked.values())))
    loaded = np.asarray(rows[every].compute(), dtype=np.float64)
    return {
        group: _fit_reference(
            loaded[np.searchsorted(every, chosen)],
            chosen if labels is None else labels[chosen],
            k,
            n_components,
            seed,
            group,
        )
        for group, chosen in picked.items()
    }


def _fit_reference(
    values: np.ndarray,
    leave_out: np.ndarray,
    k: int,
    n_components: int | None,
    seed: int,
    group: int,
) -> _Reference:
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    skip = int(np.unique(leave_out, return_counts=True)[1].max())
    if len(values) < k + skip:
        raise ValueError(
            f"outlier_scores: group {group} has {len(values)} reference cells, too few for "
            f"k={k} neighbours outside a cell's own label (the largest label holds {skip}); "
            "lower k or give a larger sample"
        )
    projection = None
    if n_components is not None:
        projection = PCA(n_components, random_state=seed).fit(values)
        values = projection.transform(values)
    index = NearestNeighbors(n_neighbors=k + skip).fit(values)
    return _Reference(index, leave_out, skip, projection)


def _score_block(
    block: np.ndarray,
    groups: np.ndarray,
    labels: np.ndarray,
    references: dict[int, _Reference],
    *,
    k: int,
) -> np.ndarray:
    groups, labels = groups[:, 0], labels[:, 0]
    scores = np.empty(block.shape[0], np.float64)
    for group in np.unique(groups):
        where = np.flatnonzero(groups == group)
        for start in range(0, len(where), QUERY_ROWS):
            part = where[start : start + QUERY_ROWS]
            scores[part] = _kth_distance(block[part], labels[part], references[int(group)], k)
    return scores


def _kth_distance(
    rows: np.ndarray, labels: np.ndarray, reference: _Reference, k: int
) -> np.ndarray:
    """Distance to the k-th reference row whose leave-out code differs from the row's own."""
    values = np.asarray(rows, dtype=np.float64)
    if reference.projection is not None:
        values = reference.projection.transform(values)
    distances, neighbours = reference.index.kneighbors(values, n_neighbors=k + reference.skip)
    kept = reference.leave_out[neighbours] != labels[:, None]
    # the k-th kept neighbour: the first column where the running count of kept ones is k
    column = np.argmax(np.cumsum(kept, axis=1) == k, axis=1)
    return distances[np.arange(len(values)), column]


def well_outliers(
    cell_scores: Any,
    metadata: pd.DataFrame,
    *,
    cell_mads: float = 3.0,
    well_z: float = 3.5,
) -> pd.DataFrame:
    """Per-well outlier scores from cell scores, each well against its plate's wells.

    Parameters
    ----------
    cell_scores
        ``(n,)`` scores from :func:`outlier_scores` (NumPy or dask).
    metadata
        The cells' ``Metadata_Plate`` and ``Metadata_Well`` (pandas or dask), row for
        row; other columns are ignored.
    cell_mads
        A cell is outlying when its score exceeds its plate's median cell score by this
        many robust standard deviations (1.4826 × MAD).
    well_z
        A well is outlying when its ``robust_z`` exceeds this.

    Returns
    -------
    pandas.DataFrame
        One row per well: ``Metadata_Plate``, ``Metadata_Well``, ``n_cells``,
        ``median_score``, ``fraction_outlying`` (of its cells), ``robust_z`` (the larger
        of the robust z-scores of its median score and of its outlying fraction among the
        plate's wells; the fraction's spread is taken as at least one cell of a median
        well) and ``outlying`` (``robust_z > well_z``); most outlying first.
    """
    table = _score_table(cell_scores, metadata)
    median, spread = _robust(table.groupby(PLATE)["score"])
    threshold = table[PLATE].map(median + cell_mads * spread)
    table["outlying"] = table["score"] > threshold
    wells = (
        table.groupby([PLATE, WELL], sort=True)
        .agg(
            n_cells=("score", "size"),
            median_score=("score", "median"),
            fraction_outlying=("outlying", "mean"),
        )
        .reset_index()
    )
    by_plate = wells.groupby(PLATE)
    one_cell = 1.0 / by_plate["n_cells"].median()  # a fraction's spread is at least one cell
    z = np.maximum(
        _robust_z(wells, by_plate["median_score"], "median_score"),
        _robust_z(wells, by_plate["fraction_outlying"], "fraction_outlying", one_cell),
    )
    wells["robust_z"] = z
    wells["outlying"] = z > well_z
    return wells.sort_values("robust_z", ascending=False, ignore_index=True)


def _score_table(cell_scores: Any, metadata: Any) -> pd.DataFrame:
    missing = [c for c in (PLATE, WELL) if c not in metadata.columns]
    if missing:
        raise ValueError(f"well_outliers: the metadata has no {missing} column(s)")
    columns = metadata[[PLATE, WELL]]
    frame = columns.compute() if hasattr(columns, "compute") else columns
    scores = np.asarray(cell_scores, dtype=np.float64)
    if len(frame) != len(scores):
        raise ValueError(f"well_outliers: {len(scores):,} cell scores for {len(frame):,} rows")
    return frame.reset_index(drop=True).assign(score=scores)


def _robust(grouped: Any) -> tuple[pd.Series, pd.Series]:
    """Median and robust standard deviation (MAD-based, floored above 0) per group."""
    median = grouped.median()
    mad = grouped.apply(lambda s: float(np.median(np.abs(s - s.median()))))
    floor = 1e-9 * np.maximum(median.abs(), 1.0)
    return median, np.maximum(MAD_SCALE * mad, floor)


def _robust_z(
    wells: pd.DataFrame, grouped: Any, column: str, floor: pd.Series | None = None
) -> np.ndarray:
    median, spread = _robust(grouped)
    if floor is not None:
        spread = np.maximum(spread, floor)
    plate = wells[PLATE]
    return ((wells[column] - plate.map(median)) / plate.map(spread)).to_numpy(float)


def plot_outlier_gallery(
    crops: np.ndarray,
    scores: Any,
    *,
    top: int = 24,
    columns: int = 8,
    channel: int | None = None,
    labels: Any = None,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """The most outlying cells' crops, highest score first, each titled with its score.

    Parameters
    ----------
    crops
        ``(n, y, x)`` or ``(n, c, y, x)`` crops, row for row with ``scores``; with
        channels, the first three are drawn as red, green and blue (or only
        ``channel``, in grey).
    scores
        ``(n,)`` outlier scores.
    top
        How many cells to show.
    columns
        Crops per row of the gallery.
    channel
        Draw only this channel.
    labels
        Optional text per cell (e.g. its well), added under its score.
    title, path
        Figure title; write a PNG here.
    """
    values = np.asarray(scores, dtype=np.float64)
    if len(values) != crops.shape[0]:
        raise ValueError(
            f"plot_outlier_gallery: {crops.shape[0]:,} crops for {len(values):,} scores"
        )
    order = np.argsort(-values, kind="stable")[:top]
    rows = max(1, -(-len(order) // columns))
    fig = Figure(figsize=(1.3 * columns, 1.45 * rows + 0.4), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False)
    for position, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if position < len(order):
            cell = order[position]
            ax.imshow(_display(np.asarray(crops[cell]), channel), cmap="gray")
            text = f"{values[cell]:.3g}"
            if labels is not None:
                text += f"\n{np.asarray(labels)[cell]}"
            ax.set_title(text, fontsize="x-small")
    fig.suptitle(title or f"{len(order)} most outlying of {len(values):,} cells", fontsize="small")
    return _finish(fig, path)


def _display(crop: np.ndarray, channel: int | None) -> np.ndarray:
    """A crop as a grey image or an RGB of its first three channels, each scaled to 0..1."""
    if crop.ndim == 3 and channel is not None:
        crop = crop[channel]
    if crop.ndim == 2:
        return _unit(crop.astype(np.float64))
    planes = [_unit(plane.astype(np.float64)) for plane in crop[:3]]
    planes += [np.zeros_like(planes[0])] * (3 - len(planes))
    return np.stack(planes, axis=-1)


def _unit(plane: np.ndarray) -> np.ndarray:
    low, high = np.percentile(plane, [0.5, 99.5])
    return np.clip((plane - low) / (high - low), 0, 1) if high > low else np.zeros_like(plane)


def plot_outlier_wells(
    wells: pd.DataFrame,
    *,
    plate: str | None = None,
    column: str = "robust_z",
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """A plate heatmap of a per-well outlier score from :func:`well_outliers`.

    Parameters
    ----------
    wells
        The table from :func:`well_outliers`.
    plate
        The plate to draw; needed only when the table has several.
    column
        The score to draw (``robust_z``, ``fraction_outlying`` or ``median_score``).
    title, path
        Figure title (default: the plate and how many wells are outlying); write a PNG here.
    """
    plates = sorted(wells[PLATE].astype(str).unique())
    if plate is None and len(plates) != 1:
        raise ValueError(f"plot_outlier_wells: the table has plates {plates}; choose one")
    chosen = plates[0] if plate is None else str(plate)
    if chosen not in plates:
        raise ValueError(
            f"plot_outlier_wells: plate {chosen!r} is not in the table; it has {plates}"
        )
    rows = wells[wells[PLATE].astype(str) == chosen]
    n_out = int(rows["outlying"].sum())
    series = pd.Series(rows[column].to_numpy(float), index=rows[WELL].astype(str), name=column)
    return plate_heatmap(
        series,
        label=column,
        cmap="magma",
        title=title or f"{chosen}: {n_out} outlying well(s) of {len(rows)}",
        path=path,
    )
