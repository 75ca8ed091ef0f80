"""A field of well-separated bright blobs: the smallest image a segmenter must get right."""

from __future__ import annotations

import numpy as np

__all__ = ["blob_field"]


def blob_field(
    shape: tuple[int, ...] = (128, 128),
    channels: int = 1,
    *,
    blobs: int = 6,
    radius: float = 7.0,
    seed: int = 0,
) -> np.ndarray:
    """A ``(channels, *shape)`` uint16 field of well-separated bright discs on a dim background.

    The last channel holds the discs (nuclei); earlier channels hold discs twice as wide
    (cytoplasm) around the same centres. 3D ``shape`` gives balls.

    Examples
    --------
    >>> blob_field((64, 64), channels=2).shape
    (2, 64, 64)
    """
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float64)
    margin = 3 * radius
    side = int(np.ceil(np.sqrt(blobs)))
    spacing = [(n - 2 * margin) / max(side - 1, 1) for n in shape[-2:]]
    centres = [
        (margin + i * spacing[0], margin + j * spacing[1]) for i in range(side) for j in range(side)
    ][:blobs]
    field = np.zeros((channels, *shape), np.float64)
    for cy, cx in centres:
        distance = np.sqrt((grid[-2] - cy) ** 2 + (grid[-1] - cx) ** 2)
        if len(shape) == 3:
            distance = np.sqrt(distance**2 + (grid[0] - shape[0] / 2) ** 2)
        for c in range(channels):
            scale = radius if c == channels - 1 else 1.8 * radius
            field[c] += 1000.0 * (distance < scale)
    noise = rng.normal(100.0, 5.0, field.shape)
    return np.clip(field + noise, 0, None).astype(np.uint16)
