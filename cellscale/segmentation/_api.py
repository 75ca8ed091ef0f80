"""``cellscale.segment``: lazy labels of every field of a plate, one compartment per variable."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from typing import Any, cast

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

from cellscale.cluster import gpu_tasks
from cellscale.plate import (
    LINEAGE,
    UNIT_TOKEN,
    Exclusion,
    add_lineage,
    as_plate,
    channel_position,
    excluded_units,
    field_stack,
    plate_map_columns,
    spatial_plate,
    unit_names,
)
from cellscale.segmentation._border import drop_border_objects
from cellscale.segmentation._protocol import Segmenter, check_labels

__all__ = ["method_options", "segment"]

_UNIT_DIMS = ("t", "well", "field")


def segment(
    plate: xr.DataArray,
    method: str | Segmenter = "classical",
    *,
    channel: str | int,
    nuclei_channel: str | int | None = None,
    exclude_border: bool = True,
    do_3d: bool = False,
    fields_per_task: int | None = None,
    exclude: Exclusion = None,
    **options: Any,
) -> xr.Dataset:
    """Segment every field of a plate, lazily; one labels variable per compartment.

    Parameters
    ----------
    plate
        A projected plate ``(t, well, field, c, y, x)`` (or one with a single Z plane), or
        with ``do_3d=True`` a plate with Z stacks.
    method
        ``"classical"`` (:class:`~cellscale.segmentation.ClassicalSegmenter`, CPU),
        ``"cellpose"`` (:class:`~cellscale.segmentation.CellposeSegmenter`, GPU-tagged), or any
        object following the :class:`~cellscale.segmentation.Segmenter` seam.
    channel
        The channel to segment (name or position): the nuclear stain for nuclei, a
        cytoplasm or membrane stain for cells.
    nuclei_channel
        A nuclear stain to seed cells with; the classical method then returns ``cells``
        and their ``nuclei`` with shared ids. Without it the classical method returns one
        compartment named ``"objects"``: ``channel`` may be any stain (a cytoplasmic or
        punctate one outlines cells or sub-cellular structures, not nuclei), so the name
        claims nothing; name it with the ``compartment`` option (``compartment="nuclei"``
        for a DNA stain gives CellProfiler's ``Nuclei_…`` columns).
    exclude_border
        Drop objects touching the field's y/x border; how many per field is the
        ``border_dropped`` variable.
    do_3d
        Segment Z stacks in 3D; labels get a ``z`` dim.
    fields_per_task
        Fields handed to the segmenter in one task (default: the segmenter's own,
        e.g. enough for a cellpose network to fill the device).
    exclude
        Units not to segment, e.g. ``cellscale.quality.flagged_fields(qc_table)``: a table
        with ``well``, ``field`` (and ``t``) columns or ``(well, field)`` /
        ``(t, well, field)`` tuples. Their labels are empty (no objects, so no cells
        downstream), never read or segmented; which units were skipped is recorded in
        the lineage step (``"excluded"``), so written labels and cell tables say so.
    **options
        Passed to the named method's constructor (``diameter=``, ``model=``,
        ``compartment=`` …).

    Returns
    -------
    xarray.Dataset
        One ``uint32`` variable per compartment with dims ``(t, well, field, y, x)`` (or
        ``(t, well, field, z, y, x)``), ids ``1 … n`` per field, plus ``border_dropped``
        ``(t, well, field)``. Coordinates and plate-map columns come from the plate.
        Nothing is computed until the result is (or :func:`cellscale.write_labels`
        writes it).

    Examples
    --------
    >>> from cellscale.synthetic import synthetic_plate
    >>> import cellscale
    >>> mip = cellscale.project(synthetic_plate(wells=1, fields=1, shape=(96, 96)), "max")
    >>> labels = segment(mip, channel="nuclei")
    >>> list(labels.data_vars), labels["objects"].dims
    (['objects', 'border_dropped'], ('t', 'well', 'field', 'y', 'x'))
    >>> list(segment(mip, channel="nuclei", compartment="nuclei").data_vars)
    ['nuclei', 'border_dropped']
    """
    plate = as_plate(plate)
    source = plate.data.name
    plate = spatial_plate(plate, do_3d)
    segmenter = _resolve(method, nuclei_channel is not None, **options)
    picked = [channel_position(plate, channel)]
    if nuclei_channel is not None:
        picked.append(channel_position(plate, nuclei_channel))
    images = field_stack(plate, picked)
    per_task = int(fields_per_task or segmenter.fields_per_task)
    if per_task < 1:
        raise ValueError(f"fields_per_task must be at least 1, got {per_task}")
    names = [str(plate.coords["c"].values[i]) for i in picked]
    skipped = excluded_units(plate, exclude)
    labels = _labels_dataset(plate, images, segmenter, per_task, exclude_border, names, skipped)
    labels.attrs[LINEAGE][-1]["images"] = source
    if skipped:
        labels.attrs[LINEAGE][-1]["excluded"] = unit_names(plate, skipped)
    return labels


def method_options(method: str) -> tuple[str, ...]:
    """The options :func:`segment` passes on to a named method's constructor.

    They are the constructor's keyword parameters, read from its signature (nothing
    heavy is imported: cellpose and torch only load when a network does).

    Examples
    --------
    >>> "diameter" in method_options("classical"), "compartment" in method_options("classical")
    (True, True)
    """
    parameters = inspect.signature(_method_class(method)).parameters.values()
    keywords = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in parameters if p.kind in keywords)


def _method_class(method: str) -> Callable[..., Segmenter]:
    if method == "classical":
        from cellscale.segmentation._classical import ClassicalSegmenter

        return ClassicalSegmenter
    if method == "cellpose":
        from cellscale.segmentation._cellpose import CellposeSegmenter

        return CellposeSegmenter
    raise ValueError(f"method must be 'classical', 'cellpose' or a segmenter, got {method!r}")


def _resolve(method: str | Segmenter, with_nuclei: bool, **options: Any) -> Segmenter:
    if not isinstance(method, str):
        if options:
            raise TypeError(f"options {sorted(options)} only apply to a named method")
        return method
    make = _method_class(method)
    if method == "classical":
        return make(
            compartment=_classical_compartment(with_nuclei, options.pop("compartment", None)),
            **options,
        )
    return make(**options)


def _classical_compartment(with_nuclei: bool, named: str | None) -> str:
    """``"cells"`` with a nuclei channel; else the user's name, or the neutral ``"objects"``."""
    from cellscale.segmentation._classical import OBJECTS

    if with_nuclei:
        if named not in (None, "cells"):
            raise ValueError(
                f"compartment={named!r}: with a nuclei_channel the classical method returns "
                "'cells' and their 'nuclei'; leave compartment out"
            )
        return "cells"
    if named == "cells":
        raise ValueError(
            "compartment='cells' makes the classical method grow cells from nuclei: give a "
            "nuclei_channel, or name the one compartment otherwise (e.g. 'objects')"
        )
    return named or OBJECTS


