"""``measure``: labels + plate -> the cell table, one lazy partition per field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import xarray as xr
from dask.delayed import Delayed

from cellscale._stages import shared_delayed_blocks
from cellscale.cells import CELL_ID, METADATA_COLUMNS, cell_offsets, metadata_column
from cellscale.measurement._features import field_features
from cellscale.plate import PlateError, as_plate, field_stack, plate_map_columns, spatial_plate

__all__ = [
    "FieldSpec",
    "MeasuredFields",
    "field_table",
    "measure",
    "measured_fields",
    "unit_specs",
]

_UNIT_DIMS = ("t", "well", "field")


class FieldSpec:
    """What one field's table task needs besides its pixels: its metadata and first ``cell_id``."""

    def __init__(
        self, unit: tuple[int, int, int], metadata: dict[str, Any], first_id: int, count: int
    ) -> None:
        self.unit = unit
        self.metadata = metadata
        self.first_id = first_id
        self.count = count

    def __dask_tokenize__(self) -> Any:
        return (
            "FieldSpec",
            self.unit,
            sorted(self.metadata.items(), key=str),
            self.first_id,
            self.count,
        )

    @property
    def where(self) -> str:
        well, site = self.metadata["Metadata_Well"], self.metadata["Metadata_Site"]
        return f"well {well} field {site} t={self.unit[0]}"


def measure(
    labels: xr.Dataset,
    plate: xr.DataArray,
    *,
    channels: Sequence[str] | None = None,
    intensity: bool = True,
    cp_measure: Sequence[str] = (),
) -> dd.DataFrame:
    """The cell table of segmented fields: one row per object, as a lazy dask DataFrame.

    Parameters
    ----------
    labels
        From :func:`cellscale.segment` or :func:`cellscale.open_labels`. Its first
        compartment defines the objects; a second one (the cells' nuclei) is measured for
        the same ids.
    plate
        The plate the labels were made from (same t, wells and fields), projected for 2D
        labels.
    channels
        The channels whose intensities are measured (default: all).
    intensity
        Measure per-channel intensities (mean, std, min, max, integrated).
    cp_measure
        CellProfiler feature sets from cp-measure, per compartment and channel (2D):
        any of ``"granularity"``, ``"texture"``, ``"zernike"``, ``"radial_distribution"``
        (``pip install 'cellscale[measure]'``).

    Returns
    -------
    dask.dataframe.DataFrame
        One partition per field in (t, well, field) order; columns ``cell_id`` (int64,
        0 … N−1 over the plate), ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``,
        ``Metadata_Timepoint``, ``Metadata_ObjectNumber``, the plate-map columns as
        ``Metadata_<name>``, then the features (see :mod:`cellscale.cells`). Fields with no
        objects give empty partitions. The index is ``cell_id`` too.

    Notes
    -----
    ``cell_id`` needs the number of objects of every field. Labels opened with
    :func:`cellscale.open_labels` carry them (``n_objects``); for labels straight from
    :func:`cellscale.segment` they are computed here first, which runs the segmentation
    once more when the table is computed: write the labels first at scale.
    """
    return measured_fields(
        labels, plate, channels=channels, intensity=intensity, cp_measure=cp_measure
    ).table()


class MeasuredFields:
    """The lazy measurement of every present field, with the blocks each field's task reads.

    Attributes
    ----------
    specs
        Each present field's :class:`FieldSpec`, in (t, well, field) order.
    parts
        The delayed table of each field (a :func:`field_table` task).
    images
        The delayed image block each field's task reads, ``(1, 1, 1, c, [z,] y, x)`` with
        the measured channels.
    labels
        The delayed label block of each compartment that each field's task reads.
    channels
        The measured channels, in the order of the image blocks.
    plate
        The plate as measured, ``(t, well, field, c, [z,] y, x)``.
    meta
        The empty table with every column and dtype.
    """

    def __init__(
        self,
        specs: list[FieldSpec],
        parts: list[Delayed],
        images: list[Delayed],
        labels: list[dict[str, Delayed]],
        channels: list[str],
        plate: xr.DataArray,
        meta: pd.DataFrame,
    ) -> None:
        self.specs, self.parts, self.images, self.labels = specs, parts, images, labels
        self.channels, self.plate, self.meta = channels, plate, meta

    def table(self) -> dd.DataFrame:
        """The cell table, one partition per field (see :func:`measure`)."""
        if not self.parts:
            return dd.from_pandas(self.meta, npartitions=1)
        return dd.from_delayed(self.parts, meta=self.meta, verify_meta=False)


