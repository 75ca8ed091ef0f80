"""One writer per output, and no leftovers from a writer that was killed.

:func:`output_lock` takes an advisory ``flock`` on a small file beside the output
(``.<name>.lock``), held by the process that drives the write; the kernel drops it when
that process exits, even on SIGKILL, so a stale lock never blocks a resume. It works on
local disks and on network filesystems that support POSIX locks (NFSv4, Lustre
mounted with ``flock``); on Windows there is no lock.

:func:`remove_partials` deletes the ``*.partial`` files zarr's local store writes and
renames into place, which a killed writer leaves behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["OutputLockedError", "lock_path", "output_lock", "remove_partials"]

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class OutputLockedError(RuntimeError):
    """Another process is writing the same output."""


def lock_path(path: Path) -> Path:
    """The lock file of the output at ``path``: a hidden file beside it."""
    return path.with_name(f".{path.name}.lock")


@contextmanager
def output_lock(path: str | Path) -> Iterator[None]:
    """Hold the write lock of the output at ``path`` for the duration of the block.

    Raises
    ------
    OutputLockedError
        If another process (or another write in this one) holds it.
    """
    path = Path(path)
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise OutputLockedError(
                f"{path} is being written by another process ({holder}); wait for it to "
                f"finish or stop it. The lock is {lock} and is released when that process "
                "exits"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def remove_partials(path: str | Path) -> int:
    """Delete the ``*.partial`` files under ``path`` left by an interrupted writer.

    Call it only while holding :func:`output_lock`: a running writer's files are
    partial too. Returns how many were removed.
    """
    removed = 0
    for folder, _, files in os.walk(path):
        for name in files:
            if name.endswith(".partial"):
                Path(folder, name).unlink(missing_ok=True)
                removed += 1
    return removed
