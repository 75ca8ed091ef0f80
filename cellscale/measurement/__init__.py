"""Per-cell measurement: labels and images in, the CellProfiler-compatible cell table out."""

from cellscale.measurement._features import field_features, shape_features
from cellscale.measurement._parquet import read_cells, write_cells
from cellscale.measurement._summary import well_summary
from cellscale.measurement._table import measure

__all__ = [
    "field_features",
    "measure",
    "read_cells",
    "shape_features",
    "well_summary",
    "write_cells",
]