def measured_fields(
    labels: xr.Dataset,
    plate: xr.DataArray,
    *,
    channels: Sequence[str] | None = None,
    intensity: bool = True,
    cp_measure: Sequence[str] = (),
) -> MeasuredFields:
    """The tasks of :func:`measure`, one per present field, and the blocks they read.

    Parameters are as for :func:`measure`. Other tasks of the same computation that take
    a field's image or label blocks from here share the one read of them.
    """
    compartments = list(labels.attrs.get("compartments", []))
    if not compartments:
        raise ValueError("labels must come from cellscale.segment or cellscale.open_labels")
    do_3d = "z" in labels[compartments[0]].dims
    plate = spatial_plate(as_plate(plate), do_3d)
    _check_aligned(labels, plate)
    names = [str(c) for c in plate.coords["c"].values]
    chosen = list(channels) if channels is not None else names
    unknown = [c for c in chosen if c not in names]
    if unknown:
        raise PlateError(f"channels {unknown} are not in the plate; its channels are {names}")
    stack, *masks_of = shared_delayed_blocks(
        field_stack(plate, [names.index(c) for c in chosen]),
        *(labels[c].data for c in compartments),
    )  # lazy labels: one segmentation of each field for every compartment
    blocks = dict(zip(compartments, masks_of, strict=True))
    specs = unit_specs(labels, plate)
    options = {"intensity": intensity, "cp_measure": tuple(cp_measure)}
    meta = _meta(plate, compartments, chosen, do_3d, options)
    images = [stack[spec.unit + (0,) * (stack.ndim - 3)] for spec in specs]
    masks = [
        {c: blocks[c][spec.unit + (0,) * (blocks[c].ndim - 3)] for c in compartments}
        for spec in specs
    ]
    parts = [
        dask.delayed(field_table, pure=True)(field_masks, image, chosen, spec, meta, options)
        for spec, image, field_masks in zip(specs, images, masks, strict=True)
    ]
    return MeasuredFields(specs, parts, images, masks, chosen, plate, meta)


def unit_specs(labels: xr.Dataset, plate: xr.DataArray) -> list[FieldSpec]:
    """Every present field's metadata and first ``cell_id``, in (t, well, field) order."""
    counts = _object_counts(labels)
    offsets = cell_offsets(counts)
    present = np.asarray(plate.coords["field_present"].values, dtype=bool)
    columns = plate_map_columns(plate)
    specs = []
    for t, w, f in np.ndindex(*counts.shape):
        if not present[w, f]:
            continue
        metadata = {
            "Metadata_Plate": str(plate.name),
            "Metadata_Well": str(plate.coords["well"].values[w]),
            "Metadata_Site": int(plate.coords["field"].values[f]),
            "Metadata_Timepoint": _plain(plate.coords["t"].values[t]),
            **{metadata_column(c): _plain(plate.coords[c].values[w]) for c in columns},
        }
        specs.append(FieldSpec((t, w, f), metadata, int(offsets[t, w, f]), int(counts[t, w, f])))
    return specs


def field_table(
    labels: dict[str, np.ndarray],
    image: np.ndarray,
    channels: Sequence[str],
    spec: FieldSpec,
    meta: pd.DataFrame,
    options: dict[str, Any],
) -> pd.DataFrame:
    """The table of one field: metadata, ``cell_id`` and features of its objects."""
    masks = {name: np.asarray(block)[0, 0, 0] for name, block in labels.items()}
    pixels = np.asarray(image)[0, 0, 0]
    features = field_features(masks, pixels, channels, **options)
    if len(features) != spec.count:
        raise PlateError(
            f"{spec.where}: the labels hold {len(features)} objects but the cell table was laid "
            f"out for {spec.count}; the labels changed since their counts were recorded. "
            "Write the labels again, then measure"
        )
    table = pd.DataFrame(
        {
            CELL_ID: np.arange(spec.first_id, spec.first_id + spec.count, dtype=np.int64),
            **{k: [v] * spec.count for k, v in spec.metadata.items()},
            "Metadata_ObjectNumber": np.arange(1, spec.count + 1, dtype=np.int64),
        }
    )
    table = pd.concat([table, features.reset_index(drop=True)], axis=1)
    table.index = pd.RangeIndex(spec.first_id, spec.first_id + spec.count)
    return table[list(meta.columns)].astype(meta.dtypes.to_dict())


def _object_counts(labels: xr.Dataset) -> np.ndarray:
    if "n_objects" in labels.coords:
        counts = labels.coords["n_objects"]
    else:
        first = labels.attrs["compartments"][0]
        counts = labels[first].max(dim=[d for d in labels[first].dims if d not in _UNIT_DIMS])
    return np.asarray(counts.transpose(*_UNIT_DIMS).values, dtype=np.int64)


def _check_aligned(labels: xr.Dataset, plate: xr.DataArray) -> None:
    for dim in ("t", "well", "field"):
        mine, theirs = labels.coords[dim].values, plate.coords[dim].values
        if len(mine) != len(theirs) or (mine != theirs).any():
            raise PlateError(
                f"labels and plate differ in {dim!r}: {list(mine)[:5]} vs {list(theirs)[:5]}; "
                "measure the labels with the plate they were made from"
            )


def _meta(
    plate: xr.DataArray,
    compartments: list[str],
    channels: list[str],
    do_3d: bool,
    options: dict[str, Any],
) -> pd.DataFrame:
    """An empty table with every column and dtype, from measuring an empty field."""
    spatial = (1, 2, 2) if do_3d else (2, 2)
    empty = {c: np.zeros(spatial, np.uint32) for c in compartments}
    features = field_features(empty, np.zeros((len(channels), *spatial)), channels, **options)
    dtypes = dict(
        zip(
            METADATA_COLUMNS,
            (object, object, np.int64, plate.coords["t"].dtype, np.int64),
            strict=True,
        )
    )
    metadata: dict[str, Any] = {CELL_ID: pd.Series(dtype=np.int64)}
    metadata.update({name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()})
    for column in plate_map_columns(plate):
        metadata[metadata_column(column)] = pd.Series(dtype=plate.coords[column].dtype)
    frame = pd.DataFrame(metadata)
    return pd.concat([frame, features.reset_index(drop=True).astype(np.float64)], axis=1)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
