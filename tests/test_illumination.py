"""Illumination correction: flatfields against the synthetic truth, one-pass fits, the lazy
correction against eager NumPy, the model's file and every error, and real vignetting."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from dask.array.utils import assert_eq
from matplotlib.figure import Figure

from cellscale.illumination import IlluminationModel, correct_illumination, fit_illumination
from cellscale.io import read_tiff_plate
from cellscale.plate import PlateError, as_plate
from cellscale.testing import (
    CAMERA_OFFSET,
    illumination_truth,
    synthetic_labels,
    synthetic_plate,
)
from tests.conftest import ChunkReads, count_computes, raise_if_dask_computes

METHODS = ["mean", "basic"]
SIZE = (128, 128)
CHANNELS = ("nuclei", "cytoplasm")


@pytest.fixture(scope="module")
def synthetic() -> tuple[xr.DataArray, np.ndarray]:
    """48 fields of 128 x 128 with the known vignetting, held in memory, and where the
    background is (no cell)."""
    plate = synthetic_plate(
        wells=12, fields=4, n_z=1, shape=SIZE, channels=CHANNELS, cells_per_field=4, seed=3
    )
    background = synthetic_labels(plate).values == 0
    return plate.copy(data=da.from_array(plate.values, chunks=plate.data.chunks)), background


@pytest.fixture(scope="module")
def fitted(synthetic: tuple[xr.DataArray, np.ndarray]) -> dict[str, IlluminationModel]:
    plate, _ = synthetic
    return {method: fit_illumination(plate, method=method, progress=False) for method in METHODS}


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _background(values: np.ndarray, background: np.ndarray, channel: int) -> tuple[float, float]:
    """Coefficient of variation of the background pixels of all fields, and the mean
    background in the four corner windows over that in the central window."""
    images = values[0, :, :, 0, channel].astype(np.float64)
    mask = background[0]
    n = images.shape[-1]
    w = n // 8
    middle = slice(n // 2 - w // 2, n // 2 + w // 2)
    ends = (slice(0, w), slice(n - w, n))

    def level(rows: slice, cols: slice) -> float:
        return float(images[..., rows, cols][mask[..., rows, cols]].mean())

    corners = np.mean([level(r, c) for r in ends for c in ends])
    pixels = images[mask]
    return float(pixels.std() / pixels.mean()), float(corners / level(middle, middle))


# ------------------------------------------------------------------ fitting against truth


@pytest.mark.parametrize("method", METHODS)
def test_flatfield_matches_the_true_vignetting(
    fitted: dict[str, IlluminationModel], method: str
) -> None:
    model = fitted[method]
    truth = illumination_truth(SIZE)
    assert model.channels == CHANNELS and model.shape == SIZE and model.method == method
    assert model.flatfield.dtype == np.float32 and model.darkfield is None
    for flat in model.flatfield:
        assert _correlation(flat, truth) >= 0.95
        assert abs(float(flat.mean(dtype=np.float64)) - 1.0) < 1e-5
        # brighter in the middle, as the optics: the corners get 64 % of the light, the
        # camera offset (a darkfield the flatfield absorbs) lifts them to about 70 %
        assert 0.6 < flat[0, 0] / flat[64, 64] < 0.8


@pytest.mark.parametrize("method", METHODS)
def test_correction_evens_out_the_background(
    synthetic: tuple[xr.DataArray, np.ndarray], fitted: dict[str, IlluminationModel], method: str
) -> None:
    plate, background = synthetic
    corrected = correct_illumination(plate, fitted[method]).values
    raw = plate.values
    for channel in range(len(CHANNELS)):
        cv_before, ratio_before = _background(raw, background, channel)
        cv_after, ratio_after = _background(corrected, background, channel)
        assert cv_after < 0.75 * cv_before
        assert ratio_before < 0.8
        assert abs(1 - ratio_after) < 0.06


def test_darkfield_is_found_where_fields_differ_in_brightness() -> None:
    # darkfield and flatfield can only be told apart in fields of different brightness:
    # scale each field's signal (not its camera offset) by its own exposure
    plate = synthetic_plate(
        wells=8, fields=4, n_z=1, shape=SIZE, channels=["nuclei"], cells_per_field=4, seed=5
    )
    offset = CAMERA_OFFSET * np.iinfo(np.uint16).max
    exposure = np.random.default_rng(0).uniform(0.4, 1.6, (1, 8, 4, 1, 1, 1, 1))
    values = ((plate.values - offset) * exposure + offset).round().astype(np.uint16)
    plate = plate.copy(data=da.from_array(values, chunks=plate.data.chunks))
    plain = fit_illumination(plate, method="basic", progress=False)
    model = fit_illumination(plate, method="basic", darkfield=True, progress=False)
    assert model.darkfield is not None and model.darkfield.shape == (1, *SIZE)
    assert abs(float(model.darkfield.mean()) - offset) < 0.25 * offset
    truth = illumination_truth(SIZE)
    assert _correlation(model.flatfield[0], truth) >= 0.95
    # taking the offset out leaves the flatfield nearer the optics' 0.64 than without
    true_ratio = truth[0, 0] / truth[64, 64]
    with_dark = model.flatfield[0, 0, 0] / model.flatfield[0, 64, 64]
    without = plain.flatfield[0, 0, 0] / plain.flatfield[0, 64, 64]
    assert abs(with_dark - true_ratio) < abs(without - true_ratio)


@pytest.mark.parametrize("method", METHODS)
def test_more_smoothing_gives_a_smoother_flatfield(
    synthetic: tuple[xr.DataArray, np.ndarray], method: str
) -> None:
    plate, _ = synthetic

    def roughness(smoothing: float) -> float:
        flat = fit_illumination(
            plate, "cytoplasm", method, smoothing=smoothing, progress=False
        ).flatfield[0]
        return float(
            np.abs(np.diff(flat, 2, axis=0)).mean() + np.abs(np.diff(flat, 2, axis=1)).mean()
        )

    assert roughness(4.0) < 0.5 * roughness(0.25)


def test_z_stacks_and_time_points_count_as_fields() -> None:
    plate = synthetic_plate(wells=4, fields=2, n_t=2, n_z=3, shape=(48, 40), cells_per_field=2)
    model = fit_illumination(plate, "nuclei", progress=False)
    assert model.provenance["fields"] == 16 == model.provenance["fields_available"]
    assert model.shape == (48, 40)
    assert (
        correct_illumination(plate.sel(c=["nuclei"]), model).sizes == plate.sel(c=["nuclei"]).sizes
    )


# ------------------------------------------------------------------------- one pass


@pytest.mark.parametrize("method", METHODS)
def test_fit_reads_every_image_once_in_one_computation(
    synthetic: tuple[xr.DataArray, np.ndarray], method: str
) -> None:
    plate, _ = synthetic
    reads = ChunkReads(plate.values, plate.data.chunks)
    with count_computes() as computes:
        fit_illumination(plate.copy(data=reads.array), method=method, progress=False)
    assert len(computes) == 1
    assert reads.passes == 1
    assert len(reads.counts) == 48 * len(CHANNELS)


def test_sample_reads_only_the_sampled_fields(synthetic: tuple[xr.DataArray, np.ndarray]) -> None:
    plate, _ = synthetic
    reads = ChunkReads(plate.values, plate.data.chunks)
    model = fit_illumination(
        plate.copy(data=reads.array), "nuclei", "basic", sample=20, progress=False
    )
    assert reads.passes == 1 and len(reads.counts) == 20
    assert {c for (_, _, _, _, c, _, _) in reads.counts} == {0}
    wells = {w for (_, w, _, _, _, _, _) in reads.counts}
    assert len(wells) == 12  # spread over the plate, not the first five wells
    assert model.provenance["fields"] == 20 and model.provenance["fields_available"] == 48


def test_holes_are_not_read(synthetic: tuple[xr.DataArray, np.ndarray]) -> None:
    plate, _ = synthetic
    present = np.ones((12, 4), bool)
    present[[0, 5, 5], [1, 0, 3]] = False
    reads = ChunkReads(plate.values, plate.data.chunks)
    holey = plate.copy(data=reads.array).assign_coords(field_present=(("well", "field"), present))
    model = fit_illumination(holey, "nuclei", progress=False)
    assert model.provenance["fields"] == 45
    read = {(w, f) for (_, w, f, _, _, _, _) in reads.counts}
    assert read == {(int(w), int(f)) for w, f in np.argwhere(present)}


def test_progress_bar_counts_the_images_read(
    synthetic: tuple[xr.DataArray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    plate, _ = synthetic
    fit_illumination(plate, "nuclei", progress=True)
    err = capsys.readouterr().err
    assert "fit-illumination" in err and "48/48" in err


def test_fit_on_a_distributed_client_equals_the_local_fit(
    synthetic: tuple[xr.DataArray, np.ndarray], fitted: dict[str, IlluminationModel]
) -> None:
    from distributed import Client

    plate, _ = synthetic
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0"):
        model = fit_illumination(plate, method="mean", progress=False)
    np.testing.assert_allclose(model.flatfield, fitted["mean"].flatfield, rtol=1e-6)


# --------------------------------------------------------------------- correction


def _oracle(
    values: np.ndarray, model: IlluminationModel, names: list[str], dtype: np.dtype
) -> np.ndarray:
    """Eager NumPy correction, channel by channel."""
    work = np.result_type(values.dtype, np.float32)
    out = values.astype(work)
    for i, name in enumerate(names):
        if name in model.channels:
            k = model.channels.index(name)
            image = out[..., i, :, :]
            if model.darkfield is not None:
                image -= model.darkfield[k].astype(work)
            image /= model.flatfield[k].astype(work)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(dtype)


def _values(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    rng = np.random.default_rng(11)
    if dtype == "float32":
        return rng.normal(300, 80, shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def _model(shape: tuple[int, int], *, dark: bool) -> IlluminationModel:
    rng = np.random.default_rng(5)
    return IlluminationModel(
        channels=("c0", "c1"),
        flatfield=rng.uniform(0.3, 1.7, (2, *shape)),
        darkfield=rng.uniform(0, 20, (2, *shape)) if dark else None,
    )


CHUNKINGS = {  # (t, well, field, c, y, x) with 3 channels, 9 x 11 images
    "image": (1, 1, 1, 1, 9, 11),
    "uneven": (1, (2, 1), (1, 1), (2, 1), 9, 11),
    "split-yx": (2, 3, 2, (1, 2), (4, 5), (6, 5)),
}


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("out", [None, "float32"])
@pytest.mark.parametrize("chunks", list(CHUNKINGS.values()), ids=list(CHUNKINGS))
@pytest.mark.parametrize("dark", [False, True], ids=["flat", "flat+dark"])
def test_correction_equals_numpy(dtype: str, out: str | None, chunks: tuple, dark: bool) -> None:
    values = _values((2, 3, 2, 3, 9, 11), dtype)
    names = ["c0", "c1", "c2"]
    plate = as_plate(
        xr.DataArray(
            da.from_array(values, chunks=chunks),
            dims=("t", "well", "field", "c", "y", "x"),
            coords={"well": ["A01", "A02", "B07"], "c": names},
        )
    )
    model = _model((9, 11), dark=dark)
    with raise_if_dask_computes(), pytest.warns(UserWarning, match=r"channels \['c2'\] are not"):
        corrected = correct_illumination(plate, model, dtype=out)
    expected_dtype = np.dtype(out or dtype)
    assert_eq(corrected.data, _oracle(values, model, names, expected_dtype))
    assert corrected.dtype == expected_dtype and corrected.dims == plate.dims
    np.testing.assert_array_equal(  # the channel the model lacks is untouched
        corrected.sel(c="c2").values, values[:, :, :, 2].astype(expected_dtype)
    )


def test_integers_saturate_and_round_rather_than_wrap() -> None:
    values = np.array([250, 10, 3, 0], "uint8").reshape(1, 1, 1, 1, 2, 2)
    plate = xr.DataArray(
        values, dims=("t", "well", "field", "c", "y", "x"), coords={"well": ["A01"]}
    )
    model = IlluminationModel(
        channels=["c0"], flatfield=[[[0.5, 1.5], [1.2, 1.0]]], darkfield=[[[0.0, 0.0], [5.0, 2.0]]]
    )
    # flatfield mean 1.05 is rescaled to 1: the first pixel is 250 / (0.5 / 1.05) = 525
    assert correct_illumination(plate, model).values.ravel().tolist() == [255, 7, 0, 0]


def test_correction_of_z_stacks_is_one_task_per_image_and_lazy(
    synthetic: tuple[xr.DataArray, np.ndarray], fitted: dict[str, IlluminationModel]
) -> None:
    plate = synthetic_plate(
        wells=2, fields=2, n_z=3, shape=SIZE, channels=CHANNELS, cells_per_field=2
    )
    with raise_if_dask_computes():
        corrected = correct_illumination(plate, fitted["basic"])
    layer = corrected.data.dask.layers[corrected.data.name]
    assert len(layer) == plate.data.npartitions == 8
    assert corrected.data.chunks == plate.data.chunks
    model = fitted["basic"]
    expected = _oracle(plate.values, model, list(CHANNELS), np.dtype(np.uint16))
    assert_eq(corrected.data, expected)


def test_lineage_records_the_model(
    synthetic: tuple[xr.DataArray, np.ndarray], fitted: dict[str, IlluminationModel]
) -> None:
    plate, _ = synthetic
    model = fitted["mean"]
    corrected = correct_illumination(plate, model, dtype="float32")
    assert corrected.attrs["lineage"][:-1] == plate.attrs.get("lineage", [])
    assert corrected.attrs["lineage"][-1] == {
        "op": "correct_illumination",
        "method": "mean",
        "model": model.digest,
        "channels": list(CHANNELS),
        "dtype": "float32",
    }
    other = correct_illumination(plate, fitted["basic"], dtype="float32")
    assert other.data.name != corrected.data.name
    assert fitted["basic"].digest != model.digest


# --------------------------------------------------------------- the model and its file


def test_model_round_trips_through_its_file(tmp_path: Path) -> None:
    model = IlluminationModel(
        channels=("c0", "c1"),
        flatfield=np.random.default_rng(1).uniform(0.5, 2.0, (2, 6, 7)),
        darkfield=np.full((2, 6, 7), 3.0),
        method="basic",
        params={"smoothing": 2.0},
        provenance={"plate": "P1", "lineage": [{"op": "open_plate", "store": "p.zarr"}]},
    )
    path = model.save(tmp_path / "illumination")
    assert path == tmp_path / "illumination.npz" and path.is_file()
    again = IlluminationModel.load(tmp_path / "illumination")
    assert IlluminationModel.load(path).digest == again.digest == model.digest
    np.testing.assert_array_equal(again.flatfield, model.flatfield)
    assert again.darkfield is not None and model.darkfield is not None
    np.testing.assert_array_equal(again.darkfield, model.darkfield)
    assert (again.channels, again.method, again.params, again.provenance) == (
        model.channels,
        model.method,
        model.params,
        model.provenance,
    )


def test_fitted_model_records_its_provenance(
    fitted: dict[str, IlluminationModel], tmp_path: Path
) -> None:
    model = fitted["basic"]
    assert model.provenance["plate"] == "synthetic"
    assert model.provenance["fields"] == 48
    assert model.provenance["cellscale_version"]
    assert set(model.provenance["basic"]) == set(CHANNELS)
    assert model.params["smoothing"] == 1.0 and model.params["darkfield"] is False
    again = IlluminationModel.load(model.save(tmp_path / "m"))
    assert again.provenance == model.provenance and again.digest == model.digest


def _saved(tmp_path: Path) -> tuple[Path, dict, dict[str, np.ndarray]]:
    path = _model((4, 5), dark=True).save(tmp_path / "good")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != "__cellscale__"}
        meta = json.loads(str(data["__cellscale__"]))
    return path, meta, arrays


def _write(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, __cellscale__=np.array(json.dumps(meta)), **arrays)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m, a: a.pop("flatfield"), r"bad\.npz' lacks \['flatfield'\]"),
        (lambda m, a: m.pop("digest"), r"lacks \['digest'\]: it is not a complete"),
        (lambda m, a: a.update(extra=np.zeros(3)), r"holds unexpected arrays \['extra'\]"),
        (
            lambda m, a: a.update(flatfield=a["flatfield"][0]),
            r"the flatfield has shape \(4, 5\); it must be \(channels, y, x\)",
        ),
        (
            lambda m, a: a.update(darkfield=a["darkfield"][:, :3]),
            r"the darkfield has shape \(2, 3, 5\), the flatfield \(2, 4, 5\)",
        ),
        (
            lambda m, a: a["flatfield"].__setitem__((1, 2, 2), 0.0),
            r"the flatfield of channel 'c1' has 1 pixels that are zero or negative and 0",
        ),
        (
            lambda m, a: a["flatfield"].__setitem__((0, 0, 0), np.nan),
            r"channel 'c0' has 0 pixels that are zero or negative and 1 that are NaN",
        ),
        (
            lambda m, a: a["flatfield"].__setitem__((0, 0, 0), 1.5),
            r"does not match the digest recorded in it .*: it was changed after",
        ),
        (lambda m, a: m.update(kind="PCA"), r"holds a PCA, not a IlluminationModel"),
    ],
    ids=[
        "no-flatfield",
        "no-digest",
        "extra-array",
        "flat-2d",
        "dark-shape",
        "flat-zero",
        "flat-nan",
        "edited",
        "other-kind",
    ],
)
def test_load_names_what_is_wrong(tmp_path: Path, change, message: str) -> None:
    _, meta, arrays = _saved(tmp_path)
    change(meta, arrays)
    bad = _write(tmp_path / "bad.npz", meta, arrays)
    with pytest.raises(ValueError, match=message):
        IlluminationModel.load(bad)


def test_load_refuses_a_file_cellscale_did_not_write(tmp_path: Path) -> None:
    np.savez(tmp_path / "plain.npz", flatfield=np.ones((1, 4, 4)))
    with pytest.raises(ValueError, match=r"plain\.npz' is not a cellscale model file"):
        IlluminationModel.load(tmp_path / "plain.npz")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"flatfield": [[[1.0, 0.0], [-1.0, 2.0]]]},
            r"the flatfield of channel 'a' has 2 pixels that are zero or negative and 0 that "
            r"are NaN or infinite; a flatfield must be positive and finite everywhere",
        ),
        (
            {"flatfield": [[[1.0, np.inf], [np.nan, 2.0]]]},
            r"channel 'a' has 0 pixels that are zero or negative and 2 that are NaN or infinite",
        ),
        (
            {"flatfield": np.ones((2, 2, 2))},
            r"the flatfield has shape \(2, 2, 2\); it must be \(channels, y, x\) with one image "
            r"per channel: \(1, y, x\) for \['a'\]",
        ),
        (
            {"flatfield": np.ones((1, 2, 2)), "darkfield": [[[0.0, np.nan], [0.0, 0.0]]]},
            r"the darkfield of channel 'a' has 1 NaN or infinite pixels",
        ),
        (
            {"flatfield": np.ones((1, 2, 2)), "darkfield": np.zeros((1, 2, 3))},
            r"the darkfield has shape \(1, 2, 3\), the flatfield \(1, 2, 2\); they must agree",
        ),
        (
            {"channels": ["a", "a"], "flatfield": np.ones((2, 2, 2))},
            r"channels must be distinct names, at least one; got \['a', 'a'\]",
        ),
    ],
    ids=["zero-negative", "nan-inf", "channels-shape", "dark-nan", "dark-shape", "repeated"],
)
def test_construction_refuses_bad_profiles(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IlluminationModel(**{"channels": ["a"], **kwargs})


def test_profiles_are_scaled_to_mean_one_and_frozen() -> None:
    model = IlluminationModel(channels="a", flatfield=np.full((1, 3, 3), 40.0))
    assert model.channels == ("a",)
    np.testing.assert_array_equal(model.flatfield, np.ones((1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="read-only"):
        model.flatfield[0, 0, 0] = 2.0


def test_plot_draws_each_channel_with_a_colour_bar(tmp_path: Path) -> None:
    model = _model((9, 11), dark=True)
    fig = model.plot(tmp_path / "model.png")
    assert isinstance(fig, Figure)
    images = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in images] == [
        "c0 flatfield",
        "c0 darkfield",
        "c1 flatfield",
        "c1 darkfield",
    ]
    assert len(fig.axes) == 2 * len(images)  # a colour bar beside each
    assert (tmp_path / "model.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    flat_only = IlluminationModel(channels=["c0"], flatfield=np.ones((1, 4, 4))).plot()
    assert [ax.get_title() for ax in flat_only.axes if ax.images] == ["c0 flatfield"]


def test_importing_the_package_does_not_import_matplotlib() -> None:
    code = "import sys, cellscale.illumination; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"channels": "GFP"},
            PlateError,
            r"channel 'GFP' is not in the plate; its channels are \['nuclei', 'cytoplasm'\]",
        ),
        (
            {"channels": ["nuclei", "nuclei"]},
            ValueError,
            r"channels must be distinct channel names",
        ),
        (
            {"method": "median"},
            ValueError,
            r"method must be one of \('mean', 'basic'\), got 'median'",
        ),
        (
            {"smoothing": 0},
            ValueError,
            r"smoothing must be a positive number \(1 is the method's default\), got 0",
        ),
        ({"smoothing": float("nan")}, ValueError, r"smoothing must be a positive number"),
        ({"smoothing": True}, ValueError, r"smoothing must be a positive number"),
        ({"sample": 0}, ValueError, r"sample must be a positive number of fields or None, got 0"),
        (
            {"sample": 2.5},
            ValueError,
            r"sample must be a positive number of fields or None, got 2.5",
        ),
        (
            {"darkfield": True},
            ValueError,
            r"darkfield=True needs method='basic'; method 'mean' fits none",
        ),
        (
            {"sample": 4},
            PlateError,
            r"sample=4 keeps 4 of the plate's 48 fields; method 'mean' needs at least 8",
        ),
        (
            {"sample": 12, "method": "basic"},
            PlateError,
            r"sample=12 keeps 12 of the plate's 48 fields; method 'basic' needs at least 16",
        ),
    ],
)
def test_bad_fit_arguments_are_named(kwargs: dict, error: type[Exception], message: str) -> None:
    plate = synthetic_plate(wells=12, fields=4, n_z=1, shape=(16, 16), channels=CHANNELS)
    with raise_if_dask_computes(), pytest.raises(error, match=message):
        fit_illumination(plate, **{"progress": False, **kwargs})


def test_too_small_a_plate_says_how_many_fields_it_has_and_needs() -> None:
    small = synthetic_plate(wells=1, fields=4, n_z=1, shape=(16, 16))
    with pytest.raises(
        PlateError,
        match=r"the plate has 4 fields \(1 time point\(s\) x 1 wells x 4 fields\); "
        r"method 'mean' needs at least 8 to estimate a flatfield",
    ):
        fit_illumination(small, progress=False)
    holey = synthetic_plate(wells=3, fields=5, n_z=1, shape=(16, 16))
    present = np.ones((3, 5), bool)
    present[0, :2] = present[2, 4] = False
    holey = holey.assign_coords(field_present=(("well", "field"), present))
    with pytest.raises(
        PlateError,
        match=r"the plate has 12 fields \(1 time point\(s\) x 3 wells x 5 fields, 3 of them "
        r"missing\); method 'basic' needs at least 16",
    ):
        fit_illumination(holey, method="basic", progress=False)


def test_bad_correction_arguments_are_named(fitted: dict[str, IlluminationModel]) -> None:
    model = fitted["mean"]
    other_size = synthetic_plate(wells=1, fields=1, n_z=1, shape=(64, 48), channels=CHANNELS)
    with pytest.raises(
        PlateError,
        match=r"the illumination model was fitted on 128 x 128 images; this plate's images "
        r"are 64 x 48",
    ):
        correct_illumination(other_size, model)
    other_channels = synthetic_plate(wells=1, fields=1, n_z=1, shape=SIZE, channels=["membrane"])
    with pytest.raises(
        PlateError,
        match=r"none of the plate's channels \['membrane'\] is in the illumination model, "
        r"fitted on \['nuclei', 'cytoplasm'\]",
    ):
        correct_illumination(other_channels, model)
    plate = synthetic_plate(wells=1, fields=1, n_z=1, shape=SIZE, channels=CHANNELS)
    with pytest.raises(
        ValueError, match=r"dtype must be None \(keep the plate's\) or 'float32', got 'uint8'"
    ):
        correct_illumination(plate, model, dtype="uint8")
    with pytest.raises(
        PlateError, match=r"cannot correct images of dtype bool: they must be numbers"
    ):
        correct_illumination(plate > 1000, model)


def test_channels_the_model_lacks_pass_through_with_a_warning(
    fitted: dict[str, IlluminationModel],
) -> None:
    plate = synthetic_plate(wells=1, fields=1, n_z=1, shape=SIZE, channels=["nuclei", "membrane"])
    with pytest.warns(
        UserWarning, match=r"channels \['membrane'\] are not in the illumination model"
    ):
        corrected = correct_illumination(plate, fitted["mean"])
    assert corrected.attrs["lineage"][-1]["channels"] == ["nuclei"]
    np.testing.assert_array_equal(
        corrected.sel(c="membrane").values, plate.sel(c="membrane").values
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        correct_illumination(plate.sel(c=["nuclei"]), fitted["mean"])


# ------------------------------------------------------------------------- real data

TRANSFLUOR = "cellprofiler_sbs_transfluor/images"


def _corner_to_centre(images: np.ndarray, window: int = 64, q: float = 20) -> float:
    """Median over fields of the background (``q``-th percentile) in the four corner
    windows over that in the central window."""
    n = images.shape[-1]
    middle = slice(n // 2 - window // 2, n // 2 + window // 2)
    ends = (slice(0, window), slice(n - window, n))
    centre = np.percentile(images[..., middle, middle], q, axis=(-2, -1))
    corners = np.mean(
        [np.percentile(images[..., r, c], q, axis=(-2, -1)) for r in ends for c in ends], axis=0
    )
    return float(np.median(corners / centre))


@pytest.mark.realdata
@pytest.mark.parametrize("method", METHODS)
def test_sbs_transfluor_vignetting_is_corrected(real_data: Path, method: str) -> None:
    plate = read_tiff_plate(real_data / TRANSFLUOR, pattern="cellprofiler")
    assert dict(plate.sizes) == {"t": 1, "well": 8, "field": 3, "z": 1, "c": 1, "y": 512, "x": 512}
    model = fit_illumination(plate, method=method, progress=False)
    before = _corner_to_centre(plate.values.reshape(-1, 512, 512).astype(np.float64))
    corrected = correct_illumination(plate, model)
    assert corrected.dtype == np.uint8
    after = _corner_to_centre(corrected.values.reshape(-1, 512, 512).astype(np.float64))
    assert before < 0.6  # the corners' background is about half the centre's
    assert abs(1 - after) < 0.4 * abs(1 - before)
    # the flatfield is brightest well inside the field, darkest in a corner
    flat = model.flatfield[0]
    assert flat[:64, :64].mean() < 0.6 * flat[192:320, 192:320].mean()
