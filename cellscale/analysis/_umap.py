"""UMAP of millions of embeddings: fit on a seeded subsample, map every row lazily.

:func:`fit_umap` fits umap-learn on a seeded subsample of the rows (gathered chunk by
chunk, never the whole array), after optional sphering fitted on control rows
(:class:`cellscale.profiles.Spherizer`); :meth:`UmapModel.transform` maps any number of
rows with one task per row chunk. :func:`plot_umap` and :func:`plot_density` draw the
result.
"""

from __future__ import annotations

import os
import pickle
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
from dask.base import tokenize
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from cellscale._stages import atomic_path
from cellscale.plots import _compact_ticks, _draw_points, _figure, _finish
from cellscale.profiles import Spherizer
from cellscale.profiles._io import as_cell_array

__all__ = ["UmapModel", "fit_umap", "plot_density", "plot_umap"]

#: Rows per transform task for NumPy input (dask input keeps its own row chunks).
TRANSFORM_ROWS = 65_536
#: Format tag of the pickled model file, checked on load.
MODEL_FORMAT = "cellscale-umap-1"


def _umap_module() -> Any:
    try:
        import umap
    except ImportError as err:
        raise ImportError(
            "UMAP needs umap-learn, which is not installed; install it with: "
            'pip install "cellscale[analysis]"'
        ) from err
    return umap


