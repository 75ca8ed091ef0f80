"""Screen stages benchmark: PCA fit, per-plate scores, profiles and report on stored cells.

For each ``--cells`` size, writes once (cached under ``bench-data/screen-<N>/``) a run
folder of ``--plates`` plates of 96 wells, each plate as the pipeline stores it:
``projected.zarr`` (two small channels, written by :func:`cellscale.write_plate`, with
grid labels of 6 x 6-pixel cells by :func:`cellscale.write_labels`), the cell table
(:func:`cellscale.write_cells`, shape features) and ``--dims``-d float32 embeddings
(:func:`cellscale.write_embeddings`, Gaussian rows). Each plate's cells are split over
1-3 fields per well so that the screen has about N cells.

Then, in a fresh process per size, it runs the screen stages the way a run does
(:func:`cellscale.pipeline._screen.screen_cells` and the run's ``_screen_stages``: PCA
fit, scores per plate, profiles of measured features and embeddings, report) on a local
cluster of worker processes, after removing their earlier outputs, and prints the wall
time and the driving process's peak RSS (``VmHWM``), and the ratios of the largest size
to the smallest.

Targets: driver peak RSS <= 1.5 GB and x <= 1.2 from 1 M to 5 M cells; wall x <= 5.5.

Run:  .venv/bin/python benchmarks/bench_screen.py --cells 1000000 5000000
Smoke: .venv/bin/python benchmarks/bench_screen.py --cells 100000 500000
One plate of each (the same cells per plate as 1 M and 5 M over 20 plates: the screen
stages work a plate at a time, so their driver's memory follows the plate):
      .venv/bin/python benchmarks/bench_screen.py --plates 1 --cells 50000 250000
Linked (``--link``): one plate of ``N / plates`` cells is built (as above, and cached) and
its files are hard-linked as every plate of the screen, so 20 plates take the time of one
to write: the same cells in every plate, and reads of plates after the first hit the page
cache, so wall times are lower bounds; the driver's memory is that of distinct plates.
      .venv/bin/python benchmarks/bench_screen.py --link --cells 1000000 5000000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench-data"
WELLS = 96
CELL = 6  # cell side, pixels
PITCH = 8  # grid pitch, pixels
CHUNK_CELLS = 16384


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--plates", type=int, default=20)
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--link", action="store_true", help="hard-link one plate as every plate")
    parser.add_argument("--stages", type=Path, help=argparse.SUPPRESS)  # the measured process
    args = parser.parse_args()
    if args.stages:
        print(json.dumps(run_stages(args.stages, args.workers)))
        return
    results = []
    for n in args.cells:
        make = linked if args.link else build
        folder = make(n, args.plates, args.dims)
        measured = subprocess.run(
            [sys.executable, __file__, "--stages", str(folder), "--workers", str(args.workers)],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(measured.stdout.strip().splitlines()[-1])
        results.append(result)
        print(
            f"{result['cells']:>10,} cells  {args.plates} plates  {args.dims}-d  "
            f"wall {result['wall_s']:8.1f} s  driver peak RSS {result['peak_rss_gb']:.2f} GB  "
            f"stages (s): {result['stages']}",
            flush=True,
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        wall = last["wall_s"] / first["wall_s"]
        rss = last["peak_rss_gb"] / first["peak_rss_gb"]
        scale = last["cells"] / first["cells"]
        print(f"{scale:.1f}x cells: wall x{wall:.2f}, driver peak RSS x{rss:.2f}")


def build(n: int, plates: int, dims: int) -> Path:
    """The run folder of about ``n`` cells, written once and reused."""
    folder = DATA / f"screen-{n}-{plates}x{dims}"
    done = folder / "built.json"
    if done.is_file():
        return folder
    fields = max(1, math.ceil(n / (plates * WELLS * 900)))
    grid = max(1, math.ceil(math.sqrt(n / (plates * WELLS * fields))))
    started = time.perf_counter()
    _manifest(folder, [f"P{i + 1:02d}" for i in range(plates)])  # the folder is a run's
    for i in range(plates):
        _plate(folder / "plates" / f"P{i + 1:02d}", i, fields, grid, dims)
    done.write_text(
        json.dumps({"fields": fields, "grid": grid, "seconds": time.perf_counter() - started})
    )
    return folder


def linked(n: int, plates: int, dims: int) -> Path:
    """A run folder of ``plates`` hard-linked copies of one plate of ``n / plates`` cells."""
    folder = DATA / f"screen-{n}-{plates}x{dims}-linked"
    done = folder / "built.json"
    if done.is_file():
        return folder
    source = build(math.ceil(n / plates), 1, dims) / "plates" / "P01"
    names = [f"P{i + 1:02d}" for i in range(plates)]
    _manifest(folder, names)
    for name in names:
        target = folder / "plates" / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            source, target, copy_function=os.link, ignore=shutil.ignore_patterns("*scores*")
        )
    done.write_text(json.dumps({"linked_from": str(source)}))
    return folder


class GridSegmenter:
    """Labels every field as a grid of square cells (no image is looked at)."""

    compartments: tuple[str, ...] = ("cells",)
    fields_per_task = 1
    gpu = False

    def __init__(self, grid: int) -> None:
        labels = np.zeros((grid * PITCH, grid * PITCH), dtype=np.uint32)
        for k in range(grid * grid):
            y, x = divmod(k, grid)
            labels[y * PITCH + 1 : y * PITCH + 1 + CELL, x * PITCH + 1 : x * PITCH + 1 + CELL] = (
                k + 1
            )
        self.labels = labels

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.labels[None]

    def segment_batch(self, images: Any) -> list[np.ndarray]:
        return [self(image) for image in images]


def _plate(folder: Path, index: int, fields: int, grid: int, dims: int) -> None:
    import dask.array as da
    import xarray as xr

    import cellscale
    from cellscale.pipeline import _field_stats as field_stats
    from cellscale.segmentation import segment

    folder.mkdir(parents=True, exist_ok=True)
    side = grid * PITCH
    plate = cellscale.synthetic.synthetic_plate(
        WELLS,
        fields=fields,
        n_z=1,
        shape=(side, side),
        cells_per_field=2,
        plate_map=cellscale.synthetic.default_plate_map(WELLS),
        seed=index,
        name=folder.name,
    )
    projected = folder / "projected.zarr"
    cellscale.write_plate(cellscale.project(plate, "max"), projected, progress=False)
    stored = cellscale.open_plate(projected)
    field_stats.complete(stored, projected, progress=False)  # the QC measures a run keeps
    labels = segment(stored, GridSegmenter(grid), channel="nuclei")
    cellscale.write_labels(labels, projected, progress=False)
    cells = folder / "cells.parquet"
    cellscale.write_cells(
        cellscale.open_labels(projected), stored, cells, intensity=False, progress=False
    )
    n = len(cellscale.read_cells(cells)["cell_id"])
    rows = da.random.default_rng(index).standard_normal((n, dims), chunks=(CHUNK_CELLS, dims))
    embeddings = xr.DataArray(
        rows.astype(np.float32),
        dims=("cell", "feature"),
        coords={"cell_id": ("cell", np.arange(n))},
    )
    cellscale.write_embeddings(embeddings, folder / "embeddings.zarr", progress=False)


def _manifest(folder: Path, plates: list[str]) -> Any:
    """The run manifest of the benchmark's folder (started when the folder is built)."""
    from cellscale.pipeline._manifest import Manifest

    return Manifest.open(folder.resolve(), {"plates": plates}, {"config": "bench"}, False)


