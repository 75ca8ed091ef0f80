"""Plotted figures: plate maps of cells and focus, QC maps, illumination models and the PCA.

Each function draws with :mod:`cellscale.plots`, saves the PNGs in the figures folder
(at :data:`DPI`) and returns them as a :class:`~cellscale.report._page.Panel`, with a
sentence for each figure it had to skip. No figure shows a constant: a map or colouring
whose value is the same everywhere is replaced by a sentence giving that value
(:func:`same_everywhere`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cellscale import plots
from cellscale.report._inputs import Figures
from cellscale.report._page import Panel, Tile, png_name
from cellscale.report._tables import FIELD_KEYS

__all__ = [
    "FOCUS",
    "illumination_figures",
    "pca_figures",
    "plate_figures",
    "qc_figures",
    "same_everywhere",
    "save",
]

#: Resolution of the PNG plots.
DPI = 100
#: The run's one focus measure (the field table's and QC table's column) and its name.
FOCUS = ("focus_laplacian_norm", "focus (variance of the Laplacian / signal²)")

_QC_MAPS = {
    FOCUS[0]: FOCUS[1],
    "signal_to_background": "signal to background",
    "flagged": "fraction of fields flagged",
}


def plate_figures(
    cells: pd.DataFrame, field_quality: pd.DataFrame | None, has_qc: bool, folder: Path
) -> tuple[Panel, Panel]:
    """Per plate, maps of the cells per well and of the mean :data:`FOCUS` per well.

    ``cells`` are the cells per field (:func:`~cellscale.report._tables.cell_counts`).
    With a QC table the focus maps are left to the QC maps, which draw the same measure.
    """
    counts = _cells_per_well(cells, field_quality)
    if counts.empty:
        skipped = "No cells and no field table: the cells-per-well maps are skipped."
        per_well = Panel(skipped=(skipped,))
    else:
        times = cells["Metadata_Timepoint"].nunique() if len(cells) else 0
        what = f"cells per well (all {times} time points)" if times > 1 else "cells per well"
        per_well = _plate_maps(counts, "cells", what, "cells-per-well", folder)
    if has_qc:
        return per_well, Panel(skipped=(f"The {FOCUS[1]} per well is in Image quality.",))
    if field_quality is None or field_quality.empty:
        return per_well, Panel(skipped=("No field quality table: the focus maps are skipped.",))
    focus = field_quality.groupby(FIELD_KEYS[:2])[FOCUS[0]].mean()
    return per_well, _plate_maps(focus, FOCUS[1], f"mean {FOCUS[1]} per well", "focus", folder)


def _cells_per_well(cells: pd.DataFrame, field_quality: pd.DataFrame | None) -> pd.Series:
    """Cells per (plate, well), with 0 for wells of the field table that have none."""
    wells = FIELD_KEYS[:2]
    counts = cells.groupby(wells)["n_cells"].sum() if len(cells) else pd.Series(dtype=float)
    if field_quality is not None and len(field_quality):
        imaged = pd.MultiIndex.from_frame(field_quality[wells].drop_duplicates())
        counts = counts.reindex(counts.index.union(imaged) if len(counts) else imaged, fill_value=0)
    return counts


def _plate_maps(values: pd.Series, label: str, what: str, kind: str, folder: Path) -> Panel:
    tiles, skipped = [], []
    for i, (plate, per_well) in enumerate(values.groupby(level=0, sort=True), start=1):
        constant = same_everywhere(per_well, f"Plate {plate}: {what}", "well")
        if constant:
            skipped.append(constant)
            continue
        name = png_name(kind, i, str(plate))
        save(plots.plate_heatmap(per_well.droplevel(0), label=label), folder / name)
        tiles.append(Tile(name, f"{what}, plate {plate}", f"Plate {plate}: {what}"))
    return Panel(tuple(tiles), tuple(skipped))


def same_everywhere(values: pd.Series, what: str, where: str) -> str | None:
    """A sentence giving the one value of ``values`` (missing ones aside), else ``None``.

    Examples
    --------
    >>> same_everywhere(pd.Series([20, 20.0]), "Plate P1: cells per well", "well")
    'Plate P1: cells per well is 20 in every well (no map drawn).'
    >>> same_everywhere(pd.Series([1, 2]), "cells", "well") is None
    True
    """
    present = values.dropna().unique()
    if len(present) > 1:
        return None
    value = f"{present[0]:.3g}" if len(present) and _is_number(present[0]) else None
    shown = value or (str(present[0]) if len(present) else "missing")
    return f"{what} is {shown} in every {where} (no map drawn)."


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def qc_figures(table: pd.DataFrame, channel: str | None, folder: Path) -> Panel:
    """Per plate, the :data:`_QC_MAPS` of ``channel`` (any channel if the table lacks it)."""
    chosen = table[table["channel"] == channel] if channel in set(table["channel"]) else table
    tiles, skipped = [], []
    for p, (plate, rows) in enumerate(chosen.groupby("Metadata_Plate", sort=True), start=1):
        rows = rows[rows["t"] == rows["t"].min()]
        shown = str(rows["channel"].iloc[0])
        for column, what in _QC_MAPS.items():
            per_well = rows.groupby("well")[column].mean()
            constant = same_everywhere(per_well, f"Plate {plate} · {shown}: {what}", "well")
            if constant:
                skipped.append(constant)
                continue
            name = png_name(f"qc-{column}", p, str(plate))
            figure = plots.qc_heatmap(rows, column, channel=shown, title=f"{plate}: {what}")
            save(figure, folder / name)
            tiles.append(Tile(name, f"{what}, plate {plate}", f"Plate {plate} · {shown}: {what}"))
    return Panel(tuple(tiles), tuple(skipped))


def illumination_figures(models: Sequence[Figures], folder: Path) -> Panel:
    """Each plate's illumination model, as drawn by the caller."""
    if not models:
        return Panel(skipped=("No illumination correction (illumination.method is null).",))
    tiles = []
    for i, model in enumerate(models, start=1):
        name = png_name("illumination", i, model.title)
        save(model.figure, folder / name)
        tiles.append(Tile(name, model.title, model.title))
    return Panel(tuple(tiles))