def _labels_dataset(
    plate: xr.DataArray,
    images: da.Array,
    segmenter: Segmenter,
    per_task: int,
    exclude_border: bool,
    channel_names: list[str],
    skipped: set[tuple[int, int, int]],
) -> xr.Dataset:
    """One task per batch of fields, then one chunk per field and compartment picked from it.

    Holes and ``skipped`` units get empty labels without a task of their own.
    """
    compartments = tuple(segmenter.compartments)
    spatial = images.shape[4:]
    zeros = (0,) * len(spatial)
    token = tokenize(
        images.name, segmenter, exclude_border, per_task, compartments, sorted(skipped)
    )
    batch_name = f"segment-{token}"
    shape = tuple(plate.sizes[d] for d in _UNIT_DIMS)
    present = np.asarray(plate.coords["field_present"].values, dtype=bool)
    units = [u for u in np.ndindex(*shape) if present[u[1], u[2]] and u not in skipped]
    batches = [units[i : i + per_task] for i in range(0, len(units), per_task)]
    # not blockwise: one task segments a batch of several fields (many blocks in, one list out)
    batch_layer: dict[Any, Any] = {
        (batch_name, b): (
            _segment_fields,
            segmenter,
            exclude_border,
            [_unit_label(plate, u) for u in batch],
            [(images.name, *u, 0, *zeros) for u in batch],
        )
        for b, batch in enumerate(batches)
    }
    with gpu_tasks() if getattr(segmenter, "gpu", False) else contextlib.nullcontext():
        graph = HighLevelGraph.from_collections(
            batch_name, batch_layer, dependencies=[cast(Any, images)]
        )
    position = {
        u: ((batch_name, b), j) for b, batch in enumerate(batches) for j, u in enumerate(batch)
    }

    def picked(name: str, pick: Any, empty: tuple[Any, ...], block: tuple[int, ...]) -> da.Array:
        # not blockwise: each field's chunk picks its result out of its batch; holes are np.zeros
        layer: dict[Any, Any] = {
            (name, *u, *block): (pick, *position[u]) if u in position else empty
            for u in np.ndindex(*shape)
        }
        merged = HighLevelGraph(
            {**graph.layers, name: MaterializedLayer(layer)},
            {**graph.dependencies, name: {batch_name}},
        )
        sizes = (*((1,) * n for n in shape), *((n,) for n in (spatial if block else ())))
        return da.Array(merged, name, sizes, dtype=empty[2])

    arrays = {
        compartment: picked(
            f"labels-{compartment}-{token}",
            functools.partial(_pick_labels, compartment=k),
            (np.zeros, (1, 1, 1, *spatial), np.uint32),
            zeros,
        )
        for k, compartment in enumerate(compartments)
    }
    dropped = picked(f"border-dropped-{token}", _pick_dropped, (np.zeros, (1, 1, 1), np.int64), ())
    return _as_dataset(plate, arrays, dropped, segmenter, exclude_border, channel_names)


