"""NGFF labels: written under each field, read by ome-zarr-py, validated, resumable, strict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

import cellscale
from cellscale._stages import Ledger, StaleOutputError
from cellscale.io._chunks import DamagedChunkError
from cellscale.plate import PlateError
from cellscale.segmentation import segment
from cellscale.testing import write_synthetic_plate
from tests.test_segment import Threshold


@pytest.fixture(params=["0.5", "0.4"])
def mip_store(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    plate = write_synthetic_plate(
        tmp_path / "plate.zarr",
        wells=2,
        fields=2,
        n_z=3,
        shape=(80, 72),
        seed=5,
        version=request.param,
    )
    out = tmp_path / "mip.zarr"
    cellscale.write_plate(cellscale.project(plate, "max"), out, progress=False)
    return out


def _labels(store: Path):
    return segment(cellscale.open_plate(store), Threshold(), channel="nuclei")


def test_labels_round_trip_with_counts(mip_store: Path) -> None:
    labels = _labels(mip_store)
    cellscale.write_labels(labels, mip_store, progress=False)
    back = cellscale.open_labels(mip_store)
    expected = labels.compute()
    np.testing.assert_array_equal(back["nuclei"].values, expected["nuclei"].values)
    np.testing.assert_array_equal(
        back.coords["n_objects"].values, expected["nuclei"].max(dim=("y", "x")).values
    )
    np.testing.assert_array_equal(back["border_dropped"].values, expected["border_dropped"].values)
    assert list(back.coords["treatment"].values) == list(labels.coords["treatment"].values)


def test_labels_open_in_ome_zarr_py_and_validate(mip_store: Path) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Labels, Reader
    from ome_zarr_models import open_ome_zarr

    cellscale.write_labels(_labels(mip_store), mip_store, progress=False)
    version = cellscale.open_plate(mip_store).attrs["ngff_version"]
    field = mip_store / "A" / "01" / "1"
    nodes = list(Reader(parse_url(str(field)))())
    specs = {type(spec) for node in nodes for spec in node.specs}
    assert Labels in specs and Label in specs
    label = zarr.open_group(str(field / "labels" / "nuclei"), mode="r")
    assert type(open_ome_zarr(label, version=version)).__name__ == "ImageLabel"  # type: ignore[arg-type]
    meta = label.attrs.asdict().get("ome", label.attrs.asdict())
    assert meta["image-label"]["source"] == {"image": "../../"}
    pixels = np.asarray(label["0"][...])
    assert pixels.dtype == np.uint32 and pixels.shape == (1, 1, 1, 80, 72)


def test_rewriting_labels_resumes_and_other_settings_are_refused(mip_store: Path) -> None:
    labels = _labels(mip_store)
    cellscale.write_labels(labels, mip_store, progress=False)
    chunk = mip_store / "A/02/2/labels/nuclei/0"
    written = {p: p.stat().st_mtime_ns for p in chunk.rglob("*") if p.is_file()}
    cellscale.write_labels(_labels(mip_store), mip_store, progress=False)  # nothing to do
    assert {p: p.stat().st_mtime_ns for p in written} == written
    other = segment(
        cellscale.open_plate(mip_store), Threshold(), channel="nuclei", exclude_border=False
    )
    with pytest.raises(StaleOutputError, match="exclude_border"):
        cellscale.write_labels(other, mip_store, progress=False)
    cellscale.write_labels(other, mip_store, overwrite=True, progress=False)
    np.testing.assert_array_equal(
        cellscale.open_labels(mip_store)["nuclei"].values, other["nuclei"].values
    )


def test_labels_go_under_the_images_they_label(mip_store: Path, tmp_path: Path) -> None:
    plate = cellscale.open_plate(mip_store)
    lazy = segment(plate.isel(field=[0, 1]) + 0, Threshold(), channel="nuclei")
    with pytest.raises(StaleOutputError, match="not from the plate stored in"):
        cellscale.write_labels(lazy, mip_store, progress=False)


def test_labels_of_the_illumination_corrected_images_go_under_them(mip_store: Path) -> None:
    from cellscale.illumination import IlluminationModel

    plate = cellscale.open_plate(mip_store)
    flat = np.linspace(0.5, 1.5, 2 * 80 * 72).reshape(2, 80, 72)  # a gradient across the field
    model = IlluminationModel(channels=("nuclei", "cytoplasm"), flatfield=flat)
    corrected = cellscale.correct_illumination(plate, model)
    labels = segment(corrected, Threshold(), channel="nuclei")
    cellscale.write_labels(labels, mip_store, progress=False)
    np.testing.assert_array_equal(
        cellscale.open_labels(mip_store)["nuclei"].values, labels["nuclei"].values
    )
    with pytest.raises(StaleOutputError, match=r"correct_illumination"):
        cellscale.write_labels(_labels(mip_store), mip_store, progress=False)  # other images
    projected_again = cellscale.project(cellscale.open_plate(mip_store), "max")
    with pytest.raises(StaleOutputError, match="not from the plate stored in"):
        cellscale.write_labels(
            segment(projected_again, Threshold(), channel="nuclei"), mip_store, progress=False
        )


def test_a_damaged_label_chunk_is_an_error(mip_store: Path) -> None:
    cellscale.write_labels(_labels(mip_store), mip_store, progress=False)
    array = zarr.open_array(str(mip_store / "A/01/2/labels/nuclei/0"), mode="r")
    (
        mip_store / "A/01/2/labels/nuclei/0" / array.metadata.encode_chunk_key((0, 0, 0, 0, 0))
    ).unlink()
    with pytest.raises(
        DamagedChunkError, match=r"labels 'nuclei' of well A01 field 2 t=0: chunk .* is missing"
    ):
        cellscale.open_labels(mip_store)["nuclei"].compute()


def test_open_labels_refuses_incomplete_and_names_missing(mip_store: Path) -> None:
    with pytest.raises(PlateError, match="has no labels"):
        cellscale.open_labels(mip_store)
    labels = _labels(mip_store)
    cellscale.write_labels(labels, mip_store, progress=False)
    ledger = zarr.open_array(str(mip_store / "cellscale_labels/nuclei/ledger"), mode="r+")
    Ledger(ledger).clear((0, 1, 0))
    with pytest.raises(
        PlateError, match=r"labels 'nuclei' are incomplete \(1 field\(s\): A02/f1/t0\)"
    ):
        cellscale.open_labels(mip_store)
    cellscale.write_labels(labels, mip_store, progress=False)  # the missing field is written
    assert cellscale.open_labels(mip_store).coords["n_objects"].values.all()
