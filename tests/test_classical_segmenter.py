"""The classical segmenter against known answers, and the instance-matching metrics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.transform import rescale

from cellscale.segmentation._classical import ClassicalSegmenter, estimate_diameter
from cellscale.segmentation._metrics import (
    DSB_THRESHOLDS,
    MatchCounts,
    dsb_score,
    iou_pairs,
    match_counts,
)
from cellscale.testing import SegmenterTests, synthetic_labels, synthetic_plate

BBBC039 = "bbbc039_u2os_nuclei"


class TestClassicalNuclei(SegmenterTests):
    channels = 1

    def make_segmenter(self) -> ClassicalSegmenter:
        return ClassicalSegmenter()


class TestClassicalCells(SegmenterTests):
    channels = 2

    def make_segmenter(self) -> ClassicalSegmenter:
        return ClassicalSegmenter(compartment="cells")


class TestClassical3D(SegmenterTests):
    channels = 1
    shape = (16, 96, 96)

    def make_segmenter(self) -> ClassicalSegmenter:
        return ClassicalSegmenter()


def _discs(
    shape: tuple[int, ...],
    centres: Sequence[Sequence[float]],
    radius: float | Sequence[float],
    brightness: float | Sequence[float] = 1000.0,
    *,
    seed: int = 0,
) -> np.ndarray:
    """Blurred discs (balls in 3D) on a background of 100 with camera-like noise, uint16."""
    radii = np.broadcast_to(radius, len(centres))
    levels = np.broadcast_to(brightness, len(centres))
    grid = np.indices(shape, dtype=np.float64)
    image = np.zeros(shape)
    for centre, r, level in zip(centres, radii, levels, strict=True):
        inside = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) < r**2
        image = np.maximum(image, level * inside)
    image = ndi.gaussian_filter(image, 1.0) + 100.0
    noisy = np.random.default_rng(seed).normal(image, np.sqrt(image))
    return np.clip(noisy, 0, 65535).astype(np.uint16)


def _count(labels: np.ndarray) -> int:
    return len(np.unique(labels[labels > 0]))


# --- nuclei -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fields ``(field, c, y, x)`` of a control and a treated well, their cell and nucleus truth."""
    plate = synthetic_plate(
        wells=["A01", "H12"], fields=1, n_z=1, shape=(192, 192), cells_per_field=40, seed=5
    ).compute()
    images = plate.isel(t=0, z=0).values.reshape(-1, 2, 192, 192)
    cells = synthetic_labels(plate).values.reshape(-1, 192, 192)
    nuclei = synthetic_labels(plate, compartment="nucleus").values.reshape(-1, 192, 192)
    return images, cells, nuclei


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_nuclei_of_synthetic_fields_match_the_truth(dtype: str) -> None:
    plate = synthetic_plate(wells=["B02"], fields=1, n_z=1, shape=(192, 192), dtype=dtype, seed=2)
    image = plate.isel(t=0, well=0, field=0, z=0).values[[0]]  # the nuclei channel
    truth = synthetic_labels(plate, compartment="nucleus").values[0, 0, 0]
    counts = match_counts(truth, ClassicalSegmenter()(image)[0])
    assert counts.tp > 15
    assert counts.f1 >= 0.95


def test_touching_nuclei_are_split() -> None:
    centres = [(40, 30), (40, 47), (40, 90), (55, 98), (100, 40), (100, 64)]
    # two alike touching, a bright one touching one 2.5 times dimmer, and one 5 times
    # dimmer 4 pixels from a bright one
    brightness = [1000, 1000, 1000, 400, 1500, 300]
    image = _discs((140, 140), centres, 10, brightness)
    labels = ClassicalSegmenter()(image[np.newaxis])[0]
    assert _count(labels) == 6
    assert len(np.unique(labels[tuple(np.array(centres).T)])) == 6  # one object per disc


def test_elongated_and_textured_nuclei_are_not_split() -> None:
    yy, xx = np.mgrid[:120, :120]
    ellipse = ((yy - 60) / 12) ** 2 + ((xx - 60) / 30) ** 2 < 1
    texture = ndi.gaussian_filter(np.random.default_rng(1).normal(0, 300, (120, 120)), 2)
    image = ndi.gaussian_filter(ellipse * (1000 + texture), 1) + 100
    labels = ClassicalSegmenter()(image[np.newaxis].astype(np.float32))[0]
    assert _count(labels) == 1
    assert (labels > 0)[ellipse].mean() > 0.9


