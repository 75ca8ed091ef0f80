"""Why a path is not an HCS plate: what is there instead, and what to do about it.

:func:`not_a_plate` looks at a path that could not be opened as an OME-Zarr HCS
plate and builds an error whose message names what the path holds (nothing, a
file, a folder of TIFF files, a Zarr array, a single OME-Zarr image, a group
without plate metadata …) and the step that fixes it. It reads only small
metadata files, never array data.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cellscale.io._ngff import ome_attrs
from cellscale.plate import PlateError

__all__ = ["did_you_mean", "not_a_plate"]

_TIFF_SUFFIXES = (".tif", ".tiff")
_PLATE_FOLDER = "pass the folder of an OME-Zarr HCS plate (cellscale.ingest makes one from TIFFs)"
_MAX_DEPTH = 16  # a label chunk file lies 12 levels below its plate (B/03/0/labels/…)


def not_a_plate(path: Path) -> PlateError:
    """An error saying what ``path`` holds instead of an HCS plate, and what to do.

    Parameters
    ----------
    path
        A path that could not be opened as an OME-Zarr HCS plate.

    Returns
    -------
    PlateError
        Not raised: the caller raises it (``raise not_a_plate(path) from err``).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     print(not_a_plate(Path(folder)))  # doctest: +ELLIPSIS
    /... is an empty folder; pass the folder of an OME-Zarr HCS plate (...)
    """
    path = Path(path)
    if not path.exists():
        return PlateError(f"{path} does not exist{did_you_mean(path)}")
    if path.is_file():
        return PlateError(_file_message(path))
    node = _zarr_node(path)
    if node is None:
        return PlateError(_folder_message(path))
    kind, attrs = node
    return PlateError(_zarr_message(path, kind, attrs))


def did_you_mean(path: Path) -> str:
    """``"; did you mean <sibling>?"`` for a missing path with a similar sibling, else ``""``.

    ``""`` also where the parent folder cannot be listed: the hint is no reason to fail.
    """
    folder = path.parent
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, names, n=1)
    return f"; did you mean {folder / close[0]}?" if close else ""


def _file_message(path: Path) -> str:
    message = f"{path} is a file; pass an OME-Zarr plate folder"
    plate = _enclosing_plate(path)
    if plate is not None:
        return f"{message}: it lies inside the plate {plate}, so pass that"
    if path.suffix.lower() in _TIFF_SUFFIXES:
        return f"{message}. It is a TIFF image: ingest its folder first, {_ingest(path.parent)}"
    return message


def _folder_message(path: Path) -> str:
    plates = _child_plates(path)
    if plates:
        return f"{path} is a folder that {_holds(plates)}"
    tiffs = _count_tiffs(path)
    if tiffs:
        return f"{path} holds {tiffs} TIFF files, not a plate; ingest it first: {_ingest(path)}"
    entries = sorted(entry.name for entry in os.scandir(path))
    if not entries:
        return f"{path} is an empty folder; {_PLATE_FOLDER}"
    shown = ", ".join(entries[:5]) + (", …" if len(entries) > 5 else "")
    return (
        f"{path} is a folder with neither Zarr metadata (zarr.json, .zgroup) nor TIFF files "
        f"(it holds {shown}); {_PLATE_FOLDER}"
    )


def _zarr_message(path: Path, kind: str, attrs: Mapping[str, Any]) -> str:
    if kind == "array":
        what = "is a Zarr array, not an HCS plate (a Zarr group with OME-Zarr 'plate' metadata)"
    elif "plate" in attrs:
        return (
            f"{path} has OME-Zarr 'plate' metadata, yet could not be opened as a plate; "
            "check that the store is complete and readable"
        )
    elif "multiscales" in attrs:
        what = "is a single OME-Zarr image, not an HCS plate"
    elif "well" in attrs:
        what = "is an OME-Zarr well, not an HCS plate"
    else:
        what = "is a Zarr group without OME-Zarr 'plate' metadata, so not an HCS plate"
    plate = _enclosing_plate(path)
    if plate is not None:
        return f"{path} {what}: it lies inside the plate {plate}, so pass that"
    plates = _child_plates(path)
    if plates:
        return f"{path} {what}; it {_holds(plates)}"
    return f"{path} {what}; {_PLATE_FOLDER}"


def _holds(plates: list[Path]) -> str:
    names = ", ".join(p.name for p in plates)
    return f"holds the plate(s) {names}; pass one, e.g. {plates[0]}"


def _ingest(folder: Path) -> str:
    """How to ingest ``folder``, in Python and on the command line."""
    python = f"cellscale.ingest({str(folder)!r}, 'plate.zarr')"
    return f"{python} or `cellscale ingest {folder} plate.zarr`"


def _zarr_node(path: Path) -> tuple[str, Mapping[str, Any]] | None:
    """``(node type, OME attributes)`` of a Zarr v2 or v3 node at ``path``, or ``None``."""
    meta = _read_json(path / "zarr.json")
    if meta is not None:
        attributes = meta.get("attributes")
        attrs = attributes if isinstance(attributes, dict) else {}
        return str(meta.get("node_type")), ome_attrs(attrs)
    if (path / ".zarray").is_file():
        return "array", {}
    if (path / ".zgroup").is_file():
        return "group", ome_attrs(_read_json(path / ".zattrs") or {})
    return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _is_plate(path: Path) -> bool:
    node = _zarr_node(path)
    return node is not None and node[0] == "group" and "plate" in node[1]


def _enclosing_plate(path: Path) -> Path | None:
    """The nearest ancestor of ``path`` that is an HCS plate, if any."""
    return next((p for p in path.parents[:_MAX_DEPTH] if _is_plate(p)), None)


def _child_plates(path: Path) -> list[Path]:
    """HCS plates directly inside the folder ``path``, by name."""
    children = (Path(entry.path) for entry in os.scandir(path) if entry.is_dir())
    return sorted(p for p in children if _is_plate(p))


def _count_tiffs(path: Path) -> int:
    return sum(
        name.lower().endswith(_TIFF_SUFFIXES) for _, _, names in os.walk(path) for name in names
    )
