"""The interactive page: self-contained, escaped, and in a browser a point opens its cell's crop."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cellscale.report._interactive import (
    CROPS,
    TILES_PER_SIDE,
    _color_setting,
    _encode,
    write_interactive_page,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DANGER = "<img src=x onerror=\"document.title='pwned'\">"
N_CELLS = 300
CROP = 12


def _cells(n: int = N_CELLS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "cell_id": np.arange(10_000, 10_000 + n, dtype=np.int64),
            "UMAP1": rng.normal(size=n),
            "UMAP2": rng.normal(size=n),
            "Metadata_Plate": "P1",
            "Metadata_Well": rng.choice(["B02", "B03"], n),
            "Metadata_Treatment": rng.choice(["DMSO", "drug", DANGER], n),
            "Metadata_Concentration": rng.choice([0.1, 1.0, 10.0], n),
            "outlier_score": rng.random(n),
        }
    )


def _wells() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Metadata_Plate": ["P1", "P1"],
            "Metadata_Well": ["B02", "B03"],
            "Metadata_Treatment": ["DMSO", "drug"],
            "UMAP1": [0.0, 1.0],
            "UMAP2": [1.0, 0.0],
        }
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, np.ndarray]:
    """A page of 300 cells with one-channel random crops and two wells with montages."""
    cells = _cells()
    crops = np.random.default_rng(1).random((N_CELLS, CROP, CROP)).astype(np.float32)
    montages = np.random.default_rng(2).random((2, 3, 40, 40))
    index = write_interactive_page(
        tmp_path_factory.mktemp("interactive") / "explore",
        cells,
        crops=crops,
        wells=_wells(),
        well_images=montages,
        columns=[*(c for c in cells.columns if c.startswith("Metadata_")), "outlier_score"],
        title="<script>alert('x')</script> screen",
    )
    return index, cells, crops


def _markup(text: str) -> str:
    """The page without the contents of its ``<script>`` and ``<style>`` elements."""
    return re.sub(r"<(script|style)\b[^>]*>.*?</\1>", "", text, flags=re.S | re.I)


def test_the_page_is_one_file_and_its_sprite_sheets(
    page: tuple[Path, pd.DataFrame, np.ndarray],
) -> None:
    index, _, _ = page
    text = index.read_text(encoding="utf-8")
    markup = _markup(text)
    assert "http" not in markup
    assert not re.search(r"<script[^>]*\bsrc=|<link\b", text, re.I)
    assert "cdn.bokeh.org" not in text
    sheets = sorted(p.name for p in (index.parent / CROPS).iterdir())
    cell_sheets = -(-N_CELLS // TILES_PER_SIDE**2)
    assert sheets == [f"cells-{i:04d}.png" for i in range(cell_sheets)] + ["wells-0000.png"]
    for name in sheets:
        assert (index.parent / CROPS / name).read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(p.name for p in index.parent.iterdir()) == [CROPS, "index.html"]


def test_every_name_is_text_never_markup(page: tuple[Path, pd.DataFrame, np.ndarray]) -> None:
    text = page[0].read_text(encoding="utf-8")
    assert "<script>alert" not in text and "<img src=x" not in text
    assert "<h1>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; screen</h1>" in text


def test_a_sheet_tile_is_its_cells_crop(page: tuple[Path, pd.DataFrame, np.ndarray]) -> None:
    index, _, crops = page
    sheet = np.asarray(Image.open(index.parent / CROPS / "cells-0001.png"))
    row, column = divmod(N_CELLS - TILES_PER_SIDE**2 - 1, TILES_PER_SIDE)  # the last cell
    tile = sheet[row * CROP : (row + 1) * CROP, column * CROP : (column + 1) * CROP, 0]
    assert sheet.shape == (3 * CROP, TILES_PER_SIDE * CROP, 3)  # its last 44 tiles
    assert np.corrcoef(tile.ravel(), crops[-1].ravel())[0, 1] > 0.98
    assert np.corrcoef(tile.ravel(), crops[-2].ravel())[0, 1] < 0.5


def test_more_cells_than_max_points_are_a_seeded_sample(tmp_path: Path) -> None:
    cells = _cells(500)
    crops = np.zeros((500, 2, 8, 8))
    index = write_interactive_page(tmp_path / "p", cells, crops=crops, max_points=100, seed=3)
    assert "100 of 500 cells (a seeded sample)" in index.read_text(encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "p" / CROPS).iterdir()) == ["cells-0000.png"]
    assert Image.open(tmp_path / "p" / CROPS / "cells-0000.png").size == (10 * 8, 10 * 8)


def test_a_rewrite_leaves_no_sheet_of_the_earlier_page(tmp_path: Path) -> None:
    write_interactive_page(tmp_path / "p", _cells(600), crops=np.ones((600, 4, 4)))
    assert len(list((tmp_path / "p" / CROPS).iterdir())) == 3
    write_interactive_page(tmp_path / "p", _cells(10), crops=np.ones((10, 4, 4)))
    assert [p.name for p in (tmp_path / "p" / CROPS).iterdir()] == ["cells-0000.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["p"]


def test_a_missing_column_is_named_with_the_nearest(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match=r"'UMAP_1' is not in the cell table; did you mean 'UMAP1'"):
        write_interactive_page(tmp_path / "p", _cells(), x="UMAP_1")
    with pytest.raises(KeyError, match=r"'Metadata_Treatmnt' .* did you mean 'Metadata_Treatment'"):
        write_interactive_page(tmp_path / "p", _cells(), color_by="Metadata_Treatmnt")
    assert not (tmp_path / "p").exists()


def test_crops_must_match_the_rows(tmp_path: Path) -> None:
    message = r"crops has shape \(299, 8, 8\) but the cell table has 300 rows"
    with pytest.raises(ValueError, match=message):
        write_interactive_page(tmp_path / "p", _cells(), crops=np.zeros((299, 8, 8)))
    with pytest.raises(ValueError, match="well_images were given without wells"):
        write_interactive_page(tmp_path / "p", _cells(), well_images=np.zeros((2, 8, 8)))


def test_columns_are_levels_or_numbers() -> None:
    few = _encode("Metadata_Concentration", "c0", pd.Series([10.0, 0.1, np.nan, 1.0]))
    assert few.levels == ("0.1", "1", "10")
    np.testing.assert_array_equal(few.values, [2, 0, np.nan, 1])
    many = _encode("score", "c1", pd.Series(np.arange(20) / 3))
    assert many.levels is None and many.varies
    assert not _encode("Metadata_Plate", "c2", pd.Series(["P1"] * 4)).varies
    wells = _color_setting(_encode("Metadata_Well", "c3", pd.Series([f"W{i}" for i in range(300)])))
    assert len(wells["palette"]) == 300 and len(wells["ticks"]) <= 20


#: Moves the mouse onto cell ``POSITION`` of the cells' plot, as a user's pointer would.
_HOVER = """
  const win = frame.contentWindow, models = [...win.Bokeh.documents[0].all_models];
  const figure = models.find((m) => m.constructor.__name__ === "Figure");
  const plot = win.Bokeh.index.get_one(figure), cells = figure.renderers[0].data_source;
  const target = plot.canvas_view.events_el, box = target.getBoundingClientRect();
  const x = box.left + plot.frame.x_scale.compute(cells.data.x[POSITION]);
  const y = box.top + plot.frame.y_scale.compute(cells.data.y[POSITION]);
  for (const type of ["pointerenter", "pointerover", "pointermove"]) {
    const options = {clientX: x, clientY: y, bubbles: true, composed: true, isPrimary: true,
      pointerType: "mouse"};
    target.dispatchEvent(new PointerEvent(type, options));
  }
