"""What the report shows of every cell, gathered one plate at a time.

The screen stages never hold the cells of the whole screen: each plate's cells are read
once (:func:`cellscale.pipeline._screen.screen_cells`), reduced to a
:class:`CellSummary` — cells per field, the per-well summary of
:func:`cellscale.well_summary`, a seeded sample for the per-cell figures and the fields
the crop galleries cut — and dropped before the next plate is read. Summaries of plates
merge exactly (:func:`merge`): every count and mean is per plate, well and time point.

The sample of the per-cell figures (the PCA scatter plots) has at most
:data:`SAMPLE_CELLS` cells, spread evenly over the plates: each plate gives at most
``SAMPLE_CELLS // plates`` of its cells (all of them when it has fewer), chosen without
replacement by a generator seeded with (:data:`SAMPLE_SEED`, the plate's position in the
config), in the plate's row order. The same screen gives the same sample on every run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cellscale.cells import CELL_ID
from cellscale.report._tables import FIELD_KEYS, cell_counts

__all__ = ["SAMPLE_CELLS", "SAMPLE_SEED", "CellSummary", "gallery_cells", "merge", "summarise"]

#: Most cells the per-cell figures draw, over all plates.
SAMPLE_CELLS = 20_000
#: Seed of the sample of the per-cell figures.
SAMPLE_SEED = 0
_CONDITIONS = ("Metadata_treatment", "Metadata_concentration")


@dataclass(frozen=True)
class CellSummary:
    """The report's view of cells: counts and means of all, rows of a few.

    Attributes
    ----------
    counts
        Cells per field: :data:`FIELD_KEYS` and ``n_cells``, fields with cells only.
    wells
        :func:`cellscale.well_summary` of the cells (``compartment="cells"``), or ``None``
        when the cells lack what it needs (the report then says why).
    samples
        The seeded sample of the per-cell figures, by plate (in config order): ``cell_id``,
        the ``Metadata_`` columns and the shape columns.
    gallery
        The cells the crop galleries cut: of the first plate with cells, per condition,
        every cell of its field (and time point) with the most cells.
    """

    counts: pd.DataFrame
    wells: pd.DataFrame | None
    samples: dict[str, pd.DataFrame]
    gallery: pd.DataFrame

    @property
    def cells(self) -> int:
        """Cells summarised."""
        return int(self.counts["n_cells"].sum())

    @property
    def sample(self) -> pd.DataFrame:
        """Every plate's sample, one after the other."""
        return pd.concat(list(self.samples.values()), ignore_index=True)


def summarise(
    name: str, cells: pd.DataFrame, position: int, plates: int, gallery: bool
) -> CellSummary:
    """One plate's :class:`CellSummary`.

    Parameters
    ----------
    name
        The plate's name.
    cells
        The plate's cells: ``cell_id``, the ``Metadata_`` columns and the shape columns.
    position
        The plate's position in the config (seeds its sample).
    plates
        How many plates the screen has (shares :data:`SAMPLE_CELLS` among them).
    gallery
        Whether this plate's cells make the galleries.
    """
    from cellscale.measurement import well_summary

    try:
        wells = well_summary(cells, compartment="cells")
    except ValueError:  # no shape columns: the report says so from the sample
        wells = None
    rows = _sample_rows(len(cells), SAMPLE_CELLS // max(plates, 1), position)
    return CellSummary(
        counts=cell_counts(cells),
        wells=wells,
        samples={name: cells.iloc[rows].reset_index(drop=True)},
        gallery=gallery_cells(cells) if gallery else cells.iloc[:0],
    )


def merge(summaries: list[CellSummary], columns: list[str] | None = None) -> CellSummary:
    """The summaries of several plates as one, in plate order.

    ``columns`` are the cell table's columns, for the empty summary of a screen without
    cells.
    A plate without shape columns leaves the merged ``wells`` ``None``.
    """
    if not summaries:
        empty = pd.DataFrame(columns=columns or [CELL_ID])
        counts = pd.DataFrame(columns=[*FIELD_KEYS, "n_cells"])
        return CellSummary(counts, None, {"": empty}, empty)
    wells = None
    if all(s.wells is not None for s in summaries):
        by = ["Metadata_Plate", "Metadata_Well", "Metadata_Timepoint"]
        tables = [s.wells for s in summaries]
        wells = pd.concat(tables, ignore_index=True).sort_values(by, ignore_index=True)
    return CellSummary(
        counts=pd.concat([s.counts for s in summaries], ignore_index=True),
        wells=wells,
        samples={k: v for s in summaries for k, v in s.samples.items()},
        gallery=next((s.gallery for s in summaries if len(s.gallery)), summaries[0].gallery),
    )


def gallery_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Per condition (treatment and concentration, else well), its field with the most cells.

    Where fields tie, the first in (time point, well, site) order.
    """
    if cells.empty:
        return cells
    conditions = [c for c in _CONDITIONS if c in cells.columns] or ["Metadata_Well"]
    keys = ["Metadata_Timepoint", "Metadata_Well", "Metadata_Site"]
    chosen = []
    for _, group in cells.groupby(conditions, sort=True):
        _, field_cells = max(group.groupby(keys, sort=True), key=lambda g: len(g[1]))
        chosen.append(field_cells)
    return pd.concat(chosen)


def _sample_rows(n: int, cap: int, position: int) -> np.ndarray:
    """Sorted row numbers of at most ``cap`` of ``n`` rows, seeded by the plate's position."""
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng([SAMPLE_SEED, position])
    return np.sort(rng.choice(n, size=cap, replace=False))
