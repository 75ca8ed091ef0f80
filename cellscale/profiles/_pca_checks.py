"""Checks of :class:`~cellscale.profiles.PCA` arguments, inputs and saved files."""

from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np

__all__ = [
    "check_components_fit",
    "check_n_components",
    "check_real",
    "check_saved",
]

#: Arrays every saved PCA holds (``m2``, the cross-product ``partial_fit`` needs, is optional).
SAVED_KEYS = ("n", "mean", "components", "eigenvalues", "total_variance")


def check_n_components(value: Any) -> int | None:
    """Return ``value`` as an ``int`` (or ``None``) if it is a valid number of components.

    Raises
    ------
    TypeError
        If it is neither ``None`` nor an integer (booleans and floats are refused).
    ValueError
        If it is not positive.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"n_components must be a positive int or None, got {value!r} "
            f"of type {type(value).__name__}"
        )
    if value < 1:
        raise ValueError(f"n_components must be a positive int or None, got {value}")
    return int(value)


def check_real(dtype: np.dtype[Any], name: str = "X") -> None:
    """Refuse complex, string and object data: PCA is defined here on real numbers.

    Raises
    ------
    TypeError
        If ``dtype`` is not boolean, integer or floating point.
    """
    if dtype.kind not in "biuf":
        raise TypeError(
            f"{name} has dtype {dtype}; PCA needs real numbers (booleans, integers or floats)"
        )


def check_components_fit(n_components: int | None, n_features: int, n_samples: int | None) -> None:
    """Refuse more components than ``min(n_samples, n_features)``, as scikit-learn does.

    Parameters
    ----------
    n_components
        Components asked for (``None`` always fits).
    n_features
        Features of the data.
    n_samples
        Rows fitted on, or ``None`` when only the features are known yet (e.g. in
        ``partial_fit``, where later batches add rows).

    Raises
    ------
    ValueError
        Naming ``n_components``, the features and, when given, the samples.
    """
    if n_components is None:
        return
    if n_samples is None and n_components > n_features:
        raise ValueError(f"n_components={n_components} must be at most n_features={n_features}")
    if n_samples is not None and n_components > min(n_samples, n_features):
        raise ValueError(
            f"n_components={n_components} must be at most min(n_samples, n_features) = "
            f"min({n_samples}, {n_features}) = {min(n_samples, n_features)}"
        )


def check_saved(
    arrays: dict[str, np.ndarray], n_components: int | None, path: str | os.PathLike[str]
) -> None:
    """Check that a saved PCA's arrays are all there and agree in shape.

    Raises
    ------
    ValueError
        Naming the file and the missing arrays or the shapes that disagree.
    """
    where = repr(os.fspath(path))
    missing = [key for key in SAVED_KEYS if key not in arrays]
    if missing:
        raise ValueError(f"{where} is not a complete PCA file: it misses {missing}")
    problems = _shape_problems(arrays, n_components)
    if problems:
        raise ValueError(f"{where} holds inconsistent PCA arrays: {'; '.join(problems)}")


def _shape_problems(arrays: dict[str, np.ndarray], n_components: int | None) -> list[str]:
    mean, components = arrays["mean"], arrays["components"]
    eigenvalues, m2 = arrays["eigenvalues"], arrays.get("m2")
    if mean.ndim != 1:
        return [f"mean has shape {mean.shape}, expected (n_features,)"]
    d = mean.shape[0]
    problems = [
        f"{key} has shape {arrays[key].shape}, expected a scalar"
        for key in ("n", "total_variance")
        if arrays[key].shape != ()
    ]
    if m2 is not None and m2.shape != (d, d):
        problems.append(f"m2 has shape {m2.shape}, expected ({d}, {d})")
    if components.ndim != 2 or components.shape[1] != d:
        return [*problems, f"components has shape {components.shape}, expected (k, {d})"]
    k = components.shape[0]
    if n_components is not None and k != n_components:
        problems.append(f"components has {k} rows, n_components={n_components}")
    if eigenvalues.ndim != 1 or not k <= eigenvalues.shape[0] <= d:
        problems.append(
            f"eigenvalues has shape {eigenvalues.shape}, expected (r,) with {k} <= r <= {d}"
        )
    return problems
