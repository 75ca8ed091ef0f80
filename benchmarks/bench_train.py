"""Training throughput: ``cellscale.learning.fit`` on crops cut on the fly, against the same
model's training step on preloaded tensors.

A small synthetic screen is written once under ``--data`` (``--plates`` plates of ``--wells``
wells × ``--fields`` fields, nuclei and cytoplasm, ``--image``² pixels, projected; classical
labels and the cell table written) and not timed. The training part of a well split
(:func:`~cellscale.learning.split_by_well`, 80 %) of a
:class:`~cellscale.learning.ScreenDataset` of :class:`~cellscale.learning.CellDataset`\\ s
(``--size``-pixel soft-masked crops cut from the stores as they are read, normalised and
augmented as :func:`cellscale.train` does, label ``treatment``) is then trained on:

- **fit**: :func:`cellscale.learning.fit` with a
  :class:`~cellscale.learning.ChunkShuffleSampler`, ``--epochs`` epochs, for each
  ``--workers`` count (DataLoader worker processes), in a fresh folder each time. Its
  samples per second count the epochs after the first, from the start of epoch 2 to
  ``fit``'s return: everything it does, checkpoints and the final model written included.
  The first epoch (and the setup before it) is printed apart.
- **baseline**: the same model (:func:`~cellscale.learning.build_model`, ``--arch``), AdamW,
  loss, batch size, precision (bfloat16 autocast on a GPU) and step (fit's own training
  epoch, ``_Trainer.train_epoch``), on the same number of batches of crops materialised once
  beforehand and already on the device, after a few warm-up steps.

Also printed, to find where the time goes: the DataLoader that ``fit`` builds, iterated
alone (batches moved to the device, no step); the time of one checkpoint as ``fit`` writes
it; and the peak resident memory of this process (``VmHWM``) after the first ``fit`` round
(before anything is preloaded) and at the end, with the largest DataLoader worker's (read
while the loader iterated alone). Each ``fit`` run is followed by one baseline epoch and the
loader alone, and its ratio is to that baseline, so that both see the same machine load;
figures are medians over ``--repeats``. Target: fit ≥ 0.8× the baseline (the data
pipeline must not starve the device). Writes the figures to ``--out``/train.json.

Run:    .venv/bin/python benchmarks/bench_train.py --plates 1 --wells 16 --fields 4 --workers 0 2 \\
        --threads 1 --repeats 3     # 2 shared cores: one torch thread (two collapse under load)
Run (GPU, wheels from ``gpu_wheels.sh``; see ``bench_gpu.py``; an estimated 5 min, not yet run)::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:. python3 benchmarks/bench_train.py --arch resnet50 --batch-size 256 \\
        --plates 8 --fields 6 --workers 0 8 --epochs 3 --repeats 2 --out "$OUT"

Smoke:  .venv/bin/python benchmarks/bench_train.py --plates 1 --wells 4 --fields 2 --size 32 \\
        --batch-size 16 --epochs 2 --repeats 1 --workers 0
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _rss import peak_rss_gb  # noqa: E402

LABEL = "treatment"  # DMSO or compound: most wells train
WARM_UP_STEPS = 5


def main() -> None:
    args = _arguments()
    data = args.data / f"{args.plates}x{args.wells}x{args.fields}-{args.image}"
    if args.prepare_only:
        prepare(data, args.plates, args.wells, args.fields, args.image)
        return
    if not (data / ".complete").exists():  # made in a child, so its memory is not counted here
        subprocess.run([sys.executable, __file__, "--prepare-only", *sys.argv[1:]], check=True)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device, torch)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(
        f"device: {name}; torch {torch.__version__}; {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads",
        flush=True,
    )
    training = training_data(data, args.size, args.seed)
    n_batches = len(training) // args.batch_size
    if n_batches < 2:
        raise SystemExit(
            f"{len(training)} training crops make {n_batches} batches of {args.batch_size}: "
            "pass a smaller --batch-size or more --wells/--fields"
        )
    n_classes = len(training.dataset.classes)
    print(
        f"{len(training)} training crops of {args.size}² px from {args.plates} plates x "
        f"{args.wells} wells x {args.fields} fields; {n_batches} batches of {args.batch_size} "
        f"per epoch; {args.arch}, {n_classes} classes",
        flush=True,
    )
    results = measure(args, training, device, n_batches)
    results.update(device=name, crops=len(training), batches_per_epoch=n_batches)
    report(args, results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.json").write_text(json.dumps(results, indent=2))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50"])
    parser.add_argument("--size", type=int, default=64, help="crop size, pixels")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="per fit run (the first is warm-up)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0], help="DataLoader workers")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: torch's; 1 on a loaded machine)"
    )
    parser.add_argument("--plates", type=int, default=2)
    parser.add_argument("--wells", type=int, default=16)
    parser.add_argument("--fields", type=int, default=4)
    parser.add_argument("--image", type=int, default=256, help="field size, pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=ROOT / "bench-data" / "train")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-data" / "train")
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is the warm-up")
    return args


def prepare(folder: Path, plates: int, wells: int, fields: int, image: int) -> None:
    """Write the synthetic screen once: projected plates, classical labels, cell tables."""
    import cellscale
    from cellscale.synthetic import synthetic_plate

    if (folder / ".complete").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    for index in range(plates):
        plate = synthetic_plate(
            wells,
            fields=fields,
            n_z=1,
            shape=(image, image),
            cells_per_field=25.0 * (image / 256) ** 2,
            seed=index,
            name=f"P{index + 1}",
        )
        store = folder / f"P{index + 1}.zarr"
        cellscale.write_plate(cellscale.project(plate, "max"), store, progress=False)
        opened = cellscale.open_plate(store)
        labels = cellscale.segment(opened, channel="cytoplasm", nuclei_channel="nuclei")
        cellscale.write_labels(labels, store, progress=False)
        cells = folder / f"P{index + 1}.cells.parquet"
        cellscale.write_cells(
            cellscale.open_labels(store), opened, cells, intensity=False, progress=False
        )
    (folder / ".complete").touch()
    print(f"screen written to {folder} in {time.perf_counter() - started:.0f} s", flush=True)


def training_data(folder: Path, size: int, seed: int) -> Any:
    """The training part of the screen's cells, crops cut on the fly as ``cellscale.train`` does."""
    from torch.utils.data import Subset

    import cellscale
    from cellscale.learning import Augment, CellDataset, ScreenDataset, split_by_well

    jitter = Augment(scale=(0.8, 1.25), shift=(-0.2, 0.2))  # cellscale.train's augmentations
    parts = [
        CellDataset(
            store,
            cellscale.read_cells(store.with_suffix(".cells.parquet")),
            LABEL,
            size=size,
            mask="soft",
            labels=store,
            augment=jitter,
            seed=seed,
        )
        for store in sorted(folder.glob("P*.zarr"))
    ]
    screen = ScreenDataset(parts)
    train = split_by_well(screen.rows, test=0.2, seed=seed).indices(screen.rows)["train"]
    return Subset(screen, train.tolist())


