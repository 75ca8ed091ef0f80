"""CNN embeddings of single-cell crops on GPU-tagged workers: the embedder seam, torch models.

:func:`write_cell_pass` measures, crops and embeds every field from one read of it.
"""

from __future__ import annotations

import importlib
from typing import Any

from cellscale.embedding._cell_pass import StalePassOutputError, write_cell_pass
from cellscale.embedding._embed import embed
from cellscale.embedding._protocol import Embedder, EmbedderBase
from cellscale.embedding._write import open_embeddings, write_embeddings

_LAZY = {
    "TorchEmbedder": "cellscale.embedding._torch",
    "ARCHITECTURES": "cellscale.embedding._torch",
}

__all__ = [
    "ARCHITECTURES",
    "Embedder",
    "EmbedderBase",
    "StalePassOutputError",
    "TorchEmbedder",
    "embed",
    "open_embeddings",
    "write_cell_pass",
    "write_embeddings",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cellscale.embedding' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
