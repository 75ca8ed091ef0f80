"""Segmentation: the segmenter seam, a classical CPU segmenter, cellpose on GPU workers.

``cellscale.segment.segment`` (also ``cellscale.segment`` at the top level) turns a plate
into lazy labels. Implementations are imported when first used, so importing this
package never imports torch or cellpose.
"""

from __future__ import annotations

import importlib
from typing import Any

from cellscale.plate import MAX_FIELD_PIXELS
from cellscale.segment._api import segment
from cellscale.segment._protocol import Segmenter, SegmenterBase, relabel_consecutive

_LAZY = {
    "ClassicalSegmenter": "cellscale.segment._classical",
    "estimate_diameter": "cellscale.segment._classical",
    "CellposeSegmenter": "cellscale.segment._cellpose",
}

__all__ = [
    "MAX_FIELD_PIXELS",
    "CellposeSegmenter",
    "ClassicalSegmenter",
    "Segmenter",
    "SegmenterBase",
    "estimate_diameter",
    "relabel_consecutive",
    "segment",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cellscale.segment' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
