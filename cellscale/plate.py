"""The plate schema: dimensions, coordinates, validation and chunking.

A plate is an :class:`xarray.DataArray` with dims ``(t, well, field, z, c, y, x)``,
dask-backed, chunked so that one chunk holds one ``(t, well, field, c)`` image with
its whole Z stack and whole ``(y, x)`` plane.

Coordinates
-----------
``well``
    Well names such as ``"B03"``, with non-dimension coords ``row`` (letters) and
    ``col`` (int) and one coord per plate-map column (treatment, concentration …).
``field``
    Field (site) numbers as the instrument names them.
``field_present``
    ``(well, field)`` booleans: ``False`` where a well lacks a field that other wells
    have. Such holes read as zeros and every stage skips them.
``c``
    Channel names.
``t``, ``z``
    Physical values where known (seconds, micrometres), else indices.
``unit_token``
    Optional ``(t, well, field)`` ``uint64``: the identity of the inputs each unit's
    pixels come from (the source files' names, sizes and modification times for
    ingest; the source store's completion ledger for an opened plate). Writers record
    it per unit, so a rerun redoes exactly the units whose inputs changed.

Pixel size lives in ``attrs["pixel_size_um"]`` as ``[y, x]``. ``attrs["lineage"]`` lists
the steps that made the plate (``{"op": "open_plate", "store": ..., "fingerprint": ...}``,
``{"op": "project", "method": "max"}`` …); a writer stores it in the output's
fingerprint, so an output made by other steps is never resumed by mistake.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "DIMS",
    "LINEAGE",
    "MAX_FIELD_PIXELS",
    "PROJECTED_DIMS",
    "UNIT_TOKEN",
    "Exclusion",
    "PlateError",
    "add_lineage",
    "as_plate",
    "build_plate",
    "channel_position",
    "excluded_units",
    "field_stack",
    "format_well",
    "normalize_well",
    "plate_map_columns",
    "plate_map_coords",
    "row_index",
    "row_letters",
    "spatial_plate",
    "split_well",
    "unit_names",
    "validate_plate",
]

DIMS: tuple[str, ...] = ("t", "well", "field", "z", "c", "y", "x")
"""The dimension order of every plate array."""

PROJECTED_DIMS: tuple[str, ...] = ("t", "well", "field", "c", "y", "x")
"""The dimension order of a plate after Z projection."""

UNIT_TOKEN = "unit_token"
"""The ``(t, well, field)`` coordinate holding each unit's input identity."""

LINEAGE = "lineage"
"""The attribute listing the steps that made a plate."""

MAX_FIELD_PIXELS = 2**32 - 1
"""The most pixels (voxels) a field may have: ``uint32`` object ids can then never overflow."""

RESERVED_WELL_COORDS = ("row", "col")
_WELL_RE = re.compile(r"^\s*([A-Za-z]{1,2})\s*0*(\d{1,3})\s*$")


class PlateError(ValueError):
    """A plate, or a file or field of it, does not satisfy the plate schema."""


def split_well(name: str) -> tuple[str, int]:
    """Split a well name into its row letters and column number.

    Parameters
    ----------
    name
        A well name such as ``"B03"``, ``"b3"`` or ``"AA12"``.

    Returns
    -------
    tuple of (str, int)
        Upper-case row letters and the 1-based column.

    Examples
    --------
    >>> split_well("b3")
    ('B', 3)
    """
    match = _WELL_RE.match(str(name))
    if match is None or int(match.group(2)) == 0:
        raise PlateError(f"{name!r} is not a well name like 'B03'")
    return match.group(1).upper(), int(match.group(2))


def format_well(row: str, col: int) -> str:
    """Format a well name with a two-digit column, e.g. ``("B", 3) -> "B03"``."""
    return f"{row.upper()}{int(col):02d}"


def row_index(letters: str) -> int:
    """0-based index of a plate row: ``"A" -> 0``, ``"Z" -> 25``, ``"AA" -> 26``."""
    index = 0
    for letter in letters.upper():
        index = index * 26 + ord(letter) - ord("A") + 1
    return index - 1


def row_letters(index: int) -> str:
    """Letters of a 0-based plate row index, the inverse of :func:`row_index`.

    Examples
    --------
    >>> [row_letters(i) for i in (0, 25, 26)]
    ['A', 'Z', 'AA']
    """
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


def normalize_well(name: str) -> str:
    """Return the canonical spelling of a well name (``"b3" -> "B03"``)."""
    return format_well(*split_well(name))


