"""What the report shows: the cell table, the PCA, QC, images and the run's stages.

:class:`ReportInputs` gathers everything :func:`cellscale.report.write_report` draws; the
small records (:class:`Overlay`, :class:`Gallery`, :class:`Thumbnail`, :class:`Figures`,
:class:`StageRecord`) carry images, figures and timings with their captions, checked
when they are made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cellscale.cells import METADATA_COLUMNS

__all__ = ["Figures", "Gallery", "Overlay", "ReportInputs", "StageRecord", "Thumbnail"]


@dataclass(frozen=True)
class Overlay:
    """One field's image with its segmentation outlines drawn on it.

    Parameters
    ----------
    title
        Caption, e.g. ``"P1 · B03 field 1 · DMSO 0 µM"``.
    image
        ``(y, x)`` image of any numeric dtype, shown with percentile (1, 99.5) contrast.
    labels
        ``(y, x)`` label image of the same shape, 0 for background; each object's outline
        is drawn in a colour.
    """

    title: str
    image: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if np.ndim(self.image) != 2 or np.shape(self.image) != np.shape(self.labels):
            raise ValueError(
                f"overlay {self.title!r}: image {np.shape(self.image)} and labels "
                f"{np.shape(self.labels)} must be 2-d images of the same shape"
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
class ReportInputs:
    """Everything the report shows.

    Parameters
    ----------
    title
        Page title, e.g. the screen's name.
    cells
        The cell table: one row per cell with ``cell_id``, the ``Metadata_`` columns
        (plate-map columns such as ``Metadata_treatment`` and ``Metadata_concentration``
        are optional) and the features. May have no rows.
    scores
        ``(n_cells, k)`` PCA scores, rows aligned with ``cells``.
    explained_variance_ratio
        ``(k,)`` explained-variance ratio of the components.
    field_quality
        One row per field with ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``,
        ``Metadata_Timepoint`` and ``focus_score``; ``None`` when not available.
    overlays
        Fields with their segmentation outlines.
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
    """

    title: str
    cells: pd.DataFrame
    scores: np.ndarray
    explained_variance_ratio: np.ndarray
    field_quality: pd.DataFrame | None
    overlays: Sequence[Overlay] = ()
    qc: pd.DataFrame | None = None
    qc_channel: str | None = None
    flagged: Sequence[Thumbnail] = ()
    illumination: Sequence[Figures] = ()
    galleries: Sequence[Gallery] = ()
    stages: Sequence[StageRecord] = ()
    problems: Sequence[str] = ()
    notes: Sequence[str] = ()

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
