"""Profile figures (matplotlib, drawn off-screen with Agg): PCA scatter, explained variance,
plate heatmaps, QC heatmaps, and the figures of per-well profiles (their PCA, dose-response
curves and replicate correlation). Every function returns the
:class:`~matplotlib.figure.Figure` and writes a PNG when given ``path``; none touches
pyplot's global state.

Colours of concentrations and doses (values whose name or label says so) follow a log
scale by default; ``log=`` forces it on or off.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colorbar import Colorbar
from matplotlib.colors import CenteredNorm, LogNorm, Normalize, SymLogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

from cellscale.plate import row_index, row_letters, split_well

__all__ = [
    "dose_response",
    "explained_variance",
    "pca_scatter",
    "plate_heatmap",
    "qc_heatmap",
    "replicate_correlation",
    "well_pca",
]

#: (rows, columns) of the standard plate formats, smallest first.
PLATE_FORMATS = ((8, 12), (16, 24), (32, 48))
#: Most categories drawn with distinct colours and listed in a legend.
MAX_CATEGORIES = 20
#: Names of values drawn on a log colour scale unless ``log=False``.
LOG_SCALE_NAMES = re.compile(r"concentration|dose", re.IGNORECASE)
_SUFFIXES = ("", "k", "M", "G", "T")
#: Edge colour of the wells :func:`qc_heatmap` marks.
FLAG_COLOR = "#d1495b"


def pca_scatter(
    scores: Any,
    color: Any = None,
    *,
    components: tuple[int, int] = (0, 1),
    max_points: int = 20_000,
    label: str | None = None,
    log: bool | None = None,
    title: str | None = None,
    seed: int = 0,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Scatter two principal components of cells or wells, coloured by any column.

    Parameters
    ----------
    scores
        ``(n, k)`` NumPy or dask array of PCA scores (e.g. ``PCA.transform`` output).
        Only the two plotted columns (and, for large ``n``, only a random subset of
        rows) are computed.
    color
        Length-``n`` values (array or Series): numbers give a continuous colour bar,
        anything else (strings, booleans, categories) a legend. ``None`` with more than
        ``max_points`` rows draws a hexbin density of all rows instead.
    components
        Zero-based indices of the components on x and y.
    max_points
        Rows drawn as points; larger inputs are subsampled uniformly at random.
    label
        Name of the colour variable (legend/colour-bar title); defaults to the name of
        a ``color`` Series.
    log
        Colour numbers on a log scale (zeros, e.g. controls, at its bottom). ``None``
        does so when ``label`` or the Series name holds "concentration" or "dose" and
        no value is negative.
    title
        Figure title.
    seed
        Seed of the subsampling.
    path
        Write a PNG here.
    """
    n = scores.shape[0]
    cols = list(components)
    fig, ax = _figure((6.4, 5.4))
    ax.set_xlabel(f"PC{cols[0] + 1}")
    ax.set_ylabel(f"PC{cols[1] + 1}")
    if color is None and n > max_points:
        xy = np.asarray(scores[:, cols])
        hb = ax.hexbin(xy[:, 0], xy[:, 1], gridsize=80, bins="log", cmap="viridis", mincnt=1)
        fig.colorbar(hb, ax=ax, label="cells per bin")
        ax.set_title(title or f"{n:,} points (density)")
    else:
        rows = np.arange(n)
        if n > max_points:
            rows = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
        xy = np.asarray(scores[rows][:, cols])
        values = None if color is None else pd.Series(np.asarray(color)[rows])
        name = label if label is not None else str(getattr(color, "name", None) or "")
        _draw_points(fig, ax, xy, values, name, log)
        shown = f"{len(rows):,} of {n:,} points" if len(rows) < n else f"{n:,} points"
        ax.set_title(title or shown)
    return _finish(fig, path)


