"""Ingest of the real ImageXpress and CellProfiler example folders, checked against tifffile."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellscale.io._ingest import read_tiff_plate
from cellscale.io._patterns import FilePattern
from cellscale.plate import PlateError

pytestmark = pytest.mark.realdata

IXM = "faim_imagexpress_hcs/ImageXpress"
EXPORTED = "faim_imagexpress_hcs/ImageXpress_exported"
# An oracle independent of the library's patterns: well, site and wavelength of a file name.
_NAME = re.compile(r"_([A-P]\d\d)(?:_s(\d))?(?:_w(\d))?")


def _assert_plane(plate, path: Path, *, t=None, z=None, c=None) -> None:
    well, site, wave = _NAME.search(path.name).groups()
    image = plate.sel(well=well, field=int(site or 1), c=c or f"w{wave or 1}")
    image = image.isel(t=0) if t is None else image.sel(t=t)
    image = image.isel(z=0) if z is None else image.sel(z=z)
    np.testing.assert_array_equal(image.values, tifffile.imread(path))


def _images(folder: Path, glob: str) -> list[Path]:
    return sorted(p for p in folder.glob(glob) if "_thumb" not in p.name)


def test_projection_mix_z_planes_of_the_chosen_channels(real_data):
    source = real_data / IXM / "Projection-Mix"
    plate = read_tiff_plate(source, "imagexpress", channels=["w1", "w2"])
    assert plate.name == "Projection-Mix"
    assert dict(plate.sizes) == {"t": 1, "well": 2, "field": 2, "z": 10, "c": 2, "y": 512, "x": 512}
    assert list(plate.z.values) == list(range(1, 11))
    assert plate.field_present.values.tolist() == [[True, False], [True, True]]  # E07 s2 held out
    assert plate.attrs["pixel_size_um"] == [1.3668, 1.3668]
    planes = [p for p in _images(source, "**/ZStep_*/*.tif") if re.search(r"_w[12]", p.name)]
    assert len(planes) == 60
    for path in planes[::7]:
        _assert_plane(plate, path, z=int(path.parent.name.split("_")[1]))


def test_projection_mix_inconsistent_channels_are_reported(real_data):
    source = real_data / IXM / "Projection-Mix"
    with pytest.raises(PlateError, match=r"\['w3'\] .* have only projection images"):
        read_tiff_plate(source)
    with pytest.raises(
        PlateError, match=r"channel 'w4': 27 missing .* has z \[1\], the plate has z \[1, 2"
    ):
        read_tiff_plate(source, channels=["w1", "w2", "w4"])


def test_projection_mix_instrument_projections(real_data):
    source = real_data / IXM / "Projection-Mix"
    plate = read_tiff_plate(source, "imagexpress-projection")
    assert list(plate.c.values) == ["w1", "w2", "w3", "w4"] and plate.sizes["z"] == 1
    for path in _images(source, "**/1334/*.tif"):
        _assert_plane(plate, path)
    for path in _images(source, "**/ZStep_1/*_w4*.tif"):  # w4 has one plane and no projection
        _assert_plane(plate, path)


def test_time_series_of_three_channels(real_data):
    source = real_data / IXM / "1well-3C-2S-Zmix-T"
    plate = read_tiff_plate(source)
    assert dict(plate.sizes) == {"t": 2, "well": 1, "field": 1, "z": 1, "c": 3, "y": 256, "x": 256}
    assert list(plate.t.values) == [1, 2]
    for path in _images(source, "**/TimePoint_*/*.tif"):
        _assert_plane(plate, path, t=int(path.parent.name.split("_")[1]))


@pytest.mark.parametrize(
    ("plate_id", "sizes", "present"),
    [
        ("3420", {"t": 1, "well": 1, "field": 1, "z": 1, "c": 1}, [[True]]),
        ("3434", {"t": 1, "well": 2, "field": 2, "z": 2, "c": 3}, [[True, False], [True, True]]),
        ("3435", {"t": 2, "well": 2, "field": 2, "z": 1, "c": 2}, [[True, True], [False, True]]),
    ],
)
def test_exported_9987_plates_trust_files_over_the_htd(real_data, plate_id, sizes, present):
    source = real_data / EXPORTED / f"9987_Plate_{plate_id}"
    plate = read_tiff_plate(source)
    assert {k: plate.sizes[k] for k in sizes} == sizes
    assert plate.field_present.values.tolist() == present
    assert list(plate.c.values) == ["DAPI", "FITC", "Texas Red"][: sizes["c"]]
    assert plate.attrs["plate_shape"] == [8, 12] and plate.attrs["pixel_size_um"][0] == 1.3672
    names = {f"w{i + 1}": name for i, name in enumerate(plate.c.values)}
    for path in _images(source, "**/*.TIF"):
        zstep = re.search(r"ZStep_(\d+)", str(path))
        if zstep and zstep.group(1) == "0":
            continue  # MIPs: read with the projection pattern
        t = int(re.search(r"TimePoint_(\d+)", str(path)).group(1))
        wave = _NAME.search(path.name).group(3) or "1"
        _assert_plane(
            plate, path, t=t, z=int(zstep.group(1)) if zstep else None, c=names[f"w{wave}"]
        )


def test_exported_plate_projections_come_from_zstep_0(real_data):
    source = real_data / EXPORTED / "9987_Plate_3434"
    plate = read_tiff_plate(source, "imagexpress-projection", channels={"w1": "DNA"})
    assert list(plate.c.values) == ["DNA"] and plate.sizes["z"] == 1
    for path in _images(source, "TimePoint_1/ZStep_0/*_w1.TIF"):
        _assert_plane(plate, path, c="DNA")


def test_cellprofiler_examplehuman_three_channels(real_data):
    plate = read_tiff_plate(real_data / "cellprofiler_examplehuman", "cellprofiler")
    assert plate.name == "AS_09125_050116030001" and plate.dtype == np.uint8
    assert list(plate.well.values) == ["D03"] and list(plate.c.values) == ["d0", "d1", "d2"]
    for i, path in enumerate(
        sorted((real_data / "cellprofiler_examplehuman/images").glob("*.tif"))
    ):
        np.testing.assert_array_equal(plate.values[0, 0, 0, 0, i], tifffile.imread(path))


def test_cellprofiler_examplefly_palette_index_planes(real_data):
    pattern = FilePattern(r"POS(?P<field>\d+)_(?P<c>[DFR])\.TIF$", defaults={"well": "A01"})
    source = real_data / "cellprofiler_examplefly/images"
    plate = read_tiff_plate(source, pattern, channels={"D": "DAPI", "F": "FITC", "R": "rhodamine"})
    assert dict(plate.sizes) == {
        "t": 1,
        "well": 1,
        "field": 2,
        "z": 1,
        "c": 3,
        "y": 1006,
        "x": 1000,
    }
    for path in sorted(source.glob("*.TIF")):
        field, channel = re.search(r"POS(\d+)_([DFR])", path.name).groups()
        c = {"D": "DAPI", "F": "FITC", "R": "rhodamine"}[channel]
        image = plate.sel(field=int(field), c=c).values.squeeze()
        with tifffile.TiffFile(path) as tif:
            assert tif.pages.first.photometric == tifffile.PHOTOMETRIC.PALETTE
            np.testing.assert_array_equal(image, tif.asarray())


def test_cellprofiler_sbs_transfluor_plate_row(real_data):
    plate = read_tiff_plate(real_data / "cellprofiler_sbs_transfluor", "cellprofiler")
    assert list(plate.well.values) == ["O05", "O06", "O07", "O13", "O18", "O19", "O22", "O24"]
    assert list(plate.field.values) == [0, 1, 2] and plate.field_present.values.all()
    path = real_data / "cellprofiler_sbs_transfluor/images/AS_09047_050428030001_O19f02d2.TIF"
    np.testing.assert_array_equal(
        plate.sel(well="O19", field=2).values.squeeze(), tifffile.imread(path)
    )


def test_vitra_names_with_row_and_column(real_data):
    pattern = r"Channel (?P<c>\d)-\d+-(?P<row>[A-Z])-(?P<col>\d+)-(?P<field>\d+)\.tif"
    source = real_data / "cellprofiler_vitra_translocation/images"
    plate = read_tiff_plate(source, pattern, channels={"1": "nuclei", "2": "translocation"})
    assert list(plate.well.values) == ["A12"] and plate.dtype == np.uint8
    expected = np.stack([tifffile.imread(source / f"Channel {c}-12-A-12-00.tif") for c in (1, 2)])
    np.testing.assert_array_equal(plate.values[0, 0, 0, 0], expected)


def test_trackobjects_rgb_frames_need_a_chosen_sample(real_data):
    source = real_data / "cellprofiler_trackobjects_timelapse"
    pattern = FilePattern(r"Sequence(?P<field>\d)/.*_(?P<t>\d+)\.tif$", defaults={"well": "A01"})
    plate = read_tiff_plate(source, pattern)
    with pytest.raises(
        PlateError, match=r"GFPHistone_0000\.tif: RGB image whose colour channels differ"
    ):
        plate.isel(t=0, field=0).compute()
    green = read_tiff_plate(source, pattern, rgb=1)
    assert dict(green.sizes) == {"t": 21, "well": 1, "field": 2, "z": 1, "c": 1, "y": 264, "x": 542}
    path = source / "Sequence2/DrosophilaEmbryo_GFPHistone_0005.tif"
    np.testing.assert_array_equal(
        green.sel(t=5, field=2).values.squeeze(), tifffile.imread(path)[..., 1]
    )


def test_bbbc039_sparse_sites_and_12_bit_data(real_data):
    plate = read_tiff_plate(real_data / "bbbc039_u2os_nuclei/images")
    assert plate.name == "IXMtest" and plate.dtype == np.uint16
    assert int(plate.field_present.sum()) == 36 and not plate.field_present.values.all()
    assert int(plate.max()) <= 4095
