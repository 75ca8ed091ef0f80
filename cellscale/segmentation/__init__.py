"""Segmentation: the segmenter seam, a classical CPU segmenter, cellpose on GPU workers.

:func:`check_segmentation` flags the wells of a plate whose objects are far too small, too
few or absent.

``cellscale.segmentation.segment`` (also ``cellscale.segment`` at the top level) turns a plate
into lazy labels. Implementations are imported when first used, so importing this
package never imports torch or cellpose.
"""

from __future__ import annotations

import importlib
from typing import Any

from cellscale.plate import MAX_FIELD_PIXELS
from cellscale.segmentation._api import segment
from cellscale.segmentation._protocol import Segmenter, SegmenterBase, relabel_consecutive
from cellscale.segmentation._sanity import SegmentationFlag, check_segmentation

_LAZY = {
    "ClassicalSegmenter": "cellscale.segmentation._classical",
    "estimate_diameter": "cellscale.segmentation._classical",
    "CellposeSegmenter": "cellscale.segmentation._cellpose",
}

__all__ = [
    "MAX_FIELD_PIXELS",
    "CellposeSegmenter",
    "ClassicalSegmenter",
    "SegmentationFlag",
    "Segmenter",
    "SegmenterBase",
    "check_segmentation",
    "estimate_diameter",
    "relabel_consecutive",
    "segment",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cellscale.segmentation' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
