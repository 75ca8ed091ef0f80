"""Labels as NGFF label images under each field of a plate store, written unit by unit, resumably.

``write_labels`` stores each compartment of :func:`cellscale.segment`'s output as an NGFF
``image-label`` (``B/03/1/labels/nuclei/0``: axes t, c, z, y, x like the image, one
channel) that napari-ome-zarr and ome-zarr-py read. Bookkeeping lives beside the plate's
own, in ``cellscale_labels/<name>`` at the plate root: a completion ledger, the number of
objects and of dropped border objects per field, and the fingerprint of what made the
labels. ``open_labels`` reads them back lazily, strictly (a missing chunk of a complete
field is an error) and with the per-field object counts that give every cell its
``cell_id`` before anything is measured.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from ome_zarr.writer import write_multiscales_metadata

from cellscale._compat import GroupMetadata
from cellscale._stages import (
    Fingerprint,
    Ledger,
    Opaque,
    StaleOutputError,
    check_fingerprint,
    lazy_units,
    output_lock,
    remove_partials,
    run_units,
    shared_delayed_blocks,
    take_lease,
    task_key,
    unit_token,
)
from cellscale.io._chunk_files import write_chunk_file
from cellscale.io._chunks import IncompleteStoreError, read_chunk, read_image
from cellscale.io._hcs_read import open_plate
from cellscale.io._layout import PlateLayout
from cellscale.io._ngff import format_for, ome_attrs
from cellscale.io._pyramid import pyramid
from cellscale.io._store_setup import (
    WRITE_CONFIG,
    StoreRecord,
    field_image_path,
    level_templates,
    read_store_record,
    template_attrs,
)
from cellscale.plate import LINEAGE, UNIT_TOKEN, PlateError

__all__ = ["LABELS_KEY", "open_labels", "write_labels"]

LABELS_KEY = "cellscale_labels"
_UNIT_DIMS = ("t", "well", "field")
_SETUP_THREADS = 8
_BACKGROUND = [{"label-value": 0, "rgba": [0, 0, 0, 0]}]


def _array(group: zarr.Group, key: str) -> zarr.Array:
    node = group[key]
    if not isinstance(node, zarr.Array):
        raise PlateError(f"{group.store}/{group.path}/{key} should be an array")
    return node


class _Books:
    """The bookkeeping of one label image: ledger, per-field counts, fingerprint, fields."""

    def __init__(self, group: zarr.Group, images: dict[tuple[str, int], list[zarr.Array]]) -> None:
        self.group = group
        self.ledger = Ledger(_array(group, "ledger"))
        self.counts = _array(group, "counts")
        self.dropped = _array(group, "border_dropped")
        self.images = images

    @property
    def fingerprint(self) -> Fingerprint:
        record: Any = self.group.attrs["fingerprint"]
        return Fingerprint.from_json(record)


def write_labels(
    labels: xr.Dataset,
    path: str | Path,
    *,
    overwrite: bool = False,
    rewrite: bool = False,
    client: Any = None,
    progress: bool = True,
    compute: bool = True,
) -> Any:
    """Write :func:`cellscale.segment`'s labels as NGFF labels under each field of a plate store.

    Each (t, well, field) is one task: it computes the field's labels (running the
    segmentation), writes every compartment, records the field's object and dropped
    border-object counts, then marks the field complete. Running it again writes only
    what is missing; labels made from other inputs or settings are refused.

    Parameters
    ----------
    labels
        The Dataset from :func:`cellscale.segment` of a plate opened from ``path``
        (labels must be written under the very images they label).
    path
        The plate store.
    overwrite
        Replace labels of the same names made otherwise.
    rewrite
        Write every field again.
    client, progress, compute
        As for :func:`cellscale.write_plate`.

    Returns
    -------
    pathlib.Path or dask.delayed.Delayed
        ``path``, or the lazy write when ``compute=False``.

    Raises
    ------
    StaleOutputError
        If the labels were not computed from the plate stored at ``path``, or labels of the
        same name were made from other inputs or settings.
    """
    path = Path(path)
    names = _compartments(labels)
    with output_lock(path):
        record = read_store_record(path)
        if record is None or record.fingerprint is None:
            raise PlateError(f"{path} is not a complete plate store written by cellscale")
        _check_source(labels, record, path)
        root = zarr.open_group(str(path), mode="r+")
        remove_partials(path)
        books = {name: _books(root, record, labels, name, overwrite) for name in names}
        tasks, units = _unit_tasks(labels, record.layout, root, books, path, rewrite)
        ledgers = [book.ledger for book in books.values()]
        if not compute:
            return lazy_units(
                "write-labels", tasks, units, lease=take_lease(path), then=lambda: _seal(ledgers)
            )
        run_units("write-labels", tasks, units, client=client, progress=progress)
        _seal(ledgers)
    return path


def _seal(ledgers: Sequence[Ledger]) -> None:
    """Seal each compartment's ledger (see :meth:`Ledger.seal`); hold the store's lock."""
    for ledger in ledgers:
        ledger.seal()


def open_labels(
    path: str | Path, names: Sequence[str] | None = None, *, allow_incomplete: bool = False
) -> xr.Dataset:
    """Open the labels written under a plate store, lazily.

    Parameters
    ----------
    path
        The plate store.
    names
        Which label images (default: all that cellscale wrote, first compartment first).
    allow_incomplete
        Read fields that were never finished as zeros instead of refusing.

    Returns
    -------
    xarray.Dataset
        One ``uint32`` variable per label name ``(t, well, field, [z,] y, x)``, the plate's
        coordinates, ``n_objects`` (objects per field of the first name) and
        ``border_dropped``.
    """
    path = Path(path)
    plate = open_plate(path, allow_incomplete=True)
    root = zarr.open_group(str(path), mode="r")
    found = _written_names(root)
    names = list(names) if names is not None else found
    missing = [n for n in names if n not in found]
    if missing or not names:
        raise PlateError(f"{path} has no labels {missing or ''}; it has labels {found}")
    books = {name: _open_books(root, name) for name in names}
    ledgers = {name: book.ledger.tokens() for name, book in books.items()}
    if not allow_incomplete:
        _check_complete(ledgers, plate, path)
    spatial = ("z", "y", "x") if books[names[0]].group.attrs["ndim"] == 3 else ("y", "x")
    variables: dict[str, Any] = {
        name: ((*_UNIT_DIMS, *spatial), _label_graph(root, plate, books[name], name, spatial))
        for name in names
    }
    primary = books[names[0]]
    variables["border_dropped"] = (_UNIT_DIMS, np.asarray(primary.dropped[...]))
    coords = {k: v for k, v in plate.coords.items() if "c" not in v.dims}
    if "z" not in spatial:
        coords = {k: v for k, v in coords.items() if "z" not in v.dims}
    coords["n_objects"] = (_UNIT_DIMS, np.asarray(primary.counts[...]))
    coords[UNIT_TOKEN] = (_UNIT_DIMS, ledgers[names[0]])
    digest = primary.fingerprint.digest
    attrs = {
        LINEAGE: [{"op": "open_labels", "store": path.name, "fingerprint": digest}],
        "plate": str(plate.name),
        "compartments": names,
        "source": str(path),
        **(
            {"pixel_size_um": plate.attrs["pixel_size_um"]}
            if "pixel_size_um" in plate.attrs
            else {}
        ),
    }
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def _compartments(labels: xr.Dataset) -> list[str]:
    names = list(labels.attrs.get("compartments", []))
    if not names or any(name not in labels for name in names):
        raise ValueError(
            "labels must be the Dataset cellscale.segment returns (its 'compartments' attribute "
            f"lists its label variables); got variables {list(labels.data_vars)}"
        )
    return names


#: Steps after which labels still label the stored images: they change values, not pixels' places.
_IN_PLACE = ("correct_illumination",)


def _check_source(labels: xr.Dataset, record: StoreRecord, path: Path) -> None:
    """Labels go under the images they label: the plate opened from this very store.

    Between opening and segmenting, only steps that change pixel values in place
    (:data:`_IN_PLACE`: illumination correction) may come; they are in the lineage the
    labels' fingerprint records, so labels of differently corrected images differ.
    """
    lineage = list(labels.attrs.get(LINEAGE, []))
    assert record.fingerprint is not None
    expected = {"op": "open_plate", "store": path.name, "fingerprint": record.fingerprint.digest}
    images = lineage[-1].get("images") if lineage else None
    between = lineage[1:-1]
    in_place = bool(between) and all(step.get("op") in _IN_PLACE for step in between)
    stored = images == open_plate(path, allow_incomplete=True).data.name
    if lineage[:1] != [expected] or not (in_place or (stored and not between)):
        made = " -> ".join(step.get("op", "?") for step in lineage) or "unknown steps"
        raise StaleOutputError(
            f"these labels were computed from {made} (or from data computed from it), not "
            f"from the plate stored in {path}: "
            "labels are written under the images they label. Write that plate first "
            "(cellscale.write_plate), open it with cellscale.open_plate and segment it"
        )


def _books(
    root: zarr.Group, record: StoreRecord, labels: xr.Dataset, name: str, overwrite: bool
) -> _Books:
    """The bookkeeping of one label image and its field arrays (set up if needed)."""
    fingerprint = Fingerprint(
        stage="labels",
        inputs={"lineage": labels.attrs.get(LINEAGE, []), "data": labels[name].data.name},
        parameters={"name": name},
    )
    group = root.get(f"{LABELS_KEY}/{name}")
    if isinstance(group, zarr.Group) and "fingerprint" in group.attrs and not overwrite:
        books = _Books(group, _open_label_arrays(root, record.layout, name))
        check_fingerprint(books.fingerprint, fingerprint, f"{root.store} labels {name!r}")
        return books
    return _set_up(root, record, labels, name, fingerprint)


def _set_up(
    root: zarr.Group, record: StoreRecord, labels: xr.Dataset, name: str, fingerprint: Fingerprint
) -> _Books:
    layout = record.layout
    units = (len(layout.t), len(layout.wells), len(layout.fields))
    group = root.require_group(LABELS_KEY).create_group(name, overwrite=True)
    group.attrs["setup"] = "incomplete"
    Ledger.create(group, "ledger", units)
    for array in ("counts", "border_dropped"):
        group.create_array(array, shape=units, chunks=(1, 1, 1), dtype="int64", fill_value=0)
    spatial = labels[name].shape[3:]
    arrays = _create_label_images(root, layout, name, spatial)
    group.attrs.put({"ndim": len(spatial), "fingerprint": fingerprint.to_json()})
    return _Books(group, arrays)


def _create_label_images(
    root: zarr.Group, layout: PlateLayout, name: str, spatial: tuple[int, ...]
) -> dict[tuple[str, int], list[zarr.Array]]:
    """Every field's ``labels/<name>`` NGFF label image, in one concurrent call.

    The label image has the pyramid levels of the image it labels, as NGFF requires.
    Label images of other names stay; an older ``labels/<name>`` is deleted first.
    """
    fields = _present(layout)
    image = root[f"{field_image_path(*fields[0])}"]
    assert isinstance(image, zarr.Group)
    pixels = _array(image, "0")
    zarr_format = image.metadata.zarr_format
    image_meta = ome_attrs(image.attrs.asdict())
    fmt = format_for(
        str(ome_attrs(root.attrs.asdict()).get("version") or ("0.5" if zarr_format == 3 else "0.4"))
    )
    z_size = spatial[0] if len(spatial) == 3 else 1
    if pixels.shape[2] != z_size or tuple(pixels.shape[3:]) != tuple(spatial[-2:]):
        raise StaleOutputError(
            f"labels of shape {spatial} do not fit the images of {root.store} "
            f"(z, y, x = {pixels.shape[2:]})"
        )
    datasets = copy.deepcopy(image_meta["multiscales"][0]["datasets"])
    templates = level_templates(
        (len(layout.t), 1, z_size, *spatial[-2:]),
        len(datasets),
        dtype="uint32",
        compressors=pixels.compressors,
        zarr_format=zarr_format,
    )
    label_attrs = template_attrs(
        zarr_format,
        lambda g: write_multiscales_metadata(
            g, datasets, fmt=fmt, axes=image_meta["multiscales"][0]["axes"], name=name
        ),
    )
    label_attrs = copy.deepcopy(label_attrs)
    ome = label_attrs["ome"] if zarr_format == 3 else label_attrs
    ome["image-label"] = {
        "version": fmt.version,
        "colors": _BACKGROUND,
        "source": {"image": "../../"},
    }
    names = _label_list(image, name)
    listing = (
        {"ome": {"version": fmt.version, "labels": names}}
        if zarr_format == 3
        else {"labels": names}
    )
    bases = [f"{field_image_path(well, field)}/labels" for well, field in fields]
    listed = isinstance(image.get("labels"), zarr.Group)
    if listed:
        _for_each(bases, lambda base: _drop_label_image(root, base, name, listing))
    nodes: dict[str, Any] = {}
    keys = {}
    for (well, field), base in zip(fields, bases, strict=True):
        if not listed:
            nodes[base] = GroupMetadata(attributes=listing, zarr_format=zarr_format)
        nodes[f"{base}/{name}"] = GroupMetadata(attributes=label_attrs, zarr_format=zarr_format)
        for level, template in enumerate(templates):
            nodes[f"{base}/{name}/{level}"] = template.metadata
            keys[f"{base}/{name}/{level}"] = ((well, field), level)
    created = zarr.create_hierarchy(store=root.store, nodes=nodes)
    arrays: dict[tuple[str, int], list[zarr.Array]] = {}
    for key, node in sorted(((k, n) for k, n in created if k in keys), key=lambda i: keys[i[0]][1]):
        assert isinstance(node, zarr.Array)
        arrays.setdefault(keys[key][0], []).append(node.with_config(WRITE_CONFIG))
    return arrays


def _drop_label_image(root: zarr.Group, base: str, name: str, listing: dict[str, Any]) -> None:
    """Delete an older ``labels/<name>`` of one field and list the label images it will have."""
    group = root[base]
    assert isinstance(group, zarr.Group)
    if name in group:
        del group[name]
    group.attrs.put(listing)


def _for_each(items: Sequence[Any], work: Any) -> None:
    with ThreadPoolExecutor(_SETUP_THREADS) as pool:
        list(pool.map(work, items))


def _label_list(image: zarr.Group, name: str) -> list[str]:
    existing = image.get("labels")
    names = (
        list(ome_attrs(existing.attrs.asdict()).get("labels", [])) if existing is not None else []
    )
    return names if name in names else [*names, name]


def _present(layout: PlateLayout) -> list[tuple[str, int]]:
    return [
        (well, field)
        for w, well in enumerate(layout.wells)
        for f, field in enumerate(layout.fields)
        if layout.field_present[w][f]
    ]


def _open_label_arrays(
    root: zarr.Group, layout: PlateLayout, name: str
) -> dict[tuple[str, int], list[zarr.Array]]:
    """Every level's array of each present field's ``labels/<name>``."""

    def open_one(unit: tuple[str, int]) -> list[zarr.Array]:
        group = root[f"{field_image_path(*unit)}/labels/{name}"]
        assert isinstance(group, zarr.Group)
        levels = sorted((int(key), node) for key, node in group.arrays() if key.isdigit())
        return [array.with_config(WRITE_CONFIG) for _, array in levels]

    units = _present(layout)
    with ThreadPoolExecutor(_SETUP_THREADS) as pool:
        return dict(zip(units, pool.map(open_one, units), strict=True))


def _open_books(root: zarr.Group, name: str) -> _Books:
    group = root[f"{LABELS_KEY}/{name}"]
    assert isinstance(group, zarr.Group)
    return _Books(group, {})


def _written_names(root: zarr.Group) -> list[str]:
    group = root.get(LABELS_KEY)
    if not isinstance(group, zarr.Group):
        return []
    return sorted(name for name, child in group.groups() if "fingerprint" in child.attrs)


def _unit_tasks(
    labels: xr.Dataset,
    layout: PlateLayout,
    root: zarr.Group,
    books: dict[str, _Books],
    path: Path,
    rewrite: bool,
) -> tuple[list[Delayed], list[str]]:
    names = list(books)
    *compartments, dropped = shared_delayed_blocks(
        *(labels[name].data for name in names), labels["border_dropped"].data
    )  # one segmentation of each field for every compartment
    blocks = dict(zip(names, compartments, strict=True))
    sources = (
        np.asarray(labels.coords[UNIT_TOKEN].values, dtype=np.uint64)
        if UNIT_TOKEN in labels.coords
        else np.zeros(tuple(labels.sizes[d] for d in _UNIT_DIMS), dtype=np.uint64)
    )
    recorded = {name: book.ledger.tokens() for name, book in books.items()}
    w_index = {w: i for i, w in enumerate(layout.wells)}
    f_index = {f: i for i, f in enumerate(layout.fields)}
    t_index = {t: i for i, t in enumerate(layout.t)}
    present = np.asarray(labels.coords["field_present"].values, dtype=bool)
    tasks, units = [], []
    for t, w, f in np.ndindex(labels.sizes["t"], *present.shape):
        if not present[w, f]:
            continue
        well = str(labels.coords["well"].values[w])
        field = int(labels.coords["field"].values[f])
        store = (t_index[_json(labels.coords["t"].values[t])], w_index[well], f_index[field])
        token = unit_token(
            tokenize([labels[n].data.name for n in names]), (t, w, f), int(sources[t, w, f])
        )
        if not rewrite and all(int(recorded[n][store]) == token for n in names):
            continue
        for name in names:
            if recorded[name][store]:
                books[name].ledger.clear(store)
        index = (t, w, f, *((0,) * (labels[names[0]].ndim - 3)))
        tasks.append(
            dask.delayed(_write_unit, pure=False)(
                {name: blocks[name][index] for name in names},
                dropped[t, w, f],
                Opaque({name: books[name].images[(well, field)] for name in names}),
                list(books.values()),
                store,
                token,
                dask_key_name=task_key("write-labels", str(path.resolve()), tuple(names), t, w, f),
            )
        )
        units.append(f"{well}/f{field}/t{t}")
    return tasks, units


def _json(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _write_unit(
    blocks: dict[str, np.ndarray],
    dropped: np.ndarray,
    arrays: Opaque,
    books: list[_Books],
    store_unit: tuple[int, int, int],
    token: int,
) -> None:
    """Write one field's label images (every level) and counts, then mark it complete.

    ``arrays`` holds each compartment's arrays, one per pyramid level.
    """
    t = store_unit[0]
    count = int(np.asarray(next(iter(blocks.values()))).max(initial=0))
    for name, block in blocks.items():
        levels = arrays.value[name]
        full = np.asarray(block, dtype=np.uint32).reshape((1, 1, *levels[0].shape[2:]))
        for array, values in zip(levels, pyramid(full, len(levels), "labels"), strict=True):
            if not write_chunk_file(array, (t, 0, 0, 0, 0), values):
                array[t : t + 1, 0:1] = values
    for book in books:
        book.counts[store_unit] = count
        book.dropped[store_unit] = int(np.asarray(dropped).ravel()[0])
    for book in books:
        book.ledger.mark(store_unit, token)


def _check_complete(ledgers: dict[str, np.ndarray], plate: xr.DataArray, path: Path) -> None:
    present = np.asarray(plate.coords["field_present"].values, dtype=bool)
    for name, ledger in ledgers.items():
        missing = np.argwhere((ledger == 0) & present[np.newaxis])
        if len(missing):
            wells, fields = plate.coords["well"].values, plate.coords["field"].values
            shown = ", ".join(f"{wells[w]}/f{fields[f]}/t{t}" for t, w, f in missing[:10])
            raise IncompleteStoreError(
                f"{path}: labels {name!r} are incomplete ({len(missing)} field(s): {shown}); "
                "run write_labels again, or pass allow_incomplete=True to read them as zeros"
            )


def _label_graph(
    root: zarr.Group, plate: xr.DataArray, books: _Books, name: str, spatial: tuple[str, ...]
) -> da.Array:
    """One task per field reading its labels, strictly where the field is complete."""
    sizes = {d: plate.sizes[d] for d in ("t", "well", "field", "y", "x")}
    n_z = plate.sizes["z"] if "z" in spatial else 1
    block = (1, 1, 1, *((n_z,) if "z" in spatial else ()), sizes["y"], sizes["x"])
    ledger = books.ledger.tokens()
    graph_name = f"read-labels-{name}-{tokenize(books.fingerprint.digest, ledger)}"
    present = np.asarray(plate.coords["field_present"].values, dtype=bool)
    # not map_blocks: a source; each task has its own array, strict where the ledger says, or zeros
    dsk: dict[Any, Any] = {}
    for t, w, f in np.ndindex(sizes["t"], sizes["well"], sizes["field"]):
        key = (graph_name, t, w, f, *((0,) * len(spatial)))
        if not present[w, f]:
            dsk[key] = (np.zeros, block, np.uint32)
            continue
        well, field = plate.coords["well"].values[w], int(plate.coords["field"].values[f])
        array = _array(root, f"{field_image_path(str(well), field)}/labels/{name}/0")
        where = f"{root.store}: labels {name!r} of well {well} field {field} t={t}"
        dsk[key] = (_read_labels, array, t, block, where, bool(ledger[t, w, f]))
    chunks = tuple((1,) * sizes[d] for d in _UNIT_DIMS) + tuple(
        (n_z,) if d == "z" else (sizes[d],) for d in spatial
    )
    graph = HighLevelGraph.from_collections(graph_name, dsk, dependencies=())
    return da.Array(graph, graph_name, chunks, dtype=np.uint32)


def _read_labels(
    array: zarr.Array, t: int, block: tuple[int, ...], where: str, strict: bool
) -> np.ndarray:
    index = (slice(t, t + 1), slice(0, 1))
    values = (
        read_image(array, index, (t, 0, 0, 0, 0), where) if strict else read_chunk(array, index)
    )
    return values.reshape(block)
