"""A focus score of every field of a plate, for the report's field-quality figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from cellscale.pipeline._state import RunState

__all__ = ["field_quality"]


def field_quality(state: RunState, plate: xr.DataArray) -> pd.DataFrame:
    """A focus score (variance of the Laplacian) of every field's segmentation channel.

    Taken from the plate's QC table where the run made one, else computed here.
    """
    if state.config.qc.enabled:
        return _from_qc(state, plate)
    import dask.array as da

    image = plate.sel(c=state.config.segment.channel)
    if "z" in image.dims:
        image = image.max("z")
    image = image.transpose("t", "well", "field", "y", "x")
    scores = da.map_blocks(
        _block_focus, image.data, drop_axis=[3, 4], dtype=np.float64, meta=np.array((), float)
    )
    values = np.asarray(state.client.compute(scores, sync=True))
    t, well, field_ = np.meshgrid(
        plate.coords["t"].values,
        plate.coords["well"].values,
        plate.coords["field"].values,
        indexing="ij",
    )
    return pd.DataFrame(
        {
            "Metadata_Plate": str(plate.name),
            "Metadata_Well": well.ravel().astype(str),
            "Metadata_Site": field_.ravel(),
            "Metadata_Timepoint": t.ravel(),
            "focus_score": values.ravel(),
        }
    )


def _from_qc(state: RunState, plate: xr.DataArray) -> pd.DataFrame:
    import cellscale
    from cellscale._stages import FileOutput

    path = FileOutput(state.plate_dir(str(plate.name)) / "qc.parquet").open()
    table = cellscale.read_qc(path)
    table = table[table["channel"] == state.config.segment.channel]
    return pd.DataFrame(
        {
            "Metadata_Plate": table["Metadata_Plate"].astype(str).to_numpy(),
            "Metadata_Well": table["well"].astype(str).to_numpy(),
            "Metadata_Site": table["field"].to_numpy(),
            "Metadata_Timepoint": table["t"].to_numpy(),
            "focus_score": table["focus_laplacian_var"].to_numpy(),
        }
    )


def _block_focus(block: np.ndarray) -> np.ndarray:
    from cellscale.ops import focus_scores

    planes = block.reshape(-1, *block.shape[-2:])
    return focus_scores(planes).reshape(block.shape[:-2])
