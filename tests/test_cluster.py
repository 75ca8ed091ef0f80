"""In-process tier: local clusters with a GPU-tagged pool, task marks, dashboard, pools."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import get_worker, wait
from distributed.utils import key_split

from cellscale import gpu_tasks, start_cluster
from cellscale.cluster import ClusterClient, preserve_annotations, task_name
from cellscale.cluster._dashboard import dashboard_message
from cellscale.cluster._worker_signals import quiet_for_shutdown


@pytest.fixture(autouse=True)
def _any_free_dashboard_port() -> Iterator[None]:
    """Tests must not collide on port 8787 with each other or with a running cluster."""
    with dask.config.set({"cellscale.cluster.dashboard-address": "127.0.0.1:0"}):
        yield


@pytest.fixture
def client() -> Iterator[ClusterClient]:
    """One plain and one GPU-tagged worker, threads in this process."""
    with start_cluster(
        "local",
        n_workers=1,
        threads_per_worker=1,
        gpu_workers=1,
        processes=False,
        quiet=True,
    ) as c:
        yield c


def _worker_names(block: np.ndarray) -> np.ndarray:
    return np.full(block.shape, get_worker().name, dtype=object)


def _wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def _tagged_graph() -> tuple[da.Array, da.Array]:
    """Untagged upstream (elementwise chain dask fuses) feeding a GPU-tagged layer."""
    upstream = (da.ones((40, 40), chunks=(10, 7)) + 1) * 2
    with gpu_tasks():
        tagged = upstream.map_blocks(_worker_names, dtype=object)
    return upstream, tagged


def test_tagged_tasks_run_only_on_gpu_worker_untagged_anywhere(client: ClusterClient) -> None:
    upstream, tagged = _tagged_graph()
    up, tag = client.persist([upstream, tagged])
    wait([up, tag])
    tasks = client.cluster.scheduler.tasks
    up_keys = [k for row in up.__dask_keys__() for k in row]
    tag_keys = [k for row in tag.__dask_keys__() for k in row]
    assert all(tasks[k].resource_restrictions is None for k in up_keys)
    assert all(tasks[k].resource_restrictions == {"GPU": 1} for k in tag_keys)
    assert set(tag.compute().ravel()) == {"gpu-0"}
    np.testing.assert_array_equal(up.compute(), np.full((40, 40), 4.0))


def test_dask_compute_and_downstream_reductions_keep_the_mark(client: ClusterClient) -> None:
    _, tagged = _tagged_graph()
    names = tagged.map_blocks(lambda b: (b == "gpu-0").astype(int), dtype=int).sum()
    assert dask.compute(names)[0] == 40 * 40  # dask.compute through the default client


def _optimized_layer_annotations(arr: da.Array) -> dict[str, object]:
    """Annotations per layer of the graph that ``compute`` hands to the scheduler."""
    graph = arr.__dask_optimize__(arr.__dask_graph__(), arr.__dask_keys__())
    return {name: layer.annotations for name, layer in getattr(graph, "layers", {}).items()}


def test_default_optimisation_drops_the_mark_preserve_keeps_it() -> None:
    _, tagged = _tagged_graph()
    default = _optimized_layer_annotations(tagged)
    assert {"resources": {"GPU": 1}} not in default.values()  # why preserve_annotations exists
    with preserve_annotations():
        kept = _optimized_layer_annotations(tagged)
    gpu = {name for name, a in kept.items() if a == {"resources": {"GPU": 1}}}
    assert len(gpu) == 1 and next(iter(gpu)).startswith(tagged.name)
    others = [a for name, a in kept.items() if name not in gpu]
    assert others and all(a is None for a in others)  # upstream not dragged onto the GPU


def test_gpu_tasks_rejects_zero_gpus() -> None:
    with pytest.raises(ValueError, match="at least 1"), gpu_tasks(0):
        pass


def test_client_context_closes_cluster_and_restores_config() -> None:
    assert dask.config.get("optimization.fuse.active", None) is not False
    with start_cluster("local", n_workers=1, processes=False, quiet=True) as c:
        cluster = c.cluster
        assert dask.config.get("optimization.fuse.active") is False
    assert cluster.status.name == "closed"
    assert cluster.scheduler.status.name == "closed"
    assert dask.config.get("optimization.fuse.active", None) is not False


def test_config_restored_only_when_the_last_client_closes() -> None:
    first = start_cluster("local", n_workers=1, processes=False, quiet=True)
    with start_cluster("local", n_workers=1, processes=False, quiet=True):
        first.close()
        assert dask.config.get("optimization.fuse.active") is False  # second still open
    assert dask.config.get("optimization.fuse.active", None) is not False
    assert dask.config.get("scheduler", None) is None  # not left on a closed client's scheduler


def test_dashboard_link_printed_and_status_answers(capsys: pytest.CaptureFixture[str]) -> None:
    with start_cluster("local", n_workers=1, processes=False, dashboard_address="localhost:0") as c:
        out = capsys.readouterr().out
        port = c.cluster.scheduler_info["services"]["dashboard"]
        link = f"http://localhost:{port}/status"
        assert link in out
        with urllib.request.urlopen(link, timeout=10) as response:
            assert response.status == 200
            assert b"bokeh" in response.read().lower()
        hosts = {s.getsockname()[0] for s in c.cluster.scheduler.http_server._sockets.values()}
        assert hosts <= {"127.0.0.1", "::1"}


def test_ssh_hint_names_the_forwarded_port(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_CONNECTION", "10.0.0.1 5000 10.0.0.2 22")
    with start_cluster("local", n_workers=1, processes=False, dashboard_address="localhost:0") as c:
        port = c.cluster.scheduler_info["services"]["dashboard"]
    assert f"ssh -N -L {port}:localhost:{port} " in capsys.readouterr().out


def test_dashboard_link_shown_only_while_the_cluster_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = start_cluster(
        "local", n_workers=1, gpu_workers=0, processes=False, dashboard_address="localhost:0"
    )
    try:
        port = client.cluster.scheduler_info["services"]["dashboard"]
        link = f"http://localhost:{port}/status"
        assert link in capsys.readouterr().out
        assert client.dashboard_link == link
        expected = f"<ClusterClient 'cellscale-local': workers=1, threads=1, dashboard={link}>"
        assert repr(client) == expected
        assert link in client._repr_html_()
    finally:
        client.close()
    assert client.dashboard_link == client.cluster.dashboard_link == ""
    assert repr(client) == "<ClusterClient 'cellscale-local': closed>"
    assert repr(client.cluster) == "<PooledCluster 'cellscale-local': closed>"
    assert str(port) not in client._repr_html_() + client.cluster._repr_html_()
    message = dashboard_message(client.cluster, ssh_hint=True)
    assert message == "cellscale: cluster 'cellscale-local' is closed: no dashboard"


def _distributed_info(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("distributed") and r.levelno < logging.WARNING
    ]


def test_distributed_info_logs_are_off_unless_verbose(caplog: pytest.LogCaptureFixture) -> None:
    level = logging.getLogger("distributed").level
    with start_cluster("local", n_workers=1, gpu_workers=0, processes=False, quiet=True):
        assert not logging.getLogger("distributed").isEnabledFor(logging.INFO)
    assert _distributed_info(caplog) == []
    assert logging.getLogger("distributed").level == level  # given back at close
    with start_cluster("local", n_workers=1, gpu_workers=0, processes=False, verbose=True):
        pass
    assert any("Scheduler at" in line for line in _distributed_info(caplog))


def test_verbose_comes_from_config_and_the_keyword_wins(caplog: pytest.LogCaptureFixture) -> None:
    options = {"n_workers": 1, "gpu_workers": 0, "processes": False, "quiet": True}
    with dask.config.set({"cellscale.cluster.verbose": True}):
        with start_cluster("local", verbose=False, **options):
            pass
        assert _distributed_info(caplog) == []
        with start_cluster("local", **options):
            pass
    assert any("Scheduler at" in line for line in _distributed_info(caplog))


def test_worker_processes_are_quiet_too(capfd: pytest.CaptureFixture[str]) -> None:
    with start_cluster("local", n_workers=1, gpu_workers=0, threads_per_worker=1, quiet=True) as c:
        assert c.submit(sum, [1, 2]).result() == 3
    err = capfd.readouterr().err
    assert "- INFO -" not in err, err


def _environ(names: tuple[str, ...]) -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in names}


def test_worker_processes_start_with_the_configured_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "CELLSCALE_TEST_VARIABLE")
    for name in names:  # the nanny exports them here too: restored after the test
        monkeypatch.setenv(name, "recorded")  # so that monkeypatch restores the original
        monkeypatch.delenv(name)
    with start_cluster("local", n_workers=1, gpu_workers=0, threads_per_worker=1, quiet=True) as c:
        (default,) = c.run(_environ, names).values()
    assert default == {
        "MALLOC_MMAP_THRESHOLD_": str(32 << 20),  # glibc reads them as the process starts
        "MALLOC_TRIM_THRESHOLD_": str(128 << 20),
        "CELLSCALE_TEST_VARIABLE": None,
    }
    for name in names:
        monkeypatch.delenv(name, raising=False)
    own = {"MALLOC_MMAP_THRESHOLD_": None, "CELLSCALE_TEST_VARIABLE": "on"}
    with (
        dask.config.set({"cellscale.cluster.worker-environ": own}),
        start_cluster("local", n_workers=1, gpu_workers=0, quiet=True) as c,
    ):
        (configured,) = c.run(_environ, names).values()
    assert configured["CELLSCALE_TEST_VARIABLE"] == "on"
    assert configured["MALLOC_MMAP_THRESHOLD_"] is None  # null leaves it out
    assert configured["MALLOC_TRIM_THRESHOLD_"] == "65536"  # not named: distributed's own


def test_pools_scale_independently(client: ClusterClient) -> None:
    cpu, gpu = client.pools["cpu"], client.pools["gpu"]
    gpu.scale(2)
    _wait_for(lambda: gpu.observed == {"gpu-0", "gpu-1"})
    assert cpu.observed == {"cpu-0"}
    client.cluster.scale(2)  # the cluster's own scale() acts on the CPU pool
    _wait_for(lambda: cpu.observed == {"cpu-0", "cpu-1"})
    gpu.scale(0)
    _wait_for(lambda: not gpu.observed)
    assert cpu.observed == {"cpu-0", "cpu-1"}
    gpu_workers = [w for w in client.scheduler_info()["workers"].values() if w.get("resources")]
    assert gpu_workers == []


def test_gpu_pool_adapts_to_gpu_tasks_only(client: ClusterClient) -> None:
    gpu = client.pools["gpu"]
    gpu.scale(0)
    _wait_for(lambda: not gpu.observed)
    adaptive = gpu.adapt(minimum=0, maximum=2, interval="50ms", wait_count=2)
    assert client.submit(sum, [1, 2], pure=False).result() == 3  # CPU task: no GPU worker
    assert not gpu.plan
    with gpu_tasks():
        future = client.submit(lambda: get_worker().name, pure=False)
    assert future.result(timeout=20).startswith("gpu-")
    del future
    _wait_for(lambda: not gpu.plan)  # idle again: back to the minimum
    assert adaptive.log  # it scaled up and down
    assert client.pools["cpu"].observed == {"cpu-0"}


def test_lost_worker_is_replaced(client: ClusterClient) -> None:
    cpu = client.pools["cpu"]
    before = {w["name"]: a for a, w in client.scheduler_info()["workers"].items()}
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "100ms"}):
        client.cluster.sync(client.cluster.workers["cpu-0"].close)
        _wait_for(lambda: "cpu-0" not in {w["name"] for w in _workers(client)})
        _wait_for(lambda: cpu.observed == {"cpu-0"})
    after = {w["name"]: a for a, w in client.scheduler_info()["workers"].items()}
    assert after["cpu-0"] != before["cpu-0"]  # a new worker under the same name


def _workers(client: ClusterClient) -> list[dict]:
    return list(client.cluster.scheduler_info["workers"].values())


def test_local_cluster_sized_to_machine_with_memory_limits() -> None:
    from dask.system import CPU_COUNT
    from distributed.system import MEMORY_LIMIT

    with start_cluster("local", processes=False, gpu_workers=1, quiet=True) as c:
        workers = c.scheduler_info()["workers"].values()
        cpu = [w for w in workers if not w.get("resources")]
        assert sum(w["nthreads"] for w in cpu) == CPU_COUNT
        assert sum(w["memory_limit"] for w in workers) <= MEMORY_LIMIT
        assert all(w["memory_limit"] > 0 for w in workers)


def test_unknown_kind_and_option_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="'local' or 'slurm'"):
        start_cluster("kubernetes")
    with pytest.raises(TypeError, match="n_wrokers"):
        start_cluster("local", n_wrokers=2)


def test_task_name_reads_stage_and_unit_and_groups_per_stage() -> None:
    assert task_name("project", well="B03", field=2) == "project-B03-f2"
    assert task_name("extract-crops", t=1, well="b3") == "extract-crops-t1-B03"
    keyed = task_name("segment", well="H12", field=0, token=np.arange(3))
    assert keyed.startswith("segment-H12-f0-")
    assert key_split(keyed) == "segment"
    assert key_split((task_name("extract-crops", well="A01"), 0, 0)) == "extract-crops"


def test_task_name_rejects_stage_names_the_dashboard_would_cut() -> None:
    with pytest.raises(ValueError, match="'embed'"):
        task_name("embed-v2", well="B03")


_CLOSE_WHILE_A_TASK_RUNS = """
import time
from cellscale import start_cluster
if __name__ == "__main__":
    with start_cluster("local", n_workers=1, gpu_workers=0, threads_per_worker=1) as client:
        client.submit(time.sleep, 30)
        time.sleep(1.5)
"""


@pytest.mark.slow
def test_closing_on_purpose_prints_nothing_of_the_tasks_it_cuts_short(tmp_path: Path) -> None:
    script = tmp_path / "close.py"
    script.write_text(_CLOSE_WHILE_A_TASK_RUNS)
    command = [sys.executable, str(script)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "CancelledError" not in done.stderr and "WARNING" not in done.stderr, done.stderr


def test_the_shutdown_quiet_leaves_the_clients_own_process_alone() -> None:
    distributed_log = logging.getLogger("distributed")
    before = distributed_log.level
    assert quiet_for_shutdown(os.getpid()) is False
    assert distributed_log.level == before
