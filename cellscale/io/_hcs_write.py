"""Write a plate array as an OME-Zarr (NGFF) HCS plate, unit by unit, resumably."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr
import zarr
from ome_zarr.writer import write_multiscales_metadata, write_plate_metadata, write_well_metadata
from zarr.core.array_spec import ArrayConfigParams
from zarr.core.group import GroupMetadata

from cellscale._compute import UnitFailure, run_units
from cellscale.config import config_value
from cellscale.io._layout import LAYOUT_KEY, PlateLayout
from cellscale.io._ledger import LEDGER_NAME, create_ledger, ledger_done, mark_unit
from cellscale.io._ngff import (
    IMAGE_AXES,
    ZarrFormat,
    compressor_for,
    format_for,
    ome_attrs,
    zarr_format_for,
)
from cellscale.plate import PlateError, image_chunks, split_well, validate_plate

__all__ = ["field_image_path", "write_plate"]

_SETUP_THREADS = 8
# images are never "empty": skip zarr's comparison of every chunk with the fill value
_WRITE_CONFIG: ArrayConfigParams = {"write_empty_chunks": True}
_CHANNEL_COLORS = ("0000FF", "00FF00", "FF0000", "FF00FF", "FFFF00", "00FFFF", "FFFFFF")


def field_image_path(well: str, field: int) -> str:
    """Path of a field's image group inside a plate store, e.g. ``"B/03/2"``."""
    row, col = split_well(well)
    return f"{row}/{col:02d}/{field}"


def write_plate(
    plate: xr.DataArray,
    path: str | Path,
    *,
    version: str | None = None,
    codec: str | None = None,
    clevel: int | None = None,
    overwrite: bool = False,
    rewrite: bool = False,
    client: Any = None,
    progress: bool = True,
) -> Path:
    """Write ``plate`` to an OME-Zarr HCS plate at ``path``, one (t, well, field) unit at a time.

    Each unit is one task that computes the unit's images (all channels, whole Z
    stacks) and writes them, then records the unit complete in the store's ledger.
    Calling this again on the same store completes only what is missing, so an
    interrupted write resumes. Writing a plate that holds a subset of an existing
    store's wells, fields or time points (same channels, Z, image shape and dtype)
    writes just that subset, e.g. to redo one field with ``rewrite=True``.

    Parameters
    ----------
    plate
        A plate array (see :mod:`cellscale.plate`), usually lazy. A projected plate
        (no ``z`` dim) is written with a single Z plane.
    path
        Directory of the plate store (``*.zarr``).
    version
        NGFF version, ``"0.5"`` (Zarr v3, the default from config
        ``cellscale.zarr.ngff-version``) or ``"0.4"`` (Zarr v2).
    codec, clevel
        Compression (config ``cellscale.zarr.codec`` / ``clevel``); see
        :func:`cellscale.io._ngff.compressor_for`.
    overwrite
        Delete an existing store at ``path`` first.
    rewrite
        Write the plate's units even where the ledger says they are complete.
    client
        A ``distributed.Client``; defaults to the current one, else local threads.
    progress
        Show a progress bar.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    PlateError
        If the store exists with an incompatible layout, or if some units failed
        (each is named with its error; the others are written and recorded).
    """
    if "z" not in plate.dims:
        plate = plate.expand_dims(z=[0], axis=plate.dims.index("c"))
    validate_plate(plate)
    path = Path(path)
    layout = PlateLayout.from_plate(plate)
    if overwrite and path.exists():
        shutil.rmtree(path)
    store_layout = _existing_layout(path)
    created = None
    if store_layout is None:
        version = str(config_value("zarr.ngff-version", version))
        codec = str(config_value("zarr.codec", codec))
        clevel = int(config_value("zarr.clevel", clevel))
        created = _create_store(path, layout, version, codec, clevel)
        store_layout = layout
    root = zarr.open_group(str(path), mode="r+")
    unit_index = _unit_index(layout, store_layout, path)
    done = ledger_done(root)
    assert done is not None
    ledger = root[LEDGER_NAME]
    assert isinstance(ledger, zarr.Array)
    todo = [
        (unit, store_unit)
        for unit, store_unit in unit_index.items()
        if rewrite or not done[store_unit]
    ]
    if rewrite:
        for _, store_unit in todo:
            mark_unit(ledger, store_unit, done=False)
    if created is None:  # resuming: open only the fields that still need writing
        needed = {(store_layout.wells[w], store_layout.fields[f]) for _, (_, w, f) in todo}
        arrays = _open_arrays(root, sorted(needed))
    else:
        arrays = created
    data = plate.data.rechunk(image_chunks(plate.shape))
    blocks = data.to_delayed()
    tasks, names = [], []
    for (t, w, f), (store_t, store_w, store_f) in todo:
        well, field = layout.wells[w], layout.fields[f]
        channel_blocks = [blocks[t, w, f, 0, c, 0, 0] for c in range(len(layout.channels))]
        tasks.append(
            dask.delayed(_write_unit, pure=False)(
                channel_blocks,
                arrays[(store_layout.wells[store_w], store_layout.fields[store_f])],
                store_t,
                ledger,
                (store_t, store_w, store_f),
                dask_key_name=f"write-plate-{well}-f{field}-t{t}-{plate.name}",
            )
        )
        names.append(f"{well}/f{field}/t{t}")
    try:
        run_units("write-plate", tasks, names, client=client, progress=progress)
    except UnitFailure as err:
        raise PlateError(f"writing {path}: {err}") from err
    return path


