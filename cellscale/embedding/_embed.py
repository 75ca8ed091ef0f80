"""``embed``: crops in, a lazy ``(cell, feature)`` float32 array out, the device kept busy.

Crops of consecutive fields are pooled into tasks of at least ``cells_per_task`` cells, so
small fields still fill the model's batches. Within a task the next batch is prepared
(normalised, resized, moved to the device) on a CPU thread while the current one runs.
Tasks are GPU-tagged when the embedder is, and named ``embed-…`` on the dashboard.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from cellscale.cluster import gpu_tasks
from cellscale.embedding._protocol import Embedder, check_batch_size
from cellscale.plate import LINEAGE, add_lineage

__all__ = ["embed", "embed_blocks"]


def embed(
    crops: xr.DataArray,
    model: str | Embedder = "resnet50",
    *,
    batch_size: int | None = None,
    layer: str | None = None,
    cells_per_task: int | None = None,
    **options: Any,
) -> xr.DataArray:
    """Embed every crop with a model, lazily; one row per crop, aligned by ``cell_id``.

    Parameters
    ----------
    crops
        From :func:`cellscale.extract_crops` (streamed, never stored) or
        :func:`cellscale.crops.open_crops`.
    model
        An embedder (:class:`~cellscale.embedding.TorchEmbedder` or anything following the
        seam) or an architecture name for a :class:`~cellscale.embedding.TorchEmbedder`
        with the crops' channels (``"resnet50"``, ``"resnet18"``, ``"r3d_18"``).
    batch_size
        Crops per model call, at least 1 (default: the embedder's).
    layer
        For an architecture name: the layer whose output are the features.
    cells_per_task
        Crops pooled per task (default: 4 batches' worth, at least one field).
    **options
        For an architecture name: passed to :class:`~cellscale.embedding.TorchEmbedder`
        (``weights=``, ``resize=``, ``normalize=``, ``device=`` …).

    Returns
    -------
    xarray.DataArray
        ``(cell, feature)`` float32, chunked by task, with the crops' ``cell_id`` and the
        model's description in ``attrs["model"]``. Non-finite features are an error naming
        the cells.

    Raises
    ------
    ValueError
        If the batch size (given, or the embedder's) is not a whole number of at least 1.
    """
    embedder = _resolve(model, crops, batch_size, layer, **options)
    check_batch_size(embedder.batch_size)
    per_task = int(cells_per_task or 4 * embedder.batch_size)
    groups = _groups(crops.data.chunks[0], per_task)
    ids = crops.coords["cell_id"].values if "cell_id" in crops.coords else np.arange(crops.shape[0])
    token = tokenize(crops.data.name, embedder, per_task)
    name = f"embed-{token}"
    zeros = (0,) * (crops.ndim - 1)
    # not blockwise: a task pools a run of consecutive crop chunks (a rechunk would copy them)
    layer_tasks: dict[Any, Any] = {}
    starts = np.concatenate([[0], np.cumsum(crops.data.chunks[0])])
    for g, group in enumerate(groups):
        keys = [(crops.data.name, b, *zeros) for b in group]
        rows = ids[starts[group[0]] : starts[group[-1] + 1]]
        layer_tasks[(name, g, 0)] = (embed_blocks, embedder, keys, rows)
    with gpu_tasks() if embedder.gpu else contextlib.nullcontext():
        graph = HighLevelGraph.from_collections(name, layer_tasks, dependencies=[crops.data])
    sizes = tuple(int(starts[group[-1] + 1] - starts[group[0]]) for group in groups)
    data = da.Array(graph, name, (sizes, (embedder.n_features,)), dtype=np.float32)
    step = {"op": "embed", "model": embedder.describe()}
    attrs = add_lineage({LINEAGE: crops.attrs.get(LINEAGE, [])}, step)
    attrs["model"] = embedder.describe()
    coords = {"cell_id": ("cell", ids)}
    return xr.DataArray(
        data, dims=("cell", "feature"), coords=coords, attrs=attrs, name="embeddings"
    )


def _resolve(
    model: str | Embedder,
    crops: xr.DataArray,
    batch_size: int | None,
    layer: str | None,
    **options: Any,
) -> Embedder:
    if isinstance(model, str):
        from cellscale.embedding._torch import TorchEmbedder

        settings = {**options, "in_channels": crops.sizes["c"]}
        if batch_size is not None:
            settings["batch_size"] = batch_size
        if layer is not None:
            settings["layer"] = layer
        return TorchEmbedder(model, **settings)
    if options or layer is not None:
        raise TypeError("layer and options apply to an architecture name, not to an embedder")
    if batch_size is not None:
        model.batch_size = check_batch_size(batch_size)
    return model


def _groups(chunks: tuple[int, ...], per_task: int) -> list[list[int]]:
    """Consecutive crop chunks pooled until each group holds at least ``per_task`` cells."""
    groups: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index, rows in enumerate(chunks):
        current.append(index)
        size += rows
        if size >= per_task:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def embed_blocks(embedder: Embedder, blocks: list[np.ndarray], cell_ids: np.ndarray) -> np.ndarray:
    """Embed the crops of several chunks in batches, preparing the next batch while one runs."""
    crops = np.concatenate([np.asarray(b) for b in blocks]) if blocks else np.empty((0,))
    n = len(crops)
    out = np.empty((n, embedder.n_features), dtype=np.float32)
    if n == 0:
        return out
    size = embedder.batch_size
    load = getattr(embedder, "load", None)
    if load is not None:
        load()  # in the task's own thread, before the prefetching one starts
    prepare = getattr(embedder, "prepare_batch", None)
    run = getattr(embedder, "run_batch", None)
    starts = range(0, n, size)
    with ThreadPoolExecutor(1) as worker:
        pending = worker.submit(prepare, crops[:size]) if prepare else None
        for start in starts:
            batch = pending.result() if pending is not None else crops[start : start + size]
            following = start + size
            if prepare and following < n:
                pending = worker.submit(prepare, crops[following : following + size])
            out[start : start + size] = run(batch) if run else embedder(batch)
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        shown = ", ".join(str(int(i)) for i in cell_ids[np.flatnonzero(bad)][:10])
        raise ValueError(
            f"the model produced non-finite features for {int(bad.sum())} cell(s) (cell_id {shown})"
        )
    return out