def measure(args: argparse.Namespace, training: Any, device: Any, n_batches: int) -> dict[str, Any]:
    """Every figure: fit per worker count, each next to a baseline epoch and the loader alone
    run just after it (so that both see the same machine load), and a checkpoint."""
    rounds: dict[int, list[dict[str, float]]] = {w: [] for w in args.workers}
    fit_rss = workers_rss = 0.0
    trainer: Any = None
    batches: list[Any] = []
    for repeat in range(args.repeats):
        for workers in args.workers:
            run = fit_run(args, training, device, workers, repeat)
            if trainer is None:  # after the first fit, before anything is preloaded
                fit_rss = peak_rss_gb()
                trainer = _trainer(args, training, device)
                batches = preload(training, n_batches, args.batch_size, device)
                warm_up(trainer, batches)
            run["baseline_samples_per_s"] = baseline_epoch(trainer, batches, repeat + 2)
            run["loader_samples_per_s"], rss = loader_alone(
                args, training, device, workers, repeat + 2
            )
            run["ratio"] = run["samples_per_s"] / run["baseline_samples_per_s"]
            workers_rss = max(workers_rss, rss)
            rounds[workers].append(run)
            print(
                f"  repeat {repeat + 1}, {workers} workers: "
                + ", ".join(f"{key} {value:.4g}" for key, value in run.items()),
                flush=True,
            )
    return {
        "fit": {w: _medians(r) for w, r in rounds.items()},
        "checkpoint_s": checkpoint_seconds(trainer, args.data / "runs" / "checkpoint"),
        "peak_rss_gb_after_fit": fit_rss,
        "peak_rss_gb": peak_rss_gb(),
        "largest_worker_rss_gb": workers_rss,
    }


