"""The synthetic batch effect: lazy, deterministic per batch, exploitable, and carried to cells."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from sklearn.linear_model import LogisticRegression

import cellscale
from cellscale.measurement import measure
from cellscale.plate import LINEAGE, build_plate
from cellscale.segmentation import segment
from cellscale.synthetic import (
    BATCH_COLUMN,
    batch_plate_map,
    default_plate_map,
    synthetic_plate,
    synthetic_screen_plates,
    with_batch_effect,
)
from cellscale.synthetic._batch import BatchEffect
from tests.conftest import raise_if_dask_computes
from tests.test_segment import Threshold

SMALL: dict[str, Any] = {"wells": 3, "fields": 2, "n_z": 2, "shape": (24, 28), "cells_per_field": 3}


@pytest.fixture(scope="module")
def plate() -> xr.DataArray:
    return synthetic_plate(seed=5, **SMALL)


def test_the_effect_is_lazy_with_one_task_per_chunk_and_keeps_the_plate_layout(
    plate: xr.DataArray,
) -> None:
    with raise_if_dask_computes():
        shifted = with_batch_effect(plate, "day2")
    layer = shifted.data.dask.layers[shifted.data.name]
    assert len(layer) == plate.data.npartitions
    assert shifted.data.chunks == plate.data.chunks
    assert shifted.dtype == plate.dtype and shifted.dims == plate.dims
    for name, coord in plate.coords.items():
        xr.testing.assert_identical(shifted.coords[name].variable, coord.variable)
    assert shifted.coords[BATCH_COLUMN].values.tolist() == ["day2"] * 3
    assert shifted.attrs["synthetic_batch"] == {"batch": "day2", "strength": 1.0, "seed": 0}
    assert shifted.attrs[LINEAGE][-1]["op"] == "with_batch_effect"
    assert shifted.attrs["synthetic"] == plate.attrs["synthetic"]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_strength_zero_leaves_every_pixel_as_it_was(dtype: type) -> None:
    plate = synthetic_plate(dtype=dtype, seed=2, **SMALL)
    np.testing.assert_array_equal(with_batch_effect(plate, "A", strength=0).values, plate.values)


def _oracle(plate: xr.DataArray, batch: str, strength: float) -> np.ndarray:
    """The batch effect in float64, unclipped."""
    channels = [str(c) for c in plate.coords["c"].values]
    effect = BatchEffect.draw(0, batch, channels, strength)
    top = 1.0 if plate.dtype.kind == "f" else np.iinfo(plate.dtype).max
    ys, xs = np.mgrid[0 : plate.sizes["y"], 0 : plate.sizes["x"]]
    wave = (xs * np.cos(effect.angle) + ys * np.sin(effect.angle)) / effect.period_px
    texture = 1 + effect.amplitude * np.sin(2 * np.pi * wave + effect.phase)
    gains = np.asarray(effect.gains)[:, None, None]
    offsets = np.asarray(effect.offsets)[:, None, None] * top
    return plate.values.astype(np.float64) * gains * texture + offsets


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_pixels_follow_the_model_clipped_to_the_range_of_their_dtype(dtype: type) -> None:
    plate = synthetic_plate(dtype=dtype, seed=2, **SMALL)
    top = 1.0 if np.dtype(dtype).kind == "f" else np.iinfo(dtype).max
    expected = _oracle(plate, "A", strength=20.0)
    assert expected.min() < 0 and expected.max() > top  # the strong effect leaves the range
    shifted = with_batch_effect(plate, "A", strength=20.0).values
    assert shifted.dtype == np.dtype(dtype)
    assert shifted.min() == 0 and shifted.max() == top  # clipped, not wrapped around
    tolerance = 1e-5 if np.dtype(dtype).kind == "f" else 1.0
    np.testing.assert_allclose(shifted, np.clip(expected, 0, top), rtol=0, atol=tolerance)


def test_the_effect_depends_on_seed_and_batch_only(plate: xr.DataArray) -> None:
    first = with_batch_effect(plate, "A", seed=3).values
    np.testing.assert_array_equal(with_batch_effect(plate, "A", seed=3).values, first)
    assert not np.array_equal(with_batch_effect(plate, "B", seed=3).values, first)
    assert not np.array_equal(with_batch_effect(plate, "A", seed=4).values, first)


def test_a_channel_or_a_chunk_gets_the_same_effect_wherever_it_is(plate: xr.DataArray) -> None:
    whole = with_batch_effect(plate, "A").values
    one_channel = with_batch_effect(plate.isel(c=[1]), "A").values
    np.testing.assert_array_equal(one_channel, whole[:, :, :, :, [1]])
    tiles = with_batch_effect(plate.chunk(y=10, x=9, c=2), "A")
    assert tiles.data.chunks == plate.chunk(y=10, x=9, c=2).data.chunks
    da.utils.assert_eq(tiles.data, whole)


def _constant_plate(channels: list[str]) -> xr.DataArray:
    data = da.full((1, 1, 1, 1, len(channels), 64, 64), 0.5, dtype=np.float32)
    return build_plate(data, name="flat", wells=["A01"], fields=[1], channels=channels)


def test_each_batch_has_its_own_grating_over_a_flat_image() -> None:
    def dominant_frequency(batch: str) -> tuple[int, ...]:
        image = with_batch_effect(_constant_plate(["nuclei"]), batch).values[0, 0, 0, 0, 0]
        power = np.abs(np.fft.rfft2(image - image.mean()))
        return tuple(int(i) for i in np.unravel_index(np.argmax(power), power.shape))

    first, second = dominant_frequency("A"), dominant_frequency("B")
    assert first != second and first != (0, 0)


def test_channels_get_their_own_gain_and_offset() -> None:
    flat = with_batch_effect(_constant_plate(["nuclei", "cytoplasm"]), "A").values
    means = flat[0, 0, 0, 0].mean(axis=(1, 2))
    assert not np.isclose(means[0], means[1])
    assert not np.allclose(means, 0.5)


def _low_intensity(plate: xr.DataArray) -> np.ndarray:
    """Per image (well, field), the log of each channel's 10th percentile: its background."""
    images = plate.isel(t=0, z=0).values.astype(np.float64)
    low = np.percentile(images, 10, axis=(-2, -1))
    return np.log1p(low.reshape(-1, low.shape[-1]))


