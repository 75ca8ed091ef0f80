"""ingest end to end: TIFF folder -> OME-Zarr plate -> open_plate, and resume after a failure."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import tifffile
from distributed import Client

from cellscale.io import ingest, open_plate
from cellscale.io._ingest import read_tiff_plate
from cellscale.plate import PlateError
from tests.test_ingest import write_ixm


def test_ingest_round_trips_pixels_channels_and_plate_map(tmp_path):
    source = tmp_path / "raw"
    write_ixm(source, timepoints=(1, 2))
    plate_map = pd.DataFrame({"well": ["B02", "B03"], "treatment": ["DMSO", "drug"]})
    out = ingest(
        source,
        tmp_path / "plate.zarr",
        "imagexpress",
        plate_map,
        channels={"w1": "DNA", "w2": "GFP"},
        progress=False,
    )
    written = open_plate(out)
    expected = read_tiff_plate(source, channels={"w1": "DNA", "w2": "GFP"})
    assert list(written.c.values) == ["DNA", "GFP"]
    assert list(written.treatment.values) == ["DMSO", "drug"]
    np.testing.assert_array_equal(written.values, expected.values)


def test_rerun_after_a_failure_writes_only_the_fields_not_yet_complete(tmp_path):
    source = tmp_path / "raw"
    files = write_ixm(source, wells=("B02", "B03"), sites=(1,), waves=(1,), zsteps=(1, 2))
    broken, done = files[(1, "B03", 1, "w1", 2)], files[(1, "B02", 1, "w1", 2)]
    good_bytes = broken.read_bytes()
    broken.write_bytes(good_bytes[:150])
    out = tmp_path / "plate.zarr"
    # a distributed client runs every unit to its end and reports each failed one
    client = Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0")
    failure = pytest.raises(PlateError, match=rf"B03.*cannot read TIFF .*{broken.name}")
    with client, failure:
        ingest(source, out, progress=False)
    broken.write_bytes(good_bytes)
    done_pixels = tifffile.imread(done)
    _scribble_keeping_size_and_time(done)  # a complete unit whose file looks unchanged
    ingest(source, out, progress=False)
    written = open_plate(out)
    np.testing.assert_array_equal(written.sel(well="B02", z=2).values.squeeze(), done_pixels)
    np.testing.assert_array_equal(
        written.sel(well="B03", z=2).values.squeeze(), tifffile.imread(broken)
    )


def _scribble_keeping_size_and_time(path):
    """Overwrite a file with garbage of the same size and give it back its mtime."""
    stat = path.stat()
    path.write_bytes(b"x" * stat.st_size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_source_file_changed_after_its_unit_was_written_is_written_again(tmp_path):
    source = tmp_path / "raw"
    files = write_ixm(source, wells=("B02", "B03"), sites=(1,), waves=(1,), zsteps=(1,))
    out = ingest(source, tmp_path / "plate.zarr", progress=False)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("c/*/*/*/*/*")}
    changed = files[(1, "B03", 1, "w1", 1)]
    new_pixels = np.full((12, 10), 7, np.uint16)
    tifffile.imwrite(changed, new_pixels)
    with pytest.warns(UserWarning, match=r"1 complete unit\(s\) .* changed since \(B03/f1/t0\)"):
        ingest(source, out, progress=False)
    np.testing.assert_array_equal(open_plate(out).sel(well="B03").values.squeeze(), new_pixels)
    rewritten = {str(p.relative_to(out)) for p, t in before.items() if p.stat().st_mtime_ns != t}
    assert rewritten == {"B/03/1/0/c/0/0/0/0/0"}


def test_a_source_file_changed_while_ingesting_is_an_error_naming_it(tmp_path):
    source = tmp_path / "raw"
    files = write_ixm(source, wells=("B02",), sites=(1,), waves=(1,), zsteps=(1,))
    plate = read_tiff_plate(source)
    tifffile.imwrite(
        files[(1, "B02", 1, "w1", 1)], np.zeros((12, 10), np.uint16), compression="zlib"
    )
    with pytest.raises(PlateError, match=r"Plate_B02_s1_w1.*changed since the plate was read"):
        plate.compute()


@pytest.mark.realdata
def test_ingest_of_the_exported_time_series_plate(real_data, tmp_path):
    source = real_data / "faim_imagexpress_hcs/ImageXpress_exported/9987_Plate_3435"
    out = ingest(source, tmp_path / "9987.zarr", progress=False)
    written = open_plate(out)
    expected = read_tiff_plate(source)
    assert list(written.c.values) == ["DAPI", "FITC"]
    assert written.field_present.values.tolist() == [[True, True], [False, True]]
    np.testing.assert_array_equal(written.values, expected.values)
