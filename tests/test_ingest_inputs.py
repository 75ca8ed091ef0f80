"""Ingest inputs checked where they enter: folders and files that cannot be read are named,
never skipped; NaN and infinite pixels are named at ingest, or kept and flagged by QC."""

from __future__ import annotations

import builtins
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import tifffile
import xarray as xr
from scipy import ndimage

from cellscale.cli import main
from cellscale.io import UnreadableError, ingest, open_plate
from cellscale.io._ingest import read_tiff_plate
from cellscale.plate import PlateError, build_plate
from cellscale.quality import METRICS, laplacian_variance, power_log_log_slope, qc
from cellscale.testing import synthetic_plate
from tests.conftest import ChunkReads, count_computes
from tests.test_ingest import write_ixm

# --- folders and files that cannot be read ----------------------------------------------------


def _deny(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, denied: Path) -> None:
    """Make ``owner.name(path, ...)`` raise PermissionError for ``denied`` alone."""
    real: Callable[..., Any] = getattr(owner, name)

    def guarded(path: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(path, str | os.PathLike) and Path(path) == denied:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(owner, name, guarded)


def _listing_error(folder: Path) -> str:
    return rf"cannot list the folder {re.escape(str(folder))} \(Permission denied\): check its perm"


@pytest.mark.parametrize("folder", ["", "TimePoint_1", "TimePoint_1/ZStep_2"])
def test_a_folder_that_cannot_be_listed_is_named_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: str
) -> None:
    raw = tmp_path / "raw"
    write_ixm(raw, wells=("B02",), sites=(1,), waves=(1,))
    denied = raw / folder
    _deny(monkeypatch, os, "scandir", denied)
    with pytest.raises(UnreadableError, match=_listing_error(denied)):
        read_tiff_plate(raw)


def test_an_image_that_cannot_be_opened_fails_its_field_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw"
    files = write_ixm(raw, wells=("B02", "B03"), sites=(1,), waves=(1,), zsteps=(1, 2))
    denied = files[(1, "B03", 1, "w1", 2)]
    _deny(monkeypatch, builtins, "open", denied)
    message = rf"B03/f1/t0.*cannot open the file .*{denied.name} \(Permission denied\): check its"
    with pytest.raises(UnreadableError, match=message):
        ingest(raw, tmp_path / "plate.zarr", progress=False)


def test_an_htd_file_that_cannot_be_opened_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_ixm(tmp_path, wells=("B02",), sites=(1,), waves=(1,))
    htd = tmp_path / "Plate.HTD"
    htd.write_text('"HTSInfoFile", Version 1.0\n"WaveName1", "DAPI"\n', encoding="latin-1")
    _deny(monkeypatch, builtins, "open", htd)
    with pytest.raises(UnreadableError, match=rf"cannot open the file {re.escape(str(htd))} \("):
        read_tiff_plate(tmp_path)


