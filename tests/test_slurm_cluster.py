"""Real-SLURM tier: a one-node SLURM on localhost (with a fake GPU), started for the session."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import get_worker

from cellscale import gpu_tasks, start_cluster
from cellscale.cluster import ClusterClient

pytestmark = pytest.mark.slurm

SLURM_SCRIPTS = Path(__file__).resolve().parents[2] / "shared" / "slurm"


@pytest.fixture(scope="session")
def slurm() -> Iterator[None]:
    """Start the one-node SLURM for the session and stop it at the end."""
    up = SLURM_SCRIPTS / "slurm-up.sh"
    if not up.is_file():
        pytest.skip(f"no {up}")
    if os.geteuid() != 0:
        pytest.skip("slurm-up.sh must run as root")
    # nproc (which sizes the node) obeys OMP_NUM_THREADS, which dask's worker nannies set to 1
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
    subprocess.run(["bash", str(up)], check=True, capture_output=True, timeout=600, env=env)
    try:
        yield
    finally:
        subprocess.run(["bash", str(SLURM_SCRIPTS / "slurm-down.sh")], timeout=120, check=False)


def _start(
    tmp: Path,
    cpu_jobs: int = 1,
    gpu_jobs: int = 1,
    memory: str = "1GiB",
    walltime: str = "00:10:00",
    cores: int = 1,
    **options: object,
) -> ClusterClient:
    return start_cluster(
        "slurm",
        interface="lo",
        walltime=walltime,
        lifetime_margin="1 minute",
        lifetime_stagger="1 minute",
        shared_temp_directory=str(tmp / "tls"),
        log_directory=str(tmp / "logs"),
        dashboard_address="127.0.0.1:0",
        quiet=True,
        cpu={"jobs": cpu_jobs, "cores": cores, "memory": memory},
        gpu={"jobs": gpu_jobs, "cores": 1, "memory": memory},
        **options,
    )


def _jobs() -> dict[str, tuple[str, str]]:
    """Job id -> (name, state) of every job in the queue."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True, check=True
    ).stdout
    return {i: (name, state) for i, name, state in (line.split() for line in out.splitlines())}


def _ids(name: str, state: str = "RUNNING") -> set[str]:
    return {i for i, (n, s) in _jobs().items() if n == name and s == state}


def _wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout} s; queue: {_jobs()}")
        time.sleep(0.25)


@pytest.fixture
def client(slurm: None, tmp_path: Path) -> Iterator[ClusterClient]:
    """Both pools, one one-core job each (the test node has two cores)."""
    with _start(tmp_path) as c:
        c.wait_for_workers(2, timeout=90)
        yield c


def _gpu_report(block: np.ndarray) -> np.ndarray:
    device = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    return np.full(block.shape, f"{get_worker().name}:{device}", dtype=object)


def test_both_pools_run_as_jobs_and_gpu_tasks_land_on_gpu_job(client: ClusterClient) -> None:
    assert client.scheduler.address.startswith("tls://")  # TLS by default on SLURM
    assert _ids("cellscale-cpu") and _ids("cellscale-gpu")
    names = {w["name"] for w in client.scheduler_info()["workers"].values()}
    assert names == {"cpu-0", "gpu-0-0"}
    upstream = (da.arange(60, chunks=7) + 1) * 2
    with gpu_tasks():
        report = upstream.map_blocks(_gpu_report, dtype=object)
        scaled = upstream.map_blocks(lambda b: b * 10, dtype=upstream.dtype)
    where, total = dask.compute(report, scaled.sum())
    assert set(where) == {"gpu-0-0:0"}  # SLURM's GRES gave the job GPU 0
    assert total == 10 * int(((np.arange(60) + 1) * 2).sum())


def _slow_square(x: int) -> int:
    time.sleep(0.2)
    return x * x


def test_scancel_mid_computation_completes_and_pool_refills(client: ClusterClient) -> None:
    (old,) = _ids("cellscale-cpu")
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}):
        futures = client.map(_slow_square, range(40), pure=False)
        total = client.submit(sum, futures)
        _wait_for(lambda: sum(f.done() for f in futures) >= 3, timeout=30)
        subprocess.run(["scancel", old], check=True)
        assert total.result(timeout=90) == sum(x * x for x in range(40))
        _wait_for(lambda: bool(_ids("cellscale-cpu") - {old}))
        _wait_for(lambda: client.pools["cpu"].observed == {"cpu-0"})
    assert old not in _jobs()


