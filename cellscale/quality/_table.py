"""The QC table of a plate: one row per image, measured in one pass over the pixels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr
from dask.delayed import Delayed

from cellscale._stages import delayed_blocks, run_units, task_key
from cellscale.plate import PlateError, as_plate, channel_position, plate_map_columns
from cellscale.quality._cells import join_cell_counts
from cellscale.quality._flags import FLAGS, QCThresholds, flag_images
from cellscale.quality._metrics import IMAGE_METRICS, PERCENTILES, image_metrics

__all__ = [
    "KEY_COLUMNS",
    "METRICS",
    "flagged_fields",
    "present_images",
    "qc",
    "qc_table",
    "saturation_level",
]

KEY_COLUMNS = ("Metadata_Plate", "t", "well", "field", "channel")
"""The columns naming an image, first in every QC table."""

METRICS = (
    "mean",
    "max",
    *PERCENTILES,
    "background",
    "signal",
    "signal_to_background",
    "saturated_fraction",
    "at_plate_max_fraction",
    "nonfinite_fraction",
    "focus_laplacian_var",
    "focus_laplacian_norm",
    "focus_powerlog_slope",
)
"""The measures of every image, in column order (after the plate-map columns)."""

_UNIT_DIMS = ("t", "well", "field", "c")
_RESOLUTION_OF_FLOATS = 2.0**-16  # one grey level of a 16-bit scale of the channel's maximum


def qc(
    plate: xr.DataArray,
    *,
    channels: Sequence[str] | None = None,
    saturation: float | None = None,
    thresholds: QCThresholds | None = None,
    cells: Any = None,
    client: Any = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Measure the focus, saturation and intensity of every image and flag the bad ones.

    Every present ``(t, well, field, c)`` image is read once, by one task that returns a
    few numbers (on the current ``distributed`` client if there is one, else dask's
    local scheduler); holes (``field_present`` false) are skipped. A Z stack is measured
    on its maximum projection, an image with one plane as it is.

    Parameters
    ----------
    plate
        A plate, with or without ``z`` (anything :func:`cellscale.as_plate` accepts).
    channels
        The channels to check (default: all).
    saturation
        The pixel value from which a pixel counts as saturated. By default the largest
        value of an integer dtype (65535 for ``uint16``; give 4095 for a 12-bit camera) and,
        for floating-point plates, the largest value of the channel on the plate.
    thresholds
        When to flag an image; see :class:`QCThresholds` for the rules and defaults.
    cells
        A cell table of this plate (pandas or dask DataFrame, e.g. from
        :func:`cellscale.read_cells`): adds ``n_cells``, the cells of each image's field.
    client
        A ``distributed.Client``; defaults to the current one, else local threads.
    progress
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per image in (t, well, field, channel) order with ``Metadata_Plate`` (the
        plate's name), ``t``, ``well``, ``field``, ``channel`` (coordinate values), the
        well's plate-map columns, then:

        - ``mean``, ``max``, ``p01``, ``p50``, ``p99``: intensity statistics; ``max`` is
          exact, the others come from a systematic sample of rows (every
          ``n_y // 64``-th row, see :mod:`cellscale.quality._metrics`);
        - ``background``: the 5th percentile, the dark level of a field whose cells
          cover less than 95 % of it; ``signal``: ``p99 - background``;
          ``signal_to_background``: ``p99 / background``. Both divide by at least one grey
          level (1 for integer dtypes, ``2**-16`` of the channel's maximum for floats);
        - ``saturated_fraction``: the fraction of pixels at or above ``saturation``;
          ``at_plate_max_fraction``: the fraction at the channel's largest value on the
          plate (both exact);
        - ``nonfinite_fraction``: the fraction of pixel values (of every Z plane) that are
          NaN or infinite (exact; only floating-point plates have any). The other measures
          of such an image are of its finite pixels (the fractions 0 and the rest ``nan``
          where it has none), and ``focus_powerlog_slope`` is ``nan`` where the central
          crop has such a pixel;
        - ``focus_laplacian_var``: variance of the 4-neighbour Laplacian over the sampled
          rows (higher is sharper); ``focus_laplacian_norm``: the same over
          ``signal**2``, which brightness does not change;
          ``focus_powerlog_slope``: CellProfiler's PowerLogLogSlope on a central
          256 × 256 crop (more negative is blurrier; see
          :func:`cellscale.quality.power_log_log_slope`);
        - ``n_cells`` when ``cells`` is given;
        - the flags ``blurry``, ``saturated``, ``empty``, ``dim``, ``nonfinite`` and
          ``flagged`` (any of them), by the rules of :class:`QCThresholds`, with z-scores
          taken within each plate and channel.

    Raises
    ------
    PlateError
        If a channel is not in the plate, or the plate has no present field.
    UnitFailure
        Listing every image whose read or measurement failed.

    See Also
    --------
    flag_images : flag again with other thresholds.
    qc_table : the same table from measures another pass took of the images.
    flagged_fields : the fields to leave out downstream.
    write_qc, read_qc : the table as Parquet.
    cellscale.plots.qc_heatmap : a QC measure on the plate layout.

    Examples
    --------
    >>> from cellscale.synthetic import synthetic_plate
    >>> plate = synthetic_plate(wells=2, fields=2, n_z=1, shape=(64, 64))
    >>> table = qc(plate, progress=False)
    >>> len(table), table["flagged"].any()
    (8, np.False_)
    """
    plate = as_plate(plate)
    picked = _channel_positions(plate, channels)
    units = present_images(plate)
    _plate_map(plate)  # a clashing column is refused before any image is read
    level = saturation_level(plate.dtype, saturation)
    names, tasks = _tasks(plate, units, picked, level)
    results = run_units("qc", tasks, names, client=client, progress=progress)
    metrics = np.array(results, dtype=np.float64).reshape(len(units), len(picked), -1)
    return qc_table(
        plate, metrics, channels=channels, saturation=saturation, thresholds=thresholds, cells=cells
    )


