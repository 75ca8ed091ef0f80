"""Exact, one-pass, out-of-core principal component analysis with the scikit-learn shape."""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

import dask.array as da
import numpy as np

from cellscale.profiles._apply import lazy_affine
from cellscale.profiles._io import CellInput, as_cell_array, as_row_mask, cell_input
from cellscale.profiles._moments import Moments, compute_moments, moments_graph
from cellscale.profiles._pca_checks import (
    check_components_fit,
    check_n_components,
    check_real,
    check_saved,
)
from cellscale.profiles._persist import read_model, save_model

__all__ = ["PCA"]


class PCA:
    """Principal component analysis fitted exactly in one streaming pass.

    ``fit`` accumulates, per row chunk, the count, mean and centred cross-product
    (products in the input's precision in slices, sums in float64), merges them in a
    dask tree with Chan et al.'s pairwise update, and eigendecomposes the ``d × d``
    covariance. It never holds the ``N × d`` matrix, runs on whatever dask scheduler is
    active (threads, or a distributed ``Client``), and gives the same result as a
    float64 SVD of the centred data. ``partial_fit`` merges further rows into the same
    statistics, so any chain of partial fits equals one fit on all rows.

    Parameters
    ----------
    n_components
        Number of components to keep, a positive int of at most
        ``min(n_samples, n_features)``; ``None`` keeps ``min(n_samples, n_features)``.
    whiten
        Scale the scores to unit variance in :meth:`transform`.
    compute_dtype
        Precision of the per-chunk products: ``None`` uses the input's (float32 input
        runs float32 GEMMs on mean-shifted data, summed in float64 every few thousand
        rows); ``numpy.float64`` forces double precision products.
    split_every
        Fan-in of the merge tree.

    Attributes
    ----------
    components_ : numpy.ndarray
        ``(n_components, n_features)`` principal axes, unit norm, sign-fixed so the
        entry of largest magnitude in each row is positive (scikit-learn's
        ``svd_flip`` convention).
    explained_variance_ : numpy.ndarray
        Variance of each component (covariance eigenvalue, ``n - 1`` denominator).
    explained_variance_ratio_ : numpy.ndarray
        ``explained_variance_`` divided by the total variance.
    singular_values_ : numpy.ndarray
        ``sqrt(explained_variance_ * (n_samples_seen_ - 1))``.
    noise_variance_ : float
        Mean of the eigenvalues not kept (probabilistic PCA noise, as in scikit-learn).
    mean_ : numpy.ndarray
        Per-feature mean.
    n_samples_seen_ : int
        Number of rows fitted so far.
    n_features_in_ : int
        Number of features.
    n_components_ : int
        Number of components kept.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> x = da.from_array(np.random.default_rng(0).normal(size=(1000, 8)), chunks=(300, 8))
    >>> pca = PCA(3).fit(x)
    >>> pca.components_.shape, pca.transform(x).shape
    ((3, 8), (1000, 3))
    >>> pca.get_feature_names_out()
    ['PC1', 'PC2', 'PC3']
    """

    def __init__(
        self,
        n_components: int | None = None,
        *,
        whiten: bool = False,
        compute_dtype: Any = None,
        split_every: int = 8,
    ) -> None:
        self.n_components = check_n_components(n_components)
        self.whiten = whiten
        self.compute_dtype = compute_dtype
        self.split_every = split_every
        self._moments: Moments | None = None
        self._frozen = False

    # ----------------------------------------------------------------- fitting
    def fit(self, X: Any, y: Any = None, *, mask: Any = None) -> PCA:
        """Fit on all rows of ``X`` (or those where ``mask`` is True), in one pass.

        Parameters
        ----------
        X
            ``(cell, feature)`` dask or NumPy array, Zarr array, or path to a Zarr array.
        y
            Ignored (scikit-learn compatibility).
        mask
            Boolean ``(cell,)`` array (NumPy or dask) selecting the rows to fit on,
            e.g. control cells.

        Returns
        -------
        PCA
            ``self``, fitted.

        Raises
        ------
        TypeError
            If ``X`` is not real numbers (e.g. complex).
        ValueError
            If a selected row holds NaN or inf (the message names its chunk's rows), or
            ``n_components`` is more than ``min(n_samples, n_features)``.
        """
        cells = self._checked(X)
        n_rows, n_features = cells.array.shape
        check_components_fit(self.n_components, n_features, n_rows)  # before the pass
        moments = self._moments_of(cells, mask)
        check_components_fit(self.n_components, n_features, moments.n)  # the rows selected
        self._set_moments(moments)
        self._frozen = False
        return self

    def partial_fit(self, X: Any, y: Any = None, *, mask: Any = None) -> PCA:
        """Merge the rows of ``X`` into the fitted statistics (see :meth:`fit`).

        Batches may be smaller than ``n_components``: only the rows of all batches
        together must number at least ``n_components`` when the components are read.
        """
        if self._frozen:
            raise ValueError("this PCA was saved without statistics and cannot be updated")
        cells = self._checked(X, self._moments)
        check_components_fit(self.n_components, cells.array.shape[1], None)
        moments = self._moments_of(cells, mask)
        self._set_moments(moments if self._moments is None else self._moments.merge(moments))
        return self

    def _checked(self, X: Any, fitted: Moments | None = None) -> CellInput:
        """``X`` as cell input, checked to be real and to have the fitted features."""
        cells = cell_input(X)
        check_real(cells.array.dtype)
        d = cells.array.shape[1]
        if fitted is not None and d != fitted.mean.shape[0]:
            raise ValueError(f"X has {d} features, the model was fitted on {fitted.mean.shape[0]}")
        return cells

    def _moments_of(self, cells: CellInput, mask: Any) -> Moments:
        """The moments of the rows of ``cells`` selected by ``mask``, in one pass."""
        rows = None if mask is None else as_row_mask(mask, cells.array)
        graph = moments_graph(
            cells.array,
            rows,
            raw=cells.raw,
            compute_dtype=self.compute_dtype,
            split_every=self.split_every,
        )
        return compute_moments(graph)

    def _set_moments(self, moments: Moments) -> None:
        if moments.n < 2:
            raise ValueError(f"PCA needs at least 2 rows, got {moments.n}")
        self._moments = moments
        self.__dict__.pop("_eigen", None)

    @cached_property
    def _eigen(self) -> tuple[np.ndarray, np.ndarray, int, float]:
        moments = self._fitted()
        covariance = moments.covariance()
        values, vectors = np.linalg.eigh(covariance)
        values, vectors = np.clip(values[::-1], 0.0, None), vectors[:, ::-1].T
        pivot = np.argmax(np.abs(vectors), axis=1)
        vectors *= np.sign(vectors[np.arange(len(vectors)), pivot])[:, None]
        rank_bound = min(moments.n, vectors.shape[1])
        k = rank_bound if self.n_components is None else self.n_components
        if not 0 < k <= rank_bound:
            raise ValueError(
                f"n_components={k} must be between 1 and min(n_samples, n_features)={rank_bound}"
            )
        return values[:rank_bound], vectors[:k], k, float(np.trace(covariance))

    def _fitted(self) -> Moments:
        if self._moments is None:
            raise AttributeError("this PCA is not fitted yet; call fit or partial_fit first")
        return self._moments

    # ------------------------------------------------------- fitted attributes
    @property
    def mean_(self) -> np.ndarray:
        return self._fitted().mean

    @property
    def n_samples_seen_(self) -> int:
        return self._fitted().n

    @property
    def n_features_in_(self) -> int:
        return int(self._fitted().mean.shape[0])

    @property
    def n_components_(self) -> int:
        return self._eigen[2]

    @property
    def components_(self) -> np.ndarray:
        return self._eigen[1]

    @property
    def explained_variance_(self) -> np.ndarray:
        values, _, k, _ = self._eigen
        return values[:k]

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        return self.explained_variance_ / self._eigen[3]

    @property
    def singular_values_(self) -> np.ndarray:
        return np.sqrt(self.explained_variance_ * (self.n_samples_seen_ - 1))

    @property
    def noise_variance_(self) -> float:
        values, _, k, _ = self._eigen
        return float(values[k:].mean()) if k < len(values) else 0.0

    # ------------------------------------------------------------- transforms
    def transform(self, X: Any) -> Any:
        """Project rows onto the components: ``(X - mean_) @ components_.T``.

        Lazy and chunked: dask, Zarr and path inputs give a dask array (write it with
        ``.to_zarr``); NumPy input gives NumPy. float32 input gives float32 scores.
        Name the score columns with :meth:`get_feature_names_out`.
        """
        arr = as_cell_array(X)
        check_real(arr.dtype)
        scale = np.sqrt(self.explained_variance_) if self.whiten else None
        matrix = self.components_.T if scale is None else self.components_.T / scale
        out = lazy_affine(arr, self.mean_, None, matrix)
        return out.compute() if isinstance(X, np.ndarray) else out

    def get_feature_names_out(self) -> list[str]:
        """Names of the score columns: ``PC1``, ``PC2``, … ``PC{n_components_}``.

        The names cellscale gives principal components everywhere (the pipeline's
        ``cells.parquet``, :class:`Spherizer` tables, plot axes); pass them as
        ``features`` to :func:`cellscale.aggregate` to name per-well mean scores.
        """
        return [f"PC{i + 1}" for i in range(self.n_components_)]

    def fit_transform(self, X: Any, y: Any = None, *, mask: Any = None) -> Any:
        """:meth:`fit`, then :meth:`transform` all rows of ``X``."""
        return self.fit(X, mask=mask).transform(X)

    def inverse_transform(self, Z: Any) -> Any:
        """Map scores back to feature space: ``Z @ components_ + mean_`` (lazy for dask)."""
        basis = self.components_
        if self.whiten:
            basis = basis * np.sqrt(self.explained_variance_)[:, None]
        scores = Z if isinstance(Z, np.ndarray | da.Array) else np.asarray(Z)
        return scores @ basis.astype(scores.dtype) + self.mean_.astype(scores.dtype)

    # -------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str], *, statistics: bool = True) -> None:
        """Save the fitted model to one ``.npz`` file with JSON provenance.

        Parameters
        ----------
        path
            Destination file.
        statistics
            Also store the ``d × d`` cross-product so a loaded model can continue with
            :meth:`partial_fit` (``8 d²`` bytes); ``False`` keeps only the components.
        """
        moments = self._fitted()
        arrays = {
            "n": np.array(moments.n),
            "mean": moments.mean,
            "components": self.components_,
            "eigenvalues": self._eigen[0],
            "total_variance": np.array(self._eigen[3]),
        }
        if statistics:
            arrays["m2"] = moments.m2
        params = {"n_components": self.n_components, "whiten": self.whiten}
        save_model(path, "PCA", params, arrays, {"n_samples_seen": moments.n})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PCA:
        """Load a model written by :meth:`save`.

        Raises
        ------
        ValueError
            If the file is not a cellscale PCA, misses one of its arrays, or holds arrays
            whose shapes disagree (the message names them).
        """
        meta, arrays = read_model(path, "PCA")
        model = cls(**meta["params"])
        check_saved(arrays, model.n_components, path)
        n = int(arrays["n"])
        d = arrays["mean"].shape[0]
        m2 = arrays.get("m2")
        model._moments = Moments(n, arrays["mean"], np.zeros((d, d)) if m2 is None else m2)
        model._frozen = m2 is None
        values, vectors = arrays["eigenvalues"], arrays["components"]
        total = float(arrays["total_variance"])
        model.__dict__["_eigen"] = (values, vectors, vectors.shape[0], total)
        return model

    def __repr__(self) -> str:
        return f"PCA(n_components={self.n_components}, whiten={self.whiten})"
