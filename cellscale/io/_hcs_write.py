"""Write a plate array as an OME-Zarr (NGFF) HCS plate, unit by unit, resumably."""

from __future__ import annotations

import errno
import functools
import math
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.delayed import Delayed

from cellscale._stages import (
    Fingerprint,
    Ledger,
    Opaque,
    StaleOutputError,
    check_fingerprint,
    delayed_blocks,
    lazy_units,
    output_lock,
    remove_partials,
    run_units,
    take_lease,
    task_key,
    unit_token,
)
from cellscale.config import config_value
from cellscale.io._chunk_files import write_chunk_file
from cellscale.io._layout import PlateLayout
from cellscale.io._plate_index import INDEX_NAME, drop_index, write_index
from cellscale.io._pyramid import level_count, pyramid
from cellscale.io._store_setup import (
    LEDGER_NAME,
    WRITE_CONFIG,
    create_store,
    field_image_path,
    read_store_record,
)
from cellscale.io._unit_coords import open_unit_coords
from cellscale.plate import LINEAGE, UNIT_TOKEN, as_plate, image_chunks

__all__ = ["field_image_path", "plate_fingerprint", "write_plate"]

_SETUP_THREADS = 8

Unit = tuple[int, int, int]  # (t, well, field) indices
UnitRecorder = Callable[[Unit, int, Sequence[np.ndarray]], None]
"""Called in a unit's task with its store index, token and images (one per channel)."""


@dataclass(frozen=True)
class _Settings:
    """Write settings; ``None`` means "what the store has", else the configuration."""

    version: str | None
    codec: str | None
    clevel: int | None
    levels: int | None

    def resolve(self, stored: Fingerprint | None, shape_yx: tuple[int, int]) -> _Settings:
        """Fill unset values from a stored fingerprint, then from the configuration."""
        known = dict(stored.parameters) if stored is not None else {}
        return _Settings(
            version=str(
                config_value("zarr.ngff-version", _first(self.version, known.get("ngff_version")))
            ),
            codec=str(config_value("zarr.codec", _first(self.codec, known.get("codec")))),
            clevel=int(config_value("zarr.clevel", _first(self.clevel, known.get("clevel")))),
            levels=level_count(shape_yx, _first(self.levels, known.get("levels"))),
        )


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def write_plate(
    plate: xr.DataArray,
    path: str | Path,
    *,
    version: str | None = None,
    codec: str | None = None,
    clevel: int | None = None,
    levels: int | None = None,
    overwrite: bool = False,
    rewrite: bool = False,
    verify: bool = False,
    client: Any = None,
    progress: bool = True,
    compute: bool = True,
    records: Callable[[zarr.Group, PlateLayout], UnitRecorder] | None = None,
) -> Any:
    """Write ``plate`` to an OME-Zarr HCS plate at ``path``, one (t, well, field) unit at a time.

    Each unit is one task that computes the unit's images (all channels, whole Z
    stacks), writes them, then records the unit complete in the store's ledger with a
    token of its inputs. Calling this again with the same plate completes only what is
    missing, so an interrupted write resumes; units whose inputs changed since they were
    written (a source file replaced, a source field rewritten) are written again.
    Writing into a store made by other steps, from another source or with other settings
    is refused (see Raises). Writing a plate that holds a subset of an existing store's
    wells, fields or time points (same channels, Z, image shape and dtype) with
    ``rewrite=True`` redoes just that subset.

    Parameters
    ----------
    plate
        A plate array, usually lazy; anything :func:`cellscale.plate.as_plate` accepts.
        A projected plate (no ``z`` dim) is written with a single Z plane.
    path
        Directory of the plate store (``*.zarr``).
    version
        NGFF version, ``"0.5"`` (Zarr v3, the default from config
        ``cellscale.zarr.ngff-version``) or ``"0.4"`` (Zarr v2).
    codec, clevel
        Compression (config ``cellscale.zarr.codec`` / ``clevel``); see
        :func:`cellscale.io._ngff.compressor_for`. When writing into an existing store,
        ``version``, ``codec`` and ``clevel`` left unset mean "as the store has them".
    levels
        Pyramid levels, full resolution included: each level halves the one before in
        y and x (2 × 2 means), written by the same unit task, so napari and other
        viewers show a whole plate quickly. ``None`` (the default) means "as the store
        has them", else levels down to config ``cellscale.zarr.pyramid-min-size``
        (256 px); ``1`` writes full resolution only.
    overwrite
        Delete an existing store at ``path`` first.
    rewrite
        Write the plate's units even where the ledger says they are complete, from
        whatever data the plate holds.
    verify
        First check that every unit marked complete has all its chunks and that they
        decode (see :func:`cellscale.verify_plate`); damaged units are written again.
    client
        A ``distributed.Client``; defaults to the current one, else the local scheduler.
    progress
        Show a progress bar.
    compute
        ``False`` sets the store up and returns a ``dask.delayed.Delayed`` that writes
        the units when computed (and raises :class:`~cellscale.UnitFailure` if any
        failed), so several stages can share one graph. Until it has run, the store is
        held for it: other writes are refused (see :func:`cellscale.release_lazy_write`).
    records
        Per-unit records kept beside the pixels, made from each image in memory rather
        than read again: called once the store is set up (under its lock) with its root
        group and layout, it returns a function that each unit's task calls with the
        unit's store index ``(t, well, field)``, its token and its images (one array per
        channel) after writing them and before marking the unit complete.

    Returns
    -------
    pathlib.Path or dask.delayed.Delayed
        ``path``, or the lazy write when ``compute=False``.

    Raises
    ------
    StaleOutputError
        If the store at ``path`` was produced from another source, by other steps
        (e.g. another projection method), under another plate name or plate map, with
        other write settings or another cellscale version, or holds another image grid;
        the message lists each difference.
    UnitFailure
        If some units failed: each is named by its position with its error, the others
        are written and recorded. It is also an instance of the errors' common type
        (``except OSError`` catches a full disk).
    OutputLockedError
        If another process is writing the same store.
    """
    plate = as_plate(plate)
    if "z" not in plate.dims:
        plate = plate.expand_dims(z=[0], axis=plate.dims.index("c"))
    path = Path(path)
    settings = _Settings(version, codec, clevel, levels)
    with output_lock(path):
        tasks, names, layout = _prepare(
            plate, path, settings, overwrite, rewrite, verify, client, records
        )
        if not compute:
            then = functools.partial(_index_after, path, layout)
            return lazy_units("write-plate", tasks, names, lease=take_lease(path), then=then)
        run_units("write-plate", tasks, names, client=client, progress=progress)
        _index_after(path, layout)
    return path


