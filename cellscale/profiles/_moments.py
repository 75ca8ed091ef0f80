"""Streaming first and second moments: per-chunk statistics and Chan et al.'s pairwise merge.

Each row chunk yields its count, mean and *centred* cross-product (or centred sum of
squares for a diagonal-only accumulation). Centring inside the chunk keeps a large
common offset from cancelling catastrophically, and the pairwise merge of
Chan, Golub & LeVeque (1979) combines chunk statistics exactly, in any order, so a
tree reduction over a cluster gives the same answer as one pass over all rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
from scipy.linalg import blas

from cellscale._stages import default_client
from cellscale.io._raw_rows import RawRows
from cellscale.profiles._io import row_bounds

__all__ = [
    "Moments",
    "check_finite",
    "chunk_moments",
    "compute_moments",
    "moments_graph",
    "raw_chunk_moments",
]

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
    dtype = _product_dtype(block.dtype, compute_dtype, diagonal)
    n, d = block.shape
    if n == 0:
        return Moments.empty(d, diagonal=diagonal)
    # any shift near the mean keeps the products well conditioned (the correction in
    # _Sums.moments is exact), so the first slice's mean serves and saves a pass
    sums = _Sums(block[:GEMM_ROWS].mean(axis=0, dtype=np.float64).astype(dtype), diagonal)
    centred = np.empty((min(n, GEMM_ROWS), d), dtype=dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite input is reported below
        for lo in range(0, n, GEMM_ROWS):
            rows = block[lo : lo + GEMM_ROWS]
            part = centred[: len(rows)]
            np.subtract(rows, sums.shift, out=part, casting="unsafe")
            sums.add(part)
    return sums.moments(lambda: check_finite(block, start, stop, index))


def raw_chunk_moments(
    source: RawRows,
    start: int,
    stop: int,
    mask: np.ndarray | None = None,
    *,
    diagonal: bool = False,
    compute_dtype: Any = None,
) -> Moments:
    """:func:`chunk_moments` of rows ``start:stop`` of ``source``, read slice by slice.

    Each slice of :data:`GEMM_ROWS` rows is read from the chunk files straight into the
    task's one work buffer and shifted there, so the chunk is never held whole. When
    the products need another dtype than the stored one, the rows are read whole and
    passed to :func:`chunk_moments`.
    """
    dtype = _product_dtype(source.dtype, compute_dtype, diagonal)
    if dtype != source.dtype:
        return chunk_moments(
            source[start:stop], mask, start, diagonal=diagonal, compute_dtype=compute_dtype
        )
    index = None if mask is None else np.flatnonzero(np.asarray(mask, dtype=bool))
    d = source.shape[1]
    buffer = np.empty((min(stop - start, GEMM_ROWS), d), dtype=dtype)
    sums: _Sums | None = None
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite input is reported below
        for lo in range(start, stop, GEMM_ROWS):
            part = buffer[: min(GEMM_ROWS, stop - lo)]
            keep = None
            if index is not None:
                first, last = np.searchsorted(index, [lo - start, lo - start + len(part)])
                keep = index[first:last] - (lo - start)
                if len(keep) == 0:
                    continue  # no selected row in this slice: skip reading it
            source.read_into(part, lo)
            if keep is not None:  # move the selected rows to the front
                part = buffer[: len(keep)]
                part[...] = buffer[keep]
            if sums is None:
                sums = _Sums(part.mean(axis=0, dtype=np.float64).astype(dtype), diagonal)
            np.subtract(part, sums.shift, out=part)
            sums.add(part)
    if sums is None:
        return Moments.empty(d, diagonal=diagonal)
    return sums.moments(lambda: _check_rows(source, start, stop, index))


def _check_rows(source: RawRows, start: int, stop: int, index: np.ndarray | None) -> None:
    rows = source[start:stop]
    check_finite(rows if index is None else rows[index], start, stop, index)


def _product_dtype(dtype: Any, compute_dtype: Any, diagonal: bool) -> np.dtype[Any]:
    product = np.dtype(compute_dtype or dtype)
    if diagonal or product not in (np.float32, np.float64):
        return np.dtype(np.float64)
    return product


class _Sums:
    """Running column sums and cross-products of shifted rows, accumulated in float64."""

    def __init__(self, shift: np.ndarray, diagonal: bool) -> None:
        d = shift.shape[0]
        self.shift = shift
        self.n = 0
        self.offset = np.zeros(d)
        self.m2 = np.zeros((d,) if diagonal else (d, d))
        # one product buffer per pass: new d x d arrays for every slice cost page faults
        self._product = None if diagonal else np.empty((d, d), dtype=shift.dtype)

    def add(self, part: np.ndarray) -> None:
        """Add rows already shifted by :attr:`shift`."""
        self.n += len(part)
        self.offset += np.ones(len(part), dtype=part.dtype) @ part  # column sums by BLAS
        if self._product is None:
            self.m2 += np.einsum("ij,ij->j", part, part)
        else:
            self.m2 += np.matmul(part.T, part, out=self._product)

    def moments(self, locate_non_finite: Callable[[], None]) -> Moments:
        """The moments of the rows added; ``locate_non_finite`` raises on NaN or inf input."""
        squares = np.diagonal(self.m2) if self.m2.ndim == 2 else self.m2
        if not (np.isfinite(self.offset).all() and np.isfinite(squares).all()):
            locate_non_finite()
        offset = self.offset / self.n
        if self.m2.ndim == 1:
            self.m2 -= self.n * offset * offset
        else:  # m2 -= n * outer(offset, offset) in place: a symmetric BLAS rank-1 update
            blas.dger(-float(self.n), offset, offset, a=self.m2.T, overwrite_a=True)
        return Moments(self.n, self.shift.astype(np.float64) + offset, self.m2)


def moments_graph(
    arr: da.Array,
    mask: da.Array | None = None,
    *,
    raw: RawRows | None = None,
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
    raw
        The chunk files that ``arr`` reads, when ``arr`` is exactly their rows
        (:attr:`~cellscale.profiles._io.CellInput.raw`): each leaf then reads its rows
        slice by slice with :func:`raw_chunk_moments` instead of loading its chunk.
    diagonal, compute_dtype
        Passed to :func:`chunk_moments`.
    split_every
        Fan-in of the merge tree.

    Returns
    -------
    dask.delayed.Delayed
        Computes to a :class:`Moments`.
    """
    bounds = row_bounds(arr)
    masks: Sequence[Any] = [None] * len(bounds) if mask is None else mask.to_delayed().ravel()
    options = {"diagonal": diagonal, "compute_dtype": compute_dtype}
    if raw is not None:
        if raw.shape != arr.shape:
            raise ValueError(f"raw rows of shape {raw.shape} do not match the array {arr.shape}")
        leaves = [
            dask.delayed(raw_chunk_moments, pure=True)(raw, start, stop, m, **options)
            for m, (start, stop) in zip(masks, bounds, strict=True)
        ]
    else:
        blocks = arr.to_delayed().ravel()
        leaves = [
            dask.delayed(chunk_moments, pure=True)(block, m, start, **options)
            for block, m, (start, _) in zip(blocks, masks, bounds, strict=True)
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
