"""Several independently scaled worker pools attached to one scheduler.

A :class:`PooledCluster` is a :class:`distributed.SpecCluster` whose workers come in named
pools (``"cpu"``, ``"gpu"``). Every pool has its own worker template, its own
:meth:`WorkerPool.scale` and its own :meth:`WorkerPool.adapt`, and all of them connect to
the cluster's single scheduler, so one :class:`distributed.Client` drives them all.
Worker names are ``<pool>-<n>`` (``<pool>-<n>-<i>`` for the i-th process of a multi-process
job), which is how the scheduler's workers are mapped back to their pool.
"""

from __future__ import annotations

import asyncio
import html
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import dask
from dask.utils import parse_timedelta
from distributed import Adaptive, SpecCluster
from distributed.core import Status

from cellscale._compat import SpecClusterHooks, close_with_cluster, correct_state
from cellscale.cluster._dashboard import dashboard_link
from cellscale.cluster._logs import QUIET_DISTRIBUTED

__all__ = ["PoolAdaptive", "PooledCluster", "WorkerPool"]

#: Entry number -> SpecCluster worker spec (``cls``, ``options``, optional ``group``).
SpecFactory = Callable[[int], dict[str, Any]]


class WorkerPool:
    """A named pool of identical workers (or batch jobs) inside a :class:`PooledCluster`.

    Parameters
    ----------
    cluster
        The cluster whose scheduler the pool's workers join.
    name
        Pool name, a word without ``-`` (worker names start with it).
    spec
        Called with the entry number, returns the worker spec of that entry. An entry is one
        worker process, or one batch job holding ``len(spec["group"])`` worker processes.
    resource
        Name of the worker resource the pool provides (e.g. ``"GPU"``), or None for a pool
        of general-purpose workers. Adaptive scaling sizes a resource pool by the tasks that
        need that resource and a plain pool by the tasks that need none.
    """

    def __init__(
        self, cluster: PooledCluster, name: str, spec: SpecFactory, resource: str | None = None
    ) -> None:
        if not name.isidentifier() or "-" in name:
            raise ValueError(f"pool name {name!r} must be a word without '-'")
        self.cluster = cluster
        self.name = name
        self.spec = spec
        self.resource = resource
        self._adaptive: PoolAdaptive | None = None
        self._next = 0

    def __repr__(self) -> str:
        return f"<WorkerPool {self.name!r}: {len(self.observed)} of {len(self.plan)} workers>"

    # -- what the pool holds -------------------------------------------------------------
    def owns(self, worker_name: object) -> bool:
        """Whether a worker (or spec entry) of that name belongs to this pool."""
        return str(worker_name).split("-", 1)[0] == self.name

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        """The pool's spec entries (one per worker process or batch job), by entry name."""
        return {k: v for k, v in self.cluster.worker_spec.items() if self.owns(k)}

    @property
    def processes_per_entry(self) -> int:
        """Worker processes started by one entry (one batch job may hold several)."""
        return len(self.spec(0).get("group", [""]))

    @property
    def plan(self) -> set[str]:
        """Names of the workers the pool is meant to have."""
        return _expand(self.entries)

    @property
    def requested(self) -> set[str]:
        """Names of the planned workers whose process or job was started."""
        launched = set(self.cluster.workers)
        return _expand({k: v for k, v in self.entries.items() if k in launched})

    @property
    def observed(self) -> set[str]:
        """Names of the pool's workers connected to the scheduler."""
        workers = self.cluster.scheduler_info.get("workers", {}).values()
        return {str(w["name"]) for w in workers if self.owns(w["name"])}

    @property
    def connected_entries(self) -> set[str]:
        """Names of the entries (processes or batch jobs) with a worker connected."""
        return {_entry_of(w) for w in self.observed}

    # -- what Adaptive needs from a "cluster" ----------------------------------------------
    @property
    def status(self) -> Status:
        return self.cluster.status

    @property
    def loop(self) -> Any:
        """The cluster's event loop."""
        return self.cluster.loop

    @property
    def scheduler_comm(self) -> Any:
        return self.cluster.scheduler_comm

    def __await__(self) -> Any:
        return self.cluster.__await__()

    # -- scaling -------------------------------------------------------------------------
    def scale(self, n: int | None = None, jobs: int | None = None) -> None:
        """Ask for ``n`` workers (or ``jobs`` entries) in this pool; other pools are untouched.

        Parameters
        ----------
        n
            Number of worker processes; rounded up to whole entries (batch jobs).
        jobs
            Number of entries (batch jobs) instead of ``n``.
        """
        if jobs is None:
            jobs = math.ceil((n or 0) / self.processes_per_entry)
        entries = self.entries
        if len(entries) > jobs:
            connected = self.connected_entries
            order = [k for k in entries if k not in connected]
            order += [k for k in reversed(entries) if k in connected]
            for name in order[: len(entries) - jobs]:
                del self.cluster.worker_spec[name]
        if self.cluster.status not in (Status.closing, Status.closed):
            for _ in range(jobs - len(entries)):
                name, number = self._new_entry_name()
                self.cluster.worker_spec[name] = self.spec(number)
        self.loop.add_callback(correct_state, self.cluster)

    def scale_down(self, workers: Iterable[str]) -> Any:
        """Remove the entries (jobs) holding these workers from the pool's plan."""
        for name in {_entry_of(w) for w in workers}:
            if self.owns(name):
                self.cluster.worker_spec.pop(name, None)
        return correct_state(self.cluster)

    def adapt(self, minimum: int = 0, maximum: float = math.inf, **kwargs: Any) -> PoolAdaptive:
        """Scale this pool with the load it can serve, between ``minimum`` and ``maximum`` workers.

        Extra keyword arguments (``interval``, ``wait_count`` …) go to
        :class:`distributed.Adaptive`.
        """
        if self._adaptive is not None:
            self._adaptive.stop(reason="re-adapt")
        self._adaptive = PoolAdaptive(cast(Any, self), minimum=minimum, maximum=maximum, **kwargs)
        return self._adaptive

    def stop_adapting(self) -> None:
        """Stop adaptive scaling of this pool (its workers stay)."""
        if self._adaptive is not None:
            self._adaptive.stop(reason="stopped")
            self._adaptive = None

    def _new_entry_name(self) -> tuple[str, int]:
        while f"{self.name}-{self._next}" in self.cluster.worker_spec:
            self._next += 1
        self._next += 1
        return f"{self.name}-{self._next - 1}", self._next - 1


