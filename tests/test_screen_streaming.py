"""The screen stages stream: per-plate scores, one chunk of cells at a time, a seeded sample."""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
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
from cellscale.pipeline import _cell_rows as cell_rows
from cellscale.pipeline import _cell_summary as cell_summary
from cellscale.pipeline import _profiles_stage as profiles_stage
from cellscale.pipeline import _screen as screen_stages
from cellscale.pipeline import run
from cellscale.pipeline._config import load_config

pytestmark = pytest.mark.slow

PLATES = ("P1", "P2", "P3")
#: Rows per chunk of the runs' embeddings, so that a plate has several.
EMBEDDING_CHUNK = 8
#: The modules of the screen stages, whose tables and arrays the memory test records.
SCREEN_MODULES = (
    "cellscale.pipeline._screen",
    "cellscale.pipeline._cell_rows",
    "cellscale.pipeline._profiles_stage",
    "cellscale.pipeline._report_stage",
)


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


@contextlib.contextmanager
def _small_embedding_chunks() -> Iterator[None]:
    """Runs write their embeddings :data:`EMBEDDING_CHUNK` rows a chunk."""
    import cellscale.embedding

    with pytest.MonkeyPatch.context() as patch:
        for module, name in (
            (cellscale.embedding, "write_cell_pass"),
            (cellscale, "write_embeddings"),
        ):
            chunked = functools.partial(getattr(module, name), chunk_cells=EMBEDDING_CHUNK)
            patch.setattr(module, name, chunked)
        yield


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, images: Path, client: Any) -> Path:
    out = tmp_path_factory.mktemp("screen") / "run"
    with _small_embedding_chunks():
        run(_config(out, images), client=client, progress=False)
    for plate in PLATES:
        embeddings = cellscale.open_embeddings(out / "plates" / plate / "embeddings.zarr")
        assert embeddings.data.numblocks[0] > 1  # several chunks a plate
    return out


def _state(out: Path, images: Path, **changes: Any) -> Any:
    """What the screen stages read of a run's state: its config and plate folders."""
    return SimpleNamespace(
        config=load_config(_config(out, images, **changes)),
        plate_dir=lambda plate: out / "plates" / (plate if isinstance(plate, str) else plate.name),
    )


def _whole_plate(out: Path, plate: str, keep: Any = None) -> pd.DataFrame:
    """A plate's embedded cells as the screen stages read them before they streamed.

    The whole cell table at once: ``cell_id``, the ``Metadata_`` columns, the plate's
    config metadata and the columns ``keep`` selects, in embedding order.
    """
    table = cellscale.read_cells(out / "plates" / plate / "cells.parquet").compute()
    kept = [c for c in table.columns if c == "cell_id" or c.startswith("Metadata_") or keep(c)]
    cells = table[kept]
    cells["Metadata_batch"] = PLATES.index(plate) + 1
    embeddings = cellscale.open_embeddings(out / "plates" / plate / "embeddings.zarr")
    return cells.set_index("cell_id").loc[embeddings.coords["cell_id"].values].reset_index()


def _wells_of(out: Path) -> dict[tuple[str, str], int]:
    """Cells of each (plate, well) of a run."""
    sizes = {}
    for plate in PLATES:
        cells = cellscale.read_cells(out / "plates" / plate / "cells.parquet").compute()
        for well, n in cells["Metadata_Well"].value_counts().items():
            sizes[(plate, str(well))] = int(n)
    return sizes


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