class _TimedSampler:
    """A :class:`~cellscale.learning.ChunkShuffleSampler` noting when each epoch starts."""

    def __init__(self, training: Any, seed: int) -> None:
        from cellscale.learning import ChunkShuffleSampler

        self.sampler = ChunkShuffleSampler(training, seed)
        self.starts: list[float] = []

    def set_epoch(self, epoch: int) -> None:
        self.starts.append(time.perf_counter())
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Any:
        return iter(self.sampler)


def fit_run(
    args: argparse.Namespace, training: Any, device: Any, workers: int, repeat: int
) -> dict[str, float]:
    """One ``fit`` of ``--epochs`` epochs in a fresh folder: its setup, epoch 1 and the rest."""
    from cellscale.learning import fit

    out = args.data / "runs" / f"fit-{workers}-workers-{repeat}"
    shutil.rmtree(out, ignore_errors=True)
    sampler = _TimedSampler(training, args.seed)
    started = time.perf_counter()
    fit(
        training,
        arch=args.arch,
        in_channels=int(training[0][0].shape[0]),
        n_classes=len(training.dataset.classes),
        out=out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        device=device.type,
        num_workers=workers,
        sampler=sampler,
        progress=False,
    )
    ended = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    steps = (args.epochs - 1) * (len(training) // args.batch_size)
    return {
        "setup_s": sampler.starts[0] - started,
        "epoch_1_s": sampler.starts[1] - sampler.starts[0],
        "later_epochs_s": ended - sampler.starts[1],
        "samples_per_s": steps * args.batch_size / (ended - sampler.starts[1]),
    }


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def _trainer(args: argparse.Namespace, training: Any, device: Any) -> Any:
    """``fit``'s own model, optimiser and training step, built as ``fit`` builds them."""
    import torch

    from cellscale.learning._train import _autocast_dtype, _Trainer

    torch.manual_seed(args.seed)
    settings = _settings(
        args, in_channels=int(training[0][0].shape[0]), n_classes=len(training.dataset.classes)
    )
    return _Trainer(settings, device, _autocast_dtype("auto", device, torch))


def _settings(args: argparse.Namespace, *, in_channels: int, n_classes: int) -> Any:
    """``fit``'s settings for these arguments (its defaults: lr 1e-3, weight decay 1e-4)."""
    from cellscale.learning._train import _Settings

    return _Settings(
        arch=args.arch,
        in_channels=in_channels,
        n_classes=n_classes,
        n_domains=0,
        reconstruction_weight=0.0,
        adversarial_weight=0.0,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-3,
        weight_decay=1e-4,
        seed=args.seed,
    )


def preload(training: Any, n_batches: int, batch_size: int, device: Any) -> list[Any]:
    """``n_batches`` batches of the training crops, shuffled once and already on the device."""
    import numpy as np
    import torch

    order = np.random.default_rng(0).permutation(len(training))[: n_batches * batch_size]
    samples = [training[int(i)] for i in order]
    images = torch.stack([s[0] for s in samples]).to(device)
    labels = torch.tensor([s[1] for s in samples], device=device)
    domains = torch.tensor([s[2] for s in samples], device=device)
    return [
        (images[i : i + batch_size], labels[i : i + batch_size], domains[i : i + batch_size])
        for i in range(0, len(images), batch_size)
    ]


def warm_up(trainer: Any, batches: list[Any]) -> None:
    """A few steps first: kernels chosen, memory pooled."""
    from cellscale.learning._train import _deterministic

    with _deterministic(trainer.device, _torch()):
        trainer.train_epoch(1, batches[:WARM_UP_STEPS], progress=False)


def baseline_epoch(trainer: Any, batches: list[Any], epoch: int) -> float:
    """Samples per second of ``fit``'s training epoch over the preloaded batches."""
    from cellscale.learning._train import _deterministic

    with _deterministic(trainer.device, _torch()):  # as fit runs on a CPU
        started = time.perf_counter()
        trainer.train_epoch(epoch, batches, progress=False)  # ends synchronised (.tolist())
        seconds = time.perf_counter() - started
    return sum(len(b[1]) for b in batches) / seconds


def loader_alone(
    args: argparse.Namespace, training: Any, device: Any, workers: int, epoch: int
) -> tuple[float, float]:
    """Samples per second of the DataLoader ``fit`` builds, iterated without training, and
    the largest peak RSS of its worker processes (0 without workers)."""
    import torch

    from cellscale.learning import ChunkShuffleSampler
    from cellscale.learning._train import _loader

    settings = _settings(args, in_channels=0, n_classes=0)  # the loader reads only the batch
    loader = _loader(
        training, settings, epoch, ChunkShuffleSampler(training, args.seed), workers, device
    )
    started = time.perf_counter()
    count = workers_rss = 0.0
    for step, (images, labels, _domains) in enumerate(loader):
        images.to(device, non_blocking=True)
        count += len(labels)
        if step == len(loader) - 1:  # the workers are still alive
            workers_rss = _children_peak_rss_gb()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - started), workers_rss


