"""The run report: one self-contained page whose figures exist, escaped text, atomic rewrite."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from cellscale import plots
from cellscale.report import (
    Gallery,
    Overlay,
    ReportInputs,
    StageRecord,
    write_report,
)

PLATES = ("P1", "P2")
WELLS = ("B02", "B03", "B04", "C02", "C03", "C04")
TIMES = (0.0, 86_400.0)
CELLS_PER_FIELD = 5
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NONE = "\N{EN DASH}"  # how the tables show a missing value
DANGER = "<script>alert('x')</script> stage failed"


def _conditions(well: str) -> tuple[str, float]:
    column = int(well[1:])
    return ("DMSO", np.nan) if column == 2 else ("drug", 1.0 if column == 3 else 10.0)


def _fields() -> pd.DataFrame:
    index = pd.MultiIndex.from_product(
        [PLATES, WELLS, (1, 2), TIMES],
        names=["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Timepoint"],
    )
    return index.to_frame(index=False)


def _cells(rng: np.random.Generator) -> pd.DataFrame:
    cells = _fields().loc[lambda f: f.index.repeat(CELLS_PER_FIELD)].reset_index(drop=True)
    n = len(cells)
    cells.insert(0, "cell_id", np.arange(n, dtype=np.int64))
    cells["Metadata_ObjectNumber"] = np.tile(np.arange(1, CELLS_PER_FIELD + 1), n // 5)
    treatment, concentration = zip(*map(_conditions, cells["Metadata_Well"]), strict=True)
    cells["Metadata_treatment"] = treatment
    cells["Metadata_concentration"] = concentration
    cells["Metadata_replicate"] = cells["Metadata_Plate"].map({"P1": 1, "P2": 2})
    area = rng.uniform(200, 400, n)
    cells["Cells_AreaShape_Area"] = area
    cells["Cells_AreaShape_Perimeter"] = 2 * np.sqrt(np.pi * area) * rng.uniform(1, 1.3, n)
    cells["Cells_AreaShape_FormFactor"] = rng.uniform(0.6, 1.0, n)
    cells["Cells_AreaShape_Eccentricity"] = rng.uniform(0.1, 0.9, n)
    cells["Cells_AreaShape_Solidity"] = rng.uniform(0.8, 1.0, n)
    return cells


def _labels() -> np.ndarray:
    labels = np.zeros((40, 60), np.uint32)
    labels[5:15, 5:20] = 1
    labels[20:35, 30:50] = 2
    return labels


def _inputs(**changes: object) -> ReportInputs:
    rng = np.random.default_rng(0)
    cells = _cells(rng)
    quality = _fields().assign(focus_score=rng.uniform(0.5, 1.5, len(_fields())))
    image = rng.normal(100, 10, (40, 60)) + 50 * (_labels() > 0)
    values: dict[str, object] = {
        "title": "Screen <A&B>",
        "cells": cells,
        "scores": rng.normal(size=(len(cells), 4)),
        "explained_variance_ratio": np.array([0.4, 0.2, 0.1, 0.05]),
        "field_quality": quality,
        "overlays": [
            Overlay("P1 · B03 field 1 · drug 1 µM", image, _labels()),
            Overlay("P2 · C04 field 2 · drug 10 µM", image.astype(np.uint16), _labels()),
        ],
        "galleries": [
            Gallery("DMSO 0 µM", rng.uniform(0, 1, (5, 16, 16))),
            Gallery("drug 10 µM", rng.integers(0, 4000, (9, 16, 16))),
        ],
        "stages": [
            StageRecord("segment", 2.0, 48, "ran"),
            StageRecord("measure", 0.0, 240, "skipped (unchanged)"),
        ],
        "problems": [DANGER],
        "notes": ["Embeddings: ResNet-18 with random weights & no download."],
    }
    values.update(changes)
    return ReportInputs(**values)  # type: ignore[arg-type]


class _Page(HTMLParser):
    """The images (src, alt) and tables (rows of cell texts) of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[tuple[str, str]] = []
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "img":
            self.images.append((found.get("src") or "", found.get("alt") or ""))
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def table(self, *headers: str) -> list[dict[str, str]]:
        """The rows, as header -> text, of the one table that has all ``headers``."""
        (table,) = [t for t in self.tables if set(headers) <= set(t[0])]
        return [dict(zip(table[0], row, strict=True)) for row in table[1:]]


def _pngs(folder: Path) -> set[str]:
    return {p.name for p in (folder / "figures").iterdir()}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    index = write_report(tmp_path_factory.mktemp("run") / "report", _inputs())
    return index, index.read_text(encoding="utf-8")


