"""Open an OME-Zarr (NGFF 0.4 or 0.5) HCS plate as a lazy plate array."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from cellscale._stages import Fingerprint, Ledger
from cellscale.io._chunks import IncompleteStoreError, read_chunk, read_image
from cellscale.io._diagnose import not_a_plate
from cellscale.io._layout import LAYOUT_KEY, PlateLayout
from cellscale.io._ngff import IMAGE_AXES, ome_attrs
from cellscale.io._plate_index import PlateIndex
from cellscale.io._store_setup import FINGERPRINT_KEY, LEDGER_NAME, field_image_path
from cellscale.io._unit_coords import read_unit_coords
from cellscale.plate import LINEAGE, UNIT_TOKEN, PlateError, build_plate, format_well

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


def open_plate(path: str | Path, *, level: int = 0, allow_incomplete: bool = False) -> xr.DataArray:
    """Open an OME-Zarr HCS plate as a lazy ``(t, well, field, z, c, y, x)`` plate array.

    Reads NGFF 0.4 (Zarr v2) and 0.5 (Zarr v3) plates, whether cellscale or another
    writer (ome-zarr-py, converters) made them. Plates cellscale wrote keep every
    coordinate (plate map, physical t and z, channel names, attrs); for others they
    are taken from the NGFF metadata where it has them. A complete cellscale plate
    opens from its index (one group, a few reads) however many fields it has; other
    stores are opened by visiting every field's metadata.

    Parameters
    ----------
    path
        The plate store.
    level
        The pyramid level to read: ``0`` is full resolution, each level above halves
        y and x (``attrs["pixel_size_um"]`` grows to match). A whole plate's top level
        is what a plate overview needs.
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
        channels (naming the field at fault), if ``level`` is not one of its pyramid
        levels, or if a cellscale write is incomplete.
    """
    path = Path(path)
    root = _open_root(path)
    record: Any = root.attrs.asdict().get(LAYOUT_KEY)
    if isinstance(record, dict) and "setup" in record:
        raise PlateError(f"{path} was never completely set up; run the write again")
    ome = ome_attrs(root.attrs.asdict())
    plate_meta = ome.get("plate")
    if not isinstance(plate_meta, Mapping):
        raise not_a_plate(path)
    version = str(ome.get("version") or plate_meta.get("version") or "0.4")
    layout = PlateLayout.from_json(record) if record is not None else None
    index = PlateIndex.read(root, layout) if layout is not None else None
    if index is not None and layout is not None:
        images, wells, fields = _indexed_images(root, index, layout, level, path)
        tokens: np.ndarray | None = index.tokens
        shape5, dtype, channels = _field_grid(next(iter(images.values())))
    else:
        images, wells, fields = _field_images(root, plate_meta, path, level)
        tokens = _unit_tokens(root, layout, wells, fields)
        shape5, dtype, channels = _check_fields(images)
    present = np.array([[(w, f) in images for f in fields] for w in wells], dtype=bool)
    _check_complete(tokens, present, wells, fields, path, allow_incomplete)
    fingerprint = record.get(FINGERPRINT_KEY) if record is not None else None
    digest = Fingerprint.from_json(fingerprint).digest if fingerprint else None
    source: dict[str, Any] = (
        {"op": "open_plate", "store": path.name, "fingerprint": digest}
        if digest
        else {"op": "open_plate", "store": str(path.resolve())}
    )
    if level:
        source["level"] = level
    # a store cellscale wrote is named by its content (fingerprint and unit tokens), so a
    # moved store keeps its graph names; any other store by its path and shape
    identity = (
        (digest, None if tokens is None else np.asarray(tokens, np.uint64).tobytes(), level)
        if digest
        else (str(path.resolve()), wells, fields, shape5, str(dtype), level)
    )
    names = (
        layout.channels
        if layout is not None
        else list(channels)
        if channels
        else [f"c{i}" for i in range(shape5[1])]
    )
    data = _plate_graph(images, wells, fields, names, shape5, dtype, tokens, path, identity)
    attrs: dict[str, Any] = {"ngff_version": version, "source": str(path), LINEAGE: [source]}
    reference = next(iter(images.values()))
    scale = dict(zip(reference.axes, reference.scale, strict=True))
    if layout is not None:
        attrs = {**layout.attrs, **attrs}
        if level:
            attrs["pyramid_level"] = level
            if "pixel_size_um" in layout.attrs:
                attrs["pixel_size_um"] = [scale.get("y", 1.0), scale.get("x", 1.0)]
        plate = build_plate(
            data,
            name=layout.name,
            wells=wells,
            fields=fields,
            channels=names,
            t=layout.t,
            z=layout.z,
            plate_map=layout.plate_map_frame() if layout.plate_map else None,
            field_present=present,
            attrs=attrs,
        )
    else:
        plate = build_plate(
            data,
            name=str(plate_meta.get("name") or path.stem),
            wells=wells,
            fields=fields,
            channels=names,
            t=list(np.arange(shape5[0]) * scale.get("t", 1.0)),
            z=list(np.arange(shape5[2]) * scale.get("z", 1.0)),
            field_present=present,
            pixel_size_um=[scale.get("y", 1.0), scale.get("x", 1.0)],
            attrs={**attrs, **({"pyramid_level": level} if level else {})},
        )
    if tokens is not None:
        plate = plate.assign_coords({UNIT_TOKEN: (("t", "well", "field"), tokens)})
    if layout is not None and layout.unit_coords:
        w_index = [layout.wells.index(w) for w in wells]
        f_index = [layout.fields.index(f) for f in fields]
        stored = None
        if tokens is not None:  # back in the store's order
            stored = np.zeros_like(tokens)
            stored[np.ix_(range(tokens.shape[0]), w_index, f_index)] = tokens
        unit_coords = read_unit_coords(root, layout, stored)
        plate = plate.assign_coords(
            {
                name: (("t", "well", "field"), values[:, w_index][:, :, f_index])
                for name, values in unit_coords.items()
            }
        )
    return plate


def _open_root(path: Path) -> zarr.Group:
    """The store's root group, or an error that says what ``path`` is instead."""
    try:
        return zarr.open_group(str(path), mode="r")
    except (
        FileNotFoundError,
        NotADirectoryError,
        zarr.errors.GroupNotFoundError,
        zarr.errors.ContainsArrayError,
    ) as err:
        raise not_a_plate(path) from err