def test_pools_scale_apart_and_shutdown_leaves_no_jobs(slurm: None, tmp_path: Path) -> None:
    with _start(tmp_path, cpu_jobs=1, gpu_jobs=0) as c:
        c.wait_for_workers(1, timeout=60)
        assert not _ids("cellscale-gpu", "PENDING") and not _ids("cellscale-gpu")
        c.pools["gpu"].scale(jobs=1)
        _wait_for(lambda: c.pools["gpu"].observed == {"gpu-0-0"})
        c.pools["gpu"].scale(0)
        _wait_for(lambda: not [n for n, _ in _jobs().values() if n == "cellscale-gpu"])
        assert c.pools["cpu"].observed == {"cpu-0"}
        assert _ids("cellscale-cpu")
    _wait_for(lambda: not [n for n, _ in _jobs().values() if n.startswith("cellscale-")], 20)
    assert not (tmp_path / "tls").exists() or not any((tmp_path / "tls").iterdir())


def test_gpu_pool_adapts_by_gpu_tasks_on_slurm(slurm: None, tmp_path: Path) -> None:
    with _start(tmp_path, cpu_jobs=1, gpu_jobs=0) as c:
        c.pools["gpu"].adapt(minimum=0, maximum=1, interval="200ms", wait_count=2)
        assert c.submit(sum, [1, 2], pure=False).result(timeout=60) == 3  # CPU only
        assert not _ids("cellscale-gpu") and not _ids("cellscale-gpu", "PENDING")
        with gpu_tasks():
            where = c.submit(lambda: get_worker().name, pure=False)
        assert where.result(timeout=90) == "gpu-0-0"  # a GPU job was submitted for it
        del where
        _wait_for(lambda: not [n for n, _ in _jobs().values() if n == "cellscale-gpu"])
        assert _ids("cellscale-cpu")


def test_a_job_asking_for_more_cores_than_the_node_has_is_explained(
    slurm: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sinfo = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, check=True)
    node_cores = int(sinfo.stdout.split()[0])  # one node
    with _start(tmp_path, gpu_jobs=0, cores=node_cores + 1, explain_pending_after="2s"):
        _wait_for(lambda: bool(_ids("cellscale-cpu", "PENDING")), timeout=20)
        (job,) = _ids("cellscale-cpu", "PENDING")
        _wait_for(lambda: any(r.name == "cellscale.cluster" for r in caplog.records), 30)
    (message,) = [r.getMessage() for r in caplog.records if r.name == "cellscale.cluster"]
    assert re.match(
        rf"SLURM job {job} of the cpu pool has been pending for \d+ s: PartitionConfig; it asks "
        rf"for {node_cores + 1} cores, 1.00 GiB on partition 'debug'\. The partition's nodes "
        rf"have {node_cores} cores?, [\d.]+ GiB, gpu:1 \(1 node\)\.",
        message,
    ), message
    _wait_for(lambda: not [n for n, _ in _jobs().values() if n.startswith("cellscale-")], 20)


def test_the_pipeline_runs_on_slurm_and_survives_scancel_of_a_worker_job(
    slurm: None, tmp_path: Path
) -> None:
    import pandas as pd

    from cellscale import read_cells, run
    from tests.test_pipeline import BackgroundRun, screen_config

    config = screen_config(tmp_path / "slurm-run")
    config["plates"] = config["plates"][:1]
    with (
        dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}),
        _start(tmp_path, memory="4GiB", walltime="00:15:00") as client,
    ):
        client.wait_for_workers(2, timeout=120)
        (old,) = _ids("cellscale-cpu")
        background = BackgroundRun(config, client)
        _wait_for(lambda: background.reached("segment/P1"), timeout=240)
        assert background.thread.is_alive(), background.outcome.get("error")
        subprocess.run(["scancel", old], check=True)
        background.thread.join(600)
        assert old not in _jobs()
    result = background.outcome
    assert "error" not in result, result.get("error")
    reference = tmp_path / "local-run"
    local = screen_config(reference)
    local["plates"] = local["plates"][:1]
    with start_cluster("local", n_workers=1, gpu_workers=1, processes=False, quiet=True) as c:
        run(local, client=c, progress=False)
    pd.testing.assert_frame_equal(
        read_cells(tmp_path / "slurm-run" / "plates" / "P1" / "cells.parquet").compute(),
        read_cells(reference / "plates" / "P1" / "cells.parquet").compute(),
    )
