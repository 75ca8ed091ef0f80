"""CellProfiler feature sets from cp-measure (granularity, texture, Zernike, radial distribution).

cp-measure (``pip install cellscale[measure]``) implements CellProfiler's measurements as
functions of a label image and one channel. Its names become
``<Compartment>_<Group>_<Feature>_<Channel>``: ``Nuclei_Texture_Contrast_3_00_256_DNA``,
``Cells_Granularity_1_DNA``, ``Nuclei_AreaShape_Zernike_2_0_DNA``,
``Cells_RadialDistribution_FracAtD_1of4_DNA``. Intensities are scaled to ``[0, 1]`` by the
dtype's range first, as CellProfiler expects.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from cellscale.cells import compartment_prefix

__all__ = ["CP_MEASURE_SETS", "cp_measure_features"]

CP_MEASURE_SETS = ("granularity", "texture", "zernike", "radial_distribution")
"""The cp-measure feature sets :func:`cellscale.measure` offers (``cp_measure=[...]``)."""

_GROUP = {"texture": "Texture", "zernike": "AreaShape"}


def cp_measure_features(
    labels: np.ndarray,
    pixels: np.ndarray,
    compartment: str,
    channel: str,
    n: int,
    sets: Sequence[str],
) -> pd.DataFrame:
    """cp-measure's ``sets`` for objects ``1 … n`` of ``labels`` on one 2D channel.

    Objects absent from ``labels`` get NaN; a field without objects gets the columns only.
    """
    columns = {
        name: np.full(n, np.nan) for name in _column_names(tuple(sets), compartment, channel)
    }
    present = np.unique(labels[labels > 0])
    if len(present):
        image = _unit_range(pixels)
        rows = present.astype(np.int64) - 1
        for name in sets:
            for feature, values in _function(name)(labels.astype(np.int32), image).items():
                column = _name(name, feature, compartment, channel)
                columns[column][rows] = np.asarray(values, dtype=np.float64)
    return pd.DataFrame(columns, index=pd.RangeIndex(1, n + 1, name="label"))


def _name(measurement: str, feature: str, compartment: str, channel: str) -> str:
    group = _GROUP.get(measurement)
    base = f"{group}_{feature}" if group else feature
    return f"{compartment_prefix(compartment)}_{base}_{channel}"


@functools.cache
def _column_names(sets: tuple[str, ...], compartment: str, channel: str) -> list[str]:
    """Every column the sets give, found by measuring one object once."""
    disc = np.zeros((32, 32), np.int32)
    yy, xx = np.mgrid[:32, :32]
    disc[(yy - 16) ** 2 + (xx - 16) ** 2 < 64] = 1
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    names: list[str] = []
    for name in sets:
        names += [_name(name, f, compartment, channel) for f in _function(name)(disc, image)]
    return names


def _function(name: str) -> Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    if name not in CP_MEASURE_SETS:
        raise ValueError(f"cp_measure sets are {CP_MEASURE_SETS}, got {name!r}")
    try:
        from cp_measure.bulk import get_core_measurements
    except ImportError as err:
        raise ImportError(
            "cp-measure is not installed: pip install 'cellscale[measure]' (or cp-measure)"
        ) from err
    return get_core_measurements()[name]


def _unit_range(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype.kind in "ui":
        return (pixels / np.iinfo(pixels.dtype).max).astype(np.float32)
    return pixels.astype(np.float32)
