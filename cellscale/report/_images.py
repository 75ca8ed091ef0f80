"""Figures of pixels: segmentation overlays, crop galleries and thumbnails of flagged fields.

Each image is contrast-stretched on its own (percentiles :data:`CONTRAST` to black and
white) and shrunk to a size a page can show. Galleries and thumbnails are saved as PNGs
by :func:`imsave`; an overlay is a figure (:func:`overlay_figure`) with a legend of the
compartments' outline colours, the channel's name and a scale bar.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.image import imsave
from matplotlib.patches import Patch, Rectangle
from skimage.segmentation import find_boundaries

from cellscale.report._inputs import Gallery, Overlay, Thumbnail
from cellscale.report._page import Panel, Tile, png_name

__all__ = ["flagged_figures", "gallery_figures", "overlay_figure", "overlay_figures"]

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

#: Outline colour of each compartment; others take :data:`_OTHER_COLORS` in turn.
OUTLINE_COLORS = {"cells": "#ffd400", "nuclei": "#00d0ff", "cytoplasm": "#ff4fd8"}
_OTHER_COLORS = [colormaps["tab10"](i) for i in (2, 3, 1, 4)]
#: Resolution of the overlay PNGs.
OVERLAY_DPI = 100


def overlay_figures(overlays: Iterable[Overlay], folder: Path, kind: str = "overlay") -> Panel:
    """Each overlay drawn by :func:`overlay_figure` and saved in ``folder``, one at a time.

    Nothing of an overlay is kept once its figure is saved, so overlays from an iterator
    that loads each field when asked hold one field in memory, however many there are.
    """
    tiles = []
    for i, overlay in enumerate(overlays, start=1):
        name = png_name(kind, i, overlay.title)
        figure = overlay_figure(overlay)
        figure.savefig(folder / name, dpi=OVERLAY_DPI)
        figure.clear()  # its image goes now, not at the next collection of cycles
        alt = f"segmentation outlines ({', '.join(overlay.outlines)}): {overlay.title}"
        tiles.append(Tile(name, alt, f"{overlay.title} · {overlay.channel}"))
    skipped = () if tiles else ("No segmentation overlays were made.",)
    return Panel(tuple(tiles), skipped)


def overlay_figure(overlay: Overlay) -> Figure:
    """The field in grey, each compartment's outlines in its colour, legend and scale bar.

    The image is subsampled to at most :data:`MAX_OVERLAY_SIDE` pixels a side but drawn
    in the field's own pixel coordinates, so the scale bar measures the field.
    """
    height, width = np.shape(overlay.image)
    step = math.ceil(max(height, width) / MAX_OVERLAY_SIDE)
    colors = _compartment_colors(list(overlay.outlines))
    rgb = _overlay_rgb(overlay.image[::step, ::step], overlay.outlines, colors, step)
    fig = Figure(figsize=(6.4, 6.4 * height / width + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(rgb, extent=(0, width, height, 0), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{overlay.title}\nchannel {overlay.channel}", fontsize="small")
    handles = [Patch(color=color, label=name) for name, color in colors.items()]
    ax.legend(handles=handles, loc="upper right", fontsize="small", framealpha=0.7)
    _scale_bar(ax, width, height, overlay.pixel_size_um)
    return fig


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


def _compartment_colors(compartments: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    others = iter(_OTHER_COLORS)
    return {c: to_rgb(OUTLINE_COLORS.get(c) or next(others)) for c in compartments}


def _overlay_rgb(
    image: np.ndarray,
    outlines: Mapping[str, np.ndarray],
    colors: Mapping[str, tuple[float, float, float]],
    step: int,
) -> np.ndarray:
    """The contrast-stretched image in grey with each compartment's outlines in its colour."""
    rgb = np.repeat(_stretch(np.asarray(image))[..., np.newaxis], 3, axis=2)
    for compartment, labels in outlines.items():
        edges = find_boundaries(np.asarray(labels)[::step, ::step], mode="inner")
        rgb[edges] = colors[compartment]
    return rgb


def _scale_bar(ax: Axes, width: int, height: int, pixel_size_um: float | None) -> None:
    """A white bar of a round length near a fifth of the width, in µm or in pixels."""
    unit, per_pixel = ("µm", pixel_size_um) if pixel_size_um else ("px", 1.0)
    length = _round_length(width * per_pixel / 5)
    bar = length / per_pixel
    x, y = width * 0.04, height * 0.95
    ax.add_patch(Rectangle((x, y - height * 0.015), bar, height * 0.015, color="white"))
    label = f"{length:g} {unit}"
    ax.text(x + bar / 2, y - height * 0.03, label, color="white", ha="center", va="bottom")


def _round_length(value: float) -> float:
    """The largest of 1, 2 or 5 times a power of ten that is at most ``value``.

    Examples
    --------
    >>> [_round_length(v) for v in (0.3, 7.0, 12.0, 260.0)]
    [0.2, 5.0, 10.0, 200.0]
    """
    power = 10.0 ** math.floor(math.log10(value))
    return max(m * power for m in (1, 2, 5) if m * power <= value)


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
