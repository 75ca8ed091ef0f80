"""Paint stains, defocus and camera noise onto a rasterised synthetic field.

Intensities are computed in photons, blurred by defocus (a Gaussian whose width grows
linearly with the distance from the field's focal plane) and turned into camera
values: ``offset + gain * (S + sqrt(S + read_noise**2) * N(0, 1))``, a Gaussian
approximation of shot plus read noise, clipped to the dtype's range.

Every stain is multiplied by the same vignetting, :func:`illumination_truth`, and the
camera offset adds the same constant to every pixel: a synthetic plate has a known
flatfield and a known, uniform darkfield.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage, special

from cellscale.synthetic._cells import CellLayout, Raster

__all__ = ["CAMERA_OFFSET", "CHANNEL_KINDS", "camera", "defocus", "illumination_truth", "paint"]

_FULL_WELL = 30000.0  # photons that map to the dtype's full scale
CAMERA_OFFSET = 0.0015
"""The camera offset (the darkfield) of synthetic images, as a fraction of full scale."""
_READ_NOISE = 6.0  # photons
_BACKGROUND = 250.0  # photons
_VIGNETTING = 0.2  # relative drop of illumination at the edge of each axis
_BLUR_TRUNCATE = 2.5
_CAMERA_BLOCK_ROWS = 64

# Normal quantiles of the 65536 16-bit values: drawing uint16 and looking them up is a
# several times faster way to draw (finely discretised) standard normal noise.
_NORMAL = special.ndtri((np.arange(65536) + 0.5) / 65536).astype(np.float32)


def _normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return _NORMAL[rng.integers(0, 65536, shape, dtype=np.uint16)]


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth noise of about unit standard deviation, correlation length ``sigma`` px."""
    smooth = ndimage.gaussian_filter(_normal(rng, shape), sigma, truncate=2.0, mode="wrap")
    smooth *= np.float32(2.0 * np.sqrt(np.pi) * sigma)
    return smooth