def test_every_image_is_a_png_beside_the_page(report: tuple[Path, str]) -> None:
    index, text = report
    page = _Page(text)
    sources = [src for src, _ in page.images]
    # 2 plates x (cells, focus) + 2 overlays + 2 galleries + 3 scatters + explained variance
    assert len(sources) == len(set(sources)) == 12
    assert all(alt.strip() for _, alt in page.images)
    assert {Path(src).name for src in sources} == _pngs(index.parent)
    for src in sources:
        assert src.startswith("figures/") and src.endswith(".png")
        path = index.parent / src
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        pixels = imread(path)
        assert pixels.ndim == 3 and pixels.shape[0] > 0 and pixels.shape[1] > 0
    assert "http" not in text  # nothing fetched from the network


def test_sections_in_order(report: tuple[Path, str]) -> None:
    _, text = report
    headings = ["Problems", "Plates", "Segmentation", "Crops", "PCA", "Wells", "Run"]
    positions = [text.index(f"<h2>{h}</h2>") for h in headings]
    assert positions == sorted(positions)
    assert "2 plates · 12 wells · 24 fields · 2 time points · 240 cells" in text


def test_data_text_is_escaped(report: tuple[Path, str]) -> None:
    _, text = report
    assert "<script>" not in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; stage failed" in text
    assert "<title>Screen &lt;A&amp;B&gt;</title>" in text
    assert "random weights &amp; no download" in text
    problems = text[text.index('<div class="problems">') :]
    assert problems.index("stage failed") < problems.index("</div>")


def test_plate_and_treatment_names_are_escaped(tmp_path: Path) -> None:
    inputs = _inputs()
    plate = {"P1": "<script>P1</script>", "P2": "P2"}
    cells = inputs.cells.assign(
        Metadata_Plate=inputs.cells["Metadata_Plate"].map(plate),
        Metadata_treatment=inputs.cells["Metadata_treatment"].replace("drug", "<script>drug"),
    )
    assert inputs.field_quality is not None
    quality = inputs.field_quality.assign(
        Metadata_Plate=inputs.field_quality["Metadata_Plate"].map(plate)
    )
    gallery = Gallery("<script>drug 10 µM", np.ones((2, 8, 8)))
    index = write_report(
        tmp_path / "report", _inputs(cells=cells, field_quality=quality, galleries=[gallery])
    )
    text = index.read_text(encoding="utf-8")
    assert "<script" not in text
    assert "&lt;script&gt;P1&lt;/script&gt;" in text
    page = _Page(text)  # unescaped again, the names read as they were written
    rows = page.table("plate", "well", "treatment")
    assert {r["plate"] for r in rows} == {"<script>P1</script>", "P2"}
    assert {r["treatment"] for r in rows} == {"DMSO", "<script>drug"}
    captions = [alt for _, alt in page.images]
    assert "cells per well (all 2 time points), plate <script>P1</script>" in captions
    assert "crop gallery: <script>drug 10 µM (2 crops)" in captions


def test_per_well_table_lists_every_well(report: tuple[Path, str]) -> None:
    _, text = report
    rows = _Page(text).table("plate", "well", "time (h)", "cells")
    listed = {(r["plate"], r["well"], r["time (h)"]) for r in rows}
    assert listed == {(p, w, t) for p in PLATES for w in WELLS for t in ("0", "24")}
    assert {r["cells"] for r in rows} == {str(2 * CELLS_PER_FIELD)}
    assert {(r["well"], r["treatment"], r["concentration (µM)"]) for r in rows} >= {
        ("B02", "DMSO", NONE),
        ("C04", "drug", "10"),
    }


def test_per_condition_table_means_over_wells(report: tuple[Path, str]) -> None:
    _, text = report
    rows = _Page(text).table("treatment", "wells", "cells per well")
    conditions = {(r["treatment"], r["concentration (µM)"], r["time (h)"]) for r in rows}
    assert conditions == {
        (t, c, h) for t, c in (("DMSO", NONE), ("drug", "1"), ("drug", "10")) for h in ("0", "24")
    }
    assert all(r["wells"] == "4" and r["cells per well"] == "10" for r in rows)


def test_stage_table(report: tuple[Path, str]) -> None:
    _, text = report
    rows = _Page(text).table("stage", "units/s", "status")
    assert [(r["stage"], r["units/s"], r["status"]) for r in rows] == [
        ("segment", "24", "ran"),
        ("measure", NONE, "skipped (unchanged)"),
    ]


def test_overlay_outlines_and_gallery_grid(report: tuple[Path, str]) -> None:
    index, _ = report
    figures = index.parent / "figures"
    (overlay,) = figures.glob("overlay-01-*.png")
    rgb = imread(overlay)[..., :3]
    assert rgb.shape[:2] == (40, 60)
    coloured = np.ptp(rgb, axis=2) > 0.1
    # the inner outlines of a 10x15 and a 15x20 box: 46 + 66 pixels, nothing else
    assert coloured.sum() == 46 + 66
    assert coloured[5, 5:20].all() and not coloured[10, 10]
    (gallery,) = figures.glob("crops-01-*.png")
    # 5 crops of 16 px enlarged 4x to 64, 3 columns x 2 rows, 2 px gaps
    assert imread(gallery).shape[:2] == (2 * 66 + 2, 3 * 66 + 2)


