"""A run's outputs under faults: damaged pieces, a moved folder, a corrected plate map, two runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import zarr

import cellscale
from cellscale._stages import DamagedOutputError, output_lock
from cellscale.pipeline import run
from cellscale.pipeline._manifest import MANIFEST
from cellscale.pipeline._run import RunLockedError
from tests.test_pipeline import _mtimes, embedded_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, client: Any) -> Path:
    out = tmp_path_factory.mktemp("screen") / "run"
    config = embedded_config(out)
    config["plates"] = config["plates"][:1]
    run(config, client=client, progress=False)
    return out


def _copy(finished: Path, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / "moved" / "run"
    shutil.copytree(finished, out)  # copy2 keeps the files' times
    config = embedded_config(out)
    config["plates"] = config["plates"][:1]
    return out, config


def _statuses(summary: Any) -> dict[str, str]:
    return {s.name: s.status for s in summary.stages}


def test_a_moved_run_folder_resumes_without_recomputing(
    finished: Path, tmp_path: Path, client: Any
) -> None:
    out, config = _copy(finished, tmp_path)
    before = _mtimes(out / "plates") | _mtimes(out / "profiles") | _mtimes(out / "report")
    summary = run(config, client=client, progress=False)
    statuses = _statuses(summary)
    for stage in ("ingest", "project", "segment", "measure", "embed"):
        assert statuses[stage] == "finished before, checked", (stage, statuses)
    for stage in ("pca", "profiles", "report"):
        assert statuses[stage] == "skipped: unchanged", (stage, statuses)
    after = _mtimes(out / "plates") | _mtimes(out / "profiles") | _mtimes(out / "report")
    assert after == before


def test_a_missing_embeddings_chunk_is_an_error_naming_it_never_zeros(
    finished: Path, tmp_path: Path, client: Any
) -> None:
    out, config = _copy(finished, tmp_path)
    chunk = next(
        p for p in (out / "plates" / "P1" / "embeddings.zarr" / "c").rglob("*") if p.is_file()
    )
    chunk.unlink()
    config["pca"] = {"n_components": 3}
    with pytest.raises(DamagedOutputError, match=rf"missing their chunk file {chunk}"):
        run(config, client=client, progress=False)
    with pytest.raises(DamagedOutputError, match=str(chunk)):
        cellscale.open_embeddings(out / "plates" / "P1" / "embeddings.zarr").compute()


def test_a_damaged_model_file_is_named_and_remade_by_a_rerun(
    finished: Path, tmp_path: Path, client: Any
) -> None:
    out, config = _copy(finished, tmp_path)
    model = out / "profiles" / "pca.npz"
    whole = model.read_bytes()
    model.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DamagedOutputError, match=str(model)):
        cellscale.PCA.load(model)
    summary = run(config, client=client, progress=False)
    assert _statuses(summary)["pca"] == "rewritten: the output was damaged"
    np.testing.assert_array_equal(
        cellscale.PCA.load(model).components_,
        cellscale.PCA.load(finished / "profiles" / "pca.npz").components_,
    )


def test_a_second_run_on_one_folder_is_refused_naming_the_first(
    finished: Path, tmp_path: Path, client: Any
) -> None:
    out, config = _copy(finished, tmp_path)
    with (
        output_lock(out / MANIFEST),
        pytest.raises(
            RunLockedError, match=rf"in use by another cellscale run \(pid {os.getpid()}"
        ),
    ):
        run(config, client=client, progress=False)


def test_one_verify_finds_and_repairs_a_label_an_embedding_a_table_and_a_model(
    finished: Path, tmp_path: Path, client: Any
) -> None:
    out, _ = _copy(finished, tmp_path)
    plate = out / "plates" / "P1"
    label = next(
        p for p in (plate / "projected.zarr").rglob("labels/*/0/c/*/*/*/*/*") if p.is_file()
    )
    label.unlink()
    embedding = next(p for p in (plate / "embeddings.zarr" / "c").rglob("*") if p.is_file())
    embedding.write_bytes(embedding.read_bytes()[:10])
    table = sorted((plate / "cells.parquet").glob("*/t*.parquet"))[0]
    table.unlink()
    model = out / "profiles" / "pca.npz"
    model.write_bytes(b"not a model")
    reports = cellscale.verify(out, client=client, progress=False)
    damaged = {r.kind: r for r in reports if not r.ok}
    assert set(damaged) == {"labels 'nuclei'", "rows", "cell table", "npz file"}, reports
    assert table.name in str(damaged["cell table"]) and "rows 0:" in str(damaged["rows"])
    assert all(r.ok for r in cellscale.verify(out, client=client, progress=False))
    pd.testing.assert_frame_equal(
        cellscale.read_cells(plate / "cells.parquet").compute(),
        cellscale.read_cells(finished / "plates" / "P1" / "cells.parquet").compute(),
    )
    np.testing.assert_array_equal(
        cellscale.open_embeddings(plate / "embeddings.zarr").values,
        zarr.open_array(str(finished / "plates" / "P1" / "embeddings.zarr"))[:],
    )
    np.testing.assert_array_equal(
        cellscale.open_labels(plate / "projected.zarr")["nuclei"].values,
        cellscale.open_labels(finished / "plates" / "P1" / "projected.zarr")["nuclei"].values,
    )
    assert cellscale.PCA.load(model).n_components_ == 4


def _tiff_screen(folder: Path) -> Path:
    """A synthetic plate as TIFFs named like CellProfiler's examples, with its plate map."""
    import tifffile

    plate = cellscale.synthetic.synthetic_plate(wells=4, fields=1, n_z=1, shape=(128, 128), seed=3)
    folder.mkdir(parents=True)
    for well in plate.coords["well"].values:
        for c, image in enumerate(plate.sel(well=well).isel(t=0, z=0, field=0).values):
            tifffile.imwrite(folder / f"P_{well}f01d{c}.tif", np.ascontiguousarray(image))
    wells = [str(w) for w in plate.coords["well"].values]
    pd.DataFrame({"well": wells, "treatment": ["DMSO", "DMSO", "drug", "drug"]}).to_csv(
        folder.parent / "map.csv", index=False
    )
    return folder


