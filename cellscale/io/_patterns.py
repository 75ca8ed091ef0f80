"""File-name patterns: how an image file's path names its place on the plate.

A :class:`FilePattern` is a regular expression with named groups among ``t``,
``well`` (or ``row`` and ``col``), ``field``, ``z`` and ``c`` (and optionally
``plate``), searched in each file's path relative to the source folder, written
with ``/``. :func:`discover` walks a folder and turns every matching file into an
:class:`ImageFile`; files that do not match are returned, never dropped. Discovery
fails early, naming the fix, when the folder holds several plates or when the
pattern lacks a group that would tell two files apart.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cellscale.io._access import unreadable, walk_source
from cellscale.io._diagnose import did_you_mean
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
_INTEGER_GROUPS = ("t", "field", "z")
_GROUP_MEANINGS = {"t": "time point", "field": "field/site", "z": "Z plane", "c": "channel"}
_ZSTEP_DIR = re.compile(r"^ZStep_\d+$", re.IGNORECASE)
_LAYOUT_DIR = re.compile(r"^(?:ZStep|TimePoint)_\d+$", re.IGNORECASE)
_MAX_LISTED = 10
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
        has = sorted(self.compiled.groupindex)
        unknown = (set(has) | set(self.defaults)) - set(_ALL_GROUPS)
        if unknown:
            raise PlateError(
                f"pattern {self.regex!r} (groups {has}, defaults {dict(self.defaults)}) names "
                f"groups {sorted(unknown)}; allowed groups are {list(_ALL_GROUPS)}"
            )
        bad = {
            k: v for k, v in self.defaults.items() if k in _INTEGER_GROUPS and not str(v).isdigit()
        }
        if bad:
            raise PlateError(f"defaults {bad} must be whole numbers (t, field and z count)")
        if "well" not in self.groups and not {"row", "col"} <= self.groups:
            raise PlateError(
                f"pattern {self.regex!r} names no well (it has groups {has}): add a "
                "(?P<well>...) group, (?P<row>...) and (?P<col>...) groups, or give a default "
                "well, e.g. defaults={'well': 'A01'}"
            )

    @property
    def groups(self) -> set[str]:
        """Groups the pattern gives a value: those of the regex and those with a default."""
        return set(self.compiled.groupindex) | set(self.defaults)

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


def resolve_pattern(
    pattern: str | FilePattern, defaults: Mapping[str, str] | None = None
) -> FilePattern:
    r"""Return a :class:`FilePattern` for a built-in name, a regex string or a pattern.

    Parameters
    ----------
    pattern
        A built-in name (any case, e.g. ``"ImageXpress"``), a regex with named
        groups, or a :class:`FilePattern`.
    defaults
        Values for groups the paths do not give, e.g. ``{"well": "A01"}``; they are
        added to (and override) the pattern's own defaults.

    Raises
    ------
    PlateError
        For an unknown name (suggesting the closest built-in one), an invalid regex,
        or a pattern that names no well.

    Examples
    --------
    >>> resolve_pattern(r"POS(?P<field>\d+)_(?P<c>[DFR])", defaults={"well": "A01"}).match(
    ...     "01_POS076_D.TIF"
    ... )
    {'well': 'A01', 'field': '076', 'c': 'D'}
    """
    extra = dict(defaults or {})
    if isinstance(pattern, str) and pattern.lower() not in BUILTIN_PATTERNS:
        return FilePattern(_checked_regex(pattern), defaults=extra)
    known = pattern if isinstance(pattern, FilePattern) else BUILTIN_PATTERNS[pattern.lower()]
    return dataclasses.replace(known, defaults={**known.defaults, **extra}) if extra else known


def _checked_regex(pattern: str) -> str:
    """``pattern`` if it is a regex with named groups; else an error suggesting a built-in."""
    try:
        groups = re.compile(pattern).groupindex
    except re.error as exc:
        raise PlateError(f"{_unknown_name(pattern)} (as a regex: {exc})") from exc
    if not groups:
        raise PlateError(_unknown_name(pattern))
    return pattern


def _unknown_name(pattern: str) -> str:
    close = difflib.get_close_matches(pattern.lower(), BUILTIN_PATTERNS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"pattern {pattern!r} is neither a built-in pattern nor a regex with named groups; "
        f"{hint}Built-in patterns are {sorted(BUILTIN_PATTERNS)}; a regex names groups among "
        f"{list(_ALL_GROUPS)}"
    )


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

    Raises
    ------
    FileNotFoundError
        If ``source`` does not exist.
    UnreadableError
        If ``source`` or a folder under it cannot be listed (naming it).
    PlateError
        If ``source`` is a file, if it holds several plates (naming each plate's
        folder), or if two files read as one position because the pattern lacks a
        group (naming the files and the groups it has).
    """
    root = Path(source)
    try:
        is_file, is_dir = root.is_file(), root.is_dir()
    except OSError as err:
        raise unreadable(root, err, "folder") from err
    if is_file:
        raise PlateError(f"{root} is a file; pass the folder that holds it ({root.parent})")
    if not is_dir:
        raise FileNotFoundError(f"source folder {root} does not exist{did_you_mean(root)}")
    found = Discovery(root, pattern, [], [], [], [])
    for dirpath, dirnames, filenames in walk_source(root):
        dirnames.sort()
        has_zsteps = pattern.zstep_folders and any(_ZSTEP_DIR.match(d) for d in dirnames)
        for filename in sorted(filenames):
            path = Path(dirpath, filename)
            _classify(found, path, has_zsteps)
    _check_one_plate(found)
    _check_distinct(found)
    return found


