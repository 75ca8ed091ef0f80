"""``start_cluster``: one call from a laptop or an HPC login node to a ready ``Client``."""

from __future__ import annotations

import os
from typing import Any

from distributed import Client

from cellscale.cluster._dashboard import dashboard_message
from cellscale.cluster._gpu import KEEP_ANNOTATIONS
from cellscale.cluster._pools import PooledCluster
from cellscale.config import config_value

__all__ = ["ClusterClient", "start_cluster"]


class ClusterClient(Client):
    """A :class:`distributed.Client` that owns its cluster: closing it closes the cluster.

    While it is open, graph optimisation keeps task annotations
    (:func:`~cellscale.cluster.preserve_annotations`), so GPU-tagged tasks stay on GPU
    workers whichever way a collection is computed.
    """

    cluster: PooledCluster

    def __init__(self, cluster: PooledCluster) -> None:
        KEEP_ANNOTATIONS.acquire()
        self._holds_config = True
        try:
            super().__init__(cluster, security=cluster.security)
        except BaseException:
            self._release_config()
            raise

    @property
    def pools(self) -> dict[str, Any]:
        """The cluster's worker pools by name (``"cpu"``, ``"gpu"``): scale or adapt each."""
        return self.cluster.pools

    def close(self, *args: Any, **kwargs: Any) -> Any:
        """Close the client, then its cluster (cancelling every batch job)."""
        try:
            return super().close(*args, **kwargs)
        finally:
            self.cluster.close()
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
        ``interface``, ``local_directory``, ``log_directory``, ``job_script_prologue``,
        ``job_extra_directives``, ``python``, ``death_timeout``, ``lifetime_margin``,
        ``lifetime_stagger``, ``lifetime_restart``, ``security``,
        ``shared_temp_directory``, and ``cpu={...}`` / ``gpu={...}`` with ``jobs``,
        ``cores``, ``memory``, ``processes`` (cpu), ``queue``, ``gpus_per_job``,
        ``gpu_directive`` (gpu).
        Default: ``cellscale.cluster.kind``.
    dashboard_address
        Where the dashboard listens; default ``cellscale.cluster.dashboard-address``
        (localhost only).
    quiet
        Do not print the dashboard link (and the ssh command that forwards it).

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
    """
    kind = config_value("cluster.kind", kind)
    address = config_value("cluster.dashboard-address", dashboard_address)
    if kind == "local":
        from cellscale.cluster._local import local_cluster

        cluster = local_cluster(options, address)
        remote_user = "SSH_CONNECTION" in os.environ
    elif kind == "slurm":
        from cellscale.cluster._slurm import slurm_cluster

        cluster = slurm_cluster(options, address)
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
