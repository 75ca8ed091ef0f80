"""Per-field statistics the projection keeps beside its pixels: QC measures and binned images.

The projection's task for a field holds the field's projected images in memory once it
has made them; it measures them there (:func:`cellscale.quality.image_metrics` of every
channel) and bins them for the illumination fit (:func:`cellscale.illumination.binned_image`),
so QC, the illumination fit and the report's focus figure never read the projected plate
again. The numbers are kept in the projected store's group ``cellscale_field_stats``:

- ``qc``: float64 ``(t, well, field, c, measure)``, one chunk per field: the measures of
  :data:`cellscale.quality.IMAGE_METRICS` at the plate's saturation level, from which
  :func:`cellscale.quality.qc_table` makes the QC table for any thresholds;
- ``binned``: float32 ``(t, well, field, c, y', x')``, one chunk per image: each image
  binned to about 128 px a side, all that either illumination method reads of a field
  (the ``mean`` method's background logs and counts, and BaSiC's stack, are made from
  them exactly as from the pixels);
- ``ledger``: per field, the token of the inputs its statistics were made from.

A field's statistics hold while their token is the one the plate's own ledger records
for it: the unit's task writes them before it marks the unit complete, from the same
pixels. A field complete without them (a store an earlier version wrote, a unit written
by a plain :func:`cellscale.write_plate`) gets them from :func:`complete`, which reads
that field's images once; a rewritten field gets them again with its pixels. The group's
attributes record the definitions (the measures, the saturation level, the binning);
a group made with others is made anew, and every field's statistics with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from numpy.typing import DTypeLike

from cellscale._stages import (
    DamagedOutputError,
    Ledger,
    Opaque,
    OutputLockedError,
    delayed_blocks,
    output_lock,
    run_units,
    task_key,
)
from cellscale._stages._run import StageBar, progress_label
from cellscale.illumination import FieldReader, bin_factor, binned_image, field_block
from cellscale.illumination._fields import Unit, binned_shape
from cellscale.io._chunks import read_image
from cellscale.io._layout import PlateLayout
from cellscale.io._plate_index import PlateIndex
from cellscale.io._store_setup import LEDGER_NAME, WRITE_CONFIG, read_store_record
from cellscale.quality import IMAGE_METRICS, image_metrics, present_images, saturation_level

__all__ = ["STATS_GROUP", "FieldRecorder", "complete", "field_reader", "qc_metrics", "recorder"]

STATS_GROUP = "cellscale_field_stats"
_VERSION = 1
_READ_THREADS = 8


@dataclass(frozen=True)
class FieldRecorder:
    """Measures and bins one field's images and records them (the projection's unit step)."""

    qc: zarr.Array
    binned: zarr.Array
    ledger: Ledger
    saturation: float | None
    factor: int

    def __call__(self, unit: Unit, token: int, images: Sequence[np.ndarray]) -> None:
        """Record the statistics of ``unit``'s ``images`` (one per channel), made from ``token``."""
        for c, image in enumerate(images):
            self.binned[(*unit, c)] = binned_image(image, self.factor)
        self.qc[unit] = np.stack([image_metrics(image, self.saturation) for image in images])
        self.ledger.mark(unit, token)


def recorder(root: zarr.Group, layout: PlateLayout) -> FieldRecorder:
    """The recorder of the plate store at ``root``, its statistics group set up if need be.

    An existing group made with the same definitions is kept as it is (its ledger
    unsealed, as its units are about to be recorded); any other is replaced by an empty
    one. Call under the store's lock.
    """
    definitions = _definitions(layout)
    group = root.get(STATS_GROUP)
    if not (isinstance(group, zarr.Group) and _matches(group, layout, definitions)):
        group = _create(root, layout, definitions)
    made = _recorder(group, definitions)
    made.ledger.unseal()
    return made


def complete(plate: xr.DataArray, path: Path, *, client: Any = None, progress: bool = True) -> int:
    """Give every complete field of the store at ``path`` its statistics; how many were made.

    Fields whose statistics are current are not read; the others (see the module's
    description) are read once, one task per field, and recorded under the store's lock.

    Parameters
    ----------
    plate
        The plate at ``path``, opened (:func:`cellscale.open_plate`).
    path
        The plate store.
    client, progress
        As for :func:`~cellscale._stages.run_units`.
    """
    if not _stale_units(path):
        _seal(path)
        return 0
    with output_lock(path):
        layout, root = _open(path, "r+")
        record = recorder(root, layout)
        todo = _stale_units(path)
        tokens = _plate_tokens(root, layout)
        blocks = delayed_blocks(plate.data)
        tasks, names = [], []
        for t, w, f in todo:
            images = [blocks[t, w, f, 0, c, 0, 0] for c in range(plate.sizes["c"])]
            key = task_key("field-stats", str(path.resolve()), plate.data.name, t, w, f)
            token = int(tokens[t, w, f])
            tasks.append(
                dask.delayed(_record, pure=False)(
                    Opaque(record), (t, w, f), token, images, dask_key_name=key
                )
            )
            names.append(_name(layout, (t, w, f)))
        with progress_label(f"field stats {plate.name}", unit="field", total=len(tasks)):
            run_units("field-stats", tasks, names, client=client, progress=progress)
        record.ledger.seal()
    return len(todo)