def _write_unit(
    channel_blocks: Sequence[np.ndarray],
    image: zarr.Array,
    t: int,
    ledger: zarr.Array,
    ledger_index: tuple[int, int, int],
) -> None:
    # a value of exactly one chunk's shape spares zarr a fill-and-merge copy of the chunk
    chunk_shape = (1, 1, *image.shape[2:])
    for c, block in enumerate(channel_blocks):
        image[t : t + 1, c : c + 1] = np.asarray(block).reshape(chunk_shape)
    mark_unit(ledger, ledger_index, done=True)


def _existing_layout(path: Path) -> PlateLayout | None:
    """The layout of a complete store setup at ``path``, ``None`` if there is none yet."""
    if not path.exists():
        return None
    try:
        root = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
        raise PlateError(
            f"{path} exists and is not a Zarr group; pass overwrite=True to replace it"
        ) from err
    record = root.attrs.asdict().get(LAYOUT_KEY)
    if record is None:
        if LEDGER_NAME in root:
            return None  # setup was interrupted before anything was written: redo it
        raise PlateError(
            f"{path} exists and was not written by cellscale; pass overwrite=True to replace it"
        )
    return PlateLayout.from_json(record)


def _unit_index(
    layout: PlateLayout, store: PlateLayout, path: Path
) -> dict[tuple[int, int, int], tuple[int, int, int]]:
    """Map the plate's present (t, well, field) indices to the store's."""
    if not layout.same_grid(store):
        raise PlateError(
            f"{path} holds a plate with channels {store.channels}, z {store.z}, image shape "
            f"{store.shape_yx} and dtype {store.dtype}; this plate has {layout.channels}, "
            f"{layout.z}, {layout.shape_yx}, {layout.dtype}. Pass overwrite=True to replace it"
        )
    t_map = _positions(layout.t, store.t, "time point", path)
    w_map = _positions(layout.wells, store.wells, "well", path)
    f_map = _positions(layout.fields, store.fields, "field", path)
    index = {}
    for w, well in enumerate(layout.wells):
        for f, field in enumerate(layout.fields):
            if not layout.field_present[w][f]:
                continue
            if not store.field_present[w_map[w]][f_map[f]]:
                raise PlateError(f"{path} has no field {field} in well {well}")
            for t in range(len(layout.t)):
                index[(t, w, f)] = (t_map[t], w_map[w], f_map[f])
    return index


def _positions(values: list[Any], store_values: list[Any], what: str, path: Path) -> list[int]:
    missing = [v for v in values if v not in store_values]
    if missing:
        raise PlateError(f"{path} has no {what}(s) {missing}; it holds {store_values}")
    return [store_values.index(v) for v in values]


def _create_store(
    path: Path, layout: PlateLayout, version: str, codec: str, clevel: int
) -> dict[tuple[str, int], zarr.Array]:
    """Create the plate's groups, metadata, empty arrays and ledger; return the field arrays.

    The NGFF metadata is made by ome-zarr-py on in-memory templates, and every row, well,
    field group and image array is then written in one concurrent
    :func:`zarr.create_hierarchy` call. The ledger comes first and the layout record last,
    so an interrupted setup is recognised and redone.
    """
    fmt = format_for(version)
    zarr_format = zarr_format_for(version)
    root = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    create_ledger(root, (len(layout.t), len(layout.wells), len(layout.fields)))
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
    image_attrs = _template_attrs(
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
        well_attrs = _template_attrs(
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
        images[key]: node.with_config(_WRITE_CONFIG)
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
    root.attrs[LAYOUT_KEY] = layout.to_json()  # last: the setup is complete
    return arrays


def _template_attrs(zarr_format: ZarrFormat, write: Callable[[zarr.Group], None]) -> dict[str, Any]:
    """The attributes that an ome-zarr-py metadata writer gives a group, made in memory."""
    group = zarr.open_group(zarr.storage.MemoryStore(), mode="w", zarr_format=zarr_format)
    write(group)
    return group.attrs.asdict()


def _open_arrays(
    root: zarr.Group, units: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], zarr.Array]:
    """Open the arrays of the given (well, field) images of an existing store, in parallel."""

    def open_one(unit: tuple[str, int]) -> zarr.Array:
        array = root[f"{field_image_path(*unit)}/0"]
        assert isinstance(array, zarr.Array)
        return array.with_config(_WRITE_CONFIG)

    with ThreadPoolExecutor(_SETUP_THREADS) as pool:
        return dict(zip(units, pool.map(open_one, units), strict=True))


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
