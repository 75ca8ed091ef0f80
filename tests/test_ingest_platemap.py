"""Plate maps: CSV well annotations become plate coordinates, with clear mismatch errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellscale.io._htd import read_htd
from cellscale.io._ingest import read_tiff_plate
from cellscale.io._platemap import check_plate_map, read_plate_map
from cellscale.plate import PlateError

PATTERN = r"(?P<well>[A-P]\d\d)_(?P<c>w\d)\.tif"


@pytest.fixture
def folder(tmp_path):
    for well in ("B02", "B03", "C02"):
        tifffile.imwrite(tmp_path / f"{well}_w1.tif", np.zeros((4, 4), np.uint16))
    return tmp_path


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path.parent / f"{tmp_path.name}_map.csv"
    path.write_text(text)
    return path


def test_plate_map_columns_become_well_coordinates(folder):
    csv = _csv(
        folder,
        "Well,treatment,concentration,replicate,control\n"
        "b2,DMSO,0,1,True\nB03,drug,1.5,1,False\nC02,drug,3.0,2,False\nH12,drug,9,3,False\n",
    )
    with pytest.warns(UserWarning, match=r"lists 1 well\(s\) that were not imaged, .*\['H12'\]"):
        plate = read_tiff_plate(folder, PATTERN, csv)
    assert list(plate.treatment.values) == ["DMSO", "drug", "drug"]
    np.testing.assert_allclose(plate.concentration.values, [0, 1.5, 3.0])
    assert plate.control.values.tolist() == [True, False, False]
    assert plate.replicate.values.tolist() == [1, 1, 2]


def test_row_and_column_columns_and_tsv_are_read(tmp_path):
    path = tmp_path / "map.tsv"
    path.write_text("row\tcol\tcompound\nB\t3\tX\nC\t12\tY\n")
    table = read_plate_map(path)
    assert list(table.index) == ["B03", "C12"] and list(table.columns) == ["compound"]


def test_imaged_wells_missing_from_the_map_are_listed(folder):
    csv = _csv(folder, "well,treatment\nB02,DMSO\n")
    with pytest.raises(
        PlateError, match=r"2 imaged well\(s\) are missing from plate map .*\['B03', 'C02'\]"
    ):
        read_tiff_plate(folder, PATTERN, csv)


def test_invalid_and_repeated_well_names_are_reported(tmp_path):
    with pytest.raises(PlateError, match=r"invalid well names: line 3: 'B3x'"):
        read_plate_map(pd.DataFrame({"well": ["B03", "B3x"], "t": [1, 2]}))
    with pytest.raises(PlateError, match=r"more than once: \['B03'\]"):
        read_plate_map(pd.DataFrame({"well": ["B03", "b3"], "x": [1, 2]}))
    with pytest.raises(PlateError, match="has no well column"):
        read_plate_map(pd.DataFrame({"position": ["B03"]}))


@pytest.mark.realdata
def test_map_wells_outside_the_htd_plate_format_are_errors(real_data):
    htd = read_htd(real_data / "faim_imagexpress_hcs/ImageXpress_exported/9987_Plate_3435/9987.HTD")
    table = read_plate_map(pd.DataFrame({"well": ["B02", "B03", "P24"], "drug": ["a", "b", "c"]}))
    with pytest.raises(PlateError, match=r"outside the 8 x 12 plate: \['P24'\]"):
        check_plate_map(table, ["B02", "B03"], plate_shape=htd.plate_shape)
    check_plate_map(table.drop(index="P24"), ["B02", "B03"], plate_shape=htd.plate_shape)


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("Well;Dose (µM);Compound\nB02;0,5;Ibuprofène\nB03;1;DMSO\n", "latin-1"),
        ("Well;Dose (µM);Compound\nB02;0,5;Ibuprofène\nB03;1;DMSO\n", "cp1252"),
        ('Well,Dose (µM),Compound\nB02,"0,5",Ibuprofène\nB03,1,DMSO\n', "utf-8-sig"),
        ("Well\tDose (µM)\tCompound\nB02\t0,5\tIbuprofène\nB03\t1\tDMSO\n", "utf-16"),
        ("Well|Dose (µM)|Compound\nB02|0,5|Ibuprofène\nB03|1|DMSO\n", "utf-8"),
    ],
    ids=["latin-1 ;", "windows-1252 ;", "utf-8 BOM ,", "utf-16 tab", "utf-8 |"],
)
def test_plate_maps_in_spreadsheet_encodings_and_delimiters_load(tmp_path, data, encoding):
    path = tmp_path / "map.csv"
    path.write_bytes(data.encode(encoding))
    table = read_plate_map(path)
    assert list(table.index) == ["B02", "B03"]
    assert list(table.columns) == ["Dose (µM)", "Compound"]
    assert table["Compound"].tolist() == ["Ibuprofène", "DMSO"]


def test_spreadsheet_debris_is_dropped_and_lines_still_named(tmp_path):
    path = tmp_path / "map.csv"
    path.write_text("Well;treatment;;\nB02;DMSO;;\n;;;\nB3x;drug;;\n;;;\n")
    with pytest.raises(PlateError, match=r"map\.csv has invalid well names: line 4: 'B3x'$"):
        read_plate_map(path)
    path.write_text("Well;treatment;;\nB02;DMSO;;\n;;;\nB03;drug;;\n;;;\n")
    table = read_plate_map(path)
    assert table["treatment"].to_dict() == {"B02": "DMSO", "B03": "drug"}


def test_unreadable_plate_maps_name_the_file(tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("well,treatment\nB02,DMSO\nB03,drug,extra,more\n")
    with pytest.raises(PlateError, match=r"cannot read plate map .*ragged\.csv as a ','-separated"):
        read_plate_map(ragged)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(PlateError, match=r"cannot read plate map .*empty\.csv"):
        read_plate_map(empty)
    workbook = tmp_path / "map.xlsx"
    workbook.write_bytes(b"PK\x03\x04")
    with pytest.raises(PlateError, match=r"map\.xlsx is a spreadsheet; save it as CSV"):
        read_plate_map(workbook)


def test_map_wells_never_imaged_are_named_in_a_warning():
    table = read_plate_map(pd.DataFrame({"well": [f"A{c:02d}" for c in range(1, 25)], "x": 0}))
    with pytest.warns(
        UserWarning,
        match=r"the plate map lists 23 well\(s\) that were not imaged, which the plate leaves "
        r"out: \['A02', .*'A21'\] … and 3 more$",
    ):
        check_plate_map(table, ["A01"])
