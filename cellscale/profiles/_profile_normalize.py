"""Normalise a profiles table against its control rows, as pycytominer's ``normalize`` does.

The table is small (one row per well), so it is normalised in memory, and missing values
are allowed: each statistic ignores them and they stay missing. The methods and their
statistics, fitted on the rows the ``samples`` query selects:

- ``standardize``: ``(x - mean) / std``, population std; a feature constant on the
  controls (its variance within rounding of zero) is only centred;
- ``robustize``: ``(x - median) / (q75 - q25)`` (linear quantiles); a zero spread is
  replaced by 1;
- ``mad_robustize``: ``(x - median) / (1.4826 · median(|x - median|) + epsilon)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from cellscale.profiles._scalers import MAD_NORMAL
from cellscale.profiles._table import METADATA_PREFIX

__all__ = ["NORMALIZE_METHODS", "normalize_profiles"]

_EPS = np.finfo(np.float64).eps


def normalize_profiles(
    profiles: pd.DataFrame,
    features: Sequence[str] | None = None,
    *,
    samples: str = "all",
    method: str = "standardize",
    mad_robustize_epsilon: float = 1e-18,
) -> pd.DataFrame:
    """Normalise every row of ``profiles`` with statistics of its ``samples`` rows.

    Parameters
    ----------
    profiles
        A profiles table: ``Metadata_`` columns and numeric features.
    features
        The feature columns; by default every numeric column not prefixed ``Metadata_``.
    samples
        ``"all"``, or a pandas query selecting the control rows, e.g.
        ``"Metadata_treatment == 'DMSO'"`` (pycytominer's ``samples``).
    method
        ``"standardize"``, ``"robustize"`` or ``"mad_robustize"`` (see the module).
    mad_robustize_epsilon
        Added to the scale of ``mad_robustize``.

    Returns
    -------
    pandas.DataFrame
        A copy of ``profiles`` with its features normalised (float64), columns in order.

    Raises
    ------
    ValueError
        For an unknown method or a ``samples`` query that selects no rows.

    Examples
    --------
    >>> table = pd.DataFrame({"Metadata_treatment": ["DMSO", "DMSO", "drug"],
    ...                       "Cells_AreaShape_Area": [1.0, 3.0, 5.0]})
    >>> normalize_profiles(table, samples="Metadata_treatment == 'DMSO'")[
    ...     "Cells_AreaShape_Area"].tolist()
    [-1.0, 1.0, 3.0]
    """
    fit = NORMALIZE_METHODS.get(method)
    if fit is None:
        raise ValueError(f"method must be one of {sorted(NORMALIZE_METHODS)}, got {method!r}")
    names = list(features) if features is not None else _numeric_features(profiles)
    reference = profiles if samples == "all" else profiles.query(samples)
    if reference.empty:
        raise ValueError(f"samples {samples!r} selects no rows of the profiles")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-missing features stay missing
        center, scale = fit(reference[names].to_numpy(dtype=np.float64), mad_robustize_epsilon)
    normalised = profiles.copy()
    normalised[names] = (profiles[names].to_numpy(dtype=np.float64) - center) / scale
    return normalised


def _numeric_features(profiles: pd.DataFrame) -> list[str]:
    return [
        str(c)
        for c in profiles.columns
        if not str(c).startswith(METADATA_PREFIX) and pd.api.types.is_numeric_dtype(profiles[c])
    ]


def _standardize(values: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    n = np.sum(~np.isnan(values), axis=0)
    mean = np.nanmean(values, axis=0)
    var = np.nanvar(values, axis=0)
    constant = var <= n * _EPS * var + (n * mean * _EPS) ** 2
    return mean, np.where(constant, 1.0, np.sqrt(var))


def _robustize(values: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    q25, q75 = np.nanpercentile(values, [25, 75], axis=0)
    spread = q75 - q25
    return np.nanmedian(values, axis=0), np.where(spread < 10 * _EPS, 1.0, spread)


def _mad_robustize(values: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    median = np.nanmedian(values, axis=0)
    mad = np.nanmedian(np.abs(values - median), axis=0)
    return median, mad * MAD_NORMAL + epsilon


NORMALIZE_METHODS: dict[str, Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray]]] = {
    "standardize": _standardize,
    "robustize": _robustize,
    "mad_robustize": _mad_robustize,
}
"""Each method's fit: the control values to the centre and scale of every feature."""
