"""Physical ``z`` and ``t`` coordinates of an ingested plate, from a few files' headers.

Both are estimated from a handful of probed files (the first, middle and last of each
channel), never from every file, and only from headers (:func:`read_file_meta`):

* ``z``: for each probed Z stack (one file per plane), each plane's stage position
  relative to the stack's first plane; per plane, the median over the probed stacks;
  then shifted so the lowest plane is at 0. Fields and wells sit at slightly different
  absolute heights (autofocus), so only positions within a stack are compared.
* ``t``: per time point, the earliest acquisition time among the probed files, in
  seconds after that of the first time point.

A channel whose probed values do not change from plane to plane, or from time point
to time point, is left out: exports copy a single-plane or single-time-point channel
into every ``ZStep`` or ``TimePoint`` folder. Where no channel gives values that
strictly increase (or decrease, for Z), the coordinate stays unknown (``None``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

import numpy as np

from cellscale.io._instrument_meta import FileMeta
from cellscale.io._tiff import PlaneRef

__all__ = ["Position", "spread", "time_offsets", "z_positions"]

Position = tuple[int, str, int, str, int]
"""A plane's place on the plate: ``(t, well, field, channel id, z)``."""

MetaReader = Callable[[str], FileMeta]
_T = TypeVar("_T")


def spread(items: Sequence[_T]) -> list[_T]:
    """The first, middle and last of ``items`` (fewer when there are fewer)."""
    return [items[i] for i in sorted({0, len(items) // 2, len(items) - 1})] if items else []


def z_positions(
    planes: Mapping[Position, PlaneRef], z: Sequence[int], meta: MetaReader
) -> list[float] | None:
    """Each plate plane's Z position in micrometres, the lowest at 0 (see the module docs).

    Parameters
    ----------
    planes
        The plate's planes by position.
    z
        The plate's plane indices, in order.
    meta
        Reads a file's header metadata.

    Returns
    -------
    list of float or None
        One position per index of ``z``, or ``None`` when the files do not say.
    """
    if len(z) < 2:
        return None
    within = (_within_stack(paths, meta) for paths in _probed_stacks(planes, z))
    moving = [r for r in within if r is not None and _monotonic(r)]
    if not moving:
        return None
    median = np.median(moving, axis=0)
    if not _monotonic(median):
        return None
    return [round(float(v), 6) for v in median - median.min()]


def time_offsets(
    planes: Mapping[Position, PlaneRef], t: Sequence[int], meta: MetaReader
) -> list[float] | None:
    """Each time point's start in seconds after the first's (see the module docs).

    Parameters
    ----------
    planes
        The plate's planes by position.
    t
        The plate's time point indices, in order.
    meta
        Reads a file's header metadata.

    Returns
    -------
    list of float or None
        One offset per index of ``t`` (the first is 0), or ``None`` when the files do
        not say.
    """
    if len(t) < 2:
        return None
    files: dict[tuple[str, int], dict[str, None]] = defaultdict(dict)
    for key in sorted(planes):
        files[(key[3], key[0])][planes[key].path] = None
    channels = sorted({c for c, _ in files})
    starts: list[list[datetime]] = []
    for c in channels:
        times = [_earliest(list(files[(c, ti)]), meta) for ti in t]
        known = [x for x in times if x is not None]
        if len(known) == len(t) and _increasing([(x - known[0]).total_seconds() for x in known]):
            starts.append(known)
    if not starts:
        return None
    begins = [min(s[i] for s in starts) for i in range(len(t))]
    offsets = [(b - begins[0]).total_seconds() for b in begins]
    return [round(o, 3) for o in offsets] if _increasing(offsets) else None


def _probed_stacks(planes: Mapping[Position, PlaneRef], z: Sequence[int]) -> list[list[str]]:
    """The files of the first, middle and last complete one-file-per-plane stack per channel."""
    stacks: dict[tuple[str, int, str, int], dict[int, str]] = defaultdict(dict)
    for (t, well, fld, c, zi), ref in planes.items():
        stacks[(c, t, well, fld)][zi] = ref.path
    by_channel: dict[str, list[list[str]]] = defaultdict(list)
    for key in sorted(stacks):
        paths = [stacks[key].get(zi) for zi in z]
        if None not in paths and len(set(paths)) == len(paths):
            by_channel[key[0]].append([p for p in paths if p is not None])
    return [paths for members in by_channel.values() for paths in spread(members)]


def _within_stack(paths: list[str], meta: MetaReader) -> np.ndarray | None:
    """The positions of a stack's planes relative to its first, if every file has one."""
    found = [meta(p).z_um for p in paths]
    known = [v for v in found if v is not None]
    return np.subtract(known, known[0]) if len(known) == len(found) else None


def _earliest(paths: list[str], meta: MetaReader) -> datetime | None:
    """The earliest acquisition time of the probed ``paths``, if each of them has one."""
    times = [meta(p).acquired for p in spread(paths)]
    known = [t for t in times if t is not None]
    return min(known) if known and len(known) == len(times) else None


def _monotonic(values: Sequence[float] | np.ndarray) -> bool:
    steps = np.diff(values)
    return bool((steps > 0).all() or (steps < 0).all())


def _increasing(values: Sequence[float]) -> bool:
    return bool((np.diff(values) > 0).all())
