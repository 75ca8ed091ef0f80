"""Per-object features of one field: shape (scikit-image regionprops) and per-channel intensity.

Objects are the ids ``1 … n`` of the first compartment; a second compartment (the nuclei
of cells) is measured for the same ids, missing objects giving NaN. Names follow
CellProfiler's MeasureObjectSizeShape and MeasureObjectIntensity.

``Perimeter`` and ``FormFactor`` (4πA/P², "roundness") come from one closed outline per
object: the half-level contour of its mask (through the midpoints of its boundary pixels'
edges), smoothed by two rounds of corner cutting (every vertex replaced by the midpoint of
its edge: a binomial filter along the outline that removes the pixel staircase). ``P`` is
the outline's length and ``A`` the area it encloses (holes subtracted), so by the
isoperimetric inequality the form factor is at most 1 for every object, a single pixel or
a line included; a large disc scores about 0.96. ``Area`` stays the pixel count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.measure import find_contours, regionprops_table

from cellscale.cells import feature_column

__all__ = ["field_features", "outline_shape", "shape_features"]

_SMOOTHING_ROUNDS = 2  # corner-cutting rounds applied to each outline
_SHAPE_2D = {
    "area": "Area",
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
        for compartment, mask in labels.items():
            runs = _ObjectRuns(mask)
            parts += [
                _intensity(runs, image[c], compartment, channel, n)
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
        perimeter, form_factor = outline_shape(labels, props["label"])
        frame.insert(1, "Perimeter", perimeter)  # after Area, as CellProfiler orders them
        frame["FormFactor"] = form_factor
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


def outline_shape(labels: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Perimeter and form factor 4πA/P² of objects ``ids`` of 2D ``labels``, from their outlines.

    Each object's outline is the 0.5-level contour of its padded mask (one closed polygon
    per part and per hole, diagonal-only neighbours kept apart), smoothed by corner
    cutting; its length is the perimeter and its enclosed area (holes subtracted) the
    ``A`` of the form factor. Both come from the same closed curves, so the isoperimetric
    inequality bounds the form factor by 1.

    Parameters
    ----------
    labels
        ``(y, x)`` integer labels.
    ids
        The objects to measure, each present in ``labels``.

    Returns
    -------
    tuple of numpy.ndarray
        Perimeters and form factors, float64, in the order of ``ids``.

    Examples
    --------
    >>> yy, xx = np.mgrid[:64, :64]
    >>> disc = ((yy - 32) ** 2 + (xx - 32) ** 2 <= 20**2).astype(np.uint32)
    >>> perimeter, form_factor = outline_shape(disc, np.array([1]))
    >>> bool(abs(perimeter[0] - 2 * np.pi * 20) < 3), bool(0.9 < form_factor[0] <= 1)
    (True, True)
    """
    slices = ndimage.find_objects(labels)
    perimeter = np.zeros(len(ids))
    area = np.zeros(len(ids))
    for i, label in enumerate(ids):
        mask = np.pad(labels[slices[int(label) - 1]] == label, 1).astype(np.float32)
        for contour in find_contours(mask, 0.5):
            outline = contour[:-1]  # closed: the last vertex repeats the first
            for _ in range(_SMOOTHING_ROUNDS):
                outline = 0.5 * (outline + np.roll(outline, -1, axis=0))
            following = np.roll(outline, -1, axis=0)
            perimeter[i] += np.hypot(*(following - outline).T).sum()
            area[i] += 0.5 * np.sum(
                outline[:, 0] * following[:, 1] - following[:, 0] * outline[:, 1]
            )
    return perimeter, 4 * np.pi * np.abs(area) / perimeter**2


class _ObjectRuns:
    """The pixels of each object of a label image, gathered once for every channel.

    The objects' pixels are sorted by id (one sort per compartment), so each channel's
    minimum and maximum per object are one ``reduceat`` over its gathered values.
    """

    def __init__(self, labels: np.ndarray) -> None:
        self.flat = labels.ravel()
        inside = np.flatnonzero(self.flat)
        self.order = inside[np.argsort(self.flat[inside], kind="stable")]
        ids = self.flat[self.order]
        self.starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else ids
        self.ids = ids[self.starts].astype(np.int64)

    def extremes(self, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Per object ``1 … n``, the minimum and maximum of ``values`` (NaN where absent)."""
        minimum, maximum = np.full(n, np.nan), np.full(n, np.nan)
        if len(self.ids):
            gathered = values[self.order]
            minimum[self.ids - 1] = np.minimum.reduceat(gathered, self.starts)
            maximum[self.ids - 1] = np.maximum.reduceat(gathered, self.starts)
        return minimum, maximum


def _intensity(
    runs: _ObjectRuns, pixels: np.ndarray, compartment: str, channel: str, n: int
) -> pd.DataFrame:
    """Mean, standard deviation, min, max and integrated intensity of objects ``1 … n``."""
    flat = runs.flat
    values = pixels.ravel().astype(np.float64)
    count = np.bincount(flat, minlength=n + 1)[1 : n + 1].astype(np.float64)
    total = np.bincount(flat, weights=values, minlength=n + 1)[1 : n + 1]
    squares = np.bincount(flat, weights=values * values, minlength=n + 1)[1 : n + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
        variance = np.where(count > 0, squares / count - mean * mean, np.nan)
    present = count > 0
    minimum, maximum = runs.extremes(values, n)
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