@pytest.mark.parametrize(("strength", "separable"), [(1.0, True), (0.0, False)])
def test_a_plain_classifier_tells_the_batches_of_new_plates_apart(
    strength: float, separable: bool
) -> None:
    plates = synthetic_screen_plates(
        4, ["A", "B", "A", "B"], strength=strength, wells=8, fields=2, n_z=1, shape=(32, 32)
    )
    features = [_low_intensity(p) for p in plates]
    batches = [np.full(len(f), i % 2) for i, f in enumerate(features)]
    model = LogisticRegression().fit(np.vstack(features[:2]), np.concatenate(batches[:2]))
    accuracy = model.score(np.vstack(features[2:]), np.concatenate(batches[2:]))
    assert (accuracy >= 0.95) if separable else (accuracy <= 0.75)


def test_screen_plates_have_distinct_names_seeds_and_batches_dealt_in_turn() -> None:
    plates = synthetic_screen_plates(3, 2, strength=0, wells=2, fields=1, n_z=1, shape=(16, 16))
    assert [p.name for p in plates] == ["synthetic-1", "synthetic-2", "synthetic-3"]
    assert [p.coords[BATCH_COLUMN].values[0] for p in plates] == ["batch1", "batch2", "batch1"]
    assert [p.attrs["synthetic"]["seed"] for p in plates] == [0, 1, 2]
    assert not np.array_equal(plates[0].values, plates[2].values)
    with pytest.raises(ValueError, match="2 batches given for 3 plates"):
        synthetic_screen_plates(3, ["A", "B"])


def test_a_batch_plate_map_labels_the_plate_and_must_agree_with_the_effect() -> None:
    plate_map = batch_plate_map(default_plate_map(2), "day1")
    plate = synthetic_plate(plate_map=plate_map, **{**SMALL, "wells": 2})
    assert plate.coords[BATCH_COLUMN].values.tolist() == ["day1", "day1"]
    assert with_batch_effect(plate, "day1").coords[BATCH_COLUMN].values.tolist() == ["day1"] * 2
    with pytest.raises(ValueError, match=r"labelled batch \['day1'\] .* not 'day2'"):
        with_batch_effect(plate, "day2")
    with pytest.raises(ValueError, match="already has a 'Batch' column"):
        batch_plate_map(plate_map, "day2")


def test_bad_arguments_are_refused_with_the_reason(plate: xr.DataArray) -> None:
    with pytest.raises(ValueError, match="already has the batch effect"):
        with_batch_effect(with_batch_effect(plate, "A"), "A")
    with pytest.raises(ValueError, match="strength must be a number >= 0"):
        with_batch_effect(plate, "A", strength=-1)
    with pytest.raises(ValueError, match="dtype float64"):
        with_batch_effect(plate.astype(np.float64), "A")


def test_the_cell_table_of_a_shifted_plate_carries_metadata_batch(tmp_path: Path) -> None:
    shifted = with_batch_effect(synthetic_plate(seed=1, **{**SMALL, "n_z": 1}), "day3")
    cellscale.write_plate(shifted, tmp_path / "plate.zarr", progress=False)
    reopened = cellscale.open_plate(tmp_path / "plate.zarr")
    cells = measure(segment(reopened, Threshold(), channel="nuclei"), reopened).compute()
    assert len(cells) > 0
    assert set(cells["Metadata_Batch"]) == {"day3"}
