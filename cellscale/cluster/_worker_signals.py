"""What each worker process of a cluster does at the start and the end of a run.

A terminal sends Ctrl-C's ``SIGINT`` to every process of its foreground group, worker
processes included. Each would raise ``KeyboardInterrupt`` wherever it is and print a
traceback, while the process that started the cluster handles the interrupt and closes
the cluster, which stops its workers cleanly. So workers of a local cluster ignore
``SIGINT`` (:func:`dask_setup`, loaded as a worker ``preload``).

While the cluster closes, a worker may still be running tasks or sending its heartbeat:
it logs the cancelled tasks and the closed connection, with tracebacks, on the terminal
the user has just seen "interrupted" or the run's summary on. The close is deliberate,
so the client first asks every worker process to keep its distributed log quiet
(:func:`quiet_for_shutdown`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

__all__ = ["PRELOAD", "dask_setup", "quiet_for_shutdown"]

#: This module's name, as a worker ``preload``.
PRELOAD = __name__


def dask_setup(worker: Any) -> None:
    """Ignore ``SIGINT`` in this worker process (called by the worker as it starts)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def quiet_for_shutdown(client_pid: int) -> bool:
    """Let only critical distributed log records out of this worker process from now on.

    Parameters
    ----------
    client_pid
        The process id of the client closing the cluster: a worker inside that process
        (a cluster without worker processes) leaves the client's own logging alone.

    Returns
    -------
    bool
        Whether this process's log was quietened.
    """
    if os.getpid() == client_pid:
        return False
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    return True
