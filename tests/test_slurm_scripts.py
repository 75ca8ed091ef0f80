"""Job-script tier: both pools' batch scripts, as strings, without a SLURM."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import pytest

from cellscale.cluster._options import settings
from cellscale.cluster._slurm import lifetime_args, slurm_pool_specs, walltime_seconds
from cellscale.cluster._tls import cluster_security

pytest.importorskip("dask_jobqueue")

ADDRESS = "tls://10.1.2.3:8786"


@pytest.fixture
def worker_security(tmp_path: Path) -> Iterator[Any]:
    _, worker, cleanup = cluster_security("temporary", str(tmp_path / "tls"))
    yield worker
    cleanup()


def _scripts(worker_security: Any, cpu: dict | None = None, gpu: dict | None = None, **common: Any):
    base = {
        "queue": "short",
        "account": "lab42",
        "walltime": "02:00:00",
        "interface": "ib0",
        "job_script_prologue": ["module load cuda/12.4", "source ~/venvs/cs/bin/activate"],
        "local_directory": "$TMPDIR",
        **common,
    }
    pools = slurm_pool_specs(
        settings("slurm", base, nested=("cpu", "gpu")),
        settings("slurm.cpu", cpu or {}),
        settings("slurm.gpu", gpu or {}),
        worker_security,
    )
    out = {}
    for name, (spec_of, _) in pools.items():
        spec = spec_of(0)
        job = spec["cls"](ADDRESS, name=f"{name}-0", **spec["options"])
        out[name] = (job.job_script(), spec.get("group"))
    return out


def test_cpu_script_directives_prologue_lifetime_and_tls(worker_security: Any) -> None:
    script, group = _scripts(worker_security, cpu={"cores": 8, "memory": "30GiB"})["cpu"]
    for line in [
        "#SBATCH -J cellscale-cpu",
        "#SBATCH -p short",
        "#SBATCH -A lab42",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=30G",
        "#SBATCH -t 02:00:00",
        "module load cuda/12.4",
        "source ~/venvs/cs/bin/activate",
    ]:
        assert line in script.splitlines()
    assert script.index("module load") < script.index("dask_worker")
    worker = script.splitlines()[-1]
    # 2 h walltime - 5 min margin - 2 min stagger = 6780 s
    assert "--lifetime 6780s --lifetime-stagger 120s" in worker
    assert "--lifetime-restart" not in worker
    assert f"{ADDRESS} --name cpu-0 --nthreads 8 --memory-limit 30.00GiB" in worker
    assert "--protocol tls://" in worker and "--interface ib0" in worker
    assert "--local-directory $TMPDIR" in worker
    assert "--resources" not in worker  # CPU workers offer no GPU
    for flag in ["--tls-ca-file", "--tls-cert", "--tls-key"]:
        path = worker.split(flag + " ")[1].split()[0]
        assert Path(path).is_file()
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    assert group is None


def test_cpu_jobs_with_several_processes_are_groups(worker_security: Any) -> None:
    script, group = _scripts(worker_security, cpu={"cores": 8, "processes": 4})["cpu"]
    assert "--nthreads 2" in script and "--nworkers 4" in script
    assert group == ["-0", "-1", "-2", "-3"]  # dask worker names them cpu-0-0 … cpu-0-3


def test_gpu_script_one_worker_per_gpu_with_resource(worker_security: Any) -> None:
    gpu = {"gpus_per_job": 2, "cores": 8, "memory": "64GiB", "queue": "gpu"}
    script, group = _scripts(worker_security, gpu=gpu, lifetime_restart=True)["gpu"]
    lines = script.splitlines()
    for line in [
        "#SBATCH -J cellscale-gpu",
        "#SBATCH -p gpu",
        "#SBATCH -A lab42",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=65536M",
        "#SBATCH --gres=gpu:2",
        "module load cuda/12.4",
    ]:
        assert line in lines
    worker = next(line for line in lines if "dask_worker" in line)
    assert "--name gpu-0-$i --nthreads 4 --memory-limit 32.00GiB" in worker
    assert "--resources GPU=1" in worker and "--nworkers" not in worker
    assert "--lifetime 6780s --lifetime-stagger 120s --lifetime-restart" in worker
    assert group == ["-0", "-1"]


@pytest.mark.parametrize(
    ("directive", "expected"),
    [("--gpus={n}", "#SBATCH --gpus=1"), ("--gres=gpu:a100:{n}", "#SBATCH --gres=gpu:a100:1")],
)
def test_gpu_directive_follows_the_site(
    worker_security: Any, directive: str, expected: str
) -> None:
    script, _ = _scripts(worker_security, gpu={"gpu_directive": directive})["gpu"]
    assert expected in script.splitlines()
    assert "--gres=gpu:1" not in script


def test_gpu_workers_each_see_their_own_device(worker_security: Any, tmp_path: Path) -> None:
    """Run the GPU job's worker loop with a fake Python that reports its environment."""
    fake = tmp_path / "fake-python"
    fake.write_text('#!/bin/sh\necho "$CUDA_VISIBLE_DEVICES $*"\n')
    fake.chmod(0o755)
    gpu = {"gpus_per_job": 3, "cores": 3}
    script, _ = _scripts(worker_security, gpu=gpu, python=str(fake), job_script_prologue=[])["gpu"]
    for env, devices in [({"CUDA_VISIBLE_DEVICES": "4,6,7"}, "467"), ({}, "012")]:
        run = subprocess.run(
            ["bash", "-c", script],
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        seen = sorted(run.stdout.splitlines(), key=lambda line: line.split("--name ")[1])
        assert [line.split()[0] for line in seen] == list(devices)
        assert [line.split("--name ")[1].split()[0] for line in seen] == [
            "gpu-0-0",
            "gpu-0-1",
            "gpu-0-2",
        ]


def test_plain_tcp_when_security_is_none() -> None:
    script, _ = _scripts(None)["cpu"]
    assert "--protocol tcp://" in script and "--tls-" not in script


def test_user_config_reaches_the_scripts(worker_security: Any) -> None:
    overrides = {
        "cellscale.slurm.job-extra-directives": ["--qos=long"],
        "cellscale.slurm.gpu.gpu-directive": "--gpus={n}",
    }
    with dask.config.set(overrides):
        scripts = _scripts(worker_security)
    assert "#SBATCH --qos=long" in scripts["cpu"][0] and "#SBATCH --qos=long" in scripts["gpu"][0]
    assert "#SBATCH --gpus=1" in scripts["gpu"][0]


def test_jobs_export_the_worker_environment_before_the_site_prologue(
    worker_security: Any,
) -> None:
    own = {"MALLOC_TRIM_THRESHOLD_": 1 << 20, "MALLOC_MMAP_THRESHOLD_": None, "LABEL": 'a "b" $c'}
    with dask.config.set({"cellscale.cluster.worker-environ": own}):
        scripts = _scripts(worker_security)
    for script, _ in scripts.values():
        lines = script.splitlines()
        trim = 'export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-1048576}"'
        assert lines.index(trim) < lines.index("module load cuda/12.4")
        assert "MALLOC_MMAP_THRESHOLD_" not in script
        label = next(line for line in lines if line.startswith("export LABEL="))
        shell = f'unset LABEL; {label}; printf %s "$LABEL"'
        assert subprocess.run(["sh", "-c", shell], capture_output=True, text=True).stdout == (
            'a "b" $c'
        )
    bad = {"cellscale.cluster.worker-environ": {"NOT A NAME": 1}}
    with dask.config.set(bad), pytest.raises(ValueError, match="NOT A NAME"):
        _scripts(worker_security)


@pytest.mark.parametrize(
    ("walltime", "seconds"),
    [("30", 1800), ("30:15", 1815), ("01:00:00", 3600), ("1-02", 93600), ("2-00:30:00", 174600)],
)
def test_walltime_formats(walltime: str, seconds: int) -> None:
    assert walltime_seconds(walltime) == seconds


def test_lifetime_must_fit_in_walltime() -> None:
    assert lifetime_args("00:10:00", "1 minute", "1 minute", False) == [
        "--lifetime",
        "480s",
        "--lifetime-stagger",
        "60s",
    ]
    with pytest.raises(ValueError, match="too short"):
        lifetime_args("00:05:00", "5 minutes", "2 minutes", False)
    with pytest.raises(ValueError, match="walltime"):
        walltime_seconds("soon")


def test_temporary_tls_files_are_private_and_removed(tmp_path: Path) -> None:
    security, worker, cleanup = cluster_security("temporary", str(tmp_path))
    assert security is not None and security.require_encryption
    folder = Path(worker.tls_worker_cert).parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert "BEGIN CERTIFICATE" in Path(worker.tls_ca_file).read_text()
    cleanup()
    assert not folder.exists()


def test_tls_modes() -> None:
    assert cluster_security("none", None)[:2] == (None, None)
    with pytest.raises(ValueError, match=r"distributed\.comm\.tls"):
        cluster_security("dask-config", None)
    with pytest.raises(ValueError, match="'temporary', 'dask-config' or 'none'"):
        cluster_security("yes", None)
