"""Open an OME-Zarr (NGFF 0.4 or 0.5) HCS plate as a lazy plate array."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.highlevelgraph import HighLevelGraph

from cellscale.io._layout import LAYOUT_KEY, PlateLayout
from cellscale.io._ledger import ledger_done
from cellscale.io._ngff import IMAGE_AXES, ome_attrs
from cellscale.plate import PlateError, build_plate, format_well

__all__ = ["open_plate"]

_OPEN_THREADS = 8


@dataclass(frozen=True)
class _FieldImage:
    """One field's full-resolution array and how its axes map onto (t, c, z, y, x)."""

    label: str
    array: zarr.Array
    axes: tuple[str, ...]
    scale: tuple[float, ...]
    channels: tuple[str, ...] | None

    @property
    def shape5(self) -> tuple[int, ...]:
        sizes = dict(zip(self.axes, self.array.shape, strict=True))
        return tuple(sizes.get(axis, 1) for axis in IMAGE_AXES)


def open_plate(path: str | Path, *, allow_incomplete: bool = False) -> xr.DataArray:
    """Open an OME-Zarr HCS plate as a lazy ``(t, well, field, z, c, y, x)`` plate array.

    Reads NGFF 0.4 (Zarr v2) and 0.5 (Zarr v3) plates, whether cellscale or another
    writer (ome-zarr-py, converters) made them. Plates cellscale wrote keep every
    coordinate (plate map, physical t and z, channel names, attrs); for others they
    are taken from the NGFF metadata where it has them.

    Parameters
    ----------
    path
        The plate store.
    allow_incomplete
        Open a plate whose write has not finished; incomplete units read as zeros.

    Returns
    -------
    xarray.DataArray
        The plate, one dask chunk per ``(t, well, field, c)`` image.

    Raises
    ------
    PlateError
        If the store is not an HCS plate, if its fields disagree in shape, dtype or
        channels (naming the field at fault), or if a cellscale write is incomplete.
    """
    path = Path(path)
    try:
        root = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
        raise PlateError(f"{path} is not a Zarr group") from err
    ome = ome_attrs(root.attrs.asdict())
    plate_meta = ome.get("plate")
    if not isinstance(plate_meta, Mapping):
        raise PlateError(f"{path} is not an OME-Zarr HCS plate: it has no 'plate' metadata")
    version = str(ome.get("version") or plate_meta.get("version") or "0.4")
    images, wells, fields = _field_images(root, plate_meta, path)
    shape5, dtype, channels = _check_fields(images)
    record = root.attrs.asdict().get(LAYOUT_KEY)
    layout = PlateLayout.from_json(record) if record is not None else None
    present = np.array([[(w, f) in images for f in fields] for w in wells], dtype=bool)
    _check_complete(root, present, wells, fields, path, allow_incomplete)
    data = _plate_graph(images, wells, fields, shape5, dtype)
    reference = next(iter(images.values()))
    if layout is not None:
        return build_plate(
            data,
            name=layout.name,
            wells=wells,
            fields=fields,
            channels=layout.channels,
            t=layout.t,
            z=layout.z,
            plate_map=layout.plate_map_frame() if layout.plate_map else None,
            field_present=present,
            attrs={**layout.attrs, "ngff_version": version, "source": str(path)},
        )
    scale = dict(zip(reference.axes, reference.scale, strict=True))
    return build_plate(
        data,
        name=str(plate_meta.get("name") or path.stem),
        wells=wells,
        fields=fields,
        channels=list(channels) if channels else [f"c{i}" for i in range(shape5[1])],
        t=list(np.arange(shape5[0]) * scale.get("t", 1.0)),
        z=list(np.arange(shape5[2]) * scale.get("z", 1.0)),
        field_present=present,
        pixel_size_um=[scale.get("y", 1.0), scale.get("x", 1.0)],
        attrs={"ngff_version": version, "source": str(path)},
    )


def _field_images(
    root: zarr.Group, plate_meta: Mapping[str, Any], path: Path
) -> tuple[dict[tuple[str, int], _FieldImage], list[str], list[int]]:
    """Open every field's full-resolution array, keyed by (well, field), wells in parallel."""
    well_paths = [str(well_meta["path"]) for well_meta in plate_meta.get("wells", [])]

    def open_well(well_path: str) -> dict[tuple[str, int], _FieldImage]:
        row, col = well_path.split("/")
        well = format_well(row, int(col))
        well_group = _group(root, well_path, path)
        well_meta = ome_attrs(well_group.attrs.asdict())["well"]
        image_paths = [str(image["path"]) for image in well_meta["images"]]
        numbered = all(p.isdigit() for p in image_paths)
        return {
            (well, int(image_path) if numbered else position): _open_field(
                _group(well_group, image_path, path),
                f"well {well} field {image_path} ({well_path}/{image_path})",
            )
            for position, image_path in enumerate(image_paths)
        }

    with ThreadPoolExecutor(_OPEN_THREADS) as pool:
        per_well = list(pool.map(open_well, well_paths))
    images = {key: image for part in per_well for key, image in part.items()}
    if not images:
        raise PlateError(f"{path} is a plate with no field images")
    wells = [format_well(row, int(col)) for row, col in (p.split("/") for p in well_paths)]
    fields = sorted({f for _, f in images})
    return images, wells, fields


