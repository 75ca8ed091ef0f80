"""What the report shows: the cell table, the PCA, QC, images and the run's stages.

:class:`ReportInputs` gathers everything :func:`cellscale.report.write_report` draws; the
small records (:class:`Overlay`, :class:`Gallery`, :class:`Thumbnail`, :class:`Figures`,
:class:`StageRecord`) carry images, figures and timings with their captions, checked
when they are made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cellscale.cells import METADATA_COLUMNS

__all__ = [
    "AnalysisResults",
    "Figures",
    "Gallery",
    "Overlay",
    "ReportInputs",
    "StageRecord",
    "Thumbnail",
    "TrainingResults",
]


@dataclass(frozen=True)
class Overlay:
    """One field's image with the outlines of its segmented objects drawn on it.

    Parameters
    ----------
    title
        Caption, e.g. ``"P1 · B03 field 1 · DMSO 0 µM"``.
    image
        ``(y, x)`` image of any numeric dtype, shown with percentile (1, 99.5) contrast.
    outlines
        Label images of the same shape as ``image`` by compartment (``{"cells": ...,
        "nuclei": ...}``), 0 for background; each compartment's outlines have one colour,
        named in the figure's legend.
    channel
        The channel ``image`` shows.
    pixel_size_um
        The width of a pixel in µm, for a scale bar in µm; ``None`` draws it in pixels.
    """

    title: str
    image: np.ndarray
    outlines: Mapping[str, np.ndarray]
    channel: str
    pixel_size_um: float | None = None

    def __post_init__(self) -> None:
        if np.ndim(self.image) != 2:
            raise ValueError(
                f"overlay {self.title!r}: image must be 2-d, not {np.shape(self.image)}"
            )
        if not self.outlines:
            raise ValueError(f"overlay {self.title!r}: no compartment to outline")
        for compartment, labels in self.outlines.items():
            if np.shape(labels) != np.shape(self.image):
                raise ValueError(
                    f"overlay {self.title!r}: {compartment} labels {np.shape(labels)} and "
                    f"image {np.shape(self.image)} must have the same shape"
                )


@dataclass(frozen=True)
class Gallery:
    """Crops of one treatment.

    Parameters
    ----------
    title
        Caption, e.g. ``"drug_a 10 µM"``.
    crops
        ``(n, y, x)`` crops, drawn as a grid of tiles, each contrast-stretched on its own.
    """

    title: str
    crops: np.ndarray

    def __post_init__(self) -> None:
        if np.ndim(self.crops) != 3:
            raise ValueError(
                f"gallery {self.title!r}: crops must be (n, y, x), not {np.shape(self.crops)}"
            )


@dataclass(frozen=True)
class Thumbnail:
    """A small image of a field, with a caption (e.g. why QC flagged it).

    Parameters
    ----------
    title
        Caption, e.g. ``"P1 · B03 field 2 · DNA: blurry"``.
    image
        ``(y, x)`` image, shown with percentile (1, 99.5) contrast.
    """

    title: str
    image: np.ndarray

    def __post_init__(self) -> None:
        if np.ndim(self.image) != 2:
            raise ValueError(f"thumbnail {self.title!r}: image must be 2-d")


@dataclass(frozen=True)
class Figures:
    """Figures drawn elsewhere, shown under one heading (e.g. illumination models).

    Parameters
    ----------
    title
        Caption.
    figure
        A matplotlib figure.
    """

    title: str
    figure: Figure


@dataclass(frozen=True)
class StageRecord:
    """What one stage of the run did and how long it took.

    Parameters
    ----------
    name
        The stage, e.g. ``"segment"``.
    seconds
        Wall-clock time of the stage.
    units
        How many units (fields, cells, ...) the stage covers.
    status
        What happened, e.g. ``"ran"``, ``"resumed"`` or ``"skipped (unchanged)"``.
    """

    name: str
    seconds: float
    units: int
    status: str


@dataclass(frozen=True)
class TrainingResults:
    """The evaluation of the network a run trained (:func:`cellscale.train`).

    Parameters
    ----------
    label
        What it predicts, in words (the label column or columns).
    metrics, per_batch, confusion
        Its ``metrics``, ``per_batch`` and ``confusion`` tables (``split`` column first).
    """

    label: str
    metrics: pd.DataFrame
    per_batch: pd.DataFrame
    confusion: pd.DataFrame


@dataclass(frozen=True)
class AnalysisResults:
    """The analyses of a screen's embeddings and profiles (:mod:`cellscale.analysis`).

    Parameters
    ----------
    cells
        A sample of cells: ``cell_id``, ``Metadata_`` columns and what was computed for
        them: ``UMAP1``/``UMAP2``, ``PC1``/``PC2``, ``Outlier_Score``, ``GradCAMO`` (each
        optional). May have no rows.
    crops
        ``(n, C, Y, X)`` crops of ``cells``, row for row, for the interactive page and
        the outlier gallery; ``None``: no crops and no interactive page.
    wells
        One row per well: ``Metadata_`` columns, ``UMAP1``/``UMAP2`` of the well profiles
        and the outlier numbers (``Outlier_robust_z``, ``Outlier_outlying`` …); or ``None``.
    batch_effect
        :func:`cellscale.analysis.compare_batch_effect`'s table with its ``profiles``
        column (``before``, ``after``); or ``None``.
    mean_average_precision
        One row per treatment and ``kind`` (``activity`` against controls,
        ``consistency`` of replicates): ``condition``, ``mean_average_precision``,
        ``corrected_p_value``, ``retrieved``, ``threshold`` …; or ``None``.
    figures
        Figures drawn elsewhere (the Grad-CAMO gallery), each with its caption.
    condition
        The column naming each cell's and well's condition, for colouring; or ``None``.
    """

    cells: pd.DataFrame
    crops: np.ndarray | None = None
    wells: pd.DataFrame | None = None
    batch_effect: pd.DataFrame | None = None
    mean_average_precision: pd.DataFrame | None = None
    figures: Sequence[Figures] = ()
    condition: str | None = None


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows.

    Parameters
    ----------
    title
        Page title, e.g. the screen's name.
    cells
        The cells the per-cell figures (the PCA scatter plots) draw: one row per cell with
        ``cell_id``, the ``Metadata_`` columns (plate-map columns such as
        ``Metadata_treatment`` and ``Metadata_concentration`` are optional) and the
        features. The whole cell table, or, for a screen too large to hold, a sample of it
        with ``cell_counts`` and ``well_summary`` describing every cell. May have no rows.
    scores
        ``(n_cells, k)`` PCA scores, rows aligned with ``cells``.
    explained_variance_ratio
        ``(k,)`` explained-variance ratio of the components.
    field_quality
        One row per field with ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``,
        ``Metadata_Timepoint`` and ``focus_laplacian_norm`` (the QC table's focus
        measure); ``None`` when not available.
    overlays
        Fields with their segmentation outlines, from every plate; drawn one at a time,
        so an iterator that loads each field as it is asked for keeps one in memory.
    qc
        The QC table of every plate (:func:`cellscale.qc`), or ``None`` without QC.
    qc_channel
        The channel whose QC maps are drawn (the segmentation channel).
    flagged
        Thumbnails of fields QC flagged.
    illumination
        Each plate's illumination model, drawn.
    galleries
        Crops, one gallery per treatment.
    stages
        The run's stages, in order.
    problems
        What was skipped or failed, one sentence each.
    notes
        Anything else a reader needs, e.g. which embedding weights were used.
    wells
        The per-well profiles (``profiles/wells.parquet``): ``Metadata_`` columns and one
        numeric column per feature; ``None`` when not available.
    segmentation_problems
        Fields of the wells whose segmentation looked wrong, each captioned with why;
        shown with the problems (drawn one at a time, as ``overlays``).
    cell_counts
        Cells per field of every cell: ``Metadata_Plate``, ``Metadata_Well``,
        ``Metadata_Site``, ``Metadata_Timepoint`` and ``n_cells``; ``None`` counts the rows
        of ``cells``.
    well_summary
        :func:`cellscale.well_summary` of every cell (``compartment="cells"``); ``None``
        makes it from ``cells``.
    training
        How the network the run trained did on what it held out; ``None`` when it trained
        none.
    analysis
        The analyses of the embeddings and profiles, with the interactive page's cells;
        ``None`` when the run made none.
    """

    title: str
    cells: pd.DataFrame
    scores: np.ndarray
    explained_variance_ratio: np.ndarray
    field_quality: pd.DataFrame | None
    overlays: Iterable[Overlay] = ()
    qc: pd.DataFrame | None = None
    qc_channel: str | None = None
    flagged: Sequence[Thumbnail] = ()
    illumination: Sequence[Figures] = ()
    galleries: Sequence[Gallery] = ()
    stages: Sequence[StageRecord] = ()
    problems: Sequence[str] = ()
    notes: Sequence[str] = ()
    wells: pd.DataFrame | None = None
    segmentation_problems: Iterable[Overlay] = ()
    cell_counts: pd.DataFrame | None = None
    well_summary: pd.DataFrame | None = None
    training: TrainingResults | None = None
    analysis: AnalysisResults | None = None

    def __post_init__(self) -> None:
        if len(self.cells) == 0:
            return
        missing = [c for c in METADATA_COLUMNS if c not in self.cells.columns]
        if missing:
            raise ValueError(f"the cell table lacks the columns {missing}")
        if np.ndim(self.scores) != 2 or len(self.scores) != len(self.cells):
            raise ValueError(
                f"scores {np.shape(self.scores)} must have one row per cell ({len(self.cells)})"
            )
