"""The cell table: CellProfiler names, cell_id order, pycytominer, Parquet on disk, summaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.measure import regionprops

import cellscale
from cellscale._stages import StaleOutputError
from cellscale.cells import CELL_ID, METADATA_COLUMNS, check_cell_table, feature_column
from cellscale.measurement import measure, read_cells, well_summary, write_cells
from cellscale.measurement._features import shape_features
from cellscale.segmentation import SegmenterBase, segment
from cellscale.testing import write_synthetic_plate
from tests.test_segment import Threshold

SHAPE_FEATURES = [
    "Area", "Perimeter", "Eccentricity", "Solidity", "FormFactor", "MajorAxisLength",
    "MinorAxisLength", "Orientation", "Center_X", "Center_Y", "BoundingBoxMinimum_X",
    "BoundingBoxMinimum_Y", "BoundingBoxMaximum_X", "BoundingBoxMaximum_Y", "TouchesBorder",
]  # fmt: skip
INTENSITY_FEATURES = [
    "MeanIntensity", "StdIntensity", "MinIntensity", "MaxIntensity", "IntegratedIntensity",
]  # fmt: skip


class CellsAndNuclei(SegmenterBase):
    """Nuclei by threshold; cells are the nuclei grown by 3 pixels; every third nucleus is lost."""

    compartments = ("cells", "nuclei")

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from skimage.segmentation import expand_labels

        nuclei = Threshold()(image[1:])[0]
        cells = expand_labels(nuclei, 3)
        nuclei = np.where(nuclei % 3 == 0, 0, nuclei).astype(np.uint32)
        return np.stack([cells, nuclei]).astype(np.uint32)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("measure")
    plate = write_synthetic_plate(
        folder / "p.zarr", wells=3, fields=2, n_z=3, shape=(96, 96), seed=6
    )
    out = folder / "mip.zarr"
    cellscale.write_plate(cellscale.project(plate, "max"), out, progress=False)
    cellscale.write_labels(
        segment(cellscale.open_plate(out), Threshold(), channel="nuclei"), out, progress=False
    )
    return out


def test_every_listed_column_is_there_and_ids_are_row_numbers(store: Path) -> None:
    table = measure(cellscale.open_labels(store), cellscale.open_plate(store)).compute()
    check_cell_table(table)
    assert list(table.columns[: 1 + len(METADATA_COLUMNS)]) == [CELL_ID, *METADATA_COLUMNS]
    for column in ("Metadata_treatment", "Metadata_concentration", "Metadata_control"):
        assert column in table.columns
    for feature in SHAPE_FEATURES:
        assert feature_column("nuclei", "AreaShape", feature) in table.columns
    for channel in ("nuclei", "cytoplasm"):
        for feature in INTENSITY_FEATURES:
            assert feature_column("nuclei", "Intensity", feature, channel) in table.columns
    np.testing.assert_array_equal(table[CELL_ID], np.arange(len(table)))
    np.testing.assert_array_equal(table.index, np.arange(len(table)))
    order = table[["Metadata_Timepoint", "Metadata_Well", "Metadata_Site", "Metadata_ObjectNumber"]]
    order = order.reset_index(drop=True)
    assert order.equals(order.sort_values(list(order.columns), ignore_index=True))


def test_features_equal_scikit_image_and_numpy_on_each_object(store: Path) -> None:
    labels, plate = cellscale.open_labels(store), cellscale.open_plate(store)
    table = measure(labels, plate).compute()
    field = table[(table.Metadata_Well == "A02") & (table.Metadata_Site == 2)]
    mask = labels["nuclei"].sel(well="A02", field=2).values[0]
    pixels = plate.sel(well="A02", field=2, c="cytoplasm").values[0, 0].astype(np.float64)
    for region in regionprops(mask):
        row = field[field.Metadata_ObjectNumber == region.label].iloc[0]
        inside = pixels[mask == region.label]
        assert row["Nuclei_AreaShape_Area"] == region.area
        assert 0 < row["Nuclei_AreaShape_FormFactor"] <= 1
        assert row["Nuclei_AreaShape_Perimeter"] > 0
        assert row["Nuclei_AreaShape_Center_X"] == pytest.approx(region.centroid[1])
        assert row["Nuclei_Intensity_MeanIntensity_cytoplasm"] == pytest.approx(inside.mean())
        assert row["Nuclei_Intensity_StdIntensity_cytoplasm"] == pytest.approx(inside.std())
        assert row["Nuclei_Intensity_IntegratedIntensity_cytoplasm"] == pytest.approx(inside.sum())
        assert row["Nuclei_Intensity_MaxIntensity_cytoplasm"] == inside.max()


def test_lazy_labels_give_the_same_table_as_written_ones(store: Path) -> None:
    plate = cellscale.open_plate(store)
    lazy = measure(segment(plate, Threshold(), channel="nuclei"), plate).compute()
    written = measure(cellscale.open_labels(store), plate).compute()
    pd.testing.assert_frame_equal(lazy, written)


def test_cells_and_their_nuclei_share_rows_and_missing_nuclei_are_nan(store: Path) -> None:
    plate = cellscale.open_plate(store)
    labels = segment(
        plate, CellsAndNuclei(), channel="cytoplasm", nuclei_channel="nuclei", exclude_border=False
    )
    table = measure(labels, plate).compute()
    assert (table.Cells_AreaShape_Area > 0).all()
    lost = table.Metadata_ObjectNumber % 3 == 0
    assert table.loc[lost, "Nuclei_AreaShape_Area"].isna().all()
    kept = table[~lost]
    assert (kept.Cells_AreaShape_Area >= kept.Nuclei_AreaShape_Area).all()


def test_a_field_without_cells_is_an_empty_slice_with_the_right_dtypes(store: Path) -> None:
    class Nothing(SegmenterBase):
        compartments = ("nuclei",)

        def __call__(self, image: np.ndarray) -> np.ndarray:
            return np.zeros((1, *image.shape[1:]), np.uint32)

    plate = cellscale.open_plate(store)
    table = measure(segment(plate, Nothing(), channel="nuclei"), plate)
    first = table.get_partition(0).compute()
    assert len(first) == 0 and first.dtypes.equals(table._meta.dtypes)
    assert first[CELL_ID].dtype == np.int64


def test_pycytominer_normalizes_and_aggregates_the_table(store: Path) -> None:
    pycytominer = pytest.importorskip("pycytominer")
    table = measure(cellscale.open_labels(store), cellscale.open_plate(store)).compute()
    normalized = pycytominer.normalize(
        table, features="infer", meta_features="infer", samples="Metadata_treatment == 'DMSO'"
    )
    assert len(normalized) == len(table)
    profiles = pycytominer.aggregate(
        table, strata=["Metadata_Plate", "Metadata_Well"], features="infer"
    )
    assert len(profiles) == 3


def test_cell_table_written_as_parquet_reads_back_in_order_and_resumes(
    store: Path, tmp_path: Path
) -> None:
    labels, plate = cellscale.open_labels(store), cellscale.open_plate(store)
    out = write_cells(labels, plate, tmp_path / "cells.parquet", progress=False)
    expected = measure(labels, plate).compute()
    back = read_cells(out).compute()
    pd.testing.assert_frame_equal(back, expected, check_dtype=False, check_index_type=False)
    assert sorted(p.name for p in out.iterdir()) == ["A01", "A02", "A03", "_cellscale"]
    assert len(pd.read_parquet(out)) == len(expected)  # pandas reads the folder as it is
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    write_cells(labels, plate, out, progress=False)  # resumes: nothing to write
    assert {p: p.stat().st_mtime_ns for p in files} == files
    with pytest.raises(StaleOutputError, match="intensity"):
        write_cells(labels, plate, out, intensity=False, progress=False)


def test_read_cells_selects_columns_and_reads_a_few_fields_as_strictly(
    store: Path, tmp_path: Path
) -> None:
    from cellscale._stages import DamagedOutputError
    from cellscale.measurement._parquet import cell_fields, read_cell_fields

    labels, plate = cellscale.open_labels(store), cellscale.open_plate(store)
    out = write_cells(labels, plate, tmp_path / "cells.parquet", progress=False)
    whole = read_cells(out).compute()
    wanted = ["Metadata_Well", "Nuclei_AreaShape_Area"]
    some = read_cells(out, columns=wanted)
    assert list(some.columns) == [CELL_ID, *wanted]
    pd.testing.assert_frame_equal(some.compute(), whole[[CELL_ID, *wanted]])
    with pytest.raises(KeyError, match="Nuclei_AreaShape_Aera"):
        read_cells(out, columns=["Nuclei_AreaShape_Aera"])
    fields = cell_fields(out)
    assert len(fields) == 6 and sum(f.rows for f in fields) == len(whole)
    assert [f.first for f in fields] == sorted(f.first for f in fields)
    pd.testing.assert_frame_equal(read_cell_fields(fields), whole)  # dtypes and index alike
    two = read_cell_fields(fields[2:4], wanted)
    first, stop = fields[2].first, fields[3].first + fields[3].rows
    expected = whole.loc[(whole[CELL_ID] >= first) & (whole[CELL_ID] < stop), [CELL_ID, *wanted]]
    assert len(two) == fields[2].rows + fields[3].rows > 0
    pd.testing.assert_frame_equal(two, expected)
    # a file rewritten with other rows, or cut short, after the fields were checked
    pd.read_parquet(fields[2].file).iloc[:1].to_parquet(fields[2].file, index=False)
    with pytest.raises(DamagedOutputError, match=f"{fields[2].name}.*holds 1 rows"):
        read_cell_fields(fields[2:4], wanted)
    fields[3].file.write_bytes(fields[3].file.read_bytes()[:100])
    with pytest.raises(DamagedOutputError, match=f"{fields[3].name}.*cannot be read"):
        read_cell_fields(fields[3:4])
    with pytest.raises(DamagedOutputError, match=f"field {fields[2].name}"):
        cell_fields(out)


def test_well_summary_counts_and_means_per_well(store: Path) -> None:
    table = measure(cellscale.open_labels(store), cellscale.open_plate(store)).compute()
    summary = well_summary(table, compartment="nuclei")
    oracle = table.groupby("Metadata_Well").agg(
        n_cells=(CELL_ID, "count"), mean_area=("Nuclei_AreaShape_Area", "mean")
    )
    np.testing.assert_array_equal(summary.n_cells, oracle.n_cells)
    np.testing.assert_allclose(summary.mean_area, oracle.mean_area)
    assert {"Metadata_treatment", "mean_roundness", "mean_eccentricity"} <= set(summary.columns)


def test_cp_measure_feature_sets_are_added_per_compartment_and_channel(store: Path) -> None:
    pytest.importorskip("cp_measure")
    plate = cellscale.open_plate(store)
    labels = segment(
        plate, CellsAndNuclei(), channel="cytoplasm", nuclei_channel="nuclei", exclude_border=False
    )
    table = measure(
        labels, plate, channels=["nuclei"], cp_measure=["granularity", "zernike"]
    ).compute()
    granularity = [c for c in table.columns if c.startswith("Cells_Granularity_")]
    assert granularity and all(c.endswith("_nuclei") for c in granularity)
    assert "Nuclei_AreaShape_Zernike_2_0_nuclei" in table.columns
    assert table["Cells_Granularity_1_nuclei"].notna().all()
    lost = table.Metadata_ObjectNumber % 3 == 0
    assert table.loc[lost, "Nuclei_AreaShape_Zernike_2_0_nuclei"].isna().all()
    sizable = ~lost & (table.Nuclei_AreaShape_Area > 4)  # one-pixel objects have no moments
    assert table.loc[sizable, "Nuclei_AreaShape_Zernike_2_0_nuclei"].notna().all()
    with pytest.raises(ValueError, match="cp_measure sets are"):
        measure(labels, plate, cp_measure=["haralick"]).compute()


def test_cell_ids_cannot_overflow_on_the_largest_plates() -> None:
    from cellscale.cells import cell_offsets
    from cellscale.plate import MAX_FIELD_PIXELS

    # 1536 wells x 100 fields x 10 time points, every field full of objects (at most one
    # per pixel, so at most MAX_FIELD_PIXELS): the last offset still fits in int64
    counts = np.full((10, 1536, 100), MAX_FIELD_PIXELS, dtype=np.int64)
    offsets = cell_offsets(counts)
    assert offsets.dtype == np.int64
    assert offsets[-1, -1, -1] == (counts.size - 1) * MAX_FIELD_PIXELS
    assert int(offsets[-1, -1, -1]) + MAX_FIELD_PIXELS < np.iinfo(np.int64).max
    with pytest.raises(ValueError, match="cannot be negative"):
        cell_offsets(np.array([1, -2]))


# ------------------------------------------------------------------ perimeter and form factor


def _form_factors(labels: np.ndarray) -> np.ndarray:
    table = shape_features(labels.astype(np.uint32), "objects", int(labels.max()))
    return table["Objects_AreaShape_FormFactor"].to_numpy()


def _disc(radius: float, size: int = 72) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] - size // 2
    return (yy**2 + xx**2 <= radius**2).astype(np.uint32)


def test_form_factor_is_at_most_one_for_small_and_odd_objects() -> None:
    shapes = [_disc(r) for r in range(1, 31)]
    for side in range(1, 16):
        square = np.zeros((20, 20), np.uint32)
        square[2 : 2 + side, 2 : 2 + side] = 1
        shapes.append(square)
    pixel = np.zeros((5, 5), np.uint32)
    pixel[2, 2] = 1
    lines = [np.zeros((6, 6), np.uint32) for _ in range(3)]
    lines[0][2, 2:4] = 1  # horizontal
    lines[1][2:4, 2] = 1  # vertical
    lines[2][[2, 3], [2, 3]] = 1  # diagonal: two pixels touching at a corner
    shapes += [pixel, *lines]
    for shape in shapes:
        assert 0 < _form_factors(shape)[0] <= 1, np.argwhere(shape)


def test_form_factor_is_at_most_one_for_random_touching_blobs_with_holes() -> None:
    from scipy import ndimage
    from skimage.segmentation import watershed

    rng = np.random.default_rng(3)
    for _ in range(20):
        mask = ndimage.gaussian_filter(rng.random((64, 64)), 1.5) > 0.5
        labels = watershed(-ndimage.distance_transform_edt(mask), mask=mask)  # touching objects
        form_factors = _form_factors(labels)
        assert len(form_factors) > 5
        assert ((form_factors > 0) & (form_factors <= 1)).all()


def test_form_factor_of_large_discs_is_close_to_one_and_ranks_shapes() -> None:
    for radius in (10, 20, 30):
        table = shape_features(_disc(radius), "objects", 1).iloc[0]
        assert table["Objects_AreaShape_FormFactor"] > 0.93
        assert table["Objects_AreaShape_Perimeter"] == pytest.approx(2 * np.pi * radius, rel=0.05)
    yy, xx = np.mgrid[:72, :72] - 36
    ellipse = ((yy / 8) ** 2 + (xx / 30) ** 2 <= 1).astype(np.uint32)
    square = np.zeros((72, 72), np.uint32)
    square[10:50, 10:50] = 1
    disc, box, long = (_form_factors(s)[0] for s in (_disc(25), square, ellipse))
    assert long < box < disc  # a 4:1 ellipse (0.47), a square (pi/4), a disc (1)
    assert box == pytest.approx(np.pi / 4, abs=0.06)


def test_each_object_is_outlined_alone_whatever_touches_it() -> None:
    left, right = _disc(10, 72), _disc(10, 72)
    alone = shape_features(left, "objects", 1)
    pair = np.where(np.roll(right, 20, axis=1) > 0, 2, left).astype(np.uint32)  # touching
    together = shape_features(pair, "objects", 2)
    for column in ("Objects_AreaShape_Perimeter", "Objects_AreaShape_FormFactor"):
        assert together[column].iloc[1] == pytest.approx(alone[column].iloc[0])


def test_a_hole_adds_its_outline_and_removes_its_area() -> None:
    square = np.zeros((30, 30), np.uint32)
    square[5:25, 5:25] = 1
    ring = square.copy()
    ring[12:18, 12:18] = 0
    full, holed = shape_features(square, "o", 1).iloc[0], shape_features(ring, "o", 1).iloc[0]
    assert holed["O_AreaShape_Perimeter"] > full["O_AreaShape_Perimeter"] + 15
    assert holed["O_AreaShape_FormFactor"] < full["O_AreaShape_FormFactor"]
