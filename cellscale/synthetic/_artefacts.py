"""Imaging artefacts planted in chosen wells of a synthetic plate, with their truth.

Outlier detection (seed 004) is judged by whether it finds what went wrong in a well:
fluorescent debris, an over-exposed (saturated) acquisition, or a field out of focus.
:func:`with_artefacts` plants one of these in the wells it is given and returns the
truth beside the plate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from cellscale.plate import add_lineage, normalize_well
from cellscale.synthetic._synthetic import DTYPES

__all__ = ["ARTEFACT_KINDS", "ATTRS_KEY", "with_artefacts"]

ARTEFACT_KINDS = ("debris", "saturated", "blur")
"""The artefacts :func:`with_artefacts` plants."""

ATTRS_KEY = "synthetic_artefacts"
"""The plate attribute listing the artefacts planted: kind, wells and seed of each."""

_DEBRIS_PER_FIELD = (3, 8)  # range of debris particles per field
_DEBRIS_RADIUS_PX = (2.0, 6.0)
_DEBRIS_LEVEL = 0.9  # brightness of debris, as a fraction of full scale, in every channel
_SATURATION_GAIN = 6.0  # over-exposure: intensities times this, clipped at full scale
_BLUR_SIGMA_PX = 3.0


def _key(*parts: object) -> list[int]:
    """Stable integers of names (Python's ``hash`` is salted), for seeding."""
    return [
        int.from_bytes(hashlib.sha256(str(p).encode()).digest()[:8], "little") >> 1 for p in parts
    ]


def _debris(seed: int, t: object, well: str, field: object, shape: tuple[int, int]) -> pd.DataFrame:
    """The debris particles of one field: centre ``y``, ``x`` and ``radius`` in pixels."""
    rng = np.random.default_rng([seed, *_key("debris", t, well, field)])
    n = int(rng.integers(*_DEBRIS_PER_FIELD, endpoint=True))
    return pd.DataFrame(
        {
            "y": rng.uniform(0, shape[0], n),
            "x": rng.uniform(0, shape[1], n),
            "radius": rng.uniform(*_DEBRIS_RADIUS_PX, n),
        }
    )


@dataclass(frozen=True)
class _Units:
    """The plate's time points, wells and fields by position, and its image shape."""

    t: np.ndarray
    well: np.ndarray
    field: np.ndarray
    shape: tuple[int, int]


def _full_scale(dtype: np.dtype) -> float:
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0


def _plant_block(
    block: np.ndarray,
    kind: str,
    chosen: frozenset[int],
    units: _Units,
    seed: int,
    *,
    block_info: dict[Any, Any],
) -> np.ndarray:
    """One chunk ``(t, well, field, ..., y, x)`` with the artefact in its chosen wells."""
    location = block_info[0]["array-location"]
    (t0, _), (w0, _), (f0, _) = location[:3]
    window = location[-2:]
    out = block.copy()
    full = _full_scale(block.dtype)
    for (ti, wi, fi), image in _images(out):
        if w0 + wi not in chosen:
            continue
        values = image.astype(np.float32)
        if kind == "saturated":
            values *= _SATURATION_GAIN
        elif kind == "blur":
            sigma = [0.0] * (values.ndim - 2) + [_BLUR_SIGMA_PX] * 2
            values = ndimage.gaussian_filter(values, sigma, mode="nearest")
        else:
            unit = (units.t[t0 + ti], units.well[w0 + wi], units.field[f0 + fi])
            discs = _discs(_debris(seed, *unit, units.shape), *window)
            values = np.maximum(values, full * _DEBRIS_LEVEL * discs)
        np.clip(values, 0.0, full, out=values)
        image[...] = np.rint(values) if block.dtype.kind in "ui" else values
    return out


def _images(block: np.ndarray) -> Any:
    """``((t, well, field), view)`` for every image of a chunk, positions within it."""
    for index in np.ndindex(block.shape[:3]):
        yield index, block[index]


def _discs(particles: pd.DataFrame, ys: tuple[int, int], xs: tuple[int, int]) -> np.ndarray:
    """Soft-edged discs of the particles over rows ``ys`` and columns ``xs`` (0 to 1)."""
    yy = np.arange(*ys, dtype=np.float32)[:, None]
    xx = np.arange(*xs, dtype=np.float32)[None, :]
    level = np.zeros((ys[1] - ys[0], xs[1] - xs[0]), np.float32)
    for y, x, radius in particles[["y", "x", "radius"]].itertuples(index=False):
        distance = np.sqrt((yy - y) ** 2 + (xx - x) ** 2)
        level = np.maximum(level, np.clip(radius + 0.5 - distance, 0.0, 1.0))
    return level


def _check(plate: xr.DataArray, kind: str, wells: list[str], seed: int) -> None:
    if kind not in ARTEFACT_KINDS:
        raise ValueError(f"kind must be one of {ARTEFACT_KINDS}, got {kind!r}")
    if plate.dtype not in DTYPES:
        raise ValueError(
            f"plate {plate.name!r} has dtype {plate.dtype}; artefacts need one of "
            f"{[str(d) for d in DTYPES]} (floats from 0 to 1)"
        )
    if tuple(plate.dims[:3]) != ("t", "well", "field") or tuple(plate.dims[-2:]) != ("y", "x"):
        raise ValueError(
            f"plate {plate.name!r} has dims {plate.dims}; need (t, well, field, …, y, x)"
        )
    present = [str(w) for w in plate.coords["well"].values]
    unknown = [w for w in wells if w not in present]
    if unknown or not wells:
        raise ValueError(
            f"wells {unknown or wells} are not wells of plate {plate.name!r}: {present}"
        )
    if kind == "blur" and any(len(c) > 1 for c in plate.data.chunks[-2:]):
        raise ValueError(
            f"plate {plate.name!r} is chunked along y or x; blur needs whole images "
            "(rechunk y and x to one chunk)"
        )
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def with_artefacts(
    plate: xr.DataArray, wells: Sequence[str], kind: str = "debris", *, seed: int = 0
) -> tuple[xr.DataArray, pd.DataFrame]:
    """``plate`` with an imaging artefact in every image of ``wells``, and where it is.

    * ``"debris"``: 3 to 8 bright particles per field (2 to 6 pixels in radius, 90 % of
      full scale in every channel, as autofluorescent dust is), some on cells, some in
      the background, where a segmenter finds them as small, very bright objects.
    * ``"saturated"``: an over-exposed acquisition: intensities six times higher,
      clipped at full scale, so cells flatten into saturated plateaus.
    * ``"blur"``: the wells imaged out of focus: a Gaussian blur of 3 pixels.

    Parameters
    ----------
    plate
        A plate ``(t, well, field, …, y, x)`` of dtype ``uint8``, ``uint16`` or
        ``float32``, e.g. from :func:`~cellscale.synthetic.synthetic_plate` (with or
        without its ``z`` dim).
    wells
        The wells to spoil (``"B3"`` or ``"B03"``).
    kind
        One of :data:`ARTEFACT_KINDS`.
    seed
        Seed of the debris positions (with the well, field and time).

    Returns
    -------
    plate : xarray.DataArray
        Lazy, with the same dims, coordinates, chunks and dtype; ``attrs`` list the
        artefacts under ``"synthetic_artefacts"`` and a lineage step ``with_artefacts``.
        Several kinds can be planted one after the other.
    truth : pandas.DataFrame
        One row per spoiled image (``t``, ``well``, ``field``, ``kind``); for debris,
        one row per particle with its centre ``y``, ``x`` and ``radius`` in pixels.

    Examples
    --------
    >>> from cellscale.synthetic import synthetic_plate
    >>> plate = synthetic_plate(wells=4, fields=1, n_z=1, shape=(32, 32))
    >>> spoiled, truth = with_artefacts(plate, ["A02"], "blur")
    >>> truth[["well", "field", "kind"]].values.tolist()
    [['A02', 1, 'blur']]
    """
    chosen_wells = [normalize_well(str(w)) for w in wells]
    _check(plate, kind, chosen_wells, int(seed))
    present = [str(w) for w in plate.coords["well"].values]
    units = _Units(
        t=plate.coords["t"].values,
        well=np.asarray(present, dtype=object),
        field=plate.coords["field"].values,
        shape=(int(plate.sizes["y"]), int(plate.sizes["x"])),
    )
    data = da.map_blocks(
        _plant_block,
        plate.data,
        kind,
        frozenset(present.index(w) for w in chosen_wells),
        units,
        int(seed),
        dtype=plate.dtype,
        meta=np.empty((0,) * plate.ndim, dtype=plate.dtype),
        token=f"synthetic-{kind}",
    )
    record = {"kind": kind, "wells": chosen_wells, "seed": int(seed)}
    attrs = {**plate.attrs, ATTRS_KEY: [*plate.attrs.get(ATTRS_KEY, []), record]}
    spoiled = plate.copy(data=data)
    spoiled.attrs = add_lineage(attrs, {"op": "with_artefacts", **record})
    return spoiled, _truth(units, chosen_wells, kind, int(seed))


def _truth(units: _Units, wells: list[str], kind: str, seed: int) -> pd.DataFrame:
    frames = []
    for t in units.t:
        for well in wells:
            for field in units.field:
                where = {"t": t, "well": well, "field": field, "kind": kind}
                if kind == "debris":
                    frames.append(_debris(seed, t, well, field, units.shape).assign(**where))
                else:
                    frames.append(pd.DataFrame([where]))
    columns = ["t", "well", "field", "kind"] + (["y", "x", "radius"] if kind == "debris" else [])
    return pd.concat(frames, ignore_index=True)[columns]
