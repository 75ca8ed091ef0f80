"""Per-well summaries of a cell table: counts, size and shape per condition, in one call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.dataframe as dd
import pandas as pd

from cellscale.cells import CELL_ID, compartment_prefix

__all__ = ["well_summary"]

_SHAPE = {
    "Area": "mean_area",
    "FormFactor": "mean_roundness",
    "Eccentricity": "mean_eccentricity",
    "Solidity": "mean_solidity",
}


def well_summary(
    cells: Any,
    *,
    compartment: str = "cells",
    by: Sequence[str] = ("Metadata_Plate", "Metadata_Well", "Metadata_Timepoint"),
) -> pd.DataFrame:
    """Count, mean size, roundness, eccentricity and solidity per well.

    Roundness is the mean ``AreaShape_FormFactor`` (4πA/P² of each object's outline, see
    :mod:`cellscale.measurement._features`): 1 for a disc, at most 1 for any object.

    Parameters
    ----------
    cells
        A cell table (pandas or dask DataFrame), e.g. from :func:`cellscale.measure` or
        :func:`cellscale.read_cells`.
    compartment
        Whose shape to summarise: ``"cells"``, ``"nuclei"``, ``"objects"`` … (falls back
        to the first compartment the table has).
    by
        The grouping columns; every other ``Metadata_`` column constant within a group
        (the plate-map annotations) is kept.

    Returns
    -------
    pandas.DataFrame
        One row per group: the group and annotation columns, ``n_cells`` and the means.
        Wells with no objects are absent (their fields had none to measure).
    """
    prefix = f"{_prefix(cells, compartment)}_AreaShape_"
    columns = {prefix + name: out for name, out in _SHAPE.items() if prefix + name in cells.columns}
    keep = [
        c
        for c in cells.columns
        if c.startswith("Metadata_")
        and c not in by
        and c != "Metadata_ObjectNumber"
        and c != "Metadata_Site"
    ]
    grouped = cells[[*by, *keep, CELL_ID, *columns]].groupby(list(by))
    aggregations: dict[str, Any] = {CELL_ID: "count", **{c: "mean" for c in columns}}
    aggregations.update({c: "first" for c in keep})
    summary = grouped.agg(aggregations)
    if isinstance(summary, dd.DataFrame):
        summary = summary.compute()
    summary = summary.rename(columns={CELL_ID: "n_cells", **columns}).reset_index()
    return summary[[*by, *keep, "n_cells", *columns.values()]].sort_values(
        list(by), ignore_index=True
    )


def _prefix(cells: Any, compartment: str) -> str:
    wanted = compartment_prefix(compartment)
    if any(c.startswith(f"{wanted}_AreaShape_") for c in cells.columns):
        return wanted
    for column in cells.columns:
        if column.endswith("_AreaShape_Area"):
            return str(column).removesuffix("_AreaShape_Area")
    raise ValueError(f"the table has no AreaShape features of {compartment!r}")
