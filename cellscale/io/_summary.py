"""A plate store summarised for people: what ``cellscale info`` prints."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from cellscale.io._hcs_read import open_plate
from cellscale.io._ngff import ome_attrs
from cellscale.io._plate_index import INDEX_NAME
from cellscale.plate import UNIT_TOKEN, plate_map_columns

__all__ = ["PlateSummary", "plate_summary"]


@dataclass
class PlateSummary:
    """What a plate store holds, in numbers a person checks before using it.

    Attributes
    ----------
    path, name
        The store and the plate's name.
    sizes
        Each dimension's length.
    dtype, channels
        Pixel type and channel names.
    pixel_size_um, z_step, t_values
        Physical pixel size (y, x), the Z step and the time points, with their units.
    plate_map
        Each plate-map column and a few of its values.
    units_complete, units_present
        Complete and present ``(t, well, field)`` units.
    levels
        Pyramid levels and each level's image size.
    bytes_on_disk, bytes_raw
        Size of the store's files and of its uncompressed level-0 pixels.
    ngff_version, indexed
        The NGFF version, and whether the plate opens from its index.
    """

    path: Path
    name: str
    sizes: dict[str, int]
    dtype: str
    channels: list[str]
    pixel_size_um: list[float] | None
    z_step: str
    t_values: str
    plate_map: dict[str, list[str]] = field(default_factory=dict)
    units_complete: int | None = None
    units_present: int = 0
    levels: list[tuple[int, int]] = field(default_factory=list)
    bytes_on_disk: int = 0
    bytes_raw: int = 0
    ngff_version: str = ""
    indexed: bool = False

    def __str__(self) -> str:
        dims = " x ".join(f"{d} {n}" for d, n in self.sizes.items())
        pixel = (
            f"{self.pixel_size_um[0]:g} x {self.pixel_size_um[1]:g} µm"
            if self.pixel_size_um
            else "unknown"
        )
        complete = (
            f"{self.units_complete} of {self.units_present} units complete"
            if self.units_complete is not None
            else f"{self.units_present} units (not written by cellscale: completeness unknown)"
        )
        lines = [
            f"plate {self.name!r} at {self.path} (NGFF {self.ngff_version})",
            f"  dims        {dims}",
            f"  pixels      {self.dtype}, {pixel}",
            f"  channels    {', '.join(self.channels)}",
            f"  z           {self.z_step}",
            f"  t           {self.t_values}",
            f"  pyramid     {', '.join(f'{y}x{x}' for y, x in self.levels)}",
            f"  complete    {complete}",
            f"  on disk     {_size(self.bytes_on_disk)} "
            f"({_size(self.bytes_raw)} uncompressed at full resolution)",
            f"  opens from  {'its index' if self.indexed else 'a walk of every field'}",
        ]
        if self.plate_map:
            lines.append(
                "  plate map   "
                + "; ".join(
                    f"{column}: {', '.join(values)}" for column, values in self.plate_map.items()
                )
            )
        else:
            lines.append("  plate map   none")
        return "\n".join(lines)


def plate_summary(path: str | Path) -> PlateSummary:
    """Summarise the plate store at ``path`` without reading any pixels.

    An incomplete plate is summarised too; its completeness says how far the write got.
    """
    path = Path(path)
    plate = open_plate(path, allow_incomplete=True)
    present = np.asarray(plate.coords["field_present"].values, dtype=bool)
    units_present = int(present.sum()) * plate.sizes["t"]
    complete = None
    if UNIT_TOKEN in plate.coords:
        tokens = np.asarray(plate.coords[UNIT_TOKEN].transpose("t", "well", "field").values)
        complete = int(((tokens != 0) & present[np.newaxis]).sum())
    return PlateSummary(
        path=path,
        name=str(plate.name),
        sizes={str(d): int(n) for d, n in plate.sizes.items()},
        dtype=str(plate.dtype),
        channels=[str(c) for c in plate.coords["c"].values],
        pixel_size_um=plate.attrs.get("pixel_size_um"),
        z_step=_axis_text(plate.coords["z"].values, plate.attrs.get("z_unit"), "plane"),
        t_values=_axis_text(plate.coords["t"].values, plate.attrs.get("t_unit"), "time point"),
        plate_map={
            column: _some(plate.coords[column].values) for column in plate_map_columns(plate)
        },
        units_complete=complete,
        units_present=units_present,
        levels=_levels(path),
        bytes_on_disk=_disk_bytes(path),
        bytes_raw=int(present.sum())
        * int(np.prod([plate.sizes[d] for d in "tzcyx"]))
        * plate.dtype.itemsize,
        ngff_version=str(plate.attrs.get("ngff_version", "")),
        indexed=(path / INDEX_NAME).is_dir(),
    )


def _axis_text(values: np.ndarray, unit: Any, what: str) -> str:
    count = f"{len(values)} {what}{'s' if len(values) != 1 else ''}"
    if len(values) < 2:
        return count
    step = float(np.median(np.diff(np.asarray(values, dtype=float))))
    label = f" {unit}" if unit else " (indices: no physical values recorded)"
    return f"{count}, step {step:g}{label}"


def _some(values: np.ndarray, shown: int = 4) -> list[str]:
    distinct = list(dict.fromkeys(str(v) for v in values))
    more = [f"… {len(distinct) - shown} more"] if len(distinct) > shown else []
    return distinct[:shown] + more


def _levels(path: Path) -> list[tuple[int, int]]:
    """Each pyramid level's image size, from the first field the NGFF metadata lists."""
    root = zarr.open_group(str(path), mode="r")
    well_path = str(ome_attrs(root.attrs.asdict())["plate"]["wells"][0]["path"])
    well = root[well_path]
    assert isinstance(well, zarr.Group)
    image_path = str(ome_attrs(well.attrs.asdict())["well"]["images"][0]["path"])
    group = well[image_path]
    assert isinstance(group, zarr.Group)
    datasets = ome_attrs(group.attrs.asdict())["multiscales"][0]["datasets"]
    shapes = []
    for dataset in datasets:
        array = group[str(dataset["path"])]
        assert isinstance(array, zarr.Array)
        shapes.append((int(array.shape[-2]), int(array.shape[-1])))
    return shapes


def _disk_bytes(path: Path) -> int:
    return sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, names in os.walk(path)
        for name in names
    )


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} TiB"
