"""An interactive page of cells and wells: point at a dot and see the cell behind it.

:func:`write_interactive_page` writes ``index.html`` (bokeh scatters of a subsample of
cells and of the wells, with BokehJS inline: it opens from disk with no server and no
network) and the crops as PNG sprite sheets in ``crops/``. Hovering or clicking a point
shows its crop (or the well's montage) and its metadata; a menu colours the points by
any column; a lasso or box selection lists the selected cells, with a CSV download.

Crops are packed :data:`TILES_PER_SIDE` × :data:`TILES_PER_SIDE` to a sheet rather
than written one file per cell: 50,000 crops make about 200 files instead of 50,000
(small files are slow to write, copy and list, on cluster file systems above all), and
the page still fetches only the sheets of the points a user looks at. Channels are
mixed to RGB (:data:`CHANNEL_COLORS`), each channel stretched by the :data:`CONTRAST`
percentiles of a sample of all crops, so brightness compares between cells.

Every string from the tables (names, levels, ids) reaches the page as data and is
shown as text (``textContent``, bokeh's own text widgets), never parsed as markup.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from cellscale.report._write import _sibling, _swap_in

__all__ = ["write_interactive_page"]

#: The folder, beside ``index.html``, that holds the sprite sheets.
CROPS = "crops"
#: Sheets hold up to this many tiles a side (fewer for tiles above :data:`MAX_SHEET_SIDE`).
TILES_PER_SIDE = 16
#: Longest side, in pixels, of a sprite sheet.
MAX_SHEET_SIDE = 2048
#: Percentiles of each channel mapped to black and full colour.
CONTRAST = (1.0, 99.5)
#: Crops sampled to find each channel's :data:`CONTRAST` percentiles.
CONTRAST_SAMPLE = 256
#: Colour of channel 0, 1, 2, … in the RGB mix (a single channel is grey).
CHANNEL_COLORS = (
    (0.0, 0.4, 1.0),
    (0.0, 1.0, 0.0),
    (1.0, 0.0, 0.0),
    (1.0, 0.0, 1.0),
    (0.0, 1.0, 1.0),
)
#: A numeric column with at most this many distinct values is coloured as categories.
MAX_NUMERIC_LEVELS = 10
#: Colour of a point whose value is missing.
MISSING_COLOR = "#bbbbbb"


@dataclass(frozen=True)
class _Column:
    """A table column as the page holds it: float32 values, or codes into ``levels``."""

    name: str
    key: str
    values: np.ndarray
    levels: tuple[str, ...] | None

    @property
    def varies(self) -> bool:
        """Whether the column has two different values (else nothing to colour by)."""
        finite = self.values[np.isfinite(self.values)]
        return finite.size > 0 and bool(finite.min() < finite.max())


@dataclass(frozen=True)
class _Sheets:
    """Where tile ``i`` of a set of images lies: sheet ``i // per_sheet``, row-major."""

    prefix: str
    tile_height: int
    tile_width: int
    columns: int

    @property
    def per_sheet(self) -> int:
        return self.columns * self.columns


