"""The run's report: one HTML page with its PNG figures, opened from disk after a run.

:func:`write_report` writes ``index.html`` (inline CSS, no scripts, nothing fetched from
the network) and ``figures/*.png`` beside it: what went wrong first, then cells and focus
per well on each plate, image quality (QC maps, flag counts, flagged fields), the
illumination models, segmentation overlays, crop galleries, the PCA of the profiles,
per-well and per-condition summaries, and the time each stage took. The folder is built
under a temporary name and swapped in whole, so a report folder is always complete.
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.image import imsave
from skimage.segmentation import find_boundaries

from cellscale import plots
from cellscale.cells import METADATA_COLUMNS
from cellscale.measurement import well_summary

__all__ = [
    "Figures",
    "Gallery",
    "Overlay",
    "ReportInputs",
    "StageRecord",
    "Thumbnail",
    "write_report",
]

#: Resolution of the PNG plots.
DPI = 100
#: Longest side, in pixels, of an overlay PNG; larger fields are subsampled.
MAX_OVERLAY_SIDE = 768
#: Most crops drawn in one gallery.
MAX_TILES = 64
#: Smaller crops are enlarged by a whole factor to at least this many pixels.
MIN_TILE_SIDE = 64
#: Percentiles mapped to black and white.
CONTRAST = (1.0, 99.5)

_FIGURES = "figures"
_FIELD_KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Timepoint"]
_OUTLINE_COLORS = colormaps["tab10"]([1, 2, 3, 4, 6, 8, 9, 0])[:, :3]
_WELL_HEADERS = {
    "Metadata_Plate": "plate",
    "Metadata_Well": "well",
    "Metadata_treatment": "treatment",
    "Metadata_concentration": "concentration (µM)",
    "time_h": "time (h)",
    "n_cells": "cells",
    "mean_area": "mean area (px)",
    "mean_roundness": "roundness (4πA/P²)",
    "mean_eccentricity": "eccentricity",
}
_CONDITION_KEYS = ["Metadata_treatment", "Metadata_concentration", "time_h"]
_CONDITION_HEADERS = {
    **{key: _WELL_HEADERS[key] for key in _CONDITION_KEYS},
    "wells": "wells",
    "n_cells": "cells per well",
    "mean_area": "mean area (px)",
    "mean_roundness": "roundness (4πA/P²)",
    "mean_eccentricity": "eccentricity",
}
_STAGE_HEADERS = {
    "name": "stage",
    "seconds": "seconds",
    "units": "units",
    "rate": "units/s",
    "status": "status",
}
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1280px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
.summary { font-size: 1.1em; color: #444; }
.problems { border-left: 6px solid #c0392b; background: #fdecea; padding: 0.5em 1em; }
.problems.none { border-color: #27ae60; background: #eafaf1; }
.problems h2 { border: none; margin: 0.2em 0; }
.skipped { color: #8a6d00; font-style: italic; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
figure { margin: 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; max-width: 640px; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
"""


@dataclass(frozen=True)
class Overlay:
    """One field's image with its segmentation outlines drawn on it.

    Parameters
    ----------
    title
        Caption, e.g. ``"P1 · B03 field 1 · DMSO 0 µM"``.
    image
        ``(y, x)`` image of any numeric dtype, shown with percentile (1, 99.5) contrast.
    labels
        ``(y, x)`` label image of the same shape, 0 for background; each object's outline
        is drawn in a colour.
    """

    title: str
    image: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if np.ndim(self.image) != 2 or np.shape(self.image) != np.shape(self.labels):
            raise ValueError(
                f"overlay {self.title!r}: image {np.shape(self.image)} and labels "
                f"{np.shape(self.labels)} must be 2-d images of the same shape"
            )


@dataclass(frozen=True)
class Gallery:
    """Crops of one treatment.

    Parameters
    ----------
    title
        Caption, e.g. ``"drug_a 10 µM"``.
    crops
        ``(n, y, x)`` crops, drawn as a grid of tiles, each contrast-stretched on its own.
    """

    title: str
    crops: np.ndarray

    def __post_init__(self) -> None:
        if np.ndim(self.crops) != 3:
            raise ValueError(
                f"gallery {self.title!r}: crops must be (n, y, x), not {np.shape(self.crops)}"
            )


