"""A cluster on this machine: CPU workers sized to it, plus GPU-tagged workers."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

import dask.config
from dask.system import CPU_COUNT
from distributed import Scheduler, Worker
from distributed.deploy.local import nprocesses_nthreads
from distributed.system import MEMORY_LIMIT

from cellscale._compat import correct_state
from cellscale.cluster._options import settings
from cellscale.cluster._pools import PooledCluster, SpecFactory
from cellscale.cluster._worker_environ import WorkerNanny
from cellscale.cluster._worker_signals import PRELOAD

__all__ = ["local_cluster", "visible_gpus"]


def visible_gpus() -> list[str]:
    """Identifiers of the GPUs this process may use (empty without any).

    ``CUDA_VISIBLE_DEVICES`` decides when it is set; otherwise ``nvidia-smi -L`` is asked.
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and not d.strip().startswith("-")]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=False)
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def local_cluster(
    options: Mapping[str, Any], dashboard_address: str, *, verbose: bool = False
) -> PooledCluster:
    """Start a :class:`PooledCluster` on this machine with a ``cpu`` and a ``gpu`` pool.

    Parameters
    ----------
    options
        Keyword overrides of ``cellscale.cluster.local`` (``n_workers``,
        ``threads_per_worker``, ``memory_limit``, ``gpu_workers``, ``processes``).
    dashboard_address
        Where the dashboard listens.
    verbose
        Let distributed's INFO log lines through, here and in the worker processes; by
        default only warnings and errors.

    Worker processes ignore Ctrl-C (``SIGINT``), which the terminal sends them too: this
    process handles it, and closing the cluster stops them. They start with the variables
    of ``cellscale.cluster.worker-environ`` (see
    :class:`~cellscale.cluster._worker_environ.WorkerNanny`).
    """
    s = settings("cluster.local", options)
    n_workers, threads = s["n_workers"], s["threads_per_worker"]
    if n_workers is None or threads is None:
        auto_workers, auto_threads = nprocesses_nthreads(CPU_COUNT)
        n_workers = auto_workers if n_workers is None else n_workers
        threads = auto_threads if threads is None else threads
    gpus = visible_gpus()
    gpu_workers = len(gpus) if s["gpu_workers"] is None else int(s["gpu_workers"])
    memory = s["memory_limit"]
    if memory == "auto":
        memory = MEMORY_LIMIT // max(n_workers + gpu_workers, 1)
    worker_cls = WorkerNanny if s["processes"] else Worker
    base = {
        "nthreads": threads,
        "memory_limit": memory,
        "host": "127.0.0.1",
        "silence_logs": False if verbose else logging.WARNING,
    }
    if worker_cls is WorkerNanny:  # worker processes leave Ctrl-C to this one
        base["preload"] = [*dask.config.get("distributed.worker.preload", []), PRELOAD]

    def cpu_spec(number: int) -> dict[str, Any]:
        return {"cls": worker_cls, "options": dict(base)}

    def gpu_spec(number: int) -> dict[str, Any]:
        opts: dict[str, Any] = dict(base, nthreads=1, resources={"GPU": 1})
        if gpus and worker_cls is WorkerNanny:
            opts["env"] = {"CUDA_VISIBLE_DEVICES": gpus[number % len(gpus)]}
        return {"cls": worker_cls, "options": opts}

    pools: dict[str, tuple[SpecFactory, str | None]] = {
        "cpu": (cpu_spec, None),
        "gpu": (gpu_spec, "GPU"),
    }
    scheduler = {
        "cls": Scheduler,
        "options": {"host": "127.0.0.1", "dashboard_address": dashboard_address},
    }
    cluster = PooledCluster(scheduler, pools, name="cellscale-local", verbose=verbose)
    cluster.pools["cpu"].scale(n_workers)
    cluster.pools["gpu"].scale(gpu_workers)
    cluster.sync(correct_state, cluster)  # wait until the workers are up
    return cluster
