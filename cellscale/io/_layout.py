"""The plate layout record: every coordinate of a plate as JSON, stored in the plate's attrs.

NGFF has no place for plate-map columns, physical time points or channel names on
plates that lack OMERO metadata, so cellscale stores them under the ``"cellscale"``
key of the plate group's attributes (beside, never inside, the ``"ome"`` metadata).
Readers that do not know the key ignore it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from cellscale.plate import UNIT_TOKEN, PlateError, plate_map_columns

__all__ = ["LAYOUT_KEY", "PlateLayout", "unit_coordinates"]

LAYOUT_KEY = "cellscale"
_LAYOUT_VERSION = 1


@dataclass(frozen=True)
class PlateLayout:
    """Everything about a plate but its pixels, in a JSON-friendly form."""

    name: str
    wells: list[str]
    fields: list[int]
    channels: list[str]
    t: list[Any]
    z: list[Any]
    shape_yx: tuple[int, int]
    dtype: str
    field_present: list[list[bool]]
    plate_map: dict[str, dict[str, Any]] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    unit_coords: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_plate(cls, plate: xr.DataArray) -> PlateLayout:
        """Record the layout of a plate array."""
        return cls(
            name=str(plate.name or "plate"),
            wells=[str(w) for w in plate.coords["well"].values],
            fields=[int(f) for f in plate.coords["field"].values],
            channels=[str(c) for c in plate.coords["c"].values],
            t=_json_list(plate.coords["t"].values),
            z=_json_list(plate.coords["z"].values),
            shape_yx=(int(plate.sizes["y"]), int(plate.sizes["x"])),
            dtype=str(plate.dtype),
            field_present=plate.coords["field_present"].values.astype(bool).tolist(),
            plate_map={
                col: {
                    "dtype": str(plate.coords[col].dtype),
                    "values": _json_list(plate.coords[col].values),
                }
                for col in plate_map_columns(plate)
            },
            attrs=_json_attrs(plate.attrs),
            unit_coords=unit_coordinates(plate),
        )

    @classmethod
    def from_json(cls, record: Any) -> PlateLayout:
        """Read a layout record written by :meth:`to_json`."""
        version = record.get("layout_version") if isinstance(record, dict) else None
        if version != _LAYOUT_VERSION:
            raise PlateError(
                f"plate layout version {version!r} is not supported "
                f"(this cellscale reads version {_LAYOUT_VERSION})"
            )
        return cls(
            name=record["name"],
            wells=list(record["wells"]),
            fields=[int(f) for f in record["fields"]],
            channels=list(record["channels"]),
            t=list(record["t"]),
            z=list(record["z"]),
            shape_yx=(int(record["shape_yx"][0]), int(record["shape_yx"][1])),
            dtype=record["dtype"],
            field_present=[[bool(v) for v in row] for row in record["field_present"]],
            plate_map=dict(record.get("plate_map", {})),
            attrs=dict(record.get("attrs", {})),
            unit_coords=dict(record.get("unit_coords", {})),
        )

    def to_json(self) -> dict[str, Any]:
        """The layout as a JSON-serialisable dict."""
        return {
            "layout_version": _LAYOUT_VERSION,
            "name": self.name,
            "wells": self.wells,
            "fields": self.fields,
            "channels": self.channels,
            "t": self.t,
            "z": self.z,
            "shape_yx": list(self.shape_yx),
            "dtype": self.dtype,
            "field_present": self.field_present,
            "plate_map": self.plate_map,
            "attrs": self.attrs,
            "unit_coords": self.unit_coords,
        }

    def plate_map_frame(self) -> pd.DataFrame:
        """The plate-map columns as a table indexed by well."""
        columns = {
            name: _restore_values(spec["values"], spec["dtype"])
            for name, spec in self.plate_map.items()
        }
        return pd.DataFrame(columns, index=pd.Index(self.wells, name="well"))

    def image_shape(self) -> tuple[int, int, int, int, int]:
        """The on-disk shape ``(t, c, z, y, x)`` of every field image."""
        return (len(self.t), len(self.channels), len(self.z), *self.shape_yx)

    def same_grid(self, other: PlateLayout) -> bool:
        """Whether both layouts share channels, z, image shape and dtype."""
        return (
            self.channels == other.channels
            and self.z == other.z
            and self.shape_yx == other.shape_yx
            and self.dtype == other.dtype
        )


def unit_coordinates(plate: xr.DataArray) -> dict[str, str]:
    """The plate's numeric ``(t, well, field)`` coordinates, by name, with their dtypes.

    These are values a step computed per unit, such as ``focus_plane`` from a best-focus
    projection; a store keeps them beside the pixels. ``unit_token`` is the store's own.
    """
    return {
        str(name): str(coord.dtype)
        for name, coord in plate.coords.items()
        if coord.dims == ("t", "well", "field")
        and name != UNIT_TOKEN
        and coord.dtype.kind in "biuf"
    }


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _json_list(values: np.ndarray) -> list[Any]:
    return [_json_scalar(v) for v in np.asarray(values).tolist()]


def _json_attrs(attrs: dict[Any, Any]) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, list | tuple | np.ndarray):
            return [convert(v) for v in value]
        return _json_scalar(value)

    return {str(k): convert(v) for k, v in attrs.items()}


def _restore_values(values: list[Any], dtype: str) -> np.ndarray:
    if dtype == "object":
        return np.asarray(values, dtype=object)
    if dtype.startswith("float"):
        return np.asarray([np.nan if v is None else v for v in values], dtype=dtype)
    return np.asarray(values, dtype=dtype)
