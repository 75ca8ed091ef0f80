"""``extract_crops``: single-cell crops as a lazy ``(cell, c, [z,] y, x)`` array, per field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from cellscale.cells import CELL_ID, compartment_prefix
from cellscale.crops._cut import MASKS, box_starts, cut_field
from cellscale.plate import LINEAGE, PlateError, add_lineage, as_plate

__all__ = ["extract_crops"]

_UNIT_COLUMNS = ["Metadata_Timepoint", "Metadata_Well", "Metadata_Site"]


def extract_crops(
    plate: xr.DataArray,
    cells: Any,
    *,
    size: int | Sequence[int],
    mask: str = "none",
    labels: xr.Dataset | None = None,
    compartment: str | None = None,
    border: str = "pad",
    sigma: float = 2.0,
    dtype: Any = None,
) -> xr.DataArray:
    """Crop a fixed box around every cell, lazily: one field image in, that field's crops out.

    Parameters
    ----------
    plate
        A projected plate gives ``(cell, c, y, x)`` crops; a plate with Z stacks gives
        ``(cell, c, z, y, x)``.
    cells
        The cell table (pandas or dask DataFrame, e.g. :func:`cellscale.read_cells`):
        ``cell_id``, ``Metadata_Timepoint``, ``Metadata_Well``, ``Metadata_Site``,
        ``Metadata_ObjectNumber`` and the compartment's ``AreaShape_Center_X/Y[/Z]``.
    size
        Box edge in pixels (``200``), or ``(y, x)``, or ``(z, y, x)`` for Z stacks (by
        default a Z stack's crops span all planes).
    mask
        ``"none"``, ``"hard"`` (pixels outside the cell's label are zero) or ``"soft"``
        (multiplied by the cell's mask blurred by ``sigma`` pixels, float32).
    labels
        The labels the table was measured from, for ``hard`` and ``soft`` masks.
    compartment
        Whose centres and labels to use (default: cells if the table has them, else nuclei).
    border
        ``"pad"``: boxes reaching past the field are filled with zeros and marked in the
        ``padded`` coordinate; ``"drop"``: such cells are left out (the ``cell_id``
        coordinate says which cells each row holds).
    dtype
        The crops' dtype (default: the plate's, float32 for soft masks).

    Returns
    -------
    xarray.DataArray
        Lazy crops, one chunk per field with the field's number of cells known up front;
        coordinates ``cell_id`` (row i is ``cell_id`` i unless cells were dropped),
        ``padded`` and ``c``.
    """
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
    if border not in ("pad", "drop"):
        raise ValueError(f"border must be 'pad' or 'drop', got {border!r}")
    plate = as_plate(plate)
    spatial = _spatial(plate)
    box = _box(size, spatial, plate)
    table, prefix = _centres(cells, compartment, len(box), spatial)
    fields = _fields(table, plate, labels)
    if mask != "none":
        if labels is None:
            raise ValueError(f"mask={mask!r} needs the labels the cells were measured from")
        label_name = compartment or labels.attrs["compartments"][0]
    centre_columns = [f"{prefix}_AreaShape_Center_{a}" for a in ("Z", "Y", "X")[-len(box) :]]
    if border == "drop":
        table = _drop_clipped(table, centre_columns, box, spatial)
        fields = _fields(table, plate, labels, check=False)
    images = _field_images(plate)
    label_data = None
    if mask != "none" and labels is not None:
        label_data = labels[label_name].data
        if not isinstance(label_data, da.Array):
            label_data = da.from_array(label_data, chunks=(1, 1, 1, *label_data.shape[3:]))
    out_dtype = (
        np.dtype(dtype)
        if dtype is not None
        else (np.dtype(np.float32) if mask == "soft" else plate.dtype)
    )
    name = "extract-crops-" + tokenize(
        images.name,
        None if label_data is None else label_data.name,
        table.to_numpy(),
        box,
        mask,
        sigma,
        str(out_dtype),
    )
    layer: dict[Any, Any] = {}
    chunks: list[int] = []
    for i, (unit, rows) in enumerate(fields):
        centres = rows[centre_columns].to_numpy(np.float64)
        ids = rows["Metadata_ObjectNumber"].to_numpy(np.int64)
        image_keys = [
            (images.name, *unit, c, *(0,) * (images.ndim - 4)) for c in range(images.shape[3])
        ]
        label_key = (
            None if label_data is None else (label_data.name, *unit, *(0,) * (label_data.ndim - 3))
        )
        layer[(name, i, 0, *(0,) * len(box))] = (
            _crop_task,
            image_keys,
            label_key,
            centres,
            ids,
            box,
            mask,
            sigma,
            out_dtype.str,
        )
        chunks.append(len(rows))
    dependencies = [images] + ([label_data] if label_data is not None else [])
    # not blockwise: three block axes (t, well, field) become one cell axis, absent fields are
    # skipped and each task carries its own field's cells; blockwise needs extra per-field
    # reshape and selection tasks for that (measured up to 1.5x slower on small fields)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=dependencies)
    channels = plate.sizes["c"]
    data = da.Array(graph, name, ((*chunks,), (channels,), *((n,) for n in box)), dtype=out_dtype)
    ordered = pd.concat([rows for _, rows in fields]) if fields else table.iloc[:0]
    dims = ("cell", "c", *("z", "y", "x")[-len(box) :])
    crops = xr.DataArray(
        data,
        dims=dims,
        coords={
            "cell_id": ("cell", ordered[CELL_ID].to_numpy(np.int64)),
            "padded": ("cell", _clipped(ordered, centre_columns, box, spatial)),
            "c": plate.coords["c"].values,
        },
        name="crops",
    )
    step = {
        "op": "extract_crops",
        "size": list(box),
        "mask": mask,
        "sigma": sigma,
        "border": border,
    }
    crops.attrs = add_lineage({LINEAGE: plate.attrs.get(LINEAGE, [])}, step)
    return crops


def _spatial(plate: xr.DataArray) -> tuple[int, ...]:
    if "z" in plate.dims and plate.sizes["z"] > 1:
        return tuple(plate.sizes[d] for d in ("z", "y", "x"))
    return tuple(plate.sizes[d] for d in ("y", "x"))


def _box(
    size: int | Sequence[int], spatial: tuple[int, ...], plate: xr.DataArray
) -> tuple[int, ...]:
    box = (int(size),) * 2 if isinstance(size, int | np.integer) else tuple(int(s) for s in size)
    if len(spatial) == 3 and len(box) == 2:
        box = (spatial[0], *box)
    if len(box) != len(spatial) or any(b < 1 for b in box):
        raise ValueError(f"size {size} does not describe a box in fields of {spatial}")
    if any(b > n for b, n in zip(box, spatial, strict=True)):
        raise ValueError(
            f"a crop of {box} is larger than the fields of plate {plate.name!r} ({spatial}); "
            "choose a smaller size"
        )
    return box


def _centres(
    cells: Any, compartment: str | None, ndim: int, spatial: tuple[int, ...]
) -> tuple[pd.DataFrame, str]:
    """The table's unit, id and centre columns as pandas, and the compartment prefix used.

    A table measured in 2D gives 3D crops centred on the middle of the stack.
    """
    columns = list(cells.columns)
    candidates = (  # by default the first compartment measured: cells, nuclei, objects …
        [compartment_prefix(compartment)]
        if compartment
        else [
            c.removesuffix("_AreaShape_Center_X")
            for c in columns
            if c.endswith("_AreaShape_Center_X")
        ]
    )
    prefix = next((p for p in candidates if f"{p}_AreaShape_Center_X" in columns), None)
    if prefix is None:
        raise ValueError(
            f"the cell table has no centre columns of {candidates} "
            "(<Compartment>_AreaShape_Center_X)"
        )
    z_column = f"{prefix}_AreaShape_Center_Z"
    flat = ndim == 3 and z_column not in columns
    wanted = [CELL_ID, *_UNIT_COLUMNS, "Metadata_ObjectNumber"]
    wanted += [
        f"{prefix}_AreaShape_Center_{a}" for a in ("Z", "Y", "X")[-ndim:] if not (flat and a == "Z")
    ]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise ValueError(f"the cell table lacks the columns {missing}")
    frame = cells[wanted]
    if hasattr(frame, "compute"):
        frame = frame.compute()
    frame = frame.reset_index(drop=True)
    if flat:
        frame[z_column] = (spatial[0] - 1) / 2
    return frame, prefix


def _fields(
    table: pd.DataFrame, plate: xr.DataArray, labels: xr.Dataset | None, check: bool = True
) -> list[tuple[tuple[int, int, int], pd.DataFrame]]:
    """The rows of every present field, in (t, well, field) order, checked against the plate."""
    t_index = {_plain(v): i for i, v in enumerate(plate.coords["t"].values)}
    w_index = {str(v): i for i, v in enumerate(plate.coords["well"].values)}
    f_index = {int(v): i for i, v in enumerate(plate.coords["field"].values)}
    keys = list(
        zip(table.Metadata_Timepoint, table.Metadata_Well, table.Metadata_Site, strict=True)
    )
    unknown = [
        k
        for k in set(keys)
        if _plain(k[0]) not in t_index or str(k[1]) not in w_index or int(k[2]) not in f_index
    ]
    if unknown:
        raise PlateError(
            "the cell table has fields the plate lacks, e.g. (t, well, field) "
            f"{sorted(unknown)[:3]}"
        )
    table = table.assign(
        _unit=[(t_index[_plain(t)], w_index[str(w)], f_index[int(f)]) for t, w, f in keys]
    )
    groups = {unit: rows.drop(columns="_unit") for unit, rows in table.groupby("_unit", sort=True)}
    present = np.asarray(plate.coords["field_present"].values, dtype=bool)
    empty = table.iloc[:0].drop(columns="_unit")
    fields = [
        (unit, groups.get(unit, empty))
        for unit in np.ndindex(plate.sizes["t"], *present.shape)
        if present[unit[1], unit[2]]
    ]
    if check:
        _check_ids(fields, labels)
    return fields


def _check_ids(
    fields: list[tuple[tuple[int, int, int], pd.DataFrame]], labels: xr.Dataset | None
) -> None:
    """cell_id runs 0 … N-1 in field order, and each field has as many cells as its labels."""
    expected = 0
    counts = (
        np.asarray(labels.coords["n_objects"].values)
        if labels is not None and "n_objects" in labels.coords
        else None
    )
    for unit, rows in fields:
        ids = rows[CELL_ID].to_numpy()
        if len(ids) and (ids != np.arange(expected, expected + len(ids))).any():
            raise PlateError(
                f"the cell table's cell_id is not consecutive in (t, well, field) order at field "
                f"{unit}: it starts at {ids[0]}, expected {expected}"
            )
        if counts is not None and counts[unit] != len(ids):
            raise PlateError(
                f"the cell table does not match the labels: field {unit} has {len(ids)} cells in "
                f"the table and {int(counts[unit])} objects in the labels"
            )
        expected += len(ids)


def _clipped(
    rows: pd.DataFrame, columns: list[str], box: tuple[int, ...], spatial: tuple[int, ...]
) -> np.ndarray:
    starts = box_starts(rows[columns].to_numpy(np.float64), box).reshape(-1, len(box))
    return ((starts < 0) | (starts + np.asarray(box) > np.asarray(spatial))).any(axis=1)


def _drop_clipped(
    table: pd.DataFrame, columns: list[str], box: tuple[int, ...], spatial: tuple[int, ...]
) -> pd.DataFrame:
    return table[~_clipped(table, columns, box, spatial)]


def _field_images(plate: xr.DataArray) -> da.Array:
    """``(t, well, field, c, [z,] y, x)``, one chunk per image (channels are cut one by one)."""
    if "z" in plate.dims and plate.sizes["z"] > 1:
        plate = plate.transpose("t", "well", "field", "c", "z", "y", "x")
    elif "z" in plate.dims:
        plate = plate.isel(z=0, drop=True)
    data = plate.data
    return data.rechunk(tuple(1 if i < 4 else -1 for i in range(data.ndim)))


def _crop_task(
    channels: list[np.ndarray],
    labels: np.ndarray | None,
    centres: np.ndarray,
    ids: np.ndarray,
    box: tuple[int, ...],
    mask: str,
    sigma: float,
    dtype: str,
) -> np.ndarray:
    planes = [np.asarray(block)[0, 0, 0, 0] for block in channels]
    label_field = None if labels is None else np.asarray(labels)[0, 0, 0]
    if label_field is not None and label_field.ndim < planes[0].ndim:
        label_field = np.broadcast_to(label_field, planes[0].shape)  # 2D labels, 3D crops
    crops, _ = cut_field(
        planes,
        centres,
        box,
        labels=label_field,
        ids=ids,
        mask=mask,
        sigma=sigma,
        dtype=np.dtype(dtype),
    )
    return crops


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