def pca_figures(
    cells: pd.DataFrame,
    scores: np.ndarray,
    ratio: np.ndarray,
    folder: Path,
    total: int | None = None,
) -> Panel:
    """PC1 against PC2 coloured by treatment, time and concentration; explained variance.

    A colouring that is absent, or the same for every cell, is a sentence instead. Where
    ``cells`` are a sample of ``total`` cells, the captions say so.
    """
    sampled = ""
    if total is not None and total > len(cells):
        sampled = f" (a seeded sample of {len(cells):,} of {total:,} cells)"
    skipped = []
    tiles = []
    if len(cells) == 0:
        skipped.append("No cells: the PCA scatter plots are skipped.")
    elif np.shape(scores)[1] < 2:
        skipped.append("Fewer than two components: the PCA scatter plots are skipped.")
    else:
        for i, (column, label, values) in enumerate(_colourings(cells), start=1):
            if values is None:
                skipped.append(f"No {column} column: the PCA scatter by {label} is skipped.")
                continue
            constant = same_everywhere(values, f"The {label}", "cell")
            if constant:
                skipped.append(constant.replace("no map drawn", "no PCA scatter by it"))
                continue
            name = png_name("pca", i, column.removeprefix("Metadata_"))
            save(plots.pca_scatter(scores, values, label=label), folder / name)
            caption = f"PC1 vs PC2 by {label}{sampled}"
            tiles.append(Tile(name, f"PC1 against PC2 by {label}", caption))
    if len(ratio):
        name = "explained-variance.png"
        save(plots.explained_variance(ratio), folder / name)
        tiles.append(Tile(name, "explained variance per component", "Explained variance"))
    else:
        skipped.append("No components: the explained-variance plot is skipped.")
    return Panel(tuple(tiles), tuple(skipped))


def _colourings(cells: pd.DataFrame) -> list[tuple[str, str, pd.Series | None]]:
    """(column, label, values or None when the column is absent) for each PCA colouring.

    Time colours the cells only where there are several time points: a screen imaged
    once has no hours to show.
    """
    colourings = [("Metadata_treatment", "treatment", cells.get("Metadata_treatment"))]
    if cells["Metadata_Timepoint"].nunique() > 1:
        time = pd.to_numeric(cells["Metadata_Timepoint"]) / 3600
        colourings.append(("Metadata_Timepoint", "time (h)", time))
    concentration = cells.get("Metadata_concentration")
    colourings.append(("Metadata_concentration", "concentration (µM)", concentration))
    return colourings


def save(figure: Figure, path: Path) -> None:
    """Write ``figure`` as a PNG at :data:`DPI`."""
    figure.savefig(path, dpi=DPI)
