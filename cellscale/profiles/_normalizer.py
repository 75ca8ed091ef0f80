"""The shared shape of control-fitted normalisers: fit on control rows, apply lazily to all."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import dask
import dask.array as da
import numpy as np
import pandas as pd

from cellscale.profiles._apply import lazy_affine
from cellscale.profiles._io import CellInput, as_cell_array, as_row_mask, cell_input, row_bounds
from cellscale.profiles._moments import check_finite
from cellscale.profiles._persist import read_model, save_model
from cellscale.profiles._table import control_mask, is_table, split_table

__all__ = ["Normalizer", "selected_rows"]


class Normalizer(ABC):
    """Base of :class:`Standardizer`, :class:`Robustizer` and :class:`Spherizer`.

    A fitted normaliser is the affine map ``((x - center_) / scale_) @ matrix_`` (each
    part optional), estimated from control rows. Subclasses implement ``_estimate``.
    """

    _kind: ClassVar[str]
    #: Output column names for tables when the map mixes features (``None``: keep names).
    _output_prefix: str | None = None

    center_: np.ndarray
    scale_: np.ndarray | None
    matrix_: np.ndarray | None
    feature_names_in_: list[str] | None
    n_samples_fit_: int

    def fit(
        self,
        data: Any,
        controls: Any = None,
        *,
        features: list[str] | None = None,
        metadata: pd.DataFrame | None = None,
    ) -> Normalizer:
        """Estimate the normalisation from the control rows of ``data``.

        Parameters
        ----------
        data
            A ``(cell, feature)`` dask/NumPy/Zarr array (or Zarr path), or a pandas
            DataFrame / pyarrow Table whose features are its numeric non-``Metadata_``
            columns.
        controls
            Rows to fit on: ``None`` for all, a boolean mask, or a pandas query string
            on the table's columns (or on ``metadata`` for arrays), e.g.
            ``"Metadata_treatment == 'DMSO'"``.
        features
            Feature columns of a table (default: inferred).
        metadata
            For array input with a query string: the cell table, row for row.

        Returns
        -------
        Normalizer
            ``self``, fitted.
        """
        if is_table(data):
            split = split_table(data, features)
            cells = cell_input(split.values)
            mask = control_mask(controls, split.frame, len(split.values))
            self.feature_names_in_ = split.features
        else:
            cells = cell_input(data)
            mask = control_mask(controls, metadata, cells.array.shape[0])
            self.feature_names_in_ = None
        rows = None if mask is None else as_row_mask(mask, cells.array)
        self._estimate(cells, rows)
        return self

    @abstractmethod
    def _estimate(self, cells: CellInput, rows: da.Array | None) -> None:
        """Fit ``center_``, ``scale_`` and ``matrix_`` on the selected rows of ``cells``."""

    def transform(self, data: Any) -> Any:
        """Apply the fitted map to every row of ``data``.

        Arrays give a lazy dask array (NumPy gives NumPy); tables give a table of the
        same type with the metadata columns kept and the features normalised.
        """
        if is_table(data):
            split = split_table(data, self.feature_names_in_)
            values = self._lazy(as_cell_array(split.values)).compute()
            return split.rebuild(values, self._output_names(values.shape[1]))
        out = self._lazy(as_cell_array(data))
        return out.compute() if isinstance(data, np.ndarray) else out

    def fit_transform(self, data: Any, controls: Any = None, **kwargs: Any) -> Any:
        """:meth:`fit` on the controls, then :meth:`transform` all rows."""
        return self.fit(data, controls, **kwargs).transform(data)

    def _lazy(self, arr: da.Array) -> da.Array:
        if arr.shape[1] != self.center_.shape[0]:
            raise ValueError(
                f"data has {arr.shape[1]} features, the normaliser was fitted on "
                f"{self.center_.shape[0]}"
            )
        return lazy_affine(arr, self.center_, self.scale_, self.matrix_)

    def _output_names(self, k: int) -> list[str] | None:
        return (
            None
            if self._output_prefix is None
            else [f"{self._output_prefix}{i + 1}" for i in range(k)]
        )

    @abstractmethod
    def _params(self) -> dict[str, Any]:
        """The constructor's settings, saved with the fitted model."""

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the fitted normaliser to one ``.npz`` file with JSON provenance."""
        arrays = {"center": self.center_}
        for name in ("scale", "matrix"):
            value = getattr(self, f"{name}_")
            if value is not None:
                arrays[name] = value
        extra = {"feature_names": self.feature_names_in_, "n_samples_fit": self.n_samples_fit_}
        save_model(path, self._kind, self._params(), arrays, extra)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Any:
        """Load a normaliser written by :meth:`save`."""
        meta, arrays = read_model(path, cls._kind)
        model = cls(**meta["params"])
        model.center_ = arrays["center"]
        model.scale_ = arrays.get("scale")
        model.matrix_ = arrays.get("matrix")
        model.feature_names_in_ = meta["feature_names"]
        model.n_samples_fit_ = meta["n_samples_fit"]
        return model


def selected_rows(arr: da.Array, rows: da.Array | None) -> np.ndarray:
    """Load the selected rows of ``arr`` (all if ``rows`` is None) into memory."""

    def pick(block: np.ndarray, mask: np.ndarray | None, start: int) -> np.ndarray:
        chosen = block if mask is None else block[mask]
        index = None if mask is None else np.flatnonzero(mask)
        check_finite(chosen, start, start + block.shape[0], index)
        return chosen

    blocks = arr.to_delayed().ravel()
    masks = [None] * len(blocks) if rows is None else rows.to_delayed().ravel()
    parts = [
        dask.delayed(pick)(b, m, start)
        for b, m, (start, _) in zip(blocks, masks, row_bounds(arr), strict=True)
    ]
    return np.concatenate(dask.compute(*parts), axis=0)
