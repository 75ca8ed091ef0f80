"""Ingest of the real ImageXpress and CellProfiler example folders, checked against tifffile."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from cellscale.io import ingest
from cellscale.io._ingest import read_tiff_plate
from cellscale.io._patterns import FilePattern
from cellscale.plate import PlateError
from tests.conftest import raise_if_dask_computes

pytestmark = pytest.mark.realdata

IXM = "faim_imagexpress_hcs/ImageXpress"
EXPORTED = "faim_imagexpress_hcs/ImageXpress_exported"
# An oracle independent of the library's patterns: well, site and wavelength of a file name.
_NAME = re.compile(r"_([A-P]\d\d)(?:_s(\d))?(?:_w(\d))?")


def _assert_plane(plate, path: Path, *, t=1, z=1, c=None) -> None:
    """The plate's image at the file's well, site and wave, TimePoint ``t`` and ZStep ``z``."""
    well, site, wave = _NAME.search(path.name).groups()
    image = plate.sel(well=well, field=int(site or 1), c=c or f"w{wave or 1}")
    image = image.isel(t=t - 1, z=z - 1)  # t and z hold seconds and micrometres, not numbers
    np.testing.assert_array_equal(image.values, tifffile.imread(path))


def _images(folder: Path, glob: str) -> list[Path]:
    return sorted(p for p in folder.glob(glob) if "_thumb" not in p.name)


def _prop(path: Path, name: str) -> str:
    """A MetaXpress ``prop`` (or ``custom-prop``) value of the file's XML, found by a regex."""
    with tifffile.TiffFile(path) as tif:
        description = tif.pages.first.description
    found = re.search(rf'id="{re.escape(name)}" type="[^"]*" value="([^"]*)"', description)
    assert found is not None, f"{path.name} has no {name!r}"
    return found.group(1)


def _acquired(path: Path) -> datetime:
    return datetime.strptime(_prop(path, "acquisition-time-local"), "%Y%m%d %H:%M:%S.%f")


def _number(path: Path) -> int:
    """The number of the file's ``TimePoint_<n>`` or ``ZStep_<n>`` folder."""
    return int(path.parent.name.split("_")[1])


def _ngff_scale(store: Path, well: str) -> dict[str, float]:
    """The scale of each axis of the well's first field image, as the store's metadata says."""
    root = zarr.open_group(str(store), mode="r")
    well_attrs = root[well].attrs.asdict()
    image = root[well][well_attrs.get("ome", well_attrs)["well"]["images"][0]["path"]]
    image_attrs = image.attrs.asdict()
    multiscale = image_attrs.get("ome", image_attrs)["multiscales"][0]
    scale = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
    return {axis["name"]: s for axis, s in zip(multiscale["axes"], scale, strict=True)}


def test_projection_mix_z_planes_of_the_chosen_channels(real_data):
    source = real_data / IXM / "Projection-Mix"
    plate = read_tiff_plate(source, "imagexpress", channels=["w1", "w2"])
    assert plate.name == "Projection-Mix"
    assert dict(plate.sizes) == {"t": 1, "well": 2, "field": 2, "z": 10, "c": 2, "y": 512, "x": 512}
    assert plate.attrs["z_unit"] == "micrometer"
    assert plate.field_present.values.tolist() == [[True, False], [True, True]]  # E07 s2 held out
    assert plate.attrs["pixel_size_um"] == [1.3668, 1.3668]
    planes = [p for p in _images(source, "**/ZStep_*/*.tif") if re.search(r"_w[12]", p.name)]
    assert len(planes) == 60
    for path in planes[::7]:
        _assert_plane(plate, path, z=int(path.parent.name.split("_")[1]))


def test_projection_mix_z_step_is_the_spacing_of_the_xml_z_positions(real_data, tmp_path):
    source = real_data / IXM / "Projection-Mix"
    positions: dict[tuple[str, ...], dict[int, float]] = defaultdict(dict)
    for path in _images(source, "**/ZStep_*/*_w[12]*.tif"):
        positions[_NAME.search(path.name).groups()][_number(path)] = float(
            _prop(path, "z-position")
        )
    within = np.array([[s[z] - s[1] for z in range(1, 11)] for s in positions.values()])
    assert within.shape == (6, 10)  # w1, w2 of 3 fields; E07 and E08 sit ~2.3 µm apart
    step = float(np.median(np.diff(within, axis=1)))
    projection = _images(source, "*/*/Projection-Mix_E07_s1_w1*.tif")[0]
    assert step == pytest.approx(float(_prop(projection, "Z Projection Step Size")), abs=0.05)
    plate = read_tiff_plate(source, channels=["w1", "w2"])
    np.testing.assert_allclose(plate.z.values, np.median(within, axis=0), atol=1e-6)
    assert plate.attrs["z_unit"] == "micrometer"
    out = ingest(source, tmp_path / "pm.zarr", channels=["w1", "w2"], progress=False)
    assert _ngff_scale(out, "E/07")["z"] == pytest.approx(step, abs=0.02)


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


