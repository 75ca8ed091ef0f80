"""One-call normalisation: fit on control rows, return all rows normalised (lazily for arrays)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from cellscale.profiles._scalers import DEFAULT_MAX_MEMORY, Robustizer, Standardizer
from cellscale.profiles._spherize import Spherizer

__all__ = ["robustize", "spherize", "standardize"]


def standardize(
    data: Any,
    controls: Any = None,
    *,
    features: list[str] | None = None,
    metadata: pd.DataFrame | None = None,
) -> Any:
    """Z-score every row against the controls' mean and population std.

    pycytominer's ``normalize(method="standardize")``. ``data`` is a ``(cell,
    feature)`` dask/NumPy/Zarr array or a pandas/pyarrow table with ``Metadata_``
    columns; ``controls`` is ``None`` (all rows), a boolean mask or a query string
    (on the table, or on ``metadata`` for arrays). Arrays come back as lazy dask
    arrays, tables as tables. Keep the fitted model with :class:`Standardizer`.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"Metadata_treatment": ["ctrl", "ctrl", "drug"], "x": [1.0, 3.0, 5.0]})
    >>> standardize(table, "Metadata_treatment == 'ctrl'")["x"].tolist()
    [-1.0, 1.0, 3.0]
    """
    model = Standardizer().fit(data, controls, features=features, metadata=metadata)
    return model.transform(data)


def robustize(
    data: Any,
    controls: Any = None,
    *,
    scale: str = "mad",
    epsilon: float = 1e-18,
    features: list[str] | None = None,
    metadata: pd.DataFrame | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> Any:
    """Centre on the controls' median and divide by a robust scale.

    ``scale="mad"`` is pycytominer's ``mad_robustize`` (``1.4826 × MAD + epsilon``);
    ``scale="iqr"`` is pycytominer's ``robustize`` (interquartile range). Medians are
    exact (see :class:`Robustizer` for the memory bound). Other parameters as in
    :func:`standardize`.
    """
    model = Robustizer(scale, epsilon, max_memory)
    return model.fit(data, controls, features=features, metadata=metadata).transform(data)


def spherize(
    data: Any,
    controls: Any = None,
    *,
    method: str = "ZCA",
    epsilon: float = 1e-6,
    center: bool = True,
    features: list[str] | None = None,
    metadata: pd.DataFrame | None = None,
) -> Any:
    """Whiten every row with the controls' PCA or ZCA sphering map (see :class:`Spherizer`).

    pycytominer's ``normalize(method="spherize", spherize_method=method,
    spherize_epsilon=epsilon, spherize_center=center)``. Other parameters as in
    :func:`standardize`.
    """
    model = Spherizer(method, epsilon, center)
    return model.fit(data, controls, features=features, metadata=metadata).transform(data)
