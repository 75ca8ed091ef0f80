"""The run's report: one HTML page with its PNG figures, opened from disk after a run.

:func:`write_report` renders ``index.html`` from one jinja2 template (inline CSS, no
scripts, nothing fetched from the network, every string escaped) and writes
``figures/*.png`` beside it: what went wrong first (with the wells whose segmentation
looks wrong), then cells and focus per well on each plate, image quality (QC maps, flag
counts, flagged fields), the illumination models, segmentation overlays of every plate,
crop galleries, the PCA of the cells, the per-well profiles (their PCA, dose-response
curves, replicate correlation), the analyses of the embeddings and profiles (UMAP,
outliers, batch effects, mean average precision, Grad-CAMO) with an interactive page of cells
and wells (``explore/index.html``, the one page with scripts: BokehJS inline), per-well and
per-condition summaries, and the time each stage took. No figure shows a value that is the
same everywhere; a sentence gives it.
:class:`ReportInputs` holds what it shows; the figure functions that draw it live in
small private modules.
"""

from cellscale.report._inputs import (
    AnalysisResults,
    Figures,
    Gallery,
    Overlay,
    ReportInputs,
    StageRecord,
    Thumbnail,
    TrainingResults,
)
from cellscale.report._interactive import write_interactive_page
from cellscale.report._write import write_report

__all__ = [
    "AnalysisResults",
    "Figures",
    "Gallery",
    "Overlay",
    "ReportInputs",
    "StageRecord",
    "Thumbnail",
    "TrainingResults",
    "write_interactive_page",
    "write_report",
]
