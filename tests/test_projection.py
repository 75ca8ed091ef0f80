"""Z projection: lazy, equal to eager NumPy on every chunking and dtype, best focus finds focus."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from dask.array.utils import assert_eq
from scipy import ndimage

import cellscale
from cellscale.ops import focus_scores
from cellscale.plate import build_plate
from tests.conftest import raise_if_dask_computes

SHAPE = (2, 3, 2, 5, 2, 17, 23)  # odd sizes on purpose


def _plate(values: np.ndarray, chunks: tuple | str) -> xr.DataArray:
    data = da.from_array(values, chunks=chunks)
    plate = build_plate(
        data, name="p", wells=["A1", "A2", "B7"], fields=[1, 2], channels=["a", "b"]
    )
    # keep the caller's chunking, to test projection on chunkings other than the default
    return plate.copy(data=data)


def _values(dtype: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    if dtype == "float32":
        return rng.normal(100, 20, SHAPE).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, SHAPE, endpoint=True).astype(dtype)


CHUNKINGS = [
    (1, 1, 1, 5, 1, 17, 23),  # the plate's own: one image per chunk
    (2, 2, 1, (2, 3), 2, (10, 7), 23),  # uneven, z split across chunks
    "auto",
]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("chunks", CHUNKINGS, ids=["image", "uneven", "auto"])
@pytest.mark.parametrize("method", ["max", "mean", "middle"])
def test_projection_equals_numpy(dtype: str, chunks: tuple | str, method: str) -> None:
    values = _values(dtype)
    plate = _plate(values, chunks)
    with raise_if_dask_computes():
        projected = cellscale.project(plate, method)  # type: ignore[arg-type]
    expected = {
        "max": values.max(axis=3),
        "mean": values.mean(axis=3, dtype=np.float64).astype(np.float32),
        "middle": values[:, :, :, SHAPE[3] // 2],
    }[method]
    assert projected.dims == ("t", "well", "field", "c", "y", "x")
    # checks the declared dtype, meta and chunks against what the graph computes, too
    assert_eq(projected.data, expected, rtol=1e-6)
    assert projected.attrs["projection"] == method
    assert list(projected.coords["c"].values) == ["a", "b"]


def _focus_stack(focus: int, n_z: int = 6, seed: int = 0) -> np.ndarray:
    """Sharp texture at plane ``focus``, blurred more the further a plane is from it."""
    rng = np.random.default_rng(seed)
    sharp = rng.random((40, 40)) * 1000
    return np.stack(
        [ndimage.gaussian_filter(sharp, 0.01 + 1.5 * abs(z - focus)) for z in range(n_z)]
    )


def test_focus_scores_peak_at_the_focal_plane() -> None:
    assert int(np.argmax(focus_scores(_focus_stack(4)))) == 4


@pytest.mark.parametrize("focus_channel", [0, "dna"])
def test_best_focus_takes_one_plane_per_field_in_every_channel(focus_channel: int | str) -> None:
    focal = np.array([[[1, 4], [2, 0]]])  # (t, well, field)
    values = np.zeros((1, 2, 2, 6, 2, 40, 40), dtype=np.uint16)
    for w in range(2):
        for f in range(2):
            dna = _focus_stack(int(focal[0, w, f]), seed=w * 2 + f)
            values[0, w, f, :, 0] = dna.astype(np.uint16)
            values[0, w, f, :, 1] = _focus_stack(5 - int(focal[0, w, f])).astype(np.uint16)
    plate = build_plate(
        da.from_array(values), name="p", wells=["A1", "A2"], fields=[0, 1], channels=["dna", "er"]
    )
    with raise_if_dask_computes():
        projected = cellscale.project(plate, "best_focus", focus_channel=focus_channel)
    assert_eq(projected.coords["focus_plane"].data, focal)
    index = focal[:, :, :, np.newaxis, np.newaxis, np.newaxis, np.newaxis]
    assert_eq(projected.data, np.take_along_axis(values, index, axis=3)[:, :, :, 0])


def test_bad_arguments_are_clear_errors() -> None:
    plate = _plate(_values("uint16"), "auto")
    with pytest.raises(ValueError, match="method must be one of"):
        cellscale.project(plate, "median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a channel"):
        cellscale.project(plate, "best_focus", focus_channel="nope")
    with pytest.raises(ValueError, match="no 'z' dim"):
        cellscale.project(cellscale.project(plate, "max"), "max")
