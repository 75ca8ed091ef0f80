"""The pipeline: a tiny screen through every stage, reruns, changed settings, bad configs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
import zarr

import cellscale
from cellscale._stages import Ledger
from cellscale.cli import main
from cellscale.pipeline import ConfigError, load_config, run
from cellscale.pipeline._manifest import MANIFEST, RunMismatchError

pytestmark = pytest.mark.slow


def screen_config(out: Path, **changes: Any) -> dict[str, Any]:
    """Two tiny synthetic plates of a dose series (one batch each)."""
    config: dict[str, Any] = {
        "output": str(out),
        "plates": [
            {
                "name": f"P{i}",
                "synthetic": {
                    "wells": 4,
                    "fields": 1,
                    "planes": 3,
                    "size": 128,
                    "cells_per_field": 10,
                    "seed": i,
                },
                "metadata": {"batch": i},
            }
            for i in (1, 2)
        ],
        "segment": {"channel": "cytoplasm", "nuclei_channel": "nuclei"},
        "crops": {"size": 24},
        "embed": {"batch_size": 16},
        "pca": {"n_components": 4},
        "profiles": {"controls": "Metadata_treatment == 'DMSO'"},
        "report": {"crops_per_gallery": 4},
    }
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    return config


def embedded_config(out: Path, **changes: Any) -> dict[str, Any]:
    """:func:`screen_config` with CNN embeddings (random weights), profiled with the features."""
    config = screen_config(out, embed={"enabled": True}, profiles={"features": "both"})
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, client: Any) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("screen") / "run"
    return out, run(embedded_config(out), client=client, progress=False)


def _scores(out: Path) -> pd.DataFrame:
    """Every plate's scores (``plates/<name>/scores.parquet``), plate after plate."""
    plates = ("P1", "P2")
    return pd.concat(
        [pd.read_parquet(out / "plates" / p / "scores.parquet") for p in plates], ignore_index=True
    )


def _mtimes(folder: Path) -> dict[Path, int]:
    """When each output file was last written (lock files, touched by every writer, aside)."""
    return {
        p: p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() and not p.name.endswith(".lock")
    }