def _seal(path: Path) -> None:
    """Seal the complete statistics' ledger, unless a writer holds the store (it seals later)."""
    try:
        with output_lock(path):
            _, root = _open(path, "r+")
            group = root.get(STATS_GROUP)
            ledger = Ledger.open(group, "ledger") if isinstance(group, zarr.Group) else None
            if ledger is not None:
                ledger.seal()
    except (OutputLockedError, OSError):  # held by a writer, or a store the user cannot lock
        pass


def qc_metrics(
    plate: xr.DataArray,
    path: Path,
    channels: Sequence[str] | None = None,
    *,
    progress: bool = False,
) -> np.ndarray:
    """The recorded QC measures of every present image, as :func:`cellscale.quality.qc_table`
    takes them: ``(units, channels, measures)``, units in ``present_images`` order.

    ``progress`` shows a bar of the fields read (named by the caller's progress label).

    Raises
    ------
    DamagedOutputError
        If a field lacks current statistics (run :func:`complete` first) or its record is
        missing, naming it.
    """
    layout, group = _checked(path)
    array = group["qc"]
    assert isinstance(array, zarr.Array)
    units = present_images(plate)

    def read(unit: Unit) -> np.ndarray:
        where = f"QC measures of {_name(layout, unit)}"
        return read_image(array, unit, (*unit, 0, 0), where, hint=False)

    bar = StageBar("qc", len(units), progress=progress, unit="field")
    rows = []
    try:
        with ThreadPoolExecutor(_READ_THREADS) as pool:
            for row in pool.map(read, units):
                rows.append(row)
                bar.advance()
    finally:
        bar.close()
    values = np.stack(rows)
    names = [str(c) for c in plate.coords["c"].values]
    picked = names if channels is None else [str(c) for c in channels]
    return values[:, [names.index(c) for c in picked]]


def field_reader(plate: xr.DataArray, path: Path) -> FieldReader:
    """A :class:`~cellscale.illumination.FieldReader` of the recorded binned images.

    Raises
    ------
    DamagedOutputError
        If a field lacks current statistics (run :func:`complete` first), naming it; a
        missing image record is named when the fit reads it.
    """
    layout, group = _checked(path)
    array = group["binned"]
    assert isinstance(array, zarr.Array)
    binned_by = bin_factor(layout.shape_yx)  # the definitions _checked found it made with

    def read(
        positions: Sequence[int],
        units: Sequence[Unit],
        factor: int,
        *,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        planes: int = 1,
        dtype: DTypeLike = np.float32,
    ) -> da.Array:
        if factor != binned_by:
            raise ValueError(f"the fields were binned by {binned_by}, not {factor}")
        token = tokenize(plate.data.name, list(positions), list(units), transform)
        name = f"illumination-fields-{token}"
        target = Opaque(array)
        # not blockwise: tasks read a chosen list of (t, well, field) images and channels
        dsk: dict[Any, Any] = {
            (name, i, j, 0, 0, 0): (
                _read_field,
                target,
                (*unit, c),
                _name(layout, unit, c),
                transform,
            )
            for i, unit in enumerate(units)
            for j, c in enumerate(positions)
        }
        small = array.shape[-2:]
        chunks = ((1,) * len(units), (1,) * len(positions), (planes,), (small[0],), (small[1],))
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=[])
        return da.Array(graph, name, chunks, meta=np.empty((0,) * 5, np.dtype(dtype)))

    return read


def _record(record: Opaque, unit: Unit, token: int, images: Sequence[np.ndarray]) -> None:
    record.value(unit, token, images)


def _read_field(
    target: Opaque,
    image: tuple[int, int, int, int],
    where: str,
    transform: Callable[[np.ndarray], np.ndarray] | None,
) -> np.ndarray:
    small = read_image(target.value, image, (*image, 0, 0), f"binned {where}", hint=False)
    return field_block(small, transform)


def _definitions(layout: PlateLayout) -> dict[str, Any]:
    return {
        "version": _VERSION,
        "metrics": list(IMAGE_METRICS),
        "saturation": saturation_level(np.dtype(layout.dtype), None),
        "bin_factor": bin_factor(layout.shape_yx),
    }