def _index_after(path: Path, layout: PlateLayout) -> None:
    """Index the plate once every unit was written (a failure raised before this).

    A write that had nothing to do leaves an existing index as it is. The completion
    ledger is sealed, so that checking the store reads one record (:meth:`Ledger.seal`).
    """
    if not (path / INDEX_NAME).is_dir():
        write_index(path, layout)
    ledger = Ledger.open(zarr.open_group(str(path), mode="r+"), LEDGER_NAME)
    if ledger is not None:
        ledger.seal()


def plate_fingerprint(plate: xr.DataArray, settings: Any) -> Fingerprint:
    """The fingerprint of writing ``plate`` with ``settings`` (NGFF version, codec, level)."""
    return Fingerprint(
        stage="plate",
        inputs={"lineage": plate.attrs.get(LINEAGE, []), "data": plate.data.name},
        parameters={
            "name": str(plate.name),
            "ngff_version": settings.version,
            "codec": settings.codec,
            "clevel": settings.clevel,
            "levels": settings.levels,
        },
    )


def _prepare(
    plate: xr.DataArray,
    path: Path,
    settings: _Settings,
    overwrite: bool,
    rewrite: bool,
    verify: bool,
    client: Any,
    records: Callable[[zarr.Group, PlateLayout], UnitRecorder] | None = None,
) -> tuple[list[Delayed], list[str], PlateLayout]:
    """Set up or check the store, and build one write task per unit still to write.

    Returns the tasks, their units' names and the store's layout.
    """
    layout = PlateLayout.from_plate(plate)
    record = None if overwrite else read_store_record(path)
    settings = settings.resolve(record.fingerprint if record is not None else None, layout.shape_yx)
    fingerprint = plate_fingerprint(plate, settings)
    if record is None:
        assert settings.version is not None and settings.codec is not None
        assert settings.clevel is not None and settings.levels is not None
        arrays = create_store(
            path,
            layout,
            fingerprint,
            settings.version,
            settings.codec,
            settings.clevel,
            settings.levels,
        )
        store_layout = layout
    else:
        store_layout = record.layout
        _unit_index(layout, store_layout, path)  # the grid first: its message is specific
        _check_plate_map(layout, store_layout, path)
        ignore = ("inputs.data",) if rewrite else ()
        check_fingerprint(record.fingerprint, fingerprint, path, ignore=ignore)
        remove_partials(path)
        arrays = {}
    root = zarr.open_group(str(path), mode="r+")
    if verify and record is not None:
        from cellscale.io._verify import verify_units

        verify_units(path, client=client, progress=False, repair=True)
    ledger = Ledger.open(root, LEDGER_NAME)
    assert ledger is not None
    recorded = ledger.tokens()
    todo = _units_to_write(plate, layout, store_layout, recorded, path, rewrite)
    if todo:
        drop_index(path)  # before any unit changes: the index must never describe a stale unit
    for _, store_unit, _ in todo:
        if recorded[store_unit]:
            ledger.clear(store_unit)
    if not arrays:
        needed = {(store_layout.wells[w], store_layout.fields[f]) for _, (_, w, f), _ in todo}
        assert settings.levels is not None
        arrays = _open_arrays(root, sorted(needed), settings.levels)
    coords = open_unit_coords(root, store_layout)
    recorder = records(root, store_layout) if records is not None and todo else None
    tasks, names = _write_tasks(
        plate, layout, store_layout, todo, arrays, coords, ledger, path, recorder
    )
    return tasks, names, store_layout


