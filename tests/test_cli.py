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
    assert "unmarked: write it again (or rerun) to repair them" in capsys.readouterr().out


def test_user_errors_are_one_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["project", str(tmp_path / "missing.zarr"), str(tmp_path / "out.zarr")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cellscale project: error:") and "missing.zarr" in err
    with pytest.raises(Exception, match=r"missing\.zarr"):
        main(["--debug", "project", str(tmp_path / "missing.zarr"), str(tmp_path / "out.zarr")])


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"cellscale {cellscale.__version__}"


def _tiffs(folder: Path, names: list[str]) -> Path:
    import numpy as np
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        tifffile.imwrite(folder / name, np.full((16, 16), i + 1, dtype=np.uint16))
    return folder


@pytest.mark.realdata
def test_examplefly_naming_is_ingested_with_a_regex_defaults_and_renamed_channels(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = real_data / "cellprofiler_examplefly" / "images"
    out = tmp_path / "fly.zarr"
    args = ["ingest", str(source), str(out), "--pattern", r"POS(?P<field>\d+)_(?P<c>[DFR])"]
    args += ["--default", "well=B02", "--channels", "D=DNA,F=PH3,R=Cy3", "--name", "fly"]
    args += ["--levels", "2", "--ngff-version", "0.4", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "plate 'fly'" in printed and "channels    DNA, PH3, Cy3" in printed
    plate = cellscale.open_plate(out)
    assert plate.coords["well"].values.tolist() == ["B02"]
    assert plate.coords["field"].values.tolist() == [2, 218]
    assert plate.attrs["ngff_version"] == "0.4"
    assert cellscale.open_plate(out, level=1).sizes["y"] == plate.sizes["y"] // 2


@pytest.mark.realdata
def test_mixed_z_is_ingested_from_the_cli_keeping_every_channel(
    real_data: Path, tmp_path: Path
) -> None:
    source = real_data / "faim_imagexpress_hcs/ImageXpress/Projection-Mix"
    out = tmp_path / "mix.zarr"
    assert main(["ingest", str(source), str(out), "--project-z", "max", "--no-progress"]) == 0
    plate = cellscale.open_plate(out)
    assert plate.sizes["z"] == 1 and plate.sizes["c"] == 4


def test_ingest_options_reach_the_ingest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = ["P_A01f0d0.tif", "P_A01f0d1.tif", "P_A01f1d0.tif", "notes.tif"]
    source = _tiffs(tmp_path / "src", names)
    out = tmp_path / "p.zarr"
    base = ["ingest", str(source), str(out), "--pattern", "cellprofiler", "--no-progress"]
    assert main(base) == 1  # notes.tif does not match
    assert "notes.tif" in capsys.readouterr().err
    assert main([*base, "--on-unmatched", "ignore"]) == 1  # A01 field 1 lacks channel 1
    err = capsys.readouterr().err
    assert "--fill-missing" in err and "fill_missing" not in err  # the advice is a flag here
    assert main([*base, "--on-unmatched", "ignore", "--fill-missing"]) == 0
    assert cellscale.open_plate(out).coords["c"].values.tolist() == ["d0", "d1"]
    renamed = [*base, "--on-unmatched", "ignore", "--channels", "d0=DNA"]
    assert main(renamed) == 1  # another plate is in the output
    assert "overwrite" in capsys.readouterr().err
    assert main([*renamed, "--overwrite"]) == 0
    assert cellscale.open_plate(out).coords["c"].values.tolist() == ["DNA"]


def test_best_focus_projection_takes_a_focus_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cellscale.testing import write_synthetic_plate

    write_synthetic_plate(tmp_path / "s.zarr", wells=1, fields=1, n_z=3, shape=(32, 32))
    out = tmp_path / "bf.zarr"
    args = ["project", str(tmp_path / "s.zarr"), str(out), "--no-progress"]
    assert main([*args, "--method", "best_focus", "--focus-channel", "cytoplasm"]) == 0
    import zarr

    record = zarr.open_group(str(out), mode="r").attrs["cellscale"]
    assert record["fingerprint"]["inputs"]["lineage"][-1]["focus_channel"] == "cytoplasm"  # type: ignore[index,call-overload]
    assert main([*args, "--method", "max", "--focus-channel", "cytoplasm"]) == 1
    assert "--focus-channel is for --method best_focus" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pattern", r"(?P<well>[A-H]\d\d)"], "(?P<field>...) for the field"),
        (["--pattern", "ImageXpres"], "did you mean 'imagexpress'"),
        (["--channels", "d0=DNA,d1"], "rename every channel"),
        (["--default", "well"], "expected NAME=VALUE"),
    ],
)
def test_ingest_user_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    source = _tiffs(tmp_path / "src", ["P_A01f0d0.tif", "P_A01f1d0.tif"])
    assert main(["ingest", str(source), str(tmp_path / "p.zarr"), *args]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err
    assert err.startswith("cellscale ingest: error:") and "Traceback" not in err


def test_a_file_given_as_source_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _tiffs(tmp_path / "src", ["P_A01f0d0.tif"])
    assert main(["ingest", str(source / "P_A01f0d0.tif"), str(tmp_path / "p.zarr")]) == 1
    assert "is a file; pass the folder that holds it" in capsys.readouterr().err


def test_info_summarises_the_plate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cellscale.testing import write_synthetic_plate

    write_synthetic_plate(tmp_path / "p.zarr", wells=2, fields=2, shape=(64, 64), levels=2)
    assert main(["info", str(tmp_path / "p.zarr")]) == 0
    printed = capsys.readouterr().out
    for expected in (
        "dims        t 1 x well 2 x field 2 x z 6 x c 2 x y 64 x x 64",
        "pixels      uint16, 0.65 x 0.65 µm",
        "channels    nuclei, cytoplasm",
        "pyramid     64x64, 32x32",
        "complete    4 of 4 units complete",
        "plate map   treatment:",
        "on disk",
    ):
        assert expected in printed
    assert "<xarray" not in printed


def test_info_summarises_a_plate_another_tool_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ome_zarr.format import FormatV04

    from tests.test_hcs_io import _write_foreign_plate

    _write_foreign_plate(tmp_path / "f.zarr", FormatV04(), "tczyx", (1, 2, 3, 32, 32))
    assert main(["info", str(tmp_path / "f.zarr")]) == 0
    printed = capsys.readouterr().out
    assert "pyramid     32x32, 16x16, 8x8, 4x4, 2x2" in printed
    assert "not written by cellscale: completeness unknown" in printed
    assert "opens from  a walk of every field" in printed


@pytest.mark.slow
def test_ctrl_c_stops_a_run_in_one_line_and_the_same_command_resumes(tmp_path: Path) -> None:
    """SIGINT to the whole process group, as a terminal sends it: workers included."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from tests.test_pipeline import screen_config

    config = screen_config(tmp_path / "run")
    config["cluster"] = {"n_workers": 1, "gpu_workers": 1}  # worker processes
    path = tmp_path / "screen.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "cellscale.cli", "run", str(path)]
    started = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=tmp_path,
    )
    try:
        assert started.stdout is not None
        for line in started.stdout:
            if line.startswith("progress per plate"):
                break
        time.sleep(2)  # into the first stages
        os.killpg(started.pid, signal.SIGINT)
        _, stderr = started.communicate(timeout=120)
    finally:
        if started.poll() is None:
            os.killpg(started.pid, signal.SIGKILL)
    assert started.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if "interrupted" in line]
    assert lines == ["interrupted; rerun the same command to resume"]
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "report:" in rerun.stdout
