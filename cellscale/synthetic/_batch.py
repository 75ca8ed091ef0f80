"""A synthetic imaging batch effect, for screens of several plates.

Plates imaged on different days, microscopes or stain lots differ in ways that have
nothing to do with biology: the brightness of each channel shifts (lamp power, exposure,
stain lot) and a fixed spatial texture appears (a camera's fixed-pattern noise, a
faint interference grating). A model trained on such plates can learn to recognise the
batch instead of the phenotype, and then fails on a batch it has not seen (seed 001:
features should not encode the imaging batch). :func:`with_batch_effect` adds such a
batch effect to a synthetic plate, so that training and evaluation can be tested on
screens whose batches a plain classifier can tell apart.
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

from cellscale.plate import add_lineage
from cellscale.synthetic._synthetic import DTYPES, synthetic_plate

__all__ = [
    "ATTRS_KEY",
    "BATCH_COLUMN",
    "BatchEffect",
    "batch_plate_map",
    "synthetic_screen_plates",
    "with_batch_effect",
]

BATCH_COLUMN = "Batch"
"""The plate-map column (and ``well`` coordinate) naming a plate's batch; a pipeline's
cell table carries it as ``Metadata_Batch``."""

ATTRS_KEY = "synthetic_batch"
"""The plate attribute recording the batch effect applied: batch, strength and seed."""

_GAIN_SD = 0.15  # log-normal spread of a channel's gain at strength 1
_MAX_OFFSET = 0.02  # largest offset of a channel at strength 1, as a fraction of full scale
_GRATING_AMPLITUDE = 0.08  # relative depth of the texture at strength 1
_PERIOD_PX = (4.0, 12.0)  # range of the texture's period in pixels
_INTENSITY_STREAM = 1
_TEXTURE_STREAM = 2


def _key(value: object) -> int:
    """A stable 63-bit integer of a batch or channel name (Python's ``hash`` is salted)."""
    digest = hashlib.sha256(str(value).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class BatchEffect:
    """The plate-level shifts of one imaging batch, drawn from ``(seed, batch)``.

    Pixels become ``clip(x * gain[c] * texture(y, x) + offset[c] * full_scale)``, with
    ``texture = 1 + amplitude * sin(2 pi (x cos(angle) + y sin(angle)) / period_px + phase)``
    a grating fixed in image coordinates. Every plate of a batch gets the same effect.
    """

    gains: tuple[float, ...]
    offsets: tuple[float, ...]
    amplitude: float
    period_px: float
    angle: float
    phase: float

    @classmethod
    def draw(cls, seed: int, batch: str, channels: Sequence[str], strength: float) -> BatchEffect:
        """The effect of ``batch`` on ``channels``; each channel's shift depends on its name.

        The random draws do not depend on ``strength``, which only scales them: a
        stronger effect of a batch points the same way as a weaker one.
        """
        gains, offsets = [], []
        for channel in channels:
            rng = np.random.default_rng([seed, _key(batch), _INTENSITY_STREAM, _key(channel)])
            gains.append(float(np.exp(strength * _GAIN_SD * rng.standard_normal())))
            offsets.append(float(strength * _MAX_OFFSET * rng.uniform()))
        rng = np.random.default_rng([seed, _key(batch), _TEXTURE_STREAM])
        return cls(
            gains=tuple(gains),
            offsets=tuple(offsets),
            amplitude=strength * _GRATING_AMPLITUDE,
            period_px=float(rng.uniform(*_PERIOD_PX)),
            angle=float(rng.uniform(0.0, np.pi)),
            phase=float(rng.uniform(0.0, 2.0 * np.pi)),
        )

    def texture(self, y: slice, x: slice) -> np.ndarray:
        """The multiplicative texture over rows ``y`` and columns ``x`` of the image."""
        ys = np.arange(y.start, y.stop, dtype=np.float64)[:, None]
        xs = np.arange(x.start, x.stop, dtype=np.float64)[None, :]
        wave = (xs * np.cos(self.angle) + ys * np.sin(self.angle)) / self.period_px
        return (1.0 + self.amplitude * np.sin(2.0 * np.pi * wave + self.phase)).astype(np.float32)


def _full_scale(dtype: np.dtype) -> float:
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0


def _shift_block(
    block: np.ndarray,
    effect: BatchEffect,
    channel_axis: int,
    *,
    block_info: dict[Any, Any],
) -> np.ndarray:
    """One chunk with ``effect`` applied; its place in the plate comes from ``block_info``."""
    location = block_info[0]["array-location"]
    channels = slice(*location[channel_axis])
    shape = [1] * block.ndim
    shape[channel_axis] = block.shape[channel_axis]
    gains = np.asarray(effect.gains[channels], dtype=np.float32).reshape(shape)
    full_scale = _full_scale(block.dtype)
    offsets = (np.asarray(effect.offsets[channels]) * full_scale).astype(np.float32).reshape(shape)
    values = (
        block.astype(np.float32)
        * gains
        * effect.texture(slice(*location[-2]), slice(*location[-1]))
    )
    values += offsets
    np.clip(values, 0.0, full_scale, out=values)
    if block.dtype.kind in "ui":
        np.rint(values, out=values)
    return values.astype(block.dtype)


def _check_arguments(plate: xr.DataArray, batch: str, strength: float, seed: int) -> None:
    if plate.dtype not in DTYPES:
        raise ValueError(
            f"plate {plate.name!r} has dtype {plate.dtype}; a batch effect needs one of "
            f"{[str(d) for d in DTYPES]} (floats from 0 to 1)"
        )
    if tuple(plate.dims[-2:]) != ("y", "x") or "c" not in plate.dims:
        raise ValueError(f"plate {plate.name!r} has dims {plate.dims}; need a c dim and y, x last")
    if not (np.isfinite(strength) and strength >= 0):
        raise ValueError(f"strength must be a number >= 0, got {strength}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if ATTRS_KEY in plate.attrs:
        raise ValueError(
            f"plate {plate.name!r} already has the batch effect {plate.attrs[ATTRS_KEY]}; "
            "apply with_batch_effect to the plate without one"
        )
    if BATCH_COLUMN in plate.coords:
        labelled = sorted({str(v) for v in plate.coords[BATCH_COLUMN].values})
        if labelled != [batch]:
            raise ValueError(
                f"plate {plate.name!r} is labelled batch {labelled} by its {BATCH_COLUMN!r} "
                f"coordinate, not {batch!r}; give the batch its plate map names"
            )


def with_batch_effect(
    plate: xr.DataArray, batch: str | int, *, strength: float = 1.0, seed: int = 0
) -> xr.DataArray:
    """``plate`` as imaged in batch ``batch``: per-channel gain and offset, and a fixed texture.

    Each channel's intensity is scaled by a gain (log-normal, 15 % spread at strength 1)
    and raised by an offset (up to 2 % of full scale), and every image is multiplied by
    a faint sinusoidal grating (8 % deep at strength 1) whose period (4 to 12 pixels),
    orientation and phase belong to the batch. These are the differences a classifier
    can exploit to recognise a batch instead of a phenotype (seed 001); a model whose
    features do not encode the batch is indifferent to them. The effect is drawn from
    ``(seed, batch)`` alone, so every plate of a batch gets the same one, and results are
    clipped to the range of the dtype.

    Parameters
    ----------
    plate
        A plate of dtype ``uint8``, ``uint16`` or ``float32`` (0 to 1), with or without
        its ``z`` dim, e.g. from :func:`~cellscale.synthetic.synthetic_plate`.
    batch
        The batch name (an int is taken as its string).
    strength
        Scale of the effect: 0 leaves the pixels as they are, 1 is a clear but
        realistic batch effect.
    seed
        Seed of the batch effects of a screen (not of the plate).

    Returns
    -------
    xarray.DataArray
        A lazy plate with the same dims, coordinates, chunks and dtype, one task per
        chunk of ``plate``; a ``well`` coordinate :data:`BATCH_COLUMN` (``"Batch"``)
        naming the batch, so a cell table of the plate carries ``Metadata_Batch``;
        ``attrs["synthetic_batch"]`` recording batch, strength and seed; and a lineage
        step ``with_batch_effect``.

    See Also
    --------
    batch_plate_map, synthetic_screen_plates

    Examples
    --------
    >>> from cellscale.synthetic import synthetic_plate, with_batch_effect
    >>> plate = synthetic_plate(wells=2, fields=1, n_z=2, shape=(32, 32))
    >>> shifted = with_batch_effect(plate, "day2")
    >>> shifted.coords["Batch"].values.tolist(), shifted.dtype
    (['day2', 'day2'], dtype('uint16'))
    """
    batch = str(batch)
    _check_arguments(plate, batch, float(strength), int(seed))
    channels = [str(c) for c in plate.coords["c"].values]
    effect = BatchEffect.draw(int(seed), batch, channels, float(strength))
    data = da.map_blocks(
        _shift_block,
        plate.data,
        effect=effect,
        channel_axis=plate.dims.index("c"),
        dtype=plate.dtype,
        meta=np.empty((0,) * plate.ndim, dtype=plate.dtype),
        token="synthetic-batch",
    )
    record = {"batch": batch, "strength": float(strength), "seed": int(seed)}
    shifted = plate.copy(data=data).assign_coords(
        {BATCH_COLUMN: ("well", np.full(plate.sizes["well"], batch, dtype=object))}
    )
    shifted.attrs = add_lineage(
        {**plate.attrs, ATTRS_KEY: record}, {"op": "with_batch_effect", **record}
    )
    return shifted


def batch_plate_map(plate_map: pd.DataFrame, batch: str | int) -> pd.DataFrame:
    """``plate_map`` with a :data:`BATCH_COLUMN` column naming ``batch`` in every well.

    A plate built with it (``synthetic_plate(plate_map=...)``, or a real plate opened with
    it) has a ``Batch`` well coordinate, which a pipeline's cell table carries as
    ``Metadata_Batch``.

    Examples
    --------
    >>> from cellscale.synthetic import default_plate_map
    >>> batch_plate_map(default_plate_map(2), "day1")["Batch"].tolist()
    ['day1', 'day1']
    """
    if BATCH_COLUMN in plate_map.columns:
        raise ValueError(
            f"the plate map already has a {BATCH_COLUMN!r} column "
            f"({sorted(plate_map[BATCH_COLUMN].astype(str).unique())}); use it as it is"
        )
    return plate_map.assign(**{BATCH_COLUMN: str(batch)})


def _plate_batches(n_plates: int, batches: int | Sequence[str | int]) -> list[str]:
    if n_plates < 1:
        raise ValueError(f"n_plates must be at least 1, got {n_plates}")
    if isinstance(batches, int):
        if batches < 1:
            raise ValueError(f"batches must be at least 1, got {batches}")
        return [f"batch{i % batches + 1}" for i in range(n_plates)]
    if len(batches) != n_plates:
        raise ValueError(f"{len(batches)} batches given for {n_plates} plates; give one per plate")
    return [str(b) for b in batches]


def synthetic_screen_plates(
    n_plates: int,
    batches: int | Sequence[str | int],
    *,
    strength: float = 1.0,
    seed: int = 0,
    name: str = "synthetic",
    **synthetic_plate_kwargs: Any,
) -> list[xr.DataArray]:
    """Synthetic plates of one screen, imaged in several batches.

    Plate ``i`` is :func:`~cellscale.synthetic.synthetic_plate` with seed ``seed + i``
    and name ``f"{name}-{i + 1}"``, shifted by :func:`with_batch_effect` of its batch with
    ``seed``: plates share their layout and phenotypes, differ in their cells, and
    plates of one batch share their batch effect.

    Parameters
    ----------
    n_plates
        Number of plates.
    batches
        The batch of each plate, or a number of batches ``batch1``, ``batch2`` …
        dealt to the plates in turn.
    strength, seed
        As for :func:`with_batch_effect`.
    name
        Prefix of the plate names.
    **synthetic_plate_kwargs
        Passed to :func:`~cellscale.synthetic.synthetic_plate` (wells, fields, shape …).

    Returns
    -------
    list of xarray.DataArray
        The lazy plates, in order.

    Examples
    --------
    >>> plates = synthetic_screen_plates(3, 2, wells=2, fields=1, n_z=1, shape=(16, 16))
    >>> [(p.name, p.coords["Batch"].values[0]) for p in plates]
    [('synthetic-1', 'batch1'), ('synthetic-2', 'batch2'), ('synthetic-3', 'batch1')]
    """
    return [
        with_batch_effect(
            synthetic_plate(seed=seed + i, name=f"{name}-{i + 1}", **synthetic_plate_kwargs),
            batch,
            strength=strength,
            seed=seed,
        )
        for i, batch in enumerate(_plate_batches(n_plates, batches))
    ]
