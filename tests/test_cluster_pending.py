"""SLURM jobs that never start say why: squeue/sinfo read from strings, the watcher with fakes.

The watcher runs on a real in-process scheduler whose "batch jobs" are fakes (submitted and
never started, or started a moment later), and squeue/sinfo are scripts put first on PATH.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from distributed import Scheduler, Worker
from distributed.deploy.spec import ProcessInterface

from cellscale.cluster import PooledCluster
from cellscale.cluster._pending import PendingJobWatcher, pending_message
from cellscale.cluster._squeue import (
    JobState,
    NodeGroup,
    parse_sinfo,
    parse_squeue,
    partition_nodes,
    squeue_jobs,
)

#: Fake job ids: 500, 501 … for the cpu pool, 600, 601 … for the gpu pool.
FIRST_ID = {"cpu": 500, "gpu": 600}


def test_parse_squeue_reads_state_partition_and_a_reason_with_spaces() -> None:
    text = (
        "174|PENDING|debug|PartitionConfig\n"
        "177|RUNNING|debug|None\n"
        "\n"
        "180|PENDING|gpu|ReqNodeNotAvail, UnavailableNodes:n[01-02]\n"
        "slurm_load_jobs error: Socket timed out\n"
    )
    assert parse_squeue(text) == {
        "174": JobState("PENDING", "debug", "PartitionConfig"),
        "177": JobState("RUNNING", "debug", "None"),
        "180": JobState("PENDING", "gpu", "ReqNodeNotAvail, UnavailableNodes:n[01-02]"),
    }


def test_parse_sinfo_reads_node_groups_and_skips_other_lines() -> None:
    text = "2|19321|gpu:1|1\n64+|257000+|(null)|12\nsinfo: error: no partition\n"
    assert parse_sinfo(text) == [
        NodeGroup(cpus=2, memory=19321 * 2**20, gres="gpu:1", nodes=1),
        NodeGroup(cpus=64, memory=257000 * 2**20, gres="(null)", nodes=12),
    ]


def test_pending_message_names_jobs_reason_request_partition_and_nodes() -> None:
    job = JobState("PENDING", "debug", "PartitionConfig")
    nodes = [NodeGroup(2, 19321 * 2**20, "gpu:1", 1), NodeGroup(64, 2**38, "(null)", 12)]
    text = pending_message("cpu", ["174"], 61.6, job, {"cores": 4, "memory": "16GiB"}, nodes)
    assert text == (
        "SLURM job 174 of the cpu pool has been pending for 62 s: PartitionConfig; it asks "
        "for 4 cores, 16.00 GiB on partition 'debug'. The partition's nodes have 2 cores, "
        "18.87 GiB, gpu:1 (1 node); 64 cores, 256.00 GiB (12 nodes). PartitionConfig: the "
        "request exceeds what the partition allows (its nodes or its limits): ask for fewer "
        "cores, less memory or fewer GPUs, or use another partition."
    )


def test_pending_message_shares_one_line_between_alike_jobs() -> None:
    job = JobState("PENDING", "gpu", "QOSMaxGRESPerUser")
    ids = [str(i) for i in range(600, 607)]
    text = pending_message("gpu", ids, 90, job, {"cores": 1, "memory": "4GiB", "gpus": 2})
    assert text == (
        "SLURM jobs 600, 601, 602, 603, 604 and 2 more of the gpu pool have been pending for "
        "90 s: QOSMaxGRESPerUser; each asks for 1 core, 4.00 GiB, 2 GPUs on partition 'gpu'."
    )


@dataclass
class FakeSlurm:
    """squeue and sinfo scripts first on PATH: squeue prints ``queue``, both log to ``calls``."""

    queue: Path
    calls: Path

    def called(self, command: str) -> list[str]:
        """Arguments of each call of ``command`` so far."""
        if not self.calls.exists():
            return []
        lines = self.calls.read_text().splitlines()
        return [line.split(" ", 1)[1] for line in lines if line.split(" ", 1)[0] == command]


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
    fake = FakeSlurm(queue=tmp_path / "queue.txt", calls=tmp_path / "calls.txt")
    fake.queue.write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "squeue", f'echo "squeue $*" >> {fake.calls}\ncat {fake.queue}')
    _script(bin_dir / "sinfo", f'echo "sinfo $*" >> {fake.calls}\necho "2|19321|gpu:1|1"')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return fake


def test_squeue_and_sinfo_are_asked_in_their_fixed_formats(fake_slurm: FakeSlurm) -> None:
    fake_slurm.queue.write_text("174|PENDING|debug|Resources\n")
    assert squeue_jobs() == {"174": JobState("PENDING", "debug", "Resources")}
    assert partition_nodes("debug") == [NodeGroup(2, 19321 * 2**20, "gpu:1", 1)]
    assert fake_slurm.called("squeue") == [
        f"--noheader --format=%i|%T|%P|%r --user={getpass.getuser()}"
    ]
    assert fake_slurm.called("sinfo") == ["--noheader --partition=debug --format=%c|%m|%G|%D"]


def test_squeue_or_sinfo_that_fail_give_no_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _script(tmp_path / "squeue", "echo '174|PENDING|debug|Resources'; exit 1")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sinfo at all
    assert squeue_jobs() is None
    assert partition_nodes("debug") == []


class _SubmittedJob(ProcessInterface):
    """A batch job SLURM accepted (it has an id) and never starts."""

    def __init__(self, scheduler: str | None = None, name: str | None = None, **options: Any):
        super().__init__(scheduler, name)
        self.scheduler_address, self.name = scheduler, str(name)
        pool, number = self.name.split("-")
        self.job_id: str | None = None
        self._id = str(FIRST_ID[pool] + int(number))

    async def start(self) -> None:
        self.job_id = self._id
        await super().start()


class _LateStartingJob(_SubmittedJob):
    """A batch job whose worker starts half a second after submission."""

    async def start(self) -> None:
        await super().start()
        self._starting = asyncio.ensure_future(self._start_worker())

    async def _start_worker(self) -> None:
        await asyncio.sleep(0.5)
        self._worker = await Worker(self.scheduler_address, name=self.name, nthreads=1)

    async def close(self) -> None:
        await self._starting
        await self._worker.close()
        await super().close()


@contextmanager
def _cluster(job: type[ProcessInterface]) -> Iterator[PooledCluster]:
    """A cpu pool asking for 4 cores and 16 GiB a job, a gpu pool for 8, 32 GiB and 2 GPUs."""
    cpu = {"cores": 4, "memory": "16GiB"}
    gpu = {"cores": 8, "memory": "32GiB", "gpus": 2}
    cluster = PooledCluster(
        {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard": False}},
        {
            "cpu": (lambda n: {"cls": job, "options": cpu}, None),
            "gpu": (lambda n: {"cls": job, "options": gpu}, "GPU"),
        },
        name="fake-slurm",
    )
    try:
        yield cluster
    finally:
        cluster.close()


def _wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return sorted(r.getMessage() for r in caplog.records if r.name == "cellscale.cluster")


def test_jobs_pending_past_the_delay_are_explained_once_then_watching_stops(
    fake_slurm: FakeSlurm, caplog: pytest.LogCaptureFixture
) -> None:
    fake_slurm.queue.write_text(
        "500|PENDING|debug|PartitionConfig\n"
        "501|PENDING|debug|PartitionConfig\n"
        "502|RUNNING|debug|None\n"  # started, its worker not connected yet: nothing to say
        "600|PENDING|gpu|Resources\n"
    )
    with _cluster(_SubmittedJob) as cluster:
        watcher = PendingJobWatcher(cluster, delay=0.5, interval=0.1)
        cluster.pools["cpu"].scale(jobs=3)
        cluster.pools["gpu"].scale(jobs=1)
        _wait_for(lambda: watcher.running)
        _wait_for(lambda: len(_messages(caplog)) == 2 and not watcher.running)
        time.sleep(0.3)  # a few more checks would have time to repeat a message
    gpu, cpu = _messages(caplog)  # "SLURM job 600 …" sorts before "SLURM jobs 500 …"
    assert re.fullmatch(
        r"SLURM jobs 500, 501 of the cpu pool have been pending for \d s: PartitionConfig; "
        r"each asks for 4 cores, 16.00 GiB on partition 'debug'\. The partition's nodes "
        r"have 2 cores, 18.87 GiB, gpu:1 \(1 node\)\. PartitionConfig: the request exceeds .*",
        cpu,
    )
    assert re.fullmatch(
        r"SLURM job 600 of the gpu pool has been pending for \d s: Resources; it asks for "
        r"8 cores, 32.00 GiB, 2 GPUs on partition 'gpu'\. The partition's nodes have .*",
        gpu,
    )
    assert sorted(fake_slurm.called("sinfo")) == [
        "--noheader --partition=debug --format=%c|%m|%G|%D",
        "--noheader --partition=gpu --format=%c|%m|%G|%D",
    ]


def test_watching_stops_without_asking_squeue_once_the_workers_connect(
    fake_slurm: FakeSlurm,
) -> None:
    with _cluster(_LateStartingJob) as cluster:
        watcher = PendingJobWatcher(cluster, delay=30, interval=0.1)
        cluster.pools["cpu"].scale(jobs=1)
        _wait_for(lambda: watcher.running)
        _wait_for(lambda: cluster.pools["cpu"].observed == {"cpu-0"})
        _wait_for(lambda: not watcher.running)
        cluster.pools["gpu"].scale(jobs=1)  # a new job wakes it again
        _wait_for(lambda: watcher.running)
        _wait_for(lambda: not watcher.running)
    assert fake_slurm.called("squeue") == []


def test_watching_stops_when_the_cluster_closes(fake_slurm: FakeSlurm) -> None:
    with _cluster(_SubmittedJob) as cluster:
        watcher = PendingJobWatcher(cluster, delay=30, interval=0.1)
        cluster.pools["gpu"].scale(jobs=1)
        _wait_for(lambda: watcher.running)
    assert cluster.status.name == "closed"
    assert not watcher.running
    assert fake_slurm.called("squeue") == []


def test_squeue_is_asked_again_when_it_did_not_answer(
    fake_slurm: FakeSlurm, caplog: pytest.LogCaptureFixture
) -> None:
    squeue = fake_slurm.queue.with_name("bin") / "squeue"
    _script(squeue, f'echo "squeue $*" >> {fake_slurm.calls}\nexit 1')
    with _cluster(_SubmittedJob) as cluster:
        watcher = PendingJobWatcher(cluster, delay=0.2, interval=0.1)
        cluster.pools["cpu"].scale(jobs=1)
        _wait_for(lambda: len(fake_slurm.called("squeue")) >= 2)
        assert watcher.running
    assert not _messages(caplog)
