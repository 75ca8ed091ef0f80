"""Lazy Z projection of plate arrays."""

from __future__ import annotations

from typing import Literal

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from scipy import ndimage

from cellscale.plate import DIMS, add_lineage, as_plate

__all__ = ["PROJECTIONS", "focus_scores", "project"]

ProjectionMethod = Literal["max", "mean", "middle", "best_focus"]
PROJECTIONS: tuple[str, ...] = ("max", "mean", "middle", "best_focus")


def project(
    plate: xr.DataArray,
    method: ProjectionMethod = "max",
    *,
    focus_channel: str | int = 0,
) -> xr.DataArray:
    """Project a plate along ``z``, lazily.

    Parameters
    ----------
    plate
        A plate array with a ``z`` dim (anything :func:`cellscale.as_plate` accepts);
        Z stacks are rechunked whole where they are split.
    method
        ``"max"`` (keeps the dtype), ``"mean"`` (float32), ``"middle"`` (the plane at
        index ``n_z // 2``, keeps the dtype) or ``"best_focus"``: per (t, well, field), the
        plane where ``focus_channel`` is sharpest (variance of the Laplacian), taken
        in every channel so channels stay registered; the chosen plane indices are
        returned as the lazy coordinate ``focus_plane``.
    focus_channel
        Channel name or position that decides the focus plane (``best_focus`` only).

    Returns
    -------
    xarray.DataArray
        The plate without ``z``; nothing is computed until the result is.

    Examples
    --------
    >>> import dask.array as da, xarray as xr
    >>> stack = xr.DataArray(da.arange(8, chunks=8).reshape(1, 1, 1, 2, 1, 2, 2),
    ...                      dims=("t", "well", "field", "z", "c", "y", "x"),
    ...                      coords={"well": ["B03"]})
    >>> project(stack, "max").values.ravel().tolist()
    [4, 5, 6, 7]
    """
    if method not in PROJECTIONS:
        raise ValueError(f"method must be one of {PROJECTIONS}, got {method!r}")
    if "z" not in plate.dims:
        raise ValueError(f"plate has no 'z' dim to project (dims {plate.dims})")
    if tuple(plate.dims) == DIMS:
        plate = as_plate(plate)
    z_axis = plate.get_axis_num("z")
    data = plate.data.rechunk({z_axis: -1})
    name = f"project-{method}-{tokenize(data, method, focus_channel)}"
    coords = {k: v for k, v in plate.coords.items() if "z" not in v.dims}
    if method == "best_focus":
        projected, plane = _best_focus(plate, data, z_axis, focus_channel, name)
        unit_dims = tuple(d for d in plate.dims if d in ("t", "well", "field"))
        coords["focus_plane"] = (unit_dims, plane)
    else:
        out_dtype = np.dtype(np.float32) if method == "mean" else data.dtype
        projected = data.map_blocks(
            _project_block,
            method=method,
            axis=z_axis,
            drop_axis=z_axis,
            dtype=out_dtype,
            meta=np.empty((0,) * (data.ndim - 1), dtype=out_dtype),
            name=name,
        )
    dims = tuple(d for d in plate.dims if d != "z")
    result = xr.DataArray(projected, dims=dims, coords=coords, name=plate.name)
    step: dict[str, object] = {"op": "project", "method": method}
    if method == "best_focus":
        step["focus_channel"] = focus_channel
    result.attrs = add_lineage({**plate.attrs, "projection": method}, step)
    return result


def _project_block(block: np.ndarray, method: str, axis: int) -> np.ndarray:
    if method == "max":
        return block.max(axis=axis)
    if method == "mean":
        return block.mean(axis=axis, dtype=np.float64).astype(np.float32)
    return np.take(block, block.shape[axis] // 2, axis=axis)


def focus_scores(image_stack: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each plane of a ``(z, y, x)`` stack (higher is sharper)."""
    stack = np.asarray(image_stack, dtype=np.float32)
    return np.array([ndimage.laplace(plane).var() for plane in stack], dtype=np.float64)


def _best_focus(
    plate: xr.DataArray, data: da.Array, z_axis: int, focus_channel: str | int, name: str
) -> tuple[da.Array, da.Array]:
    if tuple(plate.dims) != DIMS:
        raise ValueError(f"best_focus needs a plate with dims {DIMS}, got {plate.dims}")
    c_axis = plate.get_axis_num("c")
    data = data.rechunk((1, 1, 1, -1, 1, -1, -1))
    reference = da.take(data, [_channel_position(plate, focus_channel)], axis=c_axis)
    plane = reference.map_blocks(
        _argmax_focus,
        z_axis=z_axis,
        chunks=tuple((1,) * len(ch) for ch in reference.chunks),
        dtype=np.int64,
        name=f"focus-plane-{name}",
    )
    projected = da.map_blocks(
        _take_plane,
        data,
        plane,
        axis=z_axis,
        drop_axis=z_axis,
        dtype=data.dtype,
        meta=np.empty((0,) * (data.ndim - 1), dtype=data.dtype),
        name=name,
    )
    return projected, plane.reshape(plane.shape[:3])


def _channel_position(plate: xr.DataArray, channel: str | int) -> int:
    names = [str(c) for c in plate.coords["c"].values] if "c" in plate.coords else []
    if isinstance(channel, str):
        if channel not in names:
            raise ValueError(f"focus_channel {channel!r} is not a channel of the plate: {names}")
        return names.index(channel)
    if not 0 <= channel < plate.sizes["c"]:
        raise ValueError(f"focus_channel {channel} is out of range for {plate.sizes['c']} channels")
    return channel


def _argmax_focus(block: np.ndarray, z_axis: int) -> np.ndarray:
    """Index of the sharpest plane of a block holding one image's Z stack."""
    stack = np.moveaxis(block, z_axis, 0).reshape(block.shape[z_axis], *block.shape[-2:])
    return np.full((1,) * block.ndim, np.argmax(focus_scores(stack)), dtype=np.int64)


def _take_plane(block: np.ndarray, plane: np.ndarray, axis: int) -> np.ndarray:
    return np.take(block, int(plane.ravel()[0]), axis=axis)
