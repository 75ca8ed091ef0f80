"""Feature tables: split ``Metadata_`` columns from features, select control rows, rebuild."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "METADATA_PREFIX",
    "Split",
    "control_mask",
    "feature_columns",
    "is_table",
    "split_table",
]

METADATA_PREFIX = "Metadata_"


def is_table(data: Any) -> bool:
    """True for a pandas DataFrame or a pyarrow Table."""
    return isinstance(data, pd.DataFrame) or type(data).__module__.startswith("pyarrow")


@dataclass
class Split:
    """A feature table taken apart: the frame, its feature columns and their values."""

    frame: pd.DataFrame
    features: list[str]
    values: np.ndarray
    arrow: bool

    def rebuild(self, values: np.ndarray, names: list[str] | None = None) -> Any:
        """The table with ``values`` in place of the features (renamed to ``names``)."""
        frame = self.frame.drop(columns=self.features) if names else self.frame.copy()
        new = pd.DataFrame(values, columns=names or self.features, index=self.frame.index)
        if names:
            frame = pd.concat([frame, new], axis="columns")
        else:
            frame[self.features] = new
        if self.arrow:
            import pyarrow as pa

            return pa.Table.from_pandas(frame, preserve_index=False)
        return frame


def split_table(data: Any, features: list[str] | None = None) -> Split:
    """Split a table into metadata and a float feature matrix.

    Parameters
    ----------
    data
        pandas DataFrame or pyarrow Table.
    features
        Feature columns; by default every numeric column not prefixed ``Metadata_``.

    Raises
    ------
    ValueError
        If a named feature column is missing or no feature column is found.
    """
    arrow = not isinstance(data, pd.DataFrame)
    frame = data.to_pandas() if arrow else data
    features = feature_columns(frame, features)
    if not features:
        raise ValueError("no numeric non-Metadata_ feature columns found")
    values = frame[features].to_numpy(dtype=np.float64)
    return Split(frame, list(features), values, arrow)


def feature_columns(frame: pd.DataFrame, features: Sequence[str] | None = None) -> list[str]:
    """The feature columns of ``frame``: ``features`` checked, else every numeric non-``Metadata_``.

    Raises
    ------
    ValueError
        If a named feature column is not in ``frame``.
    """
    if features is None:
        return [
            str(c)
            for c in frame.columns
            if not str(c).startswith(METADATA_PREFIX) and pd.api.types.is_numeric_dtype(frame[c])
        ]
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise ValueError(f"feature columns not in the table: {missing[:5]}")
    return list(features)


def control_mask(controls: Any, metadata: pd.DataFrame | None, n: int) -> np.ndarray | Any:
    """Resolve ``controls`` to a boolean row mask.

    Parameters
    ----------
    controls
        ``None`` (all rows), a pandas query string on ``metadata`` such as
        ``"Metadata_treatment == 'DMSO'"``, or a boolean array of length ``n``
        (NumPy or dask, returned as is).
    metadata
        Table aligned row for row with the data, needed for a query string.
    n
        Number of rows.
    """
    if controls is None:
        return None
    if isinstance(controls, str):
        if metadata is None:
            raise ValueError("a query string for controls needs a metadata table")
        if len(metadata) != n:
            raise ValueError(f"metadata has {len(metadata)} rows, the data {n}")
        selected = metadata.reset_index(drop=True).query(controls).index.to_numpy()
        mask = np.zeros(n, dtype=bool)
        mask[selected] = True
        if not mask.any():
            raise ValueError(f"no rows match the control query {controls!r}")
        return mask
    return controls if hasattr(controls, "dask") else np.asarray(controls, dtype=bool)
