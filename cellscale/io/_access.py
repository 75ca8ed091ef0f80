"""Folders and files of an ingest source that cannot be listed or opened.

Ingest lists every folder of its source and opens every file it reads; a folder or
file it may not read is an :class:`UnreadableError` naming it and what to check, never
a folder silently left out of the scan (which would make a plate with fewer planes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal, NoReturn

from cellscale.plate import PlateError

__all__ = ["UnreadableError", "open_source", "unreadable", "walk_source"]

_PERMISSIONS = (
    "check its permissions: ingest needs to list every folder of the source and read every "
    "file it uses"
)
_ELSEWHERE = "check that it is still there and that its disk or file share can be read"


class UnreadableError(PlateError):
    """A folder or file of an ingest source cannot be listed or opened."""


def unreadable(
    path: str | os.PathLike[str], err: OSError, kind: Literal["folder", "file"]
) -> UnreadableError:
    """The error for ``path``, which ``err`` kept from being listed or opened.

    Examples
    --------
    >>> denied = PermissionError(13, "Permission denied")
    >>> print(unreadable("raw/ZStep_2", denied, "folder"))  # doctest: +ELLIPSIS
    cannot list the folder raw/ZStep_2 (Permission denied): check its permissions: ingest ...
    """
    verb = "list the folder" if kind == "folder" else "open the file"
    advice = _PERMISSIONS if isinstance(err, PermissionError) else _ELSEWHERE
    return UnreadableError(f"cannot {verb} {path} ({err.strerror or err}): {advice}")


def walk_source(root: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(root)``, raising :class:`UnreadableError` for a folder it cannot list."""
    return os.walk(root, onerror=_unlisted)


def open_source(path: str | os.PathLike[str]) -> BinaryIO:
    """``open(path, "rb")``, raising :class:`UnreadableError` if the file cannot be opened."""
    try:
        return open(path, "rb")
    except OSError as err:
        raise unreadable(path, err, "file") from err


def _unlisted(err: OSError) -> NoReturn:
    raise unreadable(err.filename, err, "folder") from err