def test_a_dim_nucleus_beside_bright_ones_keeps_its_size() -> None:
    # 4 times dimmer than its neighbours; a global Otsu threshold would lose it
    image = _discs((100, 160), [(50, 30), (50, 80), (50, 130)], 12, [2000, 500, 2000])
    labels = ClassicalSegmenter()(image[np.newaxis])[0]
    sizes = [np.count_nonzero(labels == labels[50, x]) for x in (30, 80, 130)]
    assert min(sizes) > 0.7 * np.pi * 12**2
    assert max(sizes) < 1.4 * np.pi * 12**2


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((1, 96, 96), np.uint16),
        np.full((1, 96, 96), 700, np.uint16),
        np.full((1, 96, 96), 0.25, np.float32),
        np.random.default_rng(0).normal(500, 20, (1, 96, 96)).astype(np.float32),
        np.random.default_rng(1).poisson(3, (1, 96, 96)).astype(np.uint8),
        np.random.default_rng(2).normal(100, 5, (1, 128, 128)) + np.linspace(0, 300, 128),
    ],
    ids=["zeros", "constant", "constant-float", "gaussian-noise", "poisson-noise", "ramp"],
)
def test_fields_without_nuclei_have_no_objects(image: np.ndarray) -> None:
    assert not ClassicalSegmenter()(image).any()
    assert not ClassicalSegmenter(compartment="cells")(np.concatenate([image, image])).any()


def test_labels_do_not_depend_on_the_dtype_or_the_intensity_scale() -> None:
    image = _discs((96, 96), [(30, 30), (30, 60), (65, 45)], 9)
    labels = ClassicalSegmenter()(image[np.newaxis])
    scaled = ClassicalSegmenter()((image[np.newaxis] / 65535).astype(np.float32))
    assert labels.dtype == scaled.dtype == np.uint32
    assert _count(labels) == 3
    assert (labels == scaled).mean() > 0.995


def test_non_finite_pixels_count_as_background() -> None:
    image = _discs((96, 96), [(30, 30), (30, 60), (65, 45)], 9).astype(np.float32)
    holed = image.copy()
    holed[80:, :] = np.nan
    holed[0, 0] = np.inf
    labels = ClassicalSegmenter()(holed[np.newaxis])[0]
    assert _count(labels) == 3
    assert not ClassicalSegmenter()(np.full((1, 32, 32), np.nan)).any()


def test_a_given_diameter_is_used() -> None:
    image = _discs((96, 96), [(30, 30), (30, 62), (66, 46)], 8)
    assert _count(ClassicalSegmenter(diameter=16)(image[np.newaxis])) == 3
    # told that nuclei are 5 times wider, it rejects these as debris
    assert _count(ClassicalSegmenter(diameter=80)(image[np.newaxis])) == 0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="compartment"):
        ClassicalSegmenter(compartment="cyto_plasm")  # not a column prefix
    with pytest.raises(ValueError, match="compartment"):
        ClassicalSegmenter(compartment="")
    with pytest.raises(ValueError, match="diameter"):
        ClassicalSegmenter(diameter=0)
    with pytest.raises(ValueError, match=r"\(2, y, x\)"):
        ClassicalSegmenter(compartment="cells")(np.zeros((1, 32, 32)))


def test_one_channel_gives_one_neutrally_named_compartment_unless_named() -> None:
    image = _discs((96, 96), [(30, 30), (30, 62), (66, 46)], 8)[np.newaxis]
    default, named = ClassicalSegmenter(), ClassicalSegmenter(compartment="vesicles")
    assert default.compartments == ("objects",)
    assert named.compartments == ("vesicles",)
    np.testing.assert_array_equal(default(image), named(image))
    assert _count(default(image)) == 3


# --- cells ------------------------------------------------------------------------


