"""Job-script tier: SLURM jobs write their output files into a log folder, never the cwd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import pytest

from cellscale.cluster._slurm import slurm_pool_specs, slurm_settings

pytest.importorskip("dask_jobqueue")

ADDRESS = "tcp://10.1.2.3:8786"


def _output_lines(options: dict[str, Any], default: Path | None = None) -> dict[str, list[str]]:
    """Each pool's ``#SBATCH -o`` / ``-e`` lines, with the settings ``slurm_cluster`` uses."""
    common, cpu, gpu = slurm_settings(options, default)
    lines = {}
    for name, (spec_of, _) in slurm_pool_specs(common, cpu, gpu, None).items():
        spec = spec_of(0)
        script = spec["cls"](ADDRESS, name=f"{name}-0", **spec["options"]).job_script()
        lines[name] = [
            line for line in script.splitlines() if line.startswith(("#SBATCH -o", "#SBATCH -e"))
        ]
    return lines


def _assert_into(lines: dict[str, list[str]], folder: Path) -> None:
    for pool, directives in lines.items():
        assert sorted(directives) == [
            f"#SBATCH -e {folder}/cellscale-{pool}-%J.err",
            f"#SBATCH -o {folder}/cellscale-{pool}-%J.out",
        ], pool
    assert folder.is_dir()  # made when the job was, so sbatch finds it


def test_default_is_a_folder_under_home_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    _assert_into(_output_lines({}), tmp_path / "home" / ".cellscale" / "slurm-logs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_the_callers_default_is_used_when_no_log_directory_is_set(tmp_path: Path) -> None:
    _assert_into(_output_lines({}, tmp_path / "run" / "logs"), tmp_path / "run" / "logs")


@pytest.mark.parametrize("how", ["keyword", "config"])
def test_a_log_directory_setting_wins_over_the_callers_default(tmp_path: Path, how: str) -> None:
    chosen = tmp_path / "mine"
    if how == "keyword":
        lines = _output_lines({"log_directory": str(chosen)}, tmp_path / "run")
    else:
        with dask.config.set({"cellscale.slurm.log-directory": str(chosen)}):
            lines = _output_lines({}, tmp_path / "run")
    _assert_into(lines, chosen)
    assert not (tmp_path / "run").exists()


def test_home_and_variables_are_expanded_here_since_sbatch_expands_neither(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CELLSCALE_TEST_SCRATCH", str(tmp_path / "scratch"))
    _assert_into(_output_lines({"log_directory": "~/logs"}), tmp_path / "home" / "logs")
    lines = _output_lines({"log_directory": "$CELLSCALE_TEST_SCRATCH/logs"})
    _assert_into(lines, tmp_path / "scratch" / "logs")


def test_a_relative_folder_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _assert_into(_output_lines({"log_directory": "logs"}), tmp_path / "logs")
