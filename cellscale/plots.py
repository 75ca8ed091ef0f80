"""Profile figures (matplotlib, drawn off-screen with Agg): PCA scatter, explained variance,
plate heatmaps, QC heatmaps. Every function returns the :class:`~matplotlib.figure.Figure`
and writes a PNG when given ``path``; none touches pyplot's global state.

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

__all__ = ["explained_variance", "pca_scatter", "plate_heatmap", "qc_heatmap"]

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
    annotate: bool | None = None,
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
        Print each value in its well, shortened to fit (``2.1k``, ``0.03``; default: for
        plates of at most 96 wells).
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
    if annotate if annotate is not None else n_rows * n_cols <= 96:
        _annotate(ax, grid, image)
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


def _annotate(ax: Axes, grid: np.ndarray, image: Any) -> None:
    for (r, c), value in np.ndenumerate(grid):
        if np.isfinite(value):
            red, green, blue, _ = image.cmap(image.norm(value))
            shade = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
            text = _compact_number(value)
            ax.text(c, r, text, ha="center", va="center", fontsize=6.5, color=shade)


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