def _shapes(layout: PlateLayout, factor: int) -> dict[str, tuple[int, ...]]:
    units = (len(layout.t), len(layout.wells), len(layout.fields))
    channels = len(layout.channels)
    small = binned_shape(layout.shape_yx, factor)
    return {
        "qc": (*units, channels, len(IMAGE_METRICS)),
        "binned": (*units, channels, *small),
        "ledger": units,
    }


def _matches(group: zarr.Group, layout: PlateLayout, definitions: dict[str, Any]) -> bool:
    if group.attrs.asdict().get("definitions") != definitions:
        return False
    arrays = {name: group.get(name) for name in ("qc", "binned", "ledger")}
    shapes = {name: a.shape for name, a in arrays.items() if isinstance(a, zarr.Array)}
    return shapes == _shapes(layout, definitions["bin_factor"])


def _create(root: zarr.Group, layout: PlateLayout, definitions: dict[str, Any]) -> zarr.Group:
    """An empty statistics group; its definitions are written last, so a group whose
    setup was interrupted never matches."""
    group = root.create_group(STATS_GROUP, overwrite=True)
    shapes = _shapes(layout, definitions["bin_factor"])
    Ledger.create(group, "ledger", shapes["ledger"])
    for name, dtype, per_chunk in (("qc", "float64", 2), ("binned", "float32", 2)):
        shape = shapes[name]
        group.create_array(
            name,
            shape=shape,
            chunks=(1,) * (len(shape) - per_chunk) + shape[-per_chunk:],
            dtype=dtype,
            fill_value=float("nan"),
            overwrite=True,
        )
    group.attrs["definitions"] = definitions
    return group


def _recorder(group: zarr.Group, definitions: dict[str, Any]) -> FieldRecorder:
    qc, binned = group["qc"], group["binned"]
    assert isinstance(qc, zarr.Array) and isinstance(binned, zarr.Array)
    ledger = Ledger.open(group, "ledger")
    assert ledger is not None
    return FieldRecorder(
        qc=qc.with_config(WRITE_CONFIG),
        binned=binned.with_config(WRITE_CONFIG),
        ledger=ledger,
        saturation=definitions["saturation"],
        factor=int(definitions["bin_factor"]),
    )


def _open(path: Path, mode: Literal["r", "r+"]) -> tuple[PlateLayout, zarr.Group]:
    record = read_store_record(path)
    if record is None:
        raise DamagedOutputError(f"{path}: no complete plate store to keep statistics of")
    return record.layout, zarr.open_group(str(path), mode=mode)


def _plate_tokens(root: zarr.Group, layout: PlateLayout) -> np.ndarray:
    """The plate ledger's tokens: from the plate index (one read) where the plate has one."""
    index = PlateIndex.read(root, layout)
    if index is not None:
        return index.tokens
    ledger = Ledger.open(root, LEDGER_NAME)
    assert ledger is not None
    return ledger.tokens()


def _stats_group(root: zarr.Group, layout: PlateLayout) -> zarr.Group | None:
    group = root.get(STATS_GROUP)
    if isinstance(group, zarr.Group) and _matches(group, layout, _definitions(layout)):
        return group
    return None


def _stale_units(path: Path) -> list[Unit]:
    """The complete fields of the store whose statistics are missing or not current."""
    layout, root = _open(path, "r")
    tokens = _plate_tokens(root, layout)
    group = _stats_group(root, layout)
    ledger = None if group is None else Ledger.open(group, "ledger")
    recorded = np.zeros_like(tokens) if ledger is None else ledger.tokens()
    stale = (tokens != 0) & (recorded != tokens)
    return [(int(t), int(w), int(f)) for t, w, f in np.argwhere(stale)]


def _checked(path: Path) -> tuple[PlateLayout, zarr.Group]:
    """The store's layout and statistics group, every complete field's statistics current.

    A record that is missing although its field's statistics are marked current is named
    when it is read (:func:`~cellscale.io._chunks.read_image`).
    """
    stale = _stale_units(path)
    layout, root = _open(path, "r")
    group = _stats_group(root, layout)
    if stale or group is None:
        shown = ", ".join(_name(layout, u) for u in stale[:5]) or "every field"
        raise DamagedOutputError(
            f"{path}: the per-field statistics of {shown} are missing or were made from "
            "other pixels; complete them first (a cellscale run does)"
        )
    return layout, group


def _name(layout: PlateLayout, unit: Unit, channel: int | None = None) -> str:
    t, w, f = unit
    name = f"{layout.wells[w]}/f{layout.fields[f]}/t{t}"
    return name if channel is None else f"{name}/{layout.channels[channel]}"
