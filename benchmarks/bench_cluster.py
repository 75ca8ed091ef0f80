"""Cluster costs: SLURM worker start-up, and the scheduler's overhead per task.

1. Time from ``pool.scale()`` to the workers connected, on the local one-node SLURM
   (``../shared/slurm/slurm-up.sh``), for the CPU pool and for the GPU pool; baseline: the
   same call on a local cluster (a worker process on this machine).
2. Overhead per task: 100,000 tiny tasks through a local cellscale cluster (2 worker
   processes here) against the same graph on dask's threaded scheduler, same run.
3. Peak RSS of this process (the scheduler runs in it) and of its largest child.

Run: ``.venv/bin/python benchmarks/bench_cluster.py [--tasks 100000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

import dask
import dask.threaded

from cellscale import start_cluster
from cellscale.cluster import ClusterClient, WorkerPool


def inc(x: int) -> int:
    return x + 1


def _wait(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("workers did not arrive")
        time.sleep(0.02)


def _startup_seconds(pool: WorkerPool, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        pool.scale(jobs=1)
        _wait(lambda: len(pool.observed) == pool.processes_per_entry)
        times.append(time.perf_counter() - start)
        pool.scale(0)
        _wait(lambda: not pool.observed and not pool.requested)
        time.sleep(1)  # let SLURM release the job's resources
    return times


def bench_startup(repeats: int) -> None:
    with start_cluster("local", n_workers=0, gpu_workers=0, quiet=True) as client:
        local = statistics.median(_startup_seconds(client.pools["cpu"], repeats))
    print(f"local worker process, scale() -> connected: median {local:.2f} s ({repeats} runs)")
    if shutil.which("sbatch") is None:
        print("SLURM: sbatch not found, skipped (run ../shared/slurm/slurm-up.sh as root)")
        return
    tmp = tempfile.mkdtemp()
    with start_cluster(
        "slurm",
        interface="lo",
        walltime="00:20:00",
        shared_temp_directory=tmp,
        log_directory=tmp,
        dashboard_address="127.0.0.1:0",
        quiet=True,
        cpu={"cores": 1, "memory": "1GiB"},
        gpu={"cores": 1, "memory": "1GiB"},
    ) as client:
        for name in ("cpu", "gpu"):
            times = _startup_seconds(client.pools[name], repeats)
            med = statistics.median(times)
            print(
                f"SLURM {name} pool, scale(jobs=1) -> worker connected (TLS): median {med:.2f} s "
                f"(min {min(times):.2f}, max {max(times):.2f}, {repeats} runs) = "
                f"{med / local:.1f} x the local worker process"
            )


def _graph(n: int) -> tuple[dict, list]:
    dsk = {("inc", i): (inc, i) for i in range(n)}
    return dsk, list(dsk)


def bench_overhead(n: int, repeats: int) -> None:
    dsk, keys = _graph(n)
    threaded = []
    for _ in range(repeats):
        start = time.perf_counter()
        dask.threaded.get(dsk, keys)
        threaded.append(time.perf_counter() - start)
    t_threaded = statistics.median(threaded)
    with start_cluster("local", gpu_workers=0, quiet=True) as client:
        nthreads = client.nthreads()
        shape = f"{len(nthreads)} workers, {sum(nthreads.values())} threads"
        dist = [_run_distributed(client, n) for _ in range(repeats)]
    t_dist = statistics.median(dist)
    print(
        f"{n:,} tiny tasks, threaded scheduler: median {t_threaded:.2f} s "
        f"= {t_threaded / n * 1e6:.1f} us/task"
    )
    print(
        f"{n:,} tiny tasks, local cluster ({shape}): median {t_dist:.2f} s "
        f"= {t_dist / n * 1e6:.0f} us/task = {t_dist / t_threaded:.1f} x threaded "
        f"(runs: {', '.join(f'{t:.1f}' for t in dist)} s)"
    )
    print(f"=> size distributed tasks to >= {100 * t_dist / n * 1e3:.0f} ms (100 x overhead)")


def _run_distributed(client: ClusterClient, n: int) -> float:
    dsk, keys = _graph(n)
    start = time.perf_counter()
    results = client.get(dsk, keys)
    elapsed = time.perf_counter() - start
    if results[-1] != n:
        raise AssertionError("wrong result")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bench_startup(args.repeats)
    bench_overhead(args.tasks, args.repeats)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"peak RSS: this process (client + scheduler) {own:.0f} MiB, largest child {child:.0f} MiB"
    )


if __name__ == "__main__":
    main()
