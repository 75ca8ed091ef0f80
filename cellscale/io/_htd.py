"""MetaXpress ``.HTD`` plate files (HTS info files written beside ImageXpress exports).

An HTD file describes the *planned* acquisition: plate format, selected wells and
sites, wavelength names, Z steps and time points. Exports often hold only part of it,
so ingest trusts the files on disk for what exists and takes from the HTD only what
files cannot say: wavelength names and the plate format.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from cellscale.io._access import open_source

__all__ = ["HtdInfo", "read_htd"]

# MetaXpress separates the lines of the description with C1 control bytes (0x82 0x81).
_LINE_BREAK = re.compile(r"[\x80-\x9f\r\n]+")


@dataclass(frozen=True)
class HtdInfo:
    """What an HTD file says about a plate.

    Attributes
    ----------
    path
        The file it was read from.
    description
        The free-text acquisition description.
    plate_shape
        ``(rows, columns)`` of the plate format, e.g. ``(8, 12)``.
    wave_names
        Wavelength names by wavelength id (``{"w1": "DAPI", ...}``).
    time_points, z_steps
        Numbers of time points and Z steps the acquisition planned.
    """

    path: Path
    description: str = ""
    plate_shape: tuple[int, int] | None = None
    wave_names: dict[str, str] = field(default_factory=dict)
    time_points: int | None = None
    z_steps: int | None = None


def read_htd(path: str | Path) -> HtdInfo:
    """Read a MetaXpress ``.HTD`` file.

    Parameters
    ----------
    path
        The ``.HTD`` file.

    Returns
    -------
    HtdInfo
        Plate format, wavelength names and planned dimensions.

    Raises
    ------
    UnreadableError
        If the file cannot be opened.
    """
    path = Path(path)
    with open_source(path) as handle:
        entries = _entries(handle.read().decode("latin-1"))
    waves = {
        f"w{key[len('WaveName') :]}": values[0]
        for key, values in entries.items()
        if key.startswith("WaveName") and values
    }
    rows, cols = _int(entries, "YWells"), _int(entries, "XWells")
    return HtdInfo(
        path=path,
        description=_LINE_BREAK.sub("; ", entries.get("Description", [""])[0]).strip(),
        plate_shape=(rows, cols) if rows and cols else None,
        wave_names=waves,
        time_points=_int(entries, "TimePoints"),
        z_steps=_int(entries, "ZSteps"),
    )


def _entries(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    reader = csv.reader(lines, skipinitialspace=True)
    return {row[0]: [v.strip() for v in row[1:]] for row in reader if row}


def _int(entries: dict[str, list[str]], key: str) -> int | None:
    values = entries.get(key)
    if not values:
        return None
    try:
        return int(values[0])
    except ValueError:
        return None
