"""Crop extraction and embedding throughput against same-run baselines.

Usage::

    python benchmarks/bench_crops_embed.py [--wells 8] [--fields 4] [--size 1080]
        [--crop 64] [--repeats 3] [--arch resnet18] [--batch-size 64]

A synthetic projected plate (``wells`` × ``fields`` × 2 channels × ``size``² uint16, default
codec) is written once; cells are placed at random in every field, 30 or 300 per field
(their table holds the columns ``extract_crops`` reads). Medians of ``repeats``.

Crops (``crop`` × ``crop``, no mask), cells per second:

- ``per-cell loop``: seed 000's way: for each cell, read its field image from the store
  and slice the box;
- ``in-memory slicing``: every field already in memory as NumPy, each box sliced (the floor:
  no reading at all);
- ``zarr read ..., then slicing``: each field read through zarr once, its boxes sliced (one
  thread);
- ``chunk files decoded, then cut_field``: each field's chunk files decoded as
  ``extract_crops`` reads them, its crops cut (one thread); as many times that rate as the
  machine has cores bounds anything that reads the plate;
- ``extract_crops``: from the on-disk plate, computed on the local threaded scheduler, every
  field's crops as their own array as in the baselines (the graph is built before the
  timing; its cost is printed).

Embeddings (``arch``, its first convolution adapted to 2 channels, random weights, CPU,
float32, ``batch-size`` crops per call), cells per second:

- ``forward on preloaded tensors``: the crops of the whole plate already cut, normalised
  and made torch tensors in this process, the model called batch after batch on one
  thread (as a dask worker thread calls it: torch's intra-op threads are per thread);
- ``embed(extract_crops(...))``: crops cut from the on-disk plate by a CPU worker and streamed
  into the same model on a GPU-tagged worker, never stored (a LocalCluster of one CPU and
  one GPU-tagged worker, in-process threads, so torch has the same threads as the baseline).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench-data" / "crops"


def make_plate(path: Path, wells: int, fields: int, size: int) -> None:
    import cellscale
    from cellscale.testing import synthetic_plate

    if not (path / "zarr.json").exists():
        plate = synthetic_plate(wells=wells, fields=fields, n_z=1, shape=(size, size), seed=4)
        cellscale.write_plate(cellscale.project(plate, "max"), path, progress=False)


def cell_table(plate, per_field: int, seed: int = 0) -> pd.DataFrame:
    """``per_field`` cells at random positions in every field, in cell-table order."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in plate.coords["t"].values:
        for well in plate.coords["well"].values:
            for field in plate.coords["field"].values:
                centres = rng.uniform(0, plate.sizes["y"], (per_field, 2))
                for i, (y, x) in enumerate(centres):
                    rows.append((t, well, int(field), i + 1, y, x))
    table = pd.DataFrame(
        rows,
        columns=[
            "Metadata_Timepoint", "Metadata_Well", "Metadata_Site", "Metadata_ObjectNumber",
            "Nuclei_AreaShape_Center_Y", "Nuclei_AreaShape_Center_X",
        ],
    )  # fmt: skip
    table.insert(0, "cell_id", np.arange(len(table), dtype=np.int64))
    return table


