"""Apply an illumination model to a plate, lazily: ``(image - darkfield) / flatfield``."""

from __future__ import annotations

import warnings
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from numpy.typing import DTypeLike

from cellscale.illumination._model import IlluminationModel
from cellscale.plate import PlateError, add_lineage, as_plate

__all__ = ["correct_illumination"]


def correct_illumination(
    plate: xr.DataArray, model: IlluminationModel, *, dtype: DTypeLike | None = None
) -> xr.DataArray:
    """Correct every image of a plate for uneven illumination, lazily.

    Each image becomes ``(image - darkfield) / flatfield`` of its channel (no
    darkfield: ``image / flatfield``); the flatfield has mean 1, so intensities keep
    their scale. One task per chunk of the plate, as it is chunked (images split in
    ``y`` or ``x`` are joined first); nothing is computed until the result is.

    Parameters
    ----------
    plate
        A plate, ``(t, well, field, [z,] c, y, x)``, with images of the model's shape.
    model
        From :func:`fit_illumination` (or built by hand).
    dtype
        ``None`` keeps the plate's dtype: integers are rounded and clipped to their
        range (a corrected pixel brighter than the dtype can hold saturates), floats
        are kept as computed. ``"float32"`` returns float32 without rounding or
        clipping.

    Returns
    -------
    xarray.DataArray
        The corrected plate, with the same dims, coordinates and chunks; its lineage
        (``attrs["lineage"]``) ends with ``{"op": "correct_illumination", "model":
        <the model's digest>, ...}``, so an output written from it records what made it.

    Raises
    ------
    PlateError
        If the plate's images and the model's profiles differ in shape (both are
        named), or none of the plate's channels is in the model.
    ValueError
        If ``dtype`` is neither ``None`` nor float32.

    Warns
    -----
    UserWarning
        Channels of the plate that the model lacks pass through unchanged (only cast
        to float32 with ``dtype="float32"``); the warning names them.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from cellscale.illumination import IlluminationModel
    >>> images = xr.DataArray(np.full((1, 1, 1, 1, 2, 2), 100, "uint16"),
    ...                       dims=("t", "well", "field", "c", "y", "x"),
    ...                       coords={"well": ["A01"], "c": ["DNA"]})
    >>> model = IlluminationModel(channels=["DNA"], flatfield=[[[0.5, 1.5], [1.0, 1.0]]])
    >>> correct_illumination(images, model).values.ravel().tolist()
    [200, 67, 100, 100]
    """
    plate = as_plate(plate)
    out_dtype = _output_dtype(plate.dtype, dtype)
    _check_shape(plate, model)
    names = [str(c) for c in plate.coords["c"].values]
    corrected = [name for name in names if name in model.channels]
    _check_channels(names, corrected, model)
    work = np.result_type(plate.dtype, np.float32)
    data = plate.data.rechunk({plate.get_axis_num("y"): -1, plate.get_axis_num("x"): -1})
    profiles = [_profile(model.flatfield, names, model, work, data.chunks, 1.0, "flatfield")]
    if model.darkfield is not None:
        profiles.append(
            _profile(model.darkfield, names, model, work, data.chunks, 0.0, "darkfield")
        )
    result = da.map_blocks(
        _correct_block,
        data,
        *profiles,
        work=work,
        out_dtype=out_dtype,
        dtype=out_dtype,
        meta=np.empty((0,) * data.ndim, out_dtype),
        name=f"correct-illumination-{tokenize(data, model.digest, out_dtype)}",
    )
    step = {
        "op": "correct_illumination",
        "method": model.method,
        "model": model.digest,
        "channels": corrected,
        "dtype": str(out_dtype),
    }
    return plate.copy(data=result).assign_attrs(add_lineage(plate.attrs, step))


def _output_dtype(plate_dtype: np.dtype, dtype: DTypeLike | None) -> np.dtype:
    if np.dtype(plate_dtype).kind not in "iuf":
        raise PlateError(f"cannot correct images of dtype {plate_dtype}: they must be numbers")
    if dtype is None:
        return np.dtype(plate_dtype)
    if np.dtype(dtype) != np.float32:
        raise ValueError(f"dtype must be None (keep the plate's) or 'float32', got {dtype!r}")
    return np.dtype(np.float32)


def _check_shape(plate: xr.DataArray, model: IlluminationModel) -> None:
    shape = (int(plate.sizes["y"]), int(plate.sizes["x"]))
    if shape != model.shape:
        raise PlateError(
            f"the illumination model was fitted on {model.shape[0]} x {model.shape[1]} images; "
            f"this plate's images are {shape[0]} x {shape[1]}"
        )


def _check_channels(names: list[str], corrected: list[str], model: IlluminationModel) -> None:
    if not corrected:
        raise PlateError(
            f"none of the plate's channels {names} is in the illumination model, "
            f"fitted on {list(model.channels)}"
        )
    passed = [name for name in names if name not in model.channels]
    if passed:
        warnings.warn(
            f"channels {passed} are not in the illumination model (fitted on "
            f"{list(model.channels)}); they pass through uncorrected",
            UserWarning,
            stacklevel=3,
        )


def _profile(
    values: np.ndarray,
    names: list[str],
    model: IlluminationModel,
    work: np.dtype,
    chunks: tuple[tuple[int, ...], ...],
    neutral: float,
    what: str,
) -> da.Array:
    """``(c, y, x)`` profiles in the plate's channel order, chunked like its ``c`` axis.

    Channels the model lacks get the ``neutral`` value (flatfield 1, darkfield 0), which
    leaves them exactly as they are.
    """
    out = np.full((len(names), *model.shape), neutral, dtype=work)
    for i, name in enumerate(names):
        if name in model.channels:
            out[i] = values[model.channels.index(name)]
    c_chunks = chunks[-3]
    name = f"illumination-{what}-{model.digest}-{tokenize(names, c_chunks, work)}"
    return da.from_array(out, chunks=(c_chunks, -1, -1), name=name)


def _correct_block(
    block: np.ndarray,
    flat: np.ndarray,
    dark: np.ndarray | None = None,
    *,
    work: np.dtype,
    out_dtype: np.dtype,
) -> np.ndarray:
    """Correct a block whose last three axes are ``(c, y, x)``; profiles broadcast over the rest."""
    out: Any = block.astype(work)
    if dark is not None:
        out -= dark
    out /= flat
    if out_dtype.kind in "iu":
        info = np.iinfo(out_dtype)
        np.rint(out, out=out)
        np.clip(out, info.min, info.max, out=out)
    return out.astype(out_dtype, copy=False)
