"""TIFF-folder ingest into a lazy plate: layout, laziness, values and every bad input."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellscale.io._ingest import read_tiff_plate
from cellscale.io._patterns import FilePattern
from cellscale.plate import DIMS, PlateError
from tests.conftest import raise_if_dask_computes

SHAPE = (12, 10)
UUID = "0A1B2C3D-4E5F-4A5B-8C9D-0E1F2A3B4C5D"


def write_ixm(
    root: Path,
    wells=("B02", "B03"),
    sites=(1, 2),
    waves=(1, 2),
    zsteps=(1, 2, 3),
    timepoints=(1,),
    dtype=np.uint16,
) -> dict[tuple[int, str, int, str, int], Path]:
    """An ImageXpress raw folder of small random TIFFs; returns position -> file."""
    rng = np.random.default_rng(0)
    files = {}
    for t, well, s, w, z in itertools.product(timepoints, wells, sites, waves, zsteps):
        folder = root / f"TimePoint_{t}" / f"ZStep_{z}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"Plate_{well}_s{s}_w{w}{UUID}.tif"
        tifffile.imwrite(path, rng.integers(0, 4096, SHAPE).astype(dtype))
        files[(t, well, s, f"w{w}", z)] = path
    return files


def test_plate_is_lazy_one_layer_one_task_per_image_and_equals_tifffile(tmp_path):
    files = write_ixm(tmp_path, timepoints=(1, 2))
    with raise_if_dask_computes():
        plate = read_tiff_plate(tmp_path, "imagexpress")
    assert plate.dims == DIMS
    assert dict(plate.sizes) == {"t": 2, "well": 2, "field": 2, "z": 3, "c": 2, "y": 12, "x": 10}
    assert list(plate.c.values) == ["w1", "w2"] and list(plate.z.values) == [1, 2, 3]
    assert list(plate.t.values) == [1, 2] and list(plate.field.values) == [1, 2]
    graph = plate.data.__dask_graph__()
    assert len(graph.layers) == 1 and next(iter(graph.layers)).startswith("ingest-")
    assert len(graph) == 2 * 2 * 2 * 2
    assert plate.data.chunks[3] == (3,) and plate.data.chunks[5:] == ((12,), (10,))
    values = plate.values
    for (t, well, s, c, z), path in files.items():
        got = values[t - 1, plate.indexes["well"].get_loc(well), s - 1, z - 1, int(c[1]) - 1]
        np.testing.assert_array_equal(got, tifffile.imread(path))


def test_fields_absent_from_a_well_are_holes_not_errors(tmp_path):
    write_ixm(tmp_path, wells=("B02",), sites=(1, 2))
    write_ixm(tmp_path, wells=("C05",), sites=(2,))
    plate = read_tiff_plate(tmp_path)
    assert plate.field_present.values.tolist() == [[True, True], [False, True]]
    assert not plate.sel(well="C05", field=1).values.any()


def test_a_missing_plane_of_an_existing_field_names_well_field_channel_and_z(tmp_path):
    files = write_ixm(tmp_path)
    files[(1, "B03", 2, "w2", 3)].unlink()
    with pytest.raises(PlateError, match=r"channel 'w2': 1 missing \(t=1 well B03 field 2 z=3\)"):
        read_tiff_plate(tmp_path)
    plate = read_tiff_plate(tmp_path, fill_missing=True)
    assert not plate.sel(well="B03", field=2, c="w2", z=3).values.any()
    np.testing.assert_array_equal(
        plate.sel(t=1, well="B03", field=2, c="w2", z=2).values,
        tifffile.imread(files[(1, "B03", 2, "w2", 2)]),
    )


def test_a_missing_timepoint_of_an_existing_field_is_missing_images(tmp_path):
    files = write_ixm(tmp_path, sites=(1,), waves=(1,), zsteps=(1,), timepoints=(1, 2))
    files[(2, "B03", 1, "w1", 1)].unlink()
    with pytest.raises(PlateError, match=r"t=2 well B03 field 1 z=1"):
        read_tiff_plate(tmp_path)


def test_unmatched_files_are_listed_with_the_pattern_unless_allowed(tmp_path):
    write_ixm(tmp_path, wells=("B02",), sites=(1,), waves=(1,), zsteps=(1,))
    stray = tmp_path / "TimePoint_1" / "ZStep_1" / "calibration.tif"
    tifffile.imwrite(stray, np.zeros(SHAPE, np.uint16))
    with pytest.raises(PlateError, match=r"(?s)1 image file\(s\).*do not match.*calibration\.tif"):
        read_tiff_plate(tmp_path)
    with pytest.warns(UserWarning, match=r"calibration\.tif"):
        warned = read_tiff_plate(tmp_path, on_unmatched="warn")
    ignored = read_tiff_plate(tmp_path, on_unmatched="ignore")
    assert warned.sizes == ignored.sizes
    with pytest.raises(ValueError, match="on_unmatched"):
        read_tiff_plate(tmp_path, on_unmatched="drop")  # type: ignore[arg-type]


def test_a_file_of_another_shape_is_named_with_expected_and_got(tmp_path):
    files = write_ixm(tmp_path)
    odd = files[(1, "B03", 1, "w1", 3)]  # not among the files probed for the layout
    tifffile.imwrite(odd, np.zeros((6, 10), np.uint16))
    plate = read_tiff_plate(tmp_path)
    assert plate.sel(well="B02").values.any()  # other fields read fine
    with pytest.raises(
        PlateError, match=rf"{odd.name}: image is \(6, 10\) uint16, expected \(12, 10\)"
    ):
        plate.sel(well="B03", field=1).compute()


def test_channels_of_another_dtype_are_named_when_the_plate_is_built(tmp_path):
    write_ixm(tmp_path, waves=(1,))
    write_ixm(tmp_path, waves=(2,), dtype=np.uint8)
    with pytest.raises(
        PlateError, match=r"\(channel 'w2'\) is \(12, 10\) uint8 .* expected .* uint16"
    ):
        read_tiff_plate(tmp_path)


def test_a_corrupt_file_is_named_when_read(tmp_path):
    files = write_ixm(tmp_path, wells=("B02",), sites=(1,), waves=(1,))
    bad = files[(1, "B02", 1, "w1", 3)]
    bad.write_bytes(bad.read_bytes()[:150])
    plate = read_tiff_plate(tmp_path)  # the corrupt file is probed, skipped and read last
    with pytest.raises(PlateError, match=rf"cannot read TIFF .*{bad.name}: corrupt TIFF"):
        plate.compute()


def test_channels_are_chosen_by_id_or_name_in_order_and_renamed_by_mapping(tmp_path):
    write_ixm(tmp_path, waves=(1, 2, 3))
    picked = read_tiff_plate(tmp_path, channels=["w3", "w1"])
    assert list(picked.c.values) == ["w3", "w1"]
    renamed = read_tiff_plate(tmp_path, channels={"w2": "GFP", "w1": "DNA"})
    assert list(renamed.c.values) == ["GFP", "DNA"]
    np.testing.assert_array_equal(renamed.sel(c="DNA").values, picked.sel(c="w1").values)
    with pytest.raises(PlateError, match=r"channels \['w9'\] not found .* available: 'w1', 'w2'"):
        read_tiff_plate(tmp_path, channels=["w9"])


def test_htd_wave_names_become_channel_names(tmp_path):
    write_ixm(tmp_path, waves=(1, 2))
    (tmp_path / "Plate.HTD").write_text(
        '"HTSInfoFile", Version 1.0\n"XWells", 12\n"YWells", 8\n"NWavelengths", 3\n'
        '"WaveName1", "DAPI"\n"WaveName2", "FITC"\n"WaveName3", "Cy5"\n"EndFile"\n',
        encoding="latin-1",
    )
    plate = read_tiff_plate(tmp_path)
    assert list(plate.c.values) == ["DAPI", "FITC"]  # the HTD's third wave has no files
    assert plate.attrs["plate_shape"] == [8, 12]
    assert list(read_tiff_plate(tmp_path, channels=["FITC"]).c.values) == ["FITC"]


def test_two_files_at_one_position_are_both_named(tmp_path):
    for name in ["B02_dapi_a.tif", "B02_dapi_b.tif"]:
        tifffile.imwrite(tmp_path / name, np.zeros(SHAPE, np.uint16))
    with pytest.raises(
        PlateError, match=r"two files claim .*B02_dapi_a\.tif and .*B02_dapi_b\.tif"
    ):
        read_tiff_plate(tmp_path, r"(?P<well>B\d\d)_(?P<c>[a-z]+)_")


def test_projection_pattern_takes_projections_or_a_lone_plane(tmp_path):
    files = write_ixm(tmp_path, wells=("B02",), sites=(1,), waves=(1, 2))
    files.pop((1, "B02", 1, "w2", 2)).unlink()
    files.pop((1, "B02", 1, "w2", 3)).unlink()  # w2: a single plane, no projection
    projection = tmp_path / "TimePoint_1" / f"Plate_B02_s1_w1{UUID}.tif"
    tifffile.imwrite(projection, np.full(SHAPE, 9, np.uint16))
    plate = read_tiff_plate(tmp_path, "imagexpress-projection")
    assert plate.sizes["z"] == 1 and plate.attrs["z_source"] == "projection"
    np.testing.assert_array_equal(plate.sel(c="w1").values.squeeze(), 9)
    np.testing.assert_array_equal(
        plate.sel(c="w2").values.squeeze(), tifffile.imread(files[(1, "B02", 1, "w2", 1)])
    )


def test_projection_only_channels_are_named_when_planes_are_asked_for(tmp_path):
    write_ixm(tmp_path, wells=("B02",), sites=(1,), waves=(1,))
    tifffile.imwrite(tmp_path / "TimePoint_1" / f"Plate_B02_s1_w3{UUID}.tif", np.zeros(SHAPE, "u2"))
    with pytest.raises(PlateError, match=r"channel\(s\) \['w3'\] .* have only projection images"):
        read_tiff_plate(tmp_path)
    assert list(read_tiff_plate(tmp_path, channels=["w1"]).c.values) == ["w1"]


def test_palette_and_rgb_folders_read_their_grey_plane(tmp_path):
    rng = np.random.default_rng(1)
    index = rng.integers(0, 256, SHAPE, dtype=np.uint8)
    colormap = np.tile(np.arange(256, dtype=np.uint16) * 257, (3, 1))
    tifffile.imwrite(tmp_path / "A01_f0_c1.tif", index, photometric="palette", colormap=colormap)
    tifffile.imwrite(tmp_path / "A01_f0_c2.tif", np.stack([index] * 3, -1), photometric="rgb")
    plate = read_tiff_plate(tmp_path, r"(?P<well>A\d\d)_f(?P<field>\d)_(?P<c>c\d)")
    assert plate.dtype == np.uint8
    np.testing.assert_array_equal(plate.values[0, 0, 0, 0], np.stack([index, index]))


def test_imagej_channel_stacks_become_channels(tmp_path):
    stack = np.random.default_rng(2).integers(0, 4096, (3, *SHAPE), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "B04_s1.tif", stack, imagej=True, metadata={"axes": "CYX"})
    plate = read_tiff_plate(tmp_path, r"(?P<well>B\d\d)_s(?P<field>\d)\.tif")
    assert list(plate.c.values) == ["c1", "c2", "c3"]
    np.testing.assert_array_equal(plate.values[0, 0, 0, 0], stack)


def test_many_files_make_a_small_graph_quickly(tmp_path):
    rows, cols = "ABCDEFGH", range(1, 13)
    wells = [f"{r}{c:02d}" for r in rows for c in cols]
    data = np.zeros((4, 4), np.uint8)
    tifffile.imwrite(tmp_path / "first.tif", data)
    template = (tmp_path / "first.tif").read_bytes()
    for well, site, wave in itertools.product(wells, (1, 2, 3), (1, 2, 3, 4)):
        (tmp_path / f"P_{well}_s{site}_w{wave}.tif").write_bytes(template)
    (tmp_path / "first.tif").unlink()
    with raise_if_dask_computes():
        plate = read_tiff_plate(tmp_path)
    graph = plate.data.__dask_graph__()
    assert len(graph.layers) == 1 and len(graph) == 96 * 3 * 4 == 1152


def test_pattern_objects_with_defaults_read_single_well_folders(tmp_path):
    tifffile.imwrite(tmp_path / "run_POS002_D.TIF", np.ones(SHAPE, np.uint8))
    pattern = FilePattern(r"POS(?P<field>\d+)_(?P<c>[DFR])\.TIF$", defaults={"well": "A01"})
    plate = read_tiff_plate(tmp_path, pattern, name="fly")
    assert (plate.name, list(plate.well.values), list(plate.field.values)) == ("fly", ["A01"], [2])


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(PlateError, match="no image files"):
        read_tiff_plate(tmp_path)


@pytest.mark.filterwarnings("ignore:<tifffile.TiffWriter.write> data with shape:DeprecationWarning")
@pytest.mark.parametrize("position", ["first", "middle", "last", "unprobed"])
@pytest.mark.parametrize("kind", ["pages", "samples", "imagej"])
def test_a_stack_among_single_planes_is_refused_by_name_wherever_it_is(tmp_path, position, kind):
    files = write_ixm(tmp_path, wells=("B02", "B03"), sites=(1, 2), waves=(1,), zsteps=(1, 2))
    # w1 files in discovery order: ZStep_1 B02s1 B02s2 B03s1 B03s2, ZStep_2 the same
    order = [(1, w, s, "w1", z) for z in (1, 2) for w in ("B02", "B03") for s in (1, 2)]
    index = {"first": 0, "middle": 4, "last": 7, "unprobed": 2}[position]
    stack_file = files[order[index]]
    planes = np.random.default_rng(1).integers(0, 4096, (3, *SHAPE), dtype=np.uint16)
    if kind == "pages":
        tifffile.imwrite(stack_file, planes, photometric="minisblack")
    elif kind == "samples":  # tifffile's default for (3, y, x): one page of planar samples
        tifffile.imwrite(stack_file, planes)
    else:
        tifffile.imwrite(stack_file, planes, imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(PlateError) as info:
        read_tiff_plate(tmp_path).compute()
    message = str(info.value)
    assert message.startswith(f"{stack_file} holds 3 planes")  # the culprit, first
    assert "RGB image whose colour channels differ" not in message


def test_corrupt_file_causes_read_as_such(tmp_path):
    files = write_ixm(tmp_path, wells=("B02",), sites=(1, 2), waves=(1,), zsteps=(1, 2, 3, 4))
    bad = files[(1, "B02", 2, "w1", 1)]  # not among the probed files
    raw = bad.read_bytes()
    plate = read_tiff_plate(tmp_path)
    bad.write_bytes(raw[:4] + (10**6).to_bytes(4, "little") + raw[8:])  # first IFD offset
    os.utime(bad, ns=(files[(1, "B02", 1, "w1", 1)].stat().st_mtime_ns,) * 2)
    plate = read_tiff_plate(tmp_path)
    with pytest.raises(PlateError, match=rf"{bad.name}: no readable image page: .*IFD offset"):
        plate.compute()
    bad.write_bytes(raw[: len(raw) - 40])
    plate = read_tiff_plate(tmp_path)
    with pytest.raises(PlateError, match=rf"{bad.name}: the file is truncated"):
        plate.compute()
