"""Lazy, chunk-wise affine maps ``((x - center) / scale) @ matrix`` over cell rows."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

__all__ = ["affine", "lazy_affine", "output_dtype"]


def output_dtype(dtype: np.dtype) -> np.dtype:
    """float32 stays float32; every other input type gives float64."""
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


def affine(
    block: np.ndarray,
    center: np.ndarray,
    scale: np.ndarray | None = None,
    matrix: np.ndarray | None = None,
) -> np.ndarray:
    """Apply ``((block - center) / scale) @ matrix`` to one chunk (eager).

    For float32 input the centre is subtracted after rounding it to float32 (exact for
    values near the centre), the rounding residue is corrected in float64, and the
    product runs in float32, so a large offset costs no precision and no float64 copy.

    Parameters
    ----------
    block
        Rows ``(n, d)``.
    center
        Float64 ``(d,)``.
    scale
        Float64 ``(d,)`` divisor, or ``None`` for 1.
    matrix
        ``(d, k)`` matrix, or ``None`` for the identity.

    Returns
    -------
    numpy.ndarray
        ``(n, k)`` in :func:`output_dtype` of the block.
    """
    dtype = output_dtype(block.dtype)
    shift = center.astype(dtype)
    residue = center - shift.astype(np.float64)
    inv = np.ones_like(center) if scale is None else 1.0 / scale
    y = block.astype(dtype, copy=False) - shift
    bias = residue * inv
    if matrix is None:
        return ((y * inv.astype(dtype)) - bias.astype(dtype)).astype(dtype, copy=False)
    weights = inv[:, None] * matrix
    out = y @ weights.astype(dtype)
    out -= (bias @ matrix).astype(dtype)
    return out


def lazy_affine(
    arr: da.Array,
    center: np.ndarray,
    scale: np.ndarray | None = None,
    matrix: np.ndarray | None = None,
) -> da.Array:
    """:func:`affine` over every row chunk of ``arr``, computing nothing now."""
    k = arr.shape[1] if matrix is None else matrix.shape[1]
    # Wrapped once so the graph holds each parameter a single time, not once per task.
    params = [None if p is None else dask.delayed(p, pure=True) for p in (center, scale, matrix)]
    return da.map_blocks(
        affine,
        arr,
        *params,
        dtype=output_dtype(arr.dtype),
        chunks=(arr.chunks[0], (k,)),
        meta=np.empty((0, 0), dtype=output_dtype(arr.dtype)),
    )
