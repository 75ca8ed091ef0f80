"""Figures of the per-well profiles: their PCA, dose-response curves, replicate correlation.

:func:`well_figures` draws each with :mod:`cellscale.plots` from the wells table
(``profiles/wells.parquet``: ``Metadata_`` columns and one numeric column per feature). A
figure whose columns are missing, or whose data cannot make it (e.g. fewer than two
concentrations), is a one-line sentence instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from cellscale import plots
from cellscale.report._figures import same_everywhere, save
from cellscale.report._page import Panel, Tile

__all__ = ["well_figures"]

TREATMENT = "Metadata_treatment"
CONCENTRATION = "Metadata_concentration"


def well_figures(wells: pd.DataFrame | None, folder: Path) -> Panel:
    """The well PCA, dose-response curves and replicate correlation, or why each is skipped."""
    if wells is None or wells.empty:
        return Panel(skipped=("No per-well profiles: the well figures are skipped.",))
    skipped: list[str] = []
    color = _column(wells, TREATMENT, "the well PCA is not coloured by treatment", skipped)
    size = _column(wells, CONCENTRATION, "the well PCA is not sized by concentration", skipped)
    keys = [c for c in (TREATMENT, CONCENTRATION) if c in wells.columns]
    drawings: list[tuple[str, str, Callable[[], Figure]]] = [
        (
            "well-pca",
            "PC1 against PC2 of the well profiles",
            lambda: plots.well_pca(wells, color=color, size=size),
        ),
        (
            "dose-response",
            "the features most correlated with concentration, per treatment",
            lambda: plots.dose_response(wells),
        ),
        (
            "replicate-correlation",
            f"correlation of replicate wells (same {_named(keys)})",
            lambda: plots.replicate_correlation(wells, keys=keys),
        ),
    ]
    if not keys:
        drawings.pop()
        skipped.append("No treatment or concentration column: no replicates to correlate.")
    tiles = []
    for name, what, draw in drawings:
        try:
            figure = draw()
        except ValueError as error:
            skipped.append(f"No figure of {what}: {error}.")
            continue
        save(figure, folder / f"{name}.png")
        tiles.append(Tile(f"{name}.png", what, what[0].upper() + what[1:]))
    return Panel(tuple(tiles), tuple(skipped))


def _column(wells: pd.DataFrame, column: str, effect: str, skipped: list[str]) -> str | None:
    """``column`` if the wells have it and it varies, else ``None`` and a sentence why not."""
    if column not in wells.columns:
        skipped.append(f"No {column} column: {effect}.")
        return None
    constant = same_everywhere(wells[column], f"The {column.removeprefix('Metadata_')}", "well")
    if constant:
        skipped.append(constant.replace("no map drawn", effect))
        return None
    return column


def _named(keys: list[str]) -> str:
    return " & ".join(k.removeprefix("Metadata_") for k in keys) or "condition"
