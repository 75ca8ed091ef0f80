"""Acquisition metadata that instrument software writes into a TIFF file's header.

MetaXpress (ImageXpress) writes an XML ``<MetaData>`` block of ``<prop id=... value=...>``
(and ``<custom-prop ...>``) entries into the first page's ImageDescription: the stage
Z position (``z-position``, µm), the acquisition time (``acquisition-time-local``),
the illumination setting (``_IllumSetting_``, e.g. ``"DAPI"``), the pixel size and,
for the instrument's projections, how they were made (``Z Projection Method``, e.g.
``"Maximum"`` or ``"Best Focus"``). ImageJ hyperstacks carry one label per page
(``Labels``). Only the header is read, never pixels.
"""

from __future__ import annotations

import html
import re
import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import tifffile

__all__ = ["FileMeta", "metaxpress_props", "read_file_meta"]

_PROP = re.compile(
    r'<(?P<custom>custom-)?prop\s+id="(?P<id>[^"]*)"\s+type="[^"]*"\s+value="(?P<value>[^"]*)"'
)
_TIME_FORMATS = ("%Y%m%d %H:%M:%S.%f", "%Y%m%d %H:%M:%S")
# What tifffile raises for a file whose header cannot be parsed.
_UNREADABLE = (OSError, ValueError, IndexError, KeyError, struct.error)


@dataclass(frozen=True)
class FileMeta:
    """What one file's header says about its acquisition (``None``/empty: not recorded).

    Attributes
    ----------
    z_um
        The stage Z position of the plane, in micrometres.
    acquired
        When the plane was acquired (instrument local time).
    illumination
        The illumination setting, i.e. the channel's name on the instrument.
    labels
        ImageJ's label of each page, in page order.
    projection
        How the instrument made the image from a Z stack, for its projections.
    """

    z_um: float | None = None
    acquired: datetime | None = None
    illumination: str | None = None
    labels: tuple[str, ...] = ()
    projection: str | None = None


def metaxpress_props(description: str) -> dict[str, str]:
    """The ``<prop>`` and ``<custom-prop>`` entries of a MetaXpress ImageDescription.

    Entries are keyed by id (a ``<prop>`` wins over a ``<custom-prop>`` of the same
    id); ``{}`` for a description that is not MetaXpress XML.

    Examples
    --------
    >>> metaxpress_props('<MetaData><prop id="z-position" type="float" value="9318.24"/>')
    {'z-position': '9318.24'}
    """
    if "<MetaData" not in description:
        return {}
    found = sorted(_PROP.finditer(description), key=lambda m: m["custom"] is None)
    return {m["id"]: html.unescape(m["value"]) for m in found}


def read_file_meta(path: str | Path) -> FileMeta:
    """Read a TIFF file's acquisition metadata from its header, without reading pixels.

    A file whose header cannot be read has no metadata here; reading its pixels names
    it and the problem.
    """
    try:
        with tifffile.TiffFile(path) as tif:
            description = tif.pages.first.description or ""
            imagej = tif.imagej_metadata or {}
    except _UNREADABLE:
        return FileMeta()
    props = metaxpress_props(description)
    labels = imagej.get("Labels")
    return FileMeta(
        z_um=_float(props.get("z-position")),
        acquired=_time(props.get("acquisition-time-local")),
        illumination=props.get("_IllumSetting_") or None,
        labels=tuple(str(label) for label in labels) if isinstance(labels, list) else (),
        projection=props.get("Z Projection Method") or None,
    )


def _float(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None
