"""The page's sections, gathered from the inputs: figures drawn, tables formatted, skips worded.

:func:`build_page` draws every figure into the figures folder, in page order, and
returns the :class:`~cellscale.report._page.Page` the template lays out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from cellscale.report._analysis import analysis_section
from cellscale.report._figures import (
    illumination_figures,
    pca_figures,
    plate_figures,
    qc_figures,
)
from cellscale.report._images import flagged_figures, gallery_figures, overlay_figures
from cellscale.report._inputs import ReportInputs, StageRecord
from cellscale.report._page import Page, Panel, Table, Tile
from cellscale.report._tables import (
    cell_counts,
    field_counts,
    qc_counts,
    stage_table,
    well_tables,
)
from cellscale.report._training import training_section
from cellscale.report._wells import well_figures

__all__ = ["build_page"]


def build_page(inputs: ReportInputs, folder: Path) -> Page:
    """Draw the figures of ``inputs`` into ``folder`` and gather the page's pieces."""
    cells = inputs.cells
    per_field = inputs.cell_counts if inputs.cell_counts is not None else cell_counts(cells)
    n_cells = int(per_field["n_cells"].sum())
    has_qc = inputs.qc is not None and not inputs.qc.empty
    plates = plate_figures(per_field, inputs.field_quality, has_qc, folder)
    quality, counts, flagged = _quality(inputs, folder)
    wells, per_condition, per_well = _wells(cells, inputs.well_summary, n_cells)
    run, stages, total = _run(inputs.stages)
    training = training_section(inputs.training, folder)
    no_cells = "No cells were found: the cell figures and tables are skipped."
    return Page(
        title=inputs.title,
        summary=field_counts(per_field, inputs.field_quality),
        written=datetime.now().strftime("%Y-%m-%d %H:%M"),
        no_cells=None if n_cells else no_cells,
        problems=tuple(inputs.problems),
        segmentation_problems=overlay_figures(
            inputs.segmentation_problems, folder, kind="segmentation-problem"
        ).tiles,
        plates=plates,
        quality=quality,
        qc_counts=counts,
        flagged=flagged,
        illumination=illumination_figures(inputs.illumination, folder),
        segmentation=overlay_figures(inputs.overlays, folder),
        crops=gallery_figures(inputs.galleries, folder),
        pca=pca_figures(cells, inputs.scores, inputs.explained_variance_ratio, folder, n_cells),
        training=training[0] if training else None,
        training_scores=training[1] if training else None,
        well_profiles=well_figures(inputs.wells, folder),
        analysis=analysis_section(inputs.analysis, folder),
        wells=wells,
        per_condition=per_condition,
        per_well=per_well,
        run=run,
        stages=stages,
        total_seconds=total,
        notes=tuple(inputs.notes),
    )


def _quality(
    inputs: ReportInputs, folder: Path
) -> tuple[Panel, Table | None, tuple[Tile, ...] | None]:
    """The QC maps, the flag counts and the flagged fields; a sentence instead without QC."""
    if inputs.qc is None or inputs.qc.empty:
        return Panel(skipped=("QC was not run (qc.enabled is off).",)), None, None
    maps = qc_figures(inputs.qc, inputs.qc_channel, folder)
    return maps, qc_counts(inputs.qc), flagged_figures(inputs.flagged, folder)


def _wells(
    cells: pd.DataFrame, summary: pd.DataFrame | None, n_cells: int
) -> tuple[Panel, Table | None, Table | None]:
    """The per-condition and per-well tables, or why they are skipped."""
    if n_cells == 0:
        skipped = "No cells: the per-well and per-condition tables are skipped."
        return Panel(skipped=(skipped,)), None, None
    try:
        per_condition, per_well = well_tables(cells, summary)
    except ValueError as error:
        return Panel(skipped=(f"The per-well tables are skipped: {error}.",)), None, None
    return Panel(), per_condition, per_well


def _run(stages: Sequence[StageRecord]) -> tuple[Panel, Table | None, str | None]:
    """The stage table and the total seconds, or why they are skipped."""
    if not stages:
        return Panel(skipped=("No stage records.",)), None, None
    table, total = stage_table(stages)
    return Panel(), table, total