class PoolAdaptive(Adaptive):
    """Adaptive scaling of one :class:`WorkerPool`, by the tasks only that pool can run.

    A pool providing a resource is sized by the ready and running tasks that need it (one
    task per resource unit of a worker); a plain pool by the scheduler's usual
    :meth:`~distributed.Scheduler.adaptive_target`. Only the pool's own workers are retired,
    idle ones first.
    """

    cluster: WorkerPool  # type: ignore[assignment]

    async def target(self) -> int:
        pool = self.cluster
        scheduler: Any = pool.cluster.scheduler
        if pool.resource is None:
            return int(scheduler.adaptive_target(target_duration=self.target_duration))
        active = [*scheduler.unrunnable, *scheduler.queued]
        for ws in scheduler.workers.values():
            active.extend(ws.processing)
        needed = sum(1 for ts in active if pool.resource in (ts.resource_restrictions or {}))
        per_worker = max(
            (
                ws.resources.get(pool.resource, 0)
                for ws in scheduler.workers.values()
                if pool.owns(ws.name)
            ),
            default=1,
        )
        return math.ceil(needed / max(per_worker, 1))

    async def workers_to_close(self, target: int) -> list[str]:
        pool = self.cluster
        scheduler: Any = pool.cluster.scheduler
        mine = [ws for ws in scheduler.workers.values() if pool.owns(ws.name)]
        mine.sort(key=lambda ws: (len(ws.processing), ws.nbytes))
        return [str(ws.name) for ws in mine[: max(len(mine) - target, 0)]]


