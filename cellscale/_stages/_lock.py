"""One writer per output, and no leftovers from a writer that was killed.

:func:`output_lock` takes an advisory ``flock`` on a small file beside the output
(``.<name>.lock``), held by the process that drives the write; the kernel drops it when
that process exits, even on SIGKILL, so a stale lock never blocks a resume. It works on
local disks and on network filesystems that support POSIX locks (NFSv4, Lustre
mounted with ``flock``); on Windows there is no lock.

:func:`remove_partials` deletes the ``*.partial`` files zarr's local store writes and
renames into place, which a killed writer leaves behind.

A ``compute=False`` write holds a :class:`Lease` instead, from when its graph is built
until the graph's last task ran (see :func:`take_lease`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cellscale._stages._output import atomic_path

__all__ = [
    "Lease",
    "OutputLockedError",
    "lease_path",
    "lock_path",
    "output_lock",
    "release_lazy_write",
    "remove_partials",
    "take_lease",
]

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class OutputLockedError(RuntimeError):
    """Another process is writing the same output.

    Attributes
    ----------
    holder
        Who holds it (``"pid 123 on node7"``), where known.
    """

    def __init__(self, message: str, holder: str = "unknown") -> None:
        super().__init__(message)
        self.holder = holder


def lock_path(path: Path) -> Path:
    """The lock file of the output at ``path``: a hidden file beside it."""
    return path.with_name(f".{path.name}.lock")


@contextmanager
def output_lock(path: str | Path) -> Iterator[None]:
    """Hold the write lock of the output at ``path`` for the duration of the block.

    Raises
    ------
    OutputLockedError
        If another process (or another write in this one) holds it, or a lazy write
        that has not run yet holds its :class:`Lease`.
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
                "exits",
                holder,
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
        try:
            _check_no_lease(path)
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def remove_partials(path: str | Path) -> int:
    """Delete the ``*.partial`` files and folders under ``path`` left by an interrupted writer.

    Call it only while holding :func:`output_lock`: a running writer's files are
    partial too. Returns how many were removed.
    """
    removed = 0
    for folder, subfolders, files in os.walk(path):
        for name in [n for n in subfolders if _is_partial(n)]:
            shutil.rmtree(Path(folder, name), ignore_errors=True)
            subfolders.remove(name)
            removed += 1
        for name in filter(_is_partial, files):
            Path(folder, name).unlink(missing_ok=True)
            removed += 1
    return removed


def _is_partial(name: str) -> bool:
    return name.endswith(".partial") or ".partial." in name


@dataclass(frozen=True)
class Lease:
    """A lazy write's hold on an output: taken when the graph is built, released when it ran.

    A ``compute=False`` write cannot keep the ``flock`` of :func:`output_lock` (the graph
    may run in other processes, after the building call returned), so it leaves a lease
    file beside the output (``.<name>.lease``) naming the building process. Every other
    writer of the output is refused while the lease is held; the graph's last task
    releases it, whether its units failed or not, from whichever process runs it.
    """

    path: Path
    token: str

    def release(self) -> None:
        """Drop the lease if it is still this one (a lease taken over is left alone)."""
        lease = lease_path(self.path)
        try:
            holder = json.loads(lease.read_text())
        except (FileNotFoundError, ValueError):
            return
        if holder.get("token") == self.token:
            lease.unlink(missing_ok=True)


def lease_path(path: Path) -> Path:
    """The lease file of the output at ``path``: a hidden file beside it."""
    return path.with_name(f".{path.name}.lease")


def take_lease(path: str | Path) -> Lease:
    """Take the lease of a lazy write; call it while holding :func:`output_lock`."""
    path = Path(path)
    token = uuid.uuid4().hex
    record = {"token": token, "pid": os.getpid(), "host": socket.gethostname()}
    with atomic_path(lease_path(path)) as partial:
        partial.write_text(json.dumps(record))
    return Lease(path, token)


def release_lazy_write(path: str | Path) -> bool:
    """Give up the lease of a lazy write of ``path`` that will never be computed.

    A ``compute=False`` write holds its output until its graph has run; call this when
    the graph is dropped instead, so that the output can be written again before the
    process that built the graph exits. Returns whether a lease was released.
    """
    lease = lease_path(Path(path))
    if not lease.exists():
        return False
    lease.unlink(missing_ok=True)
    return True


def _check_no_lease(path: Path) -> None:
    """Refuse a write while a live lazy write holds ``path``; drop a dead process's lease."""
    lease = lease_path(path)
    try:
        holder = json.loads(lease.read_text())
    except FileNotFoundError:
        return
    except ValueError:  # a lease file cut short: its writer died while writing it
        lease.unlink(missing_ok=True)
        return
    pid, host = int(holder.get("pid", -1)), str(holder.get("host", ""))
    if host == socket.gethostname() and not _alive(pid):
        lease.unlink(missing_ok=True)
        return
    raise OutputLockedError(
        f"{path} is held by a lazy write (compute=False) built by pid {pid} on {host} that "
        "has not run yet: compute the object that write returned, or call "
        f"cellscale.release_lazy_write({str(path)!r}) if it will never be computed"
    )


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