def _units_to_write(
    plate: xr.DataArray,
    layout: PlateLayout,
    store_layout: PlateLayout,
    recorded: np.ndarray,
    path: Path,
    rewrite: bool,
) -> list[tuple[Unit, Unit, int]]:
    """(plate unit, store unit, token) of every unit to write; warn about changed inputs."""
    sources = _source_tokens(plate)
    todo, changed = [], []
    for unit, store_unit in _unit_index(layout, store_layout, path).items():
        token = unit_token(plate.data.name, unit, int(sources[unit]))
        stored = int(recorded[store_unit])
        if rewrite or stored != token:
            todo.append((unit, store_unit, token))
            if stored not in (0, token) and not rewrite:
                changed.append(_unit_name(layout, unit))
    if changed:
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        shown = ", ".join(changed[:5]) + more
        warnings.warn(
            f"{path}: {len(changed)} complete unit(s) were made from inputs that have changed "
            f"since ({shown}); writing them again",
            UserWarning,
            stacklevel=4,
        )
    return todo


def _source_tokens(plate: xr.DataArray) -> np.ndarray:
    """Each unit's input identity: the ``unit_token`` coordinate, else zeros."""
    shape = tuple(plate.sizes[d] for d in ("t", "well", "field"))
    if UNIT_TOKEN not in plate.coords:
        return np.zeros(shape, dtype=np.uint64)
    coord = plate.coords[UNIT_TOKEN]
    return np.asarray(coord.transpose("t", "well", "field").values, dtype=np.uint64)


def _unit_name(layout: PlateLayout, unit: Unit) -> str:
    t, w, f = unit
    return f"{layout.wells[w]}/f{layout.fields[f]}/t{t}"


def _write_tasks(
    plate: xr.DataArray,
    layout: PlateLayout,
    store_layout: PlateLayout,
    todo: list[tuple[Unit, Unit, int]],
    arrays: dict[tuple[str, int], list[zarr.Array]],
    coord_arrays: dict[str, zarr.Array],
    ledger: Ledger,
    path: Path,
    recorder: UnitRecorder | None,
) -> tuple[list[Delayed], list[str]]:
    data = plate.data.rechunk(image_chunks(plate.shape))
    blocks = delayed_blocks(data)
    coords = _unit_coord_blocks(plate, coord_arrays)
    tasks, names = [], []
    for (t, w, f), (store_t, store_w, store_f), token in todo:
        channel_blocks = [blocks[t, w, f, 0, c, 0, 0] for c in range(len(layout.channels))]
        targets = Opaque(
            (
                arrays[(store_layout.wells[store_w], store_layout.fields[store_f])],
                [coord_arrays[name] for name in coords],
                recorder,
            )
        )
        tasks.append(
            dask.delayed(_write_unit, pure=False)(
                channel_blocks,
                [values[t, w, f] for values in coords.values()],
                targets,
                store_t,
                ledger,
                (store_t, store_w, store_f),
                token,
                dask_key_name=task_key("write-plate", str(path.resolve()), data.name, t, w, f),
            )
        )
        names.append(_unit_name(layout, (t, w, f)))
    return tasks, names


def _unit_coord_blocks(plate: xr.DataArray, arrays: dict[str, zarr.Array]) -> dict[str, Any]:
    """Per unit, each stored unit coordinate's value: a delayed block, or a NumPy value."""
    blocks: dict[str, Any] = {}
    for name in (n for n in arrays if n in plate.coords):
        coord = plate.coords[name].transpose("t", "well", "field").data
        if isinstance(coord, da.Array):
            blocks[name] = delayed_blocks(coord.rechunk(1))
        else:
            blocks[name] = np.asarray(coord)
    return blocks


