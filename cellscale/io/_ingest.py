"""TIFF-folder ingest: discover image files, build a lazy plate, write OME-Zarr.

:func:`read_tiff_plate` matches a folder's files against a file pattern, checks that
every field that exists has all its images, and returns a lazy plate whose dask graph
has one task per ``(t, well, field, c)`` image (a single ``ingest-<token>`` layer
holding only file paths). :func:`ingest` writes that plate with
:func:`~cellscale.io.write_plate`, field by field, so the plate is never in memory.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from cellscale._stages import names_digest, unit_token
from cellscale.io._htd import HtdInfo, read_htd
from cellscale.io._patterns import Discovery, FilePattern, ImageFile, discover, resolve_pattern
from cellscale.io._platemap import check_plate_map, read_plate_map
from cellscale.io._tiff import ChunkSpec, PlaneRef, TiffLayout, probe_tiff, read_chunk
from cellscale.plate import UNIT_TOKEN, PlateError, add_lineage, build_plate, split_well

__all__ = ["ingest", "read_tiff_plate"]

Channels = Sequence[str] | Mapping[str, str] | None
_PROBE_TRIES = 10  # files tried in turn where a probed file cannot be read
Position = tuple[int, str, int, str, int]  # t, well, field, channel id, z


def read_tiff_plate(
    source: str | Path,
    pattern: str | FilePattern = "imagexpress",
    plate_map: str | Path | pd.DataFrame | None = None,
    *,
    channels: Channels = None,
    fill_missing: bool = False,
    on_unmatched: Literal["raise", "warn", "ignore"] = "raise",
    rgb: int | None = None,
    name: str | None = None,
) -> xr.DataArray:
    """Read a folder of TIFFs as a lazy plate, without reading any pixels.

    Parameters
    ----------
    source
        The folder holding the images (searched recursively).
    pattern
        How file paths name plate positions: ``"imagexpress"`` (raw or exported
        MetaXpress layout, Z planes), ``"imagexpress-projection"`` (the
        instrument's projections), ``"cellprofiler"``
        (``<plate>_<well>f<field>d<channel>.tif``), a regex with named groups among
        ``t, well, field, z, c``, or a :class:`FilePattern`.
    plate_map
        A CSV/TSV file or DataFrame with a well column; its other columns become
        ``well`` coordinates (see :func:`read_plate_map`).
    channels
        Which channels to read, by id (``"w1"``, ``"d0"`` …) or by name (e.g. an
        HTD wavelength name), in the order given; a mapping also renames them
        (``{"w1": "DNA"}``). All channels by default.
    fill_missing
        Fill missing images of fields that exist with zeros instead of raising.
    on_unmatched
        What to do with image files that do not match the pattern.
    rgb
        Which sample of RGB files to take (0, 1, 2); by default RGB files must hold
        one grey channel (equal samples).
    name
        The plate name; by default the pattern's ``plate`` group or the folder name.

    Returns
    -------
    xarray.DataArray
        A plate (dims ``t, well, field, z, c, y, x``), one dask chunk per image.

    Raises
    ------
    PlateError
        For unmatched files (unless allowed), duplicate positions, missing images,
        channels that differ in shape or dtype, and unreadable files; the message
        names the files and positions at fault.
    """
    pat = resolve_pattern(pattern)
    found = discover(source, pat)
    _report_unmatched(found, on_unmatched)
    if not found.files:
        raise PlateError(f"no image files under {found.source} match the {pat.name} pattern")
    htd = read_htd(min(found.htd_files, key=lambda p: len(p.parts))) if found.htd_files else None
    files = _select_z_source(found.files, pat)
    layouts, references = _probe_channels(files)
    planes = _expand(files, layouts, _stat_files(files))
    ids, names = _choose_channels(planes, files, found, channels, htd)
    grid = _Grid.build(planes, ids)
    grid.check_complete(fill_missing)
    data = _lazy_array(grid, layouts, references, rgb)
    table = _plate_map(plate_map, grid.wells, htd)
    plate = build_plate(
        data,
        name=name or next((f.plate for f in files if f.plate), None) or found.source.name,
        wells=grid.wells,
        fields=grid.fields,
        channels=names,
        t=grid.t,
        z=grid.z,
        plate_map=table,
        field_present=grid.field_present,
        pixel_size_um=_pixel_size(layouts),
        attrs=_attrs(found, pat, htd, files, names, rgb, fill_missing),
    )
    return plate.assign_coords({UNIT_TOKEN: (("t", "well", "field"), grid.unit_tokens(found))})


def ingest(
    source: str | Path,
    out: str | Path,
    pattern: str | FilePattern = "imagexpress",
    plate_map: str | Path | pd.DataFrame | None = None,
    *,
    channels: Channels = None,
    fill_missing: bool = False,
    on_unmatched: Literal["raise", "warn", "ignore"] = "raise",
    rgb: int | None = None,
    name: str | None = None,
    version: str | None = None,
    codec: str | None = None,
    clevel: int | None = None,
    overwrite: bool = False,
    verify: bool = False,
    client: Any = None,
    progress: bool = True,
) -> Path:
    """Turn a folder of TIFFs into an OME-Zarr HCS plate, field by field.

    Reads lazily with :func:`read_tiff_plate` and writes with
    :func:`~cellscale.io.write_plate`: every ``(t, well, field)`` is one task that
    reads its files and writes its chunks, so the plate is never held in memory,
    and re-running after a failure writes only the fields not yet complete.

    Parameters
    ----------
    source, pattern, plate_map, channels, fill_missing, on_unmatched, rgb, name
        As for :func:`read_tiff_plate`.
    out
        The ``.zarr`` plate to write.
    version, codec, clevel, overwrite, verify, client, progress
        Passed to :func:`~cellscale.io.write_plate`. Re-running an ingest into its own
        output resumes it; a plate map that differs from the stored one is refused (use
        :func:`~cellscale.update_plate_map`), as is an output ingested from other files
        or with other settings.

    Returns
    -------
    pathlib.Path
        The written plate.

    See Also
    --------
    read_tiff_plate : inspect the plate before writing it.
    cellscale.open_plate : read the written plate.
    """
    from cellscale.io._hcs_write import write_plate

    plate = read_tiff_plate(
        source,
        pattern,
        plate_map,
        channels=channels,
        fill_missing=fill_missing,
        on_unmatched=on_unmatched,
        rgb=rgb,
        name=name,
    )
    return write_plate(
        plate,
        out,
        version=version,
        codec=codec,
        clevel=clevel,
        overwrite=overwrite,
        verify=verify,
        client=client,
        progress=progress,
    )


def _report_unmatched(found: Discovery, on_unmatched: str) -> None:
    if on_unmatched not in ("raise", "warn", "ignore"):
        raise ValueError(f"on_unmatched must be 'raise', 'warn' or 'ignore', got {on_unmatched!r}")
    if not found.unmatched or on_unmatched == "ignore":
        return
    message = found.unmatched_message()
    if on_unmatched == "raise":
        raise PlateError(message + "\n(pass on_unmatched='warn' or 'ignore' to leave them out)")
    warnings.warn(message, UserWarning, stacklevel=3)


def _select_z_source(files: list[ImageFile], pattern: FilePattern) -> list[ImageFile]:
    """Keep the Z planes, or the projections, of a ZStep-folder layout."""
    if not pattern.zstep_folders:
        return files
    if not pattern.projection:
        return [f for f in files if not f.projection]
    stacks: dict[tuple[int, str, int, str], list[ImageFile]] = defaultdict(list)
    for f in files:
        stacks[(f.t, f.well, f.field, f.c)].append(f)
    chosen: list[ImageFile] = []
    for stack in stacks.values():
        projections = [f for f in stack if f.projection]
        if projections:
            chosen.extend(_at_z0(f) for f in projections)
        elif len(stack) == 1:  # a single plane is its own projection
            chosen.append(_at_z0(stack[0]))
    return chosen


def _at_z0(f: ImageFile) -> ImageFile:
    return ImageFile(f.path, f.t, f.well, f.field, 0, f.c, True, f.plate)


def _probe_channels(files: list[ImageFile]) -> tuple[dict[str, TiffLayout], dict[str, str]]:
    """The page layout of each channel's files, and the file it was taken from.

    Up to three files of each channel are probed (first, middle, last) and the layout
    most of them share is the channel's, so one odd file is named as such rather than
    every good file being named against it. All channels must share shape and dtype.
    """
    by_channel: dict[str, list[ImageFile]] = defaultdict(list)
    for f in files:
        by_channel[f.c].append(f)
    layouts, references = {}, {}
    for c, members in by_channel.items():
        layouts[c], references[c] = _channel_layout(c, members)
    ref_c = next(iter(layouts))
    ref = layouts[ref_c]
    for c, layout in layouts.items():
        if (layout.shape, layout.dtype, layout.axes) != (ref.shape, ref.dtype, ref.axes):
            raise PlateError(
                f"{references[c]} (channel {c!r}) is {layout.shape} {layout.dtype} with "
                f"in-file axes {layout.axes!r}; expected {ref.shape} {ref.dtype} with "
                f"{ref.axes!r} like {references[ref_c]} (channel {ref_c!r})"
            )
    return layouts, references


def _channel_layout(channel: str, members: list[ImageFile]) -> tuple[TiffLayout, str]:
    """Vote on the channel's layout among its first, middle and last readable files.

    A file that cannot be probed is left to fail when its unit is read (so the other
    units can still be written); the next file is probed in its place.
    """
    picks = sorted({0, len(members) // 2, len(members) - 1})
    probed: list[tuple[str, TiffLayout]] = []
    first_error: PlateError | None = None
    for start in picks:
        for f in members[start : start + _PROBE_TRIES]:
            try:
                probed.append((str(f.path), probe_tiff(f.path)))
                break
            except PlateError as err:
                first_error = first_error or err
    if not probed:
        assert first_error is not None
        raise first_error
    layout, votes = Counter(lay for _, lay in probed).most_common(1)[0]
    if votes * 2 <= len(probed) and len(probed) > 1:
        raise PlateError(
            f"the files of channel {channel!r} differ: "
            + "; ".join(f"{path} holds {lay.describe()}" for path, lay in probed)
        )
    for path, other in probed:
        if other != layout:
            raise PlateError(
                f"{path} holds {other.describe()}, but the files of channel {channel!r} hold "
                f"{layout.describe()}: every file of a channel needs the same image shape, "
                "dtype and page layout"
            )
    return layout, next(path for path, lay in probed if lay == layout)


def _stat_files(files: list[ImageFile]) -> dict[Path, os.stat_result]:
    """Each file's size and modification time, as found now."""
    return {f.path: f.path.stat() for f in files}


def _expand(
    files: list[ImageFile], layouts: dict[str, TiffLayout], stats: dict[Path, os.stat_result]
) -> dict[Position, PlaneRef]:
    """One entry per plane; files holding Z or C stacks give several entries."""
    planes: dict[Position, PlaneRef] = {}
    for f in files:
        layout = layouts[f.c]
        found = stats[f.path]
        for index in np.ndindex(*layout.sizes):
            at = dict(zip(layout.axes, index, strict=True))
            c = f.c if "C" not in at else f"{f.c}#c{at['C'] + 1}"
            key = (f.t, f.well, f.field, c, f.z + at.get("Z", 0))
            ref = PlaneRef(str(f.path), layout.plane_key(at), found.st_size, found.st_mtime_ns)
            if key in planes:
                raise PlateError(
                    f"two files claim t={key[0]} well {key[1]} field {key[2]} channel "
                    f"{key[3]!r} z={key[4]}: {planes[key].path} and {ref.path}"
                )
            planes[key] = ref
    return planes


def _natural(text: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def _choose_channels(
    planes: dict[Position, PlaneRef],
    files: list[ImageFile],
    found: Discovery,
    channels: Channels,
    htd: HtdInfo | None,
) -> tuple[list[str], list[str]]:
    """Channel ids to read, in order, and their names."""
    ids = sorted({key[3] for key in planes}, key=_natural)
    default = {i: _default_name(i, htd) for i in ids}
    if channels is None:
        _check_z_source(found, files)
        return ids, [default[i] for i in ids]
    lookup = {**{name: i for i, name in default.items()}, **{i: i for i in ids}}
    wanted = list(channels)
    unknown = [c for c in wanted if str(c) not in lookup]
    if unknown:
        raise PlateError(
            f"channels {unknown} not found under {found.source}; available: "
            + ", ".join(f"{i!r} ({default[i]})" if default[i] != i else repr(i) for i in ids)
        )
    chosen = [lookup[str(c)] for c in wanted]
    if isinstance(channels, Mapping):
        return chosen, [str(channels[c]) for c in wanted]
    return chosen, [default[i] for i in chosen]


def _default_name(channel_id: str, htd: HtdInfo | None) -> str:
    file_id, _, in_file = channel_id.partition("#")
    name = htd.wave_names.get(file_id, file_id) if htd else file_id
    if not in_file:
        return name
    return in_file if file_id == "0" else f"{name}-{in_file}"


def _check_z_source(found: Discovery, files: list[ImageFile]) -> None:
    """All channels were asked for: each must exist in the chosen Z source."""
    if not found.pattern.zstep_folders:
        return
    kept = {f.c for f in files}
    dropped = sorted({f.c for f in found.files} - kept, key=_natural)
    if not dropped:
        return
    if found.pattern.projection:
        raise PlateError(
            f"channel(s) {dropped} under {found.source} have Z planes but no projection "
            "image; choose channels=[...] without them, or read the planes (pattern "
            "'imagexpress')"
        )
    raise PlateError(
        f"channel(s) {dropped} under {found.source} have only projection images (no "
        "ZStep planes); choose channels=[...] without them, or read the projections "
        "(pattern 'imagexpress-projection')"
    )


@dataclass
class _Grid:
    """Plate coordinates and, per present image, its planes."""

    t: list[int]
    wells: list[str]
    fields: list[int]
    z: list[int]
    channels: list[str]
    planes: dict[Position, PlaneRef]
    field_present: np.ndarray

    @classmethod
    def build(cls, planes: dict[Position, PlaneRef], channels: list[str]) -> _Grid:
        chosen = set(channels)
        kept = {k: v for k, v in planes.items() if k[3] in chosen}
        wells = sorted({k[1] for k in kept}, key=_well_order)
        fields = sorted({k[2] for k in kept})
        present = np.zeros((len(wells), len(fields)), dtype=bool)
        w_index = {w: i for i, w in enumerate(wells)}
        f_index = {f: i for i, f in enumerate(fields)}
        for k in kept:
            present[w_index[k[1]], f_index[k[2]]] = True
        return cls(
            t=sorted({k[0] for k in kept}),
            wells=wells,
            fields=fields,
            z=sorted({k[4] for k in kept}),
            channels=channels,
            planes=kept,
            field_present=present,
        )

    def expected(self) -> list[Position]:
        """Every plane of every field that exists."""
        return [
            (t, well, fld, c, z)
            for t in self.t
            for w, well in enumerate(self.wells)
            for f, fld in enumerate(self.fields)
            if self.field_present[w, f]
            for c in self.channels
            for z in self.z
        ]

    def unit_tokens(self, found: Discovery) -> np.ndarray:
        """``(t, well, field)`` tokens of the unit's files: names, pages, sizes and times."""
        tokens = np.zeros((len(self.t), len(self.wells), len(self.fields)), dtype=np.uint64)
        prefix = len(str(found.source)) + 1
        for ti, t in enumerate(self.t):
            for wi, well in enumerate(self.wells):
                for fi, fld in enumerate(self.fields):
                    refs = "\n".join(
                        _identity(self.planes.get((t, well, fld, c, z)), prefix)
                        for c in self.channels
                        for z in self.z
                    )
                    tokens[ti, wi, fi] = unit_token(refs)
        return tokens

    def check_complete(self, fill_missing: bool) -> None:
        missing = [k for k in self.expected() if k not in self.planes]
        if missing and not fill_missing:
            raise PlateError(self._missing_message(missing))

    def _missing_message(self, missing: list[Position]) -> str:
        by_channel: dict[str, list[Position]] = defaultdict(list)
        for key in missing:
            by_channel[key[3]].append(key)
        lines = []
        for c, keys in by_channel.items():
            has_z = sorted({k[4] for k in self.planes if k[3] == c})
            shown = "; ".join(f"t={k[0]} well {k[1]} field {k[2]} z={k[4]}" for k in keys[:3])
            more = f"; … {len(keys) - 3} more" if len(keys) > 3 else ""
            lines.append(
                f"  channel {c!r}: {len(keys)} missing ({shown}{more}); this channel has "
                f"z {has_z}, the plate has z {self.z}"
            )
        return (
            f"{len(missing)} image(s) of fields that exist have no file (a field that "
            "exists needs every channel, z and t; pass fill_missing=True to fill them "
            "with zeros, or choose channels=[...]):\n" + "\n".join(lines)
        )


def _identity(ref: PlaneRef | None, prefix: int) -> str:
    """A plane's file, relative to the source folder, its page, size and modification time."""
    if ref is None:
        return "-"
    return f"{ref.path[prefix:]}\t{ref.key}\t{ref.size}\t{ref.mtime_ns}"


def _well_order(well: str) -> tuple[int, str, int]:
    row, col = split_well(well)
    return len(row), row, col


def _lazy_array(
    grid: _Grid, layouts: dict[str, TiffLayout], references: dict[str, str], rgb: int | None
) -> da.Array:
    """One dask task per (t, well, field, c) image, in a single graph layer.

    The layer's name is a token of the files' names and pages, the channels, the image
    shape and dtype: files that are later fixed in place keep the name, so a plate
    written from them resumes (each unit's ``unit_token`` tells a changed file).
    """
    first = layouts[grid.channels[0].split("#")[0]]
    dtype = first.dtype
    names = sorted((k, ref.path, ref.key) for k, ref in grid.planes.items())
    token = tokenize(names, grid.channels, str(dtype), first.shape, rgb)
    name = f"ingest-{token}"
    layer: dict[Any, Any] = {}
    for ti, t in enumerate(grid.t):
        for wi, well in enumerate(grid.wells):
            for fi, fld in enumerate(grid.fields):
                for ci, c in enumerate(grid.channels):
                    file_c = c.split("#")[0]
                    refs = tuple(grid.planes.get((t, well, fld, c, z)) for z in grid.z)
                    spec = ChunkSpec(
                        refs,
                        first.shape,
                        dtype.str,
                        rgb,
                        references[file_c],
                        layouts[file_c],
                        file_c,
                    )
                    layer[(name, ti, wi, fi, 0, ci, 0, 0)] = (read_chunk, spec)
    chunks = (
        (1,) * len(grid.t),
        (1,) * len(grid.wells),
        (1,) * len(grid.fields),
        (len(grid.z),),
        (1,) * len(grid.channels),
        (first.shape[0],),
        (first.shape[1],),
    )
    graph = HighLevelGraph.from_collections(name, layer, dependencies=())
    return da.Array(graph, name, chunks, meta=np.empty((0,) * 7, dtype=dtype))


def _plate_map(
    plate_map: str | Path | pd.DataFrame | None, wells: list[str], htd: HtdInfo | None
) -> pd.DataFrame | None:
    if plate_map is None:
        return None
    table = read_plate_map(plate_map)
    label = "the plate map" if isinstance(plate_map, pd.DataFrame) else f"plate map {plate_map}"
    check_plate_map(table, wells, plate_shape=htd.plate_shape if htd else None, label=label)
    return table


def _pixel_size(layouts: dict[str, TiffLayout]) -> tuple[float, float] | None:
    return next((lay.pixel_size_um for lay in layouts.values() if lay.pixel_size_um), None)


def _attrs(
    found: Discovery,
    pattern: FilePattern,
    htd: HtdInfo | None,
    files: list[ImageFile],
    channels: list[str],
    rgb: int | None,
    fill_missing: bool,
) -> dict[str, Any]:
    attrs: dict[str, Any] = {"ingest_source": str(found.source), "file_pattern": pattern.name}
    step = {
        "op": "read_tiff_plate",
        "source": found.source.name,
        "files": names_digest(f.path.relative_to(found.source).as_posix() for f in files),
        "pattern": pattern.name,
        "channels": channels,
        "rgb": rgb,
        "fill_missing": fill_missing,
    }
    attrs = add_lineage(attrs, step)
    if pattern.zstep_folders:
        attrs["z_source"] = "projection" if pattern.projection else "planes"
    if htd is not None:
        attrs["acquisition"] = htd.description
        if htd.plate_shape:
            attrs["plate_shape"] = list(htd.plate_shape)
    return attrs