def build_plate(
    data: da.Array,
    *,
    name: str,
    wells: Sequence[str],
    fields: Sequence[int],
    channels: Sequence[str],
    t: Sequence[float] | None = None,
    z: Sequence[float] | None = None,
    plate_map: pd.DataFrame | None = None,
    field_present: np.ndarray | None = None,
    pixel_size_um: Sequence[float] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Wrap a 7-D dask array in the plate schema.

    Parameters
    ----------
    data
        Array of shape ``(t, well, field, z, c, y, x)``; it is rechunked to one chunk
        per ``(t, well, field, c)`` image if it is not already.
    name
        Plate name (becomes the DataArray's name).
    wells, fields, channels
        Coordinate values for ``well`` (any spelling, normalised to ``"B03"``),
        ``field`` and ``c``.
    t, z
        Physical time points and Z positions; indices when omitted.
    plate_map
        Table indexed by well name; every column becomes a ``well`` coordinate.
        Wells missing from it get missing values.
    field_present
        ``(well, field)`` booleans marking which fields exist; all ``True`` if omitted.
    pixel_size_um
        ``[y, x]`` pixel size in micrometres, if known.
    attrs
        Extra attributes (must be JSON-serialisable to survive a write).

    Returns
    -------
    xarray.DataArray
        The validated plate.
    """
    if data.ndim != len(DIMS):
        raise PlateError(f"plate data must have {len(DIMS)} dims {DIMS}, got shape {data.shape}")
    well_names = [normalize_well(w) for w in wells]
    rows_cols = [split_well(w) for w in well_names]
    n_t, _, _, n_z = data.shape[:4]
    coords: dict[str, Any] = {
        "t": np.asarray(t if t is not None else np.arange(n_t)),
        "well": np.asarray(well_names, dtype=object),
        "row": ("well", np.asarray([r for r, _ in rows_cols], dtype=object)),
        "col": ("well", np.asarray([c for _, c in rows_cols], dtype=np.int64)),
        "field": np.asarray(fields, dtype=np.int64),
        "z": np.asarray(z if z is not None else np.arange(n_z)),
        "c": np.asarray([str(c) for c in channels], dtype=object),
    }
    if plate_map is not None:
        coords.update(plate_map_coords(plate_map, well_names))
    present = (
        np.ones(data.shape[1:3], dtype=bool)
        if field_present is None
        else np.asarray(field_present, dtype=bool)
    )
    coords["field_present"] = (("well", "field"), present)
    all_attrs = dict(attrs or {})
    if pixel_size_um is not None:
        all_attrs["pixel_size_um"] = [float(v) for v in pixel_size_um]
    plate = xr.DataArray(
        data.rechunk(image_chunks(data.shape)), dims=DIMS, coords=coords, name=name
    )
    plate.attrs.update(all_attrs)
    validate_plate(plate)
    return plate


def image_chunks(shape: Sequence[int]) -> tuple[int, ...]:
    """The plate chunk shape: one ``(t, well, field, c)`` image with whole z, y and x."""
    _, _, _, n_z, _, n_y, n_x = shape
    return (1, 1, 1, n_z, 1, n_y, n_x)


def as_plate(array: xr.DataArray, *, name: str | None = None) -> xr.DataArray:
    """Make any DataArray with the plate dims and well names a valid plate.

    ``row``, ``col`` and ``field_present`` are derived where missing, well names are
    normalised (``"b3"`` -> ``"B03"``), missing ``field``, ``c``, ``t`` and ``z``
    coordinates become indices (channels ``"c0"``, ``"c1"`` …), and NumPy data is wrapped
    in dask with one chunk per image. A valid plate comes back unchanged.

    Parameters
    ----------
    array
        Dims ``(t, well, field, z, c, y, x)``, or ``(t, well, field, c, y, x)`` after
        projection, with a ``well`` coordinate.
    name
        The plate name; by default the array's name, else ``"plate"``.

    Returns
    -------
    xarray.DataArray
        The plate, dask-backed.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> raw = xr.DataArray(np.zeros((1, 2, 1, 1, 8, 8), "uint16"),
    ...                    dims=("t", "well", "field", "c", "y", "x"),
    ...                    coords={"well": ["a1", "B2"]})
    >>> plate = as_plate(raw)
    >>> plate.coords["well"].values.tolist(), plate.coords["row"].values.tolist()
    (['A01', 'B02'], ['A', 'B'])
    """
    dims = tuple(array.dims)
    if dims not in (DIMS, PROJECTED_DIMS):
        raise PlateError(
            f"a plate has dims {DIMS}, or {PROJECTED_DIMS} after projection; got {dims}"
        )
    if "well" not in array.coords:
        raise PlateError("a plate needs well names: give the array a 'well' coordinate")
    wells = [normalize_well(str(w)) for w in array.coords["well"].values]
    plate = array.assign_coords(well=np.asarray(wells, dtype=object))
    defaults: dict[str, Any] = {
        "t": np.arange(plate.sizes["t"]),
        "field": np.arange(plate.sizes["field"], dtype=np.int64),
        "c": np.asarray([f"c{i}" for i in range(plate.sizes["c"])], dtype=object),
        "row": ("well", np.asarray([split_well(w)[0] for w in wells], dtype=object)),
        "col": ("well", np.asarray([split_well(w)[1] for w in wells], dtype=np.int64)),
        "field_present": (
            ("well", "field"),
            np.ones((plate.sizes["well"], plate.sizes["field"]), dtype=bool),
        ),
    }
    if "z" in dims:
        defaults["z"] = np.arange(plate.sizes["z"])
    plate = plate.assign_coords({k: v for k, v in defaults.items() if k not in plate.coords})
    if not isinstance(plate.data, da.Array):
        plate = plate.copy(data=da.from_array(plate.values, chunks=_image_chunks_of(plate)))
    plate.name = name or plate.name or "plate"
    validate_plate(plate, dims=[str(d) for d in dims])
    return plate


def _image_chunks_of(plate: xr.DataArray) -> tuple[int, ...]:
    return tuple(plate.sizes[d] if d in ("z", "y", "x") else 1 for d in plate.dims)


def spatial_plate(plate: xr.DataArray, do_3d: bool) -> xr.DataArray:
    """The plate with dims ``(t, well, field, c, y, x)``, or ``(t, well, field, c, z, y, x)`` in 3D.

    A plate with one Z plane loses it in 2D; one with more must be projected first.
    Fields must have fewer than :data:`MAX_FIELD_PIXELS` pixels, so ``uint32`` object ids
    can never overflow.
    """
    has_z = "z" in plate.dims
    if do_3d:
        if not has_z:
            raise PlateError("do_3d=True needs a plate with Z stacks; this one was projected")
        plate = plate.transpose("t", "well", "field", "c", "z", "y", "x")
    elif has_z:
        if plate.sizes["z"] != 1:
            raise PlateError(
                f"the plate has {plate.sizes['z']} Z planes: project it first "
                "(cellscale.project) or segment in 3D with do_3d=True"
            )
        plate = plate.isel(z=0, drop=True)
    pixels = int(np.prod([plate.sizes[d] for d in plate.dims[4:]], dtype=np.int64))
    if pixels > MAX_FIELD_PIXELS:
        raise PlateError(
            f"a field of {pixels} pixels could hold more objects than uint32 ids can number "
            f"(at most {MAX_FIELD_PIXELS}); split the fields into tiles first"
        )
    return plate


def channel_position(plate: xr.DataArray, channel: str | int) -> int:
    """The position of a channel given by name or position; an error lists the channels."""
    names = [str(c) for c in plate.coords["c"].values]
    if isinstance(channel, str):
        if channel not in names:
            raise PlateError(f"channel {channel!r} is not in the plate; its channels are {names}")
        return names.index(channel)
    if not 0 <= channel < len(names):
        raise PlateError(f"channel {channel} is out of range; the plate's channels are {names}")
    return int(channel)


def field_stack(plate: xr.DataArray, picked: Sequence[int]) -> da.Array:
    """The chosen channels, in order, one chunk per field holding all of them."""
    data = plate.data[:, :, :, list(picked)]
    chunks = tuple(1 if i < 3 else -1 for i in range(data.ndim))
    return data.rechunk(chunks)


Exclusion: TypeAlias = pd.DataFrame | Iterable[tuple[Any, ...]] | None
"""Units to skip: a table with ``well`` and ``field`` (and ``t``) columns, such as
:func:`cellscale.flagged_fields` gives, or ``(well, field)`` / ``(t, well, field)`` tuples."""


def excluded_units(plate: xr.DataArray, exclude: Exclusion) -> set[tuple[int, int, int]]:
    """The ``(t, well, field)`` positions of the present units ``exclude`` names.

    A ``(well, field)`` without ``t`` names that field at every time point; ``t`` is a
    value of the plate's ``t`` coordinate.

    Raises
    ------
    PlateError
        If ``exclude`` names a well, field or time point the plate does not have.
    """
    if exclude is None:
        return set()
    rows = (
        exclude.to_dict("records")
        if isinstance(exclude, pd.DataFrame)
        else [_exclusion_row(tuple(item)) for item in exclude]
    )
    wells = {normalize_well(str(w)): i for i, w in enumerate(plate.coords["well"].values)}
    fields = {int(f): i for i, f in enumerate(plate.coords["field"].values)}
    times = {_plain(t): i for i, t in enumerate(plate.coords["t"].values)}
    present = np.asarray(plate.coords["field_present"].values, dtype=bool)
    units = set()
    for row in rows:
        well, field = normalize_well(str(row["well"])), int(row["field"])
        t_values = [row["t"]] if "t" in row and row["t"] is not None else list(times)
        unknown = [
            what
            for what, ok in (
                (f"well {well}", well in wells),
                (f"field {field}", field in fields),
                *((f"t={t}", _plain(t) in times) for t in t_values),
            )
            if not ok
        ]
        if unknown:
            raise PlateError(f"exclude names {', '.join(unknown)}, which the plate does not have")
        for t in t_values:
            unit = (times[_plain(t)], wells[well], fields[field])
            if present[unit[1], unit[2]]:
                units.add(unit)
    return units


def _exclusion_row(item: tuple[Any, ...]) -> dict[str, Any]:
    if len(item) not in (2, 3):
        raise PlateError(f"exclude items are (well, field) or (t, well, field); got {item!r}")
    return dict(zip(("t", "well", "field")[3 - len(item) :], item, strict=True))


def unit_names(plate: xr.DataArray, units: Iterable[tuple[int, int, int]]) -> list[str]:
    """``"B03/f2/t0"`` names of ``(t, well, field)`` positions, sorted."""
    wells, fields = plate.coords["well"].values, plate.coords["field"].values
    return sorted(f"{wells[w]}/f{fields[f]}/t{t}" for t, w, f in units)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def add_lineage(attrs: Mapping[str, Any], step: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` with ``step`` appended to its lineage (see the module docs)."""
    return {**attrs, LINEAGE: [*attrs.get(LINEAGE, []), dict(step)]}


def plate_map_coords(plate_map: pd.DataFrame, wells: Sequence[str]) -> dict[str, Any]:
    """The plate map's columns as ``well`` coordinates of a plate with ``wells``, in order."""
    table = plate_map.copy()
    table.index = [normalize_well(w) for w in table.index]
    if table.index.has_duplicates:
        dupes = sorted(set(table.index[table.index.duplicated()]))
        raise PlateError(f"plate map lists wells more than once: {dupes}")
    clash = [c for c in table.columns if c in RESERVED_WELL_COORDS or c in DIMS]
    if clash:
        raise PlateError(f"plate map columns {clash} clash with plate coordinate names")
    table = table.reindex(list(wells))
    return {str(col): ("well", _column_values(table[col])) for col in table.columns}


def _column_values(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(column):
        return column.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=np.float64 if column.isna().any() else column.dtype)
    return np.asarray([None if pd.isna(v) else str(v) for v in column], dtype=object)


def plate_map_columns(plate: xr.DataArray) -> list[str]:
    """Names of the plate-map coordinates along ``well`` (everything but row/col)."""
    return [
        str(name)
        for name, coord in plate.coords.items()
        if coord.dims == ("well",) and name not in ("well", *RESERVED_WELL_COORDS)
    ]


def validate_plate(plate: xr.DataArray, *, dims: Sequence[str] = DIMS) -> None:
    """Check that ``plate`` follows the plate schema; raise :class:`PlateError` if not.

    Parameters
    ----------
    plate
        The array to check.
    dims
        The expected dims (a projected plate has no ``z``).
    """
    if tuple(plate.dims) != tuple(dims):
        raise PlateError(f"plate dims must be {tuple(dims)}, got {plate.dims}")
    for dim in ("well", "field", "c"):
        values = plate.coords[dim].values
        if len(set(values.tolist())) != len(values):
            raise PlateError(f"plate coordinate {dim!r} has repeated values: {list(values)}")
    for coord in ("row", "col", "field_present"):
        if coord not in plate.coords:
            raise PlateError(f"plate lacks the {coord!r} coordinate")
    if plate.coords["field_present"].dims != ("well", "field"):
        raise PlateError("'field_present' must have dims ('well', 'field')")
