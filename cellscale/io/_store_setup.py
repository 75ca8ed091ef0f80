"""Creating a plate store: groups, NGFF metadata, empty arrays, the ledger and the records.

Setup writes, in order: the root group marked "setup incomplete", the completion
ledger, every row, well and field group and image array (one concurrent
:func:`zarr.create_hierarchy` call), the NGFF plate metadata, and last the layout
record with the fingerprint. A store whose setup was interrupted is recognised by its
marker (or a missing record) and set up again.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from ome_zarr.writer import write_multiscales_metadata, write_plate_metadata, write_well_metadata

from cellscale._compat import ArrayConfigParams, GroupMetadata
from cellscale._stages import Fingerprint, Ledger, StaleOutputError
from cellscale.io._layout import LAYOUT_KEY, PlateLayout
from cellscale.io._ngff import (
    IMAGE_AXES,
    ZarrFormat,
    compressor_for,
    format_for,
    ome_attrs,
    zarr_format_for,
)
from cellscale.plate import split_well

__all__ = [
    "FINGERPRINT_KEY",
    "LEDGER_NAME",
    "WRITE_CONFIG",
    "StoreRecord",
    "create_store",
    "field_image_path",
    "read_store_record",
    "template_attrs",
    "write_store_record",
]

LEDGER_NAME = "cellscale_ledger"
FINGERPRINT_KEY = "fingerprint"
# images are never "empty": skip zarr's comparison of every chunk with the fill value
WRITE_CONFIG: ArrayConfigParams = {"write_empty_chunks": True}
_SETUP_MARK = {"setup": "incomplete"}
_CHANNEL_COLORS = ("0000FF", "00FF00", "FF0000", "FF00FF", "FFFF00", "00FFFF", "FFFFFF")


def field_image_path(well: str, field: int) -> str:
    """Path of a field's image group inside a plate store, e.g. ``"B/03/2"``."""
    row, col = split_well(well)
    return f"{row}/{col:02d}/{field}"


class StoreRecord:
    """What a complete store setup recorded: its layout and fingerprint (if any)."""

    def __init__(self, layout: PlateLayout, fingerprint: Fingerprint | None) -> None:
        self.layout = layout
        self.fingerprint = fingerprint


def read_store_record(path: Path) -> StoreRecord | None:
    """The record of a complete plate store at ``path``; ``None`` if there is none yet.

    A missing path, an empty folder and a store whose setup was interrupted all give
    ``None`` (set the store up afresh).

    Raises
    ------
    StaleOutputError
        If ``path`` holds something cellscale did not write.
    """
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return None
    try:
        root = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, NotADirectoryError, zarr.errors.GroupNotFoundError) as err:
        raise StaleOutputError(
            f"{path} exists and is not a Zarr group; pass overwrite=True to replace it"
        ) from err
    record: Any = root.attrs.asdict().get(LAYOUT_KEY)
    if record is None:
        if LEDGER_NAME in root:
            return None  # written by a setup that stopped before its record
        raise StaleOutputError(
            f"{path} exists and was not written by cellscale; pass overwrite=True to replace it"
        )
    if record.get("setup") == _SETUP_MARK["setup"]:
        return None
    fingerprint = record.get(FINGERPRINT_KEY)
    return StoreRecord(
        PlateLayout.from_json(record),
        Fingerprint.from_json(fingerprint) if fingerprint is not None else None,
    )


def write_store_record(root: zarr.Group, layout: PlateLayout, fingerprint: Fingerprint) -> None:
    """Write the layout record and fingerprint: the last step of setup."""
    root.attrs[LAYOUT_KEY] = {**layout.to_json(), FINGERPRINT_KEY: fingerprint.to_json()}


