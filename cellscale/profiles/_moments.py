"""Streaming first and second moments: per-chunk statistics and Chan et al.'s pairwise merge.

Each row chunk yields its count, mean and *centred* cross-product (or centred sum of
squares for a diagonal-only accumulation). Centring inside the chunk keeps a large
common offset from cancelling catastrophically, and the pairwise merge of
Chan, Golub & LeVeque (1979) combines chunk statistics exactly, in any order, so a
tree reduction over a cluster gives the same answer as one pass over all rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np

from cellscale._compute import default_client
from cellscale.profiles._io import row_bounds

__all__ = ["Moments", "check_finite", "chunk_moments", "compute_moments", "moments_graph"]

#: Rows per float32 GEMM call; partial products are summed in float64 between calls.
GEMM_ROWS = 16384


@dataclass(frozen=True)
class Moments:
    """Count, mean and centred cross-product of a set of rows.

    Attributes
    ----------
    n
        Number of rows.
    mean
        Column means, float64, shape ``(d,)``.
    m2
        Centred cross-product ``sum((x - mean)(x - mean)^T)``, float64, shape ``(d, d)``,
        or only its diagonal, shape ``(d,)``.
    """

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, d: int, *, diagonal: bool = False) -> Moments:
        """Statistics of zero rows with ``d`` columns."""
        shape = (d,) if diagonal else (d, d)
        return cls(0, np.zeros(d), np.zeros(shape))

    def merge(self, other: Moments) -> Moments:
        """Statistics of the union of both row sets (Chan et al.'s pairwise update)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        weight = self.n * other.n / n
        spread = delta * delta if self.m2.ndim == 1 else np.outer(delta, delta)
        return Moments(n, mean, self.m2 + other.m2 + spread * weight)

    def covariance(self, ddof: int = 1) -> np.ndarray:
        """``m2 / (n - ddof)``: the covariance matrix, or the variances if diagonal."""
        if self.n - ddof <= 0:
            raise ValueError(f"need more than {ddof} row(s) to estimate a covariance, got {self.n}")
        return self.m2 / (self.n - ddof)


def check_finite(block: np.ndarray, start: int, stop: int, index: np.ndarray | None = None) -> None:
    """Raise a ValueError naming the chunk (rows ``start:stop``) and first row with NaN or inf.

    ``index`` maps the rows of ``block`` to their positions within the chunk when
    ``block`` holds only the chunk's selected rows.
    """
    bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
    if bad.size:
        row = int(bad[0] if index is None else index[bad[0]])
        raise ValueError(
            f"non-finite values (NaN or inf) in the chunk of rows {start}:{stop} "
            f"(first at row {start + row}); drop or impute those rows first"
        )


def chunk_moments(
    block: np.ndarray,
    mask: np.ndarray | None = None,
    start: int = 0,
    *,
    diagonal: bool = False,
    compute_dtype: Any = None,
) -> Moments:
    """Moments of the rows of one chunk (optionally only those where ``mask`` is True).

    The chunk is shifted by the mean of its first :data:`GEMM_ROWS` rows, rounded to
    ``compute_dtype`` (the subtraction is exact in float32 when values and shift are
    within a factor of two), multiplied in ``compute_dtype`` in slices of
    :data:`GEMM_ROWS` rows, summed in float64, and corrected exactly for the distance
    between the shift and the chunk's mean, so accuracy does not depend on the offset
    of the data.

    Parameters
    ----------
    block
        Array of shape ``(rows, d)``.
    mask
        Boolean array of shape ``(rows,)`` selecting the rows to count.
    start
        Global index of the first row, used in error messages.
    diagonal
        Keep only per-column sums of squares (always in float64) instead of the full
        cross-product.
    compute_dtype
        Floating dtype of the products; defaults to the block's dtype (float32 or
        float64; anything else is computed in float64).

    Raises
    ------
    ValueError
        If the selected rows hold NaN or inf; the message names the chunk's rows.
    """
    stop = start + block.shape[0]
    index = None
    if mask is not None:
        index = np.flatnonzero(np.asarray(mask, dtype=bool))
        block = block[index]
    dtype = np.dtype(compute_dtype or block.dtype)
    if diagonal or dtype not in (np.float32, np.float64):
        dtype = np.dtype(np.float64)
    n, d = block.shape
    if n == 0:
        return Moments.empty(d, diagonal=diagonal)
    # any shift near the mean keeps the products well conditioned (the correction below is
    # exact), so the first slice's mean serves and saves a pass over the whole chunk
    shift = block[:GEMM_ROWS].mean(axis=0, dtype=np.float64).astype(dtype)
    offset = np.zeros(d)
    m2 = np.zeros((d,) if diagonal else (d, d))
    centred = np.empty((min(n, GEMM_ROWS), d), dtype=dtype)
    ones = np.ones(len(centred), dtype=dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite input is reported below
        for lo in range(0, n, GEMM_ROWS):
            rows = block[lo : lo + GEMM_ROWS]
            part = centred[: len(rows)]
            np.subtract(rows, shift, out=part, casting="unsafe")
            offset += ones[: len(rows)] @ part  # column sums by BLAS, accumulated in float64
            m2 += np.einsum("ij,ij->j", part, part) if diagonal else part.T @ part
    squares = np.diagonal(m2) if m2.ndim == 2 else m2
    if not (np.isfinite(offset).all() and np.isfinite(squares).all()):
        check_finite(block, start, stop, index)
    offset /= n
    spread = offset * offset if diagonal else np.outer(offset, offset)
    return Moments(n, shift.astype(np.float64) + offset, m2 - n * spread)


def moments_graph(
    arr: da.Array,
    mask: da.Array | None = None,
    *,
    diagonal: bool = False,
    compute_dtype: Any = None,
    split_every: int = 8,
) -> Any:
    """A lazy (``dask.delayed``) tree reduction of :func:`chunk_moments` over row chunks.

    Parameters
    ----------
    arr
        Dask array ``(cell, feature)`` with one chunk along features.
    mask
        Optional boolean dask array ``(cell,)`` chunked like ``arr``'s rows.
    diagonal, compute_dtype
        Passed to :func:`chunk_moments`.
    split_every
        Fan-in of the merge tree.

    Returns
    -------
    dask.delayed.Delayed
        Computes to a :class:`Moments`.
    """
    blocks = arr.to_delayed().ravel()
    masks: Sequence[Any] = [None] * len(blocks) if mask is None else mask.to_delayed().ravel()
    leaves = [
        dask.delayed(chunk_moments, pure=True)(
            block, m, start, diagonal=diagonal, compute_dtype=compute_dtype
        )
        for block, m, (start, _) in zip(blocks, masks, row_bounds(arr), strict=True)
    ]
    if not leaves:
        return dask.delayed(Moments.empty)(arr.shape[1], diagonal=diagonal)
    while len(leaves) > 1:
        leaves = [
            dask.delayed(_merge_all, pure=True)(*leaves[i : i + split_every])
            for i in range(0, len(leaves), split_every)
        ]
    return leaves[0]


def _merge_all(*parts: Moments) -> Moments:
    total = parts[0]
    for part in parts[1:]:
        total = total.merge(part)
    return total


def compute_moments(graph: Any) -> Moments:
    """Compute a :func:`moments_graph`.

    On the local threaded scheduler every dask thread runs its own GEMM, so BLAS is
    held to one thread per task meanwhile: that is faster than dask's and BLAS's
    threads competing for the same cores (distributed workers already run BLAS
    single-threaded).
    """
    with _one_blas_thread_per_task():
        (moments,) = dask.compute(graph)
    return moments


@contextmanager
def _one_blas_thread_per_task() -> Iterator[None]:
    scheduler = dask.config.get("scheduler", None)
    if default_client() is not None or scheduler not in (None, "threads", "threading"):
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
