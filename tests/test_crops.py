"""Single-cell crops: NumPy slicing as oracle, every mask mode, borders, 2D and 3D, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dask.array.utils import assert_eq
from scipy import ndimage

import cellscale
from cellscale.crops import extract_crops, open_crops, write_crops
from cellscale.measurement import measure
from cellscale.plate import PlateError
from cellscale.segmentation import segment
from cellscale.testing import synthetic_plate
from tests.conftest import raise_if_dask_computes
from tests.test_segment import Threshold


@pytest.fixture(scope="module")
def screen():
    plate = cellscale.project(
        synthetic_plate(wells=2, fields=3, n_z=3, shape=(90, 77), seed=8), "max"
    )
    labels = segment(plate, Threshold(), channel="nuclei", exclude_border=False)
    cells = measure(labels, plate).compute()
    return plate, labels.compute(), cells


def _oracle(plate, labels, cells, size: int, mask: str) -> np.ndarray:
    """Pad each field by the box, slice around each centre, mask with NumPy and SciPy."""
    out = []
    half = size // 2
    for _, row in cells.iterrows():
        image = (
            plate.sel(well=row.Metadata_Well, field=row.Metadata_Site).values[0].astype(np.float64)
        )
        label = labels["nuclei"].sel(well=row.Metadata_Well, field=row.Metadata_Site).values[0]
        y = int(np.floor(row.Nuclei_AreaShape_Center_Y + 0.5)) - half
        x = int(np.floor(row.Nuclei_AreaShape_Center_X + 0.5)) - half
        padded = np.pad(image, ((0, 0), (size, size), (size, size)))
        box = padded[:, y + size : y + 2 * size, x + size : x + 2 * size]
        inside = np.pad(label == row.Metadata_ObjectNumber, size)[
            y + size : y + 2 * size, x + size : x + 2 * size
        ]
        if mask == "hard":
            box = box * inside
        elif mask == "soft":
            window = np.zeros_like(inside, dtype=np.float32)
            y0, x0 = max(y, 0), max(x, 0)
            y1, x1 = min(y + size, image.shape[1]), min(x + size, image.shape[2])
            window[y0 - y : y1 - y, x0 - x : x1 - x] = ndimage.gaussian_filter(
                (label[y0:y1, x0:x1] == row.Metadata_ObjectNumber).astype(np.float32),
                2.0,
                mode="constant",
            )
            box = box * window
        out.append(box)
    return np.stack(out)


@pytest.mark.parametrize("mask", ["none", "hard", "soft"])
@pytest.mark.parametrize("size", [16, 21])
def test_crops_equal_numpy_slicing(screen, mask: str, size: int) -> None:
    plate, labels, cells = screen
    with raise_if_dask_computes():
        crops = extract_crops(plate, cells, size=size, mask=mask, labels=labels)
    counts = cells.groupby(["Metadata_Well", "Metadata_Site"], sort=False).size().tolist()
    assert crops.data.chunks[0] == tuple(counts)  # one chunk per field, sizes known up front
    expected = _oracle(plate, labels, cells, size, mask).astype(crops.dtype)
    assert_eq(crops.data, expected, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(crops.coords["cell_id"].values, cells.cell_id.values)


def test_border_cells_are_padded_and_recorded_or_dropped(screen) -> None:
    plate, _, cells = screen
    padded = extract_crops(plate, cells, size=30)
    assert padded.coords["padded"].values.any()
    dropped = extract_crops(plate, cells, size=30, border="drop")
    kept = ~padded.coords["padded"].values
    np.testing.assert_array_equal(dropped.coords["cell_id"].values, cells.cell_id.values[kept])
    np.testing.assert_array_equal(dropped.values, padded.values[kept])
    assert not dropped.coords["padded"].values.any()


def test_3d_crops_from_z_stacks() -> None:
    plate = synthetic_plate(wells=1, fields=2, n_z=4, shape=(64, 60), seed=9)
    mip = cellscale.project(plate, "max")
    cells = measure(segment(mip, Threshold(), channel="nuclei"), mip).compute()
    crops = extract_crops(plate, cells, size=(4, 12, 12))
    assert crops.dims == ("cell", "c", "z", "y", "x") and crops.shape[1:] == (2, 4, 12, 12)
    first = cells.iloc[0]
    y = int(np.floor(first.Nuclei_AreaShape_Center_Y + 0.5)) - 6
    x = int(np.floor(first.Nuclei_AreaShape_Center_X + 0.5)) - 6
    stack = (
        plate.isel(t=0, well=0).sel(field=first.Metadata_Site).transpose("c", "z", "y", "x").values
    )
    box = np.pad(stack, ((0, 0), (0, 0), (12, 12), (12, 12)))[
        :, :, y + 12 : y + 24, x + 12 : x + 24
    ]
    np.testing.assert_array_equal(crops.values[0], box)


def test_bad_requests_are_clear_errors(screen) -> None:
    plate, labels, cells = screen
    with pytest.raises(ValueError, match=r"a crop of \(100, 100\) is larger than the fields"):
        extract_crops(plate, cells, size=100)
    with pytest.raises(ValueError, match="mask must be one of"):
        extract_crops(plate, cells, size=10, mask="blurry")
    with pytest.raises(ValueError, match="needs the labels"):
        extract_crops(plate, cells, size=10, mask="hard")
    shuffled = cells.copy()
    shuffled.loc[shuffled.index[0], "cell_id"] = 99
    with pytest.raises(PlateError, match="cell_id is not consecutive"):
        extract_crops(plate, shuffled, size=10)
    fewer = cells.iloc[1:].assign(cell_id=np.arange(len(cells) - 1))
    with pytest.raises(PlateError, match="the cell table does not match the labels"):
        extract_crops(plate, fewer, size=10, labels=cellscale_labels_with_counts(labels))


def cellscale_labels_with_counts(labels):
    counts = labels["nuclei"].max(dim=("y", "x")).values
    return labels.assign_coords(n_objects=(("t", "well", "field"), counts))


def test_crops_written_and_reopened_are_the_same(screen, tmp_path: Path) -> None:
    plate, labels, cells = screen
    crops = extract_crops(plate, cells, size=16, mask="hard", labels=labels)
    write_crops(crops, tmp_path / "crops.zarr", chunk_cells=7, progress=False)
    back = open_crops(tmp_path / "crops.zarr")
    np.testing.assert_array_equal(back.values, crops.values)
    np.testing.assert_array_equal(back.coords["cell_id"].values, crops.coords["cell_id"].values)
    assert back.data.chunks[0][0] == 7
    pd.testing.assert_index_equal(
        pd.Index(back.coords["c"].values), pd.Index(["nuclei", "cytoplasm"])
    )
