"""Sphering (whitening) with pycytominer's ``Spherize`` meanings, from streamed moments."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from cellscale.profiles._io import CellInput
from cellscale.profiles._moments import compute_moments, moments_graph
from cellscale.profiles._normalizer import Normalizer

__all__ = ["Spherizer"]

METHODS = ("PCA", "ZCA", "PCA-cor", "ZCA-cor")


class Spherizer(Normalizer):
    """PCA or ZCA whitening fitted on control rows (pycytominer's ``Spherize``).

    With ``S`` the singular values and ``V`` the right singular vectors of the
    centred (``-cor``: also standardised, population std) control matrix, the map is
    ``W = V diag(sqrt(n - 1) / (S + epsilon))`` for PCA, and ``W V^T`` for ZCA.
    ``S`` and ``V`` come from the eigendecomposition of the streamed ``d × d``
    cross-product, so fitting is one out-of-core pass. As in pycytominer, singular
    values beyond the numerical rank ``r`` are replaced by ``S[r - 1]`` (pycytominer
    does so when ``n <= d`` and refuses other rank-deficient input; here it applies
    in both cases). PCA outputs are named ``PC1..PCd`` in tables, with the sign of
    each axis fixed so its largest entry is positive.

    Parameters
    ----------
    method
        ``"PCA"``, ``"ZCA"``, ``"PCA-cor"`` or ``"ZCA-cor"``.
    epsilon
        Regulariser added to the singular values.
    center
        Centre on the control mean before whitening (required by the ``-cor`` methods).
    """

    _kind = "Spherizer"

    def __init__(self, method: str = "ZCA", epsilon: float = 1e-6, center: bool = True) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if method.endswith("-cor") and not center:
            raise ValueError(f"{method} requires center=True")
        self.method = method
        self.epsilon = epsilon
        self.center = center
        self._output_prefix = "PC" if method.startswith("PCA") else None

    def _estimate(self, cells: CellInput, rows: da.Array | None) -> None:
        moments = compute_moments(moments_graph(cells.array, rows, raw=cells.raw))
        n, d = moments.n, moments.mean.shape[0]
        if n < 2:
            raise ValueError(f"sphering needs at least 2 control rows, got {n}")
        gram = moments.m2
        self.center_ = moments.mean if self.center else np.zeros(d)
        self.scale_ = None
        if self.method.endswith("-cor"):
            std = np.sqrt(np.diagonal(gram) / n)
            if np.any(std == 0):
                raise ValueError("constant features cannot be sphered with a -cor method")
            self.scale_ = std
            gram = gram / np.outer(std, std)
        elif not self.center:
            gram = gram + n * np.outer(moments.mean, moments.mean)
        singular, vectors = _singular_from_gram(gram, n - 1 if self.center else n)
        weights = vectors * (np.sqrt(n - 1) / (singular + self.epsilon))
        self.matrix_ = weights @ vectors.T if self.method.startswith("ZCA") else weights
        self.n_samples_fit_ = n

    def _params(self) -> dict[str, Any]:
        return {"method": self.method, "epsilon": self.epsilon, "center": self.center}


def _singular_from_gram(gram: np.ndarray, max_rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Singular values (rank-padded as pycytominer does) and sign-fixed right vectors.

    The rank is at most ``max_rank`` (rows, less one if centred) and counts only
    eigenvalues above the rounding level of the ``d × d`` cross-product.
    """
    values, vectors = np.linalg.eigh(gram)
    values, vectors = np.clip(values[::-1], 0.0, None), vectors[:, ::-1]
    pivot = np.argmax(np.abs(vectors), axis=0)
    vectors = vectors * np.sign(vectors[pivot, np.arange(vectors.shape[1])])
    tol = values[0] * len(values) * np.finfo(np.float64).eps * 10
    rank = max(1, min(max_rank, int(np.count_nonzero(values > tol))))
    singular = np.sqrt(values)
    singular[rank:] = singular[rank - 1]
    return singular, vectors