class BackgroundRun:
    """A run on a thread of its own, to interrupt while it goes on."""

    def __init__(self, config: dict[str, Any], client: Any) -> None:
        import threading

        self.manifest = Path(config["output"]) / MANIFEST
        self.outcome: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._drive, args=(config, client))
        self.thread.start()

    def _drive(self, config: dict[str, Any], client: Any) -> None:
        try:
            self.outcome["summary"] = run(config, client=client, progress=False)
        except BaseException as err:  # reported by the caller's assertion
            self.outcome["error"] = err

    def reached(self, entry: str) -> bool:
        """Whether the manifest has ``entry`` (e.g. ``"segment/P1"``) or the run ended."""
        stages = json.loads(self.manifest.read_text())["stages"] if self.manifest.is_file() else {}
        return entry in stages or not self.thread.is_alive()

    def wait_for(self, entry: str, timeout: float = 240) -> bool:
        """Wait until the run reaches ``entry``; whether it is still running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.reached(entry):
            time.sleep(0.02)
        return self.thread.is_alive()


def test_a_screen_runs_from_plates_to_report(finished: tuple[Path, Any]) -> None:
    out, summary = finished
    assert (summary.plates, summary.wells, summary.fields) == (2, 8, 8)
    assert summary.cells > 0
    assert [s.name for s in summary.stages] == [
        "ingest", "project", "qc", "segment", "measure", "embed", "pca", "profiles", "report",
    ]  # fmt: skip
    cells = _scores(out)
    assert len(cells) == summary.cells
    assert set(cells["Metadata_Plate"]) == {"P1", "P2"}
    assert set(cells.groupby("Metadata_Plate")["Metadata_batch"].first()) == {1, 2}
    assert [f"PC{i}" for i in range(1, 5)] == [c for c in cells.columns if c.startswith("PC")]
    wells = pd.read_parquet(out / "profiles" / "wells.parquet")
    assert len(wells) == 8 and set(wells["Metadata_Plate"]) == {"P1", "P2"}
    assert any(c.startswith("Embedding_") for c in wells.columns)
    assert any(c.startswith("Cells_AreaShape_") for c in wells.columns)
    for plate in ("P1", "P2"):
        rows = (cells["Metadata_Plate"] == plate).to_numpy()
        embeddings = zarr.open_array(str(out / "plates" / plate / "embeddings.zarr"))[:]
        assert embeddings.shape[0] == rows.sum()
    quality = pd.read_parquet(out / "profiles" / "field_quality.parquet")
    assert len(quality) == 8 and (quality["focus_laplacian_norm"] > 0).all()
    html = (out / "report" / "index.html").read_text()
    assert "P1" in html and "P2" in html and "randomly initialised from seed 0" in html
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["provenance"]["config"]["crops"]["size"] == 24
    assert "torch" in manifest["provenance"]["versions"]
    assert all(entry["done"] for entry in manifest["stages"].values())
    assert f"report: {out / 'report' / 'index.html'}" in str(summary)
    progress = (out / "progress.html").read_text()
    for stage in ("ingest", "project", "segment", "measure"):
        assert progress.count(f"<caption>{stage}: 4 / 4 fields</caption>") == 2  # both plates
    assert 'http-equiv="refresh"' not in progress  # the last page stops reloading


def test_the_progress_view_counts_fields_done_per_well(tmp_path: Path) -> None:
    from cellscale.pipeline._progress import stage_progress
    from cellscale.testing import write_synthetic_plate

    folder = tmp_path / "plates" / "P1"
    write_synthetic_plate(folder / "raw.zarr", wells=3, fields=2, n_z=1, shape=(32, 32))
    ledger = zarr.open_array(str(folder / "raw.zarr" / "cellscale_ledger"), mode="r+")
    Ledger(ledger).clear((0, 1, 0))  # the second well's first field not done
    wells, done = stage_progress(folder)
    assert wells == ["A01", "A02", "A03"] and list(done) == ["ingest"]
    assert done["ingest"].tolist() == [2, 1, 2]


def test_qc_and_illumination_run_exclude_resume_and_reach_the_report(
    tmp_path: Path, client: Any
) -> None:
    out = tmp_path / "run"
    config = screen_config(
        out,
        qc={"exclude_flagged": True, "thresholds": {"dim": 0.0}},  # flags about half
        illumination={"method": "mean"},
        profiles={"controls": None},  # the DMSO fields may be among the flagged
    )
    for plate in config["plates"]:
        plate["synthetic"]["fields"] = 2  # 8 fields: enough for a flatfield
    summary = run(config, client=client, progress=False)
    names = [s.name for s in summary.stages]
    assert names[:6] == ["ingest", "project", "qc", "illumination", "segment", "measure"]
    for plate in ("P1", "P2"):
        folder = out / "plates" / plate
        table = cellscale.read_qc(folder / "qc.parquet")
        assert len(table) == 8 * 2 and table["dim"].any()  # 8 fields, 2 channels
        flagged = cellscale.flagged_fields(table)
        cells = cellscale.read_cells(folder / "cells.parquet").compute()
        with_cells = set(zip(cells["Metadata_Well"], cells["Metadata_Site"], strict=True))
        assert not with_cells & set(zip(flagged["well"], flagged["field"], strict=True))
        model = cellscale.IlluminationModel.load(folder / "illumination.npz")
        assert model.method == "mean" and model.flatfield.shape[-2:] == (128, 128)
    assert any("QC flagged" in p and "not segmented" in p for p in summary.problems)
    html = (out / "report" / "index.html").read_text()
    assert "<h2>Image quality</h2>" in html and "flatfield" in html and "flagged field" in html
    again = run(config, client=client, progress=False)
    statuses = {s.name: s.status for s in again.stages}
    assert statuses["qc"] == statuses["illumination"] == "finished before, checked"


def test_profiles_are_normalised_per_plate_against_controls(finished: tuple[Path, Any]) -> None:
    out, _ = finished
    cells = _scores(out)
    wells = pd.read_parquet(out / "profiles" / "wells.parquet")
    embedded = [c for c in wells.columns if c.startswith("Embedding_")]
    columns = [int(c.removeprefix("Embedding_")) for c in embedded]
    for plate in ("P1", "P2"):
        mine = cells[cells["Metadata_Plate"] == plate].reset_index(drop=True)
        raw = zarr.open_array(str(out / "plates" / plate / "embeddings.zarr"))[:]
        raw = raw.astype(np.float64)[:, columns]
        control = (mine["Metadata_treatment"] == "DMSO").to_numpy()
        assert len(set(mine.loc[control, "Metadata_Well"])) == 1  # one DMSO well: only centred
        for _, row in wells[wells["Metadata_Plate"] == plate].iterrows():
            well_rows = (mine["Metadata_Well"] == row["Metadata_Well"]).to_numpy()
            expected = np.median(raw[well_rows], axis=0) - np.median(raw[control], axis=0)
            got = row[embedded].to_numpy(dtype=np.float64)
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_a_rerun_recomputes_nothing(finished: tuple[Path, Any], client: Any) -> None:
    out, _ = finished
    before = _mtimes(out / "plates") | _mtimes(out / "profiles") | _mtimes(out / "report")
    summary = run(embedded_config(out), client=client, progress=False)
    statuses = {s.name: s.status for s in summary.stages}
    assert statuses["segment"] == "finished before, checked"
    assert statuses["pca"] == statuses["report"] == "skipped: unchanged"
    after = _mtimes(out / "plates") | _mtimes(out / "profiles") | _mtimes(out / "report")
    assert after == before


def test_a_changed_setting_redoes_its_stage_and_later_ones_only(
    tmp_path: Path, client: Any
) -> None:
    out = tmp_path / "run"
    config = embedded_config(out)
    config["plates"] = config["plates"][:1]
    run(config, client=client, progress=False)
    labels = _mtimes(out / "plates" / "P1" / "projected.zarr")
    cells = _mtimes(out / "plates" / "P1" / "cells.parquet")
    config["crops"] = {"size": 16}
    summary = run(config, client=client, progress=False)
    statuses = {s.name: s.status for s in summary.stages}
    assert statuses["measure"] == "finished before, checked"
    for stage in ("embed", "pca", "profiles", "report"):
        assert statuses[stage] == "rewritten: inputs or settings changed", stage
    assert _mtimes(out / "plates" / "P1" / "projected.zarr") == labels
    assert _mtimes(out / "plates" / "P1" / "cells.parquet") == cells
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["provenance"]["config"]["crops"]["size"] == 16


def test_an_output_folder_holding_another_run_is_refused(
    finished: tuple[Path, Any], tmp_path: Path, client: Any
) -> None:
    out, _ = finished
    other = screen_config(out)
    other["plates"][1]["synthetic"]["seed"] = 7
    with pytest.raises(
        RunMismatchError, match=r"holds another run.*plates\[1\]\.synthetic\.seed: 2 → 7"
    ):
        run(other, client=client, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(RunMismatchError, match="holds no cellscale run"):
        run(screen_config(tmp_path / "busy"), client=client, progress=False)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_a_wrong_channel_is_named_with_a_suggestion(tmp_path: Path, client: Any) -> None:
    config = screen_config(tmp_path / "run", segment={"channel": "cytoplasma"})
    expected = r"segment.channel: .*'cytoplasma'.*did you mean 'cytoplasm'"
    with pytest.raises(ConfigError, match=expected):
        run(config, client=client, progress=False)


def test_a_missing_weights_file_fails_before_anything_runs(tmp_path: Path) -> None:
    config = screen_config(tmp_path / "run", embed={"weights": str(tmp_path / "resnet.pt")})
    with pytest.raises(ConfigError, match=r"resnet\.pt does not exist"):
        run(config, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"segmnet": {}}, r"unknown key 'segmnet'; did you mean 'segment'\?"),
        ({"crops": {"szie": 3}}, r"^crops: unknown key 'szie'; did you mean 'size'\?"),
        ({"crops": {"size": "big"}}, r"crops.size: expected int, got str 'big'"),
        ({"crops": {"mask": "hrad"}}, r"crops.mask must be one of .*did you mean 'hard'\?"),
        ({"pca": {"n_components": True}}, r"pca.n_components: expected int, got bool"),
        ({"qc": {"thresholds": {"blury": -2}}}, r"qc.thresholds: unknown key 'blury'.*'blurry'"),
        ({"qc": {"thresholds": {"saturated": 2}}}, r"qc.thresholds: saturated is a fraction"),
        ({"illumination": {"method": "basik"}}, r"illumination.method .*did you mean 'basic'"),
    ],
)
def test_bad_configs_name_the_key(change: dict[str, Any], message: str) -> None:
    config = {"output": "out", "plates": [{"name": "P1", "synthetic": {}}], **change}
    with pytest.raises(ConfigError, match=message):
        load_config(config)


def test_plate_configs_are_checked() -> None:
    with pytest.raises(ConfigError, match="exactly one of 'folder', 'zarr' and 'synthetic'"):
        load_config({"output": "o", "plates": [{"name": "P1"}]})
    with pytest.raises(ConfigError, match="used more than once"):
        load_config({"output": "o", "plates": [{"name": "P", "folder": "a"}] * 2})
    with pytest.raises(ConfigError, match="the key 'plates' is required"):
        load_config({"output": "o"})


def test_yaml_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "screen.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "output": "results",
                "plates": [{"name": "P1", "folder": "raw/P1", "plate_map": "map.csv"}],
                "embed": {"weights": "/models/r50.pt"},
            }
        )
    )
    config = load_config(path)
    assert config.output == str(tmp_path / "results")
    assert config.plates[0].folder == str(tmp_path / "raw" / "P1")
    assert config.plates[0].plate_map == str(tmp_path / "map.csv")
    assert config.embed.weights == "/models/r50.pt"


def test_cellscale_run_takes_a_yaml_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = screen_config(Path("out"))
    config["plates"] = config["plates"][:1]
    config["cluster"] = {"n_workers": 1, "options": {"processes": False}}
    (tmp_path / "screen.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "screen.yaml"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "dashboard" in printed and "screen: 1 plate(s), 4 wells" in printed
    assert (tmp_path / "out" / "report" / "index.html").is_file()
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**config, "ouptut": "x"}))
    assert main(["run", str(tmp_path / "bad.yaml")]) == 1
    assert "did you mean 'output'?" in capsys.readouterr().err


_DRIVER = """
import sys, json
from cellscale.pipeline import run
run(json.loads(sys.argv[1]), progress=False)
"""


def test_a_killed_run_resumes_to_the_same_outputs(
    tmp_path: Path, finished: tuple[Path, Any], client: Any
) -> None:
    out = tmp_path / "run"
    config = embedded_config(out)
    config["cluster"] = {"n_workers": 1, "options": {"processes": False}}
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, json.dumps(config)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    manifest = out / MANIFEST
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        stages = json.loads(manifest.read_text())["stages"] if manifest.is_file() else {}
        if stages.get("segment/P2", {}).get("done"):
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the run ended before it could be killed"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    plate1 = _mtimes(out / "plates" / "P1")
    summary = run(embedded_config(out), client=client, progress=False)
    statuses = [(s.name, s.status) for s in summary.stages]
    assert ("ingest", "finished before, checked") in statuses
    after = _mtimes(out / "plates" / "P1")  # with the plate's scores, made by the screen stages
    assert {p: after.get(p) for p in plate1} == plate1  # nothing finished was recomputed
    reference = finished[0]
    for plate in ("P1", "P2"):
        np.testing.assert_array_equal(
            zarr.open_array(str(out / "plates" / plate / "embeddings.zarr"))[:],
            zarr.open_array(str(reference / "plates" / plate / "embeddings.zarr"))[:],
        )
    pd.testing.assert_frame_equal(
        _scores(out),
        _scores(reference),
    )


def test_a_run_survives_a_killed_worker(tmp_path: Path, finished: tuple[Path, Any]) -> None:
    config = embedded_config(tmp_path / "run")
    out = Path(config["output"])
    with cellscale.start_cluster(
        "local", n_workers=2, gpu_workers=1, processes=True, threads_per_worker=1, quiet=True
    ) as client:
        cpu = [
            address
            for address, worker in client.scheduler_info()["workers"].items()
            if not worker.get("resources")
        ]
        pids = client.run(os.getpid, workers=cpu[:1])
        background = BackgroundRun(config, client)
        killed_mid_run = background.wait_for("segment/P1")
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
        background.thread.join(600)
    result = background.outcome
    assert killed_mid_run, "the run ended before a worker could be killed"
    assert "error" not in result, result.get("error")
    assert result["summary"].cells == finished[1].cells
    reference = finished[0]
    for plate in ("P1", "P2"):
        pd.testing.assert_frame_equal(
            cellscale.read_cells(out / "plates" / plate / "cells.parquet").compute(),
            cellscale.read_cells(reference / "plates" / plate / "cells.parquet").compute(),
        )
        np.testing.assert_allclose(
            zarr.open_array(str(out / "plates" / plate / "embeddings.zarr"))[:],
            zarr.open_array(str(reference / "plates" / plate / "embeddings.zarr"))[:],
            rtol=1e-4,
            atol=1e-5,
        )


def _folder_config(out: Path, folder: Path) -> dict[str, Any]:
    return {
        "output": str(out),
        "plates": [{"name": "IXM", "folder": str(folder)}],
        "segment": {"channel": "w2", "nuclei_channel": "w1"},
        "crops": {"size": 8},
    }


def test_a_corrupt_tiff_stops_the_run_naming_it_and_the_fixed_folder_resumes(
    tmp_path: Path, client: Any
) -> None:
    from tests.test_ingest import write_ixm

    files = write_ixm(tmp_path / "raw", wells=("B02", "B03"), sites=(1,), zsteps=(1, 2))
    bad = files[(1, "B03", 1, "w2", 2)]
    good = bad.read_bytes()
    bad.write_bytes(good[:150])
    config = _folder_config(tmp_path / "run", tmp_path / "raw")
    with pytest.raises(Exception, match=rf"{bad.name}"):
        run(config, client=client, progress=False)
    stages = json.loads((tmp_path / "run" / MANIFEST).read_text())["stages"]
    assert stages["ingest/IXM"]["done"] is False
    assert "project/IXM" not in stages
    bad.write_bytes(good)
    summary = run(config, client=client, progress=False)
    assert dict((s.name, s.status) for s in summary.stages)["ingest"] == "resumed"


def test_plates_without_cells_finish_and_say_so(tmp_path: Path, client: Any) -> None:
    from tests.test_ingest import write_ixm

    write_ixm(tmp_path / "raw", wells=("B02",), sites=(1,), zsteps=(1,))  # noise: no cells
    summary = run(_folder_config(tmp_path / "run", tmp_path / "raw"), client=client, progress=False)
    assert summary.cells == 0
    assert any("no cells were found" in p for p in summary.problems)
    html = (tmp_path / "run" / "report" / "index.html").read_text()
    assert "no cells were found" in html


def test_the_progress_page_is_served_on_localhost_while_the_run_goes_on(tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    from cellscale.pipeline._progress import ProgressPage

    with ProgressPage(tmp_path, ["P1"], interval=0.1, serve=True) as page:
        assert page.url is not None and page.url.startswith("http://127.0.0.1:")
        served = urllib.request.urlopen(page.url, timeout=10).read().decode()
        assert "cellscale run: running" in served and "not started" in served
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(page.url.replace("progress.html", "cellscale_run.json"))
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(page.url, timeout=2)  # stopped with the run
    assert "cellscale run: finished" in (tmp_path / "progress.html").read_text()