def _write_unit(
    channel_blocks: Sequence[np.ndarray],
    coord_values: Sequence[Any],
    targets: Opaque,
    t: int,
    ledger: Ledger,
    ledger_index: Unit,
    token: int,
) -> None:
    """Write every channel's image, its pyramid levels and the unit's coordinates, then mark it.

    ``targets`` holds the image's array at each level, the coordinates' arrays and the
    unit recorder (or ``None``), which is given the images before the unit is marked.
    """
    levels, coord_arrays, recorder = targets.value
    for array, value in zip(coord_arrays, coord_values, strict=True):
        array[ledger_index] = np.asarray(value).reshape(())
    for c, block in enumerate(channel_blocks):
        full = np.asarray(block).reshape((1, 1, *levels[0].shape[2:]))
        for image, values in zip(levels, pyramid(full, len(levels), "image"), strict=True):
            try:
                if not write_chunk_file(image, (t, c, 0, 0, 0), values):
                    # a value of exactly one chunk's shape spares zarr a fill-and-merge copy
                    image[t : t + 1, c : c + 1] = values
            except OSError as err:
                raise _naming_chunk(err, image, (t, c, 0, 0, 0)) from err
    if recorder is not None:
        recorder(ledger_index, token, [np.asarray(block) for block in channel_blocks])
    ledger.mark(ledger_index, token)


def _naming_chunk(err: OSError, image: zarr.Array, coords: tuple[int, ...]) -> OSError:
    """``err`` again, of the same type, naming the chunk file that could not be written."""
    where = f"{image.store}/{image.path}/{image.metadata.encode_chunk_key(coords)}"
    code = err.errno if err.errno is not None else errno.EIO
    try:
        return type(err)(code, err.strerror or str(err), where)
    except TypeError:  # an OSError subclass with another signature
        return OSError(code, err.strerror or str(err), where)


def _unit_index(layout: PlateLayout, store: PlateLayout, path: Path) -> dict[Unit, Unit]:
    """Map the plate's present (t, well, field) indices to the store's."""
    if not layout.same_grid(store):
        raise StaleOutputError(
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
                raise StaleOutputError(f"{path} has no field {field} in well {well}")
            for t in range(len(layout.t)):
                index[(t, w, f)] = (t_map[t], w_map[w], f_map[f])
    return index


def _positions(values: list[Any], store_values: list[Any], what: str, path: Path) -> list[int]:
    missing = [v for v in values if v not in store_values]
    if missing:
        raise StaleOutputError(f"{path} has no {what}(s) {missing}; it holds {store_values}")
    return [store_values.index(v) for v in values]


def _check_plate_map(layout: PlateLayout, store: PlateLayout, path: Path) -> None:
    """The plate map of the wells being written must be the one the store holds."""
    mine = layout.plate_map_frame()
    stored = store.plate_map_frame().reindex(mine.index)
    problems = [f"column {c!r} is new" for c in mine.columns if c not in stored.columns]
    problems += [f"column {c!r} is missing" for c in stored.columns if c not in mine.columns]
    for column in (c for c in mine.columns if c in stored.columns):
        differ = [
            f"{well} ({_value(a)!r} stored, {_value(b)!r} now)"
            for well, a, b in zip(mine.index, stored[column], mine[column], strict=True)
            if _value(a) != _value(b)
        ]
        if differ:
            more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
            problems.append(f"column {column!r} at wells {', '.join(differ[:3])}{more}")
    if problems:
        raise StaleOutputError(
            f"{path} holds another plate map: " + "; ".join(problems) + ". Pass overwrite=True "
            f"to rewrite the plate, or cellscale.update_plate_map({str(path)!r}, plate_map) to "
            "change only the plate map (no pixels are rewritten)"
        )


def _value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _open_arrays(
    root: zarr.Group, units: Sequence[tuple[str, int]], levels: int
) -> dict[tuple[str, int], list[zarr.Array]]:
    """Open every level's array of the given (well, field) images of a store, in parallel."""

    def open_one(unit: tuple[str, int]) -> list[zarr.Array]:
        arrays = []
        for level in range(levels):
            array = root[f"{field_image_path(*unit)}/{level}"]
            assert isinstance(array, zarr.Array)
            arrays.append(array.with_config(WRITE_CONFIG))
        return arrays

    with ThreadPoolExecutor(_SETUP_THREADS) as pool:
        return dict(zip(units, pool.map(open_one, units), strict=True))
