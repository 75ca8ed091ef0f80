"""Synthetic plates written straight to disk and read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellscale.io import open_plate
from cellscale.testing import (
    synthetic_cells,
    synthetic_labels,
    synthetic_plate,
    write_synthetic_plate,
)

PARAMS = {"wells": 3, "fields": 2, "n_t": 2, "n_z": 4, "channels": 3, "shape": (40, 52)}


def test_written_plate_reads_back_equal_with_its_truth(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.zarr"
    on_disk = write_synthetic_plate(path, seed=4, **PARAMS)
    in_memory = synthetic_plate(seed=4, **PARAMS)
    np.testing.assert_array_equal(on_disk.values, in_memory.values)
    for coord in ("t", "well", "field", "c", "concentration", "treatment", "control"):
        assert list(on_disk.coords[coord].values) == list(in_memory.coords[coord].values)
    assert on_disk.attrs["synthetic"] == in_memory.attrs["synthetic"]
    np.testing.assert_array_equal(
        synthetic_labels(on_disk).values, synthetic_labels(in_memory).values
    )
    assert synthetic_cells(on_disk).equals(synthetic_cells(in_memory))


def test_writing_again_keeps_the_store_and_version_04_works(tmp_path: Path) -> None:
    path = tmp_path / "v04.zarr"
    first = write_synthetic_plate(path, version="0.4", codec="zstd", seed=1, **PARAMS)
    again = write_synthetic_plate(path, seed=1, **PARAMS)
    assert again.attrs["ngff_version"] == "0.4"
    np.testing.assert_array_equal(open_plate(path).values, first.values)
