"""Cell counts per field, joined to a QC table from a cell table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CELL_KEYS", "join_cell_counts"]

CELL_KEYS = {"Metadata_Timepoint": "t", "Metadata_Well": "well", "Metadata_Site": "field"}
"""The cell-table columns naming a field, and the QC-table columns they match."""


def join_cell_counts(table: pd.DataFrame, cells: Any) -> pd.DataFrame:
    """``table`` with ``n_cells``: the rows of ``cells`` in each image's field, 0 if none.

    Parameters
    ----------
    table
        A QC table (one row per image; several channels share a field's count).
    cells
        A cell table of the same plate (pandas or dask DataFrame with the columns of
        :data:`CELL_KEYS`); only those columns are read.

    Raises
    ------
    ValueError
        If ``cells`` lacks the columns, or has cells in fields the QC table lacks (a cell
        table of another plate, or of fields the QC left out).
    """
    missing = [c for c in CELL_KEYS if c not in cells.columns]
    if missing:
        raise ValueError(f"the cell table lacks the columns {missing}")
    counts = cells[list(CELL_KEYS)].groupby(list(CELL_KEYS)).size()
    if hasattr(counts, "compute"):
        counts = counts.compute()
    counts = counts.rename("n_cells").reset_index().rename(columns=CELL_KEYS)
    keys = list(CELL_KEYS.values())
    fields = table[keys].drop_duplicates()
    joined = counts.merge(fields, on=keys, how="left", indicator=True)
    stray = joined[joined["_merge"] == "left_only"]
    if len(stray):
        shown = ", ".join(f"{r.well}/f{r.field}/t{r.t}" for r in stray.head(5).itertuples())
        raise ValueError(
            f"the cell table has cells in {len(stray)} field(s) the QC table lacks "
            f"(first: {shown}); give the cell table of this plate"
        )
    out = table.drop(columns="n_cells", errors="ignore").merge(counts, on=keys, how="left")
    out["n_cells"] = out["n_cells"].fillna(0).astype(np.int64)
    return out