def _draw_points(
    fig: Figure, ax: Axes, xy: np.ndarray, values: pd.Series | None, label: str, log: bool | None
) -> None:
    size = float(np.clip(2000 / max(len(xy), 1) ** 0.5, 2, 40))
    style: dict[str, Any] = {"s": size, "alpha": 0.7, "linewidths": 0}
    if values is None:
        ax.scatter(xy[:, 0], xy[:, 1], color="#3b6ea5", **style)
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.to_numpy(float)
        norm = _log_norm(numbers, label, log)
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=numbers, cmap="viridis", norm=norm, **style)
        _compact_ticks(fig.colorbar(sc, ax=ax, label=label), norm)
    else:
        categories = values.astype(str)
        names = categories.value_counts().index[:MAX_CATEGORIES]
        palette = _category_colors(len(names))
        for name, rgba in zip(names, palette, strict=True):
            chosen = (categories == name).to_numpy()
            ax.scatter(xy[chosen, 0], xy[chosen, 1], color=rgba, label=name, **style)
        rest = ~categories.isin(names).to_numpy()
        if rest.any():
            ax.scatter(xy[rest, 0], xy[rest, 1], color="0.75", label="other", **style)
        legend = ax.legend(
            title=label or None,
            markerscale=max(1.0, 6 / size**0.5),
            fontsize="small",
            loc="center left",
            bbox_to_anchor=(1.02, 0.5),
            frameon=False,
        )
        legend.set_in_layout(True)


