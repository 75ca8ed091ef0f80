"""Per-object features of one field: shape (scikit-image regionprops) and per-channel intensity.

Objects are the ids ``1 … n`` of the first compartment; a second compartment (the nuclei
of cells) is measured for the same ids, missing objects giving NaN. Names follow
CellProfiler's MeasureObjectSizeShape and MeasureObjectIntensity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.measure import regionprops_table

from cellscale.cells import feature_column

__all__ = ["field_features", "shape_features"]

_SHAPE_2D = {
    "area": "Area",
    "perimeter": "Perimeter",
    "eccentricity": "Eccentricity",
    "solidity": "Solidity",
    "axis_major_length": "MajorAxisLength",
    "axis_minor_length": "MinorAxisLength",
    "equivalent_diameter_area": "EquivalentDiameter",
}
_SHAPE_3D = {
    "area": "Volume",
    "solidity": "Solidity",
    "axis_major_length": "MajorAxisLength",
    "axis_minor_length": "MinorAxisLength",
    "equivalent_diameter_area": "EquivalentDiameter",
}
_AXES_2D, _AXES_3D = ("Y", "X"), ("Z", "Y", "X")


def field_features(
    labels: Mapping[str, np.ndarray],
    image: np.ndarray,
    channels: Sequence[str],
    *,
    intensity: bool = True,
    cp_measure: Sequence[str] = (),
) -> pd.DataFrame:
    """Features of every object of one field, one row per id of the first compartment.

    Parameters
    ----------
    labels
        Compartment name -> ``(y, x)`` or ``(z, y, x)`` labels sharing ids, ids
        ``1 … n`` consecutive in the first.
    image
        ``(c, y, x)`` or ``(c, z, y, x)`` pixels of the same field.
    channels
        The names of the image's channels.
    intensity
        Measure per-channel intensities too.
    cp_measure
        cp-measure feature sets to add per compartment and channel (2D only), see
        :data:`~cellscale.measurement._cp_measure.CP_MEASURE_SETS`.

    Returns
    -------
    pandas.DataFrame
        Indexed by object id (1 … n); columns named ``<Compartment>_<Group>_<Feature>[_<Ch>]``.
    """
    primary = next(iter(labels.values()))
    n = int(primary.max(initial=0))
    parts = [shape_features(mask, compartment, n) for compartment, mask in labels.items()]
    if intensity:
        parts += [
            _intensity(mask, image[c], compartment, channel, n)
            for compartment, mask in labels.items()
            for c, channel in enumerate(channels)
        ]
    if cp_measure:
        if primary.ndim != 2:
            raise ValueError("cp-measure feature sets are measured on 2D fields only")
        from cellscale.measurement._cp_measure import cp_measure_features

        parts += [
            cp_measure_features(mask, image[c], compartment, channel, n, cp_measure)
            for compartment, mask in labels.items()
            for c, channel in enumerate(channels)
        ]
    table = pd.concat(parts, axis=1)
    table.index.name = "label"
    return table


def shape_features(labels: np.ndarray, compartment: str, n: int) -> pd.DataFrame:
    """Size and shape of objects ``1 … n`` (NaN for ids absent from ``labels``).

    Examples
    --------
    >>> square = np.zeros((8, 8), np.uint32); square[2:6, 2:6] = 1
    >>> row = shape_features(square, "nuclei", 1).iloc[0]
    >>> float(row["Nuclei_AreaShape_Area"]), float(row["Nuclei_AreaShape_Center_X"])
    (16.0, 3.5)
    """
    names = _SHAPE_2D if labels.ndim == 2 else _SHAPE_3D
    axes = _AXES_2D if labels.ndim == 2 else _AXES_3D
    extra = ["orientation"] if labels.ndim == 2 else []
    props = regionprops_table(labels, properties=["label", *names, *extra, "centroid", "bbox"])
    frame = pd.DataFrame(index=pd.Index(props["label"], name="label"))
    for prop, feature in names.items():
        frame[feature] = props[prop]
    if labels.ndim == 2:
        area, perimeter = props["area"], props["perimeter"]
        with np.errstate(divide="ignore", invalid="ignore"):
            frame["FormFactor"] = np.where(perimeter > 0, 4 * np.pi * area / perimeter**2, np.nan)
        frame["Orientation"] = np.degrees(props["orientation"])
    ndim = labels.ndim
    for i, axis in enumerate(reversed(axes)):
        dim = ndim - 1 - i
        frame[f"Center_{axis}"] = props[f"centroid-{dim}"]
        frame[f"BoundingBoxMinimum_{axis}"] = props[f"bbox-{dim}"]
        frame[f"BoundingBoxMaximum_{axis}"] = props[f"bbox-{dim + ndim}"]
    low = np.column_stack([props[f"bbox-{d}"] for d in range(ndim - 2, ndim)])
    high = np.column_stack([props[f"bbox-{d + ndim}"] for d in range(ndim - 2, ndim)])
    touches = (low == 0).any(axis=1) | (high == np.asarray(labels.shape[-2:])).any(axis=1)
    frame["TouchesBorder"] = touches.astype(np.int8) if len(frame) else np.int8(0)
    frame = frame.reindex(pd.RangeIndex(1, n + 1, name="label"))
    frame.columns = [feature_column(compartment, "AreaShape", c) for c in frame.columns]
    location = {
        feature_column(compartment, "Location", f"Center_{axis}"): frame[
            feature_column(compartment, "AreaShape", f"Center_{axis}")
        ]
        for axis in axes
    }
    return pd.concat([frame, pd.DataFrame(location)], axis=1).astype(np.float64)


def _intensity(
    labels: np.ndarray, pixels: np.ndarray, compartment: str, channel: str, n: int
) -> pd.DataFrame:
    """Mean, standard deviation, min, max and integrated intensity of objects ``1 … n``."""
    flat = labels.ravel()
    values = pixels.ravel().astype(np.float64)
    count = np.bincount(flat, minlength=n + 1)[1 : n + 1].astype(np.float64)
    total = np.bincount(flat, weights=values, minlength=n + 1)[1 : n + 1]
    squares = np.bincount(flat, weights=values * values, minlength=n + 1)[1 : n + 1]
    ids = np.arange(1, n + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
        variance = np.where(count > 0, squares / count - mean * mean, np.nan)
    present = count > 0
    minimum = np.full(n, np.nan)
    maximum = np.full(n, np.nan)
    if present.any():
        minimum[present] = ndimage.minimum(values, flat, ids[present])
        maximum[present] = ndimage.maximum(values, flat, ids[present])
    columns = {
        "MeanIntensity": mean,
        "StdIntensity": np.sqrt(np.clip(variance, 0, None)),
        "MinIntensity": minimum,
        "MaxIntensity": maximum,
        "IntegratedIntensity": np.where(present, total, np.nan),
    }
    return pd.DataFrame(
        {feature_column(compartment, "Intensity", k, channel): v for k, v in columns.items()},
        index=pd.RangeIndex(1, n + 1, name="label"),
    )
