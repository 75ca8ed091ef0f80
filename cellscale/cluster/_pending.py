"""Batch jobs that never start say why: SLURM's reason beside what the job asks for."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from dask.utils import format_bytes, parse_bytes
from distributed.core import Status
from tornado.ioloop import PeriodicCallback

from cellscale.cluster._pools import PooledCluster, WorkerPool
from cellscale.cluster._squeue import JobState, NodeGroup, partition_nodes, squeue_jobs

__all__ = ["PendingJobWatcher", "pending_message"]

logger = logging.getLogger("cellscale.cluster")

#: What the commonest reasons mean for the user (see SLURM's ``squeue`` man page).
_MEANINGS = {
    "PartitionConfig": "the request exceeds what the partition allows (its nodes or its "
    "limits): ask for fewer cores, less memory or fewer GPUs, or use another partition",
    "Resources": "the nodes that could run it are busy; it starts when they free up",
    "Priority": "jobs of higher priority are ahead of it",
    "ReqNodeNotAvail": "the nodes it could run on are down, drained or reserved",
}
_IDS_SHOWN = 5


def pending_message(
    pool: str,
    job_ids: Sequence[str],
    seconds: float,
    job: JobState,
    request: Mapping[str, Any],
    nodes: Sequence[NodeGroup] = (),
) -> str:
    """Say which jobs of a pool wait, for how long, why, what they ask for and what nodes have.

    Parameters
    ----------
    pool
        Name of the pool the jobs belong to.
    job_ids
        The waiting jobs (all alike: same pool, same reason).
    seconds
        How long the oldest of them has waited.
    job
        squeue's view of them (partition, reason).
    request
        The pool's job options: ``cores``, ``memory`` and, for GPU jobs, ``gpus``.
    nodes
        The partition's nodes, from sinfo; left out when empty.

    Examples
    --------
    >>> job = JobState("PENDING", "debug", "Resources")
    >>> pending_message("gpu", ["123"], 62.4, job, {"cores": 4, "memory": "16GiB", "gpus": 1})
    "SLURM job 123 of the gpu pool has been pending for 62 s: Resources; it asks for 4 cores, \
16.00 GiB, 1 GPU on partition 'debug'. Resources: the nodes that could run it are busy; it \
starts when they free up."
    """
    shown = ", ".join(job_ids[:_IDS_SHOWN])
    if len(job_ids) > _IDS_SHOWN:
        shown += f" and {len(job_ids) - _IDS_SHOWN} more"
    jobs, subject = (f"job {shown}", "it") if len(job_ids) == 1 else (f"jobs {shown}", "each")
    verb = "has" if len(job_ids) == 1 else "have"
    text = (
        f"SLURM {jobs} of the {pool} pool {verb} been pending for {seconds:.0f} s: {job.reason}; "
        f"{subject} asks for {_request(request)} on partition {job.partition!r}."
    )
    if nodes:
        text += f" The partition's nodes have {'; '.join(_node_group(g) for g in nodes)}."
    if job.reason in _MEANINGS:
        text += f" {job.reason}: {_MEANINGS[job.reason]}."
    return text


def _request(options: Mapping[str, Any]) -> str:
    parts = [_count(int(options["cores"]), "core")]
    parts.append(format_bytes(parse_bytes(options["memory"])))
    if options.get("gpus"):
        parts.append(_count(int(options["gpus"]), "GPU"))
    return ", ".join(parts)


def _node_group(group: NodeGroup) -> str:
    parts = [_count(group.cpus, "core"), format_bytes(group.memory)]
    if group.gres and group.gres != "(null)":
        parts.append(group.gres)
    return f"{', '.join(parts)} ({_count(group.nodes, 'node')})"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class PendingJobWatcher:
    """Explain, once each, the batch jobs of a cluster that stay pending past a delay.

    The watcher checks the cluster's launched jobs whose workers have not connected yet, on
    the cluster's event loop, while there are any: every time the cluster launches jobs it
    wakes, and it stops by itself as soon as every job it saw has started, been explained or
    gone, and when the cluster closes. squeue is asked only about jobs waiting past the
    delay, all of them in one call; a job that SLURM still holds as ``PENDING`` then gets one
    warning (logger ``cellscale.cluster``) with SLURM's reason, the pool's request and the
    partition's nodes (from sinfo). Jobs alike (same pool, partition and reason) share one
    warning.

    Parameters
    ----------
    cluster
        A cluster whose entries are batch jobs with a ``job_id`` (dask-jobqueue's jobs);
        other entries are ignored.
    delay
        Seconds a job may wait before it is explained.
    interval
        Seconds between checks; default a quarter of ``delay``, between 0.25 and 5.
    """

    def __init__(self, cluster: PooledCluster, delay: float, interval: float | None = None):
        self.cluster = cluster
        self.delay = delay
        interval = min(max(delay / 4, 0.25), 5.0) if interval is None else interval
        self._callback = PeriodicCallback(self._check, interval * 1000)
        self._since: dict[str, float] = {}  # job id -> when the watcher first saw it wait
        self._settled: set[str] = set()  # explained, or no longer pending
        cluster.periodic_callbacks["cellscale-pending-jobs"] = self._callback  # stops at close
        cluster.launch_hooks.append(self.wake)

    @property
    def running(self) -> bool:
        """Whether the watcher is checking jobs now."""
        return self._callback.is_running()

    def wake(self) -> None:
        """Start checking, on the cluster's loop, if some launched job waits for its workers."""
        if self._waiting() and not self.running:
            self._callback.start()

    async def _check(self) -> None:
        waiting = self._waiting()
        if not waiting:
            self._callback.stop()
            return
        now = time.monotonic()
        due = {job: pool for job, pool in waiting.items() if now - self._since[job] >= self.delay}
        if due:
            await self._explain(due)

    def _waiting(self) -> dict[str, WorkerPool]:
        """Job id -> pool of the launched jobs not settled and without a connected worker."""
        if self.cluster.status != Status.running:
            return {}
        launched: dict[str, WorkerPool] = {}
        for pool in self.cluster.pools.values():
            connected = pool.connected_entries
            for entry, job in self.cluster.workers.items():
                job_id = getattr(job, "job_id", None)
                if job_id is not None and pool.owns(entry) and entry not in connected:
                    launched[str(job_id)] = pool
        now = time.monotonic()
        self._since = {job_id: self._since.get(job_id, now) for job_id in launched}
        self._settled &= set(launched)
        return {job_id: p for job_id, p in launched.items() if job_id not in self._settled}

    async def _explain(self, due: Mapping[str, WorkerPool]) -> None:
        jobs = await asyncio.to_thread(squeue_jobs)
        if jobs is None:  # squeue did not answer: ask again at the next check
            return
        alike: dict[tuple[str, JobState], list[str]] = {}
        for job_id, pool in due.items():
            self._settled.add(job_id)
            state = jobs.get(job_id)
            if state is not None and state.state == "PENDING":
                alike.setdefault((pool.name, state), []).append(job_id)
        for (pool_name, state), job_ids in alike.items():
            await self._warn(self.cluster.pools[pool_name], state, job_ids)

    async def _warn(self, pool: WorkerPool, state: JobState, job_ids: list[str]) -> None:
        nodes = await asyncio.to_thread(partition_nodes, state.partition)
        now = time.monotonic()
        seconds = now - min(self._since.get(j, now) for j in job_ids)
        job_ids = sorted(job_ids, key=lambda j: (len(j), j))  # numeric order of numeric ids
        request = pool.spec(0)["options"]
        logger.warning(pending_message(pool.name, job_ids, seconds, state, request, nodes))
