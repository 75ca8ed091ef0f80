"""Paths that are not HCS plates: the error says what is there instead and what to do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

import cellscale
from cellscale.io._diagnose import not_a_plate
from cellscale.plate import PlateError


def _plate(root: Path) -> Path:
    """A small OME-Zarr 0.5 plate written by ome-zarr-py: well B03 with one field."""
    path = root / "plate.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    write_plate_metadata(group, ["B"], ["03"], ["B/03"], fmt=FormatV05())
    well = group.require_group("B/03")
    write_well_metadata(well, [{"path": "0"}], fmt=FormatV05())
    _image(well.require_group("0"), FormatV05())
    return path


def _image(group: zarr.Group, fmt: FormatV04 | FormatV05) -> None:
    write_image(np.zeros((4, 4), np.uint16), group, scale_factors=(), axes="yx", fmt=fmt)


def _missing_with_sibling(root: Path) -> Path:
    (root / "plate.zarr").mkdir()
    return root / "plat.zarr"


def _tiff_file(root: Path) -> Path:
    (root / "images").mkdir()
    tifffile.imwrite(root / "images" / "B02.tif", np.zeros((4, 4), np.uint16))
    return root / "images" / "B02.tif"


def _other_file(root: Path) -> Path:
    (root / "notes.txt").write_text("not a plate")
    return root / "notes.txt"


def _tiff_folder(root: Path) -> Path:
    folder = root / "images"
    (folder / "TimePoint_1").mkdir(parents=True)
    for name in ("B02_w1.tif", "B02_w2.TIFF", "TimePoint_1/B03_w1.tif"):
        tifffile.imwrite(folder / name, np.zeros((4, 4), np.uint16))
    (folder / "notes.txt").write_text("")
    return folder


def _zarr_array(zarr_format: Literal[2, 3]) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        path = root / "pixels.zarr"
        zarr.create_array(str(path), shape=(4, 4), dtype="uint16", zarr_format=zarr_format)
        return path

    return build


def _ome_image(fmt: FormatV04 | FormatV05) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        path = root / "image.zarr"
        zarr_format: Literal[2, 3] = 3 if isinstance(fmt, FormatV05) else 2
        _image(zarr.open_group(str(path), mode="w", zarr_format=zarr_format), fmt)
        return path

    return build


def _group(root: Path) -> Path:
    zarr.open_group(str(root / "group.zarr"), mode="w")
    return root / "group.zarr"


def _folder_of_plates(root: Path) -> Path:
    (root / "out").mkdir()
    _plate(root / "out")
    return root / "out"


def _group_of_plates(root: Path) -> Path:
    zarr.open_group(str(root / "screen.zarr"), mode="w")
    _plate(root / "screen.zarr")
    return root / "screen.zarr"


def _empty(root: Path) -> Path:
    (root / "empty").mkdir()
    return root / "empty"


def _other_folder(root: Path) -> Path:
    folder = root / "docs"
    folder.mkdir()
    for name in ("b.csv", "a.txt"):
        (folder / name).write_text("")
    return folder


CASES = {
    "missing, with a similar sibling": (
        _missing_with_sibling,
        r"plat\.zarr does not exist; did you mean .*/plate\.zarr\?$",
    ),
    "missing": (lambda root: root / "nowhere", r"nowhere does not exist$"),
    "a TIFF file": (
        _tiff_file,
        r"B02\.tif is a file; pass an OME-Zarr plate folder\. It is a TIFF image: ingest its "
        r"folder first, cellscale\.ingest\('.*/images', 'plate\.zarr'\) or "
        r"`cellscale ingest .*/images plate\.zarr`$",
    ),
    "another file": (_other_file, r"notes\.txt is a file; pass an OME-Zarr plate folder$"),
    "a file inside a plate": (
        lambda root: _plate(root) / "zarr.json",
        r"zarr\.json is a file; pass an OME-Zarr plate folder: it lies inside the plate "
        r".*/plate\.zarr, so pass that$",
    ),
    "a folder of TIFF files": (
        _tiff_folder,
        r"images holds 3 TIFF files, not a plate; ingest it first: "
        r"cellscale\.ingest\('.*/images', 'plate\.zarr'\) or `cellscale ingest .*/images "
        r"plate\.zarr`$",
    ),
    "a Zarr v2 array": (_zarr_array(2), r"pixels\.zarr is a Zarr array, not an HCS plate"),
    "a Zarr v3 array": (_zarr_array(3), r"pixels\.zarr is a Zarr array, not an HCS plate"),
    "an array inside a plate": (
        lambda root: _plate(root) / "B" / "03" / "0" / "s0",
        r"03/0/s0 is a Zarr array, not an HCS plate .*: it lies inside the plate "
        r".*/plate\.zarr, so pass that$",
    ),
    "an OME-Zarr 0.4 image": (
        _ome_image(FormatV04()),
        r"image\.zarr is a single OME-Zarr image, not an HCS plate; pass the folder",
    ),
    "an OME-Zarr 0.5 image": (
        _ome_image(FormatV05()),
        r"image\.zarr is a single OME-Zarr image, not an HCS plate; pass the folder",
    ),
    "a well of a plate": (
        lambda root: _plate(root) / "B" / "03",
        r"B/03 is an OME-Zarr well, not an HCS plate: it lies inside the plate .*/plate\.zarr",
    ),
    "a row group of a plate": (
        lambda root: _plate(root) / "B",
        r"zarr/B is a Zarr group without OME-Zarr 'plate' metadata, so not an HCS plate: it "
        r"lies inside the plate .*/plate\.zarr, so pass that$",
    ),
    "a plain Zarr group": (
        _group,
        r"group\.zarr is a Zarr group without OME-Zarr 'plate' metadata, so not an HCS plate; "
        r"pass the folder of an OME-Zarr HCS plate",
    ),
    "a Zarr group holding a plate": (
        _group_of_plates,
        r"screen\.zarr is a Zarr group without OME-Zarr 'plate' metadata, so not an HCS plate; "
        r"it holds the plate\(s\) plate\.zarr; pass one, e\.g\. .*/screen\.zarr/plate\.zarr$",
    ),
    "a folder holding a plate": (
        _folder_of_plates,
        r"out is a folder that holds the plate\(s\) plate\.zarr; pass one, e.g. "
        r".*/out/plate\.zarr$",
    ),
    "an empty folder": (
        _empty,
        r"empty is an empty folder; pass the folder of an OME-Zarr HCS plate "
        r"\(cellscale\.ingest makes one from TIFFs\)$",
    ),
    "a folder of other files": (
        _other_folder,
        r"docs is a folder with neither Zarr metadata \(zarr\.json, \.zgroup\) nor TIFF files "
        r"\(it holds a\.txt, b\.csv\)",
    ),
}


@pytest.mark.parametrize(("build", "message"), CASES.values(), ids=CASES.keys())
def test_not_a_plate_says_what_is_there_and_what_to_do(tmp_path, build, message):
    error = not_a_plate(build(tmp_path))
    assert isinstance(error, PlateError)
    with pytest.raises(PlateError, match=message):
        raise error


@pytest.mark.parametrize(("build", "message"), CASES.values(), ids=CASES.keys())
def test_open_plate_of_what_is_not_a_plate_says_what_is_there(tmp_path, build, message):
    with pytest.raises(PlateError, match=message):
        cellscale.open_plate(build(tmp_path))


def test_a_plate_that_cannot_be_opened_is_not_called_something_else(tmp_path):
    plate = _plate(tmp_path)
    with pytest.raises(PlateError, match=r"plate\.zarr has OME-Zarr 'plate' metadata, yet"):
        raise not_a_plate(plate)


def test_many_other_files_are_listed_in_part(tmp_path):
    for i in range(7):
        (tmp_path / f"f{i}.txt").write_text("")
    with pytest.raises(
        PlateError, match=r"\(it holds f0\.txt, f1\.txt, f2\.txt, f3\.txt, f4\.txt, …\)"
    ):
        raise not_a_plate(tmp_path)
