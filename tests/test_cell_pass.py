"""The cell pass: the table, crops and embeddings of every field from one read of it."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import zarr

pytest.importorskip("torch")

import torch

import cellscale
from cellscale._stages import Ledger, OutputLockedError
from cellscale.crops import extract_crops
from cellscale.crops._measured import cut_measured
from cellscale.embedding import (
    StalePassOutputError,
    TorchEmbedder,
    embed,
    write_cell_pass,
    write_embeddings,
)
from cellscale.embedding._embed import _groups
from cellscale.io._rows import BOOKS, verify_rows
from cellscale.measurement import read_cells, verify_cells, write_cells
from cellscale.measurement._table import measured_fields
from cellscale.segmentation import segment
from cellscale.testing import OutputTests, write_synthetic_plate
from tests.test_measure import CellsAndNuclei

CROPS: dict[str, Any] = {"size": 24, "mask": "soft"}
LAYOUT: dict[str, Any] = {"chunk_cells": 16, "cells_per_task": 10}

_OPENS: Counter[str] = Counter()
_WATCHED: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not _WATCHED or isinstance(args[0], int):
        return
    path, mode, flags = args
    text = path.decode() if isinstance(path, bytes) else str(path)
    reading = (mode is None and not (flags or 0) & 0o3) or (mode is not None and "r" in mode)
    if reading and text.startswith(_WATCHED[0]):
        _OPENS[text] += 1


sys.addaudithook(_audit)  # for the life of the process; it counts only within `opens`


@contextmanager
def opens(store: Path) -> Iterator[Counter[str]]:
    """Count every open for reading of a file under ``store`` within the block."""
    _OPENS.clear()
    _WATCHED.append(str(store))
    counted: Counter[str] = Counter()
    try:
        yield counted
    finally:
        _WATCHED.clear()
        counted.update(_OPENS)


def chunk_files(store: Path) -> dict[str, list[str]]:
    """The level-0 image chunks and the label chunks of a plate store."""
    kinds: dict[str, list[str]] = {"image": [], "labels": []}
    for path in store.rglob("*"):
        parts = path.relative_to(store).parts
        if not path.is_file() or "c" not in parts or parts[0].startswith("cellscale"):
            continue
        if "labels" in parts:
            kinds["labels"].append(str(path))
        elif parts[3] == "0":
            kinds["image"].append(str(path))
    return kinds


def tiny_network() -> torch.nn.Module:
    """A small network with fixed weights: 2 channels in, 8 features out."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )


