"""Cutting one field's crops: a fixed box around each cell, masked or not, padded at the border."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["MASKS", "cut_field"]

MASKS = ("none", "hard", "soft")


def cut_field(
    image: np.ndarray,
    centres: np.ndarray,
    size: tuple[int, ...],
    *,
    labels: np.ndarray | None = None,
    ids: np.ndarray | None = None,
    mask: str = "none",
    sigma: float = 2.0,
    dtype: np.dtype | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The crops of one field's cells.

    Parameters
    ----------
    image
        ``(c, y, x)`` or ``(c, z, y, x)`` pixels of the field.
    centres
        ``(n, 2)`` or ``(n, 3)`` box centres in pixels (``y, x`` or ``z, y, x``); each box
        starts ``size // 2`` before the pixel nearest its centre.
    size
        The box: ``(y, x)`` or ``(z, y, x)``.
    labels, ids
        The field's labels and each cell's id in them, for masking.
    mask
        ``"none"``; ``"hard"``: pixels outside the cell's own label are zero; ``"soft"``:
        pixels are multiplied by the cell's mask blurred with a Gaussian of ``sigma``
        pixels, so edges fade like a cell's (the result is float32 unless ``dtype``).
    dtype
        The crops' dtype (default: the image's, float32 for ``"soft"``).

    Returns
    -------
    tuple of (numpy.ndarray, numpy.ndarray)
        ``(n, c, *size)`` crops, and for each cell whether its box reached past the field
        (the part outside is zero).

    Examples
    --------
    >>> field = np.arange(36, dtype=np.uint16).reshape(1, 6, 6)
    >>> crops, padded = cut_field(field, np.array([[2.0, 2.0], [0.0, 5.0]]), (2, 2))
    >>> crops[0, 0].tolist(), padded.tolist()
    ([[7, 8], [13, 14]], [False, True])
    """
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
    if mask != "none" and (labels is None or ids is None):
        raise ValueError(f"mask={mask!r} needs the labels and each cell's id")
    spatial = image.shape[1:]
    if len(size) != len(spatial) or any(s > n for s, n in zip(size, spatial, strict=True)):
        raise ValueError(f"a crop of {tuple(size)} does not fit in a field of {spatial}")
    default = np.dtype(np.float32) if mask == "soft" else image.dtype
    out_dtype = np.dtype(dtype) if dtype is not None else default
    n = len(centres)
    crops = np.zeros((n, image.shape[0], *size), dtype=out_dtype)
    nearest = np.floor(np.asarray(centres, dtype=np.float64) + 0.5).astype(np.int64)
    starts = nearest - np.asarray(size, dtype=np.int64) // 2
    padded = np.zeros(n, dtype=bool)
    for i in range(n):
        source, target, clipped = _window(starts[i], size, spatial)
        padded[i] = clipped
        box = image[(slice(None), *source)]
        if mask != "none":
            assert labels is not None and ids is not None
            inside = labels[source] == ids[i]
            weight = _soft(inside, sigma) if mask == "soft" else inside
            box = box * weight
        crops[i][(slice(None), *target)] = box
    return crops, padded


def _window(
    start: np.ndarray, size: tuple[int, ...], spatial: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[slice, ...], bool]:
    """The part of the box inside the field, where it goes in the crop, and whether it was cut."""
    source, target, clipped = [], [], False
    for begin, length, extent in zip(start, size, spatial, strict=True):
        lo, hi = max(int(begin), 0), min(int(begin) + length, extent)
        clipped |= lo != begin or hi != begin + length
        source.append(slice(lo, hi))
        target.append(slice(lo - int(begin), hi - int(begin)))
    return tuple(source), tuple(target), clipped


def _soft(inside: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(inside.astype(np.float32), sigma, mode="constant")
