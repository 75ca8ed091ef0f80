"""How treatment, concentration and time change the cells of a synthetic well.

A well's response is a Hill curve of its concentration, ramped up by the time since
treatment: ``r = (c / (c + ec50)) * (1 - exp(-t / 24 h))``. Control wells and wells
without a concentration have ``r = 0``. At full response cells are 1.5 times wider
(2.25 times the area), twice as long as wide, with nuclei 1.3 times wider and 1.6
times brighter and cytoplasm 0.6 times as bright, and half as many of them. Cells
also proliferate in every well: the density doubles over 72 h (1 at 24 h, capped at
72 h).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

__all__ = ["Phenotype", "well_phenotypes"]

_RAMP_HOURS = 24.0
_DOUBLING_HOURS = 72.0


@dataclass(frozen=True)
class Phenotype:
    """Mean cell parameters of one well at one time point.

    Attributes
    ----------
    response
        Drug response in ``[0, 1)``.
    size
        Factor on the cell radius.
    elongation
        Mean ratio of the long to the short cell axis.
    nucleus_size
        Factor on the nucleus radius.
    nucleus_brightness, cytoplasm_brightness
        Factors on the stain intensities.
    density
        Factor on the mean number of cells per field.
    """

    response: float
    size: float
    elongation: float
    nucleus_size: float
    nucleus_brightness: float
    cytoplasm_brightness: float
    density: float


def phenotype(concentration: float, control: bool, t_hours: float, ec50_um: float) -> Phenotype:
    """The phenotype of a well treated at ``concentration`` µM, ``t_hours`` after treatment."""
    dose = 0.0 if control or not math.isfinite(concentration) else max(concentration, 0.0)
    ramp = 1.0 - math.exp(-max(t_hours, 0.0) / _RAMP_HOURS)
    r = dose / (dose + ec50_um) * ramp
    growth = 2.0 ** ((min(max(t_hours, 0.0), _DOUBLING_HOURS) - 24.0) / _DOUBLING_HOURS)
    return Phenotype(
        response=r,
        size=1.0 + 0.5 * r,
        elongation=1.15 + 0.85 * r,
        nucleus_size=1.0 + 0.3 * r,
        nucleus_brightness=1.0 + 0.6 * r,
        cytoplasm_brightness=1.0 - 0.4 * r,
        density=(1.0 - 0.5 * r) * growth,
    )


def _well_column(plate: xr.DataArray, name: str, default: float) -> np.ndarray:
    n_wells = plate.sizes["well"]
    if name not in plate.coords or plate.coords[name].dims != ("well",):
        return np.full(n_wells, default, dtype=np.float64)
    values = np.asarray(plate.coords[name].values)
    out = np.full(n_wells, default, dtype=np.float64)
    for i, value in enumerate(values):
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out[i] = float(value)
    return out


def well_phenotypes(plate: xr.DataArray, ec50_um: float) -> list[list[Phenotype]]:
    """Phenotypes indexed ``[t][well]``, from the plate's ``t`` (seconds) and plate map.

    Reads the well coordinates ``concentration`` (µM; missing means untreated),
    ``control`` (missing means ``False``) and, if present, ``ec50_um`` (overrides
    ``ec50_um`` per well).
    """
    concentration = _well_column(plate, "concentration", 0.0)
    control = _well_column(plate, "control", 0.0) > 0
    ec50 = _well_column(plate, "ec50_um", ec50_um)
    hours = np.asarray(plate.coords["t"].values, dtype=np.float64) / 3600.0
    return [
        [
            phenotype(float(concentration[w]), bool(control[w]), float(h), float(ec50[w]))
            for w in range(plate.sizes["well"])
        ]
        for h in hours
    ]
