"""The interactive page at 50,000 cells: its size on disk and its load time in Chromium.

Usage::

    python benchmarks/bench_interactive.py [--points 50000] [--size 32] [--channels 3]
        [--wells 384] [--repeats 3] [--out bench-data/interactive]

Writes, with :func:`cellscale.report._interactive.write_interactive_page`, a page of
``--points`` cells (UMAP coordinates, six metadata columns and an outlier score) with
``--channels`` × ``--size``² crops (synthetic cells: a blob per channel with its own
size, offset and brightness, plus Poisson noise; written once to ``--out``/crops.npy
and read memory-mapped, a sheet at a time) and ``--wells`` wells with 3 × 96² montages
(made lazily from a dask array). Printed:

- the write: wall time (the crops made beforehand) and the peak resident memory of
  this process (which counts the pages of crops.npy it has read);
- the page's size: ``index.html`` (of which BokehJS inline, the same as the baseline's)
  and the sprite sheets (count and bytes);
- the load time in headless Chromium: the wall time of ``chromium --dump-dom`` until the
  page's own script has marked the document (``data-ready``, set when BokehJS reports
  the document idle: every plot drawn), for the page as opened and for the page opened
  with a cell selected from its address (``#cell=<id>``: the selection drawn, its crop
  shown and its sprite sheet loaded), against the same for a minimal bokeh page (one
  point, the same BokehJS bundles and ready marker) measured in the same run; medians
  of ``--repeats`` rounds that open each in turn, and their ratios. The marker (and the
  shown cell) is checked in every dump, so a page that never renders fails instead of
  timing out quietly. Also printed: the time BokehJS logs in the page from its start to
  the document's idle (Chromium's own start excluded).

Run (2 shared cores here; the figures move with the machine's load)::

    .venv/bin/python benchmarks/bench_interactive.py --repeats 3
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _rss import peak_rss_gb  # noqa: E402

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
MARKER = 'data-ready="1"'


def main() -> None:
    args = _arguments()
    browser = next((p for name in BROWSERS if (p := shutil.which(name))), None)
    if browser is None:
        sys.exit("no headless Chromium found")
    args.out.mkdir(parents=True, exist_ok=True)
    page = args.out / "page" / "index.html"
    written = _write_page(page.parent, args)
    rss = peak_rss_gb()
    baseline = _write_baseline(args.out / "baseline" / "index.html")
    variants = {
        "page": (page, "", None),
        "page + a cell selected": (page, f"#cell={_first_cell_id()}", "cells:"),
        "baseline": (baseline, "", None),
    }
    loads: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (index, fragment, shown) in variants.items():
            loads[name].append(_load(browser, index, fragment, shown))
    html_bytes = page.stat().st_size
    base_bytes = baseline.stat().st_size
    sheets = sorted((page.parent / "crops").iterdir())
    sheet_bytes = sum(p.stat().st_size for p in sheets)
    print(
        f"cells {args.points:,}, crops {args.channels}x{args.size}x{args.size}, wells {args.wells}"
    )
    print(f"write: {written:.1f} s, peak RSS {rss:.2f} GB")
    print(
        f"index.html: {html_bytes / 1e6:.2f} MB (baseline page {base_bytes / 1e6:.2f} MB: "
        f"BokehJS; data {(html_bytes - base_bytes) / 1e6:.2f} MB = "
        f"{(html_bytes - base_bytes) / args.points:.0f} B a cell)"
    )
    print(
        f"sprite sheets: {len(sheets)} files, {sheet_bytes / 1e6:.1f} MB "
        f"({sheet_bytes / (args.points + args.wells) / 1e3:.2f} kB an image)"
    )
    print(f"total on disk: {(html_bytes + sheet_bytes) / 1e6:.1f} MB")
    for which, what in ((0, "Chromium to the ready mark (wall)"), (1, "BokehJS to idle (in page)")):
        base = statistics.median(v[which] for v in loads["baseline"])
        for name in variants:
            median = statistics.median(v[which] for v in loads[name])
            runs = ", ".join(f"{v[which]:.2f}" for v in loads[name])
            print(f"{what}, {name}: {median:.2f} s, {median / base:.2f}x baseline  ({runs})")


def _first_cell_id() -> int:
    return 1_000_000


def _write_page(folder: Path, args: argparse.Namespace) -> float:
    """Seconds to write the page (its inputs made beforehand, not timed)."""
    import numpy as np
    import pandas as pd

    from cellscale.report._interactive import write_interactive_page

    rng = np.random.default_rng(args.seed)
    n = args.points
    treatments = [f"compound-{i:02d}" for i in range(30)] + ["DMSO"]
    cells = pd.DataFrame(
        {
            "cell_id": np.arange(_first_cell_id(), _first_cell_id() + n, dtype=np.int64),
            "UMAP1": rng.normal(size=n),
            "UMAP2": rng.normal(size=n),
            "Metadata_Plate": rng.choice([f"P{i}" for i in range(8)], n),
            "Metadata_Well": rng.choice(
                [f"{r}{c:02d}" for r in "BCDEFGHIJKLMNO" for c in range(2, 24)], n
            ),
            "Metadata_Field": rng.integers(1, 10, n),
            "Metadata_Treatment": rng.choice(treatments, n),
            "Metadata_Concentration": rng.choice([0.01, 0.1, 1.0, 10.0], n),
            "Metadata_Batch": rng.choice(["b1", "b2", "b3"], n),
            "outlier_score": rng.gamma(2.0, size=n),
        }
    )
    wells = pd.DataFrame(
        {
            "Metadata_Plate": [f"P{i // 48}" for i in range(args.wells)],
            "Metadata_Well": [f"W{i:03d}" for i in range(args.wells)],
            "Metadata_Treatment": rng.choice(treatments, args.wells),
            "UMAP1": rng.normal(size=args.wells),
            "UMAP2": rng.normal(size=args.wells),
        }
    )
    crops = _stored_crops(folder.parent / "crops.npy", n, args.channels, args.size, args.seed)
    start = time.perf_counter()
    write_interactive_page(
        folder,
        cells,
        crops=crops,
        wells=wells,
        well_images=_synthetic_crops(args.wells, 3, 96, args.seed + 1),
        columns=[*(c for c in cells.columns if c.startswith("Metadata_")), "outlier_score"],
        max_points=n,
    )
    return time.perf_counter() - start


def _stored_crops(path: Path, n: int, channels: int, size: int, seed: int) -> Any:
    """The synthetic crops written once to ``path`` and opened memory-mapped (not timed)."""
    import dask.array as da
    import numpy as np

    shape = (n, channels, size, size)
    if not path.exists() or np.load(path, mmap_mode="r").shape != shape:
        stored = np.lib.format.open_memmap(path.with_suffix(".part.npy"), "w+", np.uint16, shape)
        da.store(_synthetic_crops(n, channels, size, seed), stored)
        stored.flush()
        path.with_suffix(".part.npy").rename(path)
    return np.load(path, mmap_mode="r")


def _synthetic_crops(n: int, channels: int, size: int, seed: int) -> Any:
    """A lazy ``(n, channels, size, size)`` uint16 array of blobs on noise."""
    import dask.array as da
    import numpy as np

    def block(block_info: dict | None = None) -> np.ndarray:
        assert block_info is not None
        (start, stop), *_ = block_info[None]["array-location"]
        rng = np.random.default_rng([seed, start])
        k = stop - start
        axis = np.arange(size) - size / 2
        yy, xx = np.meshgrid(axis, axis, indexing="ij")
        centre = rng.normal(0, size / 10, (k, channels, 2, 1, 1))
        sigma = rng.uniform(size / 10, size / 4, (k, channels, 1, 1))
        brightness = rng.uniform(500, 4000, (k, channels, 1, 1))
        r2 = (yy - centre[:, :, 0]) ** 2 + (xx - centre[:, :, 1]) ** 2
        blob = brightness * np.exp(-r2 / (2 * sigma**2)) + 100
        return rng.poisson(blob).astype(np.uint16)

    return da.map_blocks(
        block,
        chunks=(
            (1024,) * (n // 1024) + ((n % 1024,) if n % 1024 else ()),
            (channels,),
            (size,),
            (size,),
        ),
        dtype=np.uint16,
    )


def _write_baseline(index: Path) -> Path:
    """A minimal bokeh page: one point, the page's bundles (widgets, WebGL) and ready marker."""
    from bokeh.document import Document
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import CustomJS
    from bokeh.models.widgets import Select
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    plot = figure(output_backend="webgl", width=760, height=620)
    plot.scatter([0], [0])
    document = Document()
    options: list[str | tuple[Any, str]] = ["a"]
    document.add_root(column(Select(value="a", options=options), plot))
    mark = CustomJS(code="document.documentElement.dataset.ready = '1';")
    document.js_on_event("document_ready", mark)
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(file_html(document, resources=INLINE, title="baseline"), encoding="utf-8")
    return index


def _load(browser: str, index: Path, fragment: str, shown: str | None) -> tuple[float, float]:
    """Seconds for Chromium to open ``index`` and dump its DOM once the page is marked ready,
    and the seconds BokehJS took in the page to the document's idle (its console log)."""
    start = time.perf_counter()
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=60000",
            "--dump-dom",
            index.as_uri() + fragment,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    seconds = time.perf_counter() - start
    dom = done.stdout
    if MARKER not in dom or (shown is not None and f'data-shown="{shown}' not in dom):
        raise RuntimeError(f"{index} did not render (no {MARKER} in its DOM dump)")
    idle = re.search(r"document idle at (\d+) ms", done.stderr)
    return seconds, int(idle.group(1)) / 1000 if idle else float("nan")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=50_000, help="cells drawn")
    parser.add_argument("--size", type=int, default=32, help="crop side, pixels")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--wells", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-data" / "interactive")
    return parser.parse_args()


if __name__ == "__main__":
    main()