def _indexed_images(
    root: zarr.Group, index: PlateIndex, layout: PlateLayout, level: int, path: Path
) -> tuple[dict[tuple[str, int], _FieldImage], list[str], list[int]]:
    """Every present field's image, built from the plate index without visiting a field."""
    axes, scales, channels = _multiscale(index.image_attrs, f"{path} (plate index)")
    _check_level(level, len(index.levels), f"{path}")
    images = {}
    for w, well in enumerate(layout.wells):
        for f, field in enumerate(layout.fields):
            if layout.field_present[w][f]:
                label = f"well {well} field {field} ({field_image_path(well, field)})"
                array = index.array(root, well, field, level)
                images[(well, field)] = _FieldImage(label, array, axes, scales[level], channels)
    return images, list(layout.wells), list(layout.fields)


def _field_grid(image: _FieldImage) -> tuple[tuple[int, ...], np.dtype, tuple[str, ...] | None]:
    return image.shape5, np.dtype(image.array.dtype), image.channels


def _unit_tokens(
    root: zarr.Group, layout: PlateLayout | None, wells: list[str], fields: list[int]
) -> np.ndarray | None:
    """The ledger's ``(t, well, field)`` tokens in the reader's well and field order."""
    ledger = Ledger.open(root, LEDGER_NAME)
    if ledger is None or layout is None:
        return None
    tokens = ledger.tokens()
    w_index = [layout.wells.index(w) for w in wells]
    f_index = [layout.fields.index(f) for f in fields]
    return tokens[:, w_index][:, :, f_index]