def test_cells_of_synthetic_fields_match_the_truth_and_contain_their_nuclei(
    synthetic: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    images, cells_truth, nuclei_truth = synthetic
    segmenter = ClassicalSegmenter(compartment="cells")
    for image, cell_truth, nucleus_truth in zip(images, cells_truth, nuclei_truth, strict=True):
        cells, nuclei = segmenter(image[::-1])  # cytoplasm first, then nuclei
        assert match_counts(cell_truth, cells).f1 >= 0.95
        assert match_counts(cell_truth, cells, threshold=0.7).f1 >= 0.9
        assert match_counts(nucleus_truth, nuclei).f1 >= 0.95
        assert set(np.unique(cells)) == set(np.unique(nuclei))
        assert (cells[nuclei > 0] == nuclei[nuclei > 0]).all()
        # a cell is more than its nucleus, and not much more than the true cell
        assert np.count_nonzero(cells) > 2 * np.count_nonzero(nuclei)
        assert np.count_nonzero(cells) < 1.3 * np.count_nonzero(cell_truth)


def test_cells_stay_off_the_background() -> None:
    nuclei = _discs((120, 120), [(40, 40), (80, 80)], 6)
    cytoplasm = _discs((120, 120), [(40, 40), (80, 80)], 16, 300)
    cells, _ = ClassicalSegmenter(compartment="cells")(np.stack([cytoplasm, nuclei]))
    assert _count(cells) == 2
    for centre in ((40, 40), (80, 80)):
        area = np.count_nonzero(cells == cells[centre])
        assert 0.8 * np.pi * 16**2 < area < 1.3 * np.pi * 16**2


# --- 3D ---------------------------------------------------------------------------


def test_touching_nuclei_are_split_in_3d() -> None:
    centres = [(12, 30, 30), (12, 30, 47), (12, 70, 50)]
    image = _discs((24, 100, 80), centres, 9)
    labels = ClassicalSegmenter()(image[np.newaxis])
    assert labels.shape == (1, 24, 100, 80)
    assert _count(labels) == 3
    assert len(np.unique(labels[0][tuple(np.array(centres).T)])) == 3
    volume = np.count_nonzero(labels[0] == labels[0][centres[2]])
    assert 0.7 < volume / (4 / 3 * np.pi * 9**3) < 1.4


def test_cells_in_3d_contain_their_nuclei() -> None:
    centres = [(10, 30, 30), (10, 30, 70)]
    image = np.stack([_discs((20, 60, 100), centres, 14, 300), _discs((20, 60, 100), centres, 6)])
    cells, nuclei = ClassicalSegmenter(compartment="cells")(image)
    assert _count(cells) == _count(nuclei) == 2
    assert (cells[nuclei > 0] == nuclei[nuclei > 0]).all()
    assert np.count_nonzero(cells) > 4 * np.count_nonzero(nuclei)


# --- diameter estimation ------------------------------------------------------------


@pytest.mark.parametrize("radius", [4, 8, 15, 25])
def test_estimated_diameter_is_within_a_quarter_of_the_discs(radius: int) -> None:
    spacing = 4 * radius
    centres = [(y, x) for y in range(spacing, 5 * spacing, spacing) for x in (spacing, 3 * spacing)]
    image = _discs((5 * spacing, 4 * spacing), centres, radius, seed=radius)
    assert estimate_diameter(image) == pytest.approx(2 * radius, rel=0.25)


def test_estimated_diameter_follows_the_magnification(
    synthetic: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    images, _, nuclei = synthetic
    sizes = np.bincount(nuclei[0].ravel())[1:]
    true_diameter = np.sqrt(4 * np.median(sizes[sizes > 0]) / np.pi)
    field = images[0, 0].astype(np.float32)
    assert estimate_diameter(field) == pytest.approx(true_diameter, rel=0.25)
    doubled = rescale(field, 2.0, order=1)
    assert estimate_diameter(doubled) == pytest.approx(2 * true_diameter, rel=0.25)
    halved = rescale(doubled, 0.25, order=1, anti_aliasing=True)
    assert estimate_diameter(halved) == pytest.approx(true_diameter / 2, rel=0.3)


def test_estimated_diameter_of_a_field_without_blobs_is_nan() -> None:
    assert np.isnan(estimate_diameter(np.zeros((64, 64), np.uint16)))
    assert np.isnan(estimate_diameter(np.full((64, 64), 3.0)))
    with pytest.raises(ValueError, match="2D"):
        estimate_diameter(np.zeros((2, 64, 64)))


@pytest.mark.realdata
def test_nuclei_of_real_bbbc039_fields_match_the_manual_truth(real_data: Path) -> None:
    folder = real_data / BBBC039
    images = sorted((folder / "images").glob("*.tif"))[::12]  # 3 of the 36 fields
    pooled = MatchCounts(0, 0, 0)
    for path in images:
        truth = tifffile.imread(folder / "labels" / path.name)
        pooled += match_counts(truth, ClassicalSegmenter()(tifffile.imread(path)[np.newaxis])[0])
    assert pooled.tp > 200
    assert pooled.f1 >= 0.9


# --- metrics --------------------------------------------------------------------


def test_identical_labels_match_perfectly_whatever_their_ids() -> None:
    truth = np.array([[1, 1, 0, 7], [1, 0, 0, 7], [0, 3, 3, 0]])
    pred = np.where(truth > 0, 100 - truth, 0)
    counts = match_counts(truth, pred)
    assert counts == MatchCounts(tp=3, fp=0, fn=0)
    assert counts.precision == counts.recall == counts.f1 == 1.0
    assert dsb_score(truth, pred) == 1.0


def test_iou_pairs_are_the_overlaps_of_every_pair() -> None:
    truth = np.zeros((4, 10), int)
    truth[:, :4] = 1  # 16 pixels
    truth[:, 6:] = 2  # 16 pixels
    pred = np.zeros((4, 10), int)
    pred[:, 1:5] = 5  # 12 shared with 1: IoU 12 / 20
    pred[:2, 5:8] = 9  # 4 shared with 2: IoU 4 / 18
    true_index, pred_index, iou = iou_pairs(truth, pred)
    assert true_index.tolist() == [0, 1]
    assert pred_index.tolist() == [0, 1]
    np.testing.assert_allclose(iou, [12 / 20, 4 / 18])
    assert match_counts(truth, pred) == MatchCounts(tp=1, fp=1, fn=1)
    assert match_counts(truth, pred, threshold=0.2) == MatchCounts(tp=2, fp=0, fn=0)
    assert match_counts(truth, pred, threshold=0.6) == MatchCounts(tp=0, fp=2, fn=2)  # strict


def test_matching_below_one_half_is_one_to_one() -> None:
    truth = np.array([[1, 1, 2, 2]])
    pred = np.array([[4, 4, 4, 0]])  # IoU 2/3 with 1 and 1/4 with 2: one of them matches
    assert match_counts(truth, pred, threshold=0.2) == MatchCounts(tp=1, fp=0, fn=1)
    split = np.array([[3, 3, 3, 3]])  # one prediction over two objects of IoU 1/2 each
    assert match_counts(truth, split, threshold=0.4) == MatchCounts(tp=1, fp=0, fn=1)


def test_dsb_score_averages_over_the_iou_thresholds() -> None:
    truth = np.zeros((1, 20), int)
    truth[0, :16] = 1
    pred = np.zeros((1, 20), int)
    pred[0, 4:16] = 1  # IoU 12 / 16 = 0.75: matches at 0.5 … 0.7, not from 0.75 on
    assert DSB_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    assert dsb_score(truth, pred) == pytest.approx(0.5)
    two = pred.copy()
    two[0, 18:] = 2  # a false positive: 1 / (1 + 1) where the first matches
    assert dsb_score(truth, two) == pytest.approx(0.25)


def test_empty_images_score_one_and_one_sided_empties_zero() -> None:
    empty = np.zeros((5, 5), np.uint16)
    some = empty.copy()
    some[1:3, 1:3] = 4
    assert match_counts(empty, empty).f1 == 1.0
    assert dsb_score(empty, empty) == 1.0
    for truth, pred in ((empty, some), (some, empty)):
        counts = match_counts(truth, pred)
        assert counts.f1 == counts.precision == counts.recall == 0.0
        assert dsb_score(truth, pred) == 0.0


def test_pooled_counts_add_up_and_shapes_must_agree() -> None:
    pooled = MatchCounts(3, 1, 0) + MatchCounts(1, 0, 3)
    assert pooled == MatchCounts(tp=4, fp=1, fn=3)
    assert pooled.f1 == pytest.approx(8 / 12)
    with pytest.raises(ValueError, match="shape"):
        iou_pairs(np.zeros((3, 3), int), np.zeros((3, 4), int))
