"""Profile figures (matplotlib, drawn off-screen with Agg): PCA scatter, explained variance,
plate heatmaps. Every function returns the :class:`~matplotlib.figure.Figure` and writes a
PNG when given ``path``; none touches pyplot's global state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import CenteredNorm
from matplotlib.figure import Figure

from cellscale.plate import row_index, row_letters, split_well

__all__ = ["explained_variance", "pca_scatter", "plate_heatmap"]

#: (rows, columns) of the standard plate formats, smallest first.
PLATE_FORMATS = ((8, 12), (16, 24), (32, 48))
#: Most categories drawn with distinct colours and listed in a legend.
MAX_CATEGORIES = 20


def pca_scatter(
    scores: Any,
    color: Any = None,
    *,
    components: tuple[int, int] = (0, 1),
    max_points: int = 20_000,
    label: str | None = None,
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
        Name of the colour variable (legend/colour-bar title).
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
        _draw_points(fig, ax, xy, values, label)
        shown = f"{len(rows):,} of {n:,} points" if len(rows) < n else f"{n:,} points"
        ax.set_title(title or shown)
    return _finish(fig, path)


def _draw_points(
    fig: Figure, ax: Axes, xy: np.ndarray, values: pd.Series | None, label: str | None
) -> None:
    size = float(np.clip(2000 / max(len(xy), 1) ** 0.5, 2, 40))
    style: dict[str, Any] = {"s": size, "alpha": 0.7, "linewidths": 0}
    if values is None:
        ax.scatter(xy[:, 0], xy[:, 1], color="#3b6ea5", **style)
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=values.to_numpy(float), cmap="viridis", **style)
        fig.colorbar(sc, ax=ax, label=label or "")
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
            title=label,
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
        Colour-bar title.
    title
        Figure title.
    cmap
        Matplotlib colour map.
    center
        Value at the middle of the colour map (use with a diverging ``cmap``, e.g.
        ``center=0`` for PC scores).
    annotate
        Print each value in its well (default: for plates of at most 96 wells).
    path
        Write a PNG here.
    """
    series = pd.Series(values, dtype=float)
    cells = [(row_index(r), c - 1) for r, c in (split_well(str(w)) for w in series.index)]
    n_rows, n_cols = _plate_format(cells)
    grid = np.full((n_rows, n_cols), np.nan)
    for (r, c), value in zip(cells, series.to_numpy(), strict=True):
        grid[r, c] = value
    fig, ax = _figure((1.6 + 0.42 * n_cols, 1.0 + 0.42 * n_rows))
    norm = None if center is None else CenteredNorm(vcenter=center)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="equal")
    fig.colorbar(image, ax=ax, label=label or "", shrink=0.85)
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


def _annotate(ax: Axes, grid: np.ndarray, image: Any) -> None:
    for (r, c), value in np.ndenumerate(grid):
        if np.isfinite(value):
            red, green, blue, _ = image.cmap(image.norm(value))
            shade = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
            ax.text(c, r, f"{value:.3g}", ha="center", va="center", fontsize=6.5, color=shade)


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