def test_projection_mix_max_keeps_all_four_channels_pixel_exact(real_data):
    source = real_data / IXM / "Projection-Mix"
    with raise_if_dask_computes():
        plate = read_tiff_plate(source, project_z="max")
    assert dict(plate.sizes) == {"t": 1, "well": 2, "field": 2, "z": 1, "c": 4, "y": 512, "x": 512}
    assert len(plate.data.__dask_graph__()) == 2 * 2 * 4  # one read task per image
    assert {_prop(p, "_IllumSetting_") for p in _images(source, "**/*.tif")} == {"FITC_05"}
    assert list(plate.c.values) == ["w1", "w2", "w3", "w4"]  # one shared name: ids kept
    assert plate.attrs["z_projection"] == {
        "w1": "max of 10 planes",
        "w2": "max of 10 planes",
        "w3": "instrument projection (Maximum)",
        "w4": "single plane",
    }
    assert plate.attrs["lineage"][-1]["project_z"] == "max"
    values = plate.values
    stacks: dict[tuple[str, ...], list[Path]] = defaultdict(list)
    for path in sorted(_images(source, "**/ZStep_*/*.tif"), key=_number):
        stacks[_NAME.search(path.name).groups()].append(path)
    projections = {_NAME.search(p.name).groups(): p for p in _images(source, "*/*/*.tif")}
    for well, site, wave in [*stacks, *projections]:
        image = values[0, ["E07", "E08"].index(well), int(site) - 1, 0, int(wave) - 1]
        planes = stacks.get((well, site, wave))
        if planes is None:  # w3: the instrument's projection is all there is
            np.testing.assert_array_equal(image, tifffile.imread(projections[well, site, wave]))
            continue
        assert len(planes) == {"1": 10, "2": 10, "4": 1}[wave]
        np.testing.assert_array_equal(image, np.max([tifffile.imread(p) for p in planes], axis=0))
        projection = projections.get((well, site, wave))
        if projection is not None and _prop(projection, "Z Projection Method") == "Maximum":
            # MetaXpress's own maximum is never below the stored planes' and mostly equal
            theirs = tifffile.imread(projection)
            assert (image <= theirs).all() and (image == theirs).mean() > 0.7


def test_time_series_of_three_channels(real_data):
    source = real_data / IXM / "1well-3C-2S-Zmix-T"
    plate = read_tiff_plate(source)
    assert dict(plate.sizes) == {"t": 2, "well": 1, "field": 1, "z": 1, "c": 3, "y": 256, "x": 256}
    for path in _images(source, "**/TimePoint_*/*.tif"):
        wave = int(_NAME.search(path.name).group(3))
        t = int(path.parent.name.split("_")[1])
        _assert_plane(plate, path, t=t, c=plate.c.values[wave - 1])


def test_time_and_channel_names_come_from_the_xml(real_data):
    source = real_data / IXM / "1well-3C-2S-Zmix-T"
    plate = read_tiff_plate(source)
    files = _images(source, "**/TimePoint_*/*.tif")
    starts = [min(_acquired(p) for p in files if _number(p) == t) for t in (1, 2)]
    np.testing.assert_allclose(plate.t.values, [0.0, (starts[1] - starts[0]).total_seconds()])
    assert plate.attrs["t_unit"] == "second" and plate.t.values[1] > 5
    names = [
        _prop(_images(source, f"**/TimePoint_1/*_w{w}*.tif")[0], "_IllumSetting_")
        for w in (1, 2, 3)
    ]
    assert list(plate.c.values) == names == ["FITC", "Cy3", "Texas Red"]
    assert list(read_tiff_plate(source, channels=["Cy3"]).c.values) == ["Cy3"]


def test_exported_time_series_times_a_copied_channel_out(real_data):
    source = real_data / EXPORTED / "9987_Plate_3435"
    times = {
        (wave, t): min(_acquired(p) for p in _images(source, f"TimePoint_{t}/*_w{wave}.TIF"))
        for wave in (1, 2)
        for t in (1, 2)
    }
    assert times[2, 1] == times[2, 2]  # FITC was acquired once; the export copied it
    plate = read_tiff_plate(source)
    interval = (times[1, 2] - times[1, 1]).total_seconds()
    np.testing.assert_allclose(plate.t.values, [0.0, interval])
    assert 29 < interval < 31  # the HTD plans a 30 s interval


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
        _assert_plane(plate, path, t=t, z=int(zstep.group(1)) if zstep else 1, c=names[f"w{wave}"])


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
