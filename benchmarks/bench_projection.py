"""Max projection of a compressed on-disk plate against the I/O floor and in-memory NumPy.

Usage::

    python benchmarks/bench_projection.py [--wells 24] [--repeats 3] [--data bench-data]

Writes (once) a synthetic plate of ``wells`` × 4 fields × 3 channels × 6 planes of
1080 × 1080 uint16 (24 wells = 4.03 GB uncompressed) with the default codec, then
measures, each in a fresh process so peak RSS is its own, the median of ``repeats``:

- ``floor``: every image read with zarr alone (the I/O + decompression floor), on as
  many threads as dask's scheduler uses;
- ``project``: ``cellscale.open_plate`` → ``project("max")`` → a per-image sum, so the
  result is tiny and memory shows only what streaming costs;
- ``project+write``: the same projection written as a new plate with ``write_plate``;
- ``numpy``: ``ndarray.max(axis=z)`` on a slice of the same data already in memory;
- peak RSS of ``project`` for N = wells/4 and 4N = wells.

All throughputs are uncompressed input bytes per second.
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

import numpy as np

FIELDS, CHANNELS, PLANES, SIZE = 4, 3, 6, (1080, 1080)


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _make_plate(path: Path, wells: int) -> None:
    from cellscale.testing import write_synthetic_plate

    if (path / "zarr.json").exists():
        return
    start = time.perf_counter()
    write_synthetic_plate(
        path,
        wells=wells,
        fields=FIELDS,
        n_z=PLANES,
        channels=CHANNELS,
        shape=SIZE,
        overwrite=True,
        progress=True,
    )
    print(f"generated and wrote the plate in {time.perf_counter() - start:.0f} s", flush=True)


def _measure(kind: str, plate_path: Path, wells: int) -> dict[str, float]:
    import dask

    import cellscale

    plate = cellscale.open_plate(plate_path).isel(well=slice(0, wells))
    nbytes = plate.nbytes
    threads = os.cpu_count() or 1
    start = time.perf_counter()
    if kind == "floor":
        import zarr

        root = zarr.open_group(str(plate_path), mode="r")
        arrays = [
            root[f"{str(w)[0]}/{str(w)[1:]}/{f}/0"]
            for w in plate.coords["well"].values
            for f in plate.coords["field"].values
        ]
        units = [
            (a, t, c) for a in arrays for t in range(plate.sizes["t"]) for c in range(CHANNELS)
        ]
        with ThreadPoolExecutor(threads) as pool:
            total = sum(pool.map(lambda u: int(u[0][u[1], u[2]].sum()), units))
    elif kind == "project":
        with dask.config.set(scheduler="threads", num_workers=threads):
            total = int(cellscale.project(plate, "max").sum(dim=("y", "x")).sum().compute())
    elif kind == "project+write":
        out = plate_path.with_name("projected.zarr")
        with dask.config.set(scheduler="threads", num_workers=threads):
            cellscale.write_plate(
                cellscale.project(plate, "max"), out, overwrite=True, progress=False
            )
        total = 0
    elif kind == "numpy":
        in_memory = plate.isel(well=slice(0, 2)).values  # a slice that fits
        nbytes = in_memory.nbytes
        start = time.perf_counter()
        total = int(in_memory.max(axis=3).sum(dtype=np.int64))
    else:
        raise ValueError(kind)
    seconds = time.perf_counter() - start
    return {
        "gb_per_s": nbytes / seconds / 1e9,
        "seconds": seconds,
        "gb": nbytes / 1e9,
        "peak_rss_gb": _peak_rss_gb(),
        "checksum": total,
    }


def _run(kind: str, plate_path: Path, wells: int, repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--measure",
                kind,
                "--plate",
                str(plate_path),
                "--wells",
                str(wells),
            ],
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
    parser.add_argument("--wells", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("bench-data"))
    parser.add_argument("--keep", action="store_true", help="keep the plate afterwards")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--plate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_measure(args.measure, args.plate, args.wells)))
        return

    plate_path = args.data / "projection-bench.zarr"
    _make_plate(plate_path, args.wells)
    stored = sum(p.stat().st_size for p in plate_path.rglob("*") if p.is_file()) / 1e9
    _run("floor", plate_path, args.wells, 1)  # warm the page cache for every variant alike
    results = {
        kind: _run(kind, plate_path, args.wells, args.repeats)
        for kind in ("floor", "project", "project+write", "numpy")
    }
    small = _run("project", plate_path, args.wells // 4, args.repeats)
    floor = results["floor"]["gb_per_s"]
    print(
        f"\nplate: {args.wells} wells x {FIELDS} fields x {CHANNELS} ch x {PLANES} z x "
        f"{SIZE[0]}x{SIZE[1]} uint16 = {results['floor']['gb']:.2f} GB uncompressed, "
        f"{stored:.2f} GB stored; {os.cpu_count()} threads; medians of {args.repeats}"
    )
    print(f"{'variant':<16}{'GB/s':>8}{'x floor':>9}{'seconds':>9}{'peak RSS GB':>13}")
    for kind, r in results.items():
        print(
            f"{kind:<16}{r['gb_per_s']:>8.3f}{r['gb_per_s'] / floor:>9.2f}"
            f"{r['seconds']:>9.1f}{r['peak_rss_gb']:>13.2f}"
        )
    ratio = results["project"]["peak_rss_gb"] / small["peak_rss_gb"]
    print(
        f"project peak RSS: {args.wells // 4} wells {small['peak_rss_gb']:.2f} GB, "
        f"{args.wells} wells {results['project']['peak_rss_gb']:.2f} GB (x{ratio:.2f})"
    )
    if not args.keep:
        shutil.rmtree(plate_path.parent / "projected.zarr", ignore_errors=True)
        shutil.rmtree(plate_path, ignore_errors=True)


if __name__ == "__main__":
    main()
