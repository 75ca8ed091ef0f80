"""Every output kind passes the conformance suite of :class:`cellscale.testing.OutputTests`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr

import cellscale
from cellscale._stages import FileOutput, Fingerprint, Ledger
from cellscale.io._plate_index import drop_index
from cellscale.io._rows import verify_rows
from cellscale.io._store_setup import LEDGER_NAME
from cellscale.io._verify_labels import verify_labels
from cellscale.testing import OutputTests, synthetic_plate

SMALL = {"wells": 2, "fields": 2, "n_z": 1, "shape": (48, 48), "seed": 4}


def _plate(variant: int) -> xr.DataArray:
    return synthetic_plate(**{**SMALL, "seed": 4 + variant}).max("z")


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.parent.name != "zarr.json")


class TestPlates(OutputTests):
    def write(self, path: Path, variant: int, **options: Any) -> Any:
        return cellscale.write_plate(_plate(variant), path, progress=False, **options)

    def read(self, path: Path) -> Any:
        return cellscale.open_plate(path).values

    def pieces(self, path: Path) -> list[Path]:
        chunks = path / "A" / "01" / "1" / "0" / "c"
        return [p for p in _data_files(chunks) if p.name != "zarr.json"]

    def unfinish(self, path: Path) -> str:
        drop_index(path)
        Ledger(zarr.open_array(str(path / LEDGER_NAME), mode="r+")).clear((0, 0, 0))
        return "A01/f1/t0"

    def verify(self, path: Path) -> list[Any]:
        return cellscale.verify(path, progress=False)


class TestLabels(OutputTests):
    def write(self, path: Path, variant: int, **options: Any) -> Any:
        if not path.exists():
            cellscale.write_plate(_plate(0), path, progress=False)
        labels = cellscale.segment(
            cellscale.open_plate(path),
            "classical",
            channel="nuclei",
            compartment="nuclei",
            smoothing=0.05 + variant,
        )
        return cellscale.write_labels(labels, path, progress=False, **options)

    def read(self, path: Path) -> Any:
        return cellscale.open_labels(path)["nuclei"].values

    def pieces(self, path: Path) -> list[Path]:
        chunks = path / "A" / "01" / "1" / "labels" / "nuclei" / "0" / "c"
        return [p for p in _data_files(chunks) if p.name != "zarr.json"]

    def unfinish(self, path: Path) -> str:
        ledger = zarr.open_array(str(path / "cellscale_labels" / "nuclei" / "ledger"), mode="r+")
        Ledger(ledger).clear((0, 0, 0))
        return "A01/f1/t0"

    def verify(self, path: Path) -> list[Any]:
        return verify_labels(path, progress=False)


class TestRows(OutputTests):
    def write(self, path: Path, variant: int, **options: Any) -> Any:
        values = np.random.default_rng(variant).normal(size=(50, 6)).astype(np.float32)
        rows = xr.DataArray(
            da.from_array(values, chunks=(20, 6)),
            dims=("cell", "feature"),
            coords={"cell_id": ("cell", np.arange(50))},
        )
        return cellscale.write_embeddings(rows, path, chunk_cells=16, progress=False, **options)

    def read(self, path: Path) -> Any:
        return cellscale.open_embeddings(path).values

    def pieces(self, path: Path) -> list[Path]:
        return [path / "c" / "1" / "0"]

    def unfinish(self, path: Path) -> str:
        Ledger(zarr.open_array(str(path / ".cellscale" / "ledger"), mode="r+")).clear((3,))
        return "rows 48:50"

    def verify(self, path: Path) -> list[Any]:
        return [verify_rows(path, progress=False)]


class TestCellTables(OutputTests):
    def source(self, path: Path) -> tuple[xr.Dataset, xr.DataArray]:
        store = path.parent / "source.zarr"
        if not store.exists():
            cellscale.write_plate(_plate(0), store, progress=False)
            labels = cellscale.segment(
                cellscale.open_plate(store), "classical", channel="nuclei", compartment="nuclei"
            )
            cellscale.write_labels(labels, store, progress=False)
        return cellscale.open_labels(store), cellscale.open_plate(store)

    def write(self, path: Path, variant: int, **options: Any) -> Any:
        labels, plate = self.source(path)
        return cellscale.write_cells(
            labels, plate, path, intensity=not variant, progress=False, **options
        )

    def read(self, path: Path) -> Any:
        return cellscale.read_cells(path).compute()

    def pieces(self, path: Path) -> list[Path]:
        return sorted(path.glob("*/t*.parquet"))

    def unfinish(self, path: Path) -> str:
        Ledger(zarr.open_array(str(path / "_cellscale" / "ledger"), mode="r+")).clear((0, 1, 0))
        return "A02/t00000-f00001"

    def verify(self, path: Path) -> list[Any]:
        return cellscale.verify(path, progress=False)


class TestFiles(OutputTests):
    lazy = False

    def write(self, path: Path, variant: int, **options: Any) -> Any:
        table = pd.DataFrame({"x": np.arange(40) * (variant + 1)})
        made = Fingerprint("table", parameters={"variant": variant})
        FileOutput(path).write(
            made,
            lambda partial: table.to_parquet(partial),
            overwrite=options.get("overwrite", False),
        )

    def read(self, path: Path) -> Any:
        return pd.read_parquet(FileOutput(path).open())

    def pieces(self, path: Path) -> list[Path]:
        return [path]

    def unfinish(self, path: Path) -> str:
        FileOutput(path).record_path.unlink()
        return path.name

    def verify(self, path: Path) -> list[Any]:
        return cellscale.verify(path)