def _field_images(
    root: zarr.Group, plate_meta: Mapping[str, Any], path: Path, level: int
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
                level,
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


def _open_field(group: zarr.Group, label: str, level: int) -> _FieldImage:
    axes, scales, channels = _multiscale(group.attrs.asdict(), label)
    datasets = ome_attrs(group.attrs.asdict())["multiscales"][0]["datasets"]
    _check_level(level, len(datasets), label)
    array = group[str(datasets[level]["path"])]
    if not isinstance(array, zarr.Array):
        raise PlateError(f"{label}: {datasets[level]['path']} is not an array")
    return _FieldImage(label, array, axes, scales[level], channels)


def _multiscale(
    attrs: Mapping[str, Any], label: str
) -> tuple[tuple[str, ...], list[tuple[float, ...]], tuple[str, ...] | None]:
    """A field image's axes, each level's scale, and its channel names (if any)."""
    ome = ome_attrs(attrs)
    try:
        multiscale = ome["multiscales"][0]
        datasets = multiscale["datasets"]
        datasets[0]
    except (KeyError, IndexError) as err:
        raise PlateError(f"{label} has no multiscales metadata") from err
    axes = tuple(a["name"] if isinstance(a, Mapping) else str(a) for a in multiscale["axes"])
    unknown = set(axes) - set(IMAGE_AXES)
    if unknown:
        raise PlateError(f"{label} has axes {axes}; only {IMAGE_AXES} are understood")
    scales = [
        next(
            (
                tuple(float(s) for s in t["scale"])
                for t in dataset.get("coordinateTransformations", [])
                if t["type"] == "scale"
            ),
            (1.0,) * len(axes),
        )
        for dataset in datasets
    ]
    omero = ome.get("omero", {})
    channels = tuple(str(c.get("label", i)) for i, c in enumerate(omero.get("channels", [])))
    return axes, scales, channels or None


def _check_level(level: int, count: int, label: str) -> None:
    if isinstance(level, bool) or not isinstance(level, int | np.integer) or not 0 <= level < count:
        raise PlateError(
            f"{label} has {count} pyramid level(s) (0 to {count - 1}); level {level!r} "
            "does not exist"
        )


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
    tokens: np.ndarray | None,
    present: np.ndarray,
    wells: list[str],
    fields: list[int],
    path: Path,
    allow_incomplete: bool,
) -> None:
    if tokens is None or allow_incomplete:
        return
    missing = np.argwhere((tokens == 0) & present[np.newaxis])
    if len(missing):
        shown = ", ".join(f"{wells[w]}/f{fields[f]}/t{t}" for t, w, f in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise IncompleteStoreError(
            f"{path} is incomplete: units {shown}{more} were never finished. Re-run the write "
            "to complete them, or pass allow_incomplete=True to read them as zeros"
        )


def _plate_graph(
    images: dict[tuple[str, int], _FieldImage],
    wells: list[str],
    fields: list[int],
    channels: list[str],
    shape5: tuple[int, ...],
    dtype: np.dtype,
    tokens: np.ndarray | None,
    path: Path,
    identity: object,
) -> da.Array:
    """One graph layer with one task per (t, well, field, c) image, named by a token of its store.

    Images of units the ledger marks complete are read strictly: a missing or damaged
    chunk is an error naming the field, channel and file.
    """
    n_t, n_c, n_z, n_y, n_x = shape5
    name = f"read-plate-{tokenize(identity)}"
    block = (1, 1, 1, n_z, 1, n_y, n_x)
    # not map_blocks: a source; each task has its own array, strict where the ledger says, or zeros
    dsk: dict[Any, Any] = {}
    for w, well in enumerate(wells):
        for f, field in enumerate(fields):
            image = images.get((well, field))
            for t in range(n_t):
                strict = tokens is not None and bool(tokens[t, w, f])
                for c in range(n_c):
                    key = (name, t, w, f, 0, c, 0, 0)
                    if image is None:
                        dsk[key] = (np.zeros, block, dtype)
                    else:
                        where = f"{path}: well {well} field {field} t={t} channel {channels[c]!r}"
                        spec = (image.array, image.axes, t, c, block, where, strict)
                        dsk[key] = (_read_field_image, *spec)
    chunks = ((1,) * n_t, (1,) * len(wells), (1,) * len(fields), (n_z,), (1,) * n_c, (n_y,), (n_x,))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    return da.Array(graph, name, chunks, dtype=dtype)


def _read_field_image(
    array: zarr.Array,
    axes: tuple[str, ...],
    t: int,
    c: int,
    block: tuple[int, ...],
    where: str,
    strict: bool,
) -> np.ndarray:
    index = tuple({"t": t, "c": c}.get(axis, slice(None)) for axis in axes)
    if not strict:
        return read_chunk(array, index).reshape(block)
    return read_image(array, index, (t, c, 0, 0, 0), where).reshape(block)
