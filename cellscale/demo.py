"""The demo pipeline: a synthetic screen from pixels to single-cell profiles, on a LocalCluster.

Run it with ``cellscale demo``. It starts a LocalCluster with a CPU pool and a GPU-tagged
worker (printing the dashboard link), streams a synthetic plate with a dose series to an
OME-Zarr HCS plate, projects it (max and best focus), segments nuclei and cells with the
classical segmenter, writes NGFF labels and the cell table, cuts soft-masked single-cell
crops and embeds them with a ResNet-18 (randomly initialised: no weights can be
downloaded here; pass your own with ``TorchEmbedder(weights=...)``), fits a PCA on the
embeddings, and prints what each step made. Every step is resumable: run it again and
only what is missing is done.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import xarray as xr

__all__ = ["DemoSettings", "run_demo"]


@dataclass(frozen=True)
class DemoSettings:
    """What the demo makes; the defaults take a few minutes on two cores."""

    out: Path = Path("demo-output")
    wells: int = 8
    fields: int = 2
    timepoints: int = 2
    planes: int = 6
    channels: int = 3
    size: int = 512
    crop: int = 64
    workers: int | None = None


def run_demo(settings: DemoSettings) -> None:
    """Run the demo pipeline and print its summary."""
    import cellscale
    from cellscale.testing import synthetic_focal_planes, write_synthetic_plate

    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    _quiet_cluster_logs()
    times: dict[str, float] = {}
    with cellscale.start_cluster("local", n_workers=settings.workers, gpu_workers=1) as client:
        clock = time.perf_counter()
        plate = write_synthetic_plate(
            out / "plate.zarr",
            wells=settings.wells,
            fields=settings.fields,
            n_t=settings.timepoints,
            n_z=settings.planes,
            channels=settings.channels,
            shape=(settings.size, settings.size),
            client=client,
            progress=True,
        )
        clock = _lap(times, "plate", clock)
        cellscale.write_plate(
            cellscale.project(plate, "max"), out / "plate_max.zarr", client=client
        )
        best = cellscale.project(plate, "best_focus", focus_channel=0)
        cellscale.write_plate(best, out / "plate_best_focus.zarr", client=client)
        clock = _lap(times, "projections", clock)
        mip = cellscale.open_plate(out / "plate_max.zarr")
        labels = cellscale.segment(mip, "classical", channel="cytoplasm", nuclei_channel="nuclei")
        cellscale.write_labels(labels, out / "plate_max.zarr", client=client)
        clock = _lap(times, "segmentation", clock)
        labels = cellscale.open_labels(out / "plate_max.zarr")
        cellscale.write_cells(labels, mip, out / "cells.parquet", client=client)
        cells = cellscale.read_cells(out / "cells.parquet").compute()
        clock = _lap(times, "measurement", clock)
        crops = cellscale.extract_crops(
            mip, cells, size=settings.crop, mask="soft", labels=labels, border="pad"
        )
        features = cellscale.embed(crops, "resnet18", batch_size=64, device="auto")
        cellscale.write_embeddings(features, out / "embeddings.zarr", client=client)
        clock = _lap(times, "embedding", clock)
        pca = cellscale.PCA(10).fit(out / "embeddings.zarr")
        pca.save(out / "pca.npz")
        _lap(times, "pca", clock)
        print(_summary(plate, cells, out, times))
        print(_dose_table(cellscale.well_summary(cells, compartment="cells")))
        found = best.coords["focus_plane"].values
        truth = synthetic_focal_planes(plate).values
        print(
            f"best focus: the sharpest plane found is the true focal plane in "
            f"{(found == truth).mean():.0%} of {found.size} fields"
        )
        print(
            f"PCA of the {pca.n_features_in_}-d embeddings (ResNet-18, random weights): "
            f"the first 3 components explain {pca.explained_variance_ratio_[:3].sum():.0%}"
        )
        print(f"dashboard: {client.dashboard_link}")


def _lap(times: dict[str, float], step: str, since: float) -> float:
    now = time.perf_counter()
    times[step] = now - since
    return now


def _quiet_cluster_logs() -> None:
    """Keep dask's INFO lines (worker start/stop) out of the demo's output, in workers too."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.getLogger("distributed").setLevel(logging.WARNING)


def _summary(plate: xr.DataArray, cells: object, out: Path, times: dict[str, float]) -> str:
    stored = sum(p.stat().st_size for p in (out / "plate.zarr").rglob("*") if p.is_file())
    sizes = ", ".join(f"{d}={n}" for d, n in plate.sizes.items())
    n_cells = len(cells)  # type: ignore[arg-type]
    steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in times.items())
    return (
        f"\nplate {plate.name!r}: {sizes} {plate.dtype}\n"
        f"  {plate.nbytes / 1e6:.0f} MB of pixels stored in {stored / 1e6:.0f} MB at "
        f"{out / 'plate.zarr'} (NGFF {plate.attrs['ngff_version']})\n"
        f"  max and best-focus projections: {out}/plate_max.zarr, plate_best_focus.zarr\n"
        f"  labels (cells, nuclei) under each field of plate_max.zarr; {n_cells} cells measured "
        f"in {out / 'cells.parquet'}\n"
        f"  embeddings: {out / 'embeddings.zarr'}; PCA: {out / 'pca.npz'}\n"
        f"  time: {steps}"
    )


def _dose_table(summary: object) -> str:
    """Cells per well and their mean size and roundness, per concentration and time point."""
    import pandas as pd

    table = pd.DataFrame(summary)
    lines = ["\nper well and time point: cells, mean area (px), mean roundness (4πA/P²):"]
    header = f"{'well':<6}{'treatment':<12}{'conc. µM':>9}{'hours':>7}{'cells':>7}{'area':>8}"
    lines.append(f"  {header}{'round':>7}")
    for row in table.itertuples():
        hours = float(row.Metadata_Timepoint) / 3600
        lines.append(
            f"  {row.Metadata_Well:<6}{row.Metadata_treatment!s:<12}"
            f"{float(row.Metadata_concentration):>9.3g}{hours:>7.0f}{row.n_cells:>7d}"
            f"{row.mean_area:>8.0f}{row.mean_roundness:>7.2f}"
        )
    return "\n".join(lines)
