"""Where the cells of a synthetic field are and which pixels belong to each.

Cells are ellipses placed by rejection sampling so that neighbours at most touch
lightly; each holds an elliptical nucleus. Rasterising assigns every pixel to the
cell whose ellipse contains it most centrally, giving instance labels plus, per pixel,
the squared normalised radius in its cell and in its nucleus (0 at the centre, 1 on
the outline), from which every channel is painted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellscale.synthetic._phenotype import Phenotype

__all__ = ["OUTSIDE", "CellLayout", "Raster", "draw_layout", "rasterize"]

OUTSIDE = np.float32(4.0)
"""Squared normalised radius stored for pixels outside every cell (or nucleus)."""

_SPACING = 0.85  # centres at least this fraction of the sum of the long semi-axes apart
_CANDIDATES_PER_CELL = 4


@dataclass(frozen=True)
class CellLayout:
    """Geometry and stain levels of the cells of one field (arrays, one entry per cell).

    Positions and lengths are in pixels; ``theta`` is the angle of the long axis from
    the x axis, in radians. Cell ``i`` carries label ``i + 1``.
    """

    y: np.ndarray
    x: np.ndarray
    major: np.ndarray
    minor: np.ndarray
    theta: np.ndarray
    nucleus_y: np.ndarray
    nucleus_x: np.ndarray
    nucleus_major: np.ndarray
    nucleus_minor: np.ndarray
    nucleus_brightness: np.ndarray
    cytoplasm_brightness: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Raster:
    """Per-pixel cell membership of one field.

    Attributes
    ----------
    labels
        ``uint32`` instance labels, 0 for background.
    rho_cell, rho_nucleus
        ``float32`` squared normalised radius in the pixel's cell and nucleus,
        :data:`OUTSIDE` where there is none.
    """

    labels: np.ndarray
    rho_cell: np.ndarray
    rho_nucleus: np.ndarray


def draw_layout(
    rng: np.random.Generator,
    shape: tuple[int, int],
    mean_cells: float,
    cell_radius_px: float,
    nucleus_radius_px: float,
    pheno: Phenotype,
) -> CellLayout:
    """Draw the cells of one field.

    The count is Poisson with mean ``mean_cells * pheno.density``; when the field is
    too crowded to place them all without overlap, fewer cells are placed.
    """
    n_target = int(rng.poisson(max(mean_cells * pheno.density, 0.0)))
    m = _CANDIDATES_PER_CELL * n_target
    cy = rng.uniform(0, shape[0], m)
    cx = rng.uniform(0, shape[1], m)
    radius = cell_radius_px * pheno.size * rng.lognormal(0.0, 0.12, m)
    stretch = 1.0 + (pheno.elongation - 1.0) * rng.lognormal(0.0, 0.3, m)
    major = radius * np.sqrt(stretch)
    minor = np.maximum(radius / np.sqrt(stretch), 1.5)
    theta = rng.uniform(0.0, np.pi, m)
    keep = _pack(cy, cx, major, n_target)
    n = len(keep)
    cy, cx, major, minor, theta = cy[keep], cx[keep], major[keep], minor[keep], theta[keep]
    nuc_radius = nucleus_radius_px * pheno.nucleus_size * rng.lognormal(0.0, 0.1, n)
    nuc_stretch = np.sqrt(major / minor)
    nuc_major = np.minimum(nuc_radius * np.sqrt(nuc_stretch), 0.75 * major)
    nuc_minor = np.minimum(nuc_radius / np.sqrt(nuc_stretch), 0.75 * minor)
    shift = rng.uniform(-0.3, 0.3, n) * (major - nuc_major)
    return CellLayout(
        y=cy,
        x=cx,
        major=major,
        minor=minor,
        theta=theta,
        nucleus_y=cy + shift * np.sin(theta),
        nucleus_x=cx + shift * np.cos(theta),
        nucleus_major=np.maximum(nuc_major, 1.0),
        nucleus_minor=np.maximum(nuc_minor, 1.0),
        nucleus_brightness=pheno.nucleus_brightness * rng.lognormal(0.0, 0.2, n),
        cytoplasm_brightness=pheno.cytoplasm_brightness * rng.lognormal(0.0, 0.2, n),
    )


def _pack(cy: np.ndarray, cx: np.ndarray, reach: np.ndarray, n_target: int) -> np.ndarray:
    """Indices of the first candidates, up to ``n_target``, that keep their distance."""
    if n_target == 0:
        return np.zeros(0, dtype=np.intp)
    bucket = 2.0 * _SPACING * float(reach.max()) + 1e-9
    grid: dict[tuple[int, int], list[int]] = {}
    kept: list[int] = []
    ys, xs, rs = cy.tolist(), cx.tolist(), reach.tolist()
    for i, (y, x, r) in enumerate(zip(ys, xs, rs, strict=True)):
        gy, gx = int(y // bucket), int(x // bucket)
        clash = False
        for key in ((gy + dy, gx + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
            for j in grid.get(key, ()):
                if (y - ys[j]) ** 2 + (x - xs[j]) ** 2 < (_SPACING * (r + rs[j])) ** 2:
                    clash = True
                    break
            if clash:
                break
        if not clash:
            grid.setdefault((gy, gx), []).append(i)
            kept.append(i)
            if len(kept) == n_target:
                break
    return np.asarray(kept, dtype=np.intp)


def _ellipse_rho(
    yy: np.ndarray, xx: np.ndarray, major: float, minor: float, cos: float, sin: float
) -> np.ndarray:
    u = xx * cos + yy * sin
    v = yy * cos - xx * sin
    return (u / major) ** 2 + (v / minor) ** 2


def rasterize(layout: CellLayout, shape: tuple[int, int]) -> Raster:
    """Paint the cells of ``layout`` into label and radius maps of ``shape``."""
    labels = np.zeros(shape, dtype=np.uint32)
    rho_cell = np.full(shape, OUTSIDE, dtype=np.float32)
    rho_nucleus = np.full(shape, OUTSIDE, dtype=np.float32)
    for i in range(len(layout)):
        y, x, reach = float(layout.y[i]), float(layout.x[i]), float(layout.major[i])
        y0, y1 = max(int(y - reach) - 1, 0), min(int(y + reach) + 2, shape[0])
        x0, x1 = max(int(x - reach) - 1, 0), min(int(x + reach) + 2, shape[1])
        yy = np.arange(y0, y1, dtype=np.float32)[:, None]
        xx = np.arange(x0, x1, dtype=np.float32)[None, :]
        cos, sin = float(np.cos(layout.theta[i])), float(np.sin(layout.theta[i]))
        rc = _ellipse_rho(yy - y, xx - x, float(layout.major[i]), float(layout.minor[i]), cos, sin)
        box = (slice(y0, y1), slice(x0, x1))
        take = rc < np.minimum(rho_cell[box], 1.0)
        rn = _ellipse_rho(
            yy - float(layout.nucleus_y[i]),
            xx - float(layout.nucleus_x[i]),
            float(layout.nucleus_major[i]),
            float(layout.nucleus_minor[i]),
            cos,
            sin,
        )
        labels[box][take] = i + 1
        rho_cell[box][take] = rc[take]
        rho_nucleus[box][take] = np.minimum(rn[take], OUTSIDE)
    return Raster(labels=labels, rho_cell=rho_cell, rho_nucleus=rho_nucleus)
