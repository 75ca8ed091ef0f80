"""Opening a big plate, the cost of writing pyramids, and what reading the top level saves.

Usage::

    python benchmarks/bench_plate_layer.py [--repeats 5] [--data bench-data]

Three measurements, each in a fresh process (imports done before the clock starts),
medians of ``repeats``:

- ``open``: ``cellscale.open_plate`` of a 384-well × 9-field plate (3,456 fields) from
  its index, the same open by walking every field's metadata (the index ignored), and,
  as the floor for any walk, the time to list the store's metadata files (``os.walk``,
  no reads). The first open in a process and the median of the next ones are shown.
- ``write``: writing a plate of 48 wells × 4 fields × 2 channels of 1080 × 1080 uint16
  (read from an on-disk plate) with full resolution only (``levels=1``) against the
  default pyramid (3 levels down to 270 px), with the byte bound beside it: a pyramid
  adds 1/4 + 1/16 of the pixels to compress and write.
- ``ingest``: the same images as uncompressed TIFFs, ingested (the usual
  place a pyramid is first written);
- ``read``: reading every image of that plate at level 0 against its top level.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _rss import peak_rss_gb

OPEN_PLATE = {"wells": 384, "plate_format": 384, "fields": 9, "shape": (64, 64), "n_z": 1}
PYRAMID_PLATE = {"wells": 48, "fields": 4, "channels": 2, "n_z": 1, "shape": (1080, 1080)}


def _make(path: Path, params: dict) -> None:
    from cellscale.testing import write_synthetic_plate

    if not (path / "cellscale_index").is_dir():
        start = time.perf_counter()
        write_synthetic_plate(path, overwrite=True, progress=True, **params)
        print(f"wrote {path.name} in {time.perf_counter() - start:.0f} s", flush=True)


def _measure(kind: str, path: Path, out: Path) -> dict[str, float]:
    import dask
    import numpy as np

    import cellscale
    from cellscale.io import _hcs_read

    if kind in ("open-index", "open-walk"):
        if kind == "open-walk":
            _hcs_read.PlateIndex.read = lambda *args: None  # type: ignore[method-assign]
        times = []
        for _ in range(4):
            start = time.perf_counter()
            plate = cellscale.open_plate(path)
            times.append(time.perf_counter() - start)
        assert plate.sizes["well"] * plate.sizes["field"] == 3456
        return {"first": times[0], "warm": statistics.median(times[1:]), "rss": peak_rss_gb()}
    if kind == "list":
        start = time.perf_counter()
        names = {"zarr.json", ".zarray", ".zgroup", ".zattrs"}
        found = sum(1 for _, _, files in os.walk(path) for f in files if f in names)
        return {"first": time.perf_counter() - start, "warm": found, "rss": peak_rss_gb()}
    threads = os.cpu_count() or 1
    if kind.startswith("bound"):
        return _bound(path, levels=int(kind.removeprefix("bound-")), threads=threads)
    if kind.startswith("view"):
        return _view(path, level=int(kind.removeprefix("view-")), threads=threads)
    with dask.config.set(scheduler="threads", num_workers=threads):
        if kind.startswith("ingest"):
            levels = 1 if kind == "ingest-1" else None
            start = time.perf_counter()
            cellscale.ingest(
                path, out, "cellprofiler", levels=levels, overwrite=True, progress=False
            )
            seconds = time.perf_counter() - start
            return {"first": seconds, "warm": seconds, "rss": peak_rss_gb()}
        if kind.startswith("write"):
            levels = 1 if kind == "write-1" else None
            plate = cellscale.open_plate(path)
            start = time.perf_counter()
            cellscale.write_plate(plate, out, levels=levels, overwrite=True, progress=False)
            seconds = time.perf_counter() - start
            return {"first": seconds, "warm": seconds, "rss": peak_rss_gb()}
        level = 0 if kind == "read-0" else int(kind.removeprefix("read-"))
        plate = cellscale.open_plate(path, level=level)
        start = time.perf_counter()
        total = int(plate.sum(dim=("y", "x"), dtype=np.int64).sum().compute())
        seconds = time.perf_counter() - start
        return {"first": seconds, "warm": float(total > 0), "rss": peak_rss_gb()}


def _tiff_folder(plate_path: Path, folder: Path) -> Path:
    """The plate's images as uncompressed TIFFs named like CellProfiler's examples (once)."""
    import numpy as np
    import tifffile

    import cellscale

    if folder.is_dir():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    plate = cellscale.open_plate(plate_path)
    for well in plate.coords["well"].values:
        for field in plate.coords["field"].values:
            images = plate.sel(well=well, field=field).isel(t=0, z=0).values
            for c, image in enumerate(images):
                name = f"P_{well}f{int(field):02d}d{c}.tif"
                tifffile.imwrite(partial / name, np.ascontiguousarray(image))
    partial.rename(folder)
    return folder


def _field_arrays(path: Path, level: int) -> list:
    import zarr

    import cellscale
    from cellscale.io._store_setup import field_image_path

    plate = cellscale.open_plate(path)
    root = zarr.open_group(str(path), mode="r")
    return [
        root[f"{field_image_path(str(w), int(f))}/{level}"]
        for w in plate.coords["well"].values
        for f in plate.coords["field"].values
    ]


def _bound(path: Path, levels: int, threads: int) -> dict[str, float]:
    """Decode every level-0 image and compress it (and its downsampled levels): no file I/O."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from numcodecs import blosc

    from cellscale.io._chunks import read_chunk
    from cellscale.io._pyramid import pyramid

    arrays = _field_arrays(path, 0)
    images = [(a, c) for a in arrays for c in range(a.shape[1])]

    def work(item: tuple) -> int:
        array, c = item
        image = read_chunk(array, (slice(0, 1), slice(c, c + 1)))
        return sum(
            len(blosc.compress(np.ascontiguousarray(level), b"lz4", 5, blosc.BITSHUFFLE, 0))
            for level in pyramid(image, levels, "image")
        )

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(work, images))
    seconds = time.perf_counter() - start
    return {"first": seconds, "warm": float(total), "rss": peak_rss_gb()}


