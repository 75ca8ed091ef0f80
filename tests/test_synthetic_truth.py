"""Ground truth of synthetic plates: labels, cell table, phenotypes, focus."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage
from skimage.measure import regionprops_table

import cellscale
from cellscale.testing import (
    default_plate_map,
    synthetic_cells,
    synthetic_focal_planes,
    synthetic_labels,
    synthetic_plate,
)
from tests.conftest import raise_if_dask_computes


def _plate(**kwargs: object) -> xr.DataArray:
    params: dict = {"wells": 2, "fields": 2, "n_z": 5, "shape": (96, 80), "cells_per_field": 12}
    return synthetic_plate(**{**params, **kwargs})


def test_labels_are_lazy_uint32_one_chunk_per_field() -> None:
    plate = _plate(n_t=2)
    with raise_if_dask_computes():
        labels = synthetic_labels(plate)
        nuclei = synthetic_labels(plate, compartment="nucleus")
    assert labels.dims == ("t", "well", "field", "y", "x")
    assert labels.dtype == np.uint32 and nuclei.dtype == np.uint32
    assert labels.data.chunksize == (1, 1, 1, 96, 80)
    assert list(labels.coords["well"].values) == list(plate.coords["well"].values)
    assert "concentration" in labels.coords


def test_labels_match_the_cell_table_and_nuclei_lie_in_their_cells() -> None:
    plate = _plate(n_t=2)
    labels = synthetic_labels(plate).values
    nuclei = synthetic_labels(plate, compartment="nucleus").values
    table = synthetic_cells(plate)
    assert (nuclei[nuclei > 0] == labels[nuclei > 0]).all()
    groups = table.groupby(["t", "well", "field"])
    for ti, t in enumerate(plate.coords["t"].values):
        for wi, well in enumerate(plate.coords["well"].values):
            for fi, field in enumerate(plate.coords["field"].values):
                ids = np.unique(labels[ti, wi, fi])
                expected = groups.get_group((t, well, field))["label"].to_numpy()
                np.testing.assert_array_equal(ids[ids > 0], expected)
                np.testing.assert_array_equal(np.unique(nuclei[ti, wi, fi])[1:], expected)


def test_some_cells_touch_the_border() -> None:
    labels = synthetic_labels(_plate(wells=4)).values
    edges = np.concatenate(
        [labels[..., 0, :], labels[..., -1, :], labels[..., :, 0], labels[..., :, -1]], axis=-1
    )
    assert (edges > 0).any()


def test_stains_are_brighter_inside_their_labels_at_the_focal_plane() -> None:
    plate = _plate()
    focus = synthetic_focal_planes(plate).values
    images = plate.values.astype(np.float64)
    cells = synthetic_labels(plate).values > 0
    nuclei = synthetic_labels(plate, compartment="nucleus").values > 0
    for wi in range(plate.sizes["well"]):
        for fi in range(plate.sizes["field"]):
            z = focus[0, wi, fi]
            dna, cyto = images[0, wi, fi, z]
            inside, nucleus = cells[0, wi, fi], nuclei[0, wi, fi]
            assert dna[nucleus].mean() > 4 * dna[~inside].mean()
            assert cyto[inside & ~nucleus].mean() > 2 * cyto[~inside].mean()


def test_a_focus_measure_peaks_at_the_focal_plane() -> None:
    plate = _plate(wells=3, n_z=6, cells_per_field=15)
    truth = synthetic_focal_planes(plate).values
    nuclei = plate.sel(c="nuclei").values.astype(np.float64)
    laplacian = np.stack([ndimage.laplace(plane) for plane in nuclei.reshape(-1, 96, 80)])
    focus_measure = laplacian.reshape(*nuclei.shape[:-2], -1).var(axis=-1)
    np.testing.assert_array_equal(focus_measure.argmax(axis=-1), truth)
    for index in np.ndindex(truth.shape):
        measure, best = focus_measure[index], truth[index]
        assert (np.diff(measure[: best + 1]) > 0).all()
        assert (np.diff(measure[best:]) < 0).all()


def _per_well(plate: xr.DataArray, table: pd.DataFrame) -> pd.DataFrame:
    """Mean nucleus area, cell elongation and nucleus intensity per (t, well) from labels."""
    labels = synthetic_labels(plate).values
    nuclei = synthetic_labels(plate, compartment="nucleus").values
    focus = synthetic_focal_planes(plate).values
    images = plate.sel(c="nuclei").values
    rows = []
    for ti, wi, fi in np.ndindex(labels.shape[:3]):
        image = images[ti, wi, fi, focus[ti, wi, fi]]
        cell = regionprops_table(labels[ti, wi, fi], properties=("label", "eccentricity"))
        nucleus = regionprops_table(
            nuclei[ti, wi, fi], intensity_image=image, properties=("area", "intensity_mean")
        )
        rows.append(
            pd.DataFrame(
                {
                    "t": ti,
                    "well": str(plate.coords["well"].values[wi]),
                    "eccentricity": cell["eccentricity"],
                    "nucleus_area": nucleus["area"],
                    "nucleus_intensity": nucleus["intensity_mean"],
                }
            )
        )
    measured = pd.concat(rows).groupby(["t", "well"]).mean()
    return measured.join(table, on="well")


def test_concentration_and_time_change_size_shape_and_intensity() -> None:
    wells = ["A01", "A02", "A03", "A04"]
    table = default_plate_map(wells, concentrations=[0.3, 3.0, 30.0])
    plate = synthetic_plate(
        wells=wells,
        fields=3,
        t_hours=[4, 72],
        n_z=1,
        channels=["nuclei"],
        shape=(160, 160),
        cells_per_field=20,
        plate_map=table,
        seed=11,
    )
    measured = _per_well(plate, table)
    late = measured.loc[1].sort_values("concentration")
    for feature in ("nucleus_area", "eccentricity", "nucleus_intensity"):
        assert late[feature].is_monotonic_increasing, (feature, late)
    assert late["nucleus_area"].iloc[-1] > 1.3 * late["nucleus_area"].iloc[0]
    early, top = measured.loc[0], late.index[-1]
    assert late.loc[top, "nucleus_area"] > 1.2 * early.loc[top, "nucleus_area"]
    control = late.index[0]
    ratio = late.loc[control, "nucleus_area"] / early.loc[control, "nucleus_area"]
    assert 0.85 < ratio < 1.15
    cells = synthetic_cells(plate)
    counts = cells.groupby(["t", "well"]).size()
    assert counts.loc[(72 * 3600.0, "A01")] > counts.loc[(4 * 3600.0, "A01")]
    assert counts.loc[(72 * 3600.0, "A04")] < counts.loc[(72 * 3600.0, "A01")]


def test_truth_follows_the_plate_through_a_subset() -> None:
    plate = _plate(wells=3, n_t=2)
    whole = synthetic_labels(plate).values
    part = plate.isel(t=[1], well=[2], field=[0])
    np.testing.assert_array_equal(synthetic_labels(part).values, whole[1:, 2:, :1])
    focus = synthetic_focal_planes(plate).values
    np.testing.assert_array_equal(synthetic_focal_planes(part).values, focus[1:, 2:, :1])
    table = synthetic_cells(part)
    assert set(table["well"]) == {"A03"} and set(table["field"]) == {1}
    assert (table["focal_plane"] == focus[1, 2, 0]).all()


def test_best_focus_projection_finds_the_true_focal_planes() -> None:
    plate = _plate(wells=3, n_t=2, channels=3)
    projected = cellscale.project(plate, method="best_focus")
    planes = synthetic_focal_planes(plate).values[..., None, None, None, None]
    expected = np.take_along_axis(plate.values, planes, axis=3)[:, :, :, 0]
    np.testing.assert_array_equal(projected.values, expected)
    labels = synthetic_labels(projected)
    np.testing.assert_array_equal(labels.values, synthetic_labels(plate).values)


def test_background_follows_the_true_flatfield_over_the_camera_offset() -> None:
    from cellscale.testing import CAMERA_OFFSET, illumination_truth

    plate = synthetic_plate(wells=4, fields=4, n_z=1, shape=(64, 96), cells_per_field=3)
    images = plate.isel(z=0, c=0).values.astype(np.float64)  # (t, well, field, y, x)
    background = synthetic_labels(plate).values == 0
    offset = CAMERA_OFFSET * np.iinfo(np.uint16).max
    sums = np.where(background, images - offset, 0.0).sum(axis=(0, 1, 2))
    level = sums / background.sum(axis=(0, 1, 2))  # mean background, offset removed
    truth = illumination_truth((64, 96))
    assert truth.dtype == np.float32 and abs(float(truth.mean()) - 1) < 1e-6
    assert np.corrcoef(level.ravel(), truth.ravel())[0, 1] > 0.97
    smooth_level = ndimage.uniform_filter(level, 8, mode="nearest")
    corners = smooth_level[[4, 4, -5, -5], [4, -5, 4, -5]].mean()
    expected = truth[[4, 4, -5, -5], [4, -5, 4, -5]].mean() / truth[32, 48]
    assert abs(corners / smooth_level[32, 48] - expected) < 0.05