def _per_cell(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    lut = np.concatenate([[0.0], values]).astype(np.float32)
    return lut[labels]


def _dome(rho: np.ndarray) -> np.ndarray:
    """``sqrt(1 - rho)`` inside the outline, 0 outside."""
    return np.sqrt(np.clip(np.float32(1.0) - rho, 0.0, None))


def _nuclei(raster: Raster, layout: CellLayout, rng: np.random.Generator) -> np.ndarray:
    shape = raster.labels.shape
    out = _dome(raster.rho_nucleus)
    out *= 1.0 + 0.3 * _texture(rng, shape, 1.0)
    out *= _per_cell(layout.nucleus_brightness, raster.labels) * np.float32(7000.0)
    return out


def _cytoplasm(raster: Raster, layout: CellLayout, rng: np.random.Generator) -> np.ndarray:
    shape = raster.labels.shape
    out = _dome(raster.rho_cell)
    out *= 1.0 - 0.6 * _dome(raster.rho_nucleus)
    out *= 1.0 + 0.25 * _texture(rng, shape, 2.0)
    out *= _per_cell(layout.cytoplasm_brightness, raster.labels) * np.float32(2500.0)
    return out


def _membrane(raster: Raster, layout: CellLayout, rng: np.random.Generator) -> np.ndarray:
    shape = raster.labels.shape
    out = np.clip(1.0 - np.abs(raster.rho_cell - np.float32(0.85)) / np.float32(0.15), 0.0, None)
    out *= 1.0 + 0.4 * _texture(rng, shape, 1.5)
    out *= np.float32(3000.0)
    return out


def _mito(raster: Raster, layout: CellLayout, rng: np.random.Generator) -> np.ndarray:
    shape = raster.labels.shape
    out = np.clip(_texture(rng, shape, 1.2) - 0.5, 0.0, None)
    out *= np.clip(np.float32(1.2) - raster.rho_cell, 0.0, 1.0)
    out *= raster.rho_nucleus >= 1.0
    out *= _per_cell(layout.cytoplasm_brightness, raster.labels) * np.float32(4000.0)
    return out


def _er(raster: Raster, layout: CellLayout, rng: np.random.Generator) -> np.ndarray:
    shape = raster.labels.shape
    out = np.clip(np.float32(1.0) - raster.rho_cell, 0.0, None)
    out *= raster.rho_nucleus >= 1.0
    out *= 1.0 + 0.6 * _texture(rng, shape, 1.5)
    out *= _per_cell(layout.cytoplasm_brightness, raster.labels) * np.float32(2500.0)
    return out


_PAINTERS: dict[str, Callable[[Raster, CellLayout, np.random.Generator], np.ndarray]] = {
    "nuclei": _nuclei,
    "cytoplasm": _cytoplasm,
    "membrane": _membrane,
    "mito": _mito,
    "er": _er,
}

CHANNEL_KINDS: tuple[str, ...] = tuple(_PAINTERS)
"""The stains a synthetic plate can show, in the order used for ``channels=n``."""


def _illumination(shape: tuple[int, int]) -> np.ndarray:
    """Relative illumination: 1 at the centre, ``(1 - _VIGNETTING) ** 2`` in the corners."""
    ny, nx = shape
    fy = 1.0 - _VIGNETTING * np.linspace(-1.0, 1.0, ny, dtype=np.float32) ** 2
    fx = 1.0 - _VIGNETTING * np.linspace(-1.0, 1.0, nx, dtype=np.float32) ** 2
    return np.multiply.outer(fy, fx)


def illumination_truth(shape: tuple[int, int]) -> np.ndarray:
    """The true flatfield of synthetic images of ``shape``, scaled to mean 1.

    Synthetic stains are multiplied by a separable vignetting
    ``(1 - 0.2 v**2) * (1 - 0.2 u**2)``, with ``v`` and ``u`` running from -1 to 1 across
    the rows and columns: the corners receive 64 % of the centre's light. Every channel
    of every field shares it. The camera then adds a uniform offset of
    :data:`CAMERA_OFFSET` of the dtype's full scale (98 grey levels in ``uint16``), which
    is the images' darkfield.

    Parameters
    ----------
    shape
        ``(y, x)`` size of the images.

    Returns
    -------
    numpy.ndarray
        ``float32`` flatfield of ``shape`` with mean 1, brightest in the centre.

    Examples
    --------
    >>> flat = illumination_truth((64, 80))
    >>> flat.shape, round(float(flat.mean()), 4), bool(flat[32, 40] > flat[0, 0])
    ((64, 80), 1.0, True)
    """
    relative = _illumination((int(shape[0]), int(shape[1])))
    return (relative / relative.mean(dtype=np.float64)).astype(np.float32)


def paint(kind: str, raster: Raster, layout: CellLayout, rng: np.random.Generator) -> np.ndarray:
    """In-focus photons of stain ``kind`` (one of :data:`CHANNEL_KINDS`), float32."""
    out = _PAINTERS[kind](raster, layout, rng).astype(np.float32, copy=False)
    np.maximum(out, 0.0, out=out)
    out += np.float32(_BACKGROUND)
    out *= _illumination(raster.labels.shape)
    return out


def defocus(
    image: np.ndarray, focal_plane: int, n_z: int, blur_px: float
) -> tuple[list[np.ndarray], list[int]]:
    """Images by distance from focus, and each plane's distance.

    The image at distance ``d`` is ``image`` blurred by a Gaussian of sigma
    ``blur_px * d``, made incrementally from the one at ``d - 1``: each distance is
    blurred once, however many planes share it.
    """
    distances = [abs(z - focal_plane) for z in range(n_z)]
    images = [image]
    for d in range(1, max(distances) + 1):
        step = blur_px * np.sqrt(d**2 - (d - 1) ** 2)
        images.append(
            ndimage.gaussian_filter(images[-1], step, truncate=_BLUR_TRUNCATE, mode="nearest")
        )
    return images, distances


def camera(
    images: list[np.ndarray], distances: list[int], rng: np.random.Generator, dtype: np.dtype
) -> np.ndarray:
    """Camera values ``(z, y, x)`` of plane ``z`` showing ``images[distances[z]]`` (photons).

    Integer dtypes span their range, floats 0 to 1. The standard normal noise of a
    stack is drawn once, two planes long, and each plane reads it from its own random
    offset: pixels within a plane and at one position across planes are independent,
    at a fraction of the cost of drawing every plane. Work goes in blocks of rows so
    that the arithmetic stays in cache.
    """
    full_scale = float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0
    gain = np.float32(full_scale / _FULL_WELL)
    means = [image * gain + np.float32(CAMERA_OFFSET * full_scale) for image in images]
    sds = [np.sqrt(image + np.float32(_READ_NOISE**2)) * gain for image in images]
    n_y, n_x = images[0].shape
    noise = _normal(rng, (2 * n_y * n_x,))
    starts = rng.integers(0, n_y * n_x + 1, len(distances))
    out = np.empty((len(distances), n_y, n_x), dtype=dtype)
    for z, d in enumerate(distances):
        plane = noise[starts[z] : starts[z] + n_y * n_x].reshape(n_y, n_x)
        for y0 in range(0, n_y, _CAMERA_BLOCK_ROWS):
            rows = slice(y0, y0 + _CAMERA_BLOCK_ROWS)
            values = plane[rows] * sds[d][rows]
            values += means[d][rows]
            np.clip(values, 0.0, full_scale, out=values)
            out[z, rows] = values
    return out
