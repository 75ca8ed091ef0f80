"""Dropping objects that touch the image border, keeping ids consecutive and compartments paired."""

from __future__ import annotations

import numpy as np

__all__ = ["drop_border_objects"]


def drop_border_objects(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Remove the objects whose first-compartment mask touches the border of the field.

    Parameters
    ----------
    labels
        ``(k, y, x)`` or ``(k, z, y, x)`` labels of ``k`` compartments sharing ids.

    Returns
    -------
    tuple of (numpy.ndarray, int)
        The labels with those objects removed from every compartment and the rest
        renumbered ``1 … n`` in their previous order, and how many were removed.
        Only the spatial y and x borders count: a 3D object touching the first or last
        plane is kept (Z stacks rarely cover whole cells).

    Examples
    --------
    >>> field = np.array([[[1, 0, 0], [0, 2, 0], [0, 0, 0]]], dtype=np.uint32)
    >>> kept, dropped = drop_border_objects(field)
    >>> kept[0].tolist(), dropped
    ([[0, 0, 0], [0, 1, 0], [0, 0, 0]], 1)
    """
    primary = labels[0]
    edges = np.concatenate(
        [
            primary[..., 0, :].ravel(),
            primary[..., -1, :].ravel(),
            primary[..., :, 0].ravel(),
            primary[..., :, -1].ravel(),
        ]
    )
    touching = np.unique(edges[edges != 0])
    if not len(touching):
        return labels, 0
    n = int(primary.max())
    keep = np.ones(n + 1, dtype=bool)
    keep[touching] = False
    keep[0] = True
    lookup = np.zeros(n + 1, dtype=np.uint32)
    kept_ids = np.flatnonzero(keep[1:]) + 1
    lookup[kept_ids] = np.arange(1, len(kept_ids) + 1, dtype=np.uint32)
    return lookup[labels], len(touching)