def qc_table(
    plate: xr.DataArray,
    metrics: np.ndarray,
    *,
    channels: Sequence[str] | None = None,
    saturation: float | None = None,
    thresholds: QCThresholds | None = None,
    cells: Any = None,
) -> pd.DataFrame:
    """The QC table of a plate from its images' measures, without reading a pixel.

    :func:`qc` is this on the measures it takes from each image; a pass that already
    holds the images (a projection writing them) measures them with
    :func:`~cellscale.quality.image_metrics` and keeps the numbers, and the table,
    flags included, is made again from them for any ``thresholds``.

    Parameters
    ----------
    plate
        The plate measured (only its coordinates and sizes are used).
    metrics
        ``(units, channels, len(IMAGE_METRICS))``: :func:`~cellscale.quality.image_metrics`
        of every present image, units in the order of :func:`present_images`, channels
        in the order of ``channels``, each measured with the saturation level
        :func:`saturation_level` gives for ``saturation``.
    channels, saturation, thresholds, cells
        As for :func:`qc`.

    Returns
    -------
    pandas.DataFrame
        The table :func:`qc` returns.

    Raises
    ------
    PlateError
        If a channel is not in the plate, or the plate has no present field.
    ValueError
        If ``metrics`` does not have one row of measures per present image.

    Examples
    --------
    >>> from cellscale.synthetic import synthetic_plate
    >>> from cellscale.quality import image_metrics
    >>> plate = synthetic_plate(wells=2, fields=2, n_z=1, shape=(64, 64))
    >>> level = saturation_level(plate.dtype, None)
    >>> metrics = np.array([[image_metrics(plate.isel(t=t, well=w, field=f, c=c).values, level)
    ...                      for c in range(plate.sizes["c"])]
    ...                     for t, w, f in present_images(plate)])
    >>> qc_table(plate, metrics).equals(qc(plate, progress=False))
    True
    """
    plate = as_plate(plate)
    picked = _channel_positions(plate, channels)
    units = present_images(plate)
    expected = (len(units), len(picked), len(IMAGE_METRICS))
    if metrics.shape != expected:
        raise ValueError(
            f"metrics has shape {metrics.shape}; the plate's {len(units)} present images in "
            f"{len(picked)} channel(s) need {expected}"
        )
    annotations = _plate_map(plate)
    level = saturation_level(plate.dtype, saturation)
    values = np.asarray(metrics, dtype=np.float64).reshape(-1, len(IMAGE_METRICS))
    table = _table(plate, units, picked, annotations, values, level)
    if cells is not None:
        table = join_cell_counts(table, cells)
    return flag_images(table, thresholds)


def flagged_fields(table: pd.DataFrame) -> pd.DataFrame:
    """The fields with any flagged image: what later stages take as ``exclude=``.

    Parameters
    ----------
    table
        A QC table of one plate (:func:`qc`, :func:`read_qc`).

    Returns
    -------
    pandas.DataFrame
        Columns ``t``, ``well``, ``field``: one row per field with a flagged image in any
        channel, sorted.

    Examples
    --------
    >>> table = pd.DataFrame({"t": [0, 0, 0], "well": ["B03", "B03", "C01"],
    ...                       "field": [1, 1, 2], "flagged": [True, True, False]})
    >>> flagged_fields(table).to_dict("records")
    [{'t': 0, 'well': 'B03', 'field': 1}]
    """
    keys = ["t", "well", "field"]
    chosen = table.loc[table["flagged"].to_numpy(bool), keys]
    return chosen.drop_duplicates().sort_values(keys, ignore_index=True)


def _channel_positions(plate: xr.DataArray, channels: Sequence[str] | None) -> list[int]:
    if channels is None:
        return list(range(plate.sizes["c"]))
    if isinstance(channels, str):
        channels = [channels]
    if not channels:
        raise PlateError("channels is empty: name at least one channel to check")
    return [channel_position(plate, str(c)) for c in channels]