def test_empty_cell_table_still_writes(tmp_path: Path) -> None:
    inputs = _inputs()
    empty = _inputs(cells=inputs.cells.iloc[:0], scores=np.empty((0, 4)), problems=())
    index = write_report(tmp_path / "report", empty)
    text = index.read_text(encoding="utf-8")
    assert "No cells were found" in text
    assert "240 cells" not in text and "· 0 cells" in text
    assert '<div class="problems none"><h2>Problems</h2><p>none</p></div>' in text
    names = _pngs(index.parent)
    assert not any(n.startswith("pca-") for n in names)
    assert "explained-variance.png" in names
    assert sum(n.startswith("cells-per-well-") for n in names) == 2  # zeros from the field table
    assert len(_Page(text).table("stage", "status")) == 2
    assert "No cells: the per-well and per-condition tables are skipped." in text


def test_missing_concentration_drops_only_its_figure(tmp_path: Path) -> None:
    inputs = _inputs()
    cells = inputs.cells.drop(columns="Metadata_concentration")
    index = write_report(tmp_path / "report", _inputs(cells=cells, field_quality=None))
    text = index.read_text(encoding="utf-8")
    names = _pngs(index.parent)
    pca = sorted(n for n in names if n.startswith("pca-"))
    assert pca == ["pca-01-treatment.png", "pca-02-Timepoint.png"]
    assert "No Metadata_concentration column: the PCA scatter by concentration" in text
    assert "No field quality table: the focus maps are skipped." in text
    assert not any(n.startswith("focus-") for n in names)
    page = _Page(text)
    rows = page.table("plate", "well", "cells")
    assert len(rows) == len(PLATES) * len(WELLS) * len(TIMES)
    assert "concentration (µM)" not in rows[0]
    assert len(page.images) == len(names) == 2 + 2 + 2 + 2 + 1


def test_rerun_replaces_the_report(tmp_path: Path) -> None:
    cells = _inputs().cells.iloc[:0]
    small = _inputs(cells=cells, scores=np.empty((0, 4)), field_quality=None, overlays=())
    folder = tmp_path / "report"
    write_report(folder, small)
    (folder / "stray.txt").write_text("old")
    (folder / "figures" / "old.png").write_bytes(PNG_SIGNATURE)
    index = write_report(folder, _inputs(cells=small.cells, scores=small.scores, title="second"))
    assert not (folder / "stray.txt").exists()
    assert "old.png" not in _pngs(folder)
    assert "<h1>second</h1>" in index.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_failed_write_keeps_the_old_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "report"
    empty = _inputs(cells=_inputs().cells.iloc[:0], scores=np.empty((0, 4)), title="first")
    write_report(folder, empty)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(plots, "pca_scatter", broken)
    with pytest.raises(RuntimeError, match="drawing failed"):
        write_report(folder, _inputs(title="second"))
    assert "<h1>first</h1>" in (folder / "index.html").read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_scores_must_align_with_cells() -> None:
    with pytest.raises(ValueError, match="one row per cell"):
        _inputs(scores=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="same shape"):
        Overlay("bad", np.zeros((4, 4)), np.zeros((4, 5), np.uint32))


_CHECK_PAGE = """<!doctype html><html><body><iframe id="report" src="index.html"></iframe>
<script>
document.getElementById("report").addEventListener("load", () => {
  const doc = document.getElementById("report").contentDocument;
  const loaded = i => new Promise(r => { i.onload = i.onerror = r; });
  const wait = [...doc.images].map(i => (i.complete ? null : loaded(i)));
  Promise.all(wait).then(() => {
    const seen = [...doc.images].map(i => [i.getAttribute("src"), i.naturalWidth]);
    const out = document.createElement("pre");
    out.id = "result";
    out.textContent = JSON.stringify({title: doc.title, images: seen});
    document.body.appendChild(out);
  });
});
</script></body></html>"""


def _chromium() -> str | None:
    import shutil

    names = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
    return next((path for name in names if (path := shutil.which(name))), None)


def test_the_report_opens_in_a_browser_with_every_figure(report: tuple[Path, str]) -> None:
    import json
    import re
    import subprocess

    browser = _chromium()
    if browser is None:
        pytest.skip("no headless Chromium installed")
    index, text = report
    check = index.parent / "browser-check.html"
    check.write_text(_CHECK_PAGE)
    try:
        dom = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--allow-file-access-from-files",
                "--virtual-time-budget=10000",
                "--dump-dom",
                check.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    finally:
        check.unlink()
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    import html

    result = json.loads(html.unescape(found.group(1)))
    sources = [src for src, _ in _Page(text).images]
    assert [src for src, _ in result["images"]] == sources
    assert all(width > 0 for _, width in result["images"]), result["images"]
    assert result["title"]
