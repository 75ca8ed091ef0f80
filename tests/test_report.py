"""The run report: one self-contained page whose figures exist, escaped text, atomic rewrite."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
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
    TrainingResults,
    write_report,
)
from cellscale.report._images import overlay_figure, overlay_figures
from cellscale.report._tables import FIELD_KEYS
from cellscale.report._wells import well_figures

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


def _nuclei() -> np.ndarray:
    nuclei = np.zeros((40, 60), np.uint32)
    nuclei[8:12, 10:15] = 1
    return nuclei


def _wells_table(rng: np.random.Generator) -> pd.DataFrame:
    """The fixture's wells with two features that follow the concentration, and noise."""
    wells = _fields()[["Metadata_Plate", "Metadata_Well"]].drop_duplicates(ignore_index=True)
    treatment, concentration = zip(*map(_conditions, wells["Metadata_Well"]), strict=True)
    wells["Metadata_treatment"] = treatment
    wells["Metadata_concentration"] = concentration
    dose = np.log10(wells["Metadata_concentration"].fillna(0.1).to_numpy())
    wells["Cells_AreaShape_Area"] = 300 + 50 * dose + rng.normal(0, 2, len(wells))
    wells["Cells_AreaShape_FormFactor"] = 0.8 - 0.1 * dose + rng.normal(0, 0.01, len(wells))
    for k in range(4):
        wells[f"Embedding_{k}"] = rng.normal(size=len(wells))
    return wells


