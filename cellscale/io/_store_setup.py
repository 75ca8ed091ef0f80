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
from cellscale.io._pyramid import level_shapes, scale_for_level
from cellscale.io._unit_coords import create_unit_coords
from cellscale.plate import split_well

__all__ = [
    "FINGERPRINT_KEY",
    "LEDGER_NAME",
    "PLATE_MAP_TABLE",
    "WRITE_CONFIG",
    "StoreRecord",
    "create_store",
    "field_image_path",
    "level_templates",
    "multiscale_datasets",
    "read_store_record",
    "template_attrs",
    "write_plate_map_table",
    "write_store_record",
]

LEDGER_NAME = "cellscale_ledger"
PLATE_MAP_TABLE = "plate_map.csv"
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


def write_store_record(
    path: Path, root: zarr.Group, layout: PlateLayout, fingerprint: Fingerprint
) -> None:
    """Write the plate-map table, then the layout record and fingerprint: the last of setup."""
    write_plate_map_table(path, layout)
    root.attrs[LAYOUT_KEY] = {**layout.to_json(), FINGERPRINT_KEY: fingerprint.to_json()}


def write_plate_map_table(path: Path, layout: PlateLayout) -> None:
    """Write ``plate_map.csv`` at the store's root: one row per imaged well, for any tool.

    The columns are ``well``, ``row``, ``col`` and each plate-map column. The file is
    replaced atomically, so a reader never sees half of it.
    """
    table = layout.plate_map_frame().reset_index()
    rows_cols = [split_well(w) for w in layout.wells]
    table.insert(1, "row", [r for r, _ in rows_cols])
    table.insert(2, "col", [c for _, c in rows_cols])
    partial = path / f"{PLATE_MAP_TABLE}.partial"
    table.to_csv(partial, index=False)
    partial.replace(path / PLATE_MAP_TABLE)


def create_store(
    path: Path,
    layout: PlateLayout,
    fingerprint: Fingerprint,
    version: str,
    codec: str,
    clevel: int,
    levels: int = 1,
) -> dict[tuple[str, int], list[zarr.Array]]:
    """Create the plate's groups, metadata, empty arrays and ledger; return the field arrays.

    Anything at ``path`` is deleted first. The NGFF metadata is made by ome-zarr-py on
    in-memory templates, and every row, well, field group and image array (one per
    pyramid level, ``0`` … ``levels - 1``) is then written in one concurrent
    :func:`zarr.create_hierarchy` call. The root's setup mark comes first and the record
    last, so an interrupted setup is recognised and redone.

    Returns
    -------
    dict
        Each present ``(well, field)``'s arrays, level 0 first.
    """
    fmt = format_for(version)
    zarr_format = zarr_format_for(version)
    if path.exists():
        shutil.rmtree(path)
    root = zarr.open_group(
        str(path), mode="w", zarr_format=zarr_format, attributes={LAYOUT_KEY: _SETUP_MARK}
    )
    Ledger.create(root, LEDGER_NAME, (len(layout.t), len(layout.wells), len(layout.fields)))
    create_unit_coords(root, layout)
    templates = level_templates(
        layout.image_shape(),
        levels,
        dtype=layout.dtype,
        compressors=compressor_for(codec, clevel, zarr_format),
        zarr_format=zarr_format,
    )
    scale = _scale(layout)
    image_attrs = template_attrs(
        zarr_format,
        lambda group: write_multiscales_metadata(
            group,
            multiscale_datasets(scale, levels),
            fmt=fmt,
            axes=_axes(layout),
            name="field",
            metadata={"omero": _omero_metadata(layout)},
        ),
    )
    rows = sorted({split_well(w)[0] for w in layout.wells}, key=lambda r: (len(r), r))
    nodes: dict[str, Any] = {row: GroupMetadata(zarr_format=zarr_format) for row in rows}
    images: dict[str, tuple[tuple[str, int], int]] = {}
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
            for level, template in enumerate(templates):
                nodes[f"{group_path}/{level}"] = template.metadata
                images[f"{group_path}/{level}"] = ((well, field), level)
    created = zarr.create_hierarchy(store=root.store, nodes=nodes)
    arrays: dict[tuple[str, int], list[zarr.Array]] = {}
    for key, node in sorted(
        ((k, n) for k, n in created if k in images), key=lambda item: images[item[0]][1]
    ):
        assert isinstance(node, zarr.Array)
        arrays.setdefault(images[key][0], []).append(node.with_config(WRITE_CONFIG))
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
    write_store_record(path, root, layout, fingerprint)  # last: the setup is complete
    return arrays


def template_attrs(zarr_format: ZarrFormat, write: Callable[[zarr.Group], None]) -> dict[str, Any]:
    """The attributes that an ome-zarr-py metadata writer gives a group, made in memory."""
    group = zarr.open_group(zarr.storage.MemoryStore(), mode="w", zarr_format=zarr_format)
    write(group)
    return group.attrs.asdict()


def level_templates(
    shape: tuple[int, ...],
    levels: int,
    *,
    dtype: Any,
    compressors: Any,
    zarr_format: ZarrFormat,
) -> list[zarr.Array]:
    """In-memory template arrays of each pyramid level of ``(t, c, z, y, x)`` images.

    Every level has one chunk per ``(t, c)`` image, whole in z, y and x.
    """
    templates = []
    for y, x in level_shapes((shape[-2], shape[-1]), levels):
        level_shape = (*shape[:-2], y, x)
        options: dict[str, Any] = {
            "shape": level_shape,
            "chunks": (1, 1, *level_shape[2:]),
            "dtype": dtype,
            "fill_value": 0,
            "compressors": compressors,
        }
        if zarr_format == 3:
            options["dimension_names"] = IMAGE_AXES
        templates.append(
            zarr.create_array(zarr.storage.MemoryStore(), **options, zarr_format=zarr_format)
        )
    return templates


def multiscale_datasets(scale: list[float], levels: int) -> list[dict[str, Any]]:
    """NGFF ``datasets`` of a pyramid: paths ``0`` … and each level's scale."""
    return [
        {
            "path": str(level),
            "coordinateTransformations": [
                {"type": "scale", "scale": scale_for_level(scale, level)}
            ],
        }
        for level in range(levels)
    ]


def _axes(layout: PlateLayout) -> list[dict[str, str]]:
    """NGFF axes with units: micrometres in space, seconds in time where they are known."""
    pixel_unit = {"unit": "micrometer"} if "pixel_size_um" in layout.attrs else {}
    z_unit = _unit(layout.z, layout.attrs.get("z_unit"))
    t_unit = _unit(layout.t, layout.attrs.get("t_unit"))
    return [
        {"name": "t", "type": "time", **t_unit},
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space", **z_unit},
        {"name": "y", "type": "space", **pixel_unit},
        {"name": "x", "type": "space", **pixel_unit},
    ]


def _unit(values: list[Any], unit: Any) -> dict[str, str]:
    """An axis's ``unit`` entry: the recorded unit of a coordinate of numbers, else none."""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    return {"unit": str(unit)} if unit and numeric else {}


def _scale(layout: PlateLayout) -> list[float]:
    pixel_y, pixel_x = layout.attrs.get("pixel_size_um", [1.0, 1.0])
    return [_step(layout.t), 1.0, _step(layout.z), float(pixel_y), float(pixel_x)]


def _step(values: list[Any]) -> float:
    numeric = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numeric) < 2 or len(numeric) != len(values):
        return 1.0
    step = abs(float(np.median(np.diff(numeric))))  # a stack may be acquired top-down
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
