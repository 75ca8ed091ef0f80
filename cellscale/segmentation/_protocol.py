"""The segmenter seam: one field's image in, ``uint32`` labels per compartment out.

A segmenter is any object with a ``compartments`` tuple and a ``__call__`` that takes one
field's image and returns its labels:

- input: ``(c, y, x)`` (or ``(c, z, y, x)`` for 3D), the channels :func:`cellscale.segment`
  selected, in this order: the channel to segment, then the nuclei channel if one was
  given;
- output: ``uint32`` of shape ``(len(compartments), y, x)`` (or ``(k, z, y, x)``). In the
  first compartment objects are numbered ``1 … n`` with no gaps, background is 0; every
  other compartment uses the same numbers for the same objects (a cell and its nucleus
  share their id), and may lack some.

``segment_batch`` segments several fields in one call; its default loops over
``__call__``, and a segmenter that runs a network overrides it to pool the fields' tiles
into full device batches. ``fields_per_task`` says how many fields one task should hand
it. ``gpu`` says whether its tasks should run on GPU-tagged workers.
:class:`cellscale.testing.SegmenterTests` is the conformance suite every segmenter passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Segmenter", "SegmenterBase", "check_labels", "relabel_consecutive"]


@runtime_checkable
class Segmenter(Protocol):
    """What :func:`cellscale.segment` needs of a segmenter."""

    compartments: tuple[str, ...]
    fields_per_task: int
    gpu: bool

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Labels ``(len(compartments), *image.shape[1:])`` of one field's image."""
        ...

    def segment_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Labels of several fields' images, in order."""
        ...


class SegmenterBase:
    """Defaults for segmenters: one field per task, CPU, ``segment_batch`` loops."""

    compartments: tuple[str, ...] = ("cells",)
    fields_per_task: int = 1
    gpu: bool = False

    def __call__(self, image: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def segment_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Labels of several fields' images, one call of the segmenter each."""
        return [self(image) for image in images]


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """``labels`` renumbered ``1 … n`` in order of first appearance (raster order), as ``uint32``.

    Examples
    --------
    >>> relabel_consecutive(np.array([[0, 7, 7], [3, 0, 9]])).tolist()
    [[0, 1, 1], [2, 0, 3]]
    """
    flat = labels.ravel()
    ids, first = np.unique(flat[flat != 0], return_index=True)
    order = ids[np.argsort(first)]
    lookup = np.zeros(int(labels.max(initial=0)) + 1, dtype=np.uint32)
    lookup[order] = np.arange(1, len(order) + 1, dtype=np.uint32)
    return lookup[labels]


def check_labels(
    labels: np.ndarray, image: np.ndarray, compartments: Sequence[str], where: str
) -> np.ndarray:
    """Check a segmenter's output against the seam's contract; return it as ``uint32``.

    Raises
    ------
    ValueError
        Naming ``where`` (the field) and what is wrong.
    """
    expected = (len(compartments), *image.shape[1:])
    if labels.shape != expected:
        raise ValueError(
            f"{where}: the segmenter returned labels of shape {labels.shape}, expected {expected} "
            f"(compartments {tuple(compartments)} x the image's spatial shape)"
        )
    if labels.dtype.kind not in "ui" or (labels.size and labels.min() < 0):
        raise ValueError(f"{where}: labels must be non-negative integers, got {labels.dtype}")
    primary = labels[0]
    ids = np.unique(primary[primary != 0])
    if len(ids) and (ids[0] != 1 or ids[-1] != len(ids)):
        raise ValueError(
            f"{where}: the segmenter's ids are not consecutive from 1 (found {len(ids)} objects "
            f"with ids {ids[0]}…{ids[-1]})"
        )
    for k in range(1, len(compartments)):
        extra = np.setdiff1d(np.unique(labels[k]), np.append(ids, 0))
        if len(extra):
            raise ValueError(
                f"{where}: compartment {compartments[k]!r} has ids {extra[:5].tolist()} that "
                f"{compartments[0]!r} lacks"
            )
    return labels.astype(np.uint32, copy=False)
