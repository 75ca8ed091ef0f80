"""A run's plate entries say what ``ingest`` can, or read an OME-Zarr plate in place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tifffile

import cellscale
from cellscale.cli import main
from cellscale.pipeline import ConfigError, load_config
from cellscale.plate import PlateError


def _folder(folder: Path) -> Path:
    """A 4-well synthetic plate as ImageXpress TIFFs (w1, w2), with a plate map on 'Position'."""
    plate = cellscale.synthetic.synthetic_plate(wells=4, fields=1, n_z=1, shape=(128, 128), seed=3)
    folder.mkdir(parents=True)
    for well in plate.coords["well"].values:
        for c, image in enumerate(plate.sel(well=well).isel(t=0, z=0, field=0).values):
            name = f"screen_{well}_s1_w{c + 1}.tif"
            tifffile.imwrite(folder / name, np.ascontiguousarray(image))
    wells = [str(w) for w in plate.coords["well"].values]
    pd.DataFrame(
        {"Position": wells, "treatment": ["DMSO", "DMSO", "drug", "drug"], "dose": [0, 0, 1, 10]}
    ).to_csv(folder.parent / "map.csv", index=False)
    return folder


def _config(out: Path, plate: dict[str, Any]) -> dict[str, Any]:
    return {
        "output": str(out),
        "plates": [{"name": "P1", **plate}],
        "qc": {"enabled": False},
        "segment": {"channel": "cyto", "nuclei_channel": "DNA"},
        "embed": {"batch_size": 16},
        "crops": {"size": 24},
        "pca": {"n_components": 2},
        "profiles": {"controls": "Metadata_treatment == 'DMSO'"},
        "report": {"crops_per_gallery": 2},
    }


def test_a_plate_entry_takes_every_ingest_option() -> None:
    plate = {
        "name": "P1",
        "folder": "images",
        "pattern": "imagexpress",
        "defaults": {"t": "1"},
        "channels": {"w1": "DNA", "w2": "cyto"},
        "plate_map": "map.csv",
        "well_column": "Position",
        "project_z": "max",
        "on_unmatched": "warn",
        "fill_missing": True,
        "on_nonfinite": "keep",
        "rgb": 1,
        "levels": 2,
    }
    loaded = load_config({"output": "out", "plates": [plate]}).plates[0]
    assert loaded.channels == {"w1": "DNA", "w2": "cyto"}
    assert (loaded.well_column, loaded.project_z, loaded.levels) == ("Position", "max", 2)
    listed = load_config({"output": "o", "plates": [{**plate, "channels": ["w2", "w1"]}]})
    assert listed.plates[0].channels == ("w2", "w1")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"on_unmatchd": "warn"}, "did you mean 'on_unmatched'"),
        ({"project_z": "mean"}, r"project_z must be one of \['max'\]"),
        ({"channels": [1, 2]}, "expected a list of channels"),
        ({"zarr": "plate.zarr"}, "exactly one of 'folder', 'zarr' and 'synthetic'"),
        ({"folder": None, "zarr": "p.zarr"}, r"\['fill_missing'\] are options of ingesting"),
    ],
)
def test_a_wrong_ingest_option_is_named_when_the_config_loads(
    change: dict[str, Any], message: str
) -> None:
    plate = {"name": "P1", "folder": "images", "fill_missing": True, **change}
    with pytest.raises(ConfigError, match=message):
        load_config({"output": "out", "plates": [plate]})


def test_a_misspelt_folder_is_named_before_anything_runs(tmp_path: Path) -> None:
    config = _config(tmp_path / "run", {"folder": str(tmp_path / "imagse"), "plate_map": "m.csv"})
    with pytest.raises(ConfigError, match=r"plates\[0\]\.folder: .*imagse is not a folder"):
        cellscale.run(config, progress=False)
    assert not (tmp_path / "run" / "plates").exists()


@pytest.mark.slow
def test_a_run_renames_channels_reads_an_unusual_well_column_and_reruns_from_the_zarr(
    tmp_path: Path, client: Any
) -> None:
    images = _folder(tmp_path / "images")
    plate = {
        "folder": str(images),
        "channels": {"w1": "DNA", "w2": "cyto"},
        "plate_map": str(tmp_path / "map.csv"),
        "well_column": "Position",
    }
    first = tmp_path / "first"
    cellscale.run(_config(first, plate), client=client, progress=False)
    raw = first / "plates" / "P1" / "raw.zarr"
    assert list(cellscale.open_plate(raw).coords["c"].values) == ["DNA", "cyto"]
    cells = cellscale.read_cells(first / "plates" / "P1" / "cells.parquet").compute()
    assert set(cells["Metadata_treatment"]) == {"DMSO", "drug"}

    before = {p: p.stat().st_mtime_ns for p in raw.rglob("*") if p.is_file()}
    second = tmp_path / "second"
    zarr_plate = {"zarr": str(raw), "plate_map": str(tmp_path / "map.csv")}
    zarr_plate["well_column"] = "Position"
    summary = cellscale.run(_config(second, zarr_plate), client=client, progress=False)
    assert not (second / "plates" / "P1" / "raw.zarr").exists()
    assert {p: p.stat().st_mtime_ns for p in raw.rglob("*") if p.is_file()} == before
    again = cellscale.read_cells(second / "plates" / "P1" / "cells.parquet").compute()
    assert len(again) == len(cells)
    assert set(again["Metadata_dose"]) == {0, 1, 10}
    assert ("ingest", "P1", f"read in place: {raw}") in summary.plate_statuses


def test_ingest_advice_names_the_config_key_in_a_run_and_the_flag_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], client: Any
) -> None:
    images = _folder(tmp_path / "images")
    tifffile.imwrite(images / "overview.tif", np.zeros((8, 8), np.uint16))
    plan = str(tmp_path / "map.csv")
    with pytest.raises(ConfigError, match=r"plate_map: .*name one with `well_column: NAME`"):
        cellscale.run(_config(tmp_path / "run", {"folder": str(images), "plate_map": plan}))
    with pytest.raises(PlateError, match=r"`on_unmatched: warn`.*keys of plate 'P1'"):
        cellscale.run(
            _config(
                tmp_path / "run",
                {"folder": str(images), "plate_map": plan, "well_column": "Position"},
            ),
            client=client,
            progress=False,
        )
    assert main(["ingest", str(images), str(tmp_path / "p.zarr"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "--on-unmatched warn" in err
    assert "on_unmatched=" not in err


def test_segmenting_corrected_images_needs_an_illumination_correction() -> None:
    plates = [{"name": "P1", "synthetic": {}}]
    segment = {"channel": "nuclei", "corrected": True}
    with pytest.raises(ConfigError, match=r"segment\.corrected: the run corrects no illumination"):
        load_config({"output": "o", "plates": plates, "segment": segment})
    config = {
        "output": "o",
        "plates": plates,
        "segment": segment,
        "illumination": {"method": "mean"},
    }
    assert load_config(config).segment.corrected