def run_stages(folder: Path, workers: int) -> dict[str, Any]:
    """Run the screen stages on ``folder`` as a run does; wall time and driver peak RSS."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _rss import peak_rss_gb

    import cellscale
    from cellscale.pipeline._config import load_config
    from cellscale.pipeline._run import _screen_stages
    from cellscale.pipeline._screen import screen_cells
    from cellscale.pipeline._state import RunState

    folder = folder.resolve()
    plates = sorted(p.name for p in (folder / "plates").iterdir())
    shutil.rmtree(folder / "profiles", ignore_errors=True)
    shutil.rmtree(folder / "report", ignore_errors=True)
    for old in folder.glob("plates/*/*scores.parquet*"):  # the scores and their records
        old.unlink()
    config = load_config(
        {
            "output": str(folder),
            "plates": [
                {"name": p, "zarr": str(folder / "plates" / p / "projected.zarr")} for p in plates
            ],
            "qc": {"enabled": False},
            "segment": {"channel": "nuclei"},
            "embed": {"enabled": True},
            "pca": {"n_components": 20},
            "profiles": {"features": "both", "controls": "Metadata_treatment == 'DMSO'"},
        }
    )
    with cellscale.start_cluster(
        "local", n_workers=workers, processes=True, threads_per_worker=1, quiet=True
    ) as client:
        manifest = _manifest(folder, plates)
        state = RunState(config, folder, manifest, client, progress=False)
        started = time.perf_counter()
        images = [_images(folder / "plates" / p / "projected.zarr") for p in plates]
        screen = screen_cells(state)
        _screen_stages(state, images, screen)
        wall = time.perf_counter() - started
    stages = {s.name: round(s.seconds, 1) for s in state.merged_stages()}
    return {"cells": screen.cells, "wall_s": wall, "peak_rss_gb": peak_rss_gb(), "stages": stages}


def _images(projected: Path) -> Any:
    """A stored plate's images as a run leaves them (nothing corrected)."""
    import cellscale
    from cellscale.pipeline._plate_stages import PlateImages

    plate = cellscale.open_plate(projected)
    return PlateImages(projected=plate, images=plate, labels=cellscale.open_labels(projected))


if __name__ == "__main__":
    main()
