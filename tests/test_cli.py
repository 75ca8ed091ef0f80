"""The command line: the demo (the README's main job), ingest, project and info."""

from __future__ import annotations

from pathlib import Path

import pytest

import cellscale
from cellscale.cli import main


@pytest.mark.slow
def test_demo_runs_the_pipeline_and_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--plates", "1", "--wells", "2", "--fields", "1"]
    args += ["--size", "128", "--workers", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "dashboard" in printed
    assert "screen: 1 plate(s), 2 wells, 2 fields" in printed
    assert f"report: {out / 'report' / 'index.html'}" in printed
    assert "per condition (means of wells)" in printed
    folder = out / "plates" / "demo-1"
    plate = cellscale.open_plate(folder / "raw.zarr")
    assert dict(plate.sizes) == {"t": 2, "well": 2, "field": 1, "z": 6, "c": 3, "y": 128, "x": 128}
    assert cellscale.open_plate(folder / "projected.zarr").sizes["z"] == 1
    cells = cellscale.read_cells(folder / "cells.parquet").compute()
    assert len(cells) > 0 and "Cells_AreaShape_FormFactor" in cells.columns
    import zarr

    embeddings = zarr.open_array(str(folder / "embeddings.zarr"), mode="r")
    assert embeddings.shape == (len(cells), 512)
    assert (out / "report" / "index.html").is_file()
    assert main(args) == 0  # a rerun resumes: every output is complete
    assert "finished before, checked" in capsys.readouterr().out


@pytest.mark.realdata
def test_ingest_project_and_info(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = real_data / "faim_imagexpress_hcs/ImageXpress_exported/9987_Plate_3434"
    plate = tmp_path / "p.zarr"
    assert main(["ingest", str(source), str(plate), "--channels", "w1,w2"]) == 0
    assert main(["project", str(plate), str(tmp_path / "mip.zarr"), "--method", "mean"]) == 0
    assert main(["info", str(tmp_path / "mip.zarr")]) == 0
    printed = capsys.readouterr().out
    assert "wrote the mean projection" in printed
    assert cellscale.open_plate(tmp_path / "mip.zarr").dtype == "float32"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_verify_reports_repairs_and_exits_non_zero_on_damage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cellscale.testing import write_synthetic_plate

    write_synthetic_plate(tmp_path / "p.zarr", wells=2, fields=1, shape=(32, 32))
    assert main(["verify", str(tmp_path / "p.zarr")]) == 0
    assert "all 2 complete units are intact" in capsys.readouterr().out
    chunk = next(
        p for p in (tmp_path / "p.zarr" / "A" / "02" / "1" / "0" / "c").rglob("*") if p.is_file()
    )
    chunk.unlink()
    assert main(["verify", str(tmp_path / "p.zarr"), "--no-repair"]) == 1
    assert "1 of 2 complete units are damaged, left marked" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "p.zarr")]) == 1
    assert "unmarked: write the plate again" in capsys.readouterr().out


def test_user_errors_are_one_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["project", str(tmp_path / "missing.zarr"), str(tmp_path / "out.zarr")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cellscale project: error:") and "missing.zarr" in err
    with pytest.raises(Exception, match=r"missing\.zarr"):
        main(["--debug", "project", str(tmp_path / "missing.zarr"), str(tmp_path / "out.zarr")])
