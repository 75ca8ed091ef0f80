"""Grad-CAMO throughput: Grad-CAM and the share of attention in each cell's mask, against the
forward pass alone on the same crops.

A synthetic screen of ``--wells`` x ``--fields`` fields of ``--image``² pixels (two channels,
``--cells-per-field`` cells of radius ``--radius`` pixels, the class carried by stripes in
the cells: :func:`~cellscale.synthetic._background_mark.background_mark_screen`) is drawn
and held in memory, not timed. Its ``--size``-pixel crops and each cell's mask are cut once
(:class:`~cellscale.learning.CellDataset`, per-crop normalised as training does) and kept
on the device; a randomly initialised ``--arch`` classifier (speed does not depend on the
weights) then runs, batch by batch:

- **forward**: the classifier's forward pass alone, in inference mode, predicted classes
  back on the host (what :func:`cellscale.learning.predict` does per batch).
- **gradcamo**: :func:`~cellscale.learning._gradcamo.grad_cam` (forward with the hook on
  ``--layer``, the gradient of the predicted logit back to that layer, the map upsampled)
  and :func:`~cellscale.learning._gradcamo.cell_scores` against the masks.
- **end to end**: :func:`~cellscale.learning._gradcamo.gradcamo` on the screen, crops and
  masks cut on the fly from the in-memory plate (one chunk of fields after another).

Each figure is the median over ``--repeats`` passes (after one warm-up batch); the ratios
are to the forward pass of the same repeat. Target: gradcamo ≥ 0.3x the forward pass (it
needs a backward pass). Also printed: the peak resident memory of this process (``VmHWM``).
On a GPU the passes run in bfloat16 autocast, as prediction does.

Run (CPU, 2 shared cores: one torch thread)::

    .venv/bin/python benchmarks/bench_gradcamo.py --threads 1

Run (GPU): ``python3 benchmarks/bench_gradcamo.py --device cuda --wells 24 --batch-size 256``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _rss import peak_rss_gb  # noqa: E402

TARGET = 0.3


def main() -> None:
    args = _arguments()
    import torch

    from cellscale.learning._models import build_model
    from cellscale.learning._train import _device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device, torch)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(
        f"device: {name}; torch {torch.__version__}; {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads",
        flush=True,
    )
    screen = _screen(args)
    images, masks = _crops(screen, args.size, device, torch)
    print(
        f"{len(images)} crops of {args.size}² px, 2 channels, from {args.wells} wells x "
        f"{args.fields} fields of {args.image}² px; {args.arch}, layer {args.layer}, "
        f"batches of {args.batch_size}; peak RSS after cutting {peak_rss_gb():.2f} GB",
        flush=True,
    )
    torch.manual_seed(0)
    model = build_model(args.arch, 2, 2).to(device).eval()
    rounds = [
        _round(args, model, screen, images, masks, device, torch) for _ in range(args.repeats)
    ]
    results: dict[str, Any] = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    results.update(device=name, crops=len(images), peak_rss_gb=peak_rss_gb())
    _report(results)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gradcamo.json").write_text(json.dumps(results, indent=2))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50"])
    parser.add_argument("--layer", default="backbone.layer4")
    parser.add_argument("--size", type=int, default=64, help="crop size, pixels")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: torch's; 1 on a loaded machine)"
    )
    parser.add_argument("--wells", type=int, default=8)
    parser.add_argument("--fields", type=int, default=4)
    parser.add_argument("--image", type=int, default=256, help="field size, pixels")
    parser.add_argument("--cells-per-field", type=float, default=30.0)
    parser.add_argument("--radius", type=float, default=12.0, help="cell radius, pixels")
    parser.add_argument("--out", type=Path, help="also write gradcamo.json there")
    return parser.parse_args()


def _screen(args: argparse.Namespace) -> Any:
    """The marked screen with its plate and labels computed into memory (not timed)."""
    from dataclasses import replace

    from cellscale.synthetic._background_mark import background_mark_screen

    started = time.perf_counter()
    screen = background_mark_screen(
        "cell",
        wells=args.wells,
        fields=args.fields,
        shape=(args.image, args.image),
        cells_per_field=args.cells_per_field,
        cell_radius_px=args.radius,
    )
    screen = replace(screen, plate=screen.plate.compute(), labels=screen.labels.compute())
    print(f"screen drawn in {time.perf_counter() - started:.1f} s", flush=True)
    return screen


def _crops(screen: Any, size: int, device: Any, torch: Any) -> tuple[Any, Any]:
    """Every cell's crop (as training cuts it) and mask, stacked on the device."""
    from cellscale.learning._dataset import CellDataset

    dataset = CellDataset(
        screen.plate, screen.cells, "Mark", size=size, mask="none", labels=screen.labels
    )
    images = torch.stack([dataset[i][0] for i in range(len(dataset))]).to(device)
    masks = torch.stack([torch.from_numpy(dataset.cell_mask(i)) for i in range(len(dataset))])
    return images, masks.numpy()


def _round(
    args: argparse.Namespace,
    model: Any,
    screen: Any,
    images: Any,
    masks: Any,
    device: Any,
    torch: Any,
) -> dict[str, float]:
    from cellscale.learning._gradcamo import cell_scores, grad_cam, gradcamo

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    batches = range(0, len(images), args.batch_size)

    def forward() -> None:
        with torch.inference_mode(), autocast:
            for start in batches:
                model(images[start : start + args.batch_size])["logits"].argmax(dim=1).cpu()

    def attention() -> None:
        with autocast:
            for start in batches:
                stop = start + args.batch_size
                maps, _ = grad_cam(model, images[start:stop], layer=args.layer)
                cell_scores(maps, masks[start:stop])

    def end_to_end() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cells of no attention, in a random network
            gradcamo(
                model,
                screen.source(),
                size=args.size,
                mask="none",
                layer=args.layer,
                batch_size=args.batch_size,
                device=args.device,
                progress=False,
            )

    with autocast, torch.inference_mode():
        model(images[: args.batch_size])  # warm-up
    rates = {
        name: len(images) / _seconds(run, device, torch)
        for name, run in (("forward", forward), ("gradcamo", attention), ("end_to_end", end_to_end))
    }
    return {
        "forward_cells_per_s": rates["forward"],
        "gradcamo_cells_per_s": rates["gradcamo"],
        "end_to_end_cells_per_s": rates["end_to_end"],
        "gradcamo_ratio": rates["gradcamo"] / rates["forward"],
        "end_to_end_ratio": rates["end_to_end"] / rates["forward"],
    }


def _seconds(run: Any, device: Any, torch: Any) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def _report(results: dict[str, Any]) -> None:
    verdict = "meets" if results["gradcamo_ratio"] >= TARGET else "MISSES"
    print(
        f"forward alone      {results['forward_cells_per_s']:9.1f} cells/s\n"
        f"gradcamo           {results['gradcamo_cells_per_s']:9.1f} cells/s  "
        f"{results['gradcamo_ratio']:.2f}x the forward pass ({verdict} the {TARGET}x target)\n"
        f"end to end         {results['end_to_end_cells_per_s']:9.1f} cells/s  "
        f"{results['end_to_end_ratio']:.2f}x (crops and masks cut on the fly)\n"
        f"peak RSS           {results['peak_rss_gb']:9.2f} GB",
        flush=True,
    )


if __name__ == "__main__":
    main()
