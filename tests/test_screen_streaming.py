"""The screen stages stream: per-plate scores, one plate of cells at a time, a seeded sample."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import dask.base
import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr

import cellscale
from cellscale.pipeline import _cell_summary as cell_summary
from cellscale.pipeline import run

pytestmark = pytest.mark.slow

PLATES = ("P1", "P2", "P3")


def _images(folder: Path, seed: int) -> Path:
    """A 4-well synthetic plate as ImageXpress TIFFs (w1, w2), with its plate map."""
    plate = cellscale.synthetic.synthetic_plate(
        wells=4, fields=1, n_z=1, shape=(128, 128), seed=seed
    )
    folder.mkdir(parents=True)
    for well in plate.coords["well"].values:
        for c, image in enumerate(plate.sel(well=well).isel(t=0, z=0, field=0).values):
            tifffile.imwrite(folder / f"screen_{well}_s1_w{c + 1}.tif", np.ascontiguousarray(image))
    wells = [str(w) for w in plate.coords["well"].values]
    treatment = ["DMSO", "DMSO", "drug", "drug"]
    pd.DataFrame({"well": wells, "treatment": treatment, "dose": [0, 0, 1, 10]}).to_csv(
        folder / "map.csv", index=False
    )
    return folder


def _config(out: Path, images: Path, **changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "output": str(out),
        "plates": [
            {
                "name": name,
                "folder": str(images / name),
                "channels": {"w1": "DNA", "w2": "cyto"},
                "plate_map": str(images / name / "map.csv"),
                "metadata": {"batch": i},
            }
            for i, name in enumerate(PLATES, start=1)
        ],
        "qc": {"enabled": False},
        "segment": {"channel": "cyto", "nuclei_channel": "DNA"},
        "embed": {"enabled": True, "batch_size": 16},
        "crops": {"size": 24},
        "pca": {"n_components": 4},
        "profiles": {"controls": "Metadata_treatment == 'DMSO'", "features": "both"},
        "report": {"crops_per_gallery": 2},
    }
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    return config


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for seed, name in enumerate(PLATES, start=3):
        _images(folder / name, seed)
    return folder


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, images: Path, client: Any) -> Path:
    out = tmp_path_factory.mktemp("screen") / "run"
    run(_config(out, images), client=client, progress=False)
    return out


def _mtimes(folder: Path) -> dict[Path, int]:
    return {
        p: p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() and not p.name.endswith(".lock")
    }


def test_scores_per_plate_equal_the_pca_of_all_cells_at_once(finished: Path) -> None:
    model = cellscale.PCA.load(finished / "profiles" / "pca.npz")
    embeddings = [
        zarr.open_array(str(finished / "plates" / p / "embeddings.zarr"))[:] for p in PLATES
    ]
    everything = np.concatenate(embeddings).astype(np.float64)
    expected = (everything - model.mean_) @ model.components_.T  # eager oracle, float64
    scores = [pd.read_parquet(finished / "plates" / p / "scores.parquet") for p in PLATES]
    got = pd.concat(scores, ignore_index=True)
    pcs = [f"PC{i}" for i in range(1, 5)]
    assert [c for c in got.columns if c.startswith("PC")] == pcs
    np.testing.assert_allclose(got[pcs].to_numpy(np.float64), expected, rtol=1e-4, atol=1e-4)
    lazy = [cellscale.open_embeddings(finished / "plates" / p / "embeddings.zarr") for p in PLATES]
    at_once = model.transform(da.concatenate([e.data for e in lazy])).compute()
    np.testing.assert_array_equal(got[pcs].to_numpy(), at_once)  # the screen-wide result
    assert not (finished / "profiles" / "cells.parquet").exists()
    for name, table in zip(PLATES, scores, strict=True):
        cells = cellscale.read_cells(finished / "plates" / name / "cells.parquet").compute()
        books = finished / "plates" / name / "embeddings.zarr" / ".cellscale" / "cell_id"
        np.testing.assert_array_equal(table["cell_id"], zarr.open_array(str(books))[:])
        mine = cells.set_index("cell_id").loc[table["cell_id"]]
        for column in ("Metadata_Well", "Metadata_treatment", "Metadata_dose"):
            np.testing.assert_array_equal(table[column], mine[column])
        assert set(table["Metadata_Plate"]) == {name}
        assert set(table["Metadata_batch"]) == {PLATES.index(name) + 1}


class _Largest:
    """The largest table or float array the driving thread made by computing or concatenating.

    Integer arrays (images, labels) are not cells; tables and float arrays (scores,
    embeddings) are counted by their rows.
    """

    def __init__(self) -> None:
        self.rows = 0
        self.plates: list[tuple[int, set[str]]] = []  # the rows and plates of each cell table

    def seen(self, result: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for item in result if isinstance(result, tuple) else (result,):
            floats = isinstance(item, np.ndarray) and np.issubdtype(item.dtype, np.floating)
            if (floats or isinstance(item, pd.DataFrame | pd.Series)) and np.ndim(item):
                self.rows = max(self.rows, len(item))
                named = isinstance(item, pd.DataFrame) and "Metadata_Plate" in item.columns
                if named and "cell_id" in item.columns:
                    plates = set(item["Metadata_Plate"].astype(str))
                    self.plates.append((len(item), plates))


def test_the_screen_stages_hold_one_plate_of_cells_at_a_time(
    finished: Path, images: Path, client: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    sizes = {
        p: len(cellscale.read_cells(out / "plates" / p / "cells.parquet").compute()) for p in PLATES
    }
    assert sum(sizes.values()) > max(sizes.values())
    largest = _Largest()
    monkeypatch.setattr(cell_summary, "SAMPLE_CELLS", 6)
    for module, name in ((dask, "compute"), (dask.base, "compute"), (pd, "concat")):
        original = getattr(module, name)

        def recorded(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
            result = __original(*args, **kwargs)
            largest.seen(result)
            return result

        monkeypatch.setattr(module, name, recorded)
    changed = _config(out, images, pca={"n_components": 3}, profiles={"aggregate": "mean"})
    summary = run(changed, client=client, progress=False)
    statuses = {s.name: s.status for s in summary.stages}
    assert statuses["pca"] == statuses["profiles"] == statuses["report"] != "skipped: unchanged"
    assert 0 < largest.rows <= max(sizes.values())
    assert any(rows == max(sizes.values()) for rows, _ in largest.plates)
    assert all(len(plates) <= 1 or rows <= 6 for rows, plates in largest.plates)  # the sample
    html = (out / "report" / "index.html").read_text()
    assert "a seeded sample of 6 of" in html


def test_the_sample_is_seeded_reproducible_and_spread_over_the_plates() -> None:
    cells = pd.DataFrame(
        {
            "cell_id": np.arange(100),
            "Metadata_Plate": "P1",
            "Metadata_Well": np.repeat(["B02", "B03"], 50),
            "Metadata_Site": 0,
            "Metadata_Timepoint": 0,
            "Cells_AreaShape_Area": np.arange(100.0),
        }
    )
    first = cell_summary.summarise("P1", cells, 0, 4, gallery=False)
    again = cell_summary.summarise("P1", cells, 0, 4, gallery=False)
    other = cell_summary.summarise("P1", cells, 1, 4, gallery=False)
    cap = cell_summary.SAMPLE_CELLS // 4
    assert cap < len(cells) or len(first.sample) == len(cells)
    pd.testing.assert_frame_equal(first.sample, again.sample)
    small = cell_summary._sample_rows(100, 10, 0)
    assert len(small) == 10 and np.all(np.diff(small) > 0)
    np.testing.assert_array_equal(small, cell_summary._sample_rows(100, 10, 0))
    assert not np.array_equal(small, cell_summary._sample_rows(100, 10, 1))
    np.testing.assert_array_equal(cell_summary._sample_rows(8, 10, 0), np.arange(8))
    assert first.counts["n_cells"].tolist() == [50, 50]
    assert first.wells is not None and first.wells["n_cells"].tolist() == [50, 50]
    assert other.cells == 100


def test_a_plate_map_fix_rewrites_only_that_plates_scores(
    images: Path, client: Any, tmp_path: Path
) -> None:
    import shutil

    out, maps = tmp_path / "run", tmp_path / "images"
    shutil.copytree(images, maps)
    config = _config(out, maps)
    run(config, client=client, progress=False)
    before = {p: _mtimes(out / "plates" / p) for p in PLATES}
    pca = (out / "profiles" / "pca.npz").stat().st_mtime_ns
    fixed = pd.read_csv(maps / "P2" / "map.csv")
    fixed.loc[fixed["treatment"] == "drug", "treatment"] = "taxol"
    fixed.to_csv(maps / "P2" / "map.csv", index=False)
    summary = run(config, client=client, progress=False)
    assert {s.name: s.status for s in summary.stages}["pca"] != "skipped: unchanged"
    assert (out / "profiles" / "pca.npz").stat().st_mtime_ns == pca  # not refitted
    for plate in ("P1", "P3"):
        assert _mtimes(out / "plates" / plate) == before[plate]
    scores = out / "plates" / "P2" / "scores.parquet"
    assert scores.stat().st_mtime_ns != before["P2"][scores]
    assert set(pd.read_parquet(scores)["Metadata_treatment"]) == {"DMSO", "taxol"}
