"""GPU figures of the two GPU stages, each next to its model's raw forward on preloaded tensors.

Usage (on a machine with an NVIDIA GPU and no network; wheels from ``gpu_wheels.sh``)::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:. python3 benchmarks/bench_gpu.py --out "$OUT"

    python benchmarks/bench_gpu.py --device cpu --wells 1 --fields 2 --size 256   # a smoke run

Two parts, each on a LocalCluster of CPU workers (all cores but two) and one GPU-tagged
worker, data written under ``--data`` first and not timed:

- **embed**: the cell pass (:func:`cellscale.embedding.write_cell_pass`: every field read
  once, measured, its crops cut and streamed to the GPU-tagged embedder) of a synthetic
  projected plate (``wells`` × ``fields`` × 3 channels × ``size``², its classical labels
  written beforehand), with a ResNet-50 on ``crop``-pixel soft-masked crops, resized to
  224 and run in bf16 on the GPU. Baseline: the same :class:`~cellscale.embedding.TorchEmbedder`
  on the same crops, cut, normalised, resized and moved to the device beforehand, its
  network called batch after batch (``run_batch``), synchronised. Cells per second.
- **cellpose**: :func:`cellscale.segment` with ``method="cellpose"`` (tiles of several
  fields pooled into each network call) written with :func:`cellscale.write_labels`, on
  ``cellpose-fields`` fields of ``size``², cellpose 4's ``cpsam`` architecture with
  randomly initialised weights saved to a file (speed does not depend on the weights).
  Baseline: the same network on as many 256-pixel tiles as cellpose's ``run_net`` cuts
  from those fields (tile overlap 0.1), already on the device in bf16, 32 per call (the
  segmenter's batch). Fields per second; the pipeline's figure includes cellpose's mask
  dynamics, which the raw forward does not do.

Prints each figure, its baseline and the ratio (target ≥ 0.9×), and writes them to
``--out``/gpu.json. Never needed by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _sync(torch: Any, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _cluster(device: str) -> Any:
    import cellscale

    cpus = max((os.cpu_count() or 2) - 2, 1)
    return cellscale.start_cluster(
        "local", n_workers=cpus, threads_per_worker=1, gpu_workers=1, quiet=True
    )


def prepare_plate(data: Path, wells: int, fields: int, size: int) -> tuple[Any, Any]:
    """The projected plate and its classical labels on disk (made once)."""
    import cellscale
    from cellscale.synthetic import synthetic_plate

    plate_path = data / "projected.zarr"
    if not (data / ".complete").exists():
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        plate = synthetic_plate(
            wells=wells,
            fields=fields,
            n_z=1,
            channels=("nuclei", "cytoplasm", "mito"),
            shape=(size, size),
            cells_per_field=25.0 * (size / 256) ** 2,
            seed=1,
        )
        cellscale.write_plate(cellscale.project(plate, "max"), plate_path, progress=False)
        projected = cellscale.open_plate(plate_path)
        labels = cellscale.segment(projected, channel="cytoplasm", nuclei_channel="nuclei")
        cellscale.write_labels(labels, plate_path, progress=False)
        (data / ".complete").touch()
    projected = cellscale.open_plate(plate_path)
    return projected, cellscale.open_labels(plate_path)


def embed_part(args: argparse.Namespace, device: str) -> dict[str, float]:
    """The cell pass's cells/s against the raw forward on preloaded batches."""
    import torch

    import cellscale
    from cellscale.embedding import TorchEmbedder
    from cellscale.embedding._cell_pass import write_cell_pass

    plate, labels = prepare_plate(args.data / "plate", args.wells, args.fields, args.size)

    def model() -> TorchEmbedder:
        return TorchEmbedder(
            args.arch, in_channels=3, resize=224, batch_size=args.batch_size, device=device
        )

    out = args.data / "pass"
    with _cluster(device) as client:
        for _ in range(2):  # the first run loads the network on the GPU-tagged worker
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            write_cell_pass(
                labels,
                plate,
                out / "cells.parquet",
                out / "embeddings.zarr",
                model(),
                size=args.crop,
                mask="soft",
                client=client,
                progress=False,
            )
            fused = time.perf_counter() - start
    cells = cellscale.read_cells(out / "cells.parquet").compute()
    crops = cellscale.extract_crops(plate, cells, size=args.crop, mask="soft", labels=labels)
    values = np.asarray(crops.data.compute(scheduler="threads"))
    embedder = model()
    prepared = [
        embedder.prepare_batch(values[i : i + args.batch_size])
        for i in range(0, len(values), args.batch_size)
    ]
    embedder.run_batch(prepared[0])  # warm up (kernels chosen, memory pooled)
    _sync(torch, device)
    start = time.perf_counter()
    for batch in prepared:
        embedder.run_batch(batch)
    _sync(torch, device)
    raw = time.perf_counter() - start
    n = len(values)
    result = {"cells": n, "pass_cells_per_s": n / fused, "raw_cells_per_s": n / raw}
    result["ratio"] = result["pass_cells_per_s"] / result["raw_cells_per_s"]
    print(
        f"embed ({args.arch}, {args.crop}-px soft crops resized to 224, {device}), {n} cells:\n"
        f"  raw forward on preloaded batches   {result['raw_cells_per_s']:9.1f} cells/s\n"
        f"  the cell pass (read, measure, cut, embed, write)  {result['pass_cells_per_s']:9.1f}"
        f" cells/s  ({result['ratio']:.2f}x, target >= 0.9x)",
        flush=True,
    )
    return result