def _group(parent: zarr.Group, name: str, path: Path) -> zarr.Group:
    try:
        node = parent[name]
    except KeyError as err:
        raise PlateError(
            f"{path}: the metadata lists {parent.path}/{name}, which is missing"
        ) from err
    if not isinstance(node, zarr.Group):
        raise PlateError(f"{path}: {node.path} should be a group")
    return node


def _open_field(group: zarr.Group, label: str) -> _FieldImage:
    ome = ome_attrs(group.attrs.asdict())
    try:
        multiscale = ome["multiscales"][0]
        dataset = multiscale["datasets"][0]
    except (KeyError, IndexError) as err:
        raise PlateError(f"{label} has no multiscales metadata") from err
    axes = tuple(a["name"] if isinstance(a, Mapping) else str(a) for a in multiscale["axes"])
    unknown = set(axes) - set(IMAGE_AXES)
    if unknown:
        raise PlateError(f"{label} has axes {axes}; only {IMAGE_AXES} are understood")
    scale = next(
        (
            tuple(t["scale"])
            for t in dataset.get("coordinateTransformations", [])
            if t["type"] == "scale"
        ),
        (1.0,) * len(axes),
    )
    array = group[str(dataset["path"])]
    if not isinstance(array, zarr.Array):
        raise PlateError(f"{label}: {dataset['path']} is not an array")
    omero = ome.get("omero", {})
    channels = tuple(str(c.get("label", i)) for i, c in enumerate(omero.get("channels", [])))
    return _FieldImage(label, array, axes, tuple(float(s) for s in scale), channels or None)


def _check_fields(
    images: dict[tuple[str, int], _FieldImage],
) -> tuple[tuple[int, ...], np.dtype, tuple[str, ...] | None]:
    first = next(iter(images.values()))
    for image in images.values():
        for what, got, want in (
            ("shape (t, c, z, y, x)", image.shape5, first.shape5),
            ("dtype", image.array.dtype, first.array.dtype),
            ("channels", image.channels, first.channels),
        ):
            if got != want:
                raise PlateError(f"{image.label} has {what} {got}, but {first.label} has {want}")
    return first.shape5, np.dtype(first.array.dtype), first.channels


def _check_complete(
    root: zarr.Group,
    present: np.ndarray,
    wells: list[str],
    fields: list[int],
    path: Path,
    allow_incomplete: bool,
) -> None:
    done = ledger_done(root)
    if done is None or allow_incomplete:
        return
    missing = np.argwhere(~done & present[np.newaxis])
    if len(missing):
        shown = ", ".join(f"{wells[w]}/f{fields[f]}/t{t}" for t, w, f in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise PlateError(
            f"{path} is incomplete: units {shown}{more} were never finished. Re-run the write "
            "to complete them, or pass allow_incomplete=True to read them as zeros"
        )


def _plate_graph(
    images: dict[tuple[str, int], _FieldImage],
    wells: list[str],
    fields: list[int],
    shape5: tuple[int, ...],
    dtype: np.dtype,
) -> da.Array:
    """One graph layer with one task per (t, well, field, c) image."""
    n_t, n_c, n_z, n_y, n_x = shape5
    name = f"read-plate-{uuid.uuid4().hex[:8]}"
    block = (1, 1, 1, n_z, 1, n_y, n_x)
    dsk: dict[Any, Any] = {}
    for w, well in enumerate(wells):
        for f, field in enumerate(fields):
            image = images.get((well, field))
            for t in range(n_t):
                for c in range(n_c):
                    key = (name, t, w, f, 0, c, 0, 0)
                    if image is None:
                        dsk[key] = (np.zeros, block, dtype)
                    else:
                        dsk[key] = (_read_image, image.array, image.axes, t, c, block)
    chunks = ((1,) * n_t, (1,) * len(wells), (1,) * len(fields), (n_z,), (1,) * n_c, (n_y,), (n_x,))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    return da.Array(graph, name, chunks, dtype=dtype)


def _read_image(
    array: zarr.Array, axes: tuple[str, ...], t: int, c: int, block: tuple[int, ...]
) -> np.ndarray:
    index = tuple({"t": t, "c": c}.get(axis, slice(None)) for axis in axes)
    return np.asarray(array[index]).reshape(block)