"""

_CHECK_PAGE = """<!doctype html><html><body><iframe id="page" src="index.html#HASH"
 width="1400" height="1000"></iframe>
<script>
const frame = document.getElementById("page");
const until = (test) => new Promise((done) => {
  const poll = () => (test() ? done() : setTimeout(poll, 50));
  poll();
});
frame.addEventListener("load", async () => {
  const doc = frame.contentDocument;
  await until(() => doc.documentElement.dataset.ready === "1");
  try {
    ACTION
  } catch (error) {
    document.body.append(Object.assign(document.createElement("pre"), {id: "result",
      textContent: JSON.stringify({error: String(error)})}));
    return;
  }
  const img = () => doc.querySelector("#point img");
  await until(() => img() && img().dataset.loaded);
  const out = document.createElement("pre");
  out.id = "result";
  out.textContent = JSON.stringify({
    root: {...doc.documentElement.dataset},
    title: doc.title,
    shown: doc.getElementById("point").dataset.shown,
    point: doc.getElementById("point").textContent,
    selected: doc.getElementById("selection").dataset.count,
    listed: doc.getElementById("selection").textContent,
    img: {src: img().getAttribute("src"), tile: img().dataset.tile, loaded: img().dataset.loaded,
          width: img().naturalWidth},
    images: doc.images.length,
    resources: frame.contentWindow.performance.getEntriesByType("resource").map((e) => e.name),
    address: frame.contentWindow.location.hash,
  });
  document.body.appendChild(out);
});
</script></body></html>"""


def _chromium() -> str | None:
    names = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
    return next((path for name in names if (path := shutil.which(name))), None)


def _open(index: Path, hash_: str, action: str = "") -> dict:
    """Open ``index.html#hash_`` in headless Chromium (no network), run ``action`` once it
    is ready and read what it shows."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no headless Chromium installed")
    check = index.parent / "browser-check.html"
    check.write_text(_CHECK_PAGE.replace("HASH", hash_).replace("ACTION", action))
    try:
        dom = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--allow-file-access-from-files",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--virtual-time-budget=15000",
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
    return json.loads(html.unescape(found.group(1)))