def _median_rate(n: int, run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return n / statistics.median(times)


def crops(path: Path, per_field: int, crop: int, repeats: int) -> None:
    import dask
    import zarr

    import cellscale
    from cellscale.crops import cut_field, extract_crops
    from cellscale.io._chunk_files import read_chunk_file

    plate = cellscale.open_plate(path)
    table = cell_table(plate, per_field)
    columns = ["Nuclei_AreaShape_Center_Y", "Nuclei_AreaShape_Center_X"]
    root = zarr.open_group(str(path), mode="r")
    boxes = (crop, crop)

    fields = {
        (str(w), int(f)): plate.sel(well=w, field=f).values[0, 0]
        for w in plate.coords["well"].values
        for f in plate.coords["field"].values
    }
    grouped = [
        (
            fields[(str(w), int(f))],
            rows[["Nuclei_AreaShape_Center_Y", "Nuclei_AreaShape_Center_X"]].to_numpy(),
        )
        for (w, f), rows in table.groupby(["Metadata_Well", "Metadata_Site"], sort=False)
    ]

    def in_memory() -> None:
        for image, centres in grouped:
            half = crop // 2
            for y, x in np.floor(centres + 0.5).astype(int) - half:
                image[:, max(y, 0) : y + crop, max(x, 0) : x + crop].copy()

    def decode_and_cut() -> None:
        for (well, field), rows in table.groupby(["Metadata_Well", "Metadata_Site"], sort=False):
            array = root[f"{str(well)[0]}/{str(well)[1:]}/{field}/0"]
            planes = [read_chunk_file(array, (0, c, 0, 0, 0))[0, 0, 0] for c in range(2)]
            cut_field(planes, rows[columns].to_numpy(), boxes)

    def read_and_slice() -> None:
        for (well, field), rows in table.groupby(["Metadata_Well", "Metadata_Site"], sort=False):
            image = root[f"{str(well)[0]}/{str(well)[1:]}/{field}/0"][0, :, 0]
            half = crop // 2
            centres = rows[["Nuclei_AreaShape_Center_Y", "Nuclei_AreaShape_Center_X"]].to_numpy()
            for y, x in np.floor(centres + 0.5).astype(int) - half:
                image[:, max(y, 0) : y + crop, max(x, 0) : x + crop].copy()

    cores = os.cpu_count() or 1
    n = len(table)
    sample = table.iloc[: max(1, n // 20)]  # the per-cell loop is slow: time a twentieth of it
    loop_rate = _median_rate(len(sample), lambda: _loop_on(sample, root, boxes), repeats)
    floor = _median_rate(n, in_memory, repeats)
    read_floor = _median_rate(n, read_and_slice, repeats)
    decode_floor = _median_rate(n, decode_and_cut, repeats)
    start = time.perf_counter()
    lazy = extract_crops(cellscale.open_plate(path), table, size=crop)
    build = time.perf_counter() - start
    ours = _median_rate(n, lambda: dask.compute(*lazy.data.to_delayed().ravel()), repeats)
    print(f"\ncrops: {per_field} cells per field, {n} cells, {crop}x{crop}, 2 channels")
    print(f"  per-cell loop (read the field, slice)  {loop_rate:10.0f} cells/s")
    print(f"  in-memory slicing (the floor)          {floor:10.0f} cells/s")
    print(f"  zarr read of each field, then slicing  {read_floor:10.0f} cells/s  (1 thread)")
    print(
        f"  chunk files decoded, then cut_field    {decode_floor:10.0f} cells/s  (1 thread; "
        f"{cores} cores at most {cores * decode_floor / floor:.3f}x the in-memory floor)"
    )
    print(
        f"  extract_crops from the on-disk plate   {ours:10.0f} cells/s  "
        f"({ours / loop_rate:.0f}x the loop, {ours / floor:.3f}x the in-memory floor, "
        f"{ours / (cores * decode_floor):.2f}x its {cores}-core bound)"
    )
    print(f"  (opening the plate and building the crops' graph: {build:.2f} s, not timed above)")


def _loop_on(table: pd.DataFrame, root, box) -> None:
    from cellscale.crops import cut_field

    for row in table.itertuples():
        well = str(row.Metadata_Well)
        image = root[f"{well[0]}/{well[1:]}/{row.Metadata_Site}/0"][0, :, 0]
        centre = np.array([[row.Nuclei_AreaShape_Center_Y, row.Nuclei_AreaShape_Center_X]])
        cut_field(image, centre, box)


def embeddings(path: Path, per_field: int, crop: int, arch: str, batch: int, repeats: int) -> None:
    import torch

    import cellscale
    from cellscale.crops import extract_crops
    from cellscale.embedding import embed
    from cellscale.embedding._torch import TorchEmbedder

    plate = cellscale.open_plate(path)
    table = cell_table(plate, per_field, seed=1)
    model = TorchEmbedder(arch, in_channels=2, device="cpu", batch_size=batch)
    preloaded = extract_crops(plate, table, size=crop).values
    model.load()  # the network is built once, outside every timing
    tensors = [
        model.prepare_batch(preloaded[i : i + batch]) for i in range(0, len(preloaded), batch)
    ]

    def forward() -> None:
        for tensor in tensors:
            model.run_batch(tensor)

    n = len(table)
    with ThreadPoolExecutor(1) as thread:  # a thread like a dask worker's: the same torch threads
        thread.submit(forward).result()  # warm-up: the thread's torch pool, untimed
        base = thread.submit(_median_rate, n, forward, repeats).result()
        threads = thread.submit(torch.get_num_threads).result()
    with cellscale.start_cluster(
        "local", n_workers=1, gpu_workers=1, processes=False, threads_per_worker=1, quiet=True
    ) as client:
        lazy = embed(extract_crops(cellscale.open_plate(path), table, size=crop), model)

        def streamed() -> None:
            client.compute(lazy.data, sync=True)

        streamed()  # warm-up, untimed, as for the baseline
        ours = _median_rate(n, streamed, repeats)
    print(
        f"\nembeddings: {arch}, {per_field} cells per field, {n} cells, {crop}x{crop}, "
        f"batch {batch}, {threads} torch thread(s) per task thread"
    )
    print(f"  forward on preloaded tensors      {base:8.1f} cells/s  (1.00)")
    print(f"  embed(extract_crops(...)) on disk {ours:8.1f} cells/s  ({ours / base:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--wells", type=int, default=8)
    parser.add_argument("--fields", type=int, default=4)
    parser.add_argument("--size", type=int, default=1080)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--parts", nargs="+", default=["crops", "embed"])
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / "plate.zarr"
    make_plate(path, args.wells, args.fields, args.size)
    try:
        for per_field in (30, 300):
            if "crops" in args.parts:
                crops(path, per_field, args.crop, args.repeats)
            if "embed" in args.parts:
                embeddings(path, per_field, args.crop, args.arch, args.batch_size, args.repeats)
    finally:
        if not args.keep:
            shutil.rmtree(DATA, ignore_errors=True)


if __name__ == "__main__":
    main()
