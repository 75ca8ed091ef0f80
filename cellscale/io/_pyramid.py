"""Multiscale (pyramid) levels of plate images and labels: sizes, downsampling, NGFF scales.

Level ``k`` halves level ``k - 1`` in y and x (an odd last row or column is dropped, so
level ``k`` is ``(y >> k, x >> k)`` and pixel ``i`` of it covers pixels ``2i, 2i + 1`` of
the level below). Images are averaged over each 2 × 2 block, keeping their dtype
(integers rounded half to even); labels take the top-left pixel of each block, so they
never invent an object id. By default levels are added while the smaller side stays at
least ``cellscale.zarr.pyramid-min-size`` pixels (256), so a viewer showing a whole
plate reads a few kilobytes per field instead of the full images.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from cellscale.config import config_value

__all__ = ["downsample", "level_count", "level_shapes", "pyramid", "scale_for_level"]

Kind = Literal["image", "labels"]


def level_count(shape_yx: tuple[int, int], levels: int | None = None) -> int:
    """How many levels (level 0 included) a pyramid of images of ``shape_yx`` has.

    Parameters
    ----------
    shape_yx
        The full-resolution image size.
    levels
        The number asked for; ``None`` adds levels while the smaller side stays at
        least config ``cellscale.zarr.pyramid-min-size`` pixels.

    Raises
    ------
    ValueError
        If ``levels`` is below 1 or would shrink an image below one pixel.
    """
    smaller = min(shape_yx)
    if levels is None:
        min_size = int(config_value("zarr.pyramid-min-size", None))
        levels = 1
        while smaller >> levels >= max(min_size, 1):
            levels += 1
        return levels
    if isinstance(levels, bool) or not isinstance(levels, int | np.integer) or levels < 1:
        raise ValueError(f"levels must be a positive integer or None, got {levels!r}")
    if smaller >> (int(levels) - 1) < 1:
        raise ValueError(
            f"{levels} levels would shrink images of {shape_yx[0]}x{shape_yx[1]} pixels "
            f"below one pixel; at most {smaller.bit_length()} fit"
        )
    return int(levels)


def level_shapes(shape_yx: tuple[int, int], levels: int) -> list[tuple[int, int]]:
    """The ``(y, x)`` size of each level."""
    return [(shape_yx[0] >> k, shape_yx[1] >> k) for k in range(levels)]


def scale_for_level(scale: list[float], level: int) -> list[float]:
    """An NGFF ``(t, c, z, y, x)`` scale at ``level``: y and x grow by ``2**level``."""
    factor = float(2**level)
    return [*scale[:-2], scale[-2] * factor, scale[-1] * factor]


def downsample(image: np.ndarray, kind: Kind) -> np.ndarray:
    """Halve the last two axes of ``image``: 2 × 2 block means (images) or corners (labels)."""
    y, x = (image.shape[-2] // 2) * 2, (image.shape[-1] // 2) * 2
    if kind == "labels":
        return np.ascontiguousarray(image[..., :y:2, :x:2])
    dtype = np.dtype(image.dtype)
    if dtype.kind in "ui" and dtype.itemsize <= 2:
        return _mean_of_small_integers(image[..., :y, :x], dtype)
    blocks = image[..., :y, :x].reshape(*image.shape[:-2], y // 2, 2, x // 2, 2)
    mean = blocks.mean(axis=(-3, -1), dtype=np.float64)
    return np.rint(mean).astype(dtype) if dtype.kind in "ui" else mean.astype(dtype)


def _mean_of_small_integers(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """2 × 2 means of 8- or 16-bit integers, rounded half to even, exactly and fast.

    Rows are paired first (an add straight into 32 bits), then columns; with
    ``q = total // 4``, ``(total + 1 + (q & 1)) // 4`` is ``total / 4`` rounded half to even.
    """
    wide = np.int32 if dtype.kind == "i" else np.uint32
    rows = np.add(image[..., 0::2, :], image[..., 1::2, :], dtype=wide)
    total = np.add(rows[..., 0::2], rows[..., 1::2])
    odd = (total >> 2) & 1
    total += 1
    total += odd
    total >>= 2
    return total.astype(dtype)


def pyramid(image: np.ndarray, levels: int, kind: Kind) -> list[np.ndarray]:
    """``image`` and its ``levels - 1`` downsampled levels, each from the one before."""
    out = [image]
    for _ in range(levels - 1):
        out.append(downsample(out[-1], kind))
    return out
