"""Image QC: each defect raises its own flag and nothing else; metrics match a NumPy oracle;
the plate is read once; cell counts, Parquet and bad input."""

from __future__ import annotations

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import ndimage

from cellscale._stages import UnitFailure
from cellscale.plate import PlateError, build_plate, excluded_units
from cellscale.quality import (
    METRICS,
    QCThresholds,
    flag_images,
    flagged_fields,
    laplacian_variance,
    power_log_log_slope,
    qc,
    read_qc,
    write_qc,
)
from cellscale.testing import synthetic_plate
from tests.conftest import ChunkReads, count_computes

WELLS = [f"{row}{col:02d}" for row in "AB" for col in range(1, 6)]
SHAPE = (128, 128)
DEFECTS = {
    ("A02", 1): "blur",
    ("B04", 3): "blur",
    ("A04", 2): "saturate",
    ("B01", 2): "empty",
    ("B03", 1): "dim",
}


def _controls(wells: list[str]) -> pd.DataFrame:
    """A plate map of untreated wells only: the defects are the only differences."""
    return pd.DataFrame(
        {"treatment": "DMSO", "concentration": 0.0, "control": True}, index=pd.Index(wells)
    )


def _defect(image: np.ndarray, kind: str, empty: np.ndarray) -> np.ndarray:
    pixels = image.astype(np.float64)
    if kind == "blur":
        pixels = ndimage.gaussian_filter(pixels, 2.0)
    elif kind == "saturate":
        pixels[20:60, 30:70] = 65535  # 10 % of the field
    elif kind == "dim":
        pixels *= 0.2
    else:
        pixels = empty.astype(np.float64)
    return np.clip(np.round(pixels), 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def defective() -> xr.DataArray:
    """Ten untreated wells × 3 fields × 2 channels, with the fields of DEFECTS spoilt."""
    params = {"wells": WELLS, "fields": 3, "n_z": 1, "shape": SHAPE, "seed": 4}
    clean = synthetic_plate(**params, plate_map=_controls(WELLS))
    blank = synthetic_plate(**params, plate_map=_controls(WELLS), cells_per_field=0).values
    values = clean.values
    for (well, field), kind in DEFECTS.items():
        w, f = WELLS.index(well), field - 1
        for c in range(values.shape[4]):
            values[0, w, f, 0, c] = _defect(values[0, w, f, 0, c], kind, blank[0, w, f, 0, c])
    return clean.copy(data=da.from_array(values, chunks=clean.data.chunks))


@pytest.fixture(scope="module")
def table(defective: xr.DataArray) -> pd.DataFrame:
    return qc(defective, progress=False)


def _flagged(table: pd.DataFrame, flag: str) -> set[tuple[str, int]]:
    rows = table[table[flag]]
    assert (rows.groupby(["well", "field"]).size() == 2).all(), "both channels flagged alike"
    return set(zip(rows["well"], rows["field"], strict=True))


def _fields(*kinds: str) -> set[tuple[str, int]]:
    return {unit for unit, kind in DEFECTS.items() if kind in kinds}


def test_blurry_flags_exactly_the_blurred_fields(table: pd.DataFrame) -> None:
    assert _flagged(table, "blurry") == _fields("blur")


def test_saturated_flags_exactly_the_saturated_field(table: pd.DataFrame) -> None:
    assert _flagged(table, "saturated") == _fields("saturate")
    row = table[(table["well"] == "A04") & (table["field"] == 2)].iloc[0]
    assert row["saturated_fraction"] == pytest.approx(40 * 40 / SHAPE[0] / SHAPE[1])


def test_empty_flags_exactly_the_empty_field(table: pd.DataFrame) -> None:
    assert _flagged(table, "empty") == _fields("empty")


def test_dim_flags_exactly_the_dimmed_field(table: pd.DataFrame) -> None:
    """Scaling an image keeps its signal-to-background ratio: dim, not empty."""
    assert _flagged(table, "dim") == _fields("dim")


def test_each_image_gets_the_first_cause_that_applies(table: pd.DataFrame) -> None:
    """The empty field is dim too and blur lowers peaks, but each shows one flag."""
    assert (table[["blurry", "empty", "dim"]].sum(axis=1) <= 1).all()
    never_empty = flag_images(table, QCThresholds(empty=-1000.0))
    assert _flagged(never_empty, "dim") == _fields("dim", "empty")


def test_clean_fields_raise_no_flag(table: pd.DataFrame) -> None:
    assert _flagged(table, "flagged") == set(DEFECTS)
    expected = pd.DataFrame(
        {
            "t": np.full(len(DEFECTS), 86400.0),
            "well": sorted(w for w, _ in DEFECTS),
            "field": [f for _, f in sorted(DEFECTS)],
        }
    )
    pd.testing.assert_frame_equal(flagged_fields(table), expected)


def test_flagged_fields_name_the_units_later_stages_exclude(
    defective: xr.DataArray, table: pd.DataFrame
) -> None:
    units = excluded_units(defective, flagged_fields(table))
    assert units == {(0, WELLS.index(w), f - 1) for w, f in DEFECTS}


def test_dimming_leaves_focus_and_signal_to_background_alone(table: pd.DataFrame) -> None:
    """The measures behind ``blurry`` and ``empty`` do not depend on brightness."""
    dim = table[(table["well"] == "B03") & (table["field"] == 1)].set_index("channel")
    same = table[(table["well"] == "B03") & (table["field"] == 2)].set_index("channel")
    ratio = dim["focus_laplacian_norm"] / same["focus_laplacian_norm"]
    assert ratio.between(0.7, 1.4).all()
    assert (dim["signal"] < 0.3 * same["signal"]).all()


def test_a_blank_image_is_empty_not_blurry() -> None:
    values = synthetic_plate(wells=1, fields=6, n_z=1, channels=1, shape=(64, 64)).values
    values[0, 0, 2] = 0
    table = qc(_plate(values), progress=False)
    assert table.loc[table["flagged"], ["field", "blurry", "empty", "dim"]].values.tolist() == [
        [3, False, True, False]
    ]


def test_other_thresholds_flag_again(table: pd.DataFrame) -> None:
    lenient = flag_images(table, QCThresholds(saturated=0.5))
    assert not lenient["saturated"].any()
    assert _flagged(lenient, "flagged") == _fields("blur", "empty", "dim")
    pd.testing.assert_frame_equal(flag_images(lenient), table)


def test_table_columns_and_order(table: pd.DataFrame) -> None:
    keys = ["Metadata_Plate", "t", "well", "field", "channel"]
    plate_map = ["treatment", "concentration", "control"]
    flags = ["blurry", "saturated", "empty", "dim", "nonfinite", "flagged"]
    assert list(table.columns) == [*keys, *plate_map, *METRICS, *flags]
    assert len(table) == len(WELLS) * 3 * 2
    assert table[["well", "field", "channel"]].iloc[:3].values.tolist() == [
        ["A01", 1, "nuclei"],
        ["A01", 1, "cytoplasm"],
        ["A01", 2, "nuclei"],
    ]
    assert (table["Metadata_Plate"] == "synthetic").all()


# --- the metrics against an eager NumPy oracle --------------------------------------------


def _oracle_slope(image: np.ndarray) -> float:
    """PowerLogLogSlope of the central 256 × 256 crop, from the full 2-D FFT."""
    n_y, n_x = (min(s, 256) for s in image.shape)
    y0, x0 = (image.shape[0] - n_y) // 2, (image.shape[1] - n_x) // 2
    crop = image[y0 : y0 + n_y, x0 : x0 + n_x].astype(np.float64)
    power = np.abs(np.fft.fft2(crop - crop.mean())) ** 2
    ky, kx = np.rint(np.fft.fftfreq(n_y) * n_y), np.rint(np.fft.fftfreq(n_x) * n_x)
    ring = np.floor(np.hypot(ky[:, None], kx[None, :])).astype(int) + 1
    radii = np.arange(2, int(min(n_y, n_x) / 8))
    return float(np.polyfit(np.log(radii), np.log(ndimage.sum(power, ring, radii)), 1)[0])


def _oracle(stack: np.ndarray, saturation: float, plate_max: float) -> dict[str, float]:
    """Every measure of one image: ``stack`` is ``(z, y, x)``."""
    image = stack.max(axis=0)
    step = max(1, image.shape[0] // 64)
    rows = np.arange(step // 2, image.shape[0], step)
    sample = image[rows].astype(np.float64)
    p01, p50, p99, background = np.percentile(sample, [1, 50, 99, 5])
    inner = rows[(rows >= 1) & (rows < image.shape[0] - 1)]
    laplacian = ndimage.laplace(image.astype(np.float64))[inner][:, 1:-1]
    grey = 1.0 if image.dtype.kind == "u" else plate_max / 65536
    signal = max(p99 - background, grey)
    return {
        "mean": sample.mean(),
        "max": float(image.max()),
        "p01": p01,
        "p50": p50,
        "p99": p99,
        "background": background,
        "signal": signal,
        "signal_to_background": p99 / max(background, grey),
        "saturated_fraction": float((image >= saturation).mean()),
        "at_plate_max_fraction": float((image == plate_max).mean()),
        "focus_laplacian_var": laplacian.var(),
        "focus_laplacian_norm": laplacian.var() / signal**2,
        "focus_powerlog_slope": _oracle_slope(image),
    }


@pytest.mark.parametrize(
    ("dtype", "n_z", "shape", "saturation"),
    [
        ("uint16", 1, (300, 270), None),  # every fourth row sampled
        ("uint16", 3, (96, 100), 2000.0),  # a Z stack: its maximum projection
        ("uint8", 1, (64, 80), None),
        ("float32", 2, (70, 64), None),  # floats saturate at the channel's plate maximum
        ("float32", 1, (64, 64), 0.05),
    ],
)
def test_metrics_match_a_numpy_oracle(
    dtype: str, n_z: int, shape: tuple[int, int], saturation: float | None
) -> None:
    plate = synthetic_plate(wells=2, fields=2, n_z=n_z, shape=shape, dtype=dtype, seed=7)
    table = qc(plate, saturation=saturation, progress=False).set_index(["well", "field"])
    values = plate.values
    for c, channel in enumerate(plate.coords["c"].values):
        plate_max = values[:, :, :, :, c].max()
        level = saturation if saturation is not None else plate_max
        if dtype != "float32" and saturation is None:
            level = np.iinfo(dtype).max
        for w, well in enumerate(plate.coords["well"].values):
            for f, field in enumerate(plate.coords["field"].values):
                got = table.loc[(well, field)].set_index("channel").loc[channel]
                expected = _oracle(values[0, w, f, :, c], level, plate_max)
                for name, value in expected.items():
                    single = name == "focus_powerlog_slope"  # an FFT in float32
                    assert got[name] == pytest.approx(value, rel=1e-4 if single else 1e-6), name


def test_saturation_counts_pixels_at_or_above_the_level() -> None:
    values = np.full((1, 1, 2, 1, 1, 40, 40), 100, dtype=np.uint16)
    values[0, 0, 0, 0, 0, :4, :10] = [[4095], [4095], [4200], [5000]]
    plate = _plate(values)
    table = qc(plate, saturation=4095, progress=False)
    assert table["saturated_fraction"].tolist() == [40 / 1600, 0.0]
    assert table["at_plate_max_fraction"].tolist() == [10 / 1600, 0.0]
    assert qc(plate, progress=False)["saturated_fraction"].tolist() == [0.0, 0.0]


def test_laplacian_variance_of_every_interior_row() -> None:
    image = np.random.default_rng(0).integers(0, 4000, (40, 30)).astype(np.uint16)
    expected = ndimage.laplace(image.astype(np.float64))[1:-1, 1:-1].var()
    assert laplacian_variance(image) == pytest.approx(expected, rel=1e-12)


def test_power_slope_falls_with_blur_and_ignores_scale_and_offset() -> None:
    rng = np.random.default_rng(1)
    image = ndimage.gaussian_filter(rng.normal(size=(128, 128)), 1.0)
    slopes = [power_log_log_slope(ndimage.gaussian_filter(image, s)) for s in (0, 1, 2)]
    assert slopes[0] > slopes[1] > slopes[2]
    assert power_log_log_slope(image * 30 + 500) == pytest.approx(slopes[0], rel=1e-5)
    assert np.isnan(power_log_log_slope(np.full((64, 64), 3.0)))
    assert np.isnan(power_log_log_slope(image[:31]))  # too small for two rings


# --- one pass, holes, the scheduler ----------------------------------------------------------


def _plate(values: np.ndarray, present: np.ndarray | None = None, **kwargs) -> xr.DataArray:
    data = values if isinstance(values, da.Array) else da.from_array(values)
    n_w, n_f, n_c = values.shape[1], values.shape[2], values.shape[4]
    return build_plate(
        data,
        name=kwargs.pop("name", "p1"),
        wells=WELLS[:n_w],
        fields=range(1, n_f + 1),
        channels=["DNA", "actin", "mito"][:n_c],
        field_present=present,
        **kwargs,
    )


def test_every_image_is_read_once_in_one_compute_and_holes_never() -> None:
    values = synthetic_plate(wells=3, fields=2, n_z=2, shape=(32, 32)).values
    reads = ChunkReads(values, (1, 1, 1, 2, 1, 32, 32))
    present = np.array([[True, True], [True, False], [True, True]])
    plate = _plate(reads.array, present)
    with count_computes() as computes:
        table = qc(plate, progress=False)
    assert len(computes) == 1
    assert reads.passes == 1
    assert sorted(reads.counts) == sorted(
        (0, w, f, 0, c, 0, 0) for w, f in np.argwhere(present) for c in range(2)
    )
    assert list(zip(table["well"], table["field"], strict=True))[::2] == [
        ("A01", 1),
        ("A01", 2),
        ("A02", 1),
        ("A03", 1),
        ("A03", 2),
    ]


def test_only_the_chosen_channels_are_read() -> None:
    values = synthetic_plate(wells=2, fields=1, n_z=1, channels=3, shape=(32, 32)).values
    reads = ChunkReads(values, (1, 1, 1, 1, 1, 32, 32))
    table = qc(_plate(reads.array), channels=["mito"], progress=False)
    assert table["channel"].tolist() == ["mito", "mito"]
    assert sorted(reads.counts) == [(0, 0, 0, 0, 2, 0, 0), (0, 1, 0, 0, 2, 0, 0)]


def test_a_projected_plate_and_a_distributed_client_give_the_same_table() -> None:
    from distributed import Client

    plate = synthetic_plate(wells=2, fields=2, n_z=3, shape=(48, 48))
    expected = qc(plate, progress=False)
    projected = plate.max(dim="z")
    projected.data = projected.data.rechunk((1, 1, 1, 1, 48, 48))
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0"):
        pd.testing.assert_frame_equal(qc(projected, progress=False), expected)


def test_failed_images_are_reported_by_name() -> None:
    values = np.ones((1, 2, 1, 1, 1, 16, 16), dtype=np.uint16)

    def read(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        if block_info is not None and block_info[0]["chunk-location"][1] == 1:
            raise OSError("disk gone")
        return block

    data = da.from_array(values, chunks=(1, 1, 1, 1, 1, 16, 16)).map_blocks(read, dtype=np.uint16)
    with pytest.raises(UnitFailure, match=r"1 unit\(s\) of 'qc' failed:\n  A02/f1/t0/DNA: OSError"):
        qc(_plate(data), progress=False)


# --- cell counts ------------------------------------------------------------------------------


def _cells(rows: list[tuple[str, int, int]]) -> pd.DataFrame:
    wells, sites, counts = zip(*rows, strict=True)
    repeat = np.repeat(np.arange(len(rows)), counts)
    return pd.DataFrame(
        {
            "cell_id": np.arange(len(repeat), dtype=np.int64),
            "Metadata_Plate": "p1",
            "Metadata_Well": np.asarray(wells)[repeat],
            "Metadata_Site": np.asarray(sites, dtype=np.int64)[repeat],
            "Metadata_Timepoint": 0,
            "Cells_AreaShape_Area": 1.0,
        }
    )


@pytest.fixture
def small_plate() -> xr.DataArray:
    values = synthetic_plate(wells=2, fields=2, n_z=1, shape=(32, 32)).values
    return _plate(values)


@pytest.mark.parametrize("kind", ["pandas", "dask"])
def test_cell_counts_are_joined_per_field(small_plate: xr.DataArray, kind: str) -> None:
    cells = _cells([("A01", 1, 3), ("A02", 2, 5), ("A01", 2, 1)])
    if kind == "dask":
        cells = dd.from_pandas(cells, npartitions=2)
    with count_computes() as computes:
        table = qc(small_plate, cells=cells, progress=False)
    assert len(computes) == (2 if kind == "dask" else 1)  # the images, then the counts
    counts = table.groupby(["well", "field"])["n_cells"].unique().map(list).to_dict()
    assert counts == {("A01", 1): [3], ("A01", 2): [1], ("A02", 1): [0], ("A02", 2): [5]}
    assert table["n_cells"].dtype == np.int64
    assert table.columns.get_loc("n_cells") == table.columns.get_loc("blurry") - 1


def test_cells_of_fields_the_plate_lacks_are_refused(small_plate: xr.DataArray) -> None:
    cells = _cells([("A01", 1, 3), ("C07", 1, 2)])
    with pytest.raises(
        ValueError, match=r"cells in 1 field\(s\) the QC table lacks \(first: C07/f1"
    ):
        qc(small_plate, cells=cells, progress=False)
    with pytest.raises(ValueError, match=r"lacks the columns \['Metadata_Site'\]"):
        qc(small_plate, cells=cells.drop(columns="Metadata_Site"), progress=False)


# --- Parquet ----------------------------------------------------------------------------------


def test_parquet_round_trip_keeps_dtypes(table: pd.DataFrame, tmp_path) -> None:
    write_qc(table, tmp_path / "qc.parquet")
    back = read_qc(tmp_path / "qc.parquet")
    pd.testing.assert_frame_equal(back, table)
    assert back["control"].dtype == bool and back["field"].dtype == np.int64


# --- bad input --------------------------------------------------------------------------------


def test_unknown_channel_is_named(small_plate: xr.DataArray) -> None:
    with pytest.raises(PlateError, match=r"channel 'GFP' is not in the plate; its channels are"):
        qc(small_plate, channels=["DNA", "GFP"], progress=False)
    with pytest.raises(PlateError, match="channels is empty"):
        qc(small_plate, channels=[], progress=False)


def test_a_plate_without_present_fields_is_refused(small_plate: xr.DataArray) -> None:
    holes = small_plate.assign_coords(field_present=small_plate.coords["field_present"] & False)
    with pytest.raises(PlateError, match="plate 'p1' has no present field to check"):
        qc(holes, progress=False)


def test_plate_map_columns_may_not_clash() -> None:
    values = np.zeros((1, 1, 1, 1, 1, 8, 8), dtype=np.uint16)
    plate = _plate(values, plate_map=pd.DataFrame({"p99": [1.0]}, index=["A01"]))
    with pytest.raises(PlateError, match="plate-map column 'p99' clashes with a QC column"):
        qc(plate, progress=False)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"saturated": 1.5}, "saturated is a fraction of pixels from 0 to 1, got 1.5"),
        ({"blurry": float("nan")}, "blurry must be a finite z-score"),
        ({"min_spread": -1.0}, "min_spread must be a number >= 0"),
    ],
)
def test_thresholds_are_checked(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QCThresholds(**options)
