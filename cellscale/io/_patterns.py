"""File-name patterns: how an image file's path names its place on the plate.

A :class:`FilePattern` is a regular expression with named groups among ``t``,
``well`` (or ``row`` and ``col``), ``field``, ``z`` and ``c`` (and optionally
``plate``), searched in each file's path relative to the source folder, written
with ``/``. :func:`discover` walks a folder and turns every matching file into an
:class:`ImageFile`; files that do not match are returned, never dropped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cellscale.plate import PlateError, format_well, normalize_well

__all__ = [
    "BUILTIN_PATTERNS",
    "Discovery",
    "FilePattern",
    "ImageFile",
    "cellprofiler",
    "discover",
    "imagexpress",
    "resolve_pattern",
]

POSITION_GROUPS = ("t", "well", "field", "z", "c")
_ALL_GROUPS = (*POSITION_GROUPS, "row", "col", "plate")
_ZSTEP_DIR = re.compile(r"^ZStep_\d+$", re.IGNORECASE)
_UUID = r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}"


@dataclass(frozen=True)
class FilePattern:
    """A regular expression that names the plate position of image files.

    Parameters
    ----------
    regex
        Searched (``re.search``, case-insensitive) in each file's path relative to
        the source folder, with ``/`` separators. Named groups among ``t``,
        ``well`` (or ``row`` + ``col``), ``field``, ``z``, ``c`` and ``plate``;
        ``t``, ``field`` and ``z`` must capture integers.
    defaults
        Values for groups that are absent or did not take part in a match, e.g.
        ``{"well": "A01"}`` for a folder of one well's images. Missing ``t``,
        ``field`` and ``z`` default to ``0`` and a missing ``c`` to ``"0"``.
    skip
        Files whose path matches this regex are ignored (e.g. thumbnails).
    extensions
        Only files with these (case-insensitive) suffixes are considered images;
        other files (READMEs, ``.HTD`` …) are neither matched nor reported.
    zstep_folders
        Follow the MetaXpress convention for Z: planes live in ``ZStep_<n>``
        folders, and files beside those folders (or in ``ZStep_0``) are the
        instrument's projections.
    projection
        With ``zstep_folders``, ingest the projections instead of the planes.
    name
        A short name used in messages.
    """

    regex: str
    defaults: Mapping[str, str] = field(default_factory=dict)
    skip: str | None = None
    extensions: tuple[str, ...] = (".tif", ".tiff")
    zstep_folders: bool = False
    projection: bool = False
    name: str = "custom"

    def __post_init__(self) -> None:
        unknown = set(self.compiled.groupindex) - set(_ALL_GROUPS)
        if unknown:
            raise ValueError(
                f"pattern {self.regex!r} has groups {sorted(unknown)}; "
                f"allowed groups are {list(_ALL_GROUPS)}"
            )
        groups = set(self.compiled.groupindex) | set(self.defaults)
        if "well" not in groups and not {"row", "col"} <= groups:
            raise ValueError(
                f"pattern {self.regex!r} names no well: add a (?P<well>...) group, "
                "(?P<row>...) and (?P<col>...) groups, or use FilePattern(regex, "
                "defaults={'well': 'A01'})"
            )

    @cached_property
    def compiled(self) -> re.Pattern[str]:
        """The compiled, case-insensitive regex."""
        return re.compile(self.regex, re.IGNORECASE)

    @cached_property
    def compiled_skip(self) -> re.Pattern[str] | None:
        """The compiled skip regex, if any."""
        return None if self.skip is None else re.compile(self.skip, re.IGNORECASE)

    def match(self, relpath: str) -> dict[str, str] | None:
        """Groups of ``relpath`` (defaults filled in), or ``None`` if it does not match."""
        found = self.compiled.search(relpath)
        if found is None:
            return None
        groups = {k: v for k, v in found.groupdict().items() if v is not None}
        return {**self.defaults, **groups}


def imagexpress(*, projection: bool = False) -> FilePattern:
    """The ImageXpress (MetaXpress) layout, raw or exported.

    ``[TimePoint_<t>/][ZStep_<z>/]<plate>_<well>[_s<site>][_w<wavelength>][<uuid>].tif``:
    raw acquisitions carry a UUID, exports (beside an ``.HTD`` file) do not, and
    single-site or single-wavelength exports drop ``_s``/``_w`` (site 1, ``w1``).
    Thumbnails (``_thumb``) are skipped. Channels are named ``w1``, ``w2`` …

    Parameters
    ----------
    projection
        Take the instrument's projections (files beside the ``ZStep_<n>`` folders,
        or in ``ZStep_0``) instead of the Z planes.
    """
    regex = (
        r"^(?:[^/]+/)*?(?:TimePoint_(?P<t>\d+)/)?(?:ZStep_(?P<z>\d+)/)?"
        r"(?P<plate>[^/]+?)_(?P<well>(?-i:[A-Z]{1,2})\d{1,3})(?:_s(?P<field>\d+))?"
        rf"(?:_(?P<c>w\d+))?(?:{_UUID})?\.tiff?$"
    )
    return FilePattern(
        regex,
        defaults={"t": "1", "field": "1", "c": "w1"},
        skip=r"_thumb",
        zstep_folders=True,
        projection=projection,
        name="imagexpress-projection" if projection else "imagexpress",
    )


def cellprofiler() -> FilePattern:
    """The CellProfiler-example / Cellomics style ``<plate>_<well>f<field>d<channel>.tif``.

    Channels are named ``d0``, ``d1`` …; fields keep their numbers (``f00`` -> 0).
    """
    regex = (
        r"(?:^|/)(?:(?P<plate>[^/]*?)_)?(?P<well>[A-Z]{1,2}\d{2,3})"
        r"f(?P<field>\d+)(?P<c>d\d+)\.tiff?$"
    )
    return FilePattern(regex, name="cellprofiler")


BUILTIN_PATTERNS: dict[str, FilePattern] = {
    "imagexpress": imagexpress(),
    "imagexpress-projection": imagexpress(projection=True),
    "cellprofiler": cellprofiler(),
}
"""Patterns that can be named by a string."""


def resolve_pattern(pattern: str | FilePattern) -> FilePattern:
    """Return a :class:`FilePattern` for a built-in name, a regex string or a pattern."""
    if isinstance(pattern, FilePattern):
        return pattern
    if pattern in BUILTIN_PATTERNS:
        return BUILTIN_PATTERNS[pattern]
    try:
        groups = re.compile(pattern).groupindex
    except re.error as exc:
        raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from exc
    if not groups:
        raise ValueError(
            f"pattern {pattern!r} is neither a built-in pattern {sorted(BUILTIN_PATTERNS)} "
            f"nor a regex with named groups among {list(POSITION_GROUPS)}"
        )
    return FilePattern(pattern)


@dataclass(frozen=True)
class ImageFile:
    """One matched image file and its plate position."""

    path: Path
    t: int
    well: str
    field: int
    z: int
    c: str
    projection: bool = False
    plate: str | None = None


@dataclass
class Discovery:
    """What :func:`discover` found under a source folder."""

    source: Path
    pattern: FilePattern
    files: list[ImageFile]
    unmatched: list[Path]
    skipped: list[Path]
    htd_files: list[Path]

    def unmatched_message(self, limit: int = 20) -> str:
        """A message listing unmatched files (the first ``limit``) with the pattern."""
        shown = "\n  ".join(str(p.relative_to(self.source)) for p in self.unmatched[:limit])
        more = len(self.unmatched) - limit
        tail = f"\n  … and {more} more" if more > 0 else ""
        return (
            f"{len(self.unmatched)} image file(s) under {self.source} do not match the "
            f"{self.pattern.name} pattern {self.pattern.regex!r}:\n  {shown}{tail}"
        )


def discover(source: str | Path, pattern: FilePattern) -> Discovery:
    """Walk ``source`` and match every image file against ``pattern``.

    Parameters
    ----------
    source
        The folder to walk (recursively, in sorted order).
    pattern
        How paths name plate positions.

    Returns
    -------
    Discovery
        Matched files, unmatched and skipped image files, and any ``.HTD`` files.
    """
    root = Path(source)
    if not root.is_dir():
        raise FileNotFoundError(f"source folder {root} does not exist")
    found = Discovery(root, pattern, [], [], [], [])
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        has_zsteps = pattern.zstep_folders and any(_ZSTEP_DIR.match(d) for d in dirnames)
        for filename in sorted(filenames):
            path = Path(dirpath, filename)
            _classify(found, path, has_zsteps)
    return found


def _classify(found: Discovery, path: Path, has_zsteps: bool) -> None:
    pattern = found.pattern
    suffix = path.suffix.lower()
    if suffix == ".htd":
        found.htd_files.append(path)
        return
    if suffix not in pattern.extensions:
        return
    relpath = path.relative_to(found.source).as_posix()
    if pattern.compiled_skip is not None and pattern.compiled_skip.search(relpath):
        found.skipped.append(path)
        return
    groups = pattern.match(relpath)
    if groups is None:
        found.unmatched.append(path)
        return
    found.files.append(_image_file(path, groups, pattern, has_zsteps))


def _image_file(
    path: Path, groups: Mapping[str, str], pattern: FilePattern, has_zsteps: bool
) -> ImageFile:
    try:
        if "well" in groups:
            well = normalize_well(groups["well"])
        else:
            well = format_well(groups["row"], int(groups["col"]))
        t, fld, z = (int(groups.get(k, "0")) for k in ("t", "field", "z"))
    except (PlateError, ValueError) as exc:
        raise PlateError(
            f"{path}: cannot read a plate position from {dict(groups)}: {exc}"
        ) from exc
    in_zstep = "z" in groups
    projection = pattern.zstep_folders and ((in_zstep and z == 0) or (not in_zstep and has_zsteps))
    return ImageFile(
        path=path,
        t=t,
        well=well,
        field=fld,
        z=z,
        c=groups.get("c", "0"),
        projection=projection,
        plate=groups.get("plate"),
    )
