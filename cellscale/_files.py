"""File identities: the sha256 of a (weights) file, computed once per process per version."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["file_sha256"]

_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path, *, cached: bool = True) -> str:
    """The sha256 hex digest of a file, cached for its size and modification time.

    ``cached=False`` reads the file again whatever is cached (to find damage that kept
    the file's size and time).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "w.bin"
    >>> _ = file.write_bytes(b"weights")
    >>> file_sha256(file)[:12]
    '9a129038d9a0'
    """
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES or not cached:
        digest = hashlib.sha256()
        with path.open("rb") as file:
            for block in iter(lambda: file.read(1 << 24), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]