def test_in_a_browser_the_points_exist_and_a_selected_cell_shows_its_crop(
    page: tuple[Path, pd.DataFrame, np.ndarray],
) -> None:
    index, cells, _ = page
    position = int(np.flatnonzero(cells["Metadata_Treatment"] == DANGER)[-1])
    cell_id = int(cells["cell_id"].iloc[position])
    result = _open(index, f"cell={cell_id}&colour=outlier_score")
    assert result["root"]["cells"] == str(N_CELLS) and result["root"]["wells"] == "2"
    assert result["root"]["colour"] == "outlier_score"
    assert result["shown"] == f"cells:{cell_id}"
    sheet, tile = divmod(position, TILES_PER_SIDE**2)
    assert result["img"]["src"] == f"{CROPS}/cells-{sheet:04d}.png"
    assert result["img"]["tile"] == str(tile)
    assert int(result["img"]["loaded"]) == result["img"]["width"] > 0
    assert (index.parent / result["img"]["src"]).read_bytes()[:8] == PNG_SIGNATURE
    assert DANGER in result["point"] and DANGER in result["listed"]  # as text
    assert result["images"] == 1 and result["title"] != "pwned"
    assert result["selected"] == "1"
    assert f"cell={cell_id}" in result["address"]
    assert all(url.startswith("file:") for url in result["resources"]), result["resources"]


def test_in_a_browser_a_well_shows_its_montage(page: tuple[Path, pd.DataFrame, np.ndarray]) -> None:
    result = _open(page[0], "well=P1%2FB03")
    assert result["shown"] == "wells:P1/B03"
    assert result["img"]["src"] == f"{CROPS}/wells-0000.png" and result["img"]["tile"] == "1"
    assert int(result["img"]["loaded"]) > 0


def test_in_a_browser_hovering_a_cell_shows_it(page: tuple[Path, pd.DataFrame, np.ndarray]) -> None:
    index, cells, _ = page
    xy = cells[["UMAP1", "UMAP2"]].to_numpy()
    distance = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(len(xy)) * 1e9
    loneliest = int(distance.min(axis=1).argmax())  # no other point under the pointer
    result = _open(index, "", _HOVER.replace("POSITION", str(loneliest)))
    assert result["shown"] == f"cells:{cells['cell_id'].iloc[loneliest]}"
    assert result.get("selected") is None  # hovering selects nothing
    assert int(result["img"]["loaded"]) > 0
