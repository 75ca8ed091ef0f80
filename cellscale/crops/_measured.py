"""Crops cut in the measurement pass: each field's crops from the blocks its measurement read.

:func:`cut_measured` gives the same crops as :func:`~cellscale.crops.extract_crops` with
``border="pad"``, without a cell table written first: a field's task takes the image and
label blocks that field's measurement task reads, and the centres from the table that
task makes. Computed in one graph with the measurement, each field is read once; the
number of cells per field comes from the labels, so the chunks along cells are known
before anything runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from cellscale._compat import Task, TaskRef
from cellscale.crops._cut import MASKS, cut_field
from cellscale.crops._extract import _box, _centres, _spatial
from cellscale.measurement._table import MeasuredFields
from cellscale.plate import LINEAGE, PlateError, add_lineage

__all__ = ["cut_measured"]


def cut_measured(
    fields: MeasuredFields,
    *,
    size: int | Sequence[int],
    mask: str = "none",
    compartment: str | None = None,
    sigma: float = 2.0,
    dtype: Any = None,
) -> xr.DataArray:
    """Every cell's crop, cut by the task of its field from the blocks its measurement reads.

    Parameters
    ----------
    fields
        The measurement of every field (:func:`~cellscale.measurement._table.measured_fields`)
        of all the plate's channels.
    size, mask, compartment, sigma, dtype
        As for :func:`~cellscale.crops.extract_crops` (boxes reaching past the field are
        padded with zeros).

    Returns
    -------
    xarray.DataArray
        Lazy ``(cell, c, [z,] y, x)`` crops, one chunk per present field; row i is
        ``cell_id`` i.

    Raises
    ------
    ValueError
        If ``mask`` is unknown, or ``compartment`` was not measured.
    PlateError
        If the fields were measured on some of the plate's channels only.
    """
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
    plate = fields.plate
    names = [str(c) for c in plate.coords["c"].values]
    if fields.channels != names:
        raise PlateError(
            f"crops hold every channel ({names}), but the fields were measured on "
            f"{fields.channels}: measure every channel to cut crops in the same pass"
        )
    compartments = list(fields.labels[0]) if fields.labels else []
    label_name = compartment or (compartments[0] if compartments else None)
    if fields.labels and label_name not in compartments:
        raise ValueError(f"compartment {compartment!r} was not measured ({compartments})")
    spatial = _spatial(plate)
    box = _box(size, spatial, plate)
    out_dtype = (
        np.dtype(dtype)
        if dtype is not None
        else (np.dtype(np.float32) if mask == "soft" else plate.dtype)
    )
    masked = mask != "none"
    name = "cut-measured-" + tokenize(
        plate.data.name,
        [image.key for image in fields.images],
        [[masks[c].key for c in compartments] for masks in fields.labels],
        [(spec.unit, spec.first_id, spec.count) for spec in fields.specs],
        compartment,
        box,
        mask,
        sigma,
        str(out_dtype),
    )
    layer: dict[Any, Any] = {}
    for i, (image, masks, part) in enumerate(
        zip(fields.images, fields.labels, fields.parts, strict=True)
    ):
        key = (name, i, 0, *(0,) * len(box))
        label = TaskRef(masks[str(label_name)].key) if masked else None
        layer[key] = Task(
            key,
            _cut_task,
            TaskRef(image.key),
            label,
            TaskRef(part.key),
            compartment,
            box,
            mask,
            sigma,
            out_dtype.str,
        )
    dependencies: list[Any] = [*fields.images, *fields.parts]
    if masked:
        dependencies += [masks[str(label_name)] for masks in fields.labels]
    # not blockwise: each task takes one field's image, label and table from other graphs
    graph = HighLevelGraph.from_collections(name, layer, dependencies=dependencies)
    counts = tuple(spec.count for spec in fields.specs)
    chunks = (counts or (0,), (len(names),), *((n,) for n in box))
    data = da.Array(graph, name, chunks, dtype=out_dtype) if counts else _empty(chunks, out_dtype)
    ids = np.concatenate(
        [np.arange(s.first_id, s.first_id + s.count, dtype=np.int64) for s in fields.specs]
        or [np.zeros(0, np.int64)]
    )
    dims = ("cell", "c", *("z", "y", "x")[-len(box) :])
    crops = xr.DataArray(
        data,
        dims=dims,
        coords={"cell_id": ("cell", ids), "c": plate.coords["c"].values},
        name="crops",
    )
    step = {"op": "extract_crops", "size": list(box), "mask": mask, "sigma": sigma, "border": "pad"}
    crops.attrs = add_lineage({LINEAGE: plate.attrs.get(LINEAGE, [])}, step)
    return crops


def _empty(chunks: tuple[tuple[int, ...], ...], dtype: np.dtype) -> da.Array:
    return da.zeros(tuple(sum(c) for c in chunks), chunks=chunks, dtype=dtype)


def _cut_task(
    image: np.ndarray,
    labels: np.ndarray | None,
    table: pd.DataFrame,
    compartment: str | None,
    box: tuple[int, ...],
    mask: str,
    sigma: float,
    dtype: str,
) -> np.ndarray:
    """One field's crops: centres and ids from its table, pixels from its image block."""
    pixels = np.asarray(image)[0, 0, 0]
    frame, prefix = _centres(table, compartment, len(box), pixels.shape[1:])
    columns = [f"{prefix}_AreaShape_Center_{a}" for a in ("Z", "Y", "X")[-len(box) :]]
    crops, _ = cut_field(
        list(pixels),
        frame[columns].to_numpy(np.float64),
        box,
        labels=None if labels is None else np.asarray(labels)[0, 0, 0],
        ids=frame["Metadata_ObjectNumber"].to_numpy(np.int64),
        mask=mask,
        sigma=sigma,
        dtype=np.dtype(dtype),
    )
    return crops
