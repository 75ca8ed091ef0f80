"""The cell-table schema: column names, ``cell_id`` numbering, and its checks.

One row per object, in the deterministic order (t, well, field, label); ``cell_id`` is the
row number (int64, 0 … N−1) and every cell-space array (crops, embeddings) is aligned row
for row with it. Per-field object counts are known from the labels before anything is
measured, so a field's first ``cell_id`` is the sum of the counts before it.

Names follow CellProfiler and pycytominer, so pycytominer, copairs and cytotable users can
use the table unchanged: ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site`` (the
field), ``Metadata_Timepoint``, ``Metadata_ObjectNumber`` (the label), every plate-map
column as ``Metadata_<name>``, and features as ``<Compartment>_<Group>_<Feature>[_<Channel>]``
(``Cells_AreaShape_Area``, ``Nuclei_Intensity_MeanIntensity_DNA``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = [
    "CELL_ID",
    "METADATA_COLUMNS",
    "cell_offsets",
    "check_cell_table",
    "compartment_prefix",
    "feature_column",
    "feature_columns",
    "metadata_column",
]

CELL_ID = "cell_id"
"""The global row number of a cell (int64)."""

METADATA_COLUMNS = (
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
    "Metadata_Timepoint",
    "Metadata_ObjectNumber",
)
"""The metadata every cell table starts with, after ``cell_id``."""

_PREFIXES = {"cells": "Cells", "nuclei": "Nuclei", "cytoplasm": "Cytoplasm"}


def metadata_column(name: str) -> str:
    """The metadata column of a plate-map column or other annotation.

    Examples
    --------
    >>> metadata_column("treatment")
    'Metadata_treatment'
    """
    return name if name.startswith("Metadata_") else f"Metadata_{name}"


def compartment_prefix(compartment: str) -> str:
    """The CellProfiler object name of a compartment: ``"nuclei" -> "Nuclei"``."""
    return _PREFIXES.get(compartment, compartment[:1].upper() + compartment[1:])


def feature_column(compartment: str, group: str, feature: str, channel: str | None = None) -> str:
    """``<Compartment>_<Group>_<Feature>[_<Channel>]``.

    Examples
    --------
    >>> feature_column("nuclei", "Intensity", "MeanIntensity", "DNA")
    'Nuclei_Intensity_MeanIntensity_DNA'
    """
    name = f"{compartment_prefix(compartment)}_{group}_{feature}"
    return f"{name}_{channel}" if channel is not None else name


def feature_columns(columns: Iterable[str]) -> list[str]:
    """The feature columns of a table: everything but ``cell_id`` and ``Metadata_*``."""
    return [c for c in columns if c != CELL_ID and not c.startswith("Metadata_")]


def cell_offsets(counts: np.ndarray) -> np.ndarray:
    """The first ``cell_id`` of every unit, from per-unit object counts in (t, well, field) order.

    Parameters
    ----------
    counts
        Objects per unit, any shape; read in C order (t, well, field).

    Returns
    -------
    numpy.ndarray
        int64 offsets of the same shape.

    Examples
    --------
    >>> cell_offsets(np.array([[3, 0], [2, 5]])).tolist()
    [[0, 3], [3, 5]]
    """
    flat = np.asarray(counts, dtype=np.int64).ravel()
    if (flat < 0).any():
        raise ValueError("object counts cannot be negative")
    offsets = np.concatenate([[0], np.cumsum(flat)[:-1]]) if flat.size else flat
    return offsets.reshape(np.shape(counts))


def check_cell_table(table: pd.DataFrame) -> None:
    """Check a cell table's leading columns and ``cell_id`` numbering.

    Raises
    ------
    ValueError
        Naming the missing columns or the first row where ``cell_id`` breaks.
    """
    missing = [c for c in (CELL_ID, *METADATA_COLUMNS) if c not in table.columns]
    if missing:
        raise ValueError(f"the cell table lacks the columns {missing}")
    ids = table[CELL_ID].to_numpy()
    if ids.dtype != np.int64:
        raise ValueError(f"cell_id must be int64, got {ids.dtype}")
    expected = np.arange(ids[0] if len(ids) else 0, (ids[0] if len(ids) else 0) + len(ids))
    broken = np.flatnonzero(ids != expected)
    if len(broken):
        row = int(broken[0])
        raise ValueError(
            f"cell_id is not consecutive: row {row} has {ids[row]}, expected {expected[row]}"
        )
