"""File patterns: how image paths name plate positions, and folder discovery."""

from __future__ import annotations

import pytest

from cellscale.io._patterns import (
    FilePattern,
    cellprofiler,
    discover,
    imagexpress,
    resolve_pattern,
)
from cellscale.plate import PlateError

UUID = "E94C24BD-45E4-450A-9919-257C714278F7"


@pytest.mark.parametrize(
    ("relpath", "expected"),
    [
        (f"Plate-1_E07_s2_w1{UUID}.tif", {"well": "E07", "field": "2", "c": "w1", "t": "1"}),
        (f"ZStep_3/Plate-1_E07_s1_w2{UUID}.tif", {"z": "3", "c": "w2"}),
        (f"2023-02-21/1334/TimePoint_2/ZStep_10/P_E07_s1_w4{UUID}.tif", {"t": "2", "z": "10"}),
        ("TimePoint_1/ZStep_0/9987_B02_s1_w3.TIF", {"z": "0", "c": "w3", "plate": "9987"}),
        ("TimePoint_1/9987_B02.TIF", {"well": "B02", "field": "1", "c": "w1"}),
        # a UUID that starts with digits must not be read as part of the wavelength
        ("P_E08_s1_w117654C10-92F1-4B4B-8B8B-112233445566.tif", {"c": "w1"}),
    ],
)
def test_imagexpress_pattern_reads_raw_and_exported_names(relpath, expected):
    groups = imagexpress().match(relpath)
    assert groups is not None
    assert {k: groups[k] for k in expected} == expected


def test_cellprofiler_pattern_reads_well_field_and_channel():
    groups = cellprofiler().match("images/AS_09125_050116030001_D03f00d2.tif")
    assert groups is not None
    assert (groups["plate"], groups["well"], groups["field"], groups["c"]) == (
        "AS_09125_050116030001",
        "D03",
        "00",
        "d2",
    )


def test_resolve_pattern_accepts_names_regexes_and_patterns():
    assert resolve_pattern("cellprofiler").name == "cellprofiler"
    assert resolve_pattern("imagexpress-projection").projection
    custom = resolve_pattern(r"(?P<well>[A-P]\d\d)_(?P<c>\w+)\.tif")
    assert custom.match("x/B03_dapi.tif") == {"well": "B03", "c": "dapi"}
    with pytest.raises(ValueError, match="neither a built-in pattern"):
        resolve_pattern("no-groups-here")
    with pytest.raises(ValueError, match=r"groups \['site'\]"):
        resolve_pattern(r"(?P<well>\w+)_(?P<site>\d)")
    with pytest.raises(ValueError, match="names no well"):
        resolve_pattern(r"(?P<field>\d+)\.tif")


def test_discover_skips_thumbnails_and_marks_instrument_projections(tmp_path):
    names = [
        f"P_B02_s1_w1{UUID}.tif",  # beside ZStep folders: a projection
        f"P_B02_s1_w1_thumb{UUID}.tif",
        f"ZStep_1/P_B02_s1_w1{UUID}.tif",
        f"ZStep_2/P_B02_s1_w1{UUID}.tif",
        "notes.txt",
        "P.HTD",
    ]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = discover(tmp_path, imagexpress())
    assert [(f.z, f.projection) for f in found.files] == [(0, True), (1, False), (2, False)]
    assert [p.name for p in found.skipped] == [f"P_B02_s1_w1_thumb{UUID}.tif"]
    assert found.unmatched == []
    assert [p.name for p in found.htd_files] == ["P.HTD"]


def test_discover_lists_unmatched_files_with_the_pattern(tmp_path):
    for name in ["B02_s1_w1.tif", "random.tif", "other.TIFF"]:
        (tmp_path / name).write_bytes(b"")
    found = discover(tmp_path, imagexpress())
    assert sorted(p.name for p in found.unmatched) == ["B02_s1_w1.tif", "other.TIFF", "random.tif"]
    message = found.unmatched_message()
    assert "3 image file(s)" in message and "random.tif" in message
    assert repr(imagexpress().regex) in message


def test_row_and_col_groups_and_defaults_make_wells(tmp_path):
    (tmp_path / "Channel 2-12-A-12-03.tif").write_bytes(b"")
    pattern = FilePattern(r"Channel (?P<c>\d)-\d+-(?P<row>[A-Z])-(?P<col>\d+)-(?P<field>\d+)")
    (image,) = discover(tmp_path, pattern).files
    assert (image.well, image.field, image.c, image.t, image.z) == ("A12", 3, "2", 0, 0)
    one_well = FilePattern(r"POS(?P<field>\d+)_(?P<c>[A-Z])", defaults={"well": "C01"})
    (tmp_path / "01_POS002_D.TIF").write_bytes(b"")
    assert [f.well for f in discover(tmp_path, one_well).files] == ["C01"]


def test_a_non_numeric_field_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "B02_fx.tif").write_bytes(b"")
    with pytest.raises(PlateError, match=r"B02_fx\.tif: cannot read a plate position"):
        discover(tmp_path, FilePattern(r"(?P<well>B\d\d)_f(?P<field>\w)"))


def test_discover_of_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover(tmp_path / "nowhere", imagexpress())
