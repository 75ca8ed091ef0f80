"""After a plate is measured: flag the wells whose segmentation looks wrong, in the run's problems.

The check (:func:`cellscale.segmentation.check_segmentation`) reads the plate's cell table
only. The object size it expects comes from ``segment.options.diameter`` when the config
gives one; otherwise each well is compared with the plate's other wells (the diameter the
segmenter estimates per field follows whatever it segmented, so it is no reference).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cellscale.pipeline._config import PlateConfig, SegmentConfig
from cellscale.pipeline._state import RunState
from cellscale.segmentation import SegmentationFlag, check_segmentation

__all__ = ["check_plate_segmentation"]

_AREA = "_AreaShape_Area"


def check_plate_segmentation(
    state: RunState, plate: PlateConfig | str, cells: Any
) -> list[SegmentationFlag]:
    """Check one plate's segmentation; add one line per flagged well to ``state.problems``.

    Parameters
    ----------
    state
        The run; its ``segment`` config says which compartment was segmented from which
        diameter, and its plate folder holds the projected plate whose wells were
        segmented (wells without any object are flagged too).
    plate
        The plate (or its name).
    cells
        The plate's cell table, lazy (:func:`cellscale.read_cells`) or computed; only the
        well and the checked compartment's area are read.

    Returns
    -------
    list of SegmentationFlag
        The flags, also appended to ``state.segmentation_flags``.
    """
    name = plate if isinstance(plate, str) else plate.name
    config = state.config.segment
    compartment = _checked_compartment(config, cells)
    if compartment is None:
        return []
    cells = cells[["Metadata_Well", f"{compartment}{_AREA}"]]
    if not isinstance(cells, pd.DataFrame):  # a lazy table: two columns of it come to this process
        cells = cells.compute()
    flags = check_segmentation(
        cells,
        plate=name,
        compartment=compartment,
        expected_diameter=_given_diameter(config),
        wells=_segmented_wells(state, name),
    )
    state.problems.extend(flag.message for flag in flags)
    state.segmentation_flags.extend(flags)
    return flags


def _checked_compartment(config: SegmentConfig, cells: Any) -> str | None:
    """The compartment the segmenter's diameter describes: nuclei when they seed cells."""
    found = [str(c).removesuffix(_AREA) for c in cells.columns if str(c).endswith(_AREA)]
    if not found:
        return None
    seeded = config.method == "classical" and config.nuclei_channel is not None
    return "Nuclei" if seeded and "Nuclei" in found else found[0]


def _given_diameter(config: SegmentConfig) -> float | None:
    """The diameter the config gives the segmenter (``None`` or ``0`` mean it estimates)."""
    diameter: Any = config.options.get("diameter")
    return float(diameter) if diameter else None


def _segmented_wells(state: RunState, name: str) -> list[str] | None:
    """The wells of the projected plate with at least one field (``None`` if not written)."""
    import cellscale

    path = state.plate_dir(name) / "projected.zarr"
    if not path.exists():
        return None
    projected = cellscale.open_plate(path)
    present = np.asarray(projected.coords["field_present"].values, dtype=bool).any(axis=1)
    return [str(w) for w in np.asarray(projected.coords["well"].values)[present]]