def _view(path: Path, level: int, threads: int) -> dict[str, float]:
    """Read every field's ``level`` array straight from zarr, as a viewer does."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    arrays = _field_arrays(path, level)
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda a: int(np.asarray(a[...]).sum(dtype=np.int64)), arrays))
    seconds = time.perf_counter() - start
    return {"first": seconds, "warm": float(total > 0), "rss": peak_rss_gb()}


def _run(kind: str, path: Path, out: Path, repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, __file__, "--measure", kind, "--plate", str(path), "--out", str(out)],
            check=True,
            capture_output=True,
            text=True,
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", type=Path, default=Path("bench-data"))
    parser.add_argument("--skip-open", action="store_true", help="leave out the 3,456-field plate")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--plate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_measure(args.measure, args.plate, args.out)))
        return
    args.data.mkdir(parents=True, exist_ok=True)
    big, pyramid = args.data / "open-3456.zarr", args.data / "pyramid-source.zarr"
    _make(pyramid, {**PYRAMID_PLATE, "levels": 3})
    out = args.data / "pyramid-out.zarr"
    n = args.repeats
    if not args.skip_open:
        _make(big, OPEN_PLATE)
        _open(big, out, n)
    _pyramids(pyramid, out, n)


def _open(big: Path, out: Path, n: int) -> None:
    print(f"\nopening a 384-well x 9-field plate (3,456 fields); medians of {n} processes")
    listing = _run("list", big, out, n)
    print(f"  list the metadata files ({listing['warm']:.0f}): {listing['first']:.3f} s")
    for kind in ("open-index", "open-walk"):
        r = _run(kind, big, out, n)
        print(
            f"  {kind:<11} first {r['first']:.3f} s, then {r['warm']:.3f} s "
            f"(x listing {r['first'] / listing['first']:.2f}); peak RSS {r['rss']:.2f} GB"
        )


def _pyramids(pyramid: Path, out: Path, n: int) -> None:
    print(f"\nwriting 48 wells x 4 fields x 2 ch of 1080x1080 uint16; medians of {n}")
    flat = _run("write-1", pyramid, out, n)
    levels = _run("write-3", pyramid, out, n)
    print(f"  levels=1      {flat['first']:.2f} s; peak RSS {flat['rss']:.2f} GB")
    print(
        f"  levels=3      {levels['first']:.2f} s = x{levels['first'] / flat['first']:.2f} "
        f"the level-0 write (pixel bound x{1 + 1 / 4 + 1 / 16:.4f}); "
        f"peak RSS {levels['rss']:.2f} GB"
    )
    tiffs = _tiff_folder(pyramid, pyramid.with_name("pyramid-tiffs"))
    flat_ingest, levels_ingest = _run("ingest-1", tiffs, out, n), _run("ingest-3", tiffs, out, n)
    print(
        f"  ingest of the same images as uncompressed TIFFs: levels=1 "
        f"{flat_ingest['first']:.2f} s, levels=3 {levels_ingest['first']:.2f} s = "
        f"x{levels_ingest['first'] / flat_ingest['first']:.2f}"
    )
    flat_bound, levels_bound = _run("bound-1", pyramid, out, n), _run("bound-3", pyramid, out, n)
    print(
        f"  bound: decode + compress, no files: {flat_bound['first']:.2f} s, with 3 levels "
        f"{levels_bound['first']:.2f} s = x{levels_bound['first'] / flat_bound['first']:.2f}"
    )

    print(f"\nreading every image of that plate; medians of {n}")
    for how, name in (("read", "as a lazy plate (open_plate(level=k))"), ("view", "from zarr")):
        full = _run(f"{how}-0", pyramid, out, n)
        top = _run(f"{how}-2", pyramid, out, n)
        print(
            f"  {name}: level 0 {full['first']:.3f} s, level 2 {top['first']:.3f} s = "
            f"x{full['first'] / top['first']:.1f} faster (1/16 of the pixels); "
            f"peak RSS {full['rss']:.2f} / {top['rss']:.2f} GB"
        )


if __name__ == "__main__":
    main()
