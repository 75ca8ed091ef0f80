"""OME-Zarr HCS plates: writing, reading, round trips, other writers' plates, resume."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

import cellscale
from cellscale.io._store_setup import LEDGER_NAME
from cellscale.plate import PlateError, build_plate
from tests.conftest import raise_if_dask_computes

WELLS = ["B3", "B4", "C10"]


def make_plate(dtype: str = "uint16", seed: int = 0) -> tuple[xr.DataArray, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 200, size=(2, 3, 2, 4, 2, 24, 20)).astype(dtype)
    values[:, 2, 1] = 0  # well C10 has no field 2
    present = np.ones((3, 2), dtype=bool)
    present[2, 1] = False
    plate_map = pd.DataFrame(
        {
            "treatment": ["DMSO", "drug", None],
            "concentration": [0.0, 1.5, np.nan],
            "replicate": [1, 1, 2],
            "control": [True, False, False],
        },
        index=WELLS,
    )
    plate = build_plate(
        da.from_array(values, chunks=(1, 2, 1, 3, 2, 24, 20)),
        name="P1",
        wells=WELLS,
        fields=[1, 2],
        channels=["DNA", "actin"],
        t=[0.0, 30.0],
        z=[0.0, 2.5, 5.0, 7.5],
        plate_map=plate_map,
        field_present=present,
        pixel_size_um=[0.65, 0.65],
        attrs={"instrument": "synthetic"},
    )
    return plate, values


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_round_trip_keeps_pixels_and_every_coordinate(tmp_path: Path, version: str) -> None:
    plate, values = make_plate()
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", version=version, progress=False)
    back = cellscale.open_plate(out)
    np.testing.assert_array_equal(back.values, values)
    assert back.name == "P1"
    assert back.dims == plate.dims
    assert back.attrs["ngff_version"] == version
    assert back.attrs["pixel_size_um"] == [0.65, 0.65]
    assert back.attrs["instrument"] == "synthetic"
    for coord in ["t", "well", "row", "col", "field", "z", "c", "field_present", "replicate"]:
        np.testing.assert_array_equal(back.coords[coord].values, plate.coords[coord].values)
    np.testing.assert_array_equal(back.coords["concentration"].values, [0.0, 1.5, np.nan])
    assert list(back.coords["control"].values) == [True, False, False]
    assert list(back.coords["treatment"].values[:2]) == ["DMSO", "drug"]
    assert back.data.chunksize == (1, 1, 1, 4, 1, 24, 20)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_written_plate_is_valid_ngff_and_opens_in_ome_zarr_py(tmp_path: Path, version: str) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Plate, Reader
    from ome_zarr_models import open_ome_zarr

    plate, _ = make_plate()
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", version=version, progress=False)
    model = open_ome_zarr(zarr.open_group(str(out), mode="r"), version=version)  # type: ignore[arg-type]
    assert type(model).__name__ == "HCS"
    assert model.n_wells == 3
    nodes = list(Reader(parse_url(str(out)))())
    assert any(isinstance(spec, Plate) for node in nodes for spec in node.specs)
    image = zarr.open_group(str(out / "B" / "03" / "1"), mode="r")
    ome = image.attrs.asdict().get("ome", image.attrs.asdict())
    assert [c["label"] for c in ome["omero"]["channels"]] == ["DNA", "actin"]
    assert [a["name"] for a in ome["multiscales"][0]["axes"]] == ["t", "c", "z", "y", "x"]


def _write_foreign_plate(path: Path, fmt: FormatV04 | FormatV05, axes: str, shape: tuple) -> dict:
    """A plate written with ome-zarr-py's own writer (not cellscale's)."""
    zarr_format = 3 if isinstance(fmt, FormatV05) else 2
    root = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    wells = ["A/1", "A/2"]
    write_plate_metadata(root, ["A"], ["1", "2"], wells, fmt=fmt, name="foreign")
    expected = {}
    rng = np.random.default_rng(3)
    for well_path in wells:
        well = root.require_group(well_path)
        write_well_metadata(well, [{"path": "0"}, {"path": "1"}], fmt=fmt)
        for field in ("0", "1"):
            pixels = rng.integers(0, 1000, size=shape).astype(np.uint16)
            write_image(pixels, well.require_group(field), axes=axes, fmt=fmt, scaler=None)
            expected[(well_path, int(field))] = pixels
    return expected


@pytest.mark.parametrize("fmt", [FormatV05(), FormatV04()], ids=["0.5", "0.4"])
@pytest.mark.parametrize(("axes", "shape"), [("tczyx", (2, 2, 3, 16, 16)), ("cyx", (3, 16, 16))])
def test_opens_plates_written_by_ome_zarr_py(
    tmp_path: Path, fmt: FormatV04 | FormatV05, axes: str, shape: tuple
) -> None:
    expected = _write_foreign_plate(tmp_path / "f.zarr", fmt, axes, shape)
    plate = cellscale.open_plate(tmp_path / "f.zarr")
    assert list(plate.coords["well"].values) == ["A01", "A02"]
    assert list(plate.coords["field"].values) == [0, 1]
    for (well_path, field), pixels in expected.items():
        well = "A0" + well_path[-1]
        got = plate.sel(well=well, field=field).transpose("t", "c", "z", "y", "x").values
        np.testing.assert_array_equal(got.reshape(pixels.shape), pixels)


def test_open_plate_is_lazy(tmp_path: Path) -> None:
    plate, _ = make_plate()
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", progress=False)
    with raise_if_dask_computes():
        opened = cellscale.open_plate(out)
        projected = cellscale.project(opened, "max")
    assert isinstance(projected.data, da.Array)


def test_not_a_plate_is_a_clear_error(tmp_path: Path) -> None:
    zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    with pytest.raises(PlateError, match="without OME-Zarr 'plate' metadata"):
        cellscale.open_plate(tmp_path / "g.zarr")
    with pytest.raises(PlateError, match="does not exist"):
        cellscale.open_plate(tmp_path / "missing.zarr")


def test_fields_that_disagree_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.zarr"
    fmt = FormatV05()
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    write_plate_metadata(root, ["A"], ["1"], ["A/1"], fmt=fmt)
    well = root.require_group("A/1")
    write_well_metadata(well, [{"path": "0"}, {"path": "1"}], fmt=fmt)
    write_image(np.zeros((16, 16), np.uint16), well.require_group("0"), axes="yx", fmt=fmt)
    write_image(np.zeros((16, 12), np.uint16), well.require_group("1"), axes="yx", fmt=fmt)
    with pytest.raises(PlateError, match=r"well A01 field 1 \(A/1/1\) has shape"):
        cellscale.open_plate(path)


def _poisoned(
    plate: xr.DataArray, well: int, field: int, switch: Path | None = None
) -> xr.DataArray:
    """The plate with one unit whose computation raises (while ``switch`` exists, if given).

    The switch stands for a broken source file: the graph is the same whether or not it
    is broken, as it is when a user fixes a file and runs the same write again.
    """

    def poison(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        loc = block_info[0]["chunk-location"] if block_info else (0, 0, 0)
        broken = switch is None or switch.exists()
        if loc[1] == well and loc[2] == field and broken:
            raise OSError("cannot read /data/B04_s1.tif: truncated file")
        return block

    return plate.copy(data=plate.data.map_blocks(poison, dtype=plate.dtype))


def test_failed_unit_is_never_complete_and_rerun_writes_only_the_rest(tmp_path: Path) -> None:
    plate, values = make_plate()
    out = tmp_path / "p.zarr"
    switch = tmp_path / "broken"
    switch.touch()
    poisoned = _poisoned(plate, well=1, field=0, switch=switch)
    with pytest.raises(OSError, match="truncated file") as info:
        cellscale.write_plate(poisoned, out, progress=False)
    assert isinstance(info.value, cellscale.UnitFailure)
    assert set(info.value.failures) == {"B04/f1/t0", "B04/f1/t1"}
    with pytest.raises(PlateError, match="B04/f1/t0"):
        cellscale.open_plate(out)
    done = np.asarray(zarr.open_array(str(out / LEDGER_NAME), mode="r")[...]) != 0
    assert done[:, 1, 0].sum() == 0
    assert done.sum() == 2 * 5 - 2  # every other present unit was written, on any scheduler
    written_before = {p: p.stat().st_mtime_ns for p in out.rglob("c/*/*/*/*/*") if p.is_file()}
    switch.unlink()  # the "file" is fixed; the same write resumes
    cellscale.write_plate(poisoned, out, progress=False)
    np.testing.assert_array_equal(cellscale.open_plate(out).values, values)
    rewritten = [
        str(p.relative_to(out))
        for p, mtime in written_before.items()
        if p.stat().st_mtime_ns != mtime
    ]
    assert rewritten == []  # complete units were left alone
    assert any("B/04/1" in str(p) for p in out.rglob("*") if p not in written_before)


def test_one_field_can_be_rewritten_alone(tmp_path: Path) -> None:
    plate, values = make_plate()
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", progress=False)
    one_field = (plate.sel(well=["B04"], field=[2]) + 1).astype(plate.dtype)
    cellscale.write_plate(one_field, out, rewrite=True, progress=False)
    back = cellscale.open_plate(out).values
    expected = values.copy()
    expected[:, 1, 1] += 1
    np.testing.assert_array_equal(back, expected)


def test_existing_stores_are_protected(tmp_path: Path) -> None:
    plate, _ = make_plate()
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", progress=False)
    other = plate.isel(c=[0])
    with pytest.raises(
        cellscale.StaleOutputError, match=r"channels \['DNA', 'actin'\].*overwrite=True"
    ):
        cellscale.write_plate(other, out, progress=False)
    cellscale.write_plate(other, out, overwrite=True, progress=False)
    assert cellscale.open_plate(out).sizes["c"] == 1
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(str(foreign), mode="w")
    with pytest.raises(cellscale.StaleOutputError, match="not written by cellscale"):
        cellscale.write_plate(plate, foreign, progress=False)


def test_interrupted_setup_is_redone(tmp_path: Path) -> None:
    plate, values = make_plate()
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", progress=False)
    attrs_file = out / "zarr.json"
    meta = json.loads(attrs_file.read_text())
    del meta["attributes"]["cellscale"]  # as if setup stopped before its last step
    attrs_file.write_text(json.dumps(meta))
    cellscale.write_plate(plate, out, progress=False)
    np.testing.assert_array_equal(cellscale.open_plate(out).values, values)


def test_projected_plate_is_written_with_one_plane(tmp_path: Path) -> None:
    plate, values = make_plate()
    projected = cellscale.project(plate, "max")
    out = cellscale.write_plate(projected, tmp_path / "mip.zarr", progress=False)
    back = cellscale.open_plate(out)
    assert back.sizes["z"] == 1
    np.testing.assert_array_equal(back.values[:, :, :, 0], values.max(axis=3))


def test_write_on_a_distributed_client_reports_every_failed_unit(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    plate, _ = make_plate()
    bad = _poisoned(_poisoned(plate, well=0, field=1), well=1, field=0)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
        pytest.raises(OSError) as info,
    ):
        cellscale.write_plate(bad, tmp_path / "p.zarr", client=client, progress=False)
    message = str(info.value)
    assert "4 unit(s)" in message
    assert "B03/f2/t0" in message and "B04/f1/t1" in message
    reopened = cellscale.open_plate(tmp_path / "p.zarr", allow_incomplete=True)
    assert int(reopened.sel(well="C10", field=1).max()) > 0  # the good units were written


def test_focus_plane_survives_a_write_and_reopen(tmp_path: Path) -> None:
    from cellscale.io._unit_coords import UNIT_COORDS
    from cellscale.testing import write_synthetic_plate

    stack = write_synthetic_plate(tmp_path / "s.zarr", wells=2, fields=2, n_z=4, shape=(48, 48))
    projected = cellscale.project(stack, "best_focus", focus_channel="nuclei")
    expected = projected.coords["focus_plane"].values
    out = cellscale.write_plate(projected, tmp_path / "bf.zarr", progress=False)
    reopened = cellscale.open_plate(out)
    assert isinstance(reopened.coords["focus_plane"].data, da.Array)
    np.testing.assert_array_equal(reopened.coords["focus_plane"].values, expected)
    again = cellscale.write_plate(reopened, tmp_path / "copy.zarr", progress=False)
    np.testing.assert_array_equal(
        cellscale.open_plate(again).coords["focus_plane"].values, expected
    )
    (out / UNIT_COORDS / "focus_plane" / "c" / "0" / "1" / "0").unlink()
    with pytest.raises(PlateError, match=r"focus_plane of unit .* is missing"):
        cellscale.open_plate(out).coords["focus_plane"].compute()


def test_the_plate_map_is_a_table_in_the_store(tmp_path: Path) -> None:
    plate, _ = make_plate()
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", progress=False)
    table = pd.read_csv(out / "plate_map.csv")
    assert table.columns.tolist() == [
        "well",
        "row",
        "col",
        "treatment",
        "concentration",
        "replicate",
        "control",
    ]
    assert table["well"].tolist() == ["B03", "B04", "C10"]
    assert table["treatment"].tolist()[:2] == ["DMSO", "drug"]
    cellscale.update_plate_map(
        out, plate_map=table.assign(treatment=["DMSO", "taxol", "x"]).drop(columns=["row", "col"])
    )
    assert pd.read_csv(out / "plate_map.csv")["treatment"].tolist() == ["DMSO", "taxol", "x"]