@dataclass(frozen=True)
class Thumbnail:
    """A small image of a field, with a caption (e.g. why QC flagged it).

    Parameters
    ----------
    title
        Caption, e.g. ``"P1 · B03 field 2 · DNA: blurry"``.
    image
        ``(y, x)`` image, shown with percentile (1, 99.5) contrast.
    """

    title: str
    image: np.ndarray

    def __post_init__(self) -> None:
        if np.ndim(self.image) != 2:
            raise ValueError(f"thumbnail {self.title!r}: image must be 2-d")


@dataclass(frozen=True)
class Figures:
    """Figures drawn elsewhere, shown under one heading (e.g. illumination models).

    Parameters
    ----------
    title
        Caption.
    figure
        A matplotlib figure.
    """

    title: str
    figure: Figure


@dataclass(frozen=True)
class StageRecord:
    """What one stage of the run did and how long it took.

    Parameters
    ----------
    name
        The stage, e.g. ``"segment"``.
    seconds
        Wall-clock time of the stage.
    units
        How many units (fields, cells, ...) the stage covers.
    status
        What happened, e.g. ``"ran"``, ``"resumed"`` or ``"skipped (unchanged)"``.
    """

    name: str
    seconds: float
    units: int
    status: str


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows.

    Parameters
    ----------
    title
        Page title, e.g. the screen's name.
    cells
        The cell table: one row per cell with ``cell_id``, the ``Metadata_`` columns
        (plate-map columns such as ``Metadata_treatment`` and ``Metadata_concentration``
        are optional) and the features. May have no rows.
    scores
        ``(n_cells, k)`` PCA scores, rows aligned with ``cells``.
    explained_variance_ratio
        ``(k,)`` explained-variance ratio of the components.
    field_quality
        One row per field with ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``,
        ``Metadata_Timepoint`` and ``focus_score``; ``None`` when not available.
    overlays
        Fields with their segmentation outlines.
    qc
        The QC table of every plate (:func:`cellscale.qc`), or ``None`` without QC.
    qc_channel
        The channel whose QC maps are drawn (the segmentation channel).
    flagged
        Thumbnails of fields QC flagged.
    illumination
        Each plate's illumination model, drawn.
    galleries
        Crops, one gallery per treatment.
    stages
        The run's stages, in order.
    problems
        What was skipped or failed, one sentence each.
    notes
        Anything else a reader needs, e.g. which embedding weights were used.
    """

    title: str
    cells: pd.DataFrame
    scores: np.ndarray
    explained_variance_ratio: np.ndarray
    field_quality: pd.DataFrame | None
    overlays: Sequence[Overlay] = ()
    qc: pd.DataFrame | None = None
    qc_channel: str | None = None
    flagged: Sequence[Thumbnail] = ()
    illumination: Sequence[Figures] = ()
    galleries: Sequence[Gallery] = ()
    stages: Sequence[StageRecord] = ()
    problems: Sequence[str] = ()
    notes: Sequence[str] = ()

    def __post_init__(self) -> None:
        if len(self.cells) == 0:
            return
        missing = [c for c in METADATA_COLUMNS if c not in self.cells.columns]
        if missing:
            raise ValueError(f"the cell table lacks the columns {missing}")
        if np.ndim(self.scores) != 2 or len(self.scores) != len(self.cells):
            raise ValueError(
                f"scores {np.shape(self.scores)} must have one row per cell ({len(self.cells)})"
            )


def write_report(folder: str | os.PathLike[str], inputs: ReportInputs) -> Path:
    """Write ``folder/index.html`` and its PNGs (``folder/figures/*.png``).

    The report is built in a temporary folder beside ``folder`` and then replaces it
    whole, so an interrupted run leaves the previous report, never half of a new one.

    Parameters
    ----------
    folder
        The report folder; an existing one (an earlier report) is replaced.
    inputs
        What the report shows.

    Returns
    -------
    pathlib.Path
        The path of ``index.html``.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} exists and is not a folder")
    partial = _sibling(folder, "partial")
    (partial / _FIGURES).mkdir(parents=True)
    try:
        page = _page(inputs, partial / _FIGURES)
        (partial / "index.html").write_text(page, encoding="utf-8")
        _swap_in(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder / "index.html"


def _sibling(folder: Path, kind: str) -> Path:
    return folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:12]}.{kind}")


def _swap_in(new: Path, folder: Path) -> None:
    """Move ``new`` to ``folder``, replacing an earlier report (restored if the move fails)."""
    if not folder.exists():
        new.rename(folder)
        return
    old = _sibling(folder, "old")
    folder.rename(old)
    try:
        new.rename(folder)
    except BaseException:
        old.rename(folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _page(inputs: ReportInputs, figures: Path) -> str:
    cells = inputs.cells
    sections = [
        _header(inputs),
        _plates_section(cells, inputs.field_quality, figures),
        _qc_section(inputs.qc, inputs.qc_channel, inputs.flagged, figures),
        _illumination_section(inputs.illumination, figures),
        _overlays_section(inputs.overlays, figures),
        _galleries_section(inputs.galleries, figures),
        _pca_section(cells, inputs.scores, inputs.explained_variance_ratio, figures),
        _summaries_section(cells),
        _run_section(inputs.stages, inputs.notes),
    ]
    title = html.escape(inputs.title)
    body = "\n".join(sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
        f"</body>\n</html>\n"
    )


# -- header ---------------------------------------------------------------------------


def _header(inputs: ReportInputs) -> str:
    written = datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [
        f"<h1>{html.escape(inputs.title)}</h1>",
        f'<p class="summary">{html.escape(_counts(inputs.cells, inputs.field_quality))}'
        f" · written {written}</p>",
    ]
    if len(inputs.cells) == 0:
        parts.append(_skipped("No cells were found: the cell figures and tables are skipped."))
    if inputs.problems:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in inputs.problems)
        parts.append(f'<div class="problems"><h2>Problems</h2><ul>{items}</ul></div>')
    else:
        parts.append('<div class="problems none"><h2>Problems</h2><p>none</p></div>')
    return "\n".join(parts)


def _counts(cells: pd.DataFrame, field_quality: pd.DataFrame | None) -> str:
    """Plates, wells, fields and time points seen in the cells or the field table."""
    tables = [t[_FIELD_KEYS] for t in (cells, field_quality) if t is not None and len(t)]
    fields = pd.concat(tables).drop_duplicates() if tables else pd.DataFrame(columns=_FIELD_KEYS)
    counts = [
        (fields["Metadata_Plate"].nunique(), "plate"),
        (len(fields[_FIELD_KEYS[:2]].drop_duplicates()), "well"),
        (len(fields[_FIELD_KEYS[:3]].drop_duplicates()), "field"),
        (fields["Metadata_Timepoint"].nunique(), "time point"),
        (len(cells), "cell"),
    ]
    return " · ".join(f"{n:,} {word}{'' if n == 1 else 's'}" for n, word in counts)


# -- plates ---------------------------------------------------------------------------


def _plates_section(cells: pd.DataFrame, field_quality: pd.DataFrame | None, figures: Path) -> str:
    parts = ["<h2>Plates</h2>"]
    counts = _cells_per_well(cells, field_quality)
    if counts.empty:
        parts.append(_skipped("No cells and no field table: the cells-per-well maps are skipped."))
    else:
        times = cells["Metadata_Timepoint"].nunique() if len(cells) else 0
        what = f"cells per well (all {times} time points)" if times > 1 else "cells per well"
        parts.append(_plate_maps(counts, "cells", what, "cells-per-well", figures))
    if field_quality is None or field_quality.empty:
        parts.append(_skipped("No field quality table: the focus maps are skipped."))
    else:
        focus = field_quality.groupby(_FIELD_KEYS[:2])["focus_score"].mean()
        parts.append(
            _plate_maps(focus, "mean focus score", "mean focus score per well", "focus", figures)
        )
    return "\n".join(parts)


def _cells_per_well(cells: pd.DataFrame, field_quality: pd.DataFrame | None) -> pd.Series:
    """Cells per (plate, well), with 0 for wells of the field table that have none."""
    wells = _FIELD_KEYS[:2]
    counts = cells.groupby(wells).size() if len(cells) else pd.Series(dtype=float)
    if field_quality is not None and len(field_quality):
        imaged = pd.MultiIndex.from_frame(field_quality[wells].drop_duplicates())
        counts = counts.reindex(counts.index.union(imaged) if len(counts) else imaged, fill_value=0)
    return counts


def _plate_maps(values: pd.Series, label: str, what: str, kind: str, figures: Path) -> str:
    tiles = []
    for i, (plate, per_well) in enumerate(values.groupby(level=0, sort=True), start=1):
        name = _png_name(kind, i, str(plate))
        _save_plot(plots.plate_heatmap(per_well.droplevel(0), label=label), figures / name)
        tiles.append(_figure(name, f"{what}, plate {plate}", f"Plate {plate}: {what}"))
    return _figures(tiles)


# -- quality --------------------------------------------------------------------------

_QC_MAPS = {
    "focus_laplacian_norm": "focus (variance of the Laplacian / signal²)",
    "signal_to_background": "signal to background",
    "flagged": "fraction of fields flagged",
}
_FLAGS = ("blurry", "saturated", "empty", "dim")


def _qc_section(
    table: pd.DataFrame | None, channel: str | None, flagged: Sequence[Thumbnail], figures: Path
) -> str:
    parts = ["<h2>Image quality</h2>"]
    if table is None or table.empty:
        parts.append(_skipped("QC was not run (qc.enabled is off)."))
        return "\n".join(parts)
    chosen = table[table["channel"] == channel] if channel in set(table["channel"]) else table
    tiles = []
    for p, (plate, rows) in enumerate(chosen.groupby("Metadata_Plate", sort=True), start=1):
        rows = rows[rows["t"] == rows["t"].min()]
        shown = str(rows["channel"].iloc[0])
        for column, what in _QC_MAPS.items():
            name = _png_name(f"qc-{column}", p, str(plate))
            figure = plots.qc_heatmap(rows, column, channel=shown, title=f"{plate}: {what}")
            _save_plot(figure, figures / name)
            tiles.append(
                _figure(name, f"{what}, plate {plate}", f"Plate {plate} · {shown}: {what}")
            )
    parts.append(_figures(tiles))
    counts = table.groupby(["Metadata_Plate", "channel"])[list(_FLAGS)].sum().reset_index()
    counts["images"] = table.groupby(["Metadata_Plate", "channel"]).size().to_numpy()
    headers = {"Metadata_Plate": "plate", "channel": "channel", "images": "images"}
    parts.append(_table(counts, {**headers, **{f: f for f in _FLAGS}}))
    if not flagged:
        parts.append("<p>No image was flagged.</p>")
        return "\n".join(parts)
    thumbs = []
    for i, thumb in enumerate(flagged, start=1):
        name = _png_name("flagged", i, thumb.title)
        imsave(figures / name, _stretch(_shrunk(thumb.image)), cmap="gray", vmin=0, vmax=1)
        thumbs.append(_figure(name, f"flagged field: {thumb.title}", thumb.title))
    parts.append(f"<p>{len(flagged)} flagged field(s):</p>")
    parts.append(_figures(thumbs))
    return "\n".join(parts)


def _shrunk(image: np.ndarray, side: int = 192) -> np.ndarray:
    """``image`` subsampled so its longer side is at most ``side`` pixels."""
    step = max(1, math.ceil(max(image.shape) / side))
    return np.asarray(image)[::step, ::step]


def _illumination_section(models: Sequence[Figures], figures: Path) -> str:
    parts = ["<h2>Illumination</h2>"]
    if not models:
        parts.append(_skipped("No illumination correction (illumination.method is null)."))
        return "\n".join(parts)
    tiles = []
    for i, model in enumerate(models, start=1):
        name = _png_name("illumination", i, model.title)
        _save_plot(model.figure, figures / name)
        tiles.append(_figure(name, model.title, model.title))
    parts.append(_figures(tiles))
    return "\n".join(parts)


# -- images ---------------------------------------------------------------------------


def _overlays_section(overlays: Sequence[Overlay], figures: Path) -> str:
    parts = ["<h2>Segmentation</h2>"]
    if not overlays:
        parts.append(_skipped("No segmentation overlays were made."))
    tiles = []
    for i, overlay in enumerate(overlays, start=1):
        name = _png_name("overlay", i, overlay.title)
        imsave(figures / name, _overlay_rgb(overlay.image, overlay.labels))
        tiles.append(_figure(name, f"segmentation outlines: {overlay.title}", overlay.title))
    parts.append(_figures(tiles))
    return "\n".join(parts)


def _overlay_rgb(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The contrast-stretched image in grey with each object's outline in a colour."""
    step = math.ceil(max(np.shape(image)) / MAX_OVERLAY_SIDE)
    grey = _stretch(np.asarray(image)[::step, ::step])
    small = np.asarray(labels)[::step, ::step]
    rgb = np.repeat(grey[..., np.newaxis], 3, axis=2)
    edges = find_boundaries(small, mode="inner")
    rgb[edges] = _OUTLINE_COLORS[small[edges].astype(np.int64) % len(_OUTLINE_COLORS)]
    return rgb


def _galleries_section(galleries: Sequence[Gallery], figures: Path) -> str:
    parts = ["<h2>Crops</h2>"]
    if not galleries:
        parts.append(_skipped("No crop galleries were made."))
    tiles = []
    for i, gallery in enumerate(galleries, start=1):
        n = len(gallery.crops)
        if n == 0:
            parts.append(_skipped(f"{gallery.title}: no crops."))
            continue
        name = _png_name("crops", i, gallery.title)
        imsave(figures / name, _tile_grid(gallery.crops[:MAX_TILES]), cmap="gray", vmin=0, vmax=1)
        shown = f"{MAX_TILES} of {n:,} crops" if n > MAX_TILES else f"{n:,} crops"
        caption = f"{gallery.title} ({shown})"
        tiles.append(_figure(name, f"crop gallery: {caption}", caption))
    parts.append(_figures(tiles))
    return "\n".join(parts)


def _tile_grid(crops: np.ndarray, gap: int = 2) -> np.ndarray:
    """Crops side by side in a near-square grid on white, each stretched on its own."""
    n, height, width = crops.shape
    scale = max(1, math.ceil(MIN_TILE_SIDE / max(height, width, 1)))
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    tile_h, tile_w = height * scale + gap, width * scale + gap
    grid = np.ones((rows * tile_h + gap, columns * tile_w + gap))
    for i, crop in enumerate(crops):
        r, c = divmod(i, columns)
        tile = np.kron(_stretch(crop), np.ones((scale, scale)))
        grid[gap + r * tile_h : (r + 1) * tile_h, gap + c * tile_w : (c + 1) * tile_w] = tile
    return grid


def _stretch(values: np.ndarray) -> np.ndarray:
    """Map the :data:`CONTRAST` percentiles of the finite values to 0 and 1."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    low, high = np.percentile(finite, CONTRAST)
    if high <= low:
        return np.zeros_like(values)
    return np.nan_to_num(np.clip((values - low) / (high - low), 0, 1))


# -- PCA ------------------------------------------------------------------------------


def _pca_section(cells: pd.DataFrame, scores: np.ndarray, ratio: np.ndarray, figures: Path) -> str:
    parts = ["<h2>PCA</h2>"]
    tiles = []
    if len(cells) == 0:
        parts.append(_skipped("No cells: the PCA scatter plots are skipped."))
    elif np.shape(scores)[1] < 2:
        parts.append(_skipped("Fewer than two components: the PCA scatter plots are skipped."))
    else:
        for i, (column, label, values) in enumerate(_colourings(cells), start=1):
            if values is None:
                parts.append(
                    _skipped(f"No {column} column: the PCA scatter by {label} is skipped.")
                )
                continue
            name = _png_name("pca", i, column.removeprefix("Metadata_"))
            _save_plot(plots.pca_scatter(scores, values, label=label), figures / name)
            tiles.append(_figure(name, f"PC1 against PC2 by {label}", f"PC1 vs PC2 by {label}"))
    if len(ratio):
        _save_plot(plots.explained_variance(ratio), figures / "explained-variance.png")
        tiles.append(
            _figure(
                "explained-variance.png", "explained variance per component", "Explained variance"
            )
        )
    else:
        parts.append(_skipped("No components: the explained-variance plot is skipped."))
    parts.append(_figures(tiles))
    return "\n".join(parts)


def _colourings(cells: pd.DataFrame) -> list[tuple[str, str, pd.Series | None]]:
    """(column, label, values or None when the column is absent) for each PCA colouring."""
    time = pd.to_numeric(cells["Metadata_Timepoint"]) / 3600
    return [
        ("Metadata_treatment", "treatment", cells.get("Metadata_treatment")),
        ("Metadata_Timepoint", "time (h)", time),
        ("Metadata_concentration", "concentration (µM)", cells.get("Metadata_concentration")),
    ]


# -- tables ---------------------------------------------------------------------------


def _summaries_section(cells: pd.DataFrame) -> str:
    parts = ["<h2>Wells</h2>"]
    if len(cells) == 0:
        parts.append(_skipped("No cells: the per-well and per-condition tables are skipped."))
        return "\n".join(parts)
    try:
        wells = well_summary(cells, compartment="cells")
    except ValueError as error:
        parts.append(_skipped(f"The per-well tables are skipped: {error}."))
        return "\n".join(parts)
    wells["time_h"] = pd.to_numeric(wells["Metadata_Timepoint"]) / 3600
    parts.append("<h3>Per condition (means of the well means)</h3>")
    parts.append(_table(_conditions(wells), _CONDITION_HEADERS))
    parts.append("<h3>Per well and time point</h3>")
    parts.append(_table(wells, _WELL_HEADERS))
    return "\n".join(parts)


def _conditions(wells: pd.DataFrame) -> pd.DataFrame:
    """Wells grouped by treatment, concentration and time: their number and mean values."""
    keys = [k for k in _CONDITION_KEYS if k in wells.columns]
    means = [
        c for c in ("n_cells", "mean_area", "mean_roundness", "mean_eccentricity") if c in wells
    ]
    grouped = wells.groupby(keys, dropna=False, sort=True)
    return grouped.agg(wells=("n_cells", "size"), **{c: (c, "mean") for c in means}).reset_index()


def _run_section(stages: Sequence[StageRecord], notes: Sequence[str]) -> str:
    parts = ["<h2>Run</h2>"]
    if stages:
        table = pd.DataFrame(
            {
                "name": [s.name for s in stages],
                "seconds": [float(s.seconds) for s in stages],
                "units": [int(s.units) for s in stages],
                "rate": [s.units / s.seconds if s.seconds > 0 else math.nan for s in stages],
                "status": [s.status for s in stages],
            }
        )
        parts.append(_table(table, _STAGE_HEADERS))
        parts.append(f"<p>Total: {table['seconds'].sum():,.1f} s.</p>")
    else:
        parts.append(_skipped("No stage records."))
    parts.append("<h3>Notes</h3>")
    if notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    else:
        parts.append("<p>none</p>")
    return "\n".join(parts)


def _table(frame: pd.DataFrame, headers: Mapping[str, str]) -> str:
    """An HTML table of the ``headers`` columns that ``frame`` has, every value escaped."""
    columns = [c for c in headers if c in frame.columns]
    head = "".join(f"<th>{html.escape(headers[c])}</th>" for c in columns)
    numeric = pd.api.types.is_numeric_dtype
    opening = ['<td class="num">' if numeric(frame[c]) else "<td>" for c in columns]
    rows = []
    for values in frame[columns].itertuples(index=False):
        cells = (
            f"{td}{html.escape(_format(v))}</td>" for td, v in zip(opening, values, strict=True)
        )
        rows.append(f"<tr>{''.join(cells)}</tr>")
    body = "\n".join(rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _format(value: Any) -> str:
    """A table value: three significant digits, thousands separated, a dash when missing."""
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return "\N{EN DASH}"
    if isinstance(value, float | np.floating):
        return f"{value:,.0f}" if abs(float(value)) >= 1000 else f"{value:.3g}"
    return str(value)


# -- pieces ---------------------------------------------------------------------------


def _png_name(kind: str, index: int, text: str) -> str:
    """A file name of plain ASCII letters, digits and dashes, unique per kind and index."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40]
    return f"{kind}-{index:02d}-{slug}.png" if slug else f"{kind}-{index:02d}.png"


def _save_plot(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI)


def _figure(name: str, alt: str, caption: str) -> str:
    src = html.escape(f"{_FIGURES}/{name}")
    return (
        f'<figure><img src="{src}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _figures(tiles: Sequence[str]) -> str:
    joined = "\n".join(tiles)
    return f'<div class="figures">\n{joined}\n</div>' if tiles else ""


def _skipped(sentence: str) -> str:
    return f'<p class="skipped">{html.escape(sentence)}</p>'