def _inputs(**changes: object) -> ReportInputs:
    rng = np.random.default_rng(0)
    cells = _cells(rng)
    quality = _fields().assign(focus_laplacian_norm=rng.uniform(0.5, 1.5, len(_fields())))
    image = rng.normal(100, 10, (40, 60)) + 50 * (_labels() > 0)
    values: dict[str, object] = {
        "title": "Screen <A&B>",
        "cells": cells,
        "scores": rng.normal(size=(len(cells), 4)),
        "explained_variance_ratio": np.array([0.4, 0.2, 0.1, 0.05]),
        "field_quality": quality,
        "overlays": [
            Overlay("P1 · B03 field 1 · drug 1 µM", image, {"cells": _labels()}, "DNA"),
            Overlay(
                "P2 · C04 field 2 · drug 10 µM",
                image.astype(np.uint16),
                {"cells": _labels(), "nuclei": _nuclei()},
                "DNA",
                pixel_size_um=0.65,
            ),
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
        "wells": _wells_table(rng),
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
    # 2 plates x focus + 2 overlays + 2 galleries + 3 scatters + explained variance
    # + 3 well figures; the cells-per-well maps are constant, a sentence instead
    assert len(sources) == len(set(sources)) == 13
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
    headings = [
        "Problems", "Plates", "Segmentation", "Crops", "PCA", "Well profiles", "Wells", "Run"
    ]  # fmt: skip
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
    assert (
        "mean focus (variance of the Laplacian / signal²) per well, plate <script>P1</script>"
        in captions
    )
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


def test_overlay_outlines_each_compartment_in_its_colour_with_legend_and_scale_bar() -> None:
    image = np.random.default_rng(0).normal(100, 10, (40, 60))
    one = overlay_figure(Overlay("P1 · B03", image, {"cells": _labels()}, "DNA"))
    ax = one.axes[0]
    rgb = ax.images[0].get_array()
    coloured = np.ptp(rgb, axis=2) > 0.1
    # the inner outlines of a 10x15 and a 15x20 box: 46 + 66 pixels, nothing else
    assert coloured.sum() == 46 + 66
    assert coloured[5, 5:20].all() and not coloured[10, 10]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cells"]
    assert ax.get_title() == "P1 · B03\nchannel DNA"
    assert [t.get_text() for t in ax.texts] == ["10 px"]  # a fifth of 60 px, rounded down
    two = overlay_figure(
        Overlay("P2", image, {"cells": _labels(), "nuclei": _nuclei()}, "DNA", pixel_size_um=0.65)
    )
    ax = two.axes[0]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["cells", "nuclei"]
    colours = [tuple(p.get_facecolor()[:3]) for p in legend.get_patches()]
    rgb = ax.images[0].get_array()
    assert tuple(rgb[8, 12]) == pytest.approx(colours[1])  # a nucleus outline pixel
    assert tuple(rgb[5, 5]) == pytest.approx(colours[0])  # a cell outline pixel
    assert [t.get_text() for t in ax.texts] == ["5 µm"]  # 60 px x 0.65 µm / 5 = 7.8 µm
    (bar,) = ax.patches
    assert bar.get_width() == pytest.approx(5 / 0.65)


def test_gallery_grid(report: tuple[Path, str]) -> None:
    index, _ = report
    (gallery,) = (index.parent / "figures").glob("crops-01-*.png")
    # 5 crops of 16 px enlarged 4x to 64, 3 columns x 2 rows, 2 px gaps
    assert imread(gallery).shape[:2] == (2 * 66 + 2, 3 * 66 + 2)


def test_a_run_without_training_has_no_training_section(report: tuple[Path, str]) -> None:
    assert "<h2>Training</h2>" not in report[1]


def test_the_trained_network_is_shown_on_each_part_it_held_out(tmp_path: Path) -> None:
    metrics = pd.DataFrame(
        {
            "split": ["test", "held-out"],
            "n": [120, 80],
            "n_wells": [4, 6],
            "accuracy": [0.9, 0.7],
            "balanced_accuracy": [0.85, 0.65],
            "chance": [0.5, 0.5],
            "well_accuracy": [1.0, 0.5],
            "batch_from_features": [0.6, float("nan")],
        }
    )
    confusion = pd.DataFrame(
        {
            "split": ["test"] * 4 + ["held-out"] * 4,
            "label": ["a", "a", "b", "b"] * 2,
            "predicted": ["a", "b", "a", "b"] * 2,
            "count": [50, 10, 2, 58, 30, 10, 14, 26],
        }
    )
    per_batch = pd.DataFrame(
        {
            "split": ["test", "test", "held-out"],
            "domain": ["b1", "b2", "b3"],
            "n": [60, 60, 80],
            "accuracy": [0.9, 0.9, 0.7],
            "balanced_accuracy": [0.85, 0.85, 0.65],
            "chance": [0.5, 0.5, 0.5],
        }
    )
    training = TrainingResults("Metadata_control", metrics, per_batch, confusion)
    index = write_report(tmp_path / "report", _inputs(training=training))
    text = index.read_text(encoding="utf-8")
    assert text.index("<h2>PCA</h2>") < text.index("<h2>Training</h2>")
    rows = _Page(text).table("evaluated on", "balanced accuracy")
    assert [r["evaluated on"] for r in rows] == ["test", "held-out"]
    assert rows[1]["batch from features"] == "\N{EN DASH}"  # not measured: a dash, not a number
    names = _pngs(index.parent)
    assert {n for n in names if n.startswith(("confusion-", "per-batch-"))} == {
        "confusion-01-test.png",
        "confusion-02-held-out.png",
        "per-batch-01-accuracy.png",
    }


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
    assert not any(n.startswith("cells-per-well-") for n in names)  # zeros everywhere
    assert "Plate P1: cells per well is 0 in every well (no map drawn)." in text
    assert len(_Page(text).table("stage", "status")) == 2
    assert "No cells: the per-well and per-condition tables are skipped." in text


def test_missing_concentration_drops_only_its_figure(tmp_path: Path) -> None:
    inputs = _inputs()
    cells = inputs.cells.drop(columns="Metadata_concentration")
    assert inputs.wells is not None
    wells = inputs.wells.drop(columns="Metadata_concentration")
    changes = {"cells": cells, "field_quality": None, "wells": wells}
    index = write_report(tmp_path / "report", _inputs(**changes))
    text = index.read_text(encoding="utf-8")
    names = _pngs(index.parent)
    assert {"well-pca.png", "replicate-correlation.png"} <= names
    assert "dose-response.png" not in names
    assert "No Metadata_concentration column: the well PCA is not sized by concentration." in text
    assert "has no Metadata_concentration column." in text  # the dose-response curves
    assert "correlation of replicate wells (same treatment)" in text
    pca = sorted(n for n in names if n.startswith("pca-"))
    assert pca == ["pca-01-treatment.png", "pca-02-Timepoint.png"]
    assert "No Metadata_concentration column: the PCA scatter by concentration" in text
    assert "No field quality table: the focus maps are skipped." in text
    assert not any(n.startswith("focus-") for n in names)
    page = _Page(text)
    rows = page.table("plate", "well", "cells")
    assert len(rows) == len(PLATES) * len(WELLS) * len(TIMES)
    assert "concentration (µM)" not in rows[0]
    # overlays, galleries, 2 scatters, explained variance, well PCA, replicate correlation
    assert len(page.images) == len(names) == 2 + 2 + 2 + 1 + 2


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
        Overlay("bad", np.zeros((4, 4)), {"nuclei": np.zeros((4, 5), np.uint32)}, "DNA")
    with pytest.raises(ValueError, match="no compartment to outline"):
        Overlay("bad", np.zeros((4, 4)), {}, "DNA")


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


def _qc(rng: np.random.Generator) -> pd.DataFrame:
    """A QC table of the fixture's fields (DNA, first time point); one field is not finite."""
    qc = _fields().rename(columns={"Metadata_Well": "well", "Metadata_Site": "field"})
    qc = qc.rename(columns={"Metadata_Timepoint": "t"}).assign(channel="DNA")
    qc["focus_laplacian_norm"] = rng.uniform(0.5, 1.5, len(qc))
    qc["signal_to_background"] = rng.uniform(2, 4, len(qc))
    for flag in ("blurry", "saturated", "empty", "dim", "nonfinite"):
        qc[flag] = False
    qc.loc[(qc["Metadata_Plate"] == "P2") & (qc["well"] == "B03"), "nonfinite"] = True
    qc["flagged"] = qc["nonfinite"]
    return qc


def test_one_time_point_shows_no_time(tmp_path: Path) -> None:
    inputs = _inputs()
    once = inputs.cells["Metadata_Timepoint"] == 0
    cells = inputs.cells[once].reset_index(drop=True)
    assert inputs.field_quality is not None
    quality = inputs.field_quality[inputs.field_quality["Metadata_Timepoint"] == 0]
    index = write_report(
        tmp_path / "report",
        _inputs(cells=cells, scores=inputs.scores[once.to_numpy()], field_quality=quality),
    )
    text = index.read_text(encoding="utf-8")
    names = _pngs(index.parent)
    assert sorted(n for n in names if n.startswith("pca-")) == [
        "pca-01-treatment.png",
        "pca-02-concentration.png",
    ]
    assert "time (h)" not in text and "time point" in text  # only "1 time point" in the summary
    headers = {h for table in _Page(text).tables for h in table[0]}
    assert {"plate", "well", "cells"} <= headers and not any("time" in h for h in headers)


def test_constant_values_are_a_sentence_not_a_figure(tmp_path: Path) -> None:
    inputs = _inputs()
    cells = inputs.cells.assign(Metadata_treatment="DMSO")
    index = write_report(
        tmp_path / "report", _inputs(cells=cells, qc=_qc(np.random.default_rng(1)))
    )
    text = index.read_text(encoding="utf-8")
    names = _pngs(index.parent)
    assert "The treatment is DMSO in every cell (no PCA scatter by it)." in text
    assert not any(n.startswith(("pca-01", "cells-per-well-")) for n in names)
    assert "Plate P1: cells per well (all 2 time points) is 20 in every well" in text
    # P1 has no flagged field: no map of zeros; P2 has one
    assert "Plate P1 · DNA: fraction of fields flagged is 0 in every well (no map drawn)." in text
    assert sorted(n for n in names if n.startswith("qc-flagged")) == ["qc-flagged-02-P2.png"]


def test_one_focus_measure_under_one_name(tmp_path: Path, report: tuple[Path, str]) -> None:
    index = write_report(tmp_path / "report", _inputs(qc=_qc(np.random.default_rng(1))))
    text = index.read_text(encoding="utf-8")
    name = "focus (variance of the Laplacian / signal²)"
    assert "focus score" not in text
    assert f"The {name} per well is in Image quality." in text
    names = _pngs(index.parent)
    assert not any(n.startswith("focus-") for n in names)  # drawn once, as a QC map
    assert {"qc-focus_laplacian_norm-01-P1.png", "qc-focus_laplacian_norm-02-P2.png"} <= names
    _, no_qc = report
    assert f"Plate P1: mean {name} per well" in no_qc and "focus score" not in no_qc


def test_flag_counts_list_every_qc_flag(tmp_path: Path) -> None:
    index = write_report(tmp_path / "report", _inputs(qc=_qc(np.random.default_rng(1))))
    rows = _Page(index.read_text(encoding="utf-8")).table("plate", "images", "nonfinite")
    counts = {r["plate"]: (r["images"], r["nonfinite"], r["blurry"]) for r in rows}
    assert counts == {"P1": ("24", "0", "0"), "P2": ("24", "4", "0")}


def test_segmentation_problems_show_their_overlays_with_the_problems(tmp_path: Path) -> None:
    image = np.random.default_rng(0).normal(100, 10, (40, 60))
    problem = Overlay(
        "P2 · C03 field 1 · too few objects: 2 objects", image, {"cells": _labels()}, "DNA"
    )
    index = write_report(tmp_path / "report", _inputs(problems=(), segmentation_problems=[problem]))
    text = index.read_text(encoding="utf-8")
    problems = text[text.index('<div class="problems">') : text.index("<h2>Plates</h2>")]
    assert "1 well(s) whose segmentation looks wrong" in problems
    assert 'src="figures/segmentation-problem-01-P2-C03-field-1-too-few-objects-2-o' in problems


def test_well_figures_drawn_from_the_wells_table(report: tuple[Path, str]) -> None:
    index, text = report
    assert {"well-pca.png", "dose-response.png", "replicate-correlation.png"} <= _pngs(index.parent)
    section = text[text.index("<h2>Well profiles</h2>") : text.index("<h2>Wells</h2>")]
    assert "skipped" not in section


def test_well_figures_say_why_they_are_missing(tmp_path: Path) -> None:
    inputs = _inputs()
    assert inputs.wells is not None
    one_dose = inputs.wells.assign(Metadata_concentration=1.0)
    index = write_report(tmp_path / "report", _inputs(wells=one_dose))
    text = index.read_text(encoding="utf-8")
    names = _pngs(index.parent)
    assert "dose-response.png" not in names and "well-pca.png" in names
    assert (
        "The concentration is 1 in every well (the well PCA is not sized by concentration)" in text
    )
    assert "no Metadata_treatment has wells at two or more positive" in text
    empty = well_figures(None, tmp_path)
    assert empty.skipped == ("No per-well profiles: the well figures are skipped.",)


def _plate(name: str, pixel_size: list[float] | None) -> object:
    import dask.array as da

    from cellscale.plate import build_plate

    data = np.random.default_rng(0).integers(0, 1000, (1, 3, 1, 1, 1, 40, 60), dtype=np.uint16)
    plate_map = pd.DataFrame({"treatment": ["DMSO", "drug", "drug"]}, index=["B02", "B03", "B04"])
    return build_plate(
        da.from_array(data),
        name=name,
        wells=["B02", "B03", "B04"],
        fields=[1],
        channels=["DNA"],
        plate_map=plate_map,
        pixel_size_um=pixel_size,
    )


def _labels_of(plate: object) -> object:
    import xarray as xr

    dims = ("t", "well", "field", "y", "x")
    coords = {d: plate.coords[d].values for d in dims[:3]}  # type: ignore[attr-defined]
    stack = np.broadcast_to(_labels(), (1, 3, 1, 40, 60))
    nuclei = np.broadcast_to(_nuclei(), (1, 3, 1, 40, 60))
    return xr.Dataset(
        {"cells": (dims, stack), "nuclei": (dims, nuclei)},
        coords=coords,
        attrs={"compartments": ["cells", "nuclei"]},
    )


def _state(**more: object) -> object:
    from types import SimpleNamespace

    config = SimpleNamespace(
        report=SimpleNamespace(overlays_per_condition=1), segment=SimpleNamespace(channel="DNA")
    )
    return SimpleNamespace(config=config, **{"segmentation_flags": [], **more})


def test_the_run_takes_overlays_from_every_plate(monkeypatch: pytest.MonkeyPatch) -> None:
    from cellscale.pipeline import _report_stage

    monkeypatch.setattr(_report_stage, "_labels", lambda state, plate: _labels_of(plate))
    plates = [_plate("P1", None), _plate("P2", [0.5, 0.65])]
    lazy = _report_stage._overlays(_state(), plates)  # type: ignore[arg-type]
    assert isinstance(lazy, Iterator)  # each field read as the report draws it
    overlays = list(lazy)
    # one field per treatment of each plate
    assert [o.title for o in overlays] == [
        "P1 · B02 field 1 · DMSO",
        "P1 · B03 field 1 · drug",
        "P2 · B02 field 1 · DMSO",
        "P2 · B03 field 1 · drug",
    ]
    assert all(list(o.outlines) == ["cells", "nuclei"] and o.channel == "DNA" for o in overlays)
    assert [o.pixel_size_um for o in overlays] == [None, None, 0.65, 0.65]
    assert list(_report_stage._segmentation_problems(_state(), plates)) == []  # type: ignore[arg-type]


def test_overlays_are_read_and_drawn_one_at_a_time(tmp_path: Path) -> None:
    image = np.random.default_rng(0).normal(100, 10, (40, 60))
    made: list[weakref.ref[Overlay]] = []
    most = 0

    def fields() -> Iterator[Overlay]:
        nonlocal most
        for i in range(6):
            overlay = Overlay(f"P1 · B0{i}", image.copy(), {"cells": _labels()}, "DNA")
            made.append(weakref.ref(overlay))
            most = max(most, sum(ref() is not None for ref in made))
            yield overlay
            del overlay

    panel = overlay_figures(fields(), tmp_path)
    assert len(panel.tiles) == 6 and not panel.skipped
    assert all((tmp_path / tile.name).is_file() for tile in panel.tiles)
    assert most <= 2  # the one being drawn and the next: none is kept
    assert overlay_figures(iter(()), tmp_path).skipped == ("No segmentation overlays were made.",)


def test_the_run_shows_the_wells_whose_segmentation_was_flagged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cellscale.pipeline import _report_stage
    from cellscale.segmentation import SegmentationFlag

    monkeypatch.setattr(_report_stage, "_labels", lambda state, plate: _labels_of(plate))
    why = "2 objects, a quarter of the plate's typical 40"
    flag = SegmentationFlag("P2", "B04", why, objects=2, median_area=40.0, expected_area=300.0)
    state = _state(segmentation_flags=[flag])
    plates = [_plate("P1", None), _plate("P2", None)]
    (overlay,) = _report_stage._segmentation_problems(state, plates)  # type: ignore[arg-type]
    assert overlay.title == f"P2 · B04 field 1 · {why}"
    np.testing.assert_array_equal(overlay.outlines["nuclei"], _nuclei())


def test_field_quality_without_qc_is_the_qc_focus_measure(tmp_path: Path) -> None:
    import cellscale
    from cellscale.pipeline import _field_stats
    from cellscale.pipeline._focus import FOCUS_COLUMN, field_quality

    store = tmp_path / "plates" / "P1" / "projected.zarr"
    cellscale.write_plate(_plate("P1", None), store, records=_field_stats.recorder, progress=False)
    plate = cellscale.open_plate(store)
    state = _state(client=None, plate_dir=lambda name: tmp_path / "plates" / name)
    state.config.qc = type("QC", (), {"enabled": False})()  # type: ignore[attr-defined]
    table = field_quality(state, plate)  # type: ignore[arg-type]
    expected = cellscale.qc(plate, channels=["DNA"], progress=False)  # type: ignore[arg-type]
    assert (
        list(table.columns) == [*FIELD_KEYS, FOCUS_COLUMN]
        and FOCUS_COLUMN == "focus_laplacian_norm"
    )
    np.testing.assert_allclose(table[FOCUS_COLUMN], expected["focus_laplacian_norm"])