def cellpose_part(args: argparse.Namespace, device: str) -> dict[str, float]:
    """Pooled cellpose segmentation's fields/s against the network's raw forward."""
    import torch
    from cellpose import models
    from cellpose.vit import CPSAM

    import cellscale

    data = args.data / "cellpose"
    weights = data / "random_cpsam.pt"
    if not weights.exists():
        data.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(CPSAM().state_dict(), weights)
    n_fields = args.cellpose_fields
    wells = max(n_fields // 4, 1)
    plate, _ = prepare_plate(args.data / "cellpose-plate", wells, 4, args.size)
    out = data / "labels.zarr"
    with _cluster(device) as client:
        for _ in range(2):  # the first run loads the network on the GPU-tagged worker
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(args.data / "cellpose-plate" / "projected.zarr", out)
            labels = cellscale.segment(
                cellscale.open_plate(out),
                "cellpose",
                channel="cytoplasm",
                model=str(weights),
                device=device,
            )
            start = time.perf_counter()
            cellscale.write_labels(labels, out, overwrite=True, client=client, progress=False)
            pooled = time.perf_counter() - start
    fields = int(plate.sizes["well"] * plate.sizes["field"])
    net = models.CellposeModel(pretrained_model=str(weights), device=torch.device(device)).net
    side = 1 if args.size <= 256 else int(np.ceil(1.2 * args.size / 256))  # run_net's tiling
    per_field = side * side
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tiles = per_field * fields
    batch = torch.randn(min(32, tiles), 3, 256, 256, device=device, dtype=dtype)
    calls = -(-tiles // len(batch))
    with torch.no_grad():
        net.to(dtype)(batch)
        _sync(torch, device)
        start = time.perf_counter()
        for _ in range(calls):
            net(batch)
        _sync(torch, device)
    raw = time.perf_counter() - start
    result = {
        "fields": fields,
        "pooled_fields_per_s": fields / pooled,
        "raw_fields_per_s": fields / raw,
    }
    result["ratio"] = result["pooled_fields_per_s"] / result["raw_fields_per_s"]
    print(
        f"cellpose (cpsam, random weights, {device}), {fields} fields of {args.size}^2, "
        f"{per_field} tiles each:\n"
        f"  raw forward on preloaded tiles     {result['raw_fields_per_s']:9.2f} fields/s\n"
        f"  segment + write_labels, tiles pooled  {result['pooled_fields_per_s']:9.2f} fields/s"
        f"  ({result['ratio']:.2f}x, target >= 0.9x)",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-data" / "gpu")
    parser.add_argument("--data", type=Path, default=ROOT / "bench-data" / "gpu-data")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--parts", nargs="+", default=["embed", "cellpose"])
    parser.add_argument("--wells", type=int, default=4)
    parser.add_argument("--fields", type=int, default=4)
    parser.add_argument("--size", type=int, default=1080)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cellpose-fields", type=int, default=16)
    args = parser.parse_args()
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; {os.cpu_count()} cores", flush=True)
    results: dict[str, Any] = {"device": name}
    if "embed" in args.parts:
        results["embed"] = embed_part(args, device)
    if "cellpose" in args.parts:
        try:
            results["cellpose"] = cellpose_part(args, device)
        except ImportError as err:
            print(f"cellpose part skipped: {err}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
