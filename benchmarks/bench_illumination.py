"""Illumination fits on a compressed on-disk plate against the zarr read floor.

Usage::

    python benchmarks/bench_illumination.py [--wells 32] [--repeats 3] [--data bench-data]

Writes (once) a synthetic plate of ``wells`` × 4 fields × 2 channels × 1 plane of
1080 × 1080 uint16 (32 wells = 597 MB uncompressed) with the default codec, then
measures, each in a fresh process so peak RSS is its own, the median of ``repeats``:

- ``floor``: every image read with zarr alone (the I/O + decompression floor), on as
  many threads as dask's scheduler uses;
- ``mean``: ``fit_illumination(open_plate(path), method="mean")``, every field read once;
- ``basic``: the same with ``method="basic"`` (every field up to its 500-field sample);
- peak RSS of both fits for N = wells/4 and 4N = wells.

Throughputs are uncompressed input bytes per second; ``x floor`` is the fit's over the
floor's (1 would be a fit as fast as reading the plate).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _rss import peak_rss_gb

FIELDS, CHANNELS, SIZE = 4, 2, (1080, 1080)
FITS = ("mean", "basic")


def _make_plate(path: Path, wells: int) -> None:
    from cellscale.testing import write_synthetic_plate

    if (path / "zarr.json").exists():
        return
    start = time.perf_counter()
    write_synthetic_plate(
        path,
        wells=wells,
        fields=FIELDS,
        n_z=1,
        channels=CHANNELS,
        shape=SIZE,
        overwrite=True,
        progress=True,
    )
    print(f"generated and wrote the plate in {time.perf_counter() - start:.0f} s", flush=True)


def _measure(kind: str, plate_path: Path, wells: int) -> dict[str, float]:
    import dask

    import cellscale
    from cellscale.illumination import fit_illumination

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
        units = [(a, c) for a in arrays for c in range(CHANNELS)]
        with ThreadPoolExecutor(threads) as pool:
            total = float(sum(pool.map(lambda u: int(u[0][0, u[1]].sum()), units)))
    elif kind in FITS:
        with dask.config.set(scheduler="threads", num_workers=threads):
            model = fit_illumination(plate, method=kind, progress=False)  # type: ignore[arg-type]
        total = float(model.flatfield.sum())
    else:
        raise ValueError(kind)
    seconds = time.perf_counter() - start
    return {
        "gb_per_s": nbytes / seconds / 1e9,
        "seconds": seconds,
        "gb": nbytes / 1e9,
        "peak_rss_gb": peak_rss_gb(),
        "checksum": total,
    }


def _run(kind: str, plate_path: Path, wells: int, repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        command = [sys.executable, __file__, "--measure", kind, "--plate", str(plate_path)]
        out = subprocess.run(
            [*command, "--wells", str(wells)], check=True, capture_output=True, text=True
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--wells", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("bench-data"))
    parser.add_argument("--keep", action="store_true", help="keep the plate afterwards")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--plate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_measure(args.measure, args.plate, args.wells)))
        return

    plate_path = args.data / "illumination-bench.zarr"
    _make_plate(plate_path, args.wells)
    stored = sum(p.stat().st_size for p in plate_path.rglob("*") if p.is_file()) / 1e9
    _run("floor", plate_path, args.wells, 1)  # warm the page cache for every variant alike
    results = {kind: _run(kind, plate_path, args.wells, args.repeats) for kind in ("floor", *FITS)}
    small = {kind: _run(kind, plate_path, args.wells // 4, args.repeats) for kind in FITS}
    floor = results["floor"]["gb_per_s"]
    print(
        f"\nplate: {args.wells} wells x {FIELDS} fields x {CHANNELS} ch x 1 z x "
        f"{SIZE[0]}x{SIZE[1]} uint16 = {results['floor']['gb']:.2f} GB uncompressed, "
        f"{stored:.2f} GB stored; {os.cpu_count()} threads; medians of {args.repeats}"
    )
    print(f"{'variant':<10}{'GB/s':>8}{'x floor':>9}{'seconds':>9}{'peak RSS GB':>13}")
    for kind, r in results.items():
        print(
            f"{kind:<10}{r['gb_per_s']:>8.3f}{r['gb_per_s'] / floor:>9.2f}"
            f"{r['seconds']:>9.1f}{r['peak_rss_gb']:>13.2f}"
        )
    for kind in FITS:
        ratio = results[kind]["peak_rss_gb"] / small[kind]["peak_rss_gb"]
        print(
            f"{kind} peak RSS: {args.wells // 4} wells {small[kind]['peak_rss_gb']:.2f} GB, "
            f"{args.wells} wells {results[kind]['peak_rss_gb']:.2f} GB (x{ratio:.2f}); "
            f"{args.wells // 4} wells {small[kind]['seconds']:.1f} s"
        )
    if not args.keep:
        shutil.rmtree(plate_path, ignore_errors=True)


if __name__ == "__main__":
    main()