def explained_variance(
    pca_or_ratio: Any,
    *,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Bars of each component's explained-variance ratio and its cumulative curve.

    Parameters
    ----------
    pca_or_ratio
        A fitted :class:`cellscale.PCA` (or any object with ``explained_variance_ratio_``)
        or the ratios themselves.
    title
        Figure title.
    path
        Write a PNG here.
    """
    ratio = np.asarray(getattr(pca_or_ratio, "explained_variance_ratio_", pca_or_ratio))
    k = np.arange(1, len(ratio) + 1)
    fig, ax = _figure((6.4, 4.2))
    ax.bar(k, ratio * 100, color="#3b6ea5", width=0.8, label="per component")
    ax.set_xlabel("principal component")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"PC{x:.0f}"))
    ax.set_ylabel("explained variance (%)")
    twin = ax.twinx()
    twin.plot(k, np.cumsum(ratio) * 100, color="#d1495b", marker="o", ms=3, label="cumulative")
    twin.set_ylabel("cumulative (%)", color="#d1495b")
    twin.set_ylim(0, 100)
    ax.set_xlim(0.3, len(ratio) + 0.7)
    ax.set_title(title or f"{len(ratio)} components, {ratio.sum():.1%} of variance")
    return _finish(fig, path)


def plate_heatmap(
    values: Mapping[str, float] | pd.Series,
    *,
    label: str | None = None,
    title: str | None = None,
    cmap: str = "viridis",
    center: float | None = None,
    log: bool | None = None,
    annotate: bool = True,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Draw a per-well value on the plate layout (rows A.., columns 1..).

    Parameters
    ----------
    values
        Mapping or Series from well name (``"B03"``, ``"b3"``) to a number, e.g. cell
        counts or a well's mean PC1 score. Wells absent from it are drawn blank.
    label
        Colour-bar title; defaults to the Series' name.
    title
        Figure title.
    cmap
        Matplotlib colour map.
    center
        Value at the middle of the colour map (use with a diverging ``cmap``, e.g.
        ``center=0`` for PC scores).
    log
        Colour on a log scale (zeros at its bottom). ``None`` does so, unless ``center``
        is given, when the label or Series name holds "concentration" or "dose" and no
        value is negative.
    annotate
        Print each value in its well, shortened to fit (``2.1k``, ``0.03``), in a smaller
        font on plates of more than 96 wells.
    path
        Write a PNG here.

    Raises
    ------
    ValueError
        If ``log`` and ``center`` are both given, or ``log=True`` meets negative values.
    """
    if log and center is not None:
        raise ValueError("plate_heatmap: give either center or log=True, not both")
    series = pd.Series(values, dtype=float)
    label = label if label is not None else str(getattr(values, "name", None) or "")
    cells = [(row_index(r), c - 1) for r, c in (split_well(str(w)) for w in series.index)]
    n_rows, n_cols = _plate_format(cells)
    grid = np.full((n_rows, n_cols), np.nan)
    for (r, c), value in zip(cells, series.to_numpy(), strict=True):
        grid[r, c] = value
    fig, ax = _figure((1.6 + 0.42 * n_cols, 1.0 + 0.42 * n_rows))
    norm = CenteredNorm(vcenter=center) if center is not None else _log_norm(grid, label, log)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="equal")
    _compact_ticks(fig.colorbar(image, ax=ax, label=label, shrink=0.85), norm)
    ax.set_xticks(range(n_cols), [str(c + 1) for c in range(n_cols)], fontsize="small")
    ax.set_yticks(range(n_rows), [row_letters(r) for r in range(n_rows)], fontsize="small")
    ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False, length=0)
    ax.set_xticks(np.arange(-0.5, n_cols), minor=True)
    ax.set_yticks(np.arange(-0.5, n_rows), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if annotate:
        _annotate(ax, grid, image, fontsize=6.5 if n_rows * n_cols <= 96 else 5.0)
    if title:
        ax.set_title(title, pad=22)
    return _finish(fig, path)


def qc_heatmap(
    table: pd.DataFrame,
    column: str,
    *,
    channel: str | None = None,
    t: float | None = None,
    reduce: str = "mean",
    mark: str | None = "flagged",
    title: str | None = None,
    cmap: str = "viridis",
    log: bool | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Draw a QC measure on the plate layout, outlining the wells with a flagged image.

    Parameters
    ----------
    table
        A QC table (:func:`cellscale.qc` or :func:`cellscale.quality.read_qc`).
    column
        The measure to draw, e.g. ``"focus_laplacian_norm"``, ``"p99"``, ``"n_cells"`` or a
        flag (whose mean over fields is the fraction flagged).
    channel, t
        The channel and time point to draw; needed only when the table has several.
    reduce
        How a well's fields combine: any pandas aggregation name (``"mean"``,
        ``"median"``, ``"min"``, ``"max"``).
    mark
        A boolean column: wells where it is true in any field are outlined; ``None`` marks
        nothing.
    title
        Figure title; by default the column, channel and how fields combine, and how many
        wells are outlined.
    cmap, log, path
        As for :func:`plate_heatmap`.

    Raises
    ------
    ValueError
        If ``column`` or ``mark`` is not in the table, or ``channel`` or ``t`` is needed
        (or not in the table).
    """
    for name in (column, mark):
        if name is not None and name not in table.columns:
            raise ValueError(f"qc_heatmap: {name!r} is not a column of the QC table")
    rows = _pick(_pick(table, "channel", channel), "t", t)
    chosen = str(rows["channel"].iloc[0])
    values = rows.groupby("well")[column].agg(reduce).astype(float).rename(column)
    marked = [] if mark is None else sorted(rows.loc[rows[mark].to_numpy(bool), "well"].unique())
    if title is None:
        title = f"{column} ({chosen}), {reduce} over fields"
        if marked:
            title += f"\noutlined: {len(marked)} well(s) with {mark} images"
    fig = plate_heatmap(values, label=column, title=title, cmap=cmap, log=log)
    ax = fig.axes[0]
    for well in marked:
        row, col = split_well(str(well))
        corner = (col - 1.42, row_index(row) - 0.42)  # inside the white grid lines
        ax.add_patch(
            Rectangle(corner, 0.84, 0.84, fill=False, edgecolor=FLAG_COLOR, lw=2, zorder=3)
        )
    return _finish(fig, path)


def well_pca(
    wells: pd.DataFrame,
    *,
    color: str | None = "Metadata_treatment",
    size: str | None = "Metadata_concentration",
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """PC1 against PC2 of per-well profiles, coloured by one column and sized by another.

    Parameters
    ----------
    wells
        One row per well: ``Metadata_*`` columns and one numeric column per feature. The
        features (numeric, finite in every well, not constant) are z-scored across wells
        before the PCA.
    color
        A column whose values (e.g. treatments) colour the wells, with a legend; ``None``
        draws every well in one colour.
    size
        A numeric column (e.g. concentrations) whose values size the markers on a log
        scale (missing values and zeros smallest); ``None`` gives every well one size.
    title
        Figure title; by default the number of wells and features.
    path
        Write a PNG here.

    Raises
    ------
    ValueError
        If a named column is missing, fewer than three wells or two features are usable.
    """
    _require_columns(wells, [c for c in (color, size) if c is not None], "well_pca")
    z, features = _standardised_features(wells, "well_pca")
    if len(z) < 3:
        raise ValueError(f"well_pca: {len(z)} well(s); a PCA of wells needs at least 3")
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    xy, ratio = u[:, :2] * s[:2], s**2 / np.sum(s**2)
    fig, ax = _figure((6.4, 5.4))
    areas = np.full(len(z), 36.0) if size is None else _dose_areas(wells[size])
    groups = pd.Series("wells", index=wells.index) if color is None else wells[color].astype(str)
    names = groups.value_counts().index[:MAX_CATEGORIES]
    for name, rgba in zip(names, _category_colors(len(names)), strict=True):
        chosen = (groups == name).to_numpy()
        ax.scatter(xy[chosen, 0], xy[chosen, 1], s=areas[chosen], color=rgba, label=name)
    rest = ~groups.isin(names).to_numpy()
    if rest.any():
        ax.scatter(xy[rest, 0], xy[rest, 1], s=areas[rest], color="0.75", label="other")
    if size is not None:
        _size_legend(ax, wells[size], size)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    ax.set_xlabel(f"PC1 ({ratio[0]:.0%})")
    ax.set_ylabel(f"PC2 ({ratio[1]:.0%})" if len(ratio) > 1 else "PC2")
    ax.set_title(title or f"{len(z):,} wells, {len(features)} features")
    return _finish(fig, path)


def dose_response(
    wells: pd.DataFrame,
    *,
    treatment: str = "Metadata_treatment",
    concentration: str = "Metadata_concentration",
    top: int = 3,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """The features most correlated with concentration, against concentration, per treatment.

    For each treatment with wells at two or more positive concentrations, the ``top``
    features of largest absolute Spearman correlation with concentration over its wells
    are drawn against concentration (log axis): the mean and standard deviation of the
    replicate wells at each concentration, on features z-scored across all wells.

    Parameters
    ----------
    wells
        One row per well: ``treatment``, ``concentration``, other ``Metadata_*`` columns
        and one numeric column per feature.
    treatment, concentration
        The columns naming each well's treatment and concentration.
    top
        How many features to draw per treatment.
    title
        Figure title.
    path
        Write a PNG here.

    Raises
    ------
    ValueError
        If a column is missing, fewer than two features are usable, or no treatment has
        wells at two or more positive concentrations.
    """
    _require_columns(wells, [treatment, concentration], "dose_response")
    z, features = _standardised_features(wells, "dose_response")
    doses = pd.to_numeric(wells[concentration], errors="coerce").to_numpy(float)
    panels = []
    for name, rows in wells.groupby(treatment, sort=True).indices.items():
        rows = rows[np.isfinite(doses[rows]) & (doses[rows] > 0)]
        if len(np.unique(doses[rows])) >= 2:
            chosen = _most_correlated(doses[rows], z[rows], top)
            panels.append((str(name), rows, chosen))
    if not panels:
        raise ValueError(
            f"dose_response: no {treatment} has wells at two or more positive "
            f"{concentration} values"
        )
    n_cols = min(3, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig = Figure(figsize=(4.2 * n_cols, 3.4 * n_rows), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    for i, (name, rows, chosen) in enumerate(panels):
        ax = fig.add_subplot(n_rows, n_cols, i + 1)
        curves = pd.DataFrame(z[np.ix_(rows, chosen)]).groupby(doses[rows], sort=True)
        means, spreads = curves.mean(), curves.std(ddof=1).fillna(0.0)
        for k, column in enumerate(chosen):
            ax.errorbar(
                means.index,
                means[k],
                yerr=spreads[k],
                marker="o",
                ms=3,
                capsize=2,
                label=features[column],
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _compact_number(x)))
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel(concentration.removeprefix("Metadata_"))
        ax.set_ylabel("z-score (mean ± s.d. of wells)")
        ax.legend(fontsize="x-small")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def replicate_correlation(
    wells: pd.DataFrame,
    *,
    keys: Sequence[str] = ("Metadata_treatment", "Metadata_concentration"),
    max_pairs: int = 200_000,
    seed: int = 0,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Pearson correlation of replicate wells' profiles against that of other pairs.

    Wells are replicates when they agree in every ``keys`` column (missing values agree
    with each other). Features are z-scored across wells; the correlation of two wells is
    that of their z-scored profiles. Both distributions are drawn as densities, with
    their medians as vertical lines labelled in the legend.

    Parameters
    ----------
    wells
        One row per well: the ``keys`` columns, other ``Metadata_*`` columns and one
        numeric column per feature.
    keys
        The columns that make wells replicates.
    max_pairs
        Most pairs of each kind used; more are sampled at random.
    seed
        Seed of that sampling.
    title
        Figure title; by default the number of pairs of each kind.
    path
        Write a PNG here.

    Raises
    ------
    ValueError
        If a key column is missing, fewer than two features are usable, or there are no
        replicate pairs or no other pairs.
    """
    _require_columns(wells, list(keys), "replicate_correlation")
    z, _ = _standardised_features(wells, "replicate_correlation")
    rows = z - z.mean(axis=1, keepdims=True)
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    groups = pd.factorize(pd.MultiIndex.from_frame(wells[list(keys)].astype(str)))[0]
    rng = np.random.default_rng(seed)
    same, other = _pairs(groups, max_pairs, rng)
    if len(same) == 0 or len(other) == 0:
        kind = "replicate" if len(same) == 0 else "non-replicate"
        raise ValueError(f"replicate_correlation: no {kind} pairs of wells by {list(keys)}")
    fig, ax = _figure((6.4, 4.2))
    bins = np.linspace(-1, 1, 41).tolist()
    for pairs, name, colour in ((same, "replicates", "#d1495b"), (other, "others", "#3b6ea5")):
        r = _pair_correlations(rows, pairs)
        median = float(np.median(r))
        ax.hist(r, bins=bins, density=True, alpha=0.5, color=colour)
        ax.axvline(median, color=colour, lw=2, label=f"{name} (median {median:.2f})")
    ax.set_xlabel("Pearson correlation of well profiles")
    ax.set_ylabel("density")
    ax.legend(fontsize="small")
    keyed = " & ".join(k.removeprefix("Metadata_") for k in keys)
    ax.set_title(title or f"{len(same):,} replicate pairs (same {keyed}), {len(other):,} others")
    return _finish(fig, path)


def _require_columns(table: pd.DataFrame, columns: Sequence[str], who: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{who}: the wells table has no {', '.join(missing)} column")


def _standardised_features(wells: pd.DataFrame, who: str) -> tuple[np.ndarray, list[str]]:
    """The usable feature columns (numeric, not ``Metadata_``, finite, not constant), z-scored."""
    numeric = [
        c
        for c in wells.columns
        if not str(c).startswith("Metadata_")
        and pd.api.types.is_numeric_dtype(wells[c])
        and not pd.api.types.is_bool_dtype(wells[c])
    ]
    x = wells[numeric].to_numpy(float)
    usable = np.isfinite(x).all(axis=0) & (np.ptp(x, axis=0) > 0 if len(x) else False)
    if usable.sum() < 2:
        raise ValueError(
            f"{who}: the wells table has {int(usable.sum())} usable feature column(s) "
            "(numeric, not Metadata_, finite in every well, not constant); 2 are needed"
        )
    x = x[:, usable]
    names = [c for c, u in zip(numeric, usable, strict=True) if u]
    return (x - x.mean(axis=0)) / x.std(axis=0), names


def _most_correlated(doses: np.ndarray, z: np.ndarray, top: int) -> list[int]:
    """The ``top`` columns of ``z`` of largest absolute Spearman correlation with ``doses``."""
    ranked = pd.DataFrame(z).rank().to_numpy()
    dose_rank = pd.Series(doses).rank().to_numpy()
    centred = ranked - ranked.mean(axis=0)
    spread = np.linalg.norm(centred, axis=0) * np.linalg.norm(dose_rank - dose_rank.mean())
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.abs(centred.T @ (dose_rank - dose_rank.mean()) / spread)
    order = np.argsort(-np.nan_to_num(rho, nan=-1.0), kind="stable")
    return [int(k) for k in order[:top] if np.isfinite(rho[k])]


def _pairs(
    groups: np.ndarray, max_pairs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 2)`` index pairs of wells in the same group and in different groups.

    Every pair of each kind while there are at most ``max_pairs``; a random sample else.
    """
    within = [_pairs_of(np.flatnonzero(groups == g), max_pairs, rng) for g in np.unique(groups)]
    same = np.concatenate(within) if within else np.empty((0, 2), np.int64)
    if len(same) > max_pairs:
        same = same[rng.choice(len(same), max_pairs, replace=False)]
    every = _pairs_of(np.arange(len(groups)), 4 * max_pairs, rng)
    other = every[groups[every[:, 0]] != groups[every[:, 1]]]
    if len(other) > max_pairs:
        other = other[rng.choice(len(other), max_pairs, replace=False)]
    return same, other


def _pair_correlations(rows: np.ndarray, pairs: np.ndarray, block: int = 8192) -> np.ndarray:
    """The dot product of the two rows of each pair, ``block`` pairs at a time.

    Gathering both rows of every pair at once would hold ``2 × pairs × features`` values
    (gigabytes for 200,000 pairs of profiles with a few hundred features).
    """
    return np.concatenate(
        [
            np.einsum("ij,ij->i", rows[part[:, 0]], rows[part[:, 1]])
            for part in np.array_split(pairs, max(-(-len(pairs) // block), 1))
        ]
    )


def _pairs_of(rows: np.ndarray, most: int, rng: np.random.Generator) -> np.ndarray:
    """Every pair of ``rows`` while there are at most ``most``, else ``most`` random pairs."""
    n = len(rows)
    if n * (n - 1) // 2 <= most:
        i, j = np.triu_indices(n, 1)
    else:
        i, j = rng.integers(0, n, (2, most))
        i, j = i[i != j], j[i != j]
    return np.column_stack([rows[i], rows[j]])


def _dose_areas(values: pd.Series) -> np.ndarray:
    """Marker areas growing with log concentration; missing values and zeros smallest."""
    doses = pd.to_numeric(values, errors="coerce").to_numpy(float)
    positive = np.isfinite(doses) & (doses > 0)
    areas = np.full(len(doses), 12.0)
    if positive.any():
        logs = np.log10(doses[positive])
        span = np.ptp(logs)
        areas[positive] = 30 + 120 * ((logs - logs.min()) / span if span > 0 else 0.5)
    return areas


def _size_legend(ax: Axes, values: pd.Series, name: str) -> None:
    """Grey legend entries for the smallest and largest concentrations (and zero, if any)."""
    doses = pd.to_numeric(values, errors="coerce")
    areas = pd.Series(_dose_areas(values), index=values.index)
    shown = doses.dropna().drop_duplicates().sort_values()
    for dose in sorted({shown.iloc[0], shown.iloc[-1]}) if len(shown) else ():
        area = float(areas[doses == dose].iloc[0])
        label = f"{name.removeprefix('Metadata_')} {_compact_number(float(dose))}"
        ax.scatter([], [], s=area, color="0.5", label=label)


def _pick(table: pd.DataFrame, column: str, value: Any) -> pd.DataFrame:
    """The rows of ``table`` with ``value`` in ``column``, which may be omitted if it has one."""
    present = table[column].drop_duplicates().tolist()
    if value is None:
        if len(present) != 1:
            raise ValueError(f"qc_heatmap: the table has {column} {present}; choose one")
        return table
    if value not in present:
        raise ValueError(f"qc_heatmap: {column} {value!r} is not in the table; it has {present}")
    return table[table[column] == value]


def _annotate(ax: Axes, grid: np.ndarray, image: Any, fontsize: float) -> None:
    for (r, c), value in np.ndenumerate(grid):
        if np.isfinite(value):
            red, green, blue, _ = image.cmap(image.norm(value))
            shade = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
            text = _compact_number(value)
            ax.text(c, r, text, ha="center", va="center", fontsize=fontsize, color=shade)


def _compact_number(value: float) -> str:
    """``value`` in a few characters, to fit a plate well or a tick.

    Two significant digits, or all integer digits, with ``k``, ``M``, ``G`` or ``T`` for
    thousands and up and an exponent below 0.01.

    Examples
    --------
    >>> [_compact_number(v) for v in (2090, 12_345, 123_456, 999.7, 3.14159, 0.0304, 4.2e-5)]
    ['2.1k', '12k', '123k', '1k', '3.1', '0.03', '4.2e-5']
    """
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    if abs(value) < 0.01:
        return re.sub(r"e-0*", "e-", f"{value:.1e}")
    power, scaled = 0, _two_digits(value)
    while abs(scaled) >= 1000 and power < len(_SUFFIXES) - 1:
        power += 1
        scaled = _two_digits(value / 1000.0**power)
    return f"{scaled:g}{_SUFFIXES[power]}"


def _two_digits(value: float) -> float:
    """Round to two significant digits, keeping every digit before the point."""
    return round(value, max(0, 1 - math.floor(math.log10(abs(value)))))


def _log_norm(values: np.ndarray, name: str, log: bool | None) -> Normalize | None:
    """A log colour scale for ``values`` when ``log`` (or, if ``None``, ``name``) asks for one.

    Zeros (e.g. untreated controls) sit at the bottom of a symmetric-log scale that is
    linear below the smallest positive value.
    """
    finite = values[np.isfinite(values)]
    valid = finite.size > 0 and finite.min() >= 0 and finite.max() > 0
    if log is None:
        log = valid and LOG_SCALE_NAMES.search(name) is not None
    if not log:
        return None
    if not valid:
        low, high = (finite.min(), finite.max()) if finite.size else (np.nan, np.nan)
        raise ValueError(
            f"a log colour scale needs values >= 0, some > 0; {name or 'the values'} "
            f"range from {low:g} to {high:g}"
        )
    smallest, largest = finite[finite > 0].min(), finite.max()
    if finite.min() > 0:
        return LogNorm(smallest, largest)
    return SymLogNorm(linthresh=smallest, linscale=0.5, vmin=0.0, vmax=largest)


def _compact_ticks(colorbar: Colorbar, norm: Normalize | None) -> None:
    """Label a log colour bar's ticks ``0.01, 0.1, 1`` rather than powers of ten."""
    if isinstance(norm, LogNorm | SymLogNorm):
        colorbar.formatter = FuncFormatter(lambda x, _: _compact_number(x))


def _plate_format(cells: Sequence[tuple[int, int]]) -> tuple[int, int]:
    rows = max((r for r, _ in cells), default=0) + 1
    cols = max((c for _, c in cells), default=0) + 1
    for n_rows, n_cols in PLATE_FORMATS:
        if rows <= n_rows and cols <= n_cols:
            return n_rows, n_cols
    return rows, cols


def _category_colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i) for i in range(n)]


def _figure(size: tuple[float, float]) -> tuple[Figure, Axes]:
    fig = Figure(figsize=size, dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _finish(fig: Figure, path: str | os.PathLike[str] | None) -> Figure:
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
