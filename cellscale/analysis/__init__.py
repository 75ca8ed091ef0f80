"""Analyses of profiles and embeddings: UMAP, outliers, batch effects, mean average precision.

Each analysis works on a screen too large to hold: what it fits it fits on a seeded sample,
and what it maps it maps lazily, chunk by chunk, or plate by plate.

- :func:`fit_umap` fits UMAP (umap-learn) on a sample of rows, optionally after sphering
  on controls; :meth:`UmapModel.transform` maps the rest lazily; :func:`plot_umap` and
  :func:`plot_density` draw them.
- :func:`outlier_scores` scores each cell by its distance to its ``k``-th neighbour among a
  reference sample of its plate (cells of other wells); :func:`well_outliers` finds the
  wells whose cells are outlying; :func:`plot_outlier_gallery`, :func:`plot_outlier_wells`.
- :func:`batch_effect` and :func:`compare_batch_effect` say whether batch or treatment
  dominates the profiles (silhouettes and kNN mixing against chance), before and after
  normalisation; :func:`plot_batch_effect`, :func:`plot_batch_effect_numbers`.
- :func:`mean_average_precision` scores each treatment against controls and its replicates
  against other treatments (copairs); :func:`plot_map`.

Grad-CAMO, the attention of a trained classifier inside each cell, is
:func:`cellscale.learning.gradcamo`; the interactive page of cells and wells is
:func:`cellscale.report.write_interactive_page`. A run does all of it with
``analysis: {enabled: true}``. These need ``pip install "cellscale[analysis]"``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cellscale.analysis._batch_effects import batch_effect as batch_effect
    from cellscale.analysis._batch_effects import compare_batch_effect as compare_batch_effect
    from cellscale.analysis._batch_effects import plot_batch_effect as plot_batch_effect
    from cellscale.analysis._batch_effects import (
        plot_batch_effect_numbers as plot_batch_effect_numbers,
    )
    from cellscale.analysis._map import MapResult as MapResult
    from cellscale.analysis._map import mean_average_precision as mean_average_precision
    from cellscale.analysis._map import plot_map as plot_map
    from cellscale.analysis._outliers import outlier_scores as outlier_scores
    from cellscale.analysis._outliers import plot_outlier_gallery as plot_outlier_gallery
    from cellscale.analysis._outliers import plot_outlier_wells as plot_outlier_wells
    from cellscale.analysis._outliers import well_outliers as well_outliers
    from cellscale.analysis._umap import UmapModel as UmapModel
    from cellscale.analysis._umap import fit_umap as fit_umap
    from cellscale.analysis._umap import plot_density as plot_density
    from cellscale.analysis._umap import plot_umap as plot_umap

_EXPORTS: dict[str, str] = {
    "batch_effect": "_batch_effects",
    "compare_batch_effect": "_batch_effects",
    "plot_batch_effect": "_batch_effects",
    "plot_batch_effect_numbers": "_batch_effects",
    "MapResult": "_map",
    "mean_average_precision": "_map",
    "plot_map": "_map",
    "outlier_scores": "_outliers",
    "plot_outlier_gallery": "_outliers",
    "plot_outlier_wells": "_outliers",
    "well_outliers": "_outliers",
    "UmapModel": "_umap",
    "fit_umap": "_umap",
    "plot_density": "_umap",
    "plot_umap": "_umap",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cellscale.analysis.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cellscale.analysis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
