"""Image QC of an on-disk plate against the zarr-read floor, and its peak memory at N and 4N wells.

Usage::

    python benchmarks/bench_qc.py [--wells 32] [--repeats 3] [--data bench-data] [--keep]

Writes (once) a synthetic plate of ``wells`` × 4 fields × 2 channels × 1 plane of
1080 × 1080 uint16 (32 wells = 0.60 GB uncompressed) with the default codec, then
measures, each in a fresh process so peak RSS is its own, the median of ``repeats`` rounds
that run every variant once (so a load that drifts reaches them alike):

- ``floor``: every image read with zarr alone (the I/O + decompression floor), on as
  many threads as dask's scheduler uses;
- ``read``: ``cellscale.open_plate`` → a per-image sum, the plate's own read path (which
  can beat the zarr floor: it decodes chunk files without zarr's indexing machinery);
- ``qc``: ``cellscale.qc(open_plate(path))``, the whole QC table (``distributed``,
  which ``qc`` imports to look for a client, is imported before the clock starts);
- peak RSS of ``qc`` for N = wells/4 and 4N = wells.

All throughputs are uncompressed input bytes per second. CPU seconds (user + system of the
measuring process) are printed too, with the floor's CPU time over each variant's: on a
machine shared with other work, that ratio moves less than the wall-clock one.
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

from _rss import peak_rss_gb

FIELDS, CHANNELS, PLANES, SIZE = 4, 2, 1, (1080, 1080)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


def _floor(plate_path: Path, plate: Any, threads: int) -> float:
    import zarr

    root = zarr.open_group(str(plate_path), mode="r")
    arrays = [
        root[f"{str(w)[0]}/{str(w)[1:]}/{f}/0"]
        for w in plate.coords["well"].values
        for f in plate.coords["field"].values
    ]
    units = [(a, t, c) for a in arrays for t in range(plate.sizes["t"]) for c in range(CHANNELS)]
    with ThreadPoolExecutor(threads) as pool:
        return float(sum(pool.map(lambda u: int(u[0][u[1], u[2]].sum()), units)))


def _measure(kind: str, plate_path: Path, wells: int) -> dict[str, float]:
    import dask

    import cellscale
    from cellscale.quality import qc

    plate = cellscale.open_plate(plate_path).isel(well=slice(0, wells))
    nbytes = plate.nbytes
    threads = os.cpu_count() or 1
    start, cpu = time.perf_counter(), _cpu_seconds()
    if kind == "floor":
        total = _floor(plate_path, plate, threads)
    elif kind == "read":
        with dask.config.set(scheduler="threads", num_workers=threads):
            total = float(plate.sum(dim=("z", "y", "x")).sum().compute())
    elif kind == "qc":
        import distributed  # noqa: F401  (imported by qc's first call; an import, not QC work)

        start, cpu = time.perf_counter(), _cpu_seconds()
        with dask.config.set(scheduler="threads", num_workers=threads):
            total = float(qc(plate, progress=False)["mean"].sum())
    else:
        raise ValueError(kind)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    return {
        "gb_per_s": nbytes / seconds / 1e9,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "gb": nbytes / 1e9,
        "peak_rss_gb": peak_rss_gb(),
        "checksum": total,
    }


def _run(kinds: list[str], plate_path: Path, wells: int, repeats: int) -> dict[str, dict]:
    """Medians over ``repeats`` rounds, each running every kind once: load drifts evenly."""
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for _ in range(repeats):
        for kind in kinds:
            command = [sys.executable, __file__, "--measure", kind, "--plate", str(plate_path)]
            out = subprocess.run(
                [*command, "--wells", str(wells)], check=True, capture_output=True, text=True
            )
            runs[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        kind: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for kind, rs in runs.items()
    }


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

    plate_path = args.data / "qc-bench.zarr"
    _make_plate(plate_path, args.wells)
    stored = sum(p.stat().st_size for p in plate_path.rglob("*") if p.is_file()) / 1e9
    _run(["floor"], plate_path, args.wells, 1)  # warm the page cache for every variant alike
    results = _run(["floor", "read", "qc"], plate_path, args.wells, args.repeats)
    small = _run(["qc"], plate_path, args.wells // 4, args.repeats)["qc"]
    floor = results["floor"]
    print(
        f"\nplate: {args.wells} wells x {FIELDS} fields x {CHANNELS} ch x {PLANES} z x "
        f"{SIZE[0]}x{SIZE[1]} uint16 = {floor['gb']:.2f} GB uncompressed, "
        f"{stored:.2f} GB stored; {os.cpu_count()} threads; medians of {args.repeats}"
    )
    print(
        f"{'variant':<10}{'GB/s':>8}{'x floor':>9}{'seconds':>9}{'CPU s':>8}"
        f"{'x floor CPU':>13}{'peak RSS GB':>13}"
    )
    for kind, r in results.items():
        print(
            f"{kind:<10}{r['gb_per_s']:>8.3f}{r['gb_per_s'] / floor['gb_per_s']:>9.2f}"
            f"{r['seconds']:>9.2f}{r['cpu_seconds']:>8.2f}"
            f"{floor['cpu_seconds'] / r['cpu_seconds']:>13.2f}{r['peak_rss_gb']:>13.2f}"
        )
    qc, read = results["qc"], results["read"]
    print(
        f"qc against cellscale's own read path: x{qc['gb_per_s'] / read['gb_per_s']:.2f} "
        f"(wall), x{read['cpu_seconds'] / qc['cpu_seconds']:.2f} (CPU)"
    )
    ratio = results["qc"]["peak_rss_gb"] / small["peak_rss_gb"]
    print(
        f"qc peak RSS: {args.wells // 4} wells {small['peak_rss_gb']:.2f} GB, "
        f"{args.wells} wells {results['qc']['peak_rss_gb']:.2f} GB (x{ratio:.2f})"
    )
    if not args.keep:
        shutil.rmtree(plate_path, ignore_errors=True)


if __name__ == "__main__":
    main()
