"""A run's console: one labelled bar per stage and plate, counts of fields present; a
failed first run does not hold its folder; a refusal names what differs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import zarr

from cellscale.pipeline import run
from cellscale.pipeline._manifest import MANIFEST, Manifest, RunMismatchError
from tests.test_pipeline import screen_config

FIELD_STAGES = ("ingest", "project", "qc", "segment", "illumination")
BAR = re.compile(
    r"([\w+-]+(?: P\d)?): *\d+%\|[^|]*\| *(\d+)/(\d+) \[[^\]]*?(field|cell|unit|image|task)"
)


def _bars(stderr: str) -> dict[str, set[tuple[int, str]]]:
    """Each bar's name and its (total, unit), from tqdm's output."""
    bars: dict[str, set[tuple[int, str]]] = {}
    for match in BAR.finditer(stderr.replace("\r", "\n")):
        name, _, total, unit = match.groups()
        bars.setdefault(name, set()).add((int(total), unit))
    return bars


@pytest.mark.slow
def test_a_failed_first_run_gives_way_and_bars_count_fields_and_cells(
    tmp_path: Path, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    misspelt = tmp_path / "plat1"  # a folder, but not the plate's
    misspelt.mkdir()
    config = screen_config(
        out, illumination={"method": "mean"}, qc={"enabled": True}, embed={"enabled": True}
    )
    for plate in config["plates"]:
        plate["synthetic"]["fields"] = 2  # the 8 fields per plate illumination needs
    wrong = json.loads(json.dumps(config))
    wrong["plates"][0] = {"name": "P1", "folder": str(misspelt)}
    with pytest.raises(Exception) as failed:
        run(wrong, client=client, progress=False)
    assert not isinstance(failed.value, RunMismatchError)
    assert (out / MANIFEST).is_file()
    capsys.readouterr()

    summary = run(config, client=client, progress=True)  # the fixed config takes the folder
    captured = capsys.readouterr()
    bars = _bars(captured.err)
    assert summary.fields == 16  # 2 plates x 4 wells x 2 fields
    for plate in ("P1", "P2"):
        for stage in FIELD_STAGES:
            assert bars.get(f"{stage} {plate}") == {(8, "field")}, (stage, plate, bars)
        embeddings = zarr.open_array(str(out / "plates" / plate / "embeddings.zarr"))
        chunks = -(-embeddings.shape[0] // embeddings.chunks[0])
        assert embeddings.shape[0] > 0  # one pass: each field's task, then each chunk of rows
        assert bars.get(f"measure+embed {plate}") == {(8 + chunks, "task")}, bars
    assert not [name for name in bars if not name.endswith((" P1", " P2"))], bars
    assert "16 fields" in str(summary)


def _identity(folder: str) -> dict[str, Any]:
    return {"plates": [{"name": "P1", "folder": folder, "pattern": "imagexpress"}]}


def test_a_run_that_finished_nothing_does_not_hold_its_folder(tmp_path: Path) -> None:
    first = Manifest.open(tmp_path, _identity("/data/plat1"), {}, overwrite=False)
    first.start("ingest/P1")  # and it failed there
    (tmp_path / "plates" / "P1").mkdir(parents=True)
    taken = Manifest.open(tmp_path, _identity("/data/plate1"), {}, overwrite=False)
    assert taken.data["plates"][0]["folder"] == "/data/plate1"
    assert taken.data["stages"] == {}


def test_a_refusal_names_the_field_that_differs(tmp_path: Path) -> None:
    first = Manifest.open(tmp_path, _identity("/data/plate1"), {}, overwrite=False)
    first.start("ingest/P1")
    first.finish("ingest/P1", seconds=1.0, units=4)
    with pytest.raises(RunMismatchError) as refused:
        Manifest.open(tmp_path, _identity("/data/plate2"), {}, overwrite=False)
    changes = str(refused.value).partition("differs from this one in ")[2]
    assert changes.startswith("plates[0].folder: '/data/plate1' → '/data/plate2'. ")
    assert "pattern" not in changes and ".name" not in changes


def test_a_run_that_wrote_plate_output_holds_its_folder(tmp_path: Path) -> None:
    first = Manifest.open(tmp_path, _identity("/data/plate1"), {}, overwrite=False)
    first.start("ingest/P1")
    store = tmp_path / "plates" / "P1" / "raw.zarr"
    store.mkdir(parents=True)
    (store / "zarr.json").write_text("{}")
    with pytest.raises(RunMismatchError, match="folder"):
        Manifest.open(tmp_path, _identity("/data/plate2"), {}, overwrite=False)
    assert (store / "zarr.json").is_file()
