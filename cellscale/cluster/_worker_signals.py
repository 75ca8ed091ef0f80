"""Loaded by each worker process of a local cluster: Ctrl-C is for the process that started it.

A terminal sends Ctrl-C's ``SIGINT`` to every process of its foreground group, worker
processes included. Each would raise ``KeyboardInterrupt`` wherever it is and print a
traceback, while the process that started the cluster handles the interrupt and closes
the cluster, which stops its workers cleanly. So workers ignore ``SIGINT``.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["PRELOAD", "dask_setup"]

#: This module's name, as a worker ``preload``.
PRELOAD = __name__


def dask_setup(worker: Any) -> None:
    """Ignore ``SIGINT`` in this worker process (called by the worker as it starts)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
