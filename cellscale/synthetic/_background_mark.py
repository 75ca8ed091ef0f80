"""A synthetic screen whose class is drawn either in the cells or only in the background.

A classifier can reach a good accuracy by looking at the wrong thing: a mark of the plate,
a stain's haze, a neighbour, anything in the background that happens to go with the
class (seed 002: only 47 % of profiles had their Grad-CAM attention on the cell). To test
attention QC (Grad-CAMO) this module draws one screen in two variants that differ only in
where the class is: stripes (horizontal in one class of wells, vertical in the other)
added either inside the cells (``carrier="cell"``) or only in the background, at least
``margin_px`` pixels away from every cell (``carrier="background"``). The cells themselves
are the same in both classes (every well is an untreated control), so a model trained on
the background variant can only tell the classes apart by looking away from the cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from cellscale.plate import add_lineage
from cellscale.synthetic._model import CellModel
from cellscale.synthetic._synthetic import synthetic_plate
from cellscale.synthetic._truth import synthetic_cells, synthetic_labels

__all__ = ["CARRIERS", "MARKS", "MARK_COLUMN", "MarkedScreen", "background_mark_screen"]

CARRIERS = ("cell", "background")
"""Where the class is drawn: in the cells, or only in the background away from them."""

MARK_COLUMN = "Mark"
"""The plate-map column (a cell table's ``Metadata_Mark``) naming each well's class."""

MARKS = ("horizontal", "vertical")
"""The classes: the orientation of the stripes; wells take them in turn."""

ATTRS_KEY = "synthetic_mark"
"""The plate attribute recording the mark: carrier, amplitude, period and margin."""

LABELS_NAME = "cells"
"""The name of the labels in :attr:`MarkedScreen.labels` (its only compartment)."""

_PIXEL_SIZE_UM = 0.65


@dataclass(frozen=True)
class MarkedScreen:
    """A plate, its true labels and its cell table: what Grad-CAMO and training read.

    Attributes
    ----------
    plate
        The lazy plate (``uint16``), a plate-map column ``Mark`` on its wells.
    labels
        The true cell labels as a labels Dataset (one compartment, ``"cells"``).
    cells
        The cell table as a pipeline measures it: ``cell_id``, ``Metadata_Plate``,
        ``Metadata_Well``, ``Metadata_Site``, ``Metadata_Timepoint``,
        ``Metadata_ObjectNumber``, ``Metadata_<plate-map column>`` (``Metadata_Mark``) and
        ``Cells_AreaShape_Center_Y/X``.
    """

    plate: xr.DataArray
    labels: xr.Dataset
    cells: pd.DataFrame

    def source(self) -> list[dict[str, Any]]:
        """The screen as a source of :func:`cellscale.train` (one plate with its labels)."""
        return [{"plate": self.plate, "cells": self.cells, "labels": self.labels}]


def background_mark_screen(
    carrier: str,
    *,
    wells: int = 8,
    fields: int = 2,
    shape: tuple[int, int] = (96, 96),
    cells_per_field: float = 8.0,
    cell_radius_px: float = 6.0,
    n_z: int = 1,
    amplitude: float = 0.25,
    period_px: float = 6.0,
    margin_px: int = 3,
    seed: int = 0,
    name: str | None = None,
) -> MarkedScreen:
    """A synthetic screen whose class (``Mark``) is carried by the cells or by the background.

    Every well is an untreated control of :func:`~cellscale.synthetic.synthetic_plate`;
    wells are ``horizontal`` and ``vertical`` in turn. Each field gets stripes of that
    orientation, ``amplitude`` of full scale bright and ``period_px`` pixels apart, added to
    every channel (and Z plane) either where a cell is (``carrier="cell"``) or where no cell
    is within ``margin_px`` pixels (``carrier="background"``). With the same ``seed`` the
    two variants have the same cells in the same places.

    Parameters
    ----------
    carrier
        ``"cell"`` or ``"background"``.
    wells, fields, shape, cells_per_field, n_z, seed
        As for :func:`~cellscale.synthetic.synthetic_plate` (``n_z > 1``: Z stacks, for
        3D crops).
    cell_radius_px
        The cells' mean radius in pixels (nuclei half as wide): small cells leave
        background in crops of a few tens of pixels.
    amplitude
        The stripes' brightness, as a fraction of full scale (0 to 1).
    period_px
        The stripes' period in pixels (at least 2).
    margin_px
        For the background: how far from every cell the stripes stay, in pixels.
    name
        The plate's name (default ``"mark-<carrier>"``).

    Returns
    -------
    MarkedScreen

    Examples
    --------
    >>> screen = background_mark_screen("background", wells=2, fields=1, shape=(48, 48))
    >>> screen.plate.coords["Mark"].values.tolist()
    ['horizontal', 'vertical']
    >>> sorted(screen.cells["Metadata_Mark"].unique())
    ['horizontal', 'vertical']
    """
    _check(carrier, amplitude, period_px, margin_px)
    well_names = [f"A{i + 1:02d}" for i in range(wells)]
    plate_map = pd.DataFrame(
        {
            "concentration": 0.0,
            "control": True,
            MARK_COLUMN: [MARKS[i % len(MARKS)] for i in range(wells)],
        },
        index=pd.Index(well_names, name="well"),
    )
    plain = synthetic_plate(
        well_names,
        fields=fields,
        n_z=n_z,
        shape=shape,
        cells_per_field=cells_per_field,
        plate_map=plate_map,
        seed=seed,
        pixel_size_um=_PIXEL_SIZE_UM,
        model=CellModel(
            cell_radius_um=cell_radius_px * _PIXEL_SIZE_UM,
            nucleus_radius_um=cell_radius_px * _PIXEL_SIZE_UM / 2,
        ),
        name=name or f"mark-{carrier}",
    )
    labels = synthetic_labels(plain)
    record = {
        "carrier": carrier,
        "amplitude": float(amplitude),
        "period_px": float(period_px),
        "margin_px": int(margin_px),
    }
    plate = _marked(plain, labels, plate_map[MARK_COLUMN].to_numpy(), record)
    return MarkedScreen(
        plate=plate,
        labels=xr.Dataset({LABELS_NAME: labels}, attrs={"compartments": [LABELS_NAME]}),
        cells=_cell_table(plain, plate_map),
    )


def _check(carrier: str, amplitude: float, period_px: float, margin_px: int) -> None:
    if carrier not in CARRIERS:
        raise ValueError(f"carrier must be one of {CARRIERS}, got {carrier!r}")
    if not 0.0 <= amplitude <= 1.0:
        raise ValueError(f"amplitude is a fraction of full scale from 0 to 1, got {amplitude}")
    if not period_px >= 2.0:
        raise ValueError(f"period_px must be at least 2 pixels, got {period_px}")
    if margin_px < 0:
        raise ValueError(f"margin_px must be 0 or more, got {margin_px}")


def _marked(
    plate: xr.DataArray, labels: xr.DataArray, marks: np.ndarray, record: dict[str, Any]
) -> xr.DataArray:
    """``plate`` with each field's stripes added where ``record["carrier"]`` says."""
    vertical = np.asarray(marks == "vertical")
    stripes = da.map_blocks(
        _stripes_block,
        labels.data,
        vertical=vertical,
        record=record,
        dtype=np.float32,
        meta=np.empty((0,) * labels.ndim, dtype=np.float32),
    )
    full_scale = float(np.iinfo(plate.dtype).max)
    added = plate.astype(np.float32) + xr.DataArray(stripes, dims=labels.dims) * full_scale
    data = added.clip(0.0, full_scale).round().astype(plate.dtype).transpose(*plate.dims).data
    marked = plate.copy(data=data)
    marked.attrs = add_lineage(
        {**plate.attrs, ATTRS_KEY: record}, {"op": "background_mark_screen", **record}
    )
    return marked


def _stripes_block(
    block: np.ndarray, *, vertical: np.ndarray, record: dict[str, Any], block_info: Any
) -> np.ndarray:
    """The stripes of one field's labels ``(1, 1, 1, y, x)``: where to add, how bright."""
    well = block_info[0]["chunk-location"][1]
    cells = block[0, 0, 0] > 0
    if record["carrier"] == "cell":
        where = cells
    else:
        near = ndimage.binary_dilation(cells, iterations=record["margin_px"])
        where = ~near if record["margin_px"] else ~cells
    axis = 1 if vertical[well] else 0
    position = np.indices(cells.shape, dtype=np.float32)[axis]
    wave = 0.5 * (1.0 + np.sin(2.0 * np.pi * position / record["period_px"]))
    return (record["amplitude"] * wave * where).astype(np.float32)[None, None, None]


def _cell_table(plate: xr.DataArray, plate_map: pd.DataFrame) -> pd.DataFrame:
    """The true cells of ``plate`` as a measured cell table has them."""
    truth = synthetic_cells(plate)
    wells = plate_map.loc[truth.well]
    return pd.DataFrame(
        {
            "cell_id": np.arange(len(truth), dtype=np.int64),
            "Metadata_Plate": str(plate.name),
            "Metadata_Well": truth.well.to_numpy(),
            "Metadata_Site": truth.field.to_numpy(),
            "Metadata_Timepoint": truth.t.to_numpy(),
            "Metadata_ObjectNumber": truth.label.to_numpy(np.int64),
            **{f"Metadata_{c}": wells[c].to_numpy() for c in plate_map.columns},
            "Cells_AreaShape_Center_Y": truth.y.to_numpy(),
            "Cells_AreaShape_Center_X": truth.x.to_numpy(),
        }
    )
