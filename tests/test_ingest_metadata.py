"""What ingest takes from file headers: physical z and t, channel names, and one plane per channel.

The folders here are written by tifffile with MetaXpress-like ImageDescriptions, so each
edge case (no positions, copied channels, stacks acquired downwards, ImageJ labels) is
one small folder; the real ImageXpress acquisitions are in ``test_ingest_realdata.py``.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellscale._stages import StaleOutputError
from cellscale.io import ingest
from cellscale.io._ingest import read_tiff_plate
from cellscale.io._instrument_meta import FileMeta, metaxpress_props, read_file_meta
from cellscale.plate import PlateError
from tests.conftest import raise_if_dask_computes

SHAPE = (12, 10)
UUID = "0A1B2C3D-4E5F-4A5B-8C9D-0E1F2A3B4C5D"
RNG = np.random.default_rng(11)


def _xml(props: dict[str, object], custom: dict[str, object] | None = None) -> str:
    """A MetaXpress-like ``<MetaData>`` description with these ``prop`` entries."""
    entries = "".join(f'<prop id="{k}" type="string" value="{v}"/>' for k, v in props.items())
    extra = "".join(
        f'<custom-prop id="{k}" type="string" value="{v}"/>' for k, v in (custom or {}).items()
    )
    return f"<MetaData><PlaneInfo>{entries}{extra}</PlaneInfo></MetaData>"


def _write(
    root: Path,
    t: int,
    well: str,
    site: int,
    wave: int,
    z: int | None,
    props: dict[str, object] | None = None,
    custom: dict[str, object] | None = None,
) -> Path:
    """One ImageXpress raw-layout file (``z=None``: a projection beside the ZStep folders)."""
    folder = root / f"TimePoint_{t}" / ("" if z is None else f"ZStep_{z}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"Plate_{well}_s{site}_w{wave}{UUID}.tif"
    pixels = RNG.integers(0, 4096, SHAPE, dtype=np.uint16)
    tifffile.imwrite(path, pixels, description=_xml(props or {}, custom))
    return path


def _stacks(root: Path, offsets: dict[tuple[str, int], list[float]], wave: int = 1) -> None:
    """Z stacks whose plane ``z`` lies at ``offsets[(well, site)][z - 1]`` micrometres."""
    for (well, site), positions in offsets.items():
        for z, position in enumerate(positions, start=1):
            _write(root, 1, well, site, wave, z, {"z-position": position})


def test_z_is_each_planes_median_position_within_its_stack_lowest_at_zero(tmp_path):
    # wells sit at different heights; one stack steps unevenly: a median, not a mean
    _stacks(
        tmp_path,
        {
            ("B02", 1): [9318.24, 9320.74, 9323.24],
            ("B02", 2): [9400.0, 9402.5, 9405.0],
            ("B03", 1): [9100.0, 9103.5, 9106.0],
        },
    )
    plate = read_tiff_plate(tmp_path)
    np.testing.assert_allclose(plate.z.values, [0.0, 2.5, 5.0], atol=1e-6)
    assert plate.attrs["z_unit"] == "micrometer"
    path = tmp_path / "TimePoint_1" / "ZStep_2" / f"Plate_B03_s1_w1{UUID}.tif"
    np.testing.assert_array_equal(
        plate.sel(well="B03", field=1).isel(t=0, z=1, c=0).values, tifffile.imread(path)
    )


def test_a_stack_acquired_downwards_is_measured_from_its_lowest_plane(tmp_path):
    _stacks(tmp_path, {("B02", 1): [110.0, 105.0, 100.0], ("B02", 2): [210.0, 205.0, 200.0]})
    plate = read_tiff_plate(tmp_path)
    np.testing.assert_allclose(plate.z.values, [10.0, 5.0, 0.0])


@pytest.mark.parametrize(
    "positions",
    [
        pytest.param(None, id="no-positions"),
        pytest.param([50.0, 50.0, 50.0], id="copies-of-one-plane"),
        pytest.param([50.0, 55.0, 52.0], id="not-monotonic"),
    ],
)
def test_z_stays_the_plane_numbers_where_files_give_no_usable_positions(tmp_path, positions):
    for z in (1, 2, 3):
        props = {} if positions is None else {"z-position": positions[z - 1]}
        _write(tmp_path, 1, "B02", 1, 1, z, props)
    plate = read_tiff_plate(tmp_path)
    assert list(plate.z.values) == [1, 2, 3] and "z_unit" not in plate.attrs


def test_a_channel_copied_into_every_zstep_does_not_flatten_the_others(tmp_path):
    _stacks(tmp_path, {("B02", 1): [10.0, 13.0], ("B02", 2): [20.0, 23.0]}, wave=1)
    _stacks(tmp_path, {("B02", 1): [10.0, 10.0], ("B02", 2): [20.0, 20.0]}, wave=2)
    plate = read_tiff_plate(tmp_path)
    np.testing.assert_allclose(plate.z.values, [0.0, 3.0])


def _time_point(root: Path, t: int, times: dict[tuple[str, int], str]) -> None:
    for (well, wave), when in times.items():
        _write(root, t, well, 1, wave, None, {"acquisition-time-local": when})


def test_t_is_seconds_from_the_first_time_points_start_ignoring_copied_channels(tmp_path):
    _time_point(
        tmp_path,
        1,
        {
            ("B02", 1): "20240709 13:15:50.916",
            ("B02", 2): "20240709 13:15:51.323",
            ("B03", 1): "20240709 13:15:55.000",
            ("B03", 2): "20240709 13:15:55.500",
        },
    )
    _time_point(  # w2 was not acquired again: the export copied its first images
        tmp_path,
        2,
        {
            ("B02", 1): "20240709 13:16:21.166",
            ("B02", 2): "20240709 13:15:51.323",
            ("B03", 1): "20240709 13:16:20.945",
            ("B03", 2): "20240709 13:15:55.500",
        },
    )
    plate = read_tiff_plate(tmp_path)
    np.testing.assert_allclose(plate.t.values, [0.0, 30.029])
    assert plate.attrs["t_unit"] == "second"


def test_t_comes_from_the_channels_present_at_every_time_point(tmp_path):
    _time_point(
        tmp_path, 1, {("B02", 1): "20240709 13:00:00.000", ("B02", 2): "20240709 13:00:01.000"}
    )
    _time_point(tmp_path, 2, {("B02", 1): "20240709 13:02:00.000"})  # w2 was not acquired
    plate = read_tiff_plate(tmp_path, fill_missing=True)
    np.testing.assert_allclose(plate.t.values, [0.0, 120.0])


@pytest.mark.parametrize(
    "second",
    [pytest.param(None, id="no-times"), pytest.param("20240709 13:00:00.000", id="earlier")],
)
def test_t_stays_the_time_point_numbers_without_increasing_times(tmp_path, second):
    _time_point(tmp_path, 1, {("B02", 1): "20240709 13:15:50.916"})
    if second is None:
        _write(tmp_path, 2, "B02", 1, 1, None)
    else:
        _time_point(tmp_path, 2, {("B02", 1): second})
    plate = read_tiff_plate(tmp_path)
    assert list(plate.t.values) == [1, 2] and "t_unit" not in plate.attrs


def test_reading_the_axes_reads_headers_of_a_few_files_and_no_pixels(tmp_path, monkeypatch):
    wells, sites, waves, zsteps, times = ("B02", "B03", "B04", "C02", "C03", "C04"), (1, 2), 2, 5, 2
    for t, (w, well), site, wave, z in itertools.product(
        range(1, times + 1), enumerate(wells), sites, range(1, waves + 1), range(1, zsteps + 1)
    ):
        when = f"20240709 13:{10 * t:02d}:{w * 2 + site:02d}.{wave}00"
        props = {"z-position": 100 + 4 * z + w, "acquisition-time-local": when}
        _write(tmp_path, t, well, site, wave, z, props)
    read: list[str] = []

    def counted(path):
        read.append(str(path))
        return read_file_meta(path)

    def no_pixels(*args, **kwargs):
        raise AssertionError("pixels were read")

    monkeypatch.setattr("cellscale.io._ingest.read_file_meta", counted)
    monkeypatch.setattr(tifffile.TiffFile, "asarray", no_pixels)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_pixels)
    with raise_if_dask_computes():
        plate = read_tiff_plate(tmp_path)
    np.testing.assert_allclose(plate.z.values, [0.0, 4.0, 8.0, 12.0, 16.0])
    np.testing.assert_allclose(plate.t.values, [0.0, 600.0])
    files = times * len(wells) * len(sites) * waves * zsteps
    assert len(read) == len(set(read))  # each header read once
    # per channel: 3 stacks of 5 planes, and 3 files per time point
    assert len(read) <= waves * (3 * zsteps + 3 * times) < files / 5


@pytest.mark.parametrize(
    ("htd", "illumination", "expected"),
    [
        pytest.param(None, ("DAPI", "FITC"), ["DAPI", "FITC"], id="from-xml"),
        pytest.param(("DNA", "GFP"), ("DAPI", "FITC"), ["DNA", "GFP"], id="htd-first"),
        pytest.param(None, ("FITC_05", "FITC_05"), ["w1", "w2"], id="shared-keeps-ids"),
        pytest.param(None, (None, "FITC"), ["w1", "FITC"], id="one-unnamed"),
    ],
)
def test_channels_are_named_by_the_htd_else_by_the_illumination_setting(
    tmp_path, htd, illumination, expected
):
    for wave, name in enumerate(illumination, start=1):
        _write(tmp_path, 1, "B02", 1, wave, None, {"_IllumSetting_": name} if name else {})
    if htd is not None:
        (tmp_path / "Plate.HTD").write_text(
            f'"HTSInfoFile", Version 1.0\n"WaveName1", "{htd[0]}"\n"WaveName2", "{htd[1]}"\n',
            encoding="latin-1",
        )
    plate = read_tiff_plate(tmp_path)
    assert list(plate.c.values) == expected
    assert list(read_tiff_plate(tmp_path, channels=[expected[1]]).c.values) == [expected[1]]


@pytest.mark.parametrize(
    ("axes", "labels", "expected"),
    [
        pytest.param("CYX", ["DAPI", "GFP", "Actin"], ["DAPI", "GFP", "Actin"], id="labels"),
        pytest.param("ZCYX", ["DAPI", "GFP", "Actin"] * 2, ["DAPI", "GFP", "Actin"], id="z"),
        pytest.param("CYX", ["slice", "slice", "slice"], ["c1", "c2", "c3"], id="shared"),
        pytest.param("CYX", None, ["c1", "c2", "c3"], id="none"),
    ],
)
def test_imagej_labels_name_the_channels_of_a_hyperstack(tmp_path, axes, labels, expected):
    shape = (2, 3, *SHAPE) if axes == "ZCYX" else (3, *SHAPE)
    stack = RNG.integers(0, 4096, shape, dtype=np.uint16)
    metadata = {"axes": axes, **({"Labels": labels} if labels else {})}
    tifffile.imwrite(tmp_path / "B04_s1.tif", stack, imagej=True, metadata=metadata)
    plate = read_tiff_plate(tmp_path, r"(?P<well>B\d\d)_s(?P<field>\d)\.tif")
    assert list(plate.c.values) == expected
    second = stack[:, 1] if axes == "ZCYX" else stack[1:2]
    np.testing.assert_array_equal(plate.sel(c=expected[1]).values[0, 0, 0], second)


def test_labels_of_file_channels_are_prefixed_with_the_channel(tmp_path):
    stack = RNG.integers(0, 4096, (2, *SHAPE), dtype=np.uint16)
    metadata = {"axes": "CYX", "Labels": ["DAPI", "GFP"]}
    tifffile.imwrite(tmp_path / "B04_s1_w1.tif", stack, imagej=True, metadata=metadata)
    plate = read_tiff_plate(tmp_path, r"(?P<well>B\d\d)_s(?P<field>\d)_(?P<c>w\d)\.tif")
    assert list(plate.c.values) == ["w1-DAPI", "w1-GFP"]


def _mixed_z(root: Path) -> dict[str, list[Path]]:
    """w1, w2: 3 planes (w2 also a projection); w3: a projection only; w4: one plane."""
    files: dict[str, list[Path]] = {f"w{w}": [] for w in range(1, 5)}
    maximum = {"Z Projection Method": "Maximum"}
    for well in ("B02", "B03"):
        for wave in (1, 2):
            files[f"w{wave}"] += [_write(root, 1, well, 1, wave, z) for z in (1, 2, 3)]
        files["w2"].append(_write(root, 1, well, 1, 2, None, custom=maximum))
        files["w3"].append(_write(root, 1, well, 1, 3, None, custom=maximum))
        files["w4"].append(_write(root, 1, well, 1, 4, 1))
    return files


def _of(files: list[Path], well: str) -> list[np.ndarray]:
    return [tifffile.imread(p) for p in files if f"_{well}_" in p.name]


def test_project_z_max_keeps_every_channel_as_one_plane(tmp_path):
    files = _mixed_z(tmp_path)
    with raise_if_dask_computes():
        plate = read_tiff_plate(tmp_path, project_z="max")
    assert dict(plate.sizes) == {"t": 1, "well": 2, "field": 1, "z": 1, "c": 4, "y": 12, "x": 10}
    graph = plate.data.__dask_graph__()
    assert len(graph.layers) == 1 and len(graph) == 2 * 4  # one read task per image
    assert plate.data.chunks[3] == (1,) and list(plate.z.values) == [0]
    assert plate.attrs["z_projection"] == {
        "w1": "max of 3 planes",
        "w2": "max of 3 planes",
        "w3": "instrument projection (Maximum)",
        "w4": "single plane",
    }
    assert plate.attrs["lineage"][-1]["project_z"] == "max" and "z_unit" not in plate.attrs
    for well in ("B02", "B03"):
        image = plate.sel(well=well).values[0, 0, 0]  # (c, y, x)
        planes = _of(files["w2"], well)[:3]  # the planes, not the instrument's projection
        np.testing.assert_array_equal(image[0], np.max(_of(files["w1"], well), axis=0))
        np.testing.assert_array_equal(image[1], np.max(planes, axis=0))
        np.testing.assert_array_equal(image[2], _of(files["w3"], well)[0])
        np.testing.assert_array_equal(image[3], _of(files["w4"], well)[0])


def test_project_z_with_the_projection_pattern_prefers_the_instruments_projections(tmp_path):
    files = _mixed_z(tmp_path)
    plate = read_tiff_plate(tmp_path, "imagexpress-projection", project_z="max")
    assert plate.attrs["z_projection"]["w1"] == "max of 3 planes"
    assert plate.attrs["z_projection"]["w2"] == "instrument projection (Maximum)"
    np.testing.assert_array_equal(
        plate.sel(well="B03", c="w2").values.squeeze(), _of(files["w2"], "B03")[3]
    )


def test_without_project_z_the_mixed_folder_names_the_option(tmp_path):
    _mixed_z(tmp_path)
    with pytest.raises(PlateError, match=r"\['w3'\] .* only projection .* project_z='max'"):
        read_tiff_plate(tmp_path)
    with pytest.raises(PlateError, match=r"(?s)project_z='max'.*channel 'w4': 4 missing"):
        read_tiff_plate(tmp_path, channels=["w1", "w4"])


def test_project_z_max_with_a_missing_plane_names_it_or_leaves_it_out(tmp_path):
    files = _mixed_z(tmp_path)
    missing = files["w1"].pop(4)  # B03, ZStep_2
    missing.unlink()
    with pytest.raises(
        PlateError,
        match=r"channel 'w1': 1 missing \(t=1 well B03 field 1 z=2\); this channel has z "
        r"\[1, 2, 3\], its images are the max of z \[1, 2, 3\]",
    ):
        read_tiff_plate(tmp_path, project_z="max")
    plate = read_tiff_plate(tmp_path, project_z="max", fill_missing=True)
    np.testing.assert_array_equal(
        plate.sel(well="B03", c="w1").values.squeeze(), np.max(_of(files["w1"], "B03"), axis=0)
    )


def test_project_z_max_of_imagej_z_stacks(tmp_path):
    stack = RNG.integers(0, 4096, (4, 2, *SHAPE), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "B04_s1.tif", stack, imagej=True, metadata={"axes": "ZCYX"})
    plate = read_tiff_plate(tmp_path, r"(?P<well>B\d\d)_s(?P<field>\d)\.tif", project_z="max")
    assert plate.attrs["z_projection"] == {"c1": "max of 4 planes", "c2": "max of 4 planes"}
    np.testing.assert_array_equal(plate.values[0, 0, 0, 0], stack.max(axis=0))


def test_project_z_must_be_max_or_none(tmp_path):
    with pytest.raises(ValueError, match=r"project_z must be None or 'max', got 'mean'"):
        read_tiff_plate(tmp_path, project_z="mean")  # type: ignore[arg-type]


def test_a_store_of_planes_is_never_resumed_as_a_projection(tmp_path):
    for well in ("B02", "B03"):  # single planes: the pixels would be the same either way
        _write(tmp_path / "raw", 1, well, 1, 1, None)
    out = ingest(tmp_path / "raw", tmp_path / "plate.zarr", progress=False)
    with pytest.raises(
        StaleOutputError, match=r"lineage\[0\]\.project_z: nothing in the output, 'max'"
    ):
        ingest(tmp_path / "raw", out, progress=False, project_z="max")
    again = ingest(tmp_path / "raw", tmp_path / "max.zarr", progress=False, project_z="max")
    assert ingest(tmp_path / "raw", again, progress=False, project_z="max") == again


def test_file_metadata_of_metaxpress_xml_and_unreadable_files(tmp_path):
    description = _xml(
        {"z-position": "9318.24", "acquisition-time-local": "20230221 10:41:56", "x": "a &amp; b"},
        {"z-position": "1", "Z Projection Method": "Best Focus"},
    )
    tifffile.imwrite(tmp_path / "mx.tif", np.zeros(SHAPE, np.uint16), description=description)
    meta = read_file_meta(tmp_path / "mx.tif")
    assert meta.z_um == 9318.24 and meta.acquired == datetime(2023, 2, 21, 10, 41, 56)
    assert meta.projection == "Best Focus" and metaxpress_props(description)["x"] == "a & b"
    tifffile.imwrite(tmp_path / "ok.tif", np.zeros((64, 64), np.uint16))
    (tmp_path / "cut.tif").write_bytes((tmp_path / "ok.tif").read_bytes()[:100])
    (tmp_path / "junk.tif").write_bytes(b"not a tiff")
    for name in ("cut.tif", "junk.tif", "absent.tif"):
        assert read_file_meta(tmp_path / name) == FileMeta()
    assert metaxpress_props("ImageJ=1.11a\nimages=2") == {}
