"""QC flags: which images are blurry, saturated, empty, dim or not finite, by plate and channel.

Apart from saturation (an absolute fraction of pixels) and ``nonfinite``, every flag marks
an image whose robust z-score ``(x - median) / (1.4826 MAD)`` falls below a threshold, the
median and MAD (median absolute deviation) taken over the images of the same plate and channel.
The scores are computed on logarithms, since the measures are positive and heavy-tailed,
and their spread is never taken as less than ``QCThresholds.min_spread``: with few images,
or images much alike, the MAD alone would make small differences look like outliers.

Blur, emptiness and dimness each lower the peaks of an image, so an image gets the first
of ``blurry``, ``empty``, ``dim`` that applies and not the others: the flag names its
likeliest cause. ``saturated`` is judged on its own, and so is ``nonfinite``: any NaN or
infinite pixel (kept by ``ingest(on_nonfinite="keep")``) flags its image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["FLAGS", "MAD_SCALE", "QCThresholds", "flag_images", "robust_z"]

MAD_SCALE = 1.4826
"""Makes the MAD of normally distributed values estimate their standard deviation."""

FLAGS = ("blurry", "saturated", "empty", "dim", "nonfinite")
"""The flag columns, before ``flagged`` (any of them)."""

_GROUPS = ["Metadata_Plate", "channel"]


@dataclass(frozen=True)
class QCThresholds:
    """When an image is flagged.

    Attributes
    ----------
    blurry
        Flag an image whose robust z-score of ``log(focus_laplacian_norm)`` (the variance
        of the Laplacian over the squared signal, so brightness does not count) is below
        this. A constant image, with no Laplacian at all, is not blurry but empty.
    saturated
        Flag an image whose ``saturated_fraction`` is above this (an absolute fraction).
    empty
        Flag an image that is not blurry and whose robust z-score of
        ``log(signal_to_background)`` is below this: little above the background, e.g. no
        cells or a missing stain.
    dim
        Flag an image that is neither blurry nor empty and whose robust z-score of
        ``log(signal)`` (99th percentile above the background) is below this.
    min_spread
        The least spread (robust standard deviation) of the logarithms that the z-scores
        divide by: 0.1 means that, at the default -3, nothing less than about 26 % below
        the median is flagged however alike the other images are.

    An image with any NaN or infinite pixel (``nonfinite_fraction`` above 0) is always
    flagged ``nonfinite``; no threshold changes that.

    Examples
    --------
    >>> QCThresholds(saturated=0.05)
    QCThresholds(blurry=-3.0, saturated=0.05, empty=-3.0, dim=-3.0, min_spread=0.1)
    """

    blurry: float = -3.0
    saturated: float = 0.01
    empty: float = -3.0
    dim: float = -3.0
    min_spread: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.saturated <= 1.0:
            raise ValueError(f"saturated is a fraction of pixels from 0 to 1, got {self.saturated}")
        for name in ("blurry", "empty", "dim"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite z-score, got {getattr(self, name)}")
        if not (math.isfinite(self.min_spread) and self.min_spread >= 0):
            raise ValueError(f"min_spread must be a number >= 0, got {self.min_spread}")


def robust_z(values: np.ndarray, min_spread: float = 0.0) -> np.ndarray:
    """``(x - median) / max(1.4826 MAD, min_spread)``, median and MAD of the finite values.

    With no spread at all a value equal to the median scores 0 and any other value
    ``±inf``: it stands out from values that are all the same. ``±inf`` scores ``±inf``
    and ``nan`` stays ``nan``.

    Examples
    --------
    >>> robust_z(np.array([1.0, 2.0, 3.0, 4.0, 100.0])).round(2).tolist()
    [-1.35, -0.67, 0.0, 0.67, 65.43]
    >>> robust_z(np.array([1.0, 2.0, 3.0, 4.0, 100.0]), min_spread=10.0).tolist()
    [-0.2, -0.1, 0.0, 0.1, 9.7]
    >>> robust_z(np.array([5.0, 5.0, 5.0, 2.0, -np.inf, np.nan])).tolist()
    [0.0, 0.0, 0.0, -inf, -inf, nan]
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.full_like(values, np.nan)
    centre = np.median(finite)
    spread = max(MAD_SCALE * np.median(np.abs(finite - centre)), min_spread)
    deviation = values - centre
    if spread > 0:
        return deviation / spread
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(deviation == 0, 0.0, deviation / 0.0)


def flag_images(table: pd.DataFrame, thresholds: QCThresholds | None = None) -> pd.DataFrame:
    """Set the flag columns of a QC table from its measures, e.g. with other thresholds.

    Parameters
    ----------
    table
        A table from :func:`cellscale.qc` (or :func:`read_qc`).
    thresholds
        When to flag; the defaults of :class:`QCThresholds` when omitted.

    Returns
    -------
    pandas.DataFrame
        A copy with ``blurry``, ``saturated``, ``empty``, ``dim``, ``nonfinite`` and
        ``flagged`` (any of them) set, each rule as described by :class:`QCThresholds`.
        Images whose measure is undefined (``nan``) are not flagged by it.
    """
    limits = thresholds if thresholds is not None else QCThresholds()
    out = table.drop(columns=[*FLAGS, "flagged"], errors="ignore")
    spread = limits.min_spread
    textured = out["focus_laplacian_var"].to_numpy() > 0
    blurry = (_scores(out, "focus_laplacian_norm", spread) < limits.blurry) & textured
    empty = (_scores(out, "signal_to_background", spread) < limits.empty) & ~blurry
    out["blurry"] = blurry
    out["saturated"] = out["saturated_fraction"].to_numpy() > limits.saturated
    out["empty"] = empty
    out["dim"] = (_scores(out, "signal", spread) < limits.dim) & ~blurry & ~empty
    out["nonfinite"] = out["nonfinite_fraction"].to_numpy() > 0
    out["flagged"] = out[list(FLAGS)].any(axis=1)
    return out


def _scores(table: pd.DataFrame, column: str, min_spread: float) -> np.ndarray:
    """Robust z-scores of ``log(column)`` within each plate and channel."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logged = pd.Series(np.log(table[column].to_numpy(np.float64)), index=table.index)
    grouped = logged.groupby([table[g] for g in _GROUPS], sort=False)
    return grouped.transform(robust_z, min_spread=min_spread).to_numpy()