def write_interactive_page(
    folder: str | os.PathLike[str],
    cells: pd.DataFrame,
    *,
    x: str = "UMAP1",
    y: str = "UMAP2",
    crops: Any = None,
    wells: pd.DataFrame | None = None,
    well_x: str | None = None,
    well_y: str | None = None,
    well_images: Any = None,
    columns: Sequence[str] | None = None,
    color_by: str | None = None,
    title: str = "Cells and wells",
    max_points: int = 50_000,
    seed: int = 0,
) -> Path:
    """Write ``folder/index.html``: scatters of cells and wells that show what each point is.

    The page opens from disk (BokehJS is inline, nothing is fetched from the network).
    Hovering or clicking a point shows its crop (or its well's montage) and its values;
    the *Colour by* menu colours the points by any shown column (categories, or a colour
    map for a numeric column with more than :data:`MAX_NUMERIC_LEVELS` values); the lasso
    and box tools list the selected points below the plots, with a CSV download. The
    address keeps the view: ``index.html#cell=<cell_id>`` (or ``#well=<plate>/<well>``)
    opens with that point selected, ``&colour=<column>`` coloured by that column. The
    folder is written beside ``folder`` and swapped in whole, so an earlier page is
    replaced, never mixed in.

    Parameters
    ----------
    folder
        The page's folder; an existing one (an earlier page) is replaced.
    cells
        One row per cell: ``cell_id``, the coordinates ``x`` and ``y`` and the ``columns``.
        More than ``max_points`` rows are subsampled (seeded).
    x, y
        The cells' coordinate columns (e.g. ``UMAP1``/``UMAP2`` or ``PC1``/``PC2``).
    crops
        One image per row of ``cells``, ``(n, C, Y, X)`` or ``(n, Y, X)``; anything that
        slices to NumPy (a dask or zarr array is read a sheet at a time, up to
        ``TILES_PER_SIDE**2`` = 256 images: chunk it so). ``None``: no crops.
    wells
        One row per well with its coordinates and columns; ``None``: no wells tab.
    well_x, well_y
        The wells' coordinate columns; by default ``x`` and ``y``.
    well_images
        One montage per row of ``wells``, shaped like ``crops``; ``None``: no montages.
    columns
        The columns shown and offered for colouring; by default every ``Metadata_*``
        column. Columns with one value are shown but not offered for colouring.
    color_by
        The column coloured first; by default ``Metadata_Treatment`` or the first column
        that varies.
    title
        The page's title.
    max_points
        Most cells drawn.
    seed
        Seed of the subsample.

    Returns
    -------
    pathlib.Path
        The path of ``index.html``.

    Raises
    ------
    KeyError
        If a named column is missing (the message suggests the nearest name).
    ValueError
        If ``crops`` or ``well_images`` do not have one image per row, or
        ``well_images`` come without ``wells``.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np, pandas as pd
    >>> cells = pd.DataFrame({"cell_id": [1, 2, 3], "UMAP1": [0.0, 1.0, 2.0],
    ...     "UMAP2": [1.0, 0.0, 1.0], "Metadata_Treatment": ["DMSO", "drug", "drug"]})
    >>> crops = np.random.default_rng(0).random((3, 2, 16, 16))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     index = write_interactive_page(Path(tmp) / "explore", cells, crops=crops)
    ...     sorted(p.name for p in (index.parent / "crops").iterdir())
    ['cells-0000.png']
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} exists and is not a folder")
    total = len(cells)
    rows = _subsample(total, max_points, seed)
    cells = cells.iloc[rows].reset_index(drop=True)
    shown = list(columns) if columns is not None else _metadata_columns(cells)
    _require(cells, ["cell_id", x, y, *shown], "cell table")
    if color_by is not None:
        _require(cells, [color_by], "cell table")
    _check_images(crops, total, "crops", "cell table")
    if well_images is not None and wells is None:
        raise ValueError("well_images were given without wells; give the well table too")
    partial = _sibling(folder, "partial")
    (partial / CROPS).mkdir(parents=True)
    try:
        cell_sheets = _write_sheets(crops, rows, partial / CROPS, "cells")
        sets = [_point_set("cells", cells, x, y, shown, cells["cell_id"], cell_sheets)]
        if wells is not None:
            sets.append(_well_set(wells, well_x or x, well_y or y, shown, well_images, partial))
        summary = _summary(len(cells), total, wells)
        html = _page_html(sets, title, summary, color_by)
        (partial / "index.html").write_text(html, encoding="utf-8")
        _swap_in(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder / "index.html"


def _well_set(
    wells: pd.DataFrame,
    x: str,
    y: str,
    cell_columns: Sequence[str],
    images: Any,
    partial: Path,
) -> dict[str, Any]:
    """The wells' point set: the cells' columns that the well table has, labelled plate/well."""
    wells = wells.reset_index(drop=True)
    _require(wells, [x, y], "well table")
    _check_images(images, len(wells), "well_images", "well table")
    shown = [c for c in cell_columns if c in wells.columns] or _metadata_columns(wells)
    keys = [c for c in ("Metadata_Plate", "Metadata_Well") if c in wells.columns]
    labels = (
        wells[keys].astype(str).agg("/".join, axis=1)
        if keys
        else pd.Series([str(i) for i in range(len(wells))])
    )
    sheets = _write_sheets(images, np.arange(len(wells)), partial / CROPS, "wells")
    return _point_set("wells", wells, x, y, shown, labels, sheets)


def _subsample(total: int, max_points: int, seed: int) -> np.ndarray:
    """Sorted row positions: all of them, or ``max_points`` drawn without replacement."""
    if total <= max_points:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, max_points, replace=False))


def _metadata_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if str(c).startswith("Metadata_")]


def _require(table: pd.DataFrame, names: Sequence[str], what: str) -> None:
    """Raise a KeyError naming the first missing column and the nearest present one."""
    present = [str(c) for c in table.columns]
    for name in names:
        if name not in table.columns:
            near = difflib.get_close_matches(str(name), present, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; it has {present[:8]}"
            raise KeyError(f"the column {name!r} is not in the {what}{hint}")


def _check_images(images: Any, rows: int, name: str, what: str) -> None:
    if images is None:
        return
    shape = tuple(np.shape(images))
    if len(shape) not in (3, 4) or shape[0] != rows:
        raise ValueError(
            f"{name} has shape {shape} but the {what} has {rows} rows; give one image per "
            f"row, in the table's order, shaped (n, C, Y, X) or (n, Y, X)"
        )


def _summary(shown: int, total: int, wells: pd.DataFrame | None) -> str:
    drawn = (
        f"{shown:,} cells" if shown == total else f"{shown:,} of {total:,} cells (a seeded sample)"
    )
    return drawn if wells is None else f"{drawn} and {len(wells):,} wells"


def _encode(name: str, key: str, values: pd.Series) -> _Column:
    """A column as float32: numbers with many values as they are, others as level codes."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique() > MAX_NUMERIC_LEVELS:
        return _Column(name, key, values.to_numpy(dtype=np.float32, na_value=np.nan), None)
    present = values.dropna().unique()
    ordered = sorted(present) if numeric else sorted(present, key=str)
    levels = tuple(f"{v:g}" if numeric else str(v) for v in ordered)
    codes = values.map({v: i for i, v in enumerate(ordered)})
    return _Column(name, key, codes.to_numpy(dtype=np.float32, na_value=np.nan), levels)


