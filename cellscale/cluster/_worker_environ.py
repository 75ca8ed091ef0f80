"""Environment variables every worker process starts with (``cellscale.cluster.worker-environ``).

glibc reads its ``MALLOC_*`` variables once, when a process starts, so they must be in the
environment the worker process is spawned with: local workers are started by
:class:`WorkerNanny`, which adds them to distributed's ``distributed.nanny.pre-spawn-environ``
(exported before spawning, and again for every restart); batch jobs get ``export`` lines at
the top of their job script.

The defaults keep arrays under 32 MiB on the heap and up to 128 MiB of freed heap in the
process. distributed's own default (``MALLOC_TRIM_THRESHOLD_=65536``) hands every freed
array back to the system, so each new one is faulted in page by page again: on the demo's
fields (384², a few MB of temporaries per filter) that was a fifth of the workers' CPU time,
spent in the kernel.

A variable already set in the environment that starts the cluster wins, as in distributed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask.config
from distributed import Nanny

__all__ = ["WorkerNanny", "export_lines", "worker_environ", "worker_spawn_environ"]

_KEY = "cellscale.cluster.worker-environ"
_PRE_SPAWN = "distributed.nanny.pre-spawn-environ"


def worker_environ() -> dict[str, str]:
    """The variables of ``cellscale.cluster.worker-environ`` (a null value leaves one out).

    Raises
    ------
    ValueError
        A name that is not an environment variable's (letters, digits, ``_``).
    """
    configured = dask.config.get(_KEY, default=None) or {}
    bad = [str(k) for k in configured if not str(k).isidentifier()]
    if bad:
        raise ValueError(f"{_KEY}: {bad} are not environment variable names")
    return {str(k): str(v) for k, v in configured.items() if v is not None}


@contextmanager
def worker_spawn_environ() -> Iterator[None]:
    """Within this block, nannies spawn their worker processes with :func:`worker_environ`.

    Examples
    --------
    >>> with dask.config.set({_KEY: {"MALLOC_TRIM_THRESHOLD_": 1 << 20}}):
    ...     with worker_spawn_environ():
    ...         dask.config.get(_PRE_SPAWN)["MALLOC_TRIM_THRESHOLD_"]
    '1048576'
    """
    merged = {**dask.config.get(_PRE_SPAWN, default={}), **worker_environ()}
    with dask.config.set({_PRE_SPAWN: merged}):
        yield


class WorkerNanny(Nanny):
    """A nanny whose worker process starts (and restarts) with :func:`worker_environ`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        with worker_spawn_environ():
            super().__init__(*args, **kwargs)


def export_lines() -> list[str]:
    """Job-script lines exporting :func:`worker_environ`, each kept if already set.

    Examples
    --------
    >>> with dask.config.set({_KEY: {"MALLOC_TRIM_THRESHOLD_": 1 << 20}}):
    ...     export_lines()
    ['export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-1048576}"']
    """
    return [
        f'export {name}="${{{name}:-{_double_quoted(value)}}}"'
        for name, value in worker_environ().items()
    ]


def _double_quoted(value: str) -> str:
    """``value`` escaped for a double-quoted shell word."""
    for special in ("\\", '"', "$", "`"):
        value = value.replace(special, "\\" + special)
    return value