def _unit_label(plate: xr.DataArray, unit: tuple[int, int, int]) -> str:
    t, w, f = unit
    well = plate.coords["well"].values[w]
    field = plate.coords["field"].values[f]
    return f"well {well} field {field} t={t}"


def _segment_fields(
    segmenter: Segmenter, exclude_border: bool, where: list[str], blocks: list[np.ndarray]
) -> list[tuple[np.ndarray, int]]:
    """Segment a batch of fields; each block is ``(1, 1, 1, c, [z,] y, x)``."""
    images = [np.asarray(block)[0, 0, 0] for block in blocks]
    results = segmenter.segment_batch(images)
    if len(results) != len(images):
        raise ValueError(f"the segmenter returned {len(results)} results for {len(images)} fields")
    out = []
    for image, labels, label in zip(images, results, where, strict=True):
        checked = check_labels(np.asarray(labels), image, segmenter.compartments, label)
        out.append(drop_border_objects(checked) if exclude_border else (checked, 0))
    return out


def _pick_labels(
    results: list[tuple[np.ndarray, int]], index: int, *, compartment: int
) -> np.ndarray:
    labels = results[index][0][compartment]
    return labels[np.newaxis, np.newaxis, np.newaxis]


def _pick_dropped(results: list[tuple[np.ndarray, int]], index: int) -> np.ndarray:
    return np.full((1, 1, 1), results[index][1], dtype=np.int64)


def _as_dataset(
    plate: xr.DataArray,
    arrays: dict[str, da.Array],
    dropped: da.Array,
    segmenter: Segmenter,
    exclude_border: bool,
    channel_names: list[str],
) -> xr.Dataset:
    spatial_dims = tuple(d for d in plate.dims if d in ("z", "y", "x"))
    keep = ["t", "well", "field", "row", "col", "field_present", *plate_map_columns(plate)]
    if "z" in spatial_dims:
        keep.append("z")
    if UNIT_TOKEN in plate.coords:
        keep.append(UNIT_TOKEN)
    coords = {name: plate.coords[name] for name in keep if name in plate.coords}
    variables: dict[str, Any] = {
        name: ((*_UNIT_DIMS, *spatial_dims), array) for name, array in arrays.items()
    }
    variables["border_dropped"] = (_UNIT_DIMS, dropped)
    step = {
        "op": "segment",
        "segmenter": _describe(segmenter),
        "channels": channel_names,
        "exclude_border": exclude_border,
    }
    attrs = add_lineage({LINEAGE: plate.attrs.get(LINEAGE, [])}, step)
    attrs.update(
        plate=str(plate.name),
        compartments=list(arrays),
        pixel_size_um=plate.attrs.get("pixel_size_um"),
    )
    return xr.Dataset(
        variables, coords=coords, attrs={k: v for k, v in attrs.items() if v is not None}
    )


def _describe(segmenter: Segmenter) -> dict[str, Any]:
    """A JSON description of the segmenter (its own, else its class and dask token)."""
    describe = getattr(segmenter, "describe", None)
    if callable(describe):
        return dict(describe())
    return {"class": type(segmenter).__qualname__, "token": tokenize(segmenter)}
