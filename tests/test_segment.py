"""cellscale.segment: lazy labels per compartment, batching, border drop, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from dask.array.utils import assert_eq
from scipy import ndimage

import cellscale
from cellscale.plate import MAX_FIELD_PIXELS, PlateError
from cellscale.segmentation import SegmenterBase, relabel_consecutive, segment
from cellscale.testing import SegmenterTests, synthetic_plate
from tests.conftest import raise_if_dask_computes


class Threshold(SegmenterBase):
    """Objects are connected components above mean + 2 std of the first channel."""

    compartments = ("nuclei",)

    def __init__(self, fields_per_task: int = 1) -> None:
        self.fields_per_task = fields_per_task
        self.batches: list[int] = []

    def __call__(self, image: np.ndarray) -> np.ndarray:
        channel = image[0].astype(np.float64)
        if channel.std() == 0:
            return np.zeros((1, *channel.shape), np.uint32)
        labels, _ = ndimage.label(channel > channel.mean() + 2 * channel.std())
        return relabel_consecutive(labels)[np.newaxis]

    def segment_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        self.batches.append(len(images))
        return super().segment_batch(images)


class TestThresholdConforms(SegmenterTests):
    def make_segmenter(self) -> Threshold:
        return Threshold()


@pytest.fixture(scope="module")
def mip():
    plate = synthetic_plate(wells=2, fields=3, n_z=3, shape=(96, 80), seed=2)
    return cellscale.project(plate, "max")


def _eager(mip, exclude_border: bool = True) -> np.ndarray:
    segmenter = Threshold()
    out = np.zeros((1, 2, 3, 96, 80), np.uint32)
    for w in range(2):
        for f in range(3):
            labels = segmenter(mip.isel(t=0, well=w, field=f).values[[0]])
            if exclude_border:
                from cellscale.segmentation._border import drop_border_objects

                labels, _ = drop_border_objects(labels)
            out[0, w, f] = labels[0]
    return out


@pytest.mark.parametrize("per_task", [1, 4])
def test_labels_are_lazy_and_equal_the_segmenter_called_per_field(mip, per_task: int) -> None:
    segmenter = Threshold(fields_per_task=per_task)
    with raise_if_dask_computes():
        labels = segment(mip, segmenter, channel="nuclei")
    assert labels["nuclei"].dims == ("t", "well", "field", "y", "x")
    assert labels["nuclei"].data.chunksize == (1, 1, 1, 96, 80)
    assert_eq(labels["nuclei"].data, _eager(mip))
    assert sorted(segmenter.batches) == ([2, 4] if per_task == 4 else [1] * 6)
    assert list(labels.coords["treatment"].values) == list(mip.coords["treatment"].values)
    assert labels.attrs["lineage"][-1]["op"] == "segment"


def test_border_objects_are_dropped_and_counted(mip) -> None:
    kept = segment(mip, Threshold(), channel="nuclei").compute()
    every = segment(mip, Threshold(), channel="nuclei", exclude_border=False).compute()
    np.testing.assert_array_equal(kept["nuclei"].values, _eager(mip))
    np.testing.assert_array_equal(every["nuclei"].values, _eager(mip, exclude_border=False))
    total = every["nuclei"].max(dim=("y", "x")).values
    remaining = kept["nuclei"].max(dim=("y", "x")).values
    np.testing.assert_array_equal(total - remaining, kept["border_dropped"].values)
    assert kept["border_dropped"].values.sum() > 0
    edges = kept["nuclei"].values[..., [0, -1], :], kept["nuclei"].values[..., :, [0, -1]]
    assert not any(e.any() for e in edges)


def test_holes_give_empty_labels_and_no_task() -> None:
    plate = synthetic_plate(wells=2, fields=2, shape=(64, 64), seed=1)
    present = plate.coords["field_present"].values.copy()
    present[1, 1] = False
    plate = plate.assign_coords(field_present=(("well", "field"), present))
    segmenter = Threshold()
    labels = segment(plate.isel(z=[0]), segmenter, channel="nuclei").compute()
    assert not labels["nuclei"].values[0, 1, 1].any()
    assert sum(segmenter.batches) == 3


def test_excluded_fields_are_not_segmented_and_the_skip_is_recorded(mip) -> None:
    import pandas as pd

    wells = mip.coords["well"].values
    flagged = pd.DataFrame({"t": [mip.coords["t"].values[0]], "well": [wells[1]], "field": [2]})
    segmenter = Threshold()
    labels = segment(mip, segmenter, channel="nuclei", exclude=flagged)
    assert labels.attrs["lineage"][-1]["excluded"] == [f"{wells[1]}/f2/t0"]
    values = labels["nuclei"].values
    expected = _eager(mip)
    expected[0, 1, list(mip.coords["field"].values).index(2)] = 0
    np.testing.assert_array_equal(values, expected)
    assert sum(segmenter.batches) == 5
    by_field = segment(mip, Threshold(), channel="nuclei", exclude=[(wells[1], 2)])
    assert by_field.attrs["lineage"][-1]["excluded"] == [f"{wells[1]}/f2/t0"]
    assert by_field["nuclei"].data.name == labels["nuclei"].data.name
    other = segment(mip, Threshold(), channel="nuclei")
    assert other["nuclei"].data.name != labels["nuclei"].data.name


@pytest.mark.parametrize(
    ("exclude", "message"),
    [
        ([("Z99", 1)], "well Z99"),
        ([("B02", 9)], "field 9"),
        ([(7.0, "B02", 1)], "t=7.0"),
        ([("B02",)], r"\(well, field\) or \(t, well, field\)"),
    ],
)
def test_excluding_what_the_plate_lacks_is_an_error(mip, exclude: list, message: str) -> None:
    wells = list(mip.coords["well"].values)
    exclude = [tuple(wells[0] if v == "B02" else v for v in item) for item in exclude]
    with pytest.raises(PlateError, match=message):
        segment(mip, Threshold(), channel="nuclei", exclude=exclude)


def test_a_wrong_channel_lists_the_channels(mip) -> None:
    with pytest.raises(
        PlateError,
        match=r"channel 'DNA' is not in the plate; its channels are \['nuclei', 'cytoplasm'\]",
    ):
        segment(mip, Threshold(), channel="DNA")
    with pytest.raises(PlateError, match="out of range"):
        segment(mip, Threshold(), channel=5)


def test_the_classical_compartment_is_neutral_without_a_nuclei_channel(mip) -> None:
    with raise_if_dask_computes():
        alone = segment(mip, "classical", channel="cytoplasm")
        named = segment(mip, "classical", channel="nuclei", compartment="nuclei")
        seeded = segment(mip, "classical", channel="cytoplasm", nuclei_channel="nuclei")
    assert alone.attrs["compartments"] == ["objects"]
    assert named.attrs["compartments"] == ["nuclei"]
    assert seeded.attrs["compartments"] == ["cells", "nuclei"]
    with pytest.raises(ValueError, match="give a nuclei_channel"):
        segment(mip, "classical", channel="cytoplasm", compartment="cells")
    with pytest.raises(ValueError, match="leave compartment out"):
        segment(mip, "classical", channel="cytoplasm", nuclei_channel="nuclei", compartment="x")


def test_z_stacks_must_be_projected_or_segmented_in_3d() -> None:
    plate = synthetic_plate(wells=1, fields=1, n_z=3, shape=(32, 32))
    with pytest.raises(PlateError, match="project it first"):
        segment(plate, Threshold(), channel=0)
    with pytest.raises(PlateError, match="do_3d=True needs a plate with Z stacks"):
        segment(cellscale.project(plate, "max"), Threshold(), channel=0, do_3d=True)


def test_fields_too_large_for_uint32_ids_are_refused() -> None:
    import dask.array as da
    import xarray as xr

    side = 65536 + 1  # (65537)^2 > 2^32 - 1 pixels
    huge = xr.DataArray(
        da.zeros((1, 1, 1, 1, side, side), dtype=np.uint16, chunks=(1, 1, 1, 1, side, side)),
        dims=("t", "well", "field", "c", "y", "x"),
        coords={"well": ["A01"]},
    )
    assert side * side > MAX_FIELD_PIXELS
    with pytest.raises(PlateError, match="could hold more objects than uint32 ids"):
        segment(huge, Threshold(), channel=0)


def test_a_segmenter_breaking_the_contract_is_named_with_the_field(mip) -> None:
    class Gappy(Threshold):
        def __call__(self, image: np.ndarray) -> np.ndarray:
            labels = super().__call__(image)
            return labels * 2  # ids 2, 4, 6 ...

    with pytest.raises(
        ValueError, match=r"well A0\d field \d t=0: the segmenter's ids are not consecutive"
    ):
        segment(mip, Gappy(), channel="nuclei").compute()


def test_all_zero_and_saturated_fields_have_no_cells_and_are_recorded(mip) -> None:
    blank = mip.copy(data=mip.data * 0)
    saturated = mip.copy(data=mip.data * 0 + np.iinfo(mip.dtype).max)
    for plate in (blank, saturated):
        labels = segment(plate, Threshold(), channel="nuclei").compute()
        assert not labels["nuclei"].values.any()
        assert (labels["border_dropped"].values == 0).all()


class CellsAndNuclei(Threshold):
    """Two compartments sharing ids: the same objects as cells and as nuclei."""

    compartments = ("cells", "nuclei")

    def __call__(self, image: np.ndarray) -> np.ndarray:
        labels = super().__call__(image)
        return np.concatenate([labels, labels])


def test_every_compartment_comes_from_one_segmentation_of_each_field(mip, tmp_path) -> None:
    path = tmp_path / "plate.zarr"
    cellscale.write_plate(mip, path, progress=False)
    stored = cellscale.open_plate(path)
    segmenter = CellsAndNuclei()
    labels = segment(stored, segmenter, channel="nuclei")
    cellscale.write_labels(labels, path, progress=False)
    assert sum(segmenter.batches) == 6  # 2 wells x 3 fields, whatever the compartments
    segmenter.batches.clear()
    cellscale.measure(labels, stored).compute()  # measured from the lazy labels
    assert sum(segmenter.batches) == 2 * 6  # counted (to lay out cell_id), then measured