def test_a_corrected_plate_map_reaches_the_profiles_and_the_report(
    tmp_path: Path, client: Any
) -> None:
    raw = _tiff_screen(tmp_path / "raw")
    config = {
        "output": str(tmp_path / "run"),
        "plates": [
            {
                "name": "P",
                "folder": str(raw),
                "pattern": "cellprofiler",
                "plate_map": str(raw.parent / "map.csv"),
            }
        ],
        "segment": {"channel": "d1", "nuclei_channel": "d0"},
        "crops": {"size": 16},
        "embed": {"enabled": True},
        "pca": {"n_components": 3},
        "profiles": {"controls": "Metadata_treatment == 'DMSO'"},
    }
    run(config, client=client, progress=False)
    fixed = pd.read_csv(raw.parent / "map.csv")
    fixed.loc[1, "treatment"] = "drug"  # the second DMSO well was in fact treated
    fixed.to_csv(raw.parent / "map.csv", index=False)
    summary = run(config, client=client, progress=False)
    statuses = _statuses(summary)
    for stage in ("pca", "profiles", "report"):  # scores, profiles and report carry treatments
        assert not statuses[stage].startswith("skipped"), (stage, statuses)
    well = str(fixed.loc[1, "well"])
    for table in ("plates/P/scores.parquet", "profiles/wells.parquet"):
        rows = pd.read_parquet(tmp_path / "run" / table)
        assert set(rows.loc[rows["Metadata_Well"] == well, "Metadata_treatment"]) == {"drug"}, table


def test_the_summary_names_each_plates_status_where_plates_differ() -> None:
    from cellscale.pipeline._run import RunSummary
    from cellscale.report import StageRecord

    summary = RunSummary(
        output=Path("run"),
        report=Path("run/report/index.html"),
        plates=2,
        wells=8,
        fields=8,
        timepoints=1,
        cells=10,
        stages=(StageRecord("ingest", 1.0, 8, "ran"), StageRecord("segment", 2.0, 8, "resumed")),
        plate_statuses=(
            ("ingest", "P1", "ran"),
            ("ingest", "P2", "ran"),
            ("segment", "P1", "finished before, checked"),
            ("segment", "P2", "resumed"),
        ),
    )
    text = str(summary)
    assert "P1: finished before, checked" in text and "P2: resumed" in text
    assert "P1: ran" not in text  # alike plates are not listed