@dataclass
class UmapModel:
    """A fitted UMAP: the reducer, the optional sphering before it, and what it was fitted on.

    Attributes
    ----------
    reducer
        The fitted ``umap.UMAP``.
    spherizer
        The sphering applied before UMAP, or ``None``.
    n_features
        Columns of the input it was fitted on.
    sample_rows
        Positions (in the fitted input) of the rows UMAP was fitted on, sorted.
    embedding
        UMAP coordinates of ``sample_rows``, ``(len(sample_rows), 2)``.
    token
        A unique name of this fit, used in dask keys (kept by :meth:`save` / :meth:`load`).
    """

    reducer: Any
    spherizer: Spherizer | None
    n_features: int
    sample_rows: np.ndarray
    embedding: np.ndarray
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def transform(self, data: Any, *, rows_per_task: int | None = None) -> Any:
        """Map every row of ``data`` into the fitted UMAP space, one task per row chunk.

        The model is one key of the dask graph that every chunk's task depends on: the
        threaded scheduler shares it in memory, and a distributed scheduler sends it to
        each worker once (and keeps it there), not once per chunk.

        Parameters
        ----------
        data
            ``(n, d)`` dask, NumPy or Zarr array or xarray DataArray with the ``d``
            columns the model was fitted on.
        rows_per_task
            Rows per task; default: dask input keeps its row chunks, NumPy input is cut
            into chunks of :data:`TRANSFORM_ROWS` rows.

        Returns
        -------
        dask.array.Array or numpy.ndarray
            ``(n, 2)`` float32 coordinates; lazy for lazy input, NumPy for NumPy input.
            The coordinates of a row depend on the rows that share its chunk only
            through umap-learn's negative sampling, so a fixed chunking gives the same
            numbers every time.
        """
        eager = isinstance(data, np.ndarray)
        rows = _as_rows(data, rows_per_task or (TRANSFORM_ROWS if eager else None))
        if rows.shape[1] != self.n_features:
            raise ValueError(
                f"data has {rows.shape[1]} columns; the UMAP model was fitted on {self.n_features}"
            )
        if self.spherizer is not None:
            rows = self.spherizer.transform(rows)
        model = dask.delayed(self, name=f"umap-model-{self.token}", traverse=False)
        coords = da.map_blocks(
            _transform_block,
            rows,
            model,
            chunks=(rows.chunks[0], (2,)),
            dtype=np.float32,
            meta=np.empty((0, 0), np.float32),
            name=f"umap-transform-{tokenize(rows.name, self.token)}",
        )
        return coords.compute() if eager else coords

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model to one pickle file, atomically (a reader never sees half of it).

        The file holds the umap-learn reducer (with its training rows and
        nearest-neighbour index), so it can only be read by :meth:`load` under a
        compatible umap-learn, and, like any pickle, only from a trusted source.
        """
        with atomic_path(Path(path)) as partial, open(partial, "wb") as out:
            pickle.dump({"format": MODEL_FORMAT, "model": self}, out, protocol=5)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> UmapModel:
        """Read a model written by :meth:`save` (a pickle: load only files you trust)."""
        _umap_module()
        with open(path, "rb") as source:
            content = pickle.load(source)
        if not isinstance(content, dict) or content.get("format") != MODEL_FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a UMAP model written by UmapModel.save")
        model: UmapModel = content["model"]
        return model


def _transform_block(block: np.ndarray, model: UmapModel) -> np.ndarray:
    if block.shape[0] == 0:
        return np.empty((0, 2), np.float32)
    return np.asarray(model.reducer.transform(block), dtype=np.float32)


def fit_umap(
    data: Any,
    *,
    sample: int = 100_000,
    controls: Any = None,
    metadata: pd.DataFrame | None = None,
    sphere: bool = False,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    seed: int | None = 0,
    **umap_options: Any,
) -> UmapModel:
    """Fit UMAP on a seeded subsample of the rows of ``data``.

    Parameters
    ----------
    data
        ``(n, d)`` dask, NumPy or Zarr array or xarray DataArray, e.g.
        ``cellscale.open_embeddings(path)`` or PCA scores. Only the sampled rows are
        loaded, chunk by chunk.
    sample
        Rows to fit on, drawn uniformly without replacement (all rows if fewer).
    controls
        With ``sphere``: the rows the sphering is fitted on, as a boolean mask or a pandas
        query on ``metadata`` (e.g. ``"Metadata_Treatment == 'DMSO'"``); ``None``: all.
    metadata
        The cell table, row for row, for a query string in ``controls``.
    sphere
        ZCA-sphere the rows (fitted on ``controls`` in one streamed pass) before UMAP,
        so directions of control variation, such as plate or batch effects, weigh less.
    n_neighbors, min_dist, metric
        As for ``umap.UMAP``.
    seed
        Seed of the subsample and of UMAP: a fixed seed gives the same model every time
        (umap-learn then runs on one thread); ``None`` lets it use every core.
    **umap_options
        Other ``umap.UMAP`` arguments (e.g. ``n_epochs``, ``low_memory``).

    Returns
    -------
    UmapModel
        The fitted model; :meth:`UmapModel.transform` maps the rest of the rows.

    Raises
    ------
    ValueError
        If ``controls`` is given without ``sphere``, or there are fewer rows than
        ``n_neighbors + 1``.

    Notes
    -----
    umap-learn treats fits on fewer than 4096 rows as small: it finds their neighbours
    exactly, and its ``transform`` then computes distances one pair at a time in Python
    (about 150 k pairs per second). Keep ``sample`` above 4096 to transform millions of
    rows. Fits and transforms compile numba code on first use in a process (about a
    minute on one CPU core for the approximate-neighbour path).
    """
    umap = _umap_module()
    rows = _as_rows(data, None)
    if controls is not None and not sphere:
        raise ValueError("controls are only used to fit the sphering; pass sphere=True as well")
    if rows.shape[0] <= n_neighbors:
        raise ValueError(
            f"UMAP needs more than n_neighbors={n_neighbors} rows, got {rows.shape[0]}"
        )
    spherizer = Spherizer("ZCA") if sphere else None
    if spherizer is not None:
        spherizer.fit(rows, controls, metadata=metadata)
    picked = _sample_rows(rows.shape[0], sample, seed)
    chosen = rows if spherizer is None else spherizer.transform(rows)
    training = np.asarray(chosen[picked].compute(), dtype=np.float32)
    if seed is not None:
        umap_options.setdefault("n_jobs", 1)  # umap-learn is single-threaded when seeded
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric=metric,
        random_state=seed,
        transform_seed=0 if seed is None else seed,
        **umap_options,
    )
    embedding = np.asarray(reducer.fit_transform(training), dtype=np.float32)
    return UmapModel(reducer, spherizer, int(rows.shape[1]), picked, embedding)


def _as_rows(data: Any, rows_per_task: int | None) -> da.Array:
    values = getattr(data, "data", data) if hasattr(data, "dims") else data
    rows = as_cell_array(values)
    if rows_per_task is not None:
        rows = rows.rechunk({0: rows_per_task})
    return rows


def _sample_rows(n: int, sample: int, seed: int | None) -> np.ndarray:
    if sample < 1:
        raise ValueError(f"sample must be at least 1 row, got {sample}")
    if sample >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))


def plot_umap(
    coords: Any,
    metadata: pd.DataFrame | None = None,
    color: str | None = None,
    *,
    max_points: int = 50_000,
    log: bool | None = None,
    title: str | None = None,
    seed: int = 0,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Scatter UMAP coordinates, coloured by a metadata column.

    Parameters
    ----------
    coords
        ``(n, 2)`` coordinates (NumPy or dask, e.g. from :meth:`UmapModel.transform`).
    metadata
        The cell (or well) table, row for row with ``coords``.
    color
        A column of ``metadata``: numbers get a colour bar, anything else a legend.
        ``None`` draws every point in one colour and says so in the title.
    max_points
        Points drawn; more rows are subsampled uniformly (seeded by ``seed``).
    log
        Colour numbers on a log scale, as for :func:`cellscale.plots.pca_scatter`.
    title
        Figure title (default: how many points are drawn, and the colouring).
    path
        Write a PNG here.

    Raises
    ------
    ValueError
        If ``color`` is not a column of ``metadata``, ``metadata`` has another number of
        rows, or the column holds one value in every drawn row (a colouring that
        carries no information).
    """
    n = int(coords.shape[0])
    values = None if color is None else _color_column(metadata, color, n)
    rows = np.arange(n)
    if n > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    xy = np.asarray(coords[rows] if len(rows) < n else coords, dtype=np.float64)
    fig, ax = _figure((6.4, 5.4))
    shown = f"{len(rows):,} of {n:,} cells" if len(rows) < n else f"{n:,} cells"
    if values is not None:
        values = values.iloc[rows].reset_index(drop=True)
        if values.nunique(dropna=False) < 2:
            raise ValueError(
                f"plot_umap: column {color!r} holds the single value {values.iloc[0]!r} "
                f"in all {len(values):,} drawn rows; colour by a column that varies, or color=None"
            )
    _draw_points(fig, ax, xy, values, color or "", log)
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_title(title or (f"{shown} by {color}" if color else f"{shown} (uncoloured)"))
    return _finish(fig, path)


