"""check_segmentation: wells of fragments, of too few objects or of none are flagged, others not."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tifffile

import cellscale
from cellscale.io import read_tiff_plate
from cellscale.measurement._features import shape_features
from cellscale.pipeline._config import load_config
from cellscale.pipeline._manifest import Manifest
from cellscale.pipeline._segment_check import check_plate_segmentation
from cellscale.pipeline._state import RunState
from cellscale.segmentation import ClassicalSegmenter, SegmentationFlag, check_segmentation
from cellscale.segmentation._border import drop_border_objects
from cellscale.testing import synthetic_plate

AREA = "Objects_AreaShape_Area"


def _table(wells: dict[str, tuple[int, float]]) -> pd.DataFrame:
    """A cell table with ``count`` objects of about ``area`` pixels per well."""
    rng = np.random.default_rng(0)
    rows = [
        pd.DataFrame(
            {
                "Metadata_Well": well,
                "Metadata_Site": rng.integers(1, 4, count),
                AREA: area * rng.uniform(0.8, 1.25, count),
            }
        )
        for well, (count, area) in wells.items()
    ]
    return pd.concat(rows, ignore_index=True)


def _reasons(flags: list[SegmentationFlag]) -> dict[str, str]:
    return {f.well: f.reason for f in flags}


# ------------------------------------------------------------------------ cell tables


def test_small_objects_are_flagged_against_the_given_diameter() -> None:
    cells = _table({"B02": (40, 700.0), "B03": (1412, 31.0), "B04": (35, 650.0)})
    flags = check_segmentation(cells, plate="P1", compartment="objects", expected_diameter=30)
    assert [f.well for f in flags] == ["B03"]
    flag = flags[0]
    assert flag.objects == 1412
    assert flag.median_area == pytest.approx(cells[cells.Metadata_Well == "B03"][AREA].median())
    assert flag.expected_area == pytest.approx(np.pi * 30**2 / 4)
    assert flag.message.startswith("plate P1 well B03: 1,412 objects with median area 3")
    assert "expected ~707 px from the 30 px diameter" in flag.message
    assert "sub-cellular" in flag.message
    with pytest.raises(dataclasses.FrozenInstanceError):
        flag.well = "B04"  # type: ignore[misc]


def test_a_given_diameter_flags_even_when_most_wells_fail_alike() -> None:
    cells = _table({w: (1300, 25.0) for w in ("A01", "A02", "A03")} | {"A04": (30, 700.0)})
    alone = check_segmentation(cells, plate="P", compartment="objects")
    told = check_segmentation(cells, plate="P", compartment="objects", expected_diameter=30)
    # the plate's typical well fragments, so by the plate only the good well stands out
    assert [(f.well, "fewer than the plate's typical 1,300" in f.reason) for f in alone] == [
        ("A04", True)
    ]
    assert [f.well for f in told] == ["A01", "A02", "A03"]


def test_without_a_diameter_the_plate_is_the_reference() -> None:
    wells = {f"C{i:02d}": (30 + i, 500.0 + 20 * i) for i in range(1, 7)}
    cells = _table(wells | {"C07": (1283, 26.0), "C08": (1507, 21.0)})
    flags = check_segmentation(cells, plate="SBS", compartment="objects")
    assert sorted(_reasons(flags)) == ["C07", "C08"]
    assert "below the plate's typical" in flags[0].reason
    typical = np.exp(np.median(np.log(cells.groupby("Metadata_Well")[AREA].median())))
    assert flags[0].expected_area == pytest.approx(typical)


def test_a_well_with_far_fewer_objects_than_the_plate_is_flagged() -> None:
    wells = {f"D{i:02d}": (200 + 5 * i, 600.0) for i in range(1, 8)}
    cells = _table(wells | {"D08": (9, 640.0)})
    flags = check_segmentation(cells, plate="P2", compartment="objects")
    assert [f.well for f in flags] == ["D08"]
    assert flags[0].reason.startswith("9 objects, 24x fewer than the plate's typical 217 per well")


def test_counts_spread_by_a_dose_series_are_not_flagged() -> None:
    counts = [400, 300, 200, 120, 80, 50, 30, 20]  # cells thinned dose by dose
    cells = _table({f"E{i:02d}": (n, 600.0) for i, n in enumerate(counts, 1)})
    assert check_segmentation(cells, plate="P", compartment="objects") == []


def test_a_well_without_objects_is_flagged_when_the_wells_are_known() -> None:
    cells = _table({"F01": (50, 600.0), "F02": (55, 610.0)})
    flags = check_segmentation(cells, plate="P", compartment="objects", wells=["F01", "F02", "F03"])
    assert [(f.well, f.objects) for f in flags] == [("F03", 0)]
    assert "no objects" in flags[0].message and np.isnan(flags[0].median_area)


def test_two_wells_are_not_compared_with_each_other() -> None:
    cells = _table({"G01": (1400, 25.0), "G02": (30, 700.0)})
    assert check_segmentation(cells, plate="P", compartment="objects") == []


def test_a_table_without_the_compartment_is_refused() -> None:
    cells = _table({"H01": (5, 100.0)})
    with pytest.raises(ValueError, match=r"plate P: .*Nuclei_AreaShape_Area"):
        check_segmentation(cells, plate="P", compartment="nuclei")
    with pytest.raises(ValueError, match="expected_diameter"):
        check_segmentation(cells, plate="P", compartment="objects", expected_diameter=0)


# ------------------------------------------------------- synthetic fields, segmented


def _field(rng: np.random.Generator, vesicles: bool, size: int = 160) -> np.ndarray:
    """Cells of diameter 20 on a dim background; in vesicle wells, faint cells full of puncta."""
    yy, xx = np.mgrid[:size, :size]
    image = 100.0 + rng.normal(0, 5, (size, size))
    centres = [(y, x) for y in range(24, size - 20, 36) for x in range(24, size - 20, 36)]
    for cy, cx in centres:
        cell = (yy - cy) ** 2 + (xx - cx) ** 2 <= 10**2
        image[cell] += 80 if vesicles else 900
        if vesicles:
            for _ in range(12):
                dy, dx = rng.uniform(-7, 7, 2)
                image[(yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 <= 1.5**2] += 1500
    return image.astype(np.float32)


def _segmented_table(images: dict[str, list[np.ndarray]]) -> pd.DataFrame:
    segmenter = ClassicalSegmenter()
    tables = []
    for well, fields in images.items():
        for site, image in enumerate(fields, 1):
            labels, _ = drop_border_objects(segmenter(image[np.newaxis]))
            table = shape_features(labels[0], "objects", int(labels.max()))
            tables.append(table.assign(Metadata_Well=well, Metadata_Site=site))
    return pd.concat(tables, ignore_index=True)


def test_wells_of_puncta_segmented_by_the_classical_segmenter_are_flagged() -> None:
    rng = np.random.default_rng(4)
    punctate = {"B03", "B06"}
    wells = [f"B{i:02d}" for i in range(2, 8)]
    cells = _segmented_table({w: [_field(rng, w in punctate)] for w in wells})
    for flags in (
        check_segmentation(cells, plate="S", compartment="objects"),
        check_segmentation(cells, plate="S", compartment="objects", expected_diameter=20),
    ):
        assert set(_reasons(flags)) == punctate
        assert all("sub-cellular" in f.reason and f.objects > 40 for f in flags)
    # every roundness is a roundness, however small the objects
    assert (cells["Objects_AreaShape_FormFactor"] <= 1).all()


# ------------------------------------------------------------------------- pipeline


def test_the_pipeline_hook_adds_the_flags_to_the_runs_problems(tmp_path: Path) -> None:
    config = load_config(
        {
            "output": str(tmp_path / "run"),
            "plates": [{"name": "P1", "synthetic": {"wells": 4, "fields": 1, "size": 64}}],
            "segment": {"channel": "nuclei", "options": {"diameter": 30}},
        }
    )
    state = RunState(config, tmp_path / "run", Manifest(tmp_path / "m.json"), None, False)
    plate = synthetic_plate(wells=4, fields=1, n_z=1, shape=(32, 32), name="P1")
    cellscale.write_plate(plate, state.plate_dir("P1") / "projected.zarr", progress=False)
    wells = [str(w) for w in plate.coords["well"].values]
    cells = _table({wells[0]: (1400, 30.0), wells[1]: (40, 700.0), wells[2]: (45, 690.0)})
    state.problems.append("an earlier problem")
    flags = check_plate_segmentation(state, config.plates[0], cells)
    assert [(f.well, f.objects) for f in flags] == [(wells[0], 1400), (wells[3], 0)]
    assert state.segmentation_flags == flags
    assert state.problems == ["an earlier problem", *(f.message for f in flags)]
    assert state.problems[1].startswith(f"plate P1 well {wells[0]}: 1,400 objects")


# ------------------------------------------------------------------------ real data


@pytest.mark.realdata
@pytest.mark.slow
def test_sbs_transfluor_gfp_wells_of_vesicles_are_flagged(real_data: Path) -> None:
    plate = read_tiff_plate(real_data / "cellprofiler_sbs_transfluor/images", "cellprofiler")
    wells = [str(w) for w in plate.coords["well"].values]
    fields = plate.isel(t=0, field=0, z=0, c=0).values  # one field per well: 8 fields
    cells = _segmented_table(
        {w: [f.astype(np.float32)] for w, f in zip(wells, fields, strict=True)}
    )
    flags = check_segmentation(cells, plate="SBS", compartment="objects")
    flagged = {f.well: f for f in flags}
    # the agonist wells' GFP is in pits and vesicles: hundreds of objects of ~20 px
    assert set(flagged) == {"O05", "O06", "O07"}
    assert all(f.objects > 200 and f.median_area < 50 for f in flags)
    assert (cells["Objects_AreaShape_FormFactor"] <= 1).all()


@pytest.mark.realdata
@pytest.mark.slow
def test_bbbc039_nuclei_are_not_flagged_except_the_empty_field(real_data: Path) -> None:
    folder = real_data / "bbbc039_u2os_nuclei/images"
    paths = sorted(folder.glob("*.tif"))[::6]  # 6 fields of 6 wells, one without nuclei
    images = {p.name.split("_")[1]: [tifffile.imread(p).astype(np.float32)] for p in paths}
    cells = _segmented_table(images)
    flags = check_segmentation(cells, plate="BBBC039", compartment="objects", wells=list(images))
    assert [(f.well, f.objects) for f in flags] == [("L10", 0)]  # its field has no nuclei


@pytest.mark.realdata
@pytest.mark.slow
def test_a_run_on_the_sbs_plate_names_the_wells_where_segmentation_failed(
    real_data: Path, tmp_path: Path, client: Any
) -> None:
    config = {
        "output": str(tmp_path / "run"),
        "plates": [
            {
                "name": "SBS",
                "folder": str(real_data / "cellprofiler_sbs_transfluor/images"),
                "pattern": "cellprofiler",
                "channels": {"d2": "GFP"},
            }
        ],
        "qc": {"enabled": False},
        "segment": {"channel": "GFP"},
    }
    summary = cellscale.run(config, client=client, progress=False)
    flagged = sorted(p.split()[3].rstrip(":") for p in summary.problems if "well" in p)
    assert flagged == ["O05", "O06", "O07"], summary.problems
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert all(f"plate SBS well {w}" in page or f"SBS · {w}" in page for w in flagged)
