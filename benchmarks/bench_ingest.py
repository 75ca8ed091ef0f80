"""Ingest throughput: ``cellscale.ingest`` vs a plain tifffile read loop over the same files.

Generates an ImageXpress-named folder
(``TimePoint_1/ZStep_<z>/Bench_<well>_s<site>_w<c><uuid>.tif``) of 16-bit TIFFs with
realistic, compressible content (smooth background, blurred nuclei-like
blobs, sensor noise; 12-bit range), then measures in the same run, alternating, ``--repeats``
times each (medians reported):

* the baseline: ``for f in files: tifffile.imread(f)`` (one thread, result discarded);
* the write floor: the same loop writing each image's pixels to a new raw file, so the disk's
  write speed is measured in the same run;
* the lazy plate of ``read_tiff_plate(src)`` computed chunk by chunk, pixels discarded
  (ingest's read side alone);
* ``cellscale.ingest(src, out)`` to a new OME-Zarr plate, on the local threaded scheduler,
  with the configured default codec and its default pyramid (3 levels for 1080 px), then
  full resolution only (``levels=1``) with the default codec and with ``codec="none"``.

Every measurement runs twice per repeat: with the TIFFs in the page cache (warm: the CPU
cost of ingest) and, where the page cache can be dropped (root on Linux), with it dropped
first (cold: the files come from disk, as they do for a screen larger than memory).
Before each measurement the previous output is deleted and the disk is synced, outside
the timing. Throughput is uncompressed pixel MB/s (MB = 1e6 bytes). Every measurement runs
in a fresh subprocess so its peak RSS (``ru_maxrss``) is its own.

Run:  .venv/bin/python benchmarks/bench_ingest.py [--wells 48] [--repeats 3] [--keep]
Data goes to bench-data/ingest/ (git-ignored) and is deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench-data" / "ingest"
SHAPE = (1080, 1080)
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
UUID = "5E1F0C2A-9B3D-4C8E-A1F2-3D4E5F6A7B8C"


def _wells(n: int) -> list[str]:
    return [f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25)][:n]


def _base_images(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    from scipy import ndimage

    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(np.float32) / SHAPE[0]
    images = []
    for _ in range(n):
        spots = np.zeros(SHAPE, np.float32)
        idx = rng.integers(0, SHAPE[0], (2, 300))
        spots[idx[0], idx[1]] = rng.uniform(2e4, 6e4, 300)
        blobs = ndimage.gaussian_filter(spots, 6)
        background = 300 + 150 * (1 - (xx - 0.5) ** 2 - (yy - 0.5) ** 2)
        images.append(np.clip(background + blobs, 0, 4000).astype(np.uint16))
    return images


def generate(src: Path, wells: int, sites: int, waves: int, zsteps: int) -> list[Path]:
    """Write the folder (reused if complete) and return its image files."""
    import tifffile

    rng = np.random.default_rng(0)
    bases = _base_images(rng, 8)
    files = []
    for well, s, w, z in itertools.product(
        _wells(wells), range(1, sites + 1), range(1, waves + 1), range(1, zsteps + 1)
    ):
        path = src / "TimePoint_1" / f"ZStep_{z}" / f"Bench_{well}_s{s}_w{w}{UUID}.tif"
        files.append(path)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        noise = rng.integers(0, 64, SHAPE, dtype=np.uint16)
        tifffile.imwrite(path, bases[len(files) % len(bases)] + noise)
    return files


def _discard(block: np.ndarray) -> np.ndarray:
    return np.zeros((1,) * 7, block.dtype)


def _phase(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints JSON."""
    import tifffile

    from cellscale.io import ingest, open_plate
    from cellscale.io._ingest import read_tiff_plate

    src = Path(args.src)
    start = time.perf_counter()
    if args.phase == "loop":
        nbytes = sum(tifffile.imread(path).nbytes for path in sorted(src.rglob("*.tif")))
    elif args.phase == "copy":  # the same loop writing each image's pixels to a new raw file
        dest = Path(args.out)
        dest.mkdir(parents=True)
        nbytes = 0
        for i, path in enumerate(sorted(src.rglob("*.tif"))):
            pixels = tifffile.imread(path)
            pixels.tofile(dest / f"{i}.raw")
            nbytes += pixels.nbytes
    elif args.phase == "read":  # the lazy plate computed chunk by chunk, pixels discarded
        data = read_tiff_plate(src).data
        nbytes = data.nbytes
        data.map_blocks(_discard, chunks=(1,) * 7, dtype=data.dtype).compute()
    else:
        levels = int(args.levels) if args.levels else None
        out = ingest(src, args.out, codec=args.codec, levels=levels, progress=False)
    seconds = time.perf_counter() - start
    if args.phase == "ingest":
        nbytes = open_plate(out).nbytes
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "bytes": int(nbytes), "peak_rss": peak}))


