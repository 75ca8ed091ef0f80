"""``start_cluster``: one call from a laptop or an HPC login node to a ready ``Client``."""

from __future__ import annotations

import contextlib
import html
import logging
import os
from collections.abc import Mapping
from typing import Any

import dask.config
from distributed import Client
from distributed.core import Status

from cellscale._compat import quiet_cancelled_gather, quiet_sync_cancel_race
from cellscale._script_guard import check_script_guard
from cellscale.cluster._dashboard import dashboard_message
from cellscale.cluster._gpu import KEEP_ANNOTATIONS
from cellscale.cluster._logs import QuietLogger
from cellscale.cluster._options import settings
from cellscale.cluster._pools import PooledCluster
from cellscale.cluster._worker_signals import quiet_for_shutdown

__all__ = ["ClusterClient", "start_cluster", "starts_worker_processes"]

_QUIET_NANNY = QuietLogger("distributed.nanny", logging.ERROR)


class ClusterClient(Client):
    """A :class:`distributed.Client` that owns its cluster: closing it closes the cluster.

    While it is open, graph optimisation keeps task annotations
    (:func:`~cellscale.cluster.preserve_annotations`), so GPU-tagged tasks stay on GPU
    workers whichever way a collection is computed. Its repr names the dashboard link while
    the cluster runs, and says ``closed`` once it is closed.
    """

    cluster: PooledCluster

    def __init__(self, cluster: PooledCluster) -> None:
        quiet_sync_cancel_race()  # a Ctrl-C while it waits prints no stray traceback
        quiet_cancelled_gather()
        KEEP_ANNOTATIONS.acquire()
        self._holds_config = True
        try:
            super().__init__(cluster, security=cluster.security)
        except BaseException:
            self._release_config()
            raise

    def __repr__(self) -> str:
        cluster = getattr(self, "cluster", None)
        if not isinstance(cluster, PooledCluster):  # not connected to its cluster yet
            return super().__repr__()
        if cluster.status != Status.running:
            return f"<{type(self).__name__} {cluster.name!r}: {cluster.status.name}>"
        workers = cluster.scheduler_info.get("workers", {}).values()
        threads = sum(w["nthreads"] for w in workers)
        text = f"<{type(self).__name__} {cluster.name!r}: workers={len(workers)}, threads={threads}"
        link = cluster.dashboard_link
        return f"{text}, dashboard={link}>" if link else f"{text}>"

    def _repr_html_(self) -> str:
        if isinstance(self.cluster, PooledCluster) and self.cluster.status != Status.running:
            return f"<p>{html.escape(repr(self))}</p>"  # no links to a dashboard that is gone
        return str(super()._repr_html_())

    @property
    def pools(self) -> dict[str, Any]:
        """The cluster's worker pools by name (``"cpu"``, ``"gpu"``): scale or adapt each."""
        return self.cluster.pools

    def close(self, *args: Any, **kwargs: Any) -> Any:
        """Close the client, then its cluster (cancelling every batch job).

        The workers are asked first to keep their distributed log quiet, so a deliberate
        close prints no tracebacks of tasks and heartbeats it cut short.
        """
        if self.status == "running" and self.cluster.status == Status.running:
            with contextlib.suppress(Exception):
                self.run(quiet_for_shutdown, os.getpid(), on_error="ignore")
        _QUIET_NANNY.acquire()  # "still alive after 4.0 seconds, killing": what close asks
        try:
            return super().close(*args, **kwargs)
        finally:
            try:
                self.cluster.close()
            finally:
                _QUIET_NANNY.release()
                self._release_config()

    def _release_config(self) -> None:
        if self._holds_config:
            self._holds_config = False
            KEEP_ANNOTATIONS.release()


