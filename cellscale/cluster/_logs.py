"""Keeping distributed's INFO log lines quiet while cellscale's clusters run."""

from __future__ import annotations

import logging
import threading

__all__ = ["QUIET_DISTRIBUTED", "QuietLogger"]


class QuietLogger:
    """A logger's level raised to at least ``level`` while at least one holder needs it.

    The level is set on the logger itself, not on its handlers, so records below it are
    dropped wherever they would go: distributed's own stderr handler, or the root logger's
    handlers when the application configured logging before importing distributed. Holders
    may come and go in any order; the last one to release restores the previous level.

    Parameters
    ----------
    name
        The logger's name.
    level
        The least level let through while held.

    Examples
    --------
    >>> logging.getLogger("example").setLevel(logging.INFO)
    >>> quiet = QuietLogger("example", logging.WARNING)
    >>> quiet.acquire()
    >>> logging.getLevelName(logging.getLogger("example").level)
    'WARNING'
    >>> quiet.release()
    >>> logging.getLevelName(logging.getLogger("example").level)
    'INFO'
    """

    def __init__(self, name: str, level: int) -> None:
        self._logger = logging.getLogger(name)
        self._level = level
        self._holders = 0
        self._previous: int | None = None
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Add a holder; the first one raises the level if it is lower."""
        with self._lock:
            if self._holders == 0 and self._logger.getEffectiveLevel() < self._level:
                self._previous = self._logger.level
                self._logger.setLevel(self._level)
            self._holders += 1

    def release(self) -> None:
        """Remove a holder; the last one restores the level the logger had before."""
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._previous is not None:
                self._logger.setLevel(self._previous)
                self._previous = None


#: Held by every running cluster of :func:`~cellscale.start_cluster` that is not verbose.
QUIET_DISTRIBUTED = QuietLogger("distributed", logging.WARNING)
