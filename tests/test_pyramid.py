"""Pyramid levels of plates and labels: values, NGFF metadata, readers, verification."""

from __future__ import annotations

import shutil
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

import cellscale
from cellscale.io._pyramid import downsample, level_count
from cellscale.plate import PlateError, build_plate
from cellscale.segmentation import segment
from cellscale.testing import write_synthetic_plate
from tests.test_segment import Threshold


def _plate(shape_yx: tuple[int, int] = (37, 50), dtype: str = "uint16") -> xr.DataArray:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 60_000, size=(1, 2, 2, 2, 2, *shape_yx)).astype(dtype)
    return build_plate(
        da.from_array(values, chunks=(1, 1, 1, 2, 1, *shape_yx)),
        name="P",
        wells=["B02", "B03"],
        fields=[1, 2],
        channels=["DNA", "actin"],
        z=[0.0, 4.5],
        pixel_size_um=[0.5, 0.25],
    )


def _oracle_level(values: np.ndarray, level: int) -> np.ndarray:
    """Level ``level`` by repeated float64 2 x 2 means, rounded half to even."""
    out = values
    for _ in range(level):
        y, x = out.shape[-2] // 2 * 2, out.shape[-1] // 2 * 2
        cropped = out[..., :y, :x].astype(np.float64)
        blocks = cropped.reshape(*out.shape[:-2], y // 2, 2, x // 2, 2)
        out = np.round(blocks.mean(axis=(-3, -1))).astype(values.dtype)
    return out


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_downsample_matches_the_float64_oracle(dtype: str) -> None:
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if dtype != "float32" else None
    low, high = (info.min, info.max) if info is not None else (-1e3, 1e3)
    image = rng.uniform(low, high, size=(3, 9, 11)).astype(dtype)
    got = downsample(image, "image")
    expected = _oracle_level(image, 1)
    assert got.dtype == image.dtype and got.shape == (3, 4, 5)
    if dtype == "float32":
        exact = image[:, :8, :10].astype(np.float64).reshape(3, 4, 2, 5, 2).mean((2, 4))
        np.testing.assert_allclose(got, exact, rtol=1e-6)
    else:
        np.testing.assert_array_equal(got, expected)


def test_downsampled_labels_keep_object_ids() -> None:
    labels = np.arange(1, 31, dtype=np.uint32).reshape(5, 6)
    assert downsample(labels, "labels").tolist() == [[1, 3, 5], [13, 15, 17]]


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((2048, 2048), 4), ((1080, 1280), 3), ((512, 600), 2), ((384, 384), 1), ((100, 4000), 1)],
)
def test_default_levels_stop_near_256_pixels(shape: tuple[int, int], expected: int) -> None:
    assert level_count(shape) == expected


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_a_bad_level_count_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="levels must be a positive integer"):
        level_count((64, 64), bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most 7 fit"):
        level_count((64, 64), 8)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_levels_are_written_read_and_valid_ngff(tmp_path: Path, version: str) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader
    from ome_zarr_models import open_ome_zarr

    plate = _plate()
    values = plate.values
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", levels=3, version=version)
    for level in range(3):
        opened = cellscale.open_plate(out, level=level)
        np.testing.assert_array_equal(opened.values, _oracle_level(values, level))
        assert opened.attrs["pixel_size_um"] == [0.5 * 2**level, 0.25 * 2**level]
        assert opened.sizes["y"] == 37 >> level and opened.sizes["x"] == 50 >> level
    with pytest.raises(PlateError, match=r"has 3 pyramid level\(s\) \(0 to 2\); level 3"):
        cellscale.open_plate(out, level=3)
    model = open_ome_zarr(zarr.open_group(str(out), mode="r"), version=version)  # type: ignore[arg-type]
    assert type(model).__name__ == "HCS"
    image = open_ome_zarr(zarr.open_group(str(out / "B" / "02" / "1"), mode="r"), version=version)  # type: ignore[arg-type]
    assert type(image).__name__ == "Image"
    nodes = list(Reader(parse_url(str(out / "B" / "02" / "1")))())
    multiscales = next(n for n in nodes if any(isinstance(s, Multiscales) for s in n.specs))
    assert [a.shape[-2:] for a in multiscales.data] == [(37, 50), (18, 25), (9, 12)]
    scales = [t[0]["scale"] for t in multiscales.metadata["coordinateTransformations"]]
    assert [s[-2:] for s in scales] == [[0.5, 0.25], [1.0, 0.5], [2.0, 1.0]]
    assert [s[2] for s in scales] == [4.5, 4.5, 4.5]


def test_levels_follow_the_store_and_a_change_is_refused(tmp_path: Path) -> None:
    plate = _plate()
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", levels=2)
    cellscale.write_plate(plate, out)  # unset: as the store has them
    with pytest.raises(cellscale.StaleOutputError, match="levels"):
        cellscale.write_plate(plate, out, levels=3)


def test_a_missing_chunk_of_an_upper_level_is_found_by_verify(tmp_path: Path) -> None:
    plate = _plate()
    out = cellscale.write_plate(plate, tmp_path / "p.zarr", levels=3)
    level2 = out / "B" / "03" / "2" / "2"
    chunk = next(p for p in level2.rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.unlink()
    report = cellscale.verify_plate(out)
    assert not report.ok
    assert "at pyramid level 2" in str(report) and "B03/f2/t0" in str(report)
    cellscale.write_plate(plate, out)
    assert cellscale.verify_plate(out).ok
    np.testing.assert_array_equal(
        cellscale.open_plate(out, level=2).values, _oracle_level(plate.values, 2)
    )


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_labels_follow_the_image_levels(tmp_path: Path, version: str) -> None:
    from ome_zarr_models import open_ome_zarr

    synthetic = write_synthetic_plate(tmp_path / "s.zarr", wells=2, fields=1, shape=(64, 48))
    out = tmp_path / "p.zarr"
    cellscale.write_plate(cellscale.project(synthetic, "max"), out, levels=3, version=version)
    labels = segment(cellscale.open_plate(out), Threshold(), channel="nuclei")
    cellscale.write_labels(labels, out, progress=False)
    well, field_number = labels.coords["well"].values[0], labels.coords["field"].values[0]
    field = out / well[0] / well[1:] / str(field_number)
    group = zarr.open_group(str(field / "labels" / "nuclei"), mode="r")
    shapes = [tuple(group[str(k)].shape[-2:]) for k in range(3)]  # type: ignore[union-attr]
    assert shapes == [(64, 48), (32, 24), (16, 12)]
    full = np.asarray(group["0"][0, 0, 0])  # type: ignore[index]
    assert full.max() > 1
    np.testing.assert_array_equal(np.asarray(group["2"][0, 0, 0]), full[::4, ::4])  # type: ignore[index]
    image_meta = zarr.open_group(str(field), mode="r").attrs.asdict()
    label_meta = group.attrs.asdict()
    image_ms = image_meta.get("ome", image_meta)["multiscales"][0]["datasets"]
    label_ms = label_meta.get("ome", label_meta)["multiscales"][0]["datasets"]
    assert label_ms == image_ms
    model = open_ome_zarr(zarr.open_group(str(field / "labels"), mode="r"), version=version)  # type: ignore[arg-type]
    assert type(model).__name__ == "Labels"


def test_the_top_level_is_read_without_touching_level_0(tmp_path: Path) -> None:
    out = cellscale.write_plate(_plate((256, 256)), tmp_path / "p.zarr", levels=4)
    shutil.rmtree(out / "B" / "02" / "1" / "0")  # level 0 is not needed to show the plate
    top = cellscale.open_plate(out, level=3)
    assert top.sel(well="B03").values.shape[-2:] == (32, 32)
