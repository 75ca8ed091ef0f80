"""Per-feature scalers with pycytominer's meanings: standardize, robustize, mad_robustize."""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np

from cellscale.profiles._io import CellInput
from cellscale.profiles._moments import moments_graph
from cellscale.profiles._normalizer import Normalizer, selected_rows

__all__ = ["Robustizer", "Standardizer"]

#: Bytes of control values held at once while computing exact medians (see Robustizer).
DEFAULT_MAX_MEMORY = 2 * 2**30
#: scipy's normal-consistency factor for the MAD (pycytominer's ``scale=1/1.4826``).
MAD_NORMAL = 1.4826


class Standardizer(Normalizer):
    """``(x - mean) / std`` with the controls' mean and population std (``ddof=0``).

    This is pycytominer's ``method="standardize"`` (scikit-learn's ``StandardScaler``):
    constant features keep a scale of 1. Fitting is one streaming pass of per-chunk
    sums merged exactly (Chan et al.), so it is out of core.
    """

    _kind = "Standardizer"

    def _estimate(self, cells: CellInput, rows: da.Array | None) -> None:
        (moments,) = dask.compute(moments_graph(cells.array, rows, diagonal=True))
        if moments.n == 0:
            raise ValueError("no control rows selected")
        var = moments.m2 / moments.n
        eps = np.finfo(np.float64).eps
        constant = var <= moments.n * eps * var + (moments.n * moments.mean * eps) ** 2
        self.center_ = moments.mean
        self.scale_ = np.where(constant, 1.0, np.sqrt(var))
        self.matrix_ = None
        self.n_samples_fit_ = moments.n

    def _params(self) -> dict[str, Any]:
        return {}


class Robustizer(Normalizer):
    """``(x - median) / scale`` with exact medians of the control rows.

    Parameters
    ----------
    scale
        ``"mad"``: pycytominer's ``method="mad_robustize"``, scale
        ``1.4826 * median(|x - median|) + epsilon``. ``"iqr"``: pycytominer's
        ``method="robustize"`` (scikit-learn's ``RobustScaler``), scale
        ``q75 - q25`` (linear interpolation), constant features keep 1.
    epsilon
        Added to the MAD scale (pycytominer's ``mad_robustize_epsilon``).
    max_memory
        Bytes of control values loaded at once. Medians are exact: the control rows
        are read in groups of columns that fit this budget (one pass over the data per
        group), never the whole matrix at once unless it fits.
    """

    _kind = "Robustizer"

    def __init__(
        self, scale: str = "mad", epsilon: float = 1e-18, max_memory: int = DEFAULT_MAX_MEMORY
    ) -> None:
        if scale not in ("mad", "iqr"):
            raise ValueError(f"scale must be 'mad' or 'iqr', got {scale!r}")
        self.scale = scale
        self.epsilon = epsilon
        self.max_memory = max_memory

    def _estimate(self, cells: CellInput, rows: da.Array | None) -> None:
        arr = cells.array
        n = arr.shape[0] if rows is None else int(rows.sum().compute())
        if n == 0:
            raise ValueError("no control rows selected")
        step = max(1, self.max_memory // (8 * n))
        stats = [
            self._column_stats(selected_rows(arr[:, lo : lo + step], rows).astype(np.float64))
            for lo in range(0, arr.shape[1], step)
        ]
        self.center_ = np.concatenate([c for c, _ in stats])
        self.scale_ = np.concatenate([s for _, s in stats])
        self.matrix_ = None
        self.n_samples_fit_ = n

    def _column_stats(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        median = np.median(values, axis=0)
        if self.scale == "mad":
            mad = np.median(np.abs(values - median), axis=0) * MAD_NORMAL
            return median, mad + self.epsilon
        q25, q75 = np.percentile(values, [25, 75], axis=0)
        spread = q75 - q25
        return median, np.where(spread < 10 * np.finfo(np.float64).eps, 1.0, spread)

    def _params(self) -> dict[str, Any]:
        return {"scale": self.scale, "epsilon": self.epsilon, "max_memory": self.max_memory}
