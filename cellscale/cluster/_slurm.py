"""SLURM: a CPU pool and a GPU pool of batch jobs, both attached to one TLS scheduler."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dask.utils import parse_timedelta
from distributed import Scheduler

from cellscale.cluster._options import settings
from cellscale.cluster._pending import PendingJobWatcher
from cellscale.cluster._pools import PooledCluster, SpecFactory
from cellscale.cluster._tls import cluster_security
from cellscale.cluster._worker_environ import export_lines

__all__ = [
    "DEFAULT_LOG_DIRECTORY",
    "job_log_directory",
    "lifetime_args",
    "slurm_cluster",
    "slurm_pool_specs",
    "slurm_settings",
    "walltime_seconds",
]

#: Where the jobs' output files go when neither ``log_directory`` nor the caller names a folder.
DEFAULT_LOG_DIRECTORY = "~/.cellscale/slurm-logs"

_WALLTIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")


def _job_classes() -> tuple[type, type]:
    try:
        from cellscale.cluster._jobs import GPUJob, SLURMJob
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "start_cluster(kind='slurm') needs dask-jobqueue: pip install 'cellscale[slurm]'"
        ) from err
    return SLURMJob, GPUJob


def walltime_seconds(walltime: str) -> int:
    """Seconds in a SLURM time limit (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``).

    Examples
    --------
    >>> walltime_seconds("01:30:00"), walltime_seconds("2-00"), walltime_seconds("45")
    (5400, 172800, 2700)
    """
    m = _WALLTIME.match(str(walltime).strip())
    if m is None:
        raise ValueError(f"cannot read SLURM walltime {walltime!r}")
    days, first = m.group("d"), int(m.group("a"))
    rest = [int(v) for v in m.group("b", "c") if v is not None]
    if days is not None:  # D-HH[:MM[:SS]]
        hms = [first, *rest, 0, 0][:3]
        return int(days) * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2]
    if len(rest) == 2:  # HH:MM:SS
        return first * 3600 + rest[0] * 60 + rest[1]
    return first * 60 + sum(rest)  # MM or MM:SS


def lifetime_args(walltime: str, margin: str, stagger: str, restart: bool) -> list[str]:
    """dask-worker arguments that retire a worker before its job's walltime ends.

    The worker leaves after ``walltime - margin - stagger`` plus a random part of
    ``stagger``, handing its data to other workers first; its job then ends and the pool
    submits a replacement. ``restart`` starts a fresh worker in the same job instead.
    """
    total = walltime_seconds(walltime)
    margin_s = parse_timedelta(margin, "s")
    stagger_s = parse_timedelta(stagger, "s")
    lifetime = total - margin_s - stagger_s
    if lifetime <= 0:
        raise ValueError(
            f"walltime {walltime!r} is too short for lifetime-margin {margin!r} plus "
            f"lifetime-stagger {stagger!r}: workers would retire before they start"
        )
    args = ["--lifetime", f"{int(lifetime)}s", "--lifetime-stagger", f"{int(stagger_s)}s"]
    return [*args, "--lifetime-restart"] if restart else args


def job_log_directory(configured: str | None, default: str | os.PathLike[str] | None) -> str:
    """The absolute folder the jobs' ``#SBATCH -o`` / ``-e`` files go to.

    The ``log_directory`` setting wins, then ``default`` (the run folder's ``logs/`` when
    :func:`cellscale.run` starts the cluster), then :data:`DEFAULT_LOG_DIRECTORY`. SLURM
    expands neither ``~`` nor environment variables in ``#SBATCH`` lines, so they are
    expanded here, on the login node. The folder must be visible from the compute nodes;
    it is made when the first job is.

    Examples
    --------
    >>> job_log_directory("/scratch/me/logs", "/runs/a/logs")
    '/scratch/me/logs'
    >>> job_log_directory(None, "/runs/a/logs")
    '/runs/a/logs'
    """
    chosen = configured or default or DEFAULT_LOG_DIRECTORY
    return os.path.abspath(Path(os.path.expandvars(os.fspath(chosen))).expanduser())


def slurm_settings(
    options: Mapping[str, Any], default_log_directory: str | os.PathLike[str] | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The ``cellscale.slurm`` settings and those of its ``cpu`` and ``gpu`` pools.

    Parameters
    ----------
    options
        Keyword overrides of ``cellscale.slurm``, with ``cpu=`` and ``gpu=`` dicts for
        the pool sections.
    default_log_directory
        The jobs' log folder when the ``log_directory`` setting is None (see
        :func:`job_log_directory`).

    Returns
    -------
    tuple of dict
        The common settings (``log_directory`` resolved to an absolute folder), then the
        ``cpu`` and the ``gpu`` pool's.
    """
    options = dict(options)
    cpu = settings("slurm.cpu", options.pop("cpu", None) or {})
    gpu = settings("slurm.gpu", options.pop("gpu", None) or {})
    common = settings("slurm", options, nested=("cpu", "gpu"))
    common["log_directory"] = job_log_directory(common["log_directory"], default_log_directory)
    return common, cpu, gpu


