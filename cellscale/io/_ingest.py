"""TIFF-folder ingest: discover image files, build a lazy plate, write OME-Zarr.

:func:`read_tiff_plate` matches a folder's files against a file pattern, checks that
every field that exists has all its images, and returns a lazy plate whose dask graph
has one task per ``(t, well, field, c)`` image (a single ``ingest-<token>`` layer
holding only file paths). :func:`ingest` writes that plate with
:func:`~cellscale.io.write_plate`, field by field, so the plate is never in memory.

Where the files' headers record them, ``z`` holds physical Z positions and ``t`` the
seconds since the first time point (see :mod:`cellscale.io._acquisition_axes`), and
channels are named as the instrument names them (:mod:`cellscale.io._channel_names`).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections import defaultdict
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
from cellscale.io._access import unreadable
from cellscale.io._acquisition_axes import Position, time_offsets, z_positions
from cellscale.io._channel_layout import probe_channels
from cellscale.io._channel_names import channel_names, instrument_names, natural_key
from cellscale.io._htd import HtdInfo, read_htd
from cellscale.io._instrument_meta import read_file_meta
from cellscale.io._patterns import Discovery, FilePattern, ImageFile, discover, resolve_pattern
from cellscale.io._platemap import check_plate_map, read_plate_map
from cellscale.io._tiff import ChunkSpec, NonFinite, PlaneRef, TiffLayout, read_chunk
from cellscale.io._z_source import (
    ZProjection,
    check_project_z,
    check_z_source,
    describe_projection,
    select_z_source,
)
from cellscale.plate import UNIT_TOKEN, PlateError, add_lineage, build_plate, split_well

__all__ = ["ingest", "read_tiff_plate"]

Channels = Sequence[str] | Mapping[str, str] | None


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
    project_z: ZProjection | None = None,
    on_nonfinite: NonFinite = "raise",
    well_column: str | None = None,
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
    well_column
        The plate map's column of well names, when it is not one of the names
        :func:`read_plate_map` recognises.
    channels
        Which channels to read, by id (``"w1"``, ``"d0"`` …) or by name, in the order
        given; a mapping also renames them (``{"w1": "DNA"}``). All channels by
        default. Channels are named by the ``.HTD`` file's wavelength names, else by
        the instrument's name in the file headers (MetaXpress's illumination setting,
        ImageJ's labels), else by id.
    fill_missing
        Fill missing images of fields that exist with zeros instead of raising.
    on_unmatched
        What to do with image files that do not match the pattern.
    rgb
        Which sample of RGB files to take (0, 1, 2); by default RGB files must hold
        one grey channel (equal samples).
    name
        The plate name; by default the pattern's ``plate`` group or the folder name.
    project_z
        ``"max"`` makes every channel one plane, read lazily like the rest: channels
        with a Z stack take the maximum of its planes, channels with only the
        instrument's projection take it, single-plane channels take their plane. Where
        a channel has both, the pattern decides (planes for ``"imagexpress"``, the
        projection for ``"imagexpress-projection"``). ``attrs["z_projection"]`` says
        which each channel got. ``None`` (default) keeps the planes.
    on_nonfinite
        What reading a floating-point image with NaN or infinite pixels does:
        ``"raise"`` (default) names the file, its position and how many pixels are not
        finite; ``"keep"`` keeps them as they are (:func:`cellscale.qc` flags such
        images ``nonfinite``). Each plane is checked as it is read, so nothing is read
        twice.

    Returns
    -------
    xarray.DataArray
        A plate (dims ``t, well, field, z, c, y, x``), one dask chunk per image.
        ``z`` holds Z positions in micrometres (``attrs["z_unit"] == "micrometer"``),
        the lowest plane at 0, where the files record them: per plane, the median over
        a few probed stacks of its position within its stack. ``t`` holds each time
        point's start in seconds after the first's (``attrs["t_unit"] == "second"``),
        the earliest acquisition time among a few probed files of each time point,
        where the files record it. Elsewhere both are the indices the files name.

    Raises
    ------
    UnreadableError
        For a folder of the source that cannot be listed or a file that cannot be
        opened (a file's pixels, when they are read), naming it.
    PlateError
        For unmatched files (unless allowed), duplicate positions, missing images,
        channels that differ in shape or dtype, unreadable files and (when pixels are
        read) NaN or infinite pixels; the message names the files and positions at
        fault.
    """
    pat = resolve_pattern(pattern)
    check_project_z(project_z)
    _check_on_nonfinite(on_nonfinite)
    found = discover(source, pat)
    _report_unmatched(found, on_unmatched)
    if not found.files:
        raise PlateError(f"no image files under {found.source} match the {pat.name} pattern")
    htd = read_htd(min(found.htd_files, key=lambda p: len(p.parts))) if found.htd_files else None
    files = select_z_source(found.files, pat, project_z)
    layouts, references = probe_channels(files)
    planes = _expand(files, layouts, _stat_files(files))
    meta = functools.cache(read_file_meta)
    ids = sorted({key[3] for key in planes}, key=natural_key)
    default = channel_names(ids, htd, instrument_names(ids, references, layouts, meta))
    if channels is None:
        check_z_source(found, files)
    chosen, names = _choose_channels(ids, default, found, channels)
    grid = _Grid.build(planes, chosen, project=project_z is not None)
    grid.check_complete(fill_missing)
    data = _lazy_array(grid, layouts, references, rgb, on_nonfinite)
    z = None if grid.project else z_positions(grid.planes, grid.z, meta)
    t = time_offsets(grid.planes, grid.t, meta)
    attrs = _attrs(found, pat, htd, files, names, rgb, fill_missing, project_z)
    attrs.update(_units(t, z))
    if grid.project:
        methods = {c: meta(path).projection for c, path in references.items()}
        attrs["z_projection"] = describe_projection(
            files, grid.stacks, dict(zip(chosen, names, strict=True)), methods
        )
    plate = build_plate(
        data,
        name=name or next((f.plate for f in files if f.plate), None) or found.source.name,
        wells=grid.wells,
        fields=grid.fields,
        channels=names,
        t=grid.t if t is None else t,
        z=grid.z if z is None else z,
        plate_map=_plate_map(plate_map, grid.wells, htd, well_column),
        field_present=grid.field_present,
        pixel_size_um=_pixel_size(layouts),
        attrs=attrs,
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
    project_z: ZProjection | None = None,
    on_nonfinite: NonFinite = "raise",
    well_column: str | None = None,
    version: str | None = None,
    codec: str | None = None,
    clevel: int | None = None,
    levels: int | None = None,
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
    source, pattern, plate_map, well_column, channels, fill_missing, on_unmatched, rgb, name
        As for :func:`read_tiff_plate`.
    project_z
        As for :func:`read_tiff_plate`.
    on_nonfinite
        As for :func:`read_tiff_plate`: by default a floating-point image with NaN or
        infinite pixels fails its field, naming the file; ``"keep"`` writes them.
    out
        The ``.zarr`` plate to write.
    version, codec, clevel, levels, overwrite, verify, client, progress
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
        project_z=project_z,
        on_nonfinite=on_nonfinite,
        well_column=well_column,
    )
    return write_plate(
        plate,
        out,
        version=version,
        codec=codec,
        clevel=clevel,
        levels=levels,
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


def _check_on_nonfinite(on_nonfinite: str) -> None:
    if on_nonfinite not in ("raise", "keep"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'keep', got {on_nonfinite!r}")


def _stat_files(files: list[ImageFile]) -> dict[Path, os.stat_result]:
    """Each file's size and modification time, as found now."""
    return {f.path: _stat(f.path) for f in files}


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except OSError as err:
        raise unreadable(path, err, "file") from err


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


def _choose_channels(
    ids: list[str], default: dict[str, str], found: Discovery, channels: Channels
) -> tuple[list[str], list[str]]:
    """Channel ids to read, in order, and their names."""
    if channels is None:
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


@dataclass
class _Grid:
    """Plate coordinates and, per present image, its planes.

    ``stacks`` holds the Z indices each channel's images are made of: the plate's
    ``z`` for a plate of planes; with ``project`` (one plane per channel) each
    channel's own planes, whose maximum is the image.
    """

    t: list[int]
    wells: list[str]
    fields: list[int]
    z: list[int]
    channels: list[str]
    planes: dict[Position, PlaneRef]
    field_present: np.ndarray
    stacks: dict[str, list[int]]
    project: bool = False

    @classmethod
    def build(
        cls, planes: dict[Position, PlaneRef], channels: list[str], *, project: bool = False
    ) -> _Grid:
        chosen = set(channels)
        kept = {k: v for k, v in planes.items() if k[3] in chosen}
        wells = sorted({k[1] for k in kept}, key=_well_order)
        fields = sorted({k[2] for k in kept})
        present = np.zeros((len(wells), len(fields)), dtype=bool)
        w_index = {w: i for i, w in enumerate(wells)}
        f_index = {f: i for i, f in enumerate(fields)}
        for k in kept:
            present[w_index[k[1]], f_index[k[2]]] = True
        z = sorted({k[4] for k in kept})
        own: dict[str, set[int]] = defaultdict(set)
        for k in kept:
            own[k[3]].add(k[4])
        return cls(
            t=sorted({k[0] for k in kept}),
            wells=wells,
            fields=fields,
            z=[0] if project else z,
            channels=channels,
            planes=kept,
            field_present=present,
            stacks={c: sorted(own[c]) if project else z for c in channels},
            project=project,
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
            for z in self.stacks[c]
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
                        for z in self.stacks[c]
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
            needs = "its images are the max of" if self.project else "the plate has"
            lines.append(
                f"  channel {c!r}: {len(keys)} missing ({shown}{more}); this channel has "
                f"z {has_z}, {needs} z {self.stacks[c]}"
            )
        one_plane = "" if self.project else ", or pass project_z='max' for one plane per channel"
        return (
            f"{len(missing)} image(s) of fields that exist have no file (a field that "
            "exists needs every channel, z and t; pass fill_missing=True to fill them "
            f"with zeros, choose channels=[...]{one_plane}):\n" + "\n".join(lines)
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
    grid: _Grid,
    layouts: dict[str, TiffLayout],
    references: dict[str, str],
    rgb: int | None,
    on_nonfinite: NonFinite,
) -> da.Array:
    """One dask task per (t, well, field, c) image, in a single graph layer.

    The layer's name is a token of the files' names and pages, the channels, the image
    shape and dtype and whether Z is projected: files that are later fixed in place
    keep the name, so a plate written from them resumes (each unit's ``unit_token``
    tells a changed file). ``on_nonfinite`` is left out: it decides whether a read
    fails, never what it gives, so a run that failed on NaN resumes with ``"keep"``.
    """
    first = layouts[grid.channels[0].split("#")[0]]
    dtype = first.dtype
    names = sorted((k, ref.path, ref.key) for k, ref in grid.planes.items())
    projected = ("project_z", "max") if grid.project else ()  # planes: the name as before
    token = tokenize(names, grid.channels, str(dtype), first.shape, rgb, *projected)
    name = f"ingest-{token}"
    # not map_blocks: a source, each task reading its own files and pages (its ChunkSpec)
    layer: dict[Any, Any] = {}
    for ti, t in enumerate(grid.t):
        for wi, well in enumerate(grid.wells):
            for fi, fld in enumerate(grid.fields):
                for ci, c in enumerate(grid.channels):
                    file_c = c.split("#")[0]
                    refs = tuple(grid.planes.get((t, well, fld, c, z)) for z in grid.stacks[c])
                    spec = ChunkSpec(
                        refs,
                        first.shape,
                        dtype.str,
                        rgb,
                        references[file_c],
                        layouts[file_c],
                        file_c,
                        max_project=grid.project,
                        position=f"t={t} well {well} field {fld}",
                        on_nonfinite=on_nonfinite,
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
    plate_map: str | Path | pd.DataFrame | None,
    wells: list[str],
    htd: HtdInfo | None,
    well_column: str | None,
) -> pd.DataFrame | None:
    if plate_map is None:
        return None
    table = read_plate_map(plate_map, well_column=well_column)
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
    project_z: ZProjection | None,
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
    if project_z is not None:  # absent otherwise, so stores written before still resume
        step["project_z"] = project_z
    attrs = add_lineage(attrs, step)
    if pattern.zstep_folders:
        attrs["z_source"] = "projection" if pattern.projection else "planes"
    if htd is not None:
        attrs["acquisition"] = htd.description
        if htd.plate_shape:
            attrs["plate_shape"] = list(htd.plate_shape)
    return attrs


def _units(t: list[float] | None, z: list[float] | None) -> dict[str, str]:
    """The units of the ``t`` and ``z`` coordinates that hold physical values."""
    units = {}
    if t is not None:
        units["t_unit"] = "second"
    if z is not None:
        units["z_unit"] = "micrometer"
    return units