def _check_one_plate(found: Discovery) -> None:
    """Raise if the files belong to several plates: distinct ``plate`` names or plate folders."""
    plates: dict[tuple[str | None, Path], list[Path]] = {}
    for f in found.files:
        folder = _plate_folder(found, f.path)
        key = (f.plate, folder if found.pattern.zstep_folders else found.source)
        plates.setdefault(key, []).append(folder)
    if len(plates) < 2:
        return
    folders = {key: Path(os.path.commonpath(paths)) for key, paths in plates.items()}
    listed = [
        f"{name or '(unnamed)'} in {folder.relative_to(found.source).as_posix()}/"
        for (name, _), folder in sorted(folders.items(), key=lambda kv: str(kv[1]))
    ]
    more = f", … and {len(listed) - _MAX_LISTED} more" if len(listed) > _MAX_LISTED else ""
    message = (
        f"{found.source} holds {len(plates)} plates ({found.pattern.name} pattern): "
        f"{', '.join(listed[:_MAX_LISTED])}{more}; ingest one plate at a time"
    )
    if _nested(list(folders.values())):
        raise PlateError(
            f"{message}: the plates share folders, so move each plate's files into a folder "
            "of its own (or use a pattern that matches one plate only)"
        )
    first = min(folders.values(), key=str)
    raise PlateError(f"{message}: pass the plate's folder, e.g. {first}")


def _plate_folder(found: Discovery, path: Path) -> Path:
    """The folder of a file's plate: its parent, above any TimePoint/ZStep folders."""
    folder = path.parent
    while found.pattern.zstep_folders and folder != found.source and _LAYOUT_DIR.match(folder.name):
        folder = folder.parent
    return folder


def _nested(folders: list[Path]) -> bool:
    """Whether any folder equals or lies inside another (adjacent in sorted order if so)."""
    ordered = sorted(f.parts for f in folders)
    return any(b[: len(a)] == a for a, b in itertools.pairwise(ordered))


def _check_distinct(found: Discovery) -> None:
    """Raise if two files read as one position because the pattern lacks a group."""
    pattern = found.pattern
    missing = [g for g in _GROUP_MEANINGS if g not in pattern.compiled.groupindex]
    if not missing:
        return  # every position group is read from the path; leave clashes to the reader
    seen: dict[tuple[object, ...], Path] = {}
    for f in found.files:
        key = (f.plate, f.t, f.well, f.field, f.z, f.c, f.projection)
        first = seen.setdefault(key, f.path)
        if first != f.path:
            raise PlateError(
                f"two files claim t={f.t} well {f.well} field {f.field} channel {f.c!r} "
                f"z={f.z}: {first} and {f.path}; the pattern {pattern.regex!r} has groups "
                f"{sorted(pattern.compiled.groupindex)}{_defaults_note(pattern)} but no "
                f"{_either(missing)} group to tell them apart: add one for what differs, "
                + ", ".join(f"(?P<{g}>...) for the {_GROUP_MEANINGS[g]}" for g in missing)
            )


def _defaults_note(pattern: FilePattern) -> str:
    return f" (defaults {dict(pattern.defaults)})" if pattern.defaults else ""


def _either(groups: list[str]) -> str:
    quoted = [repr(g) for g in groups]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


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
