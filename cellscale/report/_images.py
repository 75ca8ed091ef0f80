"""Figures of pixels: segmentation overlays, crop galleries and thumbnails of flagged fields.

Each image is contrast-stretched on its own (percentiles :data:`CONTRAST` to black and
white), shrunk to a size a page can show, and saved as a PNG by :func:`imsave`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.image import imsave
from skimage.segmentation import find_boundaries

from cellscale.report._inputs import Gallery, Overlay, Thumbnail
from cellscale.report._page import Panel, Tile, png_name

__all__ = ["flagged_figures", "gallery_figures", "overlay_figures"]

#: Longest side, in pixels, of an overlay PNG; larger fields are subsampled.
MAX_OVERLAY_SIDE = 768
#: Longest side, in pixels, of a thumbnail of a flagged field.
MAX_THUMBNAIL_SIDE = 192
#: Most crops drawn in one gallery.
MAX_TILES = 64
#: Smaller crops are enlarged by a whole factor to at least this many pixels.
MIN_TILE_SIDE = 64
#: Percentiles mapped to black and white.
CONTRAST = (1.0, 99.5)

_OUTLINE_COLORS = colormaps["tab10"]([1, 2, 3, 4, 6, 8, 9, 0])[:, :3]


def overlay_figures(overlays: Sequence[Overlay], folder: Path) -> Panel:
    """Each field in grey with its objects' outlines in colour, saved in ``folder``."""
    tiles = []
    for i, overlay in enumerate(overlays, start=1):
        name = png_name("overlay", i, overlay.title)
        imsave(folder / name, _overlay_rgb(overlay.image, overlay.labels))
        tiles.append(Tile(name, f"segmentation outlines: {overlay.title}", overlay.title))
    skipped = () if overlays else ("No segmentation overlays were made.",)
    return Panel(tuple(tiles), skipped)


def gallery_figures(galleries: Sequence[Gallery], folder: Path) -> Panel:
    """Each gallery's first :data:`MAX_TILES` crops as one grid, saved in ``folder``."""
    skipped = [] if galleries else ["No crop galleries were made."]
    tiles = []
    for i, gallery in enumerate(galleries, start=1):
        n = len(gallery.crops)
        if n == 0:
            skipped.append(f"{gallery.title}: no crops.")
            continue
        name = png_name("crops", i, gallery.title)
        imsave(folder / name, _tile_grid(gallery.crops[:MAX_TILES]), cmap="gray", vmin=0, vmax=1)
        shown = f"{MAX_TILES} of {n:,} crops" if n > MAX_TILES else f"{n:,} crops"
        caption = f"{gallery.title} ({shown})"
        tiles.append(Tile(name, f"crop gallery: {caption}", caption))
    return Panel(tuple(tiles), tuple(skipped))


def flagged_figures(flagged: Sequence[Thumbnail], folder: Path) -> tuple[Tile, ...]:
    """A small grey image of each flagged field, saved in ``folder``."""
    tiles = []
    for i, thumb in enumerate(flagged, start=1):
        name = png_name("flagged", i, thumb.title)
        imsave(folder / name, _stretch(_shrunk(thumb.image)), cmap="gray", vmin=0, vmax=1)
        tiles.append(Tile(name, f"flagged field: {thumb.title}", thumb.title))
    return tuple(tiles)


def _shrunk(image: np.ndarray) -> np.ndarray:
    """``image`` subsampled so its longer side is at most :data:`MAX_THUMBNAIL_SIDE`."""
    step = max(1, math.ceil(max(image.shape) / MAX_THUMBNAIL_SIDE))
    return np.asarray(image)[::step, ::step]


def _overlay_rgb(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The contrast-stretched image in grey with each object's outline in a colour."""
    step = math.ceil(max(np.shape(image)) / MAX_OVERLAY_SIDE)
    grey = _stretch(np.asarray(image)[::step, ::step])
    small = np.asarray(labels)[::step, ::step]
    rgb = np.repeat(grey[..., np.newaxis], 3, axis=2)
    edges = find_boundaries(small, mode="inner")
    rgb[edges] = _OUTLINE_COLORS[small[edges].astype(np.int64) % len(_OUTLINE_COLORS)]
    return rgb


def _tile_grid(crops: np.ndarray, gap: int = 2) -> np.ndarray:
    """Crops side by side in a near-square grid on white, each stretched on its own."""
    n, height, width = crops.shape
    scale = max(1, math.ceil(MIN_TILE_SIDE / max(height, width, 1)))
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    tile_h, tile_w = height * scale + gap, width * scale + gap
    grid = np.ones((rows * tile_h + gap, columns * tile_w + gap))
    for i, crop in enumerate(crops):
        r, c = divmod(i, columns)
        tile = np.kron(_stretch(crop), np.ones((scale, scale)))
        grid[gap + r * tile_h : (r + 1) * tile_h, gap + c * tile_w : (c + 1) * tile_w] = tile
    return grid


def _stretch(values: np.ndarray) -> np.ndarray:
    """Map the :data:`CONTRAST` percentiles of the finite values to 0 and 1."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    low, high = np.percentile(finite, CONTRAST)
    if high <= low:
        return np.zeros_like(values)
    return np.nan_to_num(np.clip((values - low) / (high - low), 0, 1))