def _color_column(metadata: pd.DataFrame | None, color: str, n: int) -> pd.Series:
    import difflib

    if metadata is None:
        raise ValueError(f"plot_umap: color={color!r} needs the metadata table")
    if color not in metadata.columns:
        close = difflib.get_close_matches(color, [str(c) for c in metadata.columns], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"plot_umap: the column {color!r} is not in the metadata{hint}")
    if len(metadata) != n:
        raise ValueError(f"plot_umap: metadata has {len(metadata):,} rows for {n:,} coordinates")
    return metadata[color].reset_index(drop=True)


def plot_density(
    coords: Any,
    *,
    bins: int | None = None,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """A 2D histogram of every row's UMAP coordinates on a log colour scale.

    Parameters
    ----------
    coords
        ``(n, 2)`` coordinates; a dask array is computed once (compute or persist it
        first if it is also plotted otherwise: transforming is the costly part).
    bins
        Bins along each axis; default: half the square root of the number of rows,
        from 20 to 200.
    title
        Figure title (default: the number of cells).
    path
        Write a PNG here.
    """
    xy = np.asarray(coords, dtype=np.float64)
    if bins is None:
        bins = int(np.clip(np.sqrt(len(xy)) / 2, 20, 200))
    counts, x_edges, y_edges = np.histogram2d(xy[:, 0], xy[:, 1], bins=bins)
    fig, ax = _figure((6.4, 5.4))
    shown = np.ma.masked_equal(counts.T, 0)
    norm = LogNorm(vmin=1, vmax=max(2.0, counts.max()))
    image = ax.pcolormesh(x_edges, y_edges, shown, norm=norm, cmap="viridis")
    _compact_ticks(fig.colorbar(image, ax=ax, label="cells per bin"), norm)
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_title(title or f"{len(xy):,} cells (density)")
    return _finish(fig, path)
