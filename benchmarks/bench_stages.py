"""What the resumable-stage mechanism costs: fingerprinting a source folder, verifying a plate.

Usage::

    python benchmarks/bench_stages.py [--files 10000] [--wells 8] [--repeats 3] [--keep]

Two figures, each next to its baseline measured in the same run (medians of ``repeats``,
every measurement in a fresh process so its peak RSS is its own):

- **fingerprint**: a folder of ``files`` ImageXpress-named TIFFs (tiny images, so file
  count, not pixels, is what costs). The fingerprint of an ingest is the files' names
  (a digest) plus, per unit, their sizes and modification times (``os.stat``) and a
  token of them. Baseline: listing the folder with ``os.walk`` and ``os.stat`` of every
  file, the least any tool must do to know names, sizes and times. Also shown: the
  whole of ``read_tiff_plate`` (discovery, probing, the lazy graph) on the same folder.
- **verify**: ``cellscale.verify_plate`` on a synthetic plate (``wells`` × 4 fields ×
  3 channels × 6 planes of 1080 × 1080 uint16, default codec), against the zarr-read
  floor: every image read and decoded with zarr alone, on as many threads.

Data goes to bench-data/stages/ (git-ignored) and is deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench-data" / "stages"
UUID = "5E1F0C2A-9B3D-4C8E-A1F2-3D4E5F6A7B8C"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_folder(src: Path, files: int) -> int:
    """An ImageXpress folder of ``files`` tiny TIFFs: 5 waves × 4 ZSteps × sites × wells."""
    import tifffile

    waves, zsteps, sites = 5, 4, 9
    wells = [f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25)]
    per_well = waves * zsteps * sites
    n_wells = -(-files // per_well)
    if (src / "done").exists():
        return n_wells * per_well
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    tifffile.imwrite(src / "template.tif", np.zeros((16, 16), np.uint16))
    template = (src / "template.tif").read_bytes()
    (src / "template.tif").unlink()
    for z in range(1, zsteps + 1):
        folder = src / "TimePoint_1" / f"ZStep_{z}"
        folder.mkdir(parents=True)
        for well in wells[:n_wells]:
            for s in range(1, sites + 1):
                for w in range(1, waves + 1):
                    (folder / f"Bench_{well}_s{s}_w{w}{UUID}.tif").write_bytes(template)
    (src / "done").touch()
    return n_wells * per_well


def make_plate(path: Path, wells: int) -> None:
    from cellscale.testing import write_synthetic_plate

    if (path / "zarr.json").exists():
        return
    write_synthetic_plate(
        path, wells=wells, fields=4, n_z=6, channels=3, shape=(1080, 1080), progress=True
    )


def measure(kind: str, target: Path) -> dict[str, float]:
    import zarr  # imports outside the timing, for every variant alike

    import cellscale

    cellscale.verify_plate, cellscale.read_tiff_plate  # noqa: B018 (import the modules)
    start = time.perf_counter()
    if kind == "list+stat":
        count = 0
        for folder, _, names in os.walk(target):
            for name in names:
                os.stat(os.path.join(folder, name))
                count += 1
    elif kind == "fingerprint":
        count = _fingerprint(target)
    elif kind == "read_tiff_plate":
        count = int(cellscale.read_tiff_plate(target).sizes["well"])
    elif kind == "zarr-floor":
        count = _zarr_floor(zarr.open_group(str(target), mode="r"))
    elif kind == "verify":
        report = cellscale.verify_plate(target, progress=False)
        assert report.ok, report
        count = report.checked
    else:
        raise ValueError(kind)
    return {"seconds": time.perf_counter() - start, "count": count, "rss_mb": _peak_rss_mb()}


def _fingerprint(src: Path) -> int:
    """``read_tiff_plate`` with its fingerprint steps timed: names digest, stats, unit tokens."""
    from cellscale.io import _ingest

    spent = [0.0]

    def timed(function: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

        return run

    _ingest._stat_files = timed(_ingest._stat_files)
    _ingest.names_digest = timed(_ingest.names_digest)
    _ingest._Grid.unit_tokens = timed(_ingest._Grid.unit_tokens)
    plate = _ingest.read_tiff_plate(src)
    measure.fingerprint_only = spent[0]  # type: ignore[attr-defined]
    return int(plate.sizes["well"])


def _zarr_floor(root: Any) -> int:
    images = []
    for row in sorted(k for k in root.group_keys()):
        for col in sorted(root[row].group_keys()):
            for field in sorted(root[f"{row}/{col}"].group_keys()):
                array = root[f"{row}/{col}/{field}/0"]
                images += [
                    (array, t, c) for t in range(array.shape[0]) for c in range(array.shape[1])
                ]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        sums = list(pool.map(lambda u: int(u[0][u[1], u[2]].sum()), images))
    return len(sums)


def run(kind: str, target: Path, repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, __file__, "--measure", kind, "--target", str(target)],
            check=True,
            capture_output=True,
            text=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--wells", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--target", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        result = measure(args.measure, args.target)
        result["fingerprint_only"] = getattr(measure, "fingerprint_only", 0.0)
        print(json.dumps(result))
        return

    src, plate = DATA / "folder", DATA / "plate.zarr"
    # made in a child process: on Linux a child's peak RSS starts from its parent's
    make = f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench_stages as b"
    subprocess.run(
        [sys.executable, "-c", f"{make}; b.make_folder(b.Path({str(src)!r}), {args.files})"],
        check=True,
    )
    subprocess.run(
        [sys.executable, "-c", f"{make}; b.make_plate(b.Path({str(plate)!r}), {args.wells})"],
        check=True,
    )
    n_files = make_folder(src, args.files)
    run("list+stat", src, 1)  # warm the page cache alike for every variant
    floor = run("list+stat", src, args.repeats)
    fingerprint = run("fingerprint", src, args.repeats)
    whole = run("read_tiff_plate", src, args.repeats)
    print(f"\nfolder: {n_files} files; medians of {args.repeats}, each in a fresh process")
    print(f"{'measurement':<62}{'seconds':>9}{'x baseline':>12}{'peak RSS MB':>13}")
    rows = [
        ("os.walk + os.stat of every file (baseline)", floor["seconds"], floor["rss_mb"]),
        (
            "fingerprint steps of read_tiff_plate: digest, stats, tokens",
            fingerprint["fingerprint_only"],
            fingerprint["rss_mb"],
        ),
        (
            "read_tiff_plate (discover, probe, fingerprint, graph)",
            whole["seconds"],
            whole["rss_mb"],
        ),
    ]
    for label, seconds, rss in rows:
        print(f"{label:<62}{seconds:>9.3f}{seconds / floor['seconds']:>12.2f}{rss:>13.0f}")

    run("zarr-floor", plate, 1)
    zfloor = run("zarr-floor", plate, args.repeats)
    verify = run("verify", plate, args.repeats)
    gb = args.wells * 4 * 3 * 6 * 1080 * 1080 * 2 / 1e9
    print(f"\nplate: {args.wells} wells x 4 fields x 3 ch x 6 z x 1080x1080 uint16 = {gb:.2f} GB")
    print(f"{'measurement':<52}{'GB/s':>9}{'x floor':>12}{'peak RSS MB':>13}")
    for label, r in (("zarr reads every image (floor)", zfloor), ("verify_plate", verify)):
        ratio = zfloor["seconds"] / r["seconds"]
        print(f"{label:<52}{gb / r['seconds']:>9.3f}{ratio:>12.2f}{r['rss_mb']:>13.0f}")
    if not args.keep:
        shutil.rmtree(DATA, ignore_errors=True)


if __name__ == "__main__":
    main()