def start_cluster(
    kind: str | None = None,
    *,
    dashboard_address: str | None = None,
    quiet: bool = False,
    verbose: bool | None = None,
    default_log_directory: str | os.PathLike[str] | None = None,
    **options: Any,
) -> ClusterClient:
    """Start a dask cluster with a CPU and a GPU worker pool and return its client.

    Both pools attach to one scheduler, so one client, one dashboard and one graph drive
    CPU stages and GPU stages (tasks marked with :func:`~cellscale.gpu_tasks` run on GPU
    workers only). Use the client as a context manager: leaving the block shuts the
    cluster down and cancels its batch jobs.

    Every setting comes from the ``cellscale.cluster`` / ``cellscale.slurm`` dask config
    (defaults in ``cellscale.yaml``; your ``~/.config/dask/*.yaml`` files and
    ``DASK_CELLSCALE__…`` environment variables override them); keyword arguments override
    the config. Keyword names are the config keys with ``_`` for ``-``.

    Parameters
    ----------
    kind
        ``"local"``: worker processes on this machine, sized to it, plus one GPU-tagged
        worker per visible GPU (``gpu_workers=n`` forces ``n``, e.g. to try the GPU path on
        a CPU-only machine). Options: ``n_workers``, ``threads_per_worker``,
        ``memory_limit``, ``gpu_workers``, ``processes``.
        ``"slurm"``: the scheduler runs here (a login node), workers in batch jobs; the
        ``cpu`` pool's jobs run :class:`dask_jobqueue.SLURMCluster`'s worker command, the
        ``gpu`` pool's jobs ask for GPUs (``gpu_directive``) and run one worker per GPU
        with ``--resources GPU=1``. Options: ``queue``, ``account``, ``walltime``,
        ``interface``, ``local_directory``, ``log_directory`` (the folder of the jobs'
        ``#SBATCH -o`` / ``-e`` files; see ``default_log_directory``), ``job_script_prologue``,
        ``job_extra_directives``, ``python``, ``death_timeout``, ``lifetime_margin``,
        ``lifetime_stagger``, ``lifetime_restart``, ``security``,
        ``shared_temp_directory``, ``explain_pending_after`` (a job still pending after
        that long is explained: SLURM's reason beside the request and the partition's
        nodes; None or False: never), and ``cpu={...}`` / ``gpu={...}`` with ``jobs``,
        ``cores``, ``memory``, ``processes`` (cpu), ``queue``, ``gpus_per_job``,
        ``gpu_directive`` (gpu).
        Default: ``cellscale.cluster.kind``.
    dashboard_address
        Where the dashboard listens; default ``cellscale.cluster.dashboard-address``
        (localhost only).
    quiet
        Do not print the dashboard link (and the ssh command that forwards it).
    verbose
        Show distributed's INFO log lines (scheduler, nanny and worker start-up and
        shutdown) on stderr; by default only its warnings and errors are shown. Default:
        ``cellscale.cluster.verbose``.
    default_log_directory
        SLURM only: where the jobs write their output files when ``log_directory`` is not
        set (neither as a keyword nor in the config); :func:`cellscale.run` passes its
        output folder's ``logs/``. Default: ``~/.cellscale/slurm-logs``.

    Returns
    -------
    ClusterClient
        A :class:`distributed.Client`; ``client.pools["cpu"]`` and ``client.pools["gpu"]``
        scale (``.scale(n)``, ``.scale(jobs=n)``) and adapt (``.adapt(minimum, maximum)``)
        each pool on its own; ``client.cluster.scale(n)`` scales the CPU pool.

    Examples
    --------
    >>> with start_cluster("local", n_workers=1, gpu_workers=1, quiet=True) as client:
    ...     sorted(client.pools)
    ['cpu', 'gpu']

    In a script, start it under ``if __name__ == "__main__":``: worker processes import
    the script again and would run its top level too. Called from a script's unguarded
    top level, it stops the script at once (one line on stderr, exit status 1).
    """
    given = {"kind": kind, "dashboard_address": dashboard_address, "verbose": verbose}
    s = settings("cluster", given, nested=("local",))
    kind, address = s["kind"], s["dashboard_address"]
    if starts_worker_processes(kind, options):
        check_script_guard()
    if kind == "local":
        from cellscale.cluster._local import local_cluster

        cluster = local_cluster(options, address, verbose=bool(s["verbose"]))
        remote_user = "SSH_CONNECTION" in os.environ
    elif kind == "slurm":
        from cellscale.cluster._slurm import slurm_cluster

        cluster = slurm_cluster(
            options,
            address,
            verbose=bool(s["verbose"]),
            default_log_directory=default_log_directory,
        )
        remote_user = True
    else:
        raise ValueError(f"cluster kind must be 'local' or 'slurm', got {kind!r}")
    try:
        client = ClusterClient(cluster)
    except BaseException:
        cluster.close()
        raise
    if not quiet:
        print(dashboard_message(cluster, ssh_hint=remote_user), flush=True)
    return client


def starts_worker_processes(kind: str | None, options: Mapping[str, Any]) -> bool:
    """Whether :func:`start_cluster` with these arguments starts processes that import ``__main__``.

    Local clusters with ``processes`` do, unless workers are forked rather than spawned;
    SLURM workers run the ``dask worker`` command in batch jobs and do not.
    """
    kind = settings("cluster", {"kind": kind}, nested=("local",))["kind"]
    if kind != "local":
        return False
    processes = settings("cluster.local", {"processes": options.get("processes")})["processes"]
    method = dask.config.get("distributed.worker.multiprocessing-method", "spawn")
    return bool(processes) and method != "fork"
