"""The focus of every field of a plate, for the report's field-quality figures.

There is one focus number in a run, :data:`FOCUS_COLUMN`: the QC table's variance of the
Laplacian divided by the squared signal (``p99 - background``), the measure QC flags
blurry images by. It is scale-free, so fields of dim and bright wells compare.
"""

from __future__ import annotations

import pandas as pd
import xarray as xr

from cellscale.pipeline import _field_stats as field_stats
from cellscale.pipeline._state import RunState

__all__ = ["FOCUS_COLUMN", "field_quality"]

#: The focus measure of the field-quality table and the QC table, under one name.
FOCUS_COLUMN = "focus_laplacian_norm"


def field_quality(state: RunState, plate: xr.DataArray) -> pd.DataFrame:
    """:data:`FOCUS_COLUMN` of every field's segmentation channel, one row per field.

    Taken from the plate's QC table where the run made one, else from the QC measures the
    projection kept of every field (:mod:`cellscale.pipeline._field_stats`; the table
    :func:`cellscale.qc` of the segmentation channel alone gives), without reading an image.
    """
    import cellscale

    channel = str(state.config.segment.channel)  # required by the preflight
    if state.config.qc.enabled:
        from cellscale._stages import FileOutput

        path = FileOutput(state.plate_dir(str(plate.name)) / "qc.parquet").open()
        table = cellscale.read_qc(path)
        table = table[table["channel"] == channel]
    else:
        from cellscale.quality import qc_table

        store = state.plate_dir(str(plate.name)) / "projected.zarr"
        metrics = field_stats.qc_metrics(plate, store, [channel])
        table = qc_table(plate, metrics, channels=[channel])
    return pd.DataFrame(
        {
            "Metadata_Plate": table["Metadata_Plate"].astype(str).to_numpy(),
            "Metadata_Well": table["well"].astype(str).to_numpy(),
            "Metadata_Site": table["field"].to_numpy(),
            "Metadata_Timepoint": table["t"].to_numpy(),
            FOCUS_COLUMN: table[FOCUS_COLUMN].to_numpy(),
        }
    )
