"""The embedder seam: a batch of crops ``(n, c, [z,] y, x)`` in, ``(n, d)`` float32 features out.

An embedder has ``n_features`` (``d``), ``batch_size`` (crops per model call), ``gpu``
(whether its tasks go to GPU-tagged workers) and ``describe()`` (what the embeddings'
attributes and fingerprint record: model, weights hash, layer, preprocessing). It is
deterministic: the same batch gives the same features. :class:`cellscale.testing.EmbedderTests`
is the conformance suite every embedder passes.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
from dask.base import tokenize

__all__ = ["Embedder", "EmbedderBase"]


@runtime_checkable
class Embedder(Protocol):
    """What :func:`cellscale.embed` needs of a model."""

    n_features: int
    batch_size: int
    gpu: bool

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Features ``(n, n_features)`` float32 of a batch of crops."""
        ...

    def describe(self) -> dict[str, Any]:
        """A JSON description: model, weights hash, layer, preprocessing."""
        ...


class EmbedderBase:
    """Defaults for embedders: CPU, 64 crops a call, described by class and token."""

    n_features: int = 0
    batch_size: int = 64
    gpu: bool = False

    def __call__(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The class name and a dask token of the embedder."""
        return {"class": type(self).__qualname__, "token": tokenize(self)}
