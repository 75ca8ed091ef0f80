"""What the report shows of every cell, gathered a chunk of a plate at a time.

The screen stages never hold the cells of the whole screen, nor of one plate: each
plate's cells are read once, a chunk of whole (time point, well)s at a time
(:func:`cellscale.pipeline._screen.screen_cells`), reduced to a :class:`CellSummary` —
cells per field, the per-well summary of :func:`cellscale.well_summary`, a seeded sample
for the per-cell figures and the fields the crop galleries cut — and dropped before the
next chunk is read (:func:`summarise_chunks`). Summaries of chunks and of plates merge
exactly (:func:`merge`): every count and mean is per plate, well and time point, whole
within one chunk.

The sample of the per-cell figures (the PCA scatter plots) has at most
:data:`SAMPLE_CELLS` cells, spread evenly over the plates: each plate gives at most
``SAMPLE_CELLS // plates`` of its cells (all of them when it has fewer), chosen without
replacement by a generator seeded with (:data:`SAMPLE_SEED`, the plate's position in the
config), in the plate's row order. The same screen gives the same sample on every run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cellscale.cells import CELL_ID
from cellscale.report._tables import FIELD_KEYS, cell_counts

__all__ = [
    "SAMPLE_CELLS",
    "SAMPLE_SEED",
    "CellSummary",
    "gallery_cells",
    "merge",
    "summarise",
    "summarise_chunks",
]

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
    """One plate's :class:`CellSummary` from all its cells at once.

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
    whole = [(np.arange(len(cells)), cells)]
    return summarise_chunks(name, whole, len(cells), position, plates, gallery)


def summarise_chunks(
    name: str,
    chunks: Iterable[tuple[np.ndarray, pd.DataFrame]],
    rows: int,
    position: int,
    plates: int,
    gallery: bool,
) -> CellSummary:
    """One plate's :class:`CellSummary` from its cells chunk by chunk, as :func:`summarise`.

    Each chunk holds every cell of the (time point, well)s it has, in the plate's row
    order, with each row's position in that order: per-field counts, per-well means and
    the galleries' fields are then whole within a chunk, the sample is drawn by position,
    and the summary is exactly :func:`summarise`'s of all the cells at once.

    Parameters
    ----------
    name, position, plates, gallery
        As for :func:`summarise`.
    chunks
        ``(positions, cells)`` pairs, the cells as :func:`summarise` takes them.
    rows
        The plate's rows (cells) in all; at least one.
    """
    sample_rows = _sample_rows(rows, SAMPLE_CELLS // max(plates, 1), position)
    counts, wells, picked, at = [], [], [], []
    chosen: pd.DataFrame | None = None
    for positions, cells in chunks:
        if cells.empty:
            continue
        counts.append(cell_counts(cells))
        wells.append(_well_summary(cells))
        sampled = np.isin(positions, sample_rows)
        picked.append(cells[sampled])
        at.append(positions[sampled])
        if gallery:
            chosen = _better_gallery(chosen, gallery_cells(cells))
    sample = pd.concat(picked).iloc[np.argsort(np.concatenate(at), kind="stable")]
    merged_wells = None
    if all(w is not None for w in wells):
        by = ["Metadata_Plate", "Metadata_Well", "Metadata_Timepoint"]
        merged_wells = pd.concat(wells).sort_values(by, ignore_index=True)
    return CellSummary(
        counts=pd.concat(counts).sort_values(FIELD_KEYS, ignore_index=True),
        wells=merged_wells,
        samples={name: sample.reset_index(drop=True)},
        gallery=picked[0].iloc[:0] if chosen is None else chosen,
    )


def _better_gallery(chosen: pd.DataFrame | None, found: pd.DataFrame) -> pd.DataFrame:
    """Per condition, the field with the most cells of the galleries ``chosen`` and ``found``.

    Ties go to the first field in (time point, well, site) order, as in
    :func:`gallery_cells`; each holds one field per condition.
    """
    return found if chosen is None else gallery_cells(pd.concat([chosen, found]))


def _well_summary(cells: pd.DataFrame) -> pd.DataFrame | None:
    """:func:`cellscale.well_summary` of ``cells``, or ``None`` without shape columns."""
    from cellscale.measurement import well_summary

    try:
        return well_summary(cells, compartment="cells")
    except ValueError:  # no shape columns: the report says so from the sample
        return None


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