def _drop_page_cache() -> None:
    """Write dirty pages out and drop the page cache (needs root)."""
    subprocess.run(["sync"], check=True)
    DROP_CACHES.write_text("3\n")


def _run(
    phase: str,
    src: Path,
    out: Path,
    codec: str | None = None,
    levels: int | None = None,
    cold: bool = False,
) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    if cold:
        _drop_page_cache()
    else:
        subprocess.run(["sync"], check=True)
    cmd = [sys.executable, __file__, "--phase", phase, "--src", str(src), "--out", str(out)]
    if codec:
        cmd += ["--codec", codec]
    if levels:
        cmd += ["--levels", str(levels)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


#: label, phase, codec, pyramid levels (None: the default, 3 for 1080 px)
MEASUREMENTS = (
    ("tifffile read loop", "loop", None, None),
    ("loop + raw file write (floor)", "copy", None, None),
    ("read_tiff_plate, no write", "read", None, None),
    ("ingest (default codec, pyramid)", "ingest", None, None),
    ("ingest (default codec, levels=1)", "ingest", None, 1),
    ("ingest (codec none, levels=1)", "ingest", "none", 1),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wells", type=int, default=48)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--waves", type=int, default=2)
    parser.add_argument("--zsteps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--phase", choices=["loop", "copy", "read", "ingest"], help=argparse.SUPPRESS
    )
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--codec", help=argparse.SUPPRESS)
    parser.add_argument("--levels", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _phase(args)
        return
    src, out = DATA / "tiffs", DATA / "out"
    start = time.perf_counter()
    files = generate(src, args.wells, args.sites, args.waves, args.zsteps)
    size = sum(p.stat().st_size for p in files)
    print(
        f"{len(files)} TIFFs, {size / 1e9:.2f} GB, {SHAPE} uint16 "
        f"(generated in {time.perf_counter() - start:.0f} s)"
    )
    caches = ["cold", "warm"] if os.access(DROP_CACHES, os.W_OK) else ["warm"]
    if caches == ["warm"]:
        print("the page cache cannot be dropped here (needs root on Linux): warm runs only")
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(args.repeats):
        for cache in caches:
            if cache == "warm":
                _run("loop", src, out)  # bring every file into the page cache
            for label, phase, codec, levels in MEASUREMENTS:
                run = _run(phase, src, out, codec, levels, cold=cache == "cold")
                runs.setdefault((cache, label), []).append(run)
                if (phase, codec, levels) == ("ingest", None, None):
                    stored = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    for cache in caches:
        rate = {
            label: statistics.median(r["bytes"] / r["seconds"] / 1e6 for r in runs[(cache, label)])
            for label, _, _, _ in MEASUREMENTS
        }
        loop, floor = rate["tifffile read loop"], rate["loop + raw file write (floor)"]
        print(f"-- {cache} page cache (medians of {args.repeats})")
        for label, _, _, _ in MEASUREMENTS:
            peak = max(r["peak_rss"] for r in runs[(cache, label)]) / 2**20
            print(
                f"{label:33s}: {rate[label]:7.0f} MB/s  peak RSS {peak:6.0f} MiB  "
                f"ratio to loop {rate[label] / loop:.2f}, to loop + write {rate[label] / floor:.2f}"
            )
    print(f"plate store size, default codec: {stored / 1e9:.2f} GB")
    shutil.rmtree(out, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(DATA)


if __name__ == "__main__":
    main()