def _color_setting(column: _Column) -> dict[str, Any]:
    """The colour mapper's palette and range and the colour bar's ticks for ``column``."""
    from bokeh.palettes import Category10, Category20, Turbo256, Viridis256

    if column.levels is not None:
        k = max(len(column.levels), 1)
        spread = [Turbo256[round(i)] for i in np.linspace(0, 255, k)]  # may repeat past 256
        palette = Category10[10][:k] if k <= 10 else Category20[20][:k] if k <= 20 else spread
        step = math.ceil(k / 20)
        return {
            "palette": list(palette),
            "low": -0.5,
            "high": k - 0.5,
            "ticks": list(range(0, k, step)),
            "levels": list(column.levels),
        }
    finite = column.values[np.isfinite(column.values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    ticks = [float(t) for t in np.linspace(low, high, 5)]
    return {"palette": list(Viridis256), "low": low, "high": high, "ticks": ticks, "levels": None}


def _point_set(
    name: str,
    table: pd.DataFrame,
    x: str,
    y: str,
    shown: Sequence[str],
    ids: pd.Series,
    sheets: _Sheets | None,
) -> dict[str, Any]:
    """What the page needs of one scatter: its data columns, their meaning and its sheets."""
    encoded = [_encode(str(c), f"c{i}", table[c]) for i, c in enumerate(shown)]
    data: dict[str, Any] = {
        "x": table[x].to_numpy(dtype=np.float64),
        "y": table[y].to_numpy(dtype=np.float64),
        "id": _ids(ids),
    }
    data.update({column.key: column.values for column in encoded})
    return {
        "name": name,
        "x": x,
        "y": y,
        "data": data,
        "columns": [{"key": c.key, "name": c.name, "levels": c.levels} for c in encoded],
        "colors": {c.key: _color_setting(c) for c in encoded if c.varies},
        "sheets": None if sheets is None else {**sheets.__dict__, "per_sheet": sheets.per_sheet},
    }


def _ids(ids: pd.Series) -> np.ndarray | list[str]:
    """Integer ids as float64 (exact below 2**53, sent as binary); others as strings."""
    if pd.api.types.is_integer_dtype(ids) and (ids.abs() < 2**53).all():
        return ids.to_numpy(dtype=np.float64)
    return [str(v) for v in ids]


def _write_sheets(images: Any, rows: np.ndarray, folder: Path, prefix: str) -> _Sheets | None:
    """Write ``images[rows]`` as RGB PNG sprite sheets ``folder/<prefix>-0000.png``, …."""
    if images is None:
        return None
    from PIL import Image

    shape = np.shape(images)
    height, width = shape[-2:]
    fitting = min(
        TILES_PER_SIDE, MAX_SHEET_SIDE // max(height, width), math.isqrt(max(len(rows) - 1, 0)) + 1
    )
    columns = max(1, fitting)
    sheets = _Sheets(prefix, int(height), int(width), columns)
    lows, highs = _channel_range(images, rows)
    for number, start in enumerate(range(0, len(rows), sheets.per_sheet)):
        part = _with_channels(_take(images, rows[start : start + sheets.per_sheet]))
        grid = _tile(_to_rgb(part, lows, highs), columns)
        Image.fromarray(grid).save(folder / f"{prefix}-{number:04d}.png")
    return sheets


def _take(images: Any, rows: np.ndarray) -> np.ndarray:
    """``images[rows]`` as NumPy; consecutive rows as a slice, which zarr and dask read best."""
    if len(rows) > 0 and rows[-1] - rows[0] == len(rows) - 1:
        return np.asarray(images[int(rows[0]) : int(rows[-1]) + 1])
    return np.asarray(images[rows])


def _with_channels(images: np.ndarray) -> np.ndarray:
    return images[:, np.newaxis] if images.ndim == 3 else images


def _channel_range(images: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's :data:`CONTRAST` percentiles over up to :data:`CONTRAST_SAMPLE` images."""
    step = max(1, len(rows) // CONTRAST_SAMPLE)
    sample = _with_channels(np.asarray(images[rows[::step]], dtype=np.float64))
    per_channel = np.moveaxis(sample, 1, 0).reshape(sample.shape[1], -1)
    lows, highs = [], []
    for values in per_channel:
        finite = values[np.isfinite(values)]
        low, high = np.percentile(finite, CONTRAST) if finite.size else (0.0, 1.0)
        lows.append(low)
        highs.append(high if high > low else low + 1.0)
    return np.array(lows), np.array(highs)


def _to_rgb(images: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
    """``(n, C, Y, X)`` to ``(n, Y, X, 3)`` uint8: channels stretched, coloured and added."""
    low, span = lows[:, None, None], (highs - lows)[:, None, None]
    scaled = np.nan_to_num(np.clip((np.asarray(images, dtype=np.float32) - low) / span, 0, 1))
    if scaled.shape[1] == 1:
        colors = np.ones((1, 3), dtype=np.float32)
    else:
        palette = np.array(CHANNEL_COLORS, dtype=np.float32)
        colors = palette[np.arange(scaled.shape[1]) % len(palette)]
    rgb = np.clip(np.einsum("ncyx,ck->nyxk", scaled, colors), 0, 1)
    return (rgb * 255 + 0.5).astype(np.uint8)


def _tile(rgb: np.ndarray, columns: int) -> np.ndarray:
    """Images ``(n, Y, X, 3)`` in rows of ``columns``, row-major, on black."""
    n, height, width, _ = rgb.shape
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * height, columns * width, 3), dtype=np.uint8)
    for i, image in enumerate(rgb):
        r, c = divmod(i, columns)
        grid[r * height : (r + 1) * height, c * width : (c + 1) * width] = image
    return grid


def _page_html(sets: list[dict[str, Any]], title: str, summary: str, color_by: str | None) -> str:
    """The whole page: bokeh's scatters and BokehJS inline, in :data:`_TEMPLATE`."""
    from bokeh.document import Document
    from bokeh.embed import file_html
    from bokeh.models import CustomJS, TabPanel, Tabs
    from bokeh.resources import INLINE

    panels, sources, selects = [], {}, {}
    for point_set in sets:
        name = point_set["name"]
        layout, sources[name], selects[name] = _scatter(point_set, color_by)
        panels.append(TabPanel(child=layout, title=point_set["name"].capitalize()))
    tabs = Tabs(tabs=panels)
    described = {s["name"]: {k: v for k, v in s.items() if k != "data"} for s in sets}
    ready = CustomJS(
        args={"sources": sources, "selects": selects, "tabs": tabs, "sets": described},
        code="cellscale.ready(sources, selects, tabs, sets);",
    )
    document = Document(title=title)
    document.add_root(tabs)
    document.js_on_event("document_ready", ready)
    return file_html(
        document,
        resources=INLINE,
        title=title,
        template=_template(),
        template_variables={"page_title": title, "summary": summary, "script": _SCRIPT},
    )


def _scatter(point_set: dict[str, Any], color_by: str | None) -> tuple[Any, Any, Any]:
    """One scatter with its colour menu and colour bar; its data source; its menu."""
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, CustomJS, HoverTool, LinearColorMapper
    from bokeh.plotting import figure
    from bokeh.transform import transform

    name, colors = point_set["name"], point_set["colors"]
    first = _first_color(point_set["columns"], colors, color_by)
    setting = colors.get(first, {"palette": ["#1f77b4"], "low": 0, "high": 1, "ticks": []})
    data = dict(point_set["data"])
    data["colour"] = data[first] if first else np.full(len(data["x"]), np.nan, np.float32)
    source = ColumnDataSource(data, name=name)
    mapper = LinearColorMapper(
        palette=setting["palette"],
        low=setting["low"],
        high=setting["high"],
        nan_color=MISSING_COLOR,
    )
    plot = figure(
        title=f"{len(data['x']):,} {name}",
        x_axis_label=point_set["x"],
        y_axis_label=point_set["y"],
        tools="pan,wheel_zoom,box_select,lasso_select,tap,reset,save",
        active_drag="lasso_select",
        output_backend="webgl",
        width=760,
        height=620,
    )
    size = 4 if len(data["x"]) > 5_000 else 7
    fill = transform("colour", mapper)
    plot.scatter("x", "y", source=source, size=size, alpha=0.7, line_color=None, fill_color=fill)
    select = _colour_menu(point_set, first, plot, source, mapper)
    args = {"source": source, "name": name}
    hover = CustomJS(args=args, code="cellscale.hover(name, source, cb_data);")
    plot.add_tools(HoverTool(tooltips=None, callback=hover))
    selected = CustomJS(args=args, code="cellscale.selected(name, source);")
    source.selected.js_on_change("indices", selected)
    return column(select, plot), source, select


def _colour_menu(
    point_set: dict[str, Any], first: str | None, plot: Any, source: Any, mapper: Any
) -> Any:
    """The *Colour by* menu and the colour bar it relabels, added to ``plot``."""
    from bokeh.models import CustomJS, CustomJSTickFormatter, FixedTicker
    from bokeh.models.annotations import ColorBar
    from bokeh.models.widgets import Select

    colors = point_set["colors"]
    names = {c["key"]: c["name"] for c in point_set["columns"]}
    options: list[str | tuple[Any, str]] = [(k, names[k]) for k in names if k in colors]
    select = Select(title="Colour by", value=first or "", options=options, width=320)
    select.disabled = not options
    ticker = FixedTicker(ticks=colors[first]["ticks"] if first else [])
    labels = CustomJSTickFormatter(
        args={"select": select, "colors": colors},
        code="return cellscale.tick(tick, colors[select.value]);",
    )
    title = names.get(first or "", "")
    bar = ColorBar(color_mapper=mapper, ticker=ticker, formatter=labels, title=title)
    bar.visible = bool(options)
    plot.add_layout(bar, "right")
    recolour = CustomJS(
        args={"source": source, "mapper": mapper, "ticker": ticker, "bar": bar}
        | {"colors": colors, "names": names},
        code="cellscale.recolour(this.value, source, mapper, ticker, bar, colors, names);",
    )
    select.js_on_change("value", recolour)
    return select


def _first_color(
    columns: list[dict[str, Any]], colors: dict[str, Any], color_by: str | None
) -> str | None:
    """The key of ``color_by``, else of ``Metadata_Treatment``, else of the first that varies."""
    by_name = {c["name"]: c["key"] for c in columns if c["key"] in colors}
    for wanted in (color_by, "Metadata_Treatment"):
        if wanted in by_name:
            return by_name[wanted]
    return next(iter(colors), None)


@functools.cache
def _template() -> jinja2.Template:
    """The page template, autoescaped; bokeh's resources and scripts are marked safe."""
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.from_string(_TEMPLATE)


#: The page around bokeh's plots: the point panel and the selection list are plain HTML.
_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ page_title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1em; color: #222; }
h1 { margin: 0 0 0.2em; }
.summary { color: #444; margin: 0 0 1em; }
.explore { display: flex; gap: 1.5em; align-items: flex-start; }
#point { min-width: 280px; max-width: 360px; }
#point h2, #selection h2 { font-size: 1.1em; margin: 0.3em 0; }
.tile { position: relative; overflow: hidden; border: 1px solid #ccc; background: #000; }
.tile img { position: absolute; max-width: none; image-rendering: pixelated; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.15em 0.5em; text-align: left; }
th { background: #f3f3f3; }
#selection { margin-top: 1em; max-height: 32em; overflow: auto; }
.hint { color: #777; font-style: italic; }
</style>
{{ bokeh_css | safe }}
{{ bokeh_js | safe }}
<script>
{{ script | safe }}
</script>
</head>
<body>
<h1>{{ page_title }}</h1>
<p class="summary">{{ summary }}. Hover or click a point to see it;
lasso or box-select to list points.</p>
<div class="explore">
<div id="plots">{{ plot_div | safe }}</div>
<aside id="point"><p class="hint">Hover or click a point.</p></aside>
</div>
<section id="selection"><p class="hint">Nothing selected.</p></section>
{{ plot_script | safe }}
</body>
</html>
"""

#: The page's behaviour; bokeh's CustomJS callbacks call these. Text is set with
#: ``textContent``, never ``innerHTML``.
_SCRIPT = """
window.cellscale = (() => {
  const DISPLAY = 192, LISTED = 500, state = {};
  const element = (tag, text) => {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const format = (column, v) => {
    if (v == null || Number.isNaN(v)) return "\u2013";
    if (column.levels) return column.levels[v] ?? "\u2013";
    return String(Number(v.toPrecision(6)));
  };
  const idOf = (source, i) => String(source.data.id[i]);
  const noun = (name) => name === "cells" ? "Cell" : "Well";
  function tile(set, i, label) {
    const s = set.sheets;
    if (!s) return null;
    const scale = DISPLAY / Math.max(s.tile_height, s.tile_width);
    const k = i % s.per_sheet, sheet = Math.floor(i / s.per_sheet);
    const frame = element("div");
    frame.className = "tile";
    frame.style.width = `${s.tile_width * scale}px`;
    frame.style.height = `${s.tile_height * scale}px`;
    const img = element("img");
    img.onload = () => { img.dataset.loaded = String(img.naturalWidth); };
    img.onerror = () => { img.dataset.loaded = "failed"; };
    img.src = `crops/${s.prefix}-${String(sheet).padStart(4, "0")}.png`;
    img.alt = label;
    img.dataset.tile = String(k);
    img.style.width = `${s.columns * s.tile_width * scale}px`;
    img.style.left = `${-(k % s.columns) * s.tile_width * scale}px`;
    img.style.top = `${-Math.floor(k / s.columns) * s.tile_height * scale}px`;
    frame.append(img);
    return frame;
  }
  function show(name, i) {
    const {source, set} = state[name];
    const label = `${noun(name)} ${idOf(source, i)}`;
    const panel = document.getElementById("point");
    if (panel.dataset.shown === `${name}:${idOf(source, i)}`) return;
    const table = element("table");
    for (const c of set.columns) {
      const value = format(c, source.data[c.key][i]);
      table.insertRow().append(element("th", c.name), element("td", value));
    }
    const image = tile(set, i, label);
    panel.replaceChildren(element("h2", label), ...(image ? [image] : []), table);
    panel.dataset.shown = `${name}:${idOf(source, i)}`;
  }
  function remember(key, value) {  // in the address, so that a link reopens this view
    const params = new URLSearchParams(location.hash.slice(1));
    params.set(key, value);
    history.replaceState(null, "", `#${params}`);
  }
  function csv(name, indices) {
    const {source, set} = state[name];
    const quote = (v) => `"${String(v).replaceAll('"', '""')}"`;
    const header = [name === "cells" ? "cell_id" : "well", ...set.columns.map((c) => c.name)];
    const values = (i) => set.columns.map((c) => format(c, source.data[c.key][i]));
    const rows = indices.map((i) => [idOf(source, i), ...values(i)]);
    return [header, ...rows].map((row) => row.map(quote).join(",")).join("\\n");
  }
  function list(name, indices) {
    const {source, set} = state[name];
    const box = document.getElementById("selection");
    if (indices.length === 0) {
      box.replaceChildren(element("p", "Nothing selected."));
      return;
    }
    const more = indices.length > LISTED ? ` (the first ${LISTED} listed)` : "";
    const n = indices.length, noun = n === 1 ? name.slice(0, -1) : name;
    const count = element("h2", `${n.toLocaleString("en")} ${noun} selected${more}`);
    const download = element("button", "Download the selection (CSV)");
    download.onclick = () => {
      const link = element("a");
      link.href = URL.createObjectURL(new Blob([csv(name, indices)], {type: "text/csv"}));
      link.download = `${name}-selection.csv`;
      link.click();
      URL.revokeObjectURL(link.href);
    };
    const table = element("table");
    table.id = "selection-table";
    const headers = [name === "cells" ? "cell_id" : "well", ...set.columns.map((c) => c.name)];
    table.createTHead().insertRow().append(...headers.map((h) => element("th", h)));
    const body = table.createTBody();
    for (const i of indices.slice(0, LISTED)) {
      body.insertRow().append(element("td", idOf(source, i)),
        ...set.columns.map((c) => element("td", format(c, source.data[c.key][i]))));
    }
    box.replaceChildren(count, download, table);
    box.dataset.count = String(indices.length);
  }
  return {
    hover(name, source, data) {
      const indices = data.index.indices;
      if (state[name] && indices.length > 0) show(name, indices[0]);
    },
    selected(name, source) {
      if (!state[name]) return;
      const indices = source.selected.indices;
      list(name, indices);
      if (indices.length > 0) show(name, indices[0]);
      if (indices.length === 1) remember(name.slice(0, -1), idOf(source, indices[0]));
    },
    recolour(key, source, mapper, ticker, bar, colors, names) {
      const s = colors[key];
      source.data.colour = source.data[key];
      source.change.emit();
      mapper.setv({palette: s.palette, low: s.low, high: s.high});
      ticker.ticks = s.ticks;
      bar.title = names[key];
      document.documentElement.dataset.colour = names[key];
      remember("colour", names[key]);
    },
    tick(tick, s) {
      if (!s) return "";
      if (s.levels) return s.levels[Math.round(tick)] ?? "";
      return String(Number(tick.toPrecision(3)));
    },
    ready(sources, selects, tabs, sets) {
      const names = Object.keys(sets);
      for (const name of names) state[name] = {source: sources[name], set: sets[name]};
      const root = document.documentElement;
      for (const name of names) root.dataset[name] = String(sources[name].get_length());
      const wanted = new URLSearchParams(location.hash.slice(1));
      for (const name of names) {
        const colour = sets[name].columns.find((c) => c.name === wanted.get("colour"));
        if (colour && colour.key in sets[name].colors) selects[name].value = colour.key;
        const id = wanted.get(name.slice(0, -1));
        const i = id === null ? -1 : Array.from(sources[name].data.id, String).indexOf(id);
        if (i >= 0) {
          tabs.active = names.indexOf(name);
          sources[name].selected.indices = [i];
        }
      }
      root.dataset.ready = "1";
    },
  };
})();
"""
