"""The report's analysis section: UMAPs, outliers, batch effects, mAP, Grad-CAMO, a link."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cellscale.report._inputs import AnalysisResults
from cellscale.report._page import EXPLORE, AnalysisSection, Panel, Table, Tile, png_name
from cellscale.report._tables import _table

__all__ = ["analysis_section", "write_explore_page"]

#: Outlying cells the gallery shows.
GALLERY_CELLS = 24


def analysis_section(analysis: AnalysisResults | None, folder: Path) -> AnalysisSection | None:
    """Draw the analyses into ``folder`` (the figures folder); ``None`` without analyses."""
    if analysis is None:
        return None
    drawn: list[Tile] = []
    skipped: list[str] = []

    def draw(kind: str, text: str, caption: str, make: Callable[[], Figure]) -> None:
        name = png_name(kind, len(drawn) + 1, text)
        figure = make()
        figure.savefig(folder / name, dpi=100, bbox_inches="tight")
        plt.close(figure)
        drawn.append(Tile(name, text, caption))

    _cell_figures(analysis, draw, skipped)
    _well_figures(analysis, draw, skipped)
    for figures in analysis.figures:
        draw("analysis", figures.title, figures.title, _drawn(figures.figure))
    has_page = analysis.crops is not None and len(analysis.cells) > 0
    return AnalysisSection(
        panel=Panel(tuple(drawn), tuple(skipped)),
        batch_effect=_batch_table(analysis.batch_effect),
        mean_average_precision=_map_table(analysis.mean_average_precision),
        explore=f"{EXPLORE}/index.html" if has_page else None,
    )


def _drawn(figure: Figure) -> Callable[[], Figure]:
    """A figure drawn elsewhere, as the section's drawing functions give theirs."""
    return lambda: figure


def _colourings(table: pd.DataFrame, condition: str | None) -> list[str]:
    """The metadata columns worth colouring by: plate, batch, condition, where they vary."""
    wanted = ["Metadata_Plate", "Metadata_Batch", condition]
    return [c for c in dict.fromkeys(wanted) if c and c in table and table[c].nunique() > 1]


def _cell_figures(analysis: AnalysisResults, draw: Any, skipped: list[str]) -> None:
    from cellscale.analysis._outliers import plot_outlier_gallery
    from cellscale.analysis._umap import plot_density, plot_umap

    cells = analysis.cells
    if cells.empty:
        skipped.append("No cells were analysed: the per-cell analyses are skipped.")
        return
    if {"UMAP1", "UMAP2"} <= set(cells.columns):
        coords = cells[["UMAP1", "UMAP2"]].to_numpy()
        n = len(cells)
        for column in [*_colourings(cells, analysis.condition), "Outlier_Score", "GradCAMO"]:
            if column in cells and cells[column].nunique() > 1:
                caption = f"UMAP of {n:,} sampled cells' PCA scores, coloured by {column}"
                draw(
                    "umap-cells",
                    column,
                    caption,
                    lambda c=column: plot_umap(coords, cells, c),
                )
        draw(
            "umap-density",
            "density",
            f"Where the {n:,} sampled cells lie in the UMAP (log scale)",
            lambda: plot_density(coords),
        )
    if "Outlier_Score" in cells and analysis.crops is not None:
        caption = (
            f"The {min(GALLERY_CELLS, len(cells))} most outlying of the sampled cells: "
            "distance to their k-th neighbour of other wells in PCA space"
        )
        draw(
            "outliers",
            "most outlying cells",
            caption,
            lambda: plot_outlier_gallery(
                analysis.crops, cells["Outlier_Score"].to_numpy(), top=GALLERY_CELLS
            ),
        )
    if "GradCAMO" in cells:
        scores = cells["GradCAMO"].dropna()
        share = float((scores > 0.5).mean()) if len(scores) else float("nan")
        skipped.append(
            f"Grad-CAMO: {share:.0%} of {len(scores):,} sampled cells have most of the "
            "network's attention inside the cell (score above 0.5)."
        )