def test_the_command_line_names_a_folder_it_cannot_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "raw"
    write_ixm(raw, wells=("B02",), sites=(1,), waves=(1,))
    _deny(monkeypatch, os, "scandir", raw / "TimePoint_1" / "ZStep_2")
    assert main(["ingest", str(raw), str(tmp_path / "p.zarr"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cellscale ingest: error: cannot list the folder ")
    assert "ZStep_2 (Permission denied): check its permissions" in err
    assert not (tmp_path / "p.zarr").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads whatever the permissions say")
def test_folders_and_files_without_read_permission_are_named(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    files = write_ixm(raw, wells=("B02",), sites=(1,), waves=(1,))
    locked = raw / "TimePoint_1" / "ZStep_2"
    locked.chmod(0)
    try:
        with pytest.raises(UnreadableError, match=_listing_error(locked)):
            ingest(raw, tmp_path / "plate.zarr", progress=False)
    finally:
        locked.chmod(0o755)
    closed = files[(1, "B02", 1, "w1", 3)]
    closed.chmod(0)
    try:
        with pytest.raises(UnreadableError, match=rf"cannot open the file .*{closed.name}"):
            ingest(raw, tmp_path / "plate.zarr", progress=False)
    finally:
        closed.chmod(0o644)


# --- NaN and infinite pixels at ingest --------------------------------------------------------


def _spoil(path: Path, pixels: dict[tuple[int, int], float]) -> None:
    data = tifffile.imread(path)
    for at, value in pixels.items():
        data[at] = value
    tifffile.imwrite(path, data)


@pytest.fixture
def nan_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A float32 folder with 2 NaN and 1 infinite pixels in one plane; returns it and the file."""
    raw = tmp_path / "raw"
    files = write_ixm(raw, sites=(1, 2), waves=(1, 2), zsteps=(1, 2), dtype=np.float32)
    bad = files[(1, "B03", 2, "w2", 2)]
    _spoil(bad, {(0, 0): np.nan, (3, 4): np.nan, (5, 5): np.inf})
    return raw, bad


def test_nonfinite_pixels_are_named_with_file_position_and_count(
    tmp_path: Path, nan_folder: tuple[Path, Path]
) -> None:
    raw, bad = nan_folder
    message = (
        rf"{bad.name} \(t=1 well B03 field 2 channel 'w2'\): 3 of 120 pixels are not finite "
        r"\(2 NaN, 1 infinite\); pass on_nonfinite='keep'"
    )
    with pytest.raises(PlateError, match=message):
        ingest(raw, tmp_path / "plate.zarr", progress=False)
    with pytest.raises(PlateError, match=message):
        read_tiff_plate(raw).compute()


def test_planes_are_checked_before_they_are_max_projected(tmp_path: Path) -> None:
    files = write_ixm(tmp_path, wells=("B02",), sites=(1,), waves=(1,), dtype=np.float32)
    bad = files[(1, "B02", 1, "w1", 2)]
    _spoil(bad, {(2, 2): -np.inf})  # the maximum over the planes would hide it
    with pytest.raises(PlateError, match=rf"{bad.name} .*1 of 120 pixels are not finite"):
        read_tiff_plate(tmp_path, project_z="max").compute()


def test_kept_nonfinite_pixels_are_written_as_they_are(
    tmp_path: Path, nan_folder: tuple[Path, Path]
) -> None:
    raw, bad = nan_folder
    out = ingest(raw, tmp_path / "plate.zarr", on_nonfinite="keep", progress=False)
    written = open_plate(out).sel(t=1, well="B03", field=2, c="w2", z=2).values
    np.testing.assert_array_equal(written, tifffile.imread(bad))  # NaN where the file has NaN
    table = qc(open_plate(out), progress=False)
    flagged = table.loc[table["nonfinite"], ["well", "field", "channel"]].values.tolist()
    assert flagged == [["B03", 2, "w2"]]
    assert table.loc[table["nonfinite"], "nonfinite_fraction"].item() == 3 / (2 * 120)


def test_an_unknown_on_nonfinite_is_refused(nan_folder: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match=r"on_nonfinite must be 'raise' or 'keep', got 'drop'"):
        read_tiff_plate(nan_folder[0], on_nonfinite="drop")  # type: ignore[arg-type]


def test_the_command_line_names_nonfinite_pixels_or_keeps_them(
    tmp_path: Path, nan_folder: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    raw, bad = nan_folder
    args = ["ingest", str(raw), str(tmp_path / "p.zarr"), "--no-progress"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{bad.name} (t=1 well B03 field 2 channel 'w2'): 3 of 120 pixels are not finite" in err
    assert "--on-nonfinite keep" in err
    assert main([*args, "--on-nonfinite", "keep"]) == 0


# --- QC of images with NaN and infinite pixels ------------------------------------------------


def _with(plate: xr.DataArray, values: np.ndarray) -> xr.DataArray:
    return plate.copy(data=da.from_array(values, chunks=plate.data.chunks))


@pytest.fixture(scope="module")
def float_plate() -> xr.DataArray:
    return synthetic_plate(wells=3, fields=2, n_z=1, shape=(64, 64), dtype="float32", seed=3)


def test_qc_flags_nonfinite_images_and_measures_their_finite_pixels(
    float_plate: xr.DataArray,
) -> None:
    values = float_plate.values.copy()
    values[0, 1, 0, 0, 0, 5:7, 10:20] = np.nan
    values[0, 1, 0, 0, 0, 30, 30] = np.inf
    values[0, 2, 1, 0, 1] = np.nan  # an image with no finite pixel at all
    clean = qc(float_plate, progress=False)
    table = qc(_with(float_plate, values), progress=False)
    spoilt = table["nonfinite"].to_numpy()
    assert np.flatnonzero(spoilt).tolist() == [4, 11]  # (well 1, field 0, c 0), (2, 1, 1)
    assert table["nonfinite_fraction"][spoilt].tolist() == [21 / 64**2, 1.0]
    assert table["flagged"][spoilt].all()
    others = ["blurry", "saturated", "empty", "dim"]
    assert not table.loc[spoilt, others].to_numpy().any()
    measures = [m for m in METRICS if m != "nonfinite_fraction"]
    pd.testing.assert_frame_equal(table.loc[~spoilt, measures], clean.loc[~spoilt, measures])
    finite = [m for m in measures if m != "focus_powerlog_slope"]
    partly, before = (t.loc[4, finite].to_numpy(float) for t in (table, clean))
    np.testing.assert_allclose(partly, before, rtol=0.05)  # 21 of 4096 pixels fewer
    assert np.isnan(table.loc[4, "focus_powerlog_slope"])  # the crop holds a NaN: no spectrum
    fractions = ["saturated_fraction", "at_plate_max_fraction"]
    assert (table.loc[11, fractions] == 0).all()
    assert table.loc[11, [m for m in measures if m not in fractions]].isna().all()


def test_qc_of_nonfinite_images_reads_each_once_in_one_compute(float_plate: xr.DataArray) -> None:
    values = float_plate.values.copy()
    values[0, 0, 1, 0, 0, :3] = np.nan
    reads = ChunkReads(values, (1, 1, 1, 1, 1, 64, 64))
    plate = build_plate(
        reads.array,
        name="p1",
        wells=list(float_plate.coords["well"].values),
        fields=[1, 2],
        channels=list(float_plate.coords["c"].values),
    )
    with count_computes() as computes:
        table = qc(plate, progress=False)
    assert len(computes) == 1 and reads.passes == 1
    assert table["nonfinite"].sum() == 1


def test_laplacian_variance_leaves_out_nonfinite_neighbourhoods() -> None:
    image = np.random.default_rng(2).normal(100.0, 10.0, (40, 30))
    image[10, 10], image[20, 5] = np.nan, -np.inf
    laplacian = ndimage.laplace(np.nan_to_num(image, nan=0.0, neginf=0.0))[1:-1, 1:-1]
    spoilt = ndimage.binary_dilation(~np.isfinite(image), ndimage.generate_binary_structure(2, 1))
    expected = laplacian[~spoilt[1:-1, 1:-1]].var()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert laplacian_variance(image) == pytest.approx(expected, rel=1e-5)
        assert np.isnan(power_log_log_slope(image))
        assert np.isnan(laplacian_variance(np.full((8, 8), np.nan)))