def tiny_model() -> TorchEmbedder:
    return TorchEmbedder(
        factory=tiny_network, in_channels=2, n_features=8, device="cpu", batch_size=4
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cell-pass")
    plate = write_synthetic_plate(
        folder / "p.zarr", wells=3, fields=2, n_z=3, shape=(96, 96), seed=6
    )
    out = folder / "mip.zarr"
    cellscale.write_plate(cellscale.project(plate, "max"), out, progress=False)
    segmenter = CellsAndNuclei()
    labels = segment(
        cellscale.open_plate(out),
        segmenter,
        channel="cytoplasm",
        nuclei_channel="nuclei",
        exclude_border=False,
    )
    cellscale.write_labels(labels, out, progress=False)
    return out


def _inputs(store: Path) -> tuple[Any, Any]:
    return cellscale.open_labels(store), cellscale.open_plate(store)


@pytest.fixture(scope="module")
def separate(store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The table and embeddings written by the separate stages (reading each field twice)."""
    folder = tmp_path_factory.mktemp("separate")
    labels, plate = _inputs(store)
    cells = write_cells(labels, plate, folder / "cells.parquet", progress=False)
    crops = extract_crops(plate, read_cells(cells).compute(), labels=labels, **CROPS)
    embeddings = embed(crops, tiny_model(), cells_per_task=LAYOUT["cells_per_task"])
    write_embeddings(
        embeddings, folder / "embeddings.zarr", chunk_cells=LAYOUT["chunk_cells"], progress=False
    )
    return cells, folder / "embeddings.zarr"


def _pass(store: Path, folder: Path, **options: Any) -> Any:
    labels, plate = _inputs(store)
    settings = {**CROPS, **LAYOUT, "progress": False, **options}
    return write_cell_pass(
        labels,
        plate,
        folder / "cells.parquet",
        folder / "embeddings.zarr",
        tiny_model(),
        **settings,
    )


def _assert_same(folder: Path, separate: tuple[Path, Path]) -> None:
    pd.testing.assert_frame_equal(
        read_cells(folder / "cells.parquet").compute(), read_cells(separate[0]).compute()
    )
    mine = cellscale.open_embeddings(folder / "embeddings.zarr")
    theirs = cellscale.open_embeddings(separate[1])
    np.testing.assert_array_equal(mine.values, theirs.values)
    np.testing.assert_array_equal(mine.coords["cell_id"], theirs.coords["cell_id"])
    assert mine.attrs["model"] == theirs.attrs["model"]


@pytest.mark.parametrize("mask", ["none", "hard", "soft"])
def test_crops_cut_in_the_measurement_pass_equal_extract_crops(store: Path, mask: str) -> None:
    labels, plate = _inputs(store)
    cells = read_cells(write_cells(labels, plate, store.parent / f"t-{mask}", progress=False))
    expected = extract_crops(plate, cells.compute(), size=24, mask=mask, labels=labels)
    crops = cut_measured(measured_fields(labels, plate), size=24, mask=mask)
    assert crops.dtype == expected.dtype and crops.shape == expected.shape
    assert crops.data.chunks == expected.data.chunks  # one chunk per field, sized by the labels
    np.testing.assert_array_equal(crops.coords["cell_id"], expected.coords["cell_id"])
    np.testing.assert_array_equal(crops.values, expected.values)


def test_the_pass_writes_what_the_separate_stages_write(
    store: Path, separate: tuple[Path, Path], tmp_path: Path
) -> None:
    assert _pass(store, tmp_path) == (
        tmp_path / "cells.parquet",
        tmp_path / "embeddings.zarr",
    )
    _assert_same(tmp_path, separate)


def test_each_image_and_label_chunk_is_read_once(store: Path, tmp_path: Path) -> None:
    chunks = chunk_files(store)
    assert len(chunks["image"]) == 12 and len(chunks["labels"]) == 12  # 6 fields, 2 of each
    with opens(store) as fused:
        _pass(store, tmp_path / "fused")
    assert {f: fused[f] for f in chunks["image"] + chunks["labels"]} == dict.fromkeys(
        chunks["image"] + chunks["labels"], 1
    )
    labels, plate = _inputs(store)
    with opens(store) as apart:  # the separate stages read the images twice
        write_cells(labels, plate, tmp_path / "apart.parquet", progress=False)
        cells = read_cells(tmp_path / "apart.parquet").compute()
        extract_crops(plate, cells, labels=labels, **CROPS).compute()
    assert {apart[f] for f in chunks["image"]} == {2}


def _fields_of_rows(store: Path, chunks: list[int]) -> set[tuple[int, int, int]]:
    """The fields whose crops the embedding tasks of chunks of rows ``chunks`` take."""
    specs = measured_fields(*_inputs(store)).specs
    starts = np.cumsum([0] + [s.count for s in specs])
    needed = set()
    for group in _groups(tuple(s.count for s in specs), LAYOUT["cells_per_task"]):
        rows = range(int(starts[group[0]]), int(starts[group[-1] + 1]))
        if any(r // LAYOUT["chunk_cells"] in chunks for r in rows):
            needed |= {specs[i].unit for i in group}
    return needed


def _unit(store: Path, well: str, field: int) -> tuple[int, int, int]:
    """The (t, well, field) position of a field of a one-time-point plate."""
    plate = cellscale.open_plate(store)
    wells = [str(w) for w in plate.coords["well"].values]
    return 0, wells.index(well), [int(f) for f in plate.coords["field"].values].index(field)


def _chunk_unit(store: Path, chunk: str) -> tuple[int, int, int]:
    row, column, field = Path(chunk).relative_to(store).parts[:3]
    return _unit(store, row + column, int(field))


def test_a_rerun_redoes_only_what_is_missing(
    store: Path, separate: tuple[Path, Path], tmp_path: Path
) -> None:
    _pass(store, tmp_path)
    cells, embeddings = tmp_path / "cells.parquet", tmp_path / "embeddings.zarr"
    chunk_files_before = {p: p.stat().st_mtime_ns for p in cells.rglob("*.parquet")}
    lost = sorted(cells.glob("A02/*.parquet"))[0]
    lost.unlink()  # a table field lost: its embeddings are done
    assert not verify_cells(cells).ok
    ledger = Ledger.open(zarr.open_group(str(embeddings / BOOKS), mode="r+"), "ledger")
    assert ledger is not None and len(ledger.done()) > 3
    ledger.clear((3,))  # a chunk of rows lost: the table of its fields is done
    expected = _fields_of_rows(store, [3]) | {_unit(store, "A02", int(lost.name[8:13]))}
    assert 1 < len(expected) < 6
    with opens(store) as read:
        _pass(store, tmp_path)
    images = [f for f in chunk_files(store)["image"] if read[f]]
    assert {_chunk_unit(store, f) for f in images} == expected  # only what the missing pieces need
    assert all(read[f] == 1 for f in images)
    after = {p: p.stat().st_mtime_ns for p in cells.rglob("*.parquet")}
    assert {p for p in after if after[p] != chunk_files_before.get(p)} == {lost}
    _assert_same(tmp_path, separate)


def test_stale_outputs_are_named_and_replaced_alone(
    store: Path, separate: tuple[Path, Path], tmp_path: Path
) -> None:
    _pass(store, tmp_path)
    table = {p: p.stat().st_mtime_ns for p in (tmp_path / "cells.parquet").rglob("*.parquet")}
    with pytest.raises(StalePassOutputError, match="size") as stale:
        _pass(store, tmp_path, size=16)
    assert stale.value.output == "embeddings"
    with pytest.raises(StalePassOutputError, match="intensity") as stale:
        _pass(store, tmp_path, intensity=False)
    assert stale.value.output == "cells"
    _pass(store, tmp_path, size=16, overwrite={"embeddings"})
    assert {p: p.stat().st_mtime_ns for p in table} == table  # the table was kept
    assert cellscale.open_embeddings(tmp_path / "embeddings.zarr").shape[0] == len(
        read_cells(separate[0])
    )


def test_a_lazy_pass_holds_both_outputs_until_it_ran(
    store: Path, separate: tuple[Path, Path], tmp_path: Path
) -> None:
    lazy = _pass(store, tmp_path, compute=False)
    for output in ("cells.parquet", "embeddings.zarr"):
        with pytest.raises(OutputLockedError, match="lazy write"):
            write_embeddings(cellscale.open_embeddings(separate[1]), tmp_path / output)
    lazy.compute()
    assert not list(tmp_path.glob(".*.lease"))
    _assert_same(tmp_path, separate)


_BUILT_ON: list[bool] = []


def _recording_network() -> torch.nn.Module:
    """:func:`tiny_network`, noting whether the worker building it has the GPU tag."""
    from distributed import get_worker

    _BUILT_ON.append(bool(get_worker().state.total_resources.get("GPU")))
    return tiny_network()


def test_embedding_tasks_run_on_the_gpu_worker_and_nothing_else_does(
    store: Path, separate: tuple[Path, Path], tmp_path: Path, client: Any
) -> None:
    labels, plate = _inputs(store)
    model = TorchEmbedder(factory=_recording_network, in_channels=2, n_features=8, device="cpu")
    lazy = write_cell_pass(
        labels,
        plate,
        tmp_path / "cells.parquet",
        tmp_path / "embeddings.zarr",
        model,
        compute=False,
        **CROPS,
        **LAYOUT,
    )
    layers = lazy.__dask_graph__().layers
    tagged = [n for n, layer in layers.items() if (layer.annotations or {}).get("resources")]
    assert tagged and all(n.startswith("embed-") for n in tagged)
    _BUILT_ON.clear()
    client.compute(lazy, sync=True)
    assert _BUILT_ON == [True]
    pd.testing.assert_frame_equal(
        read_cells(tmp_path / "cells.parquet").compute(), read_cells(separate[0]).compute()
    )
    assert cellscale.open_embeddings(tmp_path / "embeddings.zarr").shape == (
        len(read_cells(separate[0])),
        8,
    )


def test_the_separate_table_resumes_in_the_pass(
    store: Path, separate: tuple[Path, Path], tmp_path: Path
) -> None:
    shutil.copytree(separate[0], tmp_path / "cells.parquet")
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "cells.parquet").rglob("*.parquet")}
    _pass(store, tmp_path)  # the table is complete: only the embeddings are written
    assert {p: p.stat().st_mtime_ns for p in files} == files
    _assert_same(tmp_path, separate)


class TestCellPassConforms(OutputTests):
    """The pass's two outputs, in one folder, as one output kind (variants: crop sizes)."""

    @pytest.fixture(autouse=True)
    def _inputs(self, store: Path) -> None:
        self.store = store

    def write(self, path: Path, variant: int, **options: Any) -> Any:
        return _pass(self.store, path, size=24 - 8 * variant, **options)

    def read(self, path: Path) -> Any:
        table = read_cells(path / "cells.parquet").compute()
        embeddings = cellscale.open_embeddings(path / "embeddings.zarr").values
        columns = {f"Embedding_{i}": embeddings[:, i] for i in range(embeddings.shape[1])}
        return table.assign(**columns)

    def pieces(self, path: Path) -> list[Path]:
        chunks = path / "embeddings.zarr" / "c"
        files = sorted(p for p in chunks.rglob("*") if p.is_file())
        return files + sorted((path / "cells.parquet").rglob("*.parquet"))

    def unfinish(self, path: Path) -> str:
        books = zarr.open_group(str(path / "embeddings.zarr" / BOOKS), mode="r+")
        ledger = Ledger.open(books, "ledger")
        assert ledger is not None
        ledger.clear((1,))
        return "rows 16:32"

    def verify(self, path: Path) -> list[Any]:
        return [
            verify_cells(path / "cells.parquet"),
            verify_rows(path / "embeddings.zarr", progress=False),
        ]
