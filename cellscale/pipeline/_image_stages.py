"""A plate's one-file image stages: its QC table and its illumination model.

Each is a :class:`~cellscale._stages.FileOutput` whose fingerprint names the projected
plate by its content token and the stage's settings, so a rerun loads it when it is
current and intact and makes it again when the plate or the settings changed or the
file was damaged. Neither reads the projected images: both are made from the statistics
the projection kept of every field (:mod:`cellscale.pipeline._field_stats`), so new QC
thresholds remake the table from the measures alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pandas as pd
import xarray as xr

from cellscale._stages import FileOutput, Fingerprint
from cellscale.pipeline import _field_stats as field_stats
from cellscale.pipeline._config import PlateConfig, as_dict
from cellscale.pipeline._state import RunState, file_stage

__all__ = ["illumination", "quality_control"]


def quality_control(
    state: RunState, plate: PlateConfig, projected: xr.DataArray, path: Path, fields: int
) -> pd.DataFrame | None:
    """The plate's QC table (``qc.parquet``), and the fields segmentation is to skip."""
    import cellscale
    from cellscale.quality import QCThresholds, qc_table

    config = state.config.qc
    if not config.enabled:
        return None
    output = FileOutput(path)
    fingerprint = Fingerprint(
        "qc", inputs={"plate": projected.data.name}, parameters={"thresholds": config.thresholds}
    )

    def make(partial: Path) -> None:
        store = _store(state, plate)
        table = qc_table(
            projected,
            field_stats.qc_metrics(projected, store, progress=state.progress),
            thresholds=QCThresholds(**config.thresholds),
        )
        cellscale.write_qc(table, partial)

    file_stage(state, "qc", plate.name, fields, output, fingerprint, make)
    table = cellscale.read_qc(output.open())
    flagged = cellscale.flagged_fields(table)
    if len(flagged):
        action = "not segmented" if config.exclude_flagged else "kept (qc.exclude_flagged is off)"
        state.problems.append(
            f"plate {plate.name}: QC flagged {len(flagged)} field(s), {action}: "
            + ", ".join(f"{r.well} f{r.field}" for r in flagged.head(8).itertuples())
            + (" …" if len(flagged) > 8 else "")
        )
    return flagged if config.exclude_flagged and len(flagged) else None


def illumination(
    state: RunState, plate: PlateConfig, projected: xr.DataArray, path: Path, fields: int
) -> xr.DataArray:
    """The images cells are measured and cropped from: corrected where the run corrects.

    The model is fitted from the binned fields the projection kept (the same model as
    :func:`cellscale.fit_illumination` of the projected plate) and saved as
    ``illumination.npz``; a rerun loads it while it is current and intact instead of
    fitting again.
    """
    import cellscale
    from cellscale.illumination import IlluminationModel, fit_binned

    config = state.config.illumination
    if config.method is None:
        return projected
    output = FileOutput(path)
    fingerprint = Fingerprint(
        "illumination", inputs={"plate": projected.data.name}, parameters=as_dict(config)
    )

    def make(partial: Path) -> None:
        model = fit_binned(
            projected,
            field_stats.field_reader(projected, _store(state, plate)),
            list(config.channels) if config.channels else None,
            cast(Any, config.method),
            darkfield=config.darkfield,
            progress=state.progress,
        )
        model.save(partial)

    file_stage(state, "illumination", plate.name, fields, output, fingerprint, make)
    return cellscale.correct_illumination(projected, IlluminationModel.load(output.open()))


def _store(state: RunState, plate: PlateConfig) -> Path:
    """The projected plate's store, which keeps the per-field statistics."""
    return state.plate_dir(plate) / "projected.zarr"