def test_the_chunks_give_exactly_the_whole_plates_results(
    finished: Path, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cellscale.measurement import well_summary
    from cellscale.report._tables import cell_counts

    _chunks_of(monkeypatch, 1)  # a chunk: one (time point, well)
    monkeypatch.setattr(cell_summary, "SAMPLE_CELLS", 30)
    state = _state(finished, images)
    first = cell_rows.open_rows(state, state.config.plates[0])
    assert len(list(first.chunks())) == 4  # wells
    with pytest.raises(ValueError, match="plate 'P1': 1 embedded cells are not in its cell"):
        first.embedded(np.array([0, first.cells]))
    screen = screen_stages.screen_cells(state)
    old = {p: _whole_plate(finished, p, lambda c: "_AreaShape_" in c) for p in PLATES}
    summary = screen.summary
    counts = pd.concat([cell_counts(old[p]) for p in PLATES], ignore_index=True)
    pd.testing.assert_frame_equal(summary.counts, counts)
    by = ["Metadata_Plate", "Metadata_Well", "Metadata_Timepoint"]
    wells = [well_summary(old[p], compartment="cells") for p in PLATES]
    pd.testing.assert_frame_equal(
        summary.wells, pd.concat(wells).sort_values(by, ignore_index=True)
    )
    for position, name in enumerate(PLATES):
        rows = cell_summary._sample_rows(len(old[name]), 30 // len(PLATES), position)
        assert 0 < len(rows) < len(old[name])
        sample = old[name].iloc[rows].reset_index(drop=True)
        pd.testing.assert_frame_equal(summary.samples[name], sample)
    pd.testing.assert_frame_equal(summary.gallery, cell_summary.gallery_cells(old["P1"]))
    # the scores, written a chunk of embeddings at a time with that chunk's metadata
    model = cellscale.PCA.load(finished / "profiles" / "pca.npz")
    for plate in screen.plates:
        metadata = old[plate.name][[c for c in old[plate.name] if "_AreaShape_" not in c]]
        values = model.transform(plate.embeddings).compute()
        pcs = pd.DataFrame(values, columns=model.get_feature_names_out())
        expected = pa.Table.from_pandas(
            pd.concat([metadata, pcs], axis="columns"), preserve_index=False
        )
        written = pq.read_table(finished / "plates" / plate.name / "scores.parquet")
        assert written.equals(expected, check_metadata=True)
    # the embeddings' well profiles, their metadata read 7 cells at a time
    _chunks_of(monkeypatch, 7)
    for operation in ("mean", "median"):
        state = _state(finished, images, profiles={"aggregate": operation})
        keys = list(state.config.profiles.by)
        for plate in screen.plates:
            names = [f"Embedding_{i}" for i in range(plate.embeddings.shape[1])]
            at_once = cellscale.aggregate(
                plate.embeddings,
                keys,
                operation=operation,
                features=names,
                metadata=old[plate.name],
            )
            got = profiles_stage._embedding_wells(state, plate)
            pd.testing.assert_frame_equal(got, at_once[[*keys, *names]])


def _embedding_reads(out: Path) -> int:
    """The most rows of cell table read for one chunk of embeddings: its fields' rows."""
    from cellscale.measurement._parquet import cell_fields

    most = 0
    for plate in PLATES:
        fields = cell_fields(out / "plates" / plate / "cells.parquet")
        firsts = np.array([f.first for f in fields])
        embeddings = cellscale.open_embeddings(out / "plates" / plate / "embeddings.zarr")
        ids, start = embeddings.coords["cell_id"].values, 0
        for rows in embeddings.data.chunks[0]:
            owners = np.unique(np.searchsorted(firsts, ids[start : start + rows], "right") - 1)
            most = max(most, sum(fields[i].rows for i in owners))
            start += rows
    return most


def _chunks_of(monkeypatch: pytest.MonkeyPatch, cells: int) -> None:
    """Make the screen stages read ``cells`` cells (or one whole well) at a time."""
    for module in (cell_rows, profiles_stage):
        monkeypatch.setattr(module, "CHUNK_CELLS", cells)


def _made_by_the_screen_stages() -> bool:
    """Whether the screen stages made this call, and not for the galleries.

    The galleries hold one field per condition (a few fields, as before chunks).
    """
    frame: Any = sys._getframe()
    screen = False
    while frame is not None:
        if frame.f_code.co_name in ("gallery_cells", "_better_gallery"):
            return False
        screen = screen or frame.f_globals.get("__name__") in SCREEN_MODULES
        frame = frame.f_back
    return screen


class _Largest:
    """The largest table or float array the screen stages made in the driving thread.

    Made by computing, concatenating or reading a cell table's fields. Integer arrays
    (images, labels) are not cells, nor tables of wells or fields (``Metadata_Well`` and
    no ``cell_id``: their rows do not grow with the cells); other tables and float arrays
    (scores, embeddings) are counted by their rows.
    """

    def __init__(self) -> None:
        self.rows = 0
        self.plates: list[tuple[int, set[str]]] = []  # the rows and plates of each cell table

    def seen(self, result: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if not _made_by_the_screen_stages():
            return
        for item in result if isinstance(result, tuple) else (result,):
            floats = isinstance(item, np.ndarray) and np.issubdtype(item.dtype, np.floating)
            columns = getattr(item, "columns", ())
            if "Metadata_Well" in columns and "cell_id" not in columns:  # wells or fields
                continue
            if (floats or isinstance(item, pd.DataFrame | pd.Series)) and np.ndim(item):
                self.rows = max(self.rows, len(item))
                named = isinstance(item, pd.DataFrame) and "Metadata_Plate" in item.columns
                if named and "cell_id" in item.columns:
                    plates = set(item["Metadata_Plate"].astype(str))
                    self.plates.append((len(item), plates))


def test_the_screen_stages_hold_one_chunk_of_cells_at_a_time(
    finished: Path, images: Path, client: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import shutil

    from cellscale.measurement import _parquet

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    wells = _wells_of(out)
    plates = {p: sum(n for (q, _), n in wells.items() if q == p) for p in PLATES}
    chunk = max(*wells.values(), _embedding_reads(out))  # a well, or a chunk of embeddings
    assert chunk < min(plates.values())
    largest = _Largest()
    monkeypatch.setattr(cell_summary, "SAMPLE_CELLS", 6)
    _chunks_of(monkeypatch, 1)
    recorded_calls = (
        (dask, "compute"),
        (dask.base, "compute"),
        (pd, "concat"),
        (_parquet, "read_cell_fields"),
    )
    for module, name in recorded_calls:
        original = getattr(module, name)

        def recorded(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
            result = __original(*args, **kwargs)
            largest.seen(result)
            return result

        monkeypatch.setattr(module, name, recorded)
    changed = _config(out, images, pca={"n_components": 3}, profiles={"aggregate": "mean"})
    with _small_embedding_chunks():
        summary = run(changed, client=client, progress=False)
    statuses = {s.name: s.status for s in summary.stages}
    assert statuses["pca"] == statuses["profiles"] == statuses["report"] != "skipped: unchanged"
    assert statuses["embed"] == "finished before, checked"  # not rewritten
    assert 0 < largest.rows <= chunk
    assert any(rows == max(wells.values()) for rows, _ in largest.plates)  # the largest well
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
