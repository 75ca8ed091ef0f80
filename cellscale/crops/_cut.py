"""Cutting one field's crops: a fixed box around each cell, masked or not, padded at the border.

Boxes that lie wholly inside the field are gathered for all cells at once from a sliding-window
view of each channel (one vectorised copy per channel); only the few boxes that reach past
the field's edge are cut one by one and zero-padded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

__all__ = ["MASKS", "box_starts", "cut_field"]

MASKS = ("none", "hard", "soft")


def box_starts(centres: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Where each box starts: ``size // 2`` before the pixel nearest its centre."""
    nearest = np.floor(np.asarray(centres, dtype=np.float64) + 0.5).astype(np.int64)
    return nearest - np.asarray(size, dtype=np.int64) // 2


def cut_field(
    image: np.ndarray | Sequence[np.ndarray],
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
        ``(c, y, x)`` or ``(c, z, y, x)`` pixels of the field, or a sequence of its channels.
    centres
        ``(n, 2)`` or ``(n, 3)`` box centres in pixels (``y, x`` or ``z, y, x``); each box
        starts ``size // 2`` before the pixel nearest its centre.
    size
        The box: ``(y, x)`` or ``(z, y, x)``.
    labels, ids
        The field's labels and each cell's id in them, for masking.
    mask
        ``"none"``; ``"hard"``: pixels outside the cell's own label are zero; ``"soft"``:
        pixels are multiplied by the cell's mask (within its box) blurred with a Gaussian of
        ``sigma`` pixels, so edges fade like a cell's (float32 unless ``dtype``).
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
    channels = [np.asarray(c) for c in image]
    spatial = channels[0].shape
    if len(size) != len(spatial) or any(s > n for s, n in zip(size, spatial, strict=True)):
        raise ValueError(f"a crop of {tuple(size)} does not fit in a field of {spatial}")
    default = np.dtype(np.float32) if mask == "soft" else channels[0].dtype
    out_dtype = np.dtype(dtype) if dtype is not None else default
    starts = box_starts(centres, size).reshape(-1, len(size))
    clipped = ((starts < 0) | (starts + np.asarray(size) > np.asarray(spatial))).any(axis=1)
    crops = np.zeros((len(starts), len(channels), *size), dtype=out_dtype)
    inner = np.flatnonzero(~clipped)
    if len(inner):
        index = tuple(starts[inner].T)
        weight = _weights(labels, ids, inner, index, size, mask, sigma)
        for c, channel in enumerate(channels):
            boxes = sliding_window_view(channel, size)[index]
            crops[inner, c] = boxes if weight is None else boxes * weight
    for i in np.flatnonzero(clipped):
        _cut_clipped(crops[i], channels, starts[i], size, labels, ids, int(i), mask, sigma)
    return crops, clipped


def _weights(
    labels: np.ndarray | None,
    ids: np.ndarray | None,
    rows: np.ndarray,
    index: tuple[np.ndarray, ...],
    size: tuple[int, ...],
    mask: str,
    sigma: float,
) -> np.ndarray | None:
    """The mask of each inner box (``None`` without masking)."""
    if mask == "none":
        return None
    assert labels is not None and ids is not None
    inside = sliding_window_view(labels, size)[index] == ids[rows].reshape(-1, *(1,) * len(size))
    if mask == "hard":
        return inside
    blurred = ndimage.gaussian_filter(
        inside.astype(np.float32), (0, *(sigma,) * len(size)), mode="constant"
    )
    return blurred


def _cut_clipped(
    crop: np.ndarray,
    channels: list[np.ndarray],
    start: np.ndarray,
    size: tuple[int, ...],
    labels: np.ndarray | None,
    ids: np.ndarray | None,
    row: int,
    mask: str,
    sigma: float,
) -> None:
    """Fill one crop whose box reaches past the field: the inside part, zeros elsewhere."""
    source, target = [], []
    for begin, length, extent in zip(start, size, channels[0].shape, strict=True):
        lo, hi = max(int(begin), 0), min(int(begin) + length, extent)
        source.append(slice(lo, hi))
        target.append(slice(lo - int(begin), hi - int(begin)))
    weight: np.ndarray | None = None
    if mask != "none":
        assert labels is not None and ids is not None
        inside = labels[tuple(source)] == ids[row]
        weight = (
            inside
            if mask == "hard"
            else ndimage.gaussian_filter(inside.astype(np.float32), sigma, mode="constant")
        )
    for c, channel in enumerate(channels):
        box = channel[tuple(source)]
        crop[c][tuple(target)] = box if weight is None else box * weight