def create_store(
    path: Path,
    layout: PlateLayout,
    fingerprint: Fingerprint,
    version: str,
    codec: str,
    clevel: int,
) -> dict[tuple[str, int], zarr.Array]:
    """Create the plate's groups, metadata, empty arrays and ledger; return the field arrays.

    Anything at ``path`` is deleted first. The NGFF metadata is made by ome-zarr-py on
    in-memory templates, and every row, well, field group and image array is then written
    in one concurrent :func:`zarr.create_hierarchy` call. The root's setup mark comes
    first and the record last, so an interrupted setup is recognised and redone.
    """
    fmt = format_for(version)
    zarr_format = zarr_format_for(version)
    if path.exists():
        shutil.rmtree(path)
    root = zarr.open_group(
        str(path), mode="w", zarr_format=zarr_format, attributes={LAYOUT_KEY: _SETUP_MARK}
    )
    Ledger.create(root, LEDGER_NAME, (len(layout.t), len(layout.wells), len(layout.fields)))
    shape = layout.image_shape()
    array_options: dict[str, Any] = {
        "shape": shape,
        "chunks": (1, 1, *shape[2:]),
        "dtype": layout.dtype,
        "fill_value": 0,
        "compressors": compressor_for(codec, clevel, zarr_format),
    }
    if zarr_format == 3:
        array_options["dimension_names"] = IMAGE_AXES
    template = zarr.create_array(
        zarr.storage.MemoryStore(), **array_options, zarr_format=zarr_format
    )
    image_attrs = template_attrs(
        zarr_format,
        lambda group: write_multiscales_metadata(
            group,
            [{"path": "0", "coordinateTransformations": [_scale_transform(layout)]}],
            fmt=fmt,
            axes=_axes(layout),
            name="field",
            metadata={"omero": _omero_metadata(layout)},
        ),
    )
    rows = sorted({split_well(w)[0] for w in layout.wells}, key=lambda r: (len(r), r))
    nodes: dict[str, Any] = {row: GroupMetadata(zarr_format=zarr_format) for row in rows}
    images: dict[str, tuple[str, int]] = {}
    for w, well in enumerate(layout.wells):
        present = [f for i, f in enumerate(layout.fields) if layout.field_present[w][i]]
        well_attrs = template_attrs(
            zarr_format,
            partial(write_well_metadata, images=[{"path": str(f)} for f in present], fmt=fmt),
        )
        row, col = split_well(well)
        nodes[f"{row}/{col:02d}"] = GroupMetadata(
            attributes=well_attrs,
            zarr_format=zarr_format,
        )
        for field in present:
            attrs = copy.deepcopy(image_attrs)
            ome_attrs(attrs)["multiscales"][0]["name"] = f"{well}-f{field}"
            group_path = field_image_path(well, field)
            nodes[group_path] = GroupMetadata(attributes=attrs, zarr_format=zarr_format)
            nodes[f"{group_path}/0"] = template.metadata
            images[f"{group_path}/0"] = (well, field)
    created = zarr.create_hierarchy(store=root.store, nodes=nodes)
    arrays = {
        images[key]: node.with_config(WRITE_CONFIG)
        for key, node in created
        if key in images and isinstance(node, zarr.Array)
    }
    cols = sorted({split_well(w)[1] for w in layout.wells})
    write_plate_metadata(
        root,
        rows,
        [f"{c:02d}" for c in cols],
        [f"{split_well(w)[0]}/{split_well(w)[1]:02d}" for w in layout.wells],
        fmt=fmt,
        name=layout.name,
        field_count=max((sum(row) for row in layout.field_present), default=0),
    )
    write_store_record(root, layout, fingerprint)  # last: the setup is complete
    return arrays


def template_attrs(zarr_format: ZarrFormat, write: Callable[[zarr.Group], None]) -> dict[str, Any]:
    """The attributes that an ome-zarr-py metadata writer gives a group, made in memory."""
    group = zarr.open_group(zarr.storage.MemoryStore(), mode="w", zarr_format=zarr_format)
    write(group)
    return group.attrs.asdict()


def _axes(layout: PlateLayout) -> list[dict[str, str]]:
    spatial_unit = {"unit": "micrometer"} if "pixel_size_um" in layout.attrs else {}
    return [
        {"name": "t", "type": "time"},
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space", **spatial_unit},
        {"name": "y", "type": "space", **spatial_unit},
        {"name": "x", "type": "space", **spatial_unit},
    ]


def _scale_transform(layout: PlateLayout) -> dict[str, Any]:
    pixel_y, pixel_x = layout.attrs.get("pixel_size_um", [1.0, 1.0])
    return {
        "type": "scale",
        "scale": [_step(layout.t), 1.0, _step(layout.z), float(pixel_y), float(pixel_x)],
    }


def _step(values: list[Any]) -> float:
    numeric = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numeric) < 2 or len(numeric) != len(values):
        return 1.0
    step = float(np.median(np.diff(numeric)))
    return step if step > 0 else 1.0


def _omero_metadata(layout: PlateLayout) -> dict[str, Any]:
    dtype = np.dtype(layout.dtype)
    top = float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0
    return {
        "channels": [
            {
                "label": name,
                "color": _CHANNEL_COLORS[i % len(_CHANNEL_COLORS)],
                "active": True,
                "window": {"min": 0.0, "max": top, "start": 0.0, "end": top},
            }
            for i, name in enumerate(layout.channels)
        ],
        "rdefs": {"model": "color"},
    }
