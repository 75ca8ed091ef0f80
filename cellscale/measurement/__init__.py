"""Per-cell measurement: labels and images in, the CellProfiler-compatible cell table out."""

from cellscale.measurement._features import field_features, shape_features
from cellscale.measurement._parquet import cells_digest, read_cells, verify_cells, write_cells
from cellscale.measurement._summary import well_summary
from cellscale.measurement._table import measure

__all__ = [
    "cells_digest",
    "field_features",
    "measure",
    "read_cells",
    "shape_features",
    "verify_cells",
    "well_summary",
    "write_cells",
]