def present_images(plate: xr.DataArray) -> list[tuple[int, int, int]]:
    """Positions ``(t, well, field)`` of every present field, in the order QC measures them.

    Raises
    ------
    PlateError
        If the plate has no present field.
    """
    present = np.asarray(plate.coords["field_present"].values, dtype=bool)
    if not present.any():
        raise PlateError(f"plate {plate.name!r} has no present field to check")
    return [(t, int(w), int(f)) for t in range(plate.sizes["t"]) for w, f in np.argwhere(present)]


def _plate_map(plate: xr.DataArray) -> list[str]:
    """The plate-map columns, checked not to clash with the QC table's own."""
    own = {*KEY_COLUMNS, *METRICS, *FLAGS, "flagged", "n_cells"}
    for column in plate_map_columns(plate):
        if column in own:
            raise PlateError(f"plate-map column {column!r} clashes with a QC column; rename it")
    return plate_map_columns(plate)


def saturation_level(dtype: np.dtype, saturation: float | None) -> float | None:
    """The level QC counts saturated pixels from: ``saturation``, else an integer dtype's top.

    ``None`` (a floating-point plate with no ``saturation``) leaves it to the plate's maxima.

    Examples
    --------
    >>> saturation_level(np.dtype("uint16"), None), saturation_level(np.dtype("float32"), None)
    (65535.0, None)
    """
    if saturation is not None:
        return float(saturation)
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else None


def _tasks(
    plate: xr.DataArray, units: list[tuple[int, int, int]], picked: list[int], level: float | None
) -> tuple[list[str], list[Delayed]]:
    """One task per image measuring it, and the image's name, in (t, well, field, c) order."""
    blocks = _image_blocks(plate, picked)
    names, tasks = [], []
    for t, w, f in units:
        for i, c in enumerate(picked):
            block = blocks[_block_index(plate, t, w, f, i)]
            key = task_key("qc", block.key, level)
            names.append(_unit_name(plate, t, w, f, c))
            tasks.append(dask.delayed(image_metrics, pure=True)(block, level, dask_key_name=key))
    return names, tasks


def _image_blocks(plate: xr.DataArray, picked: list[int]) -> np.ndarray:
    """Delayed images of the picked channels, one per ``(t, well, field, c)``."""
    chosen = plate if picked == list(range(plate.sizes["c"])) else plate.isel(c=picked)
    chunks = {i: 1 if d in _UNIT_DIMS else -1 for i, d in enumerate(chosen.dims)}
    return delayed_blocks(chosen.data.rechunk(chunks))


def _block_index(plate: xr.DataArray, t: int, w: int, f: int, c: int) -> tuple[int, ...]:
    at = {"t": t, "well": w, "field": f, "c": c}
    return tuple(at.get(str(d), 0) for d in plate.dims)


def _unit_name(plate: xr.DataArray, t: int, w: int, f: int, c: int) -> str:
    well, field = plate.coords["well"].values[w], plate.coords["field"].values[f]
    return f"{well}/f{field}/t{t}/{plate.coords['c'].values[c]}"


def _table(
    plate: xr.DataArray,
    units: list[tuple[int, int, int]],
    picked: list[int],
    annotations: list[str],
    values: np.ndarray,
    level: float | None,
) -> pd.DataFrame:
    """The QC table from every image's :data:`IMAGE_METRICS`, in (t, well, field, c) order."""
    t, w, f = (np.repeat([u[i] for u in units], len(picked)) for i in range(3))
    c = np.tile(picked, len(units))
    coords = plate.coords
    table = pd.DataFrame(
        {
            "Metadata_Plate": [str(plate.name)] * len(t),
            "t": coords["t"].values[t],
            "well": [str(v) for v in coords["well"].values[w]],
            "field": coords["field"].values[f].astype(np.int64),
            "channel": [str(v) for v in coords["c"].values[c]],
        }
    )
    for column in annotations:
        table[column] = coords[column].values[w]
    raw = pd.DataFrame(values, columns=list(IMAGE_METRICS))
    n_pixels = plate.sizes["y"] * plate.sizes["x"]
    measures = _measures(raw, table["channel"], plate.dtype, level, n_pixels)
    return pd.concat([table, measures[list(METRICS)]], axis=1)


def _measures(
    raw: pd.DataFrame, channel: pd.Series, dtype: np.dtype, level: float | None, n_pixels: int
) -> pd.DataFrame:
    """The QC measures from the raw numbers of each image, given the plate's maxima."""
    out = raw.copy()
    channel_max = raw["max"].groupby(channel.to_numpy()).transform("max")
    at_max = np.where(raw["max"] == channel_max, raw["n_at_max"], 0.0)
    out["at_plate_max_fraction"] = at_max / n_pixels
    out["saturated_fraction"] = (
        raw["n_saturated"] / n_pixels if level is not None else out["at_plate_max_fraction"]
    )
    grey = 1.0 if dtype.kind in "ui" else np.maximum(channel_max * _RESOLUTION_OF_FLOATS, 1e-30)
    out["signal"] = np.maximum(raw["p99"] - raw["background"], grey)
    out["signal_to_background"] = raw["p99"] / np.maximum(raw["background"], grey)
    out["focus_laplacian_norm"] = raw["focus_laplacian_var"] / out["signal"] ** 2
    return out