def _well_figures(analysis: AnalysisResults, draw: Any, skipped: list[str]) -> None:
    from cellscale.analysis._map import MapResult, plot_map
    from cellscale.analysis._outliers import plot_outlier_wells
    from cellscale.analysis._umap import plot_umap

    wells = analysis.wells
    if wells is not None and {"UMAP1", "UMAP2"} <= set(wells.columns):
        coords = wells[["UMAP1", "UMAP2"]].to_numpy()
        for column in _colourings(wells, analysis.condition):
            caption = f"UMAP of the {len(wells)} well profiles, coloured by {column}"
            draw("umap-wells", column, caption, lambda c=column: plot_umap(coords, wells, c))
    elif wells is not None:
        skipped.append("Too few wells for a UMAP of the well profiles.")
    if wells is not None and "Outlier_robust_z" in wells:
        outliers = wells.rename(columns=lambda c: str(c).removeprefix("Outlier_"))
        for plate in sorted(outliers["Metadata_Plate"].dropna().unique()):
            caption = f"Plate {plate}: how outlying each well's cells are (robust z)"
            draw(
                "outlier-wells",
                str(plate),
                caption,
                lambda p=plate: plot_outlier_wells(outliers.dropna(subset=["robust_z"]), plate=p),
            )
    if analysis.batch_effect is not None:
        from cellscale.analysis._batch_effects import plot_batch_effect_numbers

        table = analysis.batch_effect.set_index("profiles")
        caption = "Silhouette and kNN mixing by batch and by treatment, before and after"
        draw("batch-effect", "batch effect", caption, lambda: plot_batch_effect_numbers(table))
    found = analysis.mean_average_precision
    if found is not None and len(found):
        result = MapResult(
            activity=found[found["kind"] == "activity"].drop(columns="kind"),
            consistency=found[found["kind"] == "consistency"].drop(columns="kind"),
            treatment="condition",
            threshold=float(found["threshold"].iloc[0]),
            unscored=(),
        )
        caption = "mAP of each treatment against controls and of its replicates"
        draw("map", "mean average precision", caption, lambda: plot_map(result))


def _batch_table(table: pd.DataFrame | None) -> Table | None:
    if table is None:
        return None
    numbers = [c for c in table.columns if c.startswith(("silhouette_", "knn_"))]
    headers = {c: c.replace("_", " ") for c in ["profiles", *numbers, "dominant"]}
    return _table(table, headers)


def _map_table(table: pd.DataFrame | None) -> Table | None:
    if table is None or table.empty:
        return None
    headers = {
        "kind": "against",
        "condition": "treatment",
        "n_profiles": "wells",
        "mean_average_precision": "mAP",
        "corrected_p_value": "corrected p",
        "retrieved": "retrieved",
    }
    against = {"activity": "controls", "consistency": "replicates"}
    shown = table.assign(kind=table["kind"].map(against))
    return _table(shown, headers)


def write_explore_page(folder: Path, analysis: AnalysisResults | None) -> None:
    """Write the interactive page into ``folder / EXPLORE`` where there are cells with crops."""
    from cellscale.report._interactive import write_interactive_page

    if analysis is None or analysis.crops is None or analysis.cells.empty:
        return
    cells = analysis.cells
    x, y = ("UMAP1", "UMAP2") if "UMAP1" in cells else ("PC1", "PC2")
    wells = analysis.wells
    if wells is not None and "UMAP1" not in wells:
        wells = None
    extra = [c for c in ("Outlier_Score", "GradCAMO") if c in cells]
    columns = [c for c in cells.columns if str(c).startswith("Metadata_")] + extra
    write_interactive_page(
        folder / EXPLORE,
        cells,
        x=x,
        y=y,
        crops=np.asarray(analysis.crops),
        wells=wells,
        columns=columns,
        color_by=analysis.condition if analysis.condition in cells else None,
        title="Cells and wells",
    )