class PooledCluster(SpecClusterHooks, SpecCluster):
    """A SpecCluster whose workers come in named pools sharing one scheduler.

    ``cluster.pools["gpu"].scale(2)`` scales one pool; :meth:`scale` and :meth:`adapt` on the
    cluster itself act on the first (default) pool, so generic dask tools that call
    ``cluster.scale(n)`` grow the CPU pool.

    Parameters
    ----------
    scheduler
        SpecCluster scheduler spec (``{"cls": Scheduler, "options": {...}}``).
    pools
        Pool name -> (spec factory, resource or None), in order; the first is the default.
    security
        Security used to talk to the scheduler.
    name
        Cluster name shown on the dashboard.
    verbose
        Let distributed's INFO log lines through while the cluster runs; by default only
        its warnings and errors (of this process: the workers' own processes are told
        through their options).
    on_close
        Called once after the cluster closed (e.g. to remove temporary files).

    Attributes
    ----------
    launch_hooks
        Called without arguments on the cluster's event loop each time the cluster has
        brought its processes or batch jobs in line with the pools' plans (after a scale,
        an adaptive step or the replacement of a lost job).
    """

    def __init__(
        self,
        scheduler: dict[str, Any],
        pools: Mapping[str, tuple[SpecFactory, str | None]],
        *,
        security: Any = None,
        name: str | None = None,
        verbose: bool = False,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        if not pools:
            raise ValueError("a PooledCluster needs at least one pool")
        self.pools: dict[str, WorkerPool] = {
            pool_name: WorkerPool(self, pool_name, spec, resource)
            for pool_name, (spec, resource) in pools.items()
        }
        self._on_close = on_close
        self.launch_hooks: list[Callable[[], None]] = []
        self._quiet = not verbose
        if self._quiet:
            QUIET_DISTRIBUTED.acquire()
        try:
            super().__init__(
                workers={}, scheduler=scheduler, worker=None, security=security, name=name
            )
        except BaseException:
            self._release_quiet()
            raise

    @property
    def dashboard_link(self) -> str:
        """Link to the dashboard while the cluster runs, ``""`` once it is closed."""
        return dashboard_link(self)

    def __repr__(self) -> str:
        if self.status != Status.running:
            return f"<{type(self).__name__} {self.name!r}: {self.status.name}>"
        return super().__repr__()

    def _repr_html_(self, cluster_status: Any = None) -> str:
        if self.status != Status.running:  # no links to a dashboard that is gone
            return f"<p>{html.escape(repr(self))}</p>"
        return str(super()._repr_html_(cluster_status))

    @property
    def default_pool(self) -> WorkerPool:
        """The pool that :meth:`scale` and :meth:`adapt` act on (the first one)."""
        return next(iter(self.pools.values()))

    def scale(self, n: int = 0, memory: Any = None, cores: Any = None) -> None:
        """Scale the default pool to ``n`` workers (see ``cluster.pools`` for the others)."""
        if memory is not None or cores is not None:
            raise TypeError("scale a PooledCluster by worker count: pools[name].scale(n)")
        self.default_pool.scale(n)

    async def scale_down(self, workers: Iterable[str]) -> None:
        names = list(workers)
        for pool in self.pools.values():
            await pool.scale_down([w for w in names if pool.owns(w)])

    def adapt(self, *args: Any, **kwargs: Any) -> PoolAdaptive:
        """Adapt the default pool (see :meth:`WorkerPool.adapt`)."""
        return self.default_pool.adapt(*args, **kwargs)

    def after_correct_state(self) -> None:
        """Run the :attr:`launch_hooks`."""
        for hook in self.launch_hooks:
            hook()

    def on_worker_removed(self, address: str) -> None:
        """Forget a lost worker's job after ``distributed.deploy.lost-worker-timeout`` and
        start a replacement, so a pool refills when a job is cancelled or reaches its end.

        (SpecCluster's own handling, skipped, misses multi-process jobs and never refills.)
        """
        entry = _entry_of(str(self.scheduler_info["workers"][address]["name"]))
        delay = parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout"))
        asyncio.get_running_loop().call_later(delay, self._replace_lost, entry)

    def _replace_lost(self, entry: str) -> None:
        if self.status != Status.running or entry not in self.workers:
            return
        alive = {_entry_of(str(w["name"])) for w in self.scheduler_info["workers"].values()}
        if entry in alive:
            return
        close_with_cluster(self, self.workers.pop(entry).close())
        correct_state(self)

    def before_close(self) -> None:
        """Stop every pool's adaptive scaling and scale it to nothing."""
        for pool in self.pools.values():
            pool.stop_adapting()
            pool.scale(0)

    def after_close(self) -> None:
        """Let distributed's log lines through again and call ``on_close`` (once)."""
        self._release_quiet()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def _release_quiet(self) -> None:
        if self._quiet:
            self._quiet = False
            QUIET_DISTRIBUTED.release()


def _entry_of(worker_name: str) -> str:
    """Spec entry of a worker: ``cpu-3-1`` (process 1 of job 3) and ``cpu-3`` -> ``cpu-3``."""
    return "-".join(str(worker_name).split("-")[:2])


def _expand(entries: Mapping[str, dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for name, spec in entries.items():
        out.update(f"{name}{suffix}" for suffix in spec.get("group", [""]))
    return out
