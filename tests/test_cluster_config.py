"""Cluster settings: package YAML < user dask config files < environment < keyword arguments."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dask
import pytest
from distributed import get_worker

from cellscale import start_cluster
from cellscale.cluster._options import settings


@pytest.fixture
def fresh_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Lets a test change env vars and config files, then restores dask's config."""
    yield monkeypatch
    monkeypatch.undo()
    dask.config.refresh()


def test_package_yaml_defaults_are_in_dask_config() -> None:
    assert dask.config.get("cellscale.slurm.walltime") == "01:00:00"
    assert dask.config.get("cellscale.slurm.gpu.gpu-directive") == "--gres=gpu:{n}"
    assert dask.config.get("cellscale.cluster.kind") == "local"
    assert dask.config.get("cellscale.zarr.codec")  # the other sections survive


def test_clusters_are_quiet_and_explain_jobs_pending_a_minute_by_default() -> None:
    assert dask.config.get("cellscale.cluster.verbose") is False
    assert settings("slurm", {}, nested=("cpu", "gpu"))["explain_pending_after"] == "60s"
    given = {"explain_pending_after": False}
    assert settings("slurm", given, nested=("cpu", "gpu"))["explain_pending_after"] is False


def test_user_file_then_env_then_keyword_take_precedence(
    fresh_config: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "site.yaml").write_text(
        "cellscale:\n  slurm:\n    queue: fromfile\n    account: fromfile\n"
        "    walltime: '02:00:00'\n"
    )
    fresh_config.setenv("DASK_CELLSCALE__SLURM__ACCOUNT", "fromenv")
    fresh_config.setenv("DASK_CELLSCALE__SLURM__WALLTIME", "03:00:00")
    dask.config.refresh(paths=[str(tmp_path)])
    s = settings("slurm", {"walltime": "04:00:00"}, nested=("cpu", "gpu"))
    assert s["queue"] == "fromfile"  # user file over the package default (null)
    assert s["account"] == "fromenv"  # environment over the file
    assert s["walltime"] == "04:00:00"  # keyword over everything
    assert s["interface"] is None  # untouched keys keep the package default
    assert s["lifetime_stagger"] == "2 minutes"


def test_dask_config_set_is_seen_and_keyword_wins() -> None:
    with dask.config.set({"cellscale.slurm.gpu.gpus-per-job": 4}):
        assert settings("slurm.gpu", {})["gpus_per_job"] == 4
        assert settings("slurm.gpu", {"gpus_per_job": 2})["gpus_per_job"] == 2


def test_unknown_setting_lists_the_valid_ones() -> None:
    with pytest.raises(TypeError, match=r"cellscale.slurm.*valid:.*walltime"):
        settings("slurm", {"wall_time": "1:00:00"}, nested=("cpu", "gpu"))


def test_local_cluster_reads_config_and_env_gpu_count(fresh_config: pytest.MonkeyPatch) -> None:
    fresh_config.setenv("DASK_CELLSCALE__CLUSTER__LOCAL__N_WORKERS", "1")
    fresh_config.setenv("DASK_CELLSCALE__CLUSTER__LOCAL__PROCESSES", "False")
    fresh_config.setenv("CUDA_VISIBLE_DEVICES", "5,7")  # two visible GPUs: two GPU workers
    dask.config.refresh()
    with start_cluster(quiet=True, dashboard_address="127.0.0.1:0") as client:
        assert client.pools["cpu"].observed == {"cpu-0"}
        assert client.pools["gpu"].observed == {"gpu-0", "gpu-1"}


def test_local_gpu_worker_process_sees_only_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with start_cluster(
        "local", n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0", quiet=True
    ) as client:
        gpu = next(addr for addr, w in client.scheduler_info()["workers"].items() if w["resources"])
        seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"), workers=[gpu])
        assert seen == {gpu: "3"}
        name = client.submit(lambda: get_worker().name, resources={"GPU": 1}).result()
        assert name == "gpu-0"
