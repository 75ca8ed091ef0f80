"""The report's numbers: what was imaged, QC flags, per-well and per-condition means, timings.

Each table function returns a :class:`~cellscale.report._page.Table` of text already
formatted (three significant digits, a dash when missing) under readable headers, for
the template to lay out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cellscale.measurement import well_summary
from cellscale.quality._flags import FLAGS
from cellscale.report._inputs import StageRecord
from cellscale.report._page import Table

__all__ = [
    "FIELD_KEYS",
    "cell_counts",
    "field_counts",
    "qc_counts",
    "stage_table",
    "training_table",
    "well_tables",
]

#: The columns that name one field at one time point.
FIELD_KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Timepoint"]

_WELL_HEADERS = {
    "Metadata_Plate": "plate",
    "Metadata_Well": "well",
    "Metadata_treatment": "treatment",
    "Metadata_concentration": "concentration (µM)",
    "time_h": "time (h)",
    "n_cells": "cells",
    "mean_area": "mean area (px)",
    "mean_roundness": "roundness (4πA/P²)",
    "mean_eccentricity": "eccentricity",
}
_CONDITION_KEYS = ["Metadata_treatment", "Metadata_concentration", "time_h"]
_CONDITION_HEADERS = {
    **{key: _WELL_HEADERS[key] for key in _CONDITION_KEYS},
    "wells": "wells",
    "n_cells": "cells per well",
    "mean_area": "mean area (px)",
    "mean_roundness": "roundness (4πA/P²)",
    "mean_eccentricity": "eccentricity",
}
_STAGE_HEADERS = {
    "name": "stage",
    "seconds": "seconds",
    "units": "units",
    "rate": "units/s",
    "status": "status",
}


def cell_counts(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells per field: :data:`FIELD_KEYS` and ``n_cells``, fields with cells only."""
    if len(cells) == 0:
        return pd.DataFrame(columns=[*FIELD_KEYS, "n_cells"])
    counts = cells.groupby(FIELD_KEYS, sort=True, dropna=False).size()
    return counts.rename("n_cells").reset_index()


def field_counts(counts: pd.DataFrame, field_quality: pd.DataFrame | None) -> str:
    """Plates, wells, fields and time points seen in the cell counts or the field table.

    ``counts`` are the cells per field (:func:`cell_counts`).
    """
    tables = [t[FIELD_KEYS] for t in (counts, field_quality) if t is not None and len(t)]
    fields = pd.concat(tables).drop_duplicates() if tables else pd.DataFrame(columns=FIELD_KEYS)
    counts = [
        (fields["Metadata_Plate"].nunique(), "plate"),
        (len(fields[FIELD_KEYS[:2]].drop_duplicates()), "well"),
        (len(fields[FIELD_KEYS[:3]].drop_duplicates()), "field"),
        (fields["Metadata_Timepoint"].nunique(), "time point"),
        (int(counts["n_cells"].sum()), "cell"),
    ]
    return " · ".join(f"{n:,} {word}{'' if n == 1 else 's'}" for n, word in counts)


def qc_counts(qc: pd.DataFrame) -> Table:
    """Images and flags of each kind (every QC flag), per plate and channel."""
    groups = qc.groupby(["Metadata_Plate", "channel"])
    counts = groups[list(FLAGS)].sum().reset_index()
    counts["images"] = groups.size().to_numpy()
    headers = {"Metadata_Plate": "plate", "channel": "channel", "images": "images"}
    return _table(counts, {**headers, **{f: f for f in FLAGS}})


def well_tables(cells: pd.DataFrame, wells: pd.DataFrame | None = None) -> tuple[Table, Table]:
    """Per condition (means of the well means), and per well and time point.

    ``wells`` is :func:`cellscale.well_summary` of every cell; by default it is made from
    ``cells``. The time (h) column is there only where there are several time points: a
    screen imaged once has no hours to show.

    Raises
    ------
    ValueError
        If ``wells`` is not given and the cell table lacks what
        :func:`cellscale.well_summary` needs.
    """
    if wells is None:
        wells = well_summary(cells, compartment="cells")
    wells = wells.copy()
    if wells["Metadata_Timepoint"].nunique() > 1:
        wells["time_h"] = pd.to_numeric(wells["Metadata_Timepoint"]) / 3600
    return _table(_conditions(wells), _CONDITION_HEADERS), _table(wells, _WELL_HEADERS)


def _conditions(wells: pd.DataFrame) -> pd.DataFrame:
    """Wells grouped by treatment, concentration and time: their number and mean values."""
    keys = [k for k in _CONDITION_KEYS if k in wells.columns]
    means = [
        c for c in ("n_cells", "mean_area", "mean_roundness", "mean_eccentricity") if c in wells
    ]
    grouped = wells.groupby(keys, dropna=False, sort=True)
    return grouped.agg(wells=("n_cells", "size"), **{c: (c, "mean") for c in means}).reset_index()


_TRAINING_HEADERS = {
    "split": "evaluated on",
    "n": "samples",
    "n_wells": "wells",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "chance": "chance",
    "well_accuracy": "well vote accuracy",
    "batch_from_features": "batch from features",
}


def training_table(metrics: pd.DataFrame) -> Table:
    """The trained network's scores on each part it held out (:func:`cellscale.train`)."""
    return _table(metrics, _TRAINING_HEADERS)


def stage_table(stages: Sequence[StageRecord]) -> tuple[Table, str]:
    """Each stage's time, units and rate, and the total time formatted in seconds."""
    frame = pd.DataFrame(
        {
            "name": [s.name for s in stages],
            "seconds": [float(s.seconds) for s in stages],
            "units": [int(s.units) for s in stages],
            "rate": [s.units / s.seconds if s.seconds > 0 else math.nan for s in stages],
            "status": [s.status for s in stages],
        }
    )
    return _table(frame, _STAGE_HEADERS), f"{frame['seconds'].sum():,.1f}"


def _table(frame: pd.DataFrame, headers: Mapping[str, str]) -> Table:
    """The ``headers`` columns that ``frame`` has, every value formatted."""
    columns = [c for c in headers if c in frame.columns]
    return Table(
        headers=tuple(headers[c] for c in columns),
        numeric=tuple(pd.api.types.is_numeric_dtype(frame[c]) for c in columns),
        rows=tuple(
            tuple(_format(v) for v in values) for values in frame[columns].itertuples(index=False)
        ),
    )


def _format(value: Any) -> str:
    """A table value: three significant digits, thousands separated, a dash when missing."""
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return "\N{EN DASH}"
    if isinstance(value, float | np.floating):
        return f"{value:,.0f}" if abs(float(value)) >= 1000 else f"{value:.3g}"
    return str(value)
