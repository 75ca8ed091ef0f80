"""``cellscale run`` against the script a scientist writes today, on the same TIFF folders.

Usage::

    python benchmarks/bench_vs_script.py [--wells 8] [--fields 3] [--planes 4] [--size 512]
                                         [--scales 1,4] [--crop 48]

For each scale (1 and 4: ``wells × scale`` wells, so four times the cells), one
ImageXpress-style folder (``ZStep_<z>/screen_<well>_s<f>_w<c>.tif``, 2 channels:
``w1`` nuclei, ``w2`` cytoplasm; rendered by :func:`cellscale.synthetic.synthetic_plate`
and cached under ``bench-data/vs_script/``) is processed twice, each in a fresh process
on the same cores:

- **the script**: one process, one field after another: ``tifffile.imread`` of every
  plane, ``np.max`` over Z, the same :class:`~cellscale.segmentation.ClassicalSegmenter`
  on the cytoplasm seeded by the nuclei, border cells dropped with
  ``skimage.segmentation.clear_border``, ``regionprops`` centroids, a per-cell crop loop
  with the mask softened by a Gaussian of 2 pixels (zero-padded at the field's edge), the
  same ResNet-18 (:class:`~cellscale.embedding.TorchEmbedder`, seed 0) on batches of 64
  built in Python, and scikit-learn's PCA (10 components). It keeps every crop in
  memory until the model has seen them all, as such scripts do.
- **cellscale**: ``cellscale.run`` with the same settings (QC off, no illumination
  correction, crops of the same size and soft mask, ResNet-18 with ``embed.enabled``,
  PCA 10) on its default LocalCluster.

Printed per scale: wall time of each (and the script's time per stage, the run's per
stage), their ratio, peak memory of all the processes (sampled every 0.2 s as the sum of
the resident memory of the process and its children), the CPU time of all the processes
(and so the least wall time cellscale's work can take on the machine's cores), cells per
field compared, and the largest difference between the two embeddings of each cell
relative to the embedding's scale. Last, each side's memory from scale 1 to the largest scale.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench-data" / "vs_script"
SEED = 0
CHANNELS = {"w1": "nuclei", "w2": "cytoplasm"}


def make_folder(folder: Path, wells: int, fields: int, planes: int, size: int) -> None:
    """Write the synthetic plate as ImageXpress TIFFs (once; reused when present)."""
    import tifffile

    from cellscale.synthetic import synthetic_plate

    done = folder / ".complete"
    if done.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    plate = synthetic_plate(
        wells=wells,
        fields=fields,
        n_z=planes,
        shape=(size, size),
        cells_per_field=25.0 * (size / 256) ** 2,  # the demo's density
        seed=SEED,
        plate_format=384,
    )
    for w, well in enumerate(plate.coords["well"].values):
        for f in range(fields):
            stack = plate.isel(t=0, well=w, field=f).values  # (z, c, y, x)
            for z in range(planes):
                plane_dir = folder / f"ZStep_{z + 1}"
                plane_dir.mkdir(parents=True, exist_ok=True)
                for c in range(stack.shape[1]):
                    name = f"screen_{well}_s{f + 1}_w{c + 1}.tif"
                    tifffile.imwrite(plane_dir / name, np.ascontiguousarray(stack[z, c]))
    done.touch()


# --- the script a scientist writes --------------------------------------------------


def run_script(folder: Path, out: Path, crop: int) -> None:
    """The per-file loop, as one process; writes its results and stage times to ``out``."""
    import re

    import tifffile
    from scipy import ndimage
    from skimage.measure import regionprops
    from skimage.segmentation import clear_border
    from sklearn.decomposition import PCA

    from cellscale.embedding import TorchEmbedder
    from cellscale.segmentation import ClassicalSegmenter

    times = dict.fromkeys(("read + project", "segment", "crops", "embed", "pca"), 0.0)
    pattern = re.compile(r"screen_(?P<well>[A-P]\d\d)_s(?P<site>\d+)_w(?P<c>\d)\.tif$")
    fields: dict[tuple[str, int], dict[int, list[Path]]] = {}
    for path in sorted(folder.glob("ZStep_*/*.tif")):
        match = pattern.search(path.name)
        assert match is not None, path
        key = (match["well"], int(match["site"]))
        fields.setdefault(key, {}).setdefault(int(match["c"]), []).append(path)
    segmenter = ClassicalSegmenter(compartment="cells")
    model = TorchEmbedder("resnet18", in_channels=2, batch_size=64, seed=SEED)
    crops: list[np.ndarray] = []
    rows: list[tuple[str, int, int]] = []
    counts: dict[str, int] = {}
    features: list[np.ndarray] = []
    for (well, site), channels in sorted(fields.items()):
        start = time.perf_counter()
        image = np.stack(
            [np.max([tifffile.imread(p) for p in channels[c]], axis=0) for c in sorted(channels)]
        )  # (c, y, x): w1 nuclei, w2 cytoplasm
        times["read + project"] += time.perf_counter() - start
        start = time.perf_counter()
        labels = segmenter(np.stack([image[1], image[0]]))  # cytoplasm seeded by nuclei
        cells = clear_border(labels[0])
        kept = np.unique(cells[cells > 0])
        lookup = np.zeros(int(labels[0].max()) + 1, np.uint32)
        lookup[kept] = np.arange(1, len(kept) + 1, dtype=np.uint32)
        cells = lookup[cells]
        times["segment"] += time.perf_counter() - start
        start = time.perf_counter()
        counts[f"{well}/{site}"] = len(kept)
        for region in regionprops(cells):
            crops.append(_soft_crop(image, cells, region.label, region.centroid, crop, ndimage))
            rows.append((well, site, region.label))
        times["crops"] += time.perf_counter() - start
    start = time.perf_counter()
    for i in range(0, len(crops), 64):
        features.append(model(np.stack(crops[i : i + 64])))
    embeddings = np.concatenate(features)
    times["embed"] += time.perf_counter() - start
    start = time.perf_counter()
    PCA(10).fit_transform(embeddings)
    times["pca"] += time.perf_counter() - start
    np.save(out / "embeddings.npy", embeddings)
    (out / "result.json").write_text(json.dumps({"times": times, "counts": counts, "rows": rows}))


def _soft_crop(
    image: np.ndarray, labels: np.ndarray, label: int, centre: Any, size: int, ndimage: Any
) -> np.ndarray:
    """One cell's box around its centroid, times its mask blurred by 2 pixels."""
    start = [int(np.floor(c + 0.5)) - size // 2 for c in centre]
    lo = [max(s, 0) for s in start]
    hi = [min(s + size, n) for s, n in zip(start, labels.shape, strict=True)]
    inside = (labels[lo[0] : hi[0], lo[1] : hi[1]] == label).astype(np.float32)
    weight = ndimage.gaussian_filter(inside, 2.0, mode="constant")
    crop = np.zeros((image.shape[0], size, size), np.float32)
    box = image[:, lo[0] : hi[0], lo[1] : hi[1]] * weight
    crop[:, lo[0] - start[0] : hi[0] - start[0], lo[1] - start[1] : hi[1] - start[1]] = box
    return crop


# --- cellscale ----------------------------------------------------------------------


def run_cellscale(folder: Path, out: Path, crop: int) -> None:
    """``cellscale.run`` on the folder with the script's settings."""
    import cellscale

    config = {
        "output": str(out / "run"),
        "plates": [
            {"name": "P1", "folder": str(folder), "pattern": "imagexpress", "channels": CHANNELS}
        ],
        "qc": {"enabled": False},
        "segment": {"channel": "cytoplasm", "nuclei_channel": "nuclei"},
        "crops": {"size": crop, "mask": "soft"},
        "embed": {"enabled": True, "model": "resnet18", "batch_size": 64, "seed": SEED},
        "pca": {"n_components": 10},
        "profiles": {"controls": None},
    }
    start = time.perf_counter()
    summary = cellscale.run(config, progress=False)
    wall = time.perf_counter() - start
    stages = {s.name: round(s.seconds, 2) for s in summary.stages}
    (out / "result.json").write_text(json.dumps({"wall": wall, "stages": stages}))


# --- measuring ----------------------------------------------------------------------


def measured(command: list[str]) -> tuple[float, float, float]:
    """Run ``command``: its wall seconds, peak summed RSS (GB) and CPU seconds, all processes.

    The CPU time is user + system of the process and every process it started and waited
    for (worker processes included): the work, which ``os.cpu_count()`` cores can at best
    share evenly.
    """
    import psutil

    peak = [0.0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT)
    watched = psutil.Process(process.pid)

    def sample() -> None:
        while process.poll() is None:
            try:
                tree = [watched, *watched.children(recursive=True)]
                total = sum(p.memory_info().rss for p in tree if p.is_running())
            except psutil.Error:
                continue
            peak[0] = max(peak[0], total / 1024**3)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler.join()
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed with status {code}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, peak[0], cpu


def compare(script: Path, run: Path) -> tuple[int, int, float]:
    """Fields whose cell counts differ, cells compared, largest relative embedding gap."""
    import pandas as pd

    import cellscale

    result = json.loads((script / "result.json").read_text())
    cells = cellscale.read_cells(run / "run" / "plates" / "P1" / "cells.parquet").compute()
    counts = cells.groupby(["Metadata_Well", "Metadata_Site"]).size()
    ours = {f"{w}/{int(s)}": int(n) for (w, s), n in counts.items()}
    differing = sum(ours.get(k, 0) != n for k, n in result["counts"].items())
    embedded = cellscale.open_embeddings(run / "run" / "plates" / "P1" / "embeddings.zarr")
    order = pd.Index(embedded.coords["cell_id"].values)
    keys = cells.set_index(["Metadata_Well", "Metadata_Site", "Metadata_ObjectNumber"])["cell_id"]
    theirs = np.load(script / "embeddings.npy")
    index = pd.MultiIndex.from_tuples([tuple(r) for r in result["rows"]])
    found = keys.reindex(index)
    present = found.notna().to_numpy().copy()
    rows = order.get_indexer(found[present].astype(np.int64))
    present[present] = rows >= 0
    ours_values = np.asarray(embedded.values)[rows[rows >= 0]]
    scale = float(np.abs(theirs).max()) or 1.0
    gap = float(np.abs(ours_values - theirs[present]).max()) / scale if present.any() else np.inf
    return differing, int(present.sum()), gap


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--wells", type=int, default=8)
    parser.add_argument("--fields", type=int, default=3)
    parser.add_argument("--planes", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--crop", type=int, default=48)
    parser.add_argument("--scales", default="1,4")
    parser.add_argument("--script", nargs=2, type=Path, metavar=("FOLDER", "OUT"))
    parser.add_argument("--cellscale", nargs=2, type=Path, metavar=("FOLDER", "OUT"))
    args = parser.parse_args()
    if args.script:
        return run_script(*args.script, args.crop)
    if args.cellscale:
        return run_cellscale(*args.cellscale, args.crop)

    me = [sys.executable, str(Path(__file__).resolve()), "--crop", str(args.crop)]
    memory: dict[str, list[float]] = {"script": [], "cellscale": []}
    for scale in (int(s) for s in args.scales.split(",")):
        wells = args.wells * scale
        folder = DATA / f"w{wells}-f{args.fields}-z{args.planes}-{args.size}-dense"
        make_folder(folder, wells, args.fields, args.planes, args.size)
        outs = {side: DATA / "out" / f"{side}-{wells}" for side in memory}
        for out in outs.values():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
        script = measured([*me, "--script", str(folder), str(outs["script"])])
        script_wall, script_peak, script_cpu = script
        run = measured([*me, "--cellscale", str(folder), str(outs["cellscale"])])
        run_wall, run_peak, run_cpu = run
        memory["script"].append(script_peak)
        memory["cellscale"].append(run_peak)
        differing, compared, gap = compare(outs["script"], outs["cellscale"])
        script_times = json.loads((outs["script"] / "result.json").read_text())["times"]
        stages = json.loads((outs["cellscale"] / "result.json").read_text())["stages"]
        fields = wells * args.fields
        print(f"\nscale {scale}: {wells} wells x {args.fields} fields ({fields} fields), "
              f"{compared} cells compared")  # fmt: skip
        print(f"  script     {script_wall:7.1f} s  peak {script_peak:5.2f} GB  "
              + ", ".join(f"{k} {v:.1f}" for k, v in script_times.items()))  # fmt: skip
        print(f"  cellscale  {run_wall:7.1f} s  peak {run_peak:5.2f} GB  "
              + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))  # fmt: skip
        print(f"  script / cellscale wall: {script_wall / run_wall:.2f}x (target >= 2x)")
        cores = os.cpu_count() or 1
        print(f"  CPU time, all processes: script {script_cpu:.1f} s, cellscale {run_cpu:.1f} s; "
              f"on {cores} cores cellscale's wall is at least {run_cpu / cores:.1f} s, and the "
              f"target asks for {script_wall / 2:.1f} s")  # fmt: skip
        print(f"  fields with other cell counts: {differing} of {fields}; "
              f"largest embedding gap / scale: {gap:.2e}")  # fmt: skip
    if len(memory["script"]) > 1:
        for side, peaks in memory.items():
            print(
                f"peak memory {side}: {peaks[-1] / peaks[0]:.2f}x from the first to the last scale"
            )
    return None


if __name__ == "__main__":
    main()
