"""Segmentation: accuracy on real data, and throughput against same-run baselines.

Usage::

    python benchmarks/bench_segment.py [--parts accuracy throughput cellpose]
        [--wells 8] [--fields 4] [--size 512] [--repeats 3] [--cellpose-fields 4]

- ``accuracy``: the classical segmenter on the real BBBC039 and DSB 2018 fluorescence
  nuclei with manual ground truth (see ``bench_segment_accuracy.py``, which this runs), next
  to a plain Otsu + distance-transform watershed.
- ``throughput``: fields/s of ``segment`` + ``write_labels`` from an on-disk projected plate
  on a LocalCluster (2 worker processes × 1 thread, the default on 2 cores) against the
  same segmenter called in a plain loop over the same fields already in memory (one
  process). Medians of ``repeats``; each run writes new labels.
- ``cellpose``: cellpose 4 (``cpsam`` architecture, randomly initialised weights saved to a
  file: no trained weights can be downloaded here; speed does not depend on the weights)
  on ``cellpose-fields`` fields of ``size`` px: ``CellposeSegmenter`` pooling the tiles of all
  fields into its network batches against cellpose's own ``CellposeModel.eval`` on the same
  list of fields, same model, batch size and precision; seconds per field for each.

Data goes to bench-data/segment/ (git-ignored) and is deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench-data" / "segment"


def make_plate(path: Path, wells: int, fields: int, size: int) -> Path:
    """A projected synthetic plate (nuclei + cytoplasm) on disk, written once."""
    import cellscale
    from cellscale.testing import synthetic_plate

    if not (path / "zarr.json").exists():
        plate = synthetic_plate(wells=wells, fields=fields, n_z=3, shape=(size, size), seed=3)
        cellscale.write_plate(cellscale.project(plate, "max"), path, progress=False)
    return path


def throughput(plate_path: Path, repeats: int) -> None:
    import cellscale
    from cellscale.segmentation import ClassicalSegmenter

    plate = cellscale.open_plate(plate_path)
    fields = [
        plate.isel(t=t, well=w, field=f).sel(c=["nuclei"]).values[:, 0]
        for t in range(plate.sizes["t"])
        for w in range(plate.sizes["well"])
        for f in range(plate.sizes["field"])
    ]
    segmenter = ClassicalSegmenter(compartment="nuclei")
    loop = []
    for _ in range(repeats):
        start = time.perf_counter()
        for image in fields:
            segmenter(image)
        loop.append(time.perf_counter() - start)
    staged = []
    with cellscale.start_cluster("local", quiet=True) as client:
        workers = len(client.scheduler_info()["workers"])
        for _ in range(repeats):
            opened = cellscale.open_plate(plate_path)
            labels = cellscale.segment(opened, "classical", channel="nuclei")
            start = time.perf_counter()
            cellscale.write_labels(
                labels, plate_path, overwrite=True, client=client, progress=False
            )
            staged.append(time.perf_counter() - start)
    n = len(fields)
    loop_rate, staged_rate = n / statistics.median(loop), n / statistics.median(staged)
    height, width = fields[0].shape[-2:]
    print(f"\nthroughput: {n} fields of {height}x{width}, medians of {repeats}")
    print(f"  plain loop over in-memory fields (1 process)      {loop_rate:7.2f} fields/s  (1.00)")
    print(
        f"  segment + write_labels, LocalCluster ({workers} workers)  {staged_rate:7.2f} fields/s  "
        f"({staged_rate / loop_rate:.2f}x the loop)"
    )


def cellpose_speed(n_fields: int, size: int, batch_size: int) -> None:
    import torch
    from cellpose import models
    from cellpose.vit import CPSAM

    from cellscale.segmentation import CellposeSegmenter
    from cellscale.testing import blob_field

    weights = DATA / "random_cpsam.pt"
    if not weights.exists():
        torch.manual_seed(0)
        torch.save(CPSAM().state_dict(), weights)
    fields = [blob_field((size, size), 2, blobs=16, radius=10, seed=s) for s in range(n_fields)]
    model = models.CellposeModel(pretrained_model=str(weights), device=torch.device("cpu"))
    images = [np.moveaxis(f, 0, -1) for f in fields]
    start = time.perf_counter()
    model.eval(images, batch_size=batch_size, channel_axis=-1, flow_threshold=0.0)
    own = time.perf_counter() - start
    pooled = CellposeSegmenter(weights, device="cpu", batch_size=batch_size, flow_threshold=0.0)
    pooled(fields[0][:, :64, :64])  # load the network outside the timing, as eval's model is
    start = time.perf_counter()
    pooled.segment_batch(fields)
    elapsed = time.perf_counter() - start
    per_own, per_pooled = own / n_fields, elapsed / n_fields
    print(
        f"\ncellpose 4 (cpsam architecture, random weights, bf16, CPU), {n_fields} fields of "
        f"{size}x{size}, batch {batch_size}"
    )
    print(f"  CellposeModel.eval on the list (one field at a time)  {per_own:7.2f} s/field  (1.00)")
    print(
        f"  CellposeSegmenter, tiles of all fields pooled          {per_pooled:7.2f} s/field  "
        f"({per_own / per_pooled:.2f}x faster)"
    )


def accuracy(data: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_segment_accuracy.py"), "--data", data],
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--parts", nargs="+", default=["accuracy", "throughput", "cellpose"])
    parser.add_argument("--wells", type=int, default=8)
    parser.add_argument("--fields", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cellpose-fields", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    try:
        if "accuracy" in args.parts:
            accuracy(args.data)
        if "throughput" in args.parts:
            throughput(
                make_plate(DATA / "mip.zarr", args.wells, args.fields, args.size), args.repeats
            )
        if "cellpose" in args.parts:
            cellpose_speed(args.cellpose_fields, args.size, args.batch_size)
    finally:
        if not args.keep:
            shutil.rmtree(DATA, ignore_errors=True)


if __name__ == "__main__":
    main()
