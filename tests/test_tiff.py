"""Reading TIFF planes for ingest: palette, RGB, 12-bit, hyperstacks, corrupt files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellscale.io._tiff import ChunkSpec, PlaneRef, probe_tiff, read_chunk
from cellscale.plate import PlateError

RNG = np.random.default_rng(7)


def _spec(*paths: Path | None, shape=(12, 10), dtype="uint16", rgb=None, keys=None) -> ChunkSpec:
    keys = keys or [0] * len(paths)
    pairs = zip(paths, keys, strict=True)
    planes = tuple(None if p is None else PlaneRef(str(p), k) for p, k in pairs)
    return ChunkSpec(planes, shape, np.dtype(dtype).str, rgb, "reference.tif")


def test_read_chunk_stacks_planes_in_order_and_fills_none_with_zeros(tmp_path):
    a, b = (RNG.integers(0, 4096, (12, 10), dtype=np.uint16) for _ in range(2))
    tifffile.imwrite(tmp_path / "a.tif", a)
    tifffile.imwrite(tmp_path / "b.tif", b)
    out = read_chunk(_spec(tmp_path / "a.tif", None, tmp_path / "b.tif"))
    assert out.shape == (1, 1, 1, 3, 1, 12, 10)
    np.testing.assert_array_equal(out[0, 0, 0, :, 0], np.stack([a, np.zeros_like(a), b]))


def test_read_chunk_max_project_reads_one_plane_the_maximum_of_the_present_planes(tmp_path):
    # negative values: a missing plane left out, not counted as zeros
    a, b = (RNG.integers(-3000, -1, (12, 10), dtype=np.int16) for _ in range(2))
    tifffile.imwrite(tmp_path / "a.tif", a)
    tifffile.imwrite(tmp_path / "b.tif", b)
    spec = _spec(tmp_path / "a.tif", None, tmp_path / "b.tif", dtype="int16")
    out = read_chunk(replace(spec, max_project=True))
    assert out.shape == (1, 1, 1, 1, 1, 12, 10) and out.dtype == np.int16
    np.testing.assert_array_equal(out[0, 0, 0, 0, 0], np.maximum(a, b))
    none = read_chunk(replace(_spec(None, None, dtype="int16"), max_project=True))
    assert none.shape == (1, 1, 1, 1, 1, 12, 10) and not none.any()


def test_read_chunk_max_project_of_a_hyperstack_takes_its_z_pages(tmp_path):
    stack = RNG.integers(0, 4096, (4, 2, 12, 10), dtype=np.uint16)  # Z, C, Y, X
    tifffile.imwrite(tmp_path / "hyper.tif", stack, imagej=True, metadata={"axes": "ZCYX"})
    layout = probe_tiff(tmp_path / "hyper.tif")
    keys = [layout.plane_key({"Z": z, "C": 1}) for z in range(4)]
    spec = _spec(*[tmp_path / "hyper.tif"] * 4, keys=keys)
    out = read_chunk(replace(spec, max_project=True))
    np.testing.assert_array_equal(out[0, 0, 0, 0, 0], stack[:, 1].max(axis=0))


def test_twelve_bit_data_in_uint16_is_kept_unscaled(tmp_path):
    data = RNG.integers(0, 4096, (12, 10), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "d.tif", data)
    assert probe_tiff(tmp_path / "d.tif").dtype == np.uint16
    out = read_chunk(_spec(tmp_path / "d.tif"))
    np.testing.assert_array_equal(out[0, 0, 0, 0, 0], data)
    assert out.max() < 4096


def test_palette_tiff_yields_the_index_plane_not_the_colour_map(tmp_path):
    index = RNG.integers(0, 256, (12, 10), dtype=np.uint8)
    colormap = np.stack([np.arange(256)[::-1], np.arange(256), np.full(256, 7)]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "p.tif", index, photometric="palette", colormap=colormap * 257)
    layout = probe_tiff(tmp_path / "p.tif")
    assert (layout.shape, layout.dtype) == ((12, 10), np.uint8)
    out = read_chunk(_spec(tmp_path / "p.tif", dtype="uint8"))
    np.testing.assert_array_equal(out[0, 0, 0, 0, 0], index)


def test_rgb_tiff_holding_one_grey_channel_yields_that_channel(tmp_path):
    grey = RNG.integers(0, 256, (12, 10), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", np.stack([grey] * 3, axis=-1), photometric="rgb")
    layout = probe_tiff(tmp_path / "rgb.tif")
    assert (layout.shape, layout.axes) == ((12, 10), "")
    out = read_chunk(_spec(tmp_path / "rgb.tif", dtype="uint8"))
    np.testing.assert_array_equal(out[0, 0, 0, 0, 0], grey)


def test_rgb_tiff_with_differing_channels_is_an_error_unless_a_sample_is_chosen(tmp_path):
    rgb = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "colour.tif", rgb, photometric="rgb")
    with pytest.raises(PlateError, match=r"colour\.tif: RGB image whose colour channels differ"):
        read_chunk(_spec(tmp_path / "colour.tif", dtype="uint8"))
    out = read_chunk(_spec(tmp_path / "colour.tif", dtype="uint8", rgb=1))
    np.testing.assert_array_equal(out[0, 0, 0, 0, 0], rgb[..., 1])


@pytest.mark.parametrize("damage", ["truncated", "header_only", "not_a_tiff"])
def test_corrupt_tiff_raises_an_error_naming_the_file(tmp_path, damage):
    tifffile.imwrite(tmp_path / "ok.tif", RNG.integers(0, 4096, (64, 64), dtype=np.uint16))
    raw = (tmp_path / "ok.tif").read_bytes()
    cut = {"truncated": raw[: len(raw) // 2], "header_only": raw[:100], "not_a_tiff": b"x" * 99}
    bad = tmp_path / f"bad_{damage}.tif"
    bad.write_bytes(cut[damage])
    with pytest.raises(PlateError, match=rf"cannot read TIFF .*bad_{damage}\.tif"):
        read_chunk(_spec(bad, shape=(64, 64)))


def test_probe_of_a_corrupt_tiff_names_the_file(tmp_path):
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(PlateError, match=r"cannot read TIFF .*junk\.tif"):
        probe_tiff(tmp_path / "junk.tif")


def test_plane_of_another_shape_or_dtype_names_file_expected_and_got(tmp_path):
    tifffile.imwrite(tmp_path / "small.tif", np.zeros((6, 10), np.uint16))
    tifffile.imwrite(tmp_path / "bytes.tif", np.zeros((12, 10), np.uint8))
    with pytest.raises(
        PlateError, match=r"small\.tif: image is \(6, 10\) uint16, expected \(12, 10\)"
    ):
        read_chunk(_spec(tmp_path / "small.tif"))
    with pytest.raises(
        PlateError, match=r"bytes\.tif: image is \(12, 10\) uint8, expected .* uint16"
    ):
        read_chunk(_spec(tmp_path / "bytes.tif"))


def test_imagej_hyperstack_planes_are_addressed_by_page(tmp_path):
    stack = RNG.integers(0, 4096, (3, 2, 12, 10), dtype=np.uint16)  # Z, C, Y, X
    tifffile.imwrite(tmp_path / "hyper.tif", stack, imagej=True, metadata={"axes": "ZCYX"})
    layout = probe_tiff(tmp_path / "hyper.tif")
    assert (layout.axes, layout.sizes, layout.shape) == ("ZC", (3, 2), (12, 10))
    keys = [layout.plane_key({"Z": z, "C": 1}) for z in range(3)]
    out = read_chunk(_spec(*[tmp_path / "hyper.tif"] * 3, keys=keys))
    np.testing.assert_array_equal(out[0, 0, 0, :, 0], stack[:, 1])


def test_files_with_a_time_axis_are_refused_with_the_axes(tmp_path):
    stack = np.zeros((4, 12, 10), np.uint16)
    tifffile.imwrite(tmp_path / "movie.tif", stack, imagej=True, metadata={"axes": "TYX"})
    with pytest.raises(PlateError, match=r"movie\.tif holds 4 planes \(axes 'TYX'"):
        probe_tiff(tmp_path / "movie.tif")


def test_metaxpress_pixel_size_is_read_from_the_image_description(tmp_path):
    xml = (
        '<MetaData><PlaneInfo><prop id="spatial-calibration-x" type="float" value="0.65"/>'
        '<prop id="spatial-calibration-y" type="float" value="0.66"/></PlaneInfo></MetaData>'
    )
    tifffile.imwrite(tmp_path / "mx.tif", np.zeros((12, 10), np.uint16), description=xml)
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((12, 10), np.uint16))
    assert probe_tiff(tmp_path / "mx.tif").pixel_size_um == (0.66, 0.65)
    assert probe_tiff(tmp_path / "plain.tif").pixel_size_um is None
