"""File patterns: how image paths name plate positions, and folder discovery."""

from __future__ import annotations

import re

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
    with pytest.raises(PlateError, match="neither a built-in pattern nor a regex"):
        resolve_pattern("no-groups-here")
    with pytest.raises(PlateError, match=r"names groups \['site'\]"):
        resolve_pattern(r"(?P<well>\w+)_(?P<site>\d)")
    with pytest.raises(PlateError, match=r"names no well \(it has groups \['field'\]\)"):
        resolve_pattern(r"(?P<field>\d+)\.tif")


def test_builtin_names_ignore_case_and_a_misspelt_one_gets_the_closest():
    assert resolve_pattern("ImageXpress") is resolve_pattern("imagexpress")
    assert resolve_pattern("CellProfiler").name == "cellprofiler"
    with pytest.raises(
        PlateError,
        match=r"'ImageExpress' is neither .*; did you mean 'imagexpress'\? Built-in patterns "
        r"are \['cellprofiler', 'imagexpress', 'imagexpress-projection'\]",
    ):
        resolve_pattern("ImageExpress")
    with pytest.raises(PlateError, match=r"'zzz' is neither .*; Built-in patterns are"):
        resolve_pattern("zzz")
    with pytest.raises(PlateError, match=r"did you mean 'cellprofiler'\? .*\(as a regex: "):
        resolve_pattern("cellprofiler(")


def test_defaults_give_groups_the_paths_lack():
    # CellProfiler's ExampleFly names one well's images 01_POS076_D.TIF
    fly = resolve_pattern(r"POS(?P<field>\d+)_(?P<c>[DFR])", defaults={"well": "A01"})
    assert fly.match("01_POS076_D.TIF") == {"well": "A01", "field": "076", "c": "D"}
    assert fly.defaults == {"well": "A01"}
    # a regex group wins over a default; defaults add to (and override) a pattern's own
    assert FilePattern(r"(?P<well>[A-P]\d\d)", defaults={"well": "A01"}).match("B03") == {
        "well": "B03"
    }
    ixm = resolve_pattern("ImageXpress", defaults={"c": "w2", "z": "5"})
    assert ixm.defaults == {"t": "1", "field": "1", "c": "w2", "z": "5"}
    assert resolve_pattern("imagexpress").defaults["c"] == "w1"


def test_defaults_for_unknown_groups_or_non_numbers_are_errors():
    with pytest.raises(PlateError, match=r"names groups \['site'\]; allowed groups are"):
        resolve_pattern(r"(?P<well>\w+)", defaults={"site": "1"})
    with pytest.raises(PlateError, match=r"defaults \{'field': 'one'\} must be whole numbers"):
        FilePattern(r"(?P<well>\w+)", defaults={"field": "one"})


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
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist$"):
        discover(tmp_path / "nowhere", imagexpress())
    (tmp_path / "plate_1").mkdir()
    with pytest.raises(FileNotFoundError, match=r"plate1 does not exist; did you mean .*plate_1\?"):
        discover(tmp_path / "plate1", imagexpress())


def test_discover_of_a_file_says_to_pass_its_folder(tmp_path):
    (tmp_path / "P_B02_s1_w1.tif").write_bytes(b"")
    with pytest.raises(
        PlateError, match=r"P_B02_s1_w1\.tif is a file; pass the folder that holds it"
    ):
        discover(tmp_path / "P_B02_s1_w1.tif", imagexpress())


@pytest.mark.parametrize(
    ("names", "pattern", "missing"),
    [
        (
            ["B02_s1_dapi.tif", "B02_s2_dapi.tif"],
            r"(?P<well>B\d\d)_s\d_(?P<c>\w+)\.",
            r"'t', 'field' or 'z'",
        ),
        (
            ["B02_s1_dapi.tif", "B02_s1_gfp.tif"],
            r"(?P<well>B\d\d)_s(?P<field>\d)",
            r"'t', 'z' or 'c'",
        ),
    ],
)
def test_files_at_one_position_name_the_groups_the_pattern_lacks(tmp_path, names, pattern, missing):
    for name in names:
        (tmp_path / name).write_bytes(b"")
    has = sorted(FilePattern(pattern).compiled.groupindex)
    with pytest.raises(
        PlateError,
        match=rf"two files claim .*{names[0]} and .*{names[1]}; the pattern .* has groups "
        rf"{re.escape(str(has))} but no {missing} group to tell them apart: add one for what "
        r"differs, \(\?P<t>\.\.\.\) for the time point",
    ):
        discover(tmp_path, FilePattern(pattern))


def test_a_pattern_lacking_groups_is_fine_while_positions_stay_distinct(tmp_path):
    for name in ["B02_s1.tif", "B02_s2.tif", "B03_s1.tif"]:
        (tmp_path / name).write_bytes(b"")
    found = discover(tmp_path, FilePattern(r"(?P<well>B\d\d)_s(?P<field>\d)"))
    assert [(f.well, f.field) for f in found.files] == [("B02", 1), ("B02", 2), ("B03", 1)]


def _touch(root, *names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def test_a_folder_of_several_plates_names_each_plate_folder(tmp_path):
    _touch(
        tmp_path,
        f"PlateB/2024-01-02/7/TimePoint_1/ZStep_1/PlateB_B02_s1_w1{UUID}.tif",
        f"PlateA/2024-01-01/5/TimePoint_1/ZStep_1/PlateA_B02_s1_w1{UUID}.tif",
        f"PlateA/2024-01-01/5/TimePoint_2/ZStep_1/PlateA_B02_s1_w1{UUID}.tif",
        f"PlateA/2024-01-01/5/PlateA_B02_s1_w1{UUID}.tif",  # its projection
    )
    with pytest.raises(
        PlateError,
        match=r"holds 2 plates \(imagexpress pattern\): PlateA in PlateA/2024-01-01/5/, PlateB "
        r"in PlateB/2024-01-02/7/; ingest one plate at a time: pass the plate's folder, e\.g\. "
        r".*/PlateA/2024-01-01/5$",
    ):
        discover(tmp_path, imagexpress())
    assert len(discover(tmp_path / "PlateA", imagexpress()).files) == 3


def test_exported_plates_of_one_name_are_told_apart_by_folder(tmp_path):
    _touch(
        tmp_path, "9987_Plate_1/TimePoint_1/9987_B02.TIF", "9987_Plate_2/TimePoint_1/9987_B02.TIF"
    )
    with pytest.raises(
        PlateError, match=r"holds 2 plates .*: 9987 in 9987_Plate_1/, 9987 in 9987_Plate_2/;"
    ):
        discover(tmp_path, imagexpress())


def test_plates_named_in_one_folder_must_be_put_apart(tmp_path):
    _touch(tmp_path, "P1_A01f00d0.tif", "P2_A01f00d0.tif")
    with pytest.raises(
        PlateError,
        match=r"holds 2 plates \(cellprofiler pattern\): P1 in \./, P2 in \./; ingest one plate "
        r"at a time: the plates share folders, so move each plate's files into a folder of its own",
    ):
        discover(tmp_path, cellprofiler())


@pytest.mark.realdata
def test_the_real_imagexpress_folder_of_two_raw_plates_names_both(real_data):
    source = real_data / "faim_imagexpress_hcs/ImageXpress"
    with pytest.raises(
        PlateError,
        match=r"holds 2 plates \(imagexpress pattern\): 1well-3C-2S-Zmix-T in "
        r"1well-3C-2S-Zmix-T/2024-04-22/1697/, Projection-Mix in Projection-Mix/2023-02-21/1334/;",
    ):
        discover(source, imagexpress())