def slurm_pool_specs(
    common: Mapping[str, Any], cpu: Mapping[str, Any], gpu: Mapping[str, Any], worker_security: Any
) -> dict[str, tuple[SpecFactory, str | None]]:
    """Worker specs of the ``cpu`` and ``gpu`` pools (one entry = one batch job).

    Parameters
    ----------
    common
        Resolved ``cellscale.slurm`` settings.
    cpu, gpu
        Resolved ``cellscale.slurm.cpu`` / ``.gpu`` settings.
    worker_security
        Security whose worker certificate and key are files the jobs can read, or None.
    """
    lifetime = lifetime_args(
        common["walltime"],
        common["lifetime_margin"],
        common["lifetime_stagger"],
        bool(common["lifetime_restart"]),
    )
    shared = {
        "account": common["account"],
        "walltime": common["walltime"],
        "interface": common["interface"],
        "local_directory": common["local_directory"],
        "log_directory": common["log_directory"],
        "job_script_prologue": [*export_lines(), *common["job_script_prologue"]],
        "job_extra_directives": list(common["job_extra_directives"]),
        "python": common["python"],
        "death_timeout": common["death_timeout"],
        "protocol": "tls://" if worker_security is not None else "tcp://",
        "security": worker_security,
        "worker_extra_args": lifetime,
    }
    processes = int(cpu["processes"])
    cpu_options = dict(
        shared,
        queue=common["queue"],
        cores=int(cpu["cores"]),
        memory=str(cpu["memory"]),
        processes=processes,
        job_name="cellscale-cpu",
    )
    gpus = int(gpu["gpus_per_job"])
    gpu_options = dict(
        shared,
        queue=gpu["queue"] or common["queue"],
        cores=int(gpu["cores"]),
        memory=str(gpu["memory"]),
        gpus=gpus,
        gpu_directive=str(gpu["gpu_directive"]),
        job_name="cellscale-gpu",
    )
    cpu_cls, gpu_cls = _job_classes()
    cpu_group = [f"-{i}" for i in range(processes)] if processes > 1 else None
    gpu_group = [f"-{i}" for i in range(gpus)]

    def cpu_spec(number: int) -> dict[str, Any]:
        spec: dict[str, Any] = {"cls": cpu_cls, "options": cpu_options}
        return {**spec, "group": cpu_group} if cpu_group else spec

    def gpu_spec(number: int) -> dict[str, Any]:
        return {"cls": gpu_cls, "options": gpu_options, "group": gpu_group}

    return {"cpu": (cpu_spec, None), "gpu": (gpu_spec, "GPU")}


def slurm_cluster(
    options: Mapping[str, Any],
    dashboard_address: str,
    *,
    verbose: bool = False,
    default_log_directory: str | os.PathLike[str] | None = None,
) -> PooledCluster:
    """Start the scheduler here and the ``cpu`` and ``gpu`` pools as SLURM batch jobs.

    Jobs still pending after ``explain_pending_after`` are explained by a
    :class:`~cellscale.cluster._pending.PendingJobWatcher`.

    Parameters
    ----------
    options
        Keyword overrides of ``cellscale.slurm``, with ``cpu=`` and ``gpu=`` dicts for
        the pool sections.
    dashboard_address
        Where the dashboard listens (keep it on localhost on a shared login node).
    verbose
        Let the scheduler's INFO log lines through; by default only warnings and errors.
        (The workers log to their jobs' output files, in full.)
    default_log_directory
        Where the jobs' output files go unless ``log_directory`` says (see
        :func:`job_log_directory`).
    """
    common, cpu, gpu = slurm_settings(options, default_log_directory)
    security, worker_security, cleanup = cluster_security(
        common["security"], common["shared_temp_directory"]
    )
    try:
        pools = slurm_pool_specs(common, cpu, gpu, worker_security)
        scheduler = {
            "cls": Scheduler,
            "options": {
                "protocol": "tls://" if security is not None else "tcp://",
                "security": security,
                "interface": common["interface"],
                "dashboard_address": dashboard_address,
            },
        }
        cluster = PooledCluster(
            scheduler,
            pools,
            security=security,
            name="cellscale-slurm",
            verbose=verbose,
            on_close=cleanup,
        )
    except BaseException:
        cleanup()
        raise
    if common["explain_pending_after"] not in (None, False):
        PendingJobWatcher(cluster, parse_timedelta(common["explain_pending_after"], "s"))
    cluster.pools["cpu"].scale(jobs=int(cpu["jobs"]))
    cluster.pools["gpu"].scale(jobs=int(gpu["jobs"]))
    return cluster
