"""Fit an illumination model to a plate in one streaming pass over its images."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
import xarray as xr

from cellscale.illumination import _basic_graph, _mean
from cellscale.illumination._fields import (
    FieldReader,
    Unit,
    bin_factor,
    present_units,
    reduced_fields,
    spread,
)
from cellscale.illumination._model import IlluminationModel
from cellscale.illumination._progress import compute_fit
from cellscale.plate import LINEAGE, PlateError, as_plate, channel_position

__all__ = ["METHODS", "MIN_FIELDS", "fit_binned", "fit_illumination"]

IlluminationMethod = Literal["mean", "basic"]
METHODS: tuple[str, ...] = ("mean", "basic")
MIN_FIELDS: dict[str, int] = {"mean": 8, "basic": 16}
"""The fewest fields each method estimates a flatfield from."""


def fit_illumination(
    plate: xr.DataArray,
    channels: str | Sequence[str] | None = None,
    method: IlluminationMethod = "mean",
    *,
    smoothing: float | None = None,
    sample: int | None = None,
    darkfield: bool = False,
    progress: bool = True,
) -> IlluminationModel:
    """Estimate each channel's flatfield (and darkfield) from many fields of a plate.

    One streaming pass: every image is read once, by one task that bins it (block
    means, Z planes averaged) to about 128 px a side, and memory does not grow with the
    number of fields. Holes (fields a well lacks) are skipped and not read; all time
    points of a field count as fields, its Z planes as one.

    Parameters
    ----------
    plate
        A plate, ``(t, well, field, [z,] c, y, x)`` (anything
        :func:`cellscale.as_plate` accepts).
    channels
        Channel name(s) to fit; all channels by default.
    method
        ``"mean"``: CellProfiler's approach (``CorrectIlluminationCalculate``: average
        the fields, smooth) made robust: per pixel, the geometric mean (a running sum
        of logs) over the fields where that pixel is background, within a factor 1.5
        of its field's local background, so cells drop out; smoothed by a Gaussian of
        sigma ``min(y, x) / 20`` fitted locally as a line so edges keep their falloff,
        scaled to mean 1; no darkfield. Needs at least 8 fields and reads them all
        (or ``sample``); fields densely covered by cells need many of them (see
        :mod:`cellscale.illumination._mean`).
        ``"basic"``: BaSiC (Peng et al. 2017, Nat Commun 8:14836): a low-rank plus
        sparse decomposition of the fields binned to about 128 px, with the flatfield
        smooth in the DCT domain and, with ``darkfield=True``, a darkfield. It holds
        the binned fields in memory, so it reads at most ``sample`` of them (500 by
        default); needs at least 16.
    smoothing
        Strength of the smoothing relative to the method's default (``1``): the
        Gaussian sigma for ``"mean"``, the weight of the DCT sparsity for ``"basic"``.
        Larger is smoother.
    sample
        Use at most this many fields, evenly spaced over the plate in
        ``(t, well, field)`` order (deterministic; the others are not read). ``None``:
        all fields for ``"mean"``, 500 for ``"basic"``.
    darkfield
        Also estimate a darkfield (``"basic"`` only). The darkfield is told apart from
        the flatfield by how images of different brightness differ, so it needs fields
        whose background level varies (exposure, bleaching, time); from fields that
        all share one background it is not identifiable, and the flatfield alone
        (``darkfield=False``) is the better model.
    progress
        Show a progress bar of the images read.

    Returns
    -------
    IlluminationModel
        Float32 flatfields (mean 1) of every fitted channel, darkfields where asked,
        the parameters used, and the provenance: plate name, its lineage (the store
        it was opened from), fields used and available, cellscale version, and for
        BaSiC how its solver went.

    Raises
    ------
    PlateError
        If a channel is not in the plate, or the plate (or ``sample``) gives fewer
        fields than the method needs (the message counts them).
    ValueError
        If ``method``, ``smoothing``, ``sample`` or ``darkfield`` is invalid.

    See Also
    --------
    correct_illumination : apply the model, lazily.

    Examples
    --------
    >>> from cellscale.synthetic import synthetic_plate
    >>> plate = synthetic_plate(wells=8, fields=2, n_z=1, shape=(64, 64), cells_per_field=4)
    >>> model = fit_illumination(plate, "nuclei", progress=False)
    >>> model.channels, model.shape, model.provenance["fields"]
    (('nuclei',), (64, 64), 16)
    """
    plate = as_plate(plate)
    return fit_binned(
        plate,
        partial(reduced_fields, plate),
        channels,
        method,
        smoothing=smoothing,
        sample=sample,
        darkfield=darkfield,
        progress=progress,
    )


def fit_binned(
    plate: xr.DataArray,
    read: FieldReader,
    channels: str | Sequence[str] | None = None,
    method: IlluminationMethod = "mean",
    *,
    smoothing: float | None = None,
    sample: int | None = None,
    darkfield: bool = False,
    progress: bool = True,
) -> IlluminationModel:
    """:func:`fit_illumination` from the binned fields ``read`` gives.

    A fit needs of each image only its binned copy (:func:`binned_image`); a pass that
    held the images (a projection writing them) can keep those, and this fits from them
    without reading a pixel: the same model as :func:`fit_illumination` of the plate.

    Parameters
    ----------
    plate
        The plate the fields are of: its coordinates, sizes, dtype, name and lineage
        (no pixel of it is read here).
    read
        Gives the binned fields of the units and channels the fit reads
        (:class:`~cellscale.illumination._fields.FieldReader`).
    channels, method, smoothing, sample, darkfield, progress
        As for :func:`fit_illumination`; the progress bar counts the images ``read``
        gives.

    Returns
    -------
    IlluminationModel
        As for :func:`fit_illumination`.

    Examples
    --------
    >>> from functools import partial
    >>> from cellscale.synthetic import synthetic_plate
    >>> from cellscale.illumination._fields import reduced_fields
    >>> plate = synthetic_plate(wells=8, fields=2, n_z=1, shape=(64, 64), cells_per_field=4)
    >>> model = fit_binned(plate, partial(reduced_fields, plate), progress=False)
    >>> bool((model.flatfield == fit_illumination(plate, progress=False).flatfield).all())
    True
    """
    _check_options(method, smoothing, sample, darkfield)
    names, positions = _channels(plate, channels)
    available = present_units(plate)
    limit = _basic_graph.DEFAULT_SAMPLE if sample is None and method == "basic" else sample
    units = spread(available, limit)
    _check_enough(plate, method, len(available), len(units))
    scale = 1.0 if smoothing is None else float(smoothing)
    factor = bin_factor((int(plate.sizes["y"]), int(plate.sizes["x"])))
    if method == "mean":
        flat, dark, params, record = _fit_mean(
            plate, read, positions, units, factor, scale, progress
        )
    else:
        flat, dark, params, record = _fit_basic(
            plate, read, positions, units, factor, scale, darkfield, progress
        )
    return IlluminationModel(
        channels=tuple(names),
        flatfield=flat,
        darkfield=dark,
        method=method,
        params={"smoothing": scale, **params},
        provenance=_provenance(plate, len(units), len(available), record),
    )


_FitResult = tuple[np.ndarray, np.ndarray | None, dict[str, Any], dict[str, Any]]


def _fit_mean(
    plate: xr.DataArray,
    read: FieldReader,
    positions: Sequence[int],
    units: Sequence[Unit],
    factor: int,
    scale: float,
    progress: bool,
) -> _FitResult:
    sigma = scale * _mean.SIGMA_FRACTION * min(plate.sizes["y"], plate.sizes["x"])
    layer, tasks = _mean.mean_graph(plate, read, positions, units, factor, sigma)
    flats = _compute(tasks, layer, units, positions, progress)
    return np.stack(flats), None, {"sigma_px": sigma, "bin": factor}, {}


def _fit_basic(
    plate: xr.DataArray,
    read: FieldReader,
    positions: Sequence[int],
    units: Sequence[Unit],
    factor: int,
    scale: float,
    darkfield: bool,
    progress: bool,
) -> _FitResult:
    layer, tasks = _basic_graph.basic_graph(
        plate, read, positions, units, factor, smoothing=scale, darkfield=darkfield
    )
    results = _compute(tasks, layer, units, positions, progress)
    flat = np.stack([flat for flat, _, _ in results])
    dark = np.stack([dark for _, dark, _ in results]) if darkfield else None
    names = [str(plate.coords["c"].values[p]) for p in positions]
    solver = {name: record for name, (_, _, record) in zip(names, results, strict=True)}
    return flat, dark, {"darkfield": darkfield, "bin": factor}, {"basic": solver}


def _compute(
    tasks: Sequence[Any],
    layer: str,
    units: Sequence[Unit],
    positions: Sequence[int],
    progress: bool,
) -> list[Any]:
    images = len(units) * len(positions)
    return compute_fit(tasks, layer, images, progress=progress, desc="fit-illumination")


def _check_options(method: str, smoothing: Any, sample: Any, darkfield: bool) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if smoothing is not None and not (
        not isinstance(smoothing, bool)
        and isinstance(smoothing, int | float | np.integer | np.floating)
        and math.isfinite(smoothing)
        and smoothing > 0
    ):
        raise ValueError(
            f"smoothing must be a positive number (1 is the method's default), got {smoothing!r}"
        )
    if sample is not None and (
        isinstance(sample, bool) or not isinstance(sample, int | np.integer) or sample < 1
    ):
        raise ValueError(f"sample must be a positive number of fields or None, got {sample!r}")
    if darkfield and method != "basic":
        raise ValueError(f"darkfield=True needs method='basic'; method {method!r} fits none")


def _channels(
    plate: xr.DataArray, channels: str | Sequence[str] | None
) -> tuple[list[str], list[int]]:
    names = [str(c) for c in plate.coords["c"].values]
    if channels is None:
        return names, list(range(len(names)))
    wanted = [channels] if isinstance(channels, str) else [str(c) for c in channels]
    if not wanted or len(set(wanted)) != len(wanted):
        raise ValueError(f"channels must be distinct channel names, got {wanted}")
    return wanted, [channel_position(plate, name) for name in wanted]


def _check_enough(plate: xr.DataArray, method: str, available: int, used: int) -> None:
    needed = MIN_FIELDS[method]
    if used >= needed:
        return
    if used < available:
        raise PlateError(
            f"sample={used} keeps {used} of the plate's {available} fields; "
            f"method {method!r} needs at least {needed} to estimate a flatfield"
        )
    n_t, n_wells, n_fields = (plate.sizes[d] for d in ("t", "well", "field"))
    holes = n_t * n_wells * n_fields - available
    missing = f", {holes} of them missing" if holes else ""
    raise PlateError(
        f"the plate has {available} fields ({n_t} time point(s) x {n_wells} wells x "
        f"{n_fields} fields{missing}); method {method!r} needs at least {needed} to "
        "estimate a flatfield"
    )


def _provenance(
    plate: xr.DataArray, used: int, available: int, record: dict[str, Any]
) -> dict[str, Any]:
    import cellscale

    return {
        "plate": str(plate.name),
        LINEAGE: list(plate.attrs.get(LINEAGE, [])),
        "fields": used,
        "fields_available": available,
        "cellscale_version": cellscale.__version__,
        **record,
    }
