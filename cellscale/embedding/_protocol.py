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

__all__ = ["Embedder", "EmbedderBase", "check_batch_size"]


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


def check_batch_size(batch_size: Any) -> int:
    """``batch_size`` as an int, or a ValueError unless it is a whole number of at least 1.

    Examples
    --------
    >>> check_batch_size(16)
    16
    >>> check_batch_size(-1)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be a whole number of at least 1, got -1
    """
    whole = isinstance(batch_size, int | np.integer) and not isinstance(batch_size, bool)
    if not whole or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
    return int(batch_size)