def _children_peak_rss_gb() -> float:
    """The largest peak RSS (``VmHWM``) of this process's children, in GB."""
    import psutil

    peaks = [0.0]
    for child in psutil.Process().children():
        try:
            status = Path(f"/proc/{child.pid}/status").read_text()
        except OSError:
            continue
        peaks += [int(line.split()[1]) / 1024**2 for line in status.splitlines() if "VmHWM" in line]
    return max(peaks)


def checkpoint_seconds(trainer: Any, folder: Path) -> float:
    """The time of one checkpoint, made and written as ``fit`` does after every epoch."""
    from cellscale._stages import Fingerprint
    from cellscale.learning._checkpoint import TrainingFolder

    shutil.rmtree(folder, ignore_errors=True)
    saved = TrainingFolder(folder, Fingerprint("train", inputs={}, parameters={}))
    saved.prepare()
    started = time.perf_counter()
    saved.save(trainer.checkpoint(1, [{"epoch": 1.0}]))
    seconds = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    return seconds


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    print(
        f"\n{args.arch}, {args.size}-px crops, batch {args.batch_size}, {args.epochs} epochs per "
        f"fit; medians of {args.repeats} (each ratio is to the baseline epoch run just after):"
    )
    for workers, run in results["fit"].items():
        baseline, loader = run["baseline_samples_per_s"], run["loader_samples_per_s"]
        print(
            f"  {workers} workers:\n"
            f"    {'baseline: fit step on batches preloaded on the device':<58}"
            f"{baseline:9.1f} samples/s\n"
            f"    {f'fit, epochs 2-{args.epochs}, checkpoints included':<58}"
            f"{run['samples_per_s']:9.1f} samples/s  ({run['ratio']:.2f}x, target >= 0.8x)\n"
            f"    {'fit DataLoader alone':<58}{loader:9.1f} samples/s "
            f"({loader / baseline:.2f}x the step)\n"
            f"    fit setup {run['setup_s']:.1f} s, epoch 1 {run['epoch_1_s']:.1f} s"
        )
    first = next(iter(results["fit"].values()))
    epoch = results["batches_per_epoch"] * args.batch_size / first["baseline_samples_per_s"]
    print(
        f"  one checkpoint as fit writes it: {results['checkpoint_s']:.2f} s "
        f"({results['checkpoint_s'] / epoch:.0%} of a baseline epoch)\n"
        f"  peak RSS: {results['peak_rss_gb_after_fit']:.2f} GB after the first fit, "
        f"{results['peak_rss_gb']:.2f} GB at the end (crops preloaded); largest DataLoader "
        f"worker {results['largest_worker_rss_gb']:.2f} GB",
        flush=True,
    )


def _device(choice: str, torch: Any) -> Any:
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no GPU here; pass --device auto or cpu")
    return torch.device("cuda" if choice != "cpu" and torch.cuda.is_available() else "cpu")


def _torch() -> Any:
    import torch

    return torch


if __name__ == "__main__":
    main()
