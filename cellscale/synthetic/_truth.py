"""Ground truth of synthetic plates: instance labels, per-cell table, focal planes.

All three are derived from a synthetic plate itself (its coordinates and the recipe in
``attrs["synthetic"]``), so they match its pixels also after a subset, a write and a
re-open.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from cellscale.synthetic._graph import LABEL_DIMS, field_units, label_data
from cellscale.synthetic._model import Recipe, field_layout, focal_plane

__all__ = ["synthetic_cells", "synthetic_focal_planes", "synthetic_labels"]


def _unit_coords(plate: xr.DataArray) -> dict[str, xr.DataArray]:
    return {str(k): v for k, v in plate.coords.items() if set(v.dims) <= {"t", "well", "field"}}


def synthetic_labels(plate: xr.DataArray, *, compartment: str = "cell") -> xr.DataArray:
    """Lazy ground-truth instance labels of the cells of a synthetic plate.

    Parameters
    ----------
    plate
        A plate made by :func:`synthetic_plate` (or a subset, or a re-opened copy).
    compartment
        ``"cell"`` (whole cells) or ``"nucleus"``; a nucleus carries its cell's label.

    Returns
    -------
    xarray.DataArray
        ``uint32`` labels with dims ``(t, well, field, y, x)``, one chunk per field,
        0 for background and ``1..n`` for the ``n`` cells of each field (the ``label``
        column of :func:`synthetic_cells`).

    Examples
    --------
    >>> from cellscale.synthetic import synthetic_plate
    >>> plate = synthetic_plate(wells=1, fields=1, n_z=1, shape=(64, 64), seed=3)
    >>> synthetic_labels(plate).dims
    ('t', 'well', 'field', 'y', 'x')
    """
    recipe = Recipe.from_plate_attrs(dict(plate.attrs))
    return xr.DataArray(
        label_data(plate, recipe, compartment),
        dims=LABEL_DIMS,
        coords=_unit_coords(plate),
        name=f"{plate.name}-{compartment}-labels",
        attrs={"compartment": compartment},
    )


def synthetic_focal_planes(plate: xr.DataArray) -> xr.DataArray:
    """The in-focus Z index of every field of a synthetic plate, dims ``(t, well, field)``."""
    recipe = Recipe.from_plate_attrs(dict(plate.attrs))
    planes = np.zeros((plate.sizes["t"], plate.sizes["well"], plate.sizes["field"]), np.int64)
    for ti, wi, fi, t_key, well, field, _ in field_units(plate, recipe):
        planes[ti, wi, fi] = focal_plane(recipe, t_key, well, field)
    return xr.DataArray(
        planes, dims=("t", "well", "field"), coords=_unit_coords(plate), name="focal_plane"
    )


def synthetic_cells(plate: xr.DataArray) -> pd.DataFrame:
    """The true cells of a synthetic plate, one row per cell (computed now; no pixels).

    Columns: ``t`` (seconds), ``well``, ``field``, ``label``; centre ``y``, ``x`` and
    semi-axes ``major``, ``minor`` (pixels) and ``orientation`` (radians from the x
    axis) of the cell and of its nucleus (``nucleus_*``); relative
    ``nucleus_brightness`` and ``cytoplasm_brightness``; the well's drug
    ``response`` in ``[0, 1)``; and the field's ``focal_plane``. Draws no pixels: a
    few milliseconds per field of 150 cells.
    """
    recipe = Recipe.from_plate_attrs(dict(plate.attrs))
    shape = (int(plate.sizes["y"]), int(plate.sizes["x"]))
    t_values = plate.coords["t"].values
    frames = []
    for ti, _, _, t_key, well, field, pheno in field_units(plate, recipe):
        cells = field_layout(recipe, t_key, well, field, pheno, shape)
        frames.append(
            pd.DataFrame(
                {
                    "t": t_values[ti],
                    "well": well,
                    "field": field,
                    "label": np.arange(1, len(cells) + 1, dtype=np.uint32),
                    "y": cells.y,
                    "x": cells.x,
                    "major": cells.major,
                    "minor": cells.minor,
                    "orientation": cells.theta,
                    "nucleus_y": cells.nucleus_y,
                    "nucleus_x": cells.nucleus_x,
                    "nucleus_major": cells.nucleus_major,
                    "nucleus_minor": cells.nucleus_minor,
                    "nucleus_brightness": cells.nucleus_brightness,
                    "cytoplasm_brightness": cells.cytoplasm_brightness,
                    "response": pheno.response,
                    "focal_plane": focal_plane(recipe, t_key, well, field),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
