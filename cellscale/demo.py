"""The demo pipeline: a synthetic screen written as OME-Zarr, projected, summarised.

Run it with ``cellscale demo``. It starts a LocalCluster (printing the dashboard link),
streams a synthetic plate with a dose series to an OME-Zarr HCS plate, projects it
(max and best focus) into new plates, and prints what it made and what the
projections show.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["DemoSettings", "run_demo"]


@dataclass(frozen=True)
class DemoSettings:
    """What the demo makes; the defaults take about a minute on two cores."""

    out: Path = Path("demo-output")
    wells: int = 8
    fields: int = 2
    timepoints: int = 2
    planes: int = 6
    channels: int = 3
    size: int = 512
    workers: int | None = None


def run_demo(settings: DemoSettings) -> None:
    """Run the demo pipeline and print its summary."""
    import cellscale
    from cellscale.testing import synthetic_focal_planes, write_synthetic_plate

    settings.out.mkdir(parents=True, exist_ok=True)
    _quiet_cluster_logs()
    with cellscale.start_cluster("local", n_workers=settings.workers) as client:
        start = time.perf_counter()
        plate = write_synthetic_plate(
            settings.out / "plate.zarr",
            wells=settings.wells,
            fields=settings.fields,
            n_t=settings.timepoints,
            n_z=settings.planes,
            channels=settings.channels,
            shape=(settings.size, settings.size),
            overwrite=True,
            client=client,
            progress=True,
        )
        written = time.perf_counter()
        mip = cellscale.project(plate, "max")
        cellscale.write_plate(mip, settings.out / "plate_max.zarr", overwrite=True, client=client)
        best = cellscale.project(plate, "best_focus", focus_channel=0)
        cellscale.write_plate(
            best, settings.out / "plate_best_focus.zarr", overwrite=True, client=client
        )
        projected = time.perf_counter()
        found = best.coords["focus_plane"].values
        truth = synthetic_focal_planes(plate).values
        print(_summary(plate, settings.out, written - start, projected - written))
        print(_dose_table(cellscale.open_plate(settings.out / "plate_max.zarr")))
        print(
            f"best focus: the sharpest plane found is the true focal plane in "
            f"{(found == truth).mean():.0%} of {found.size} fields"
        )
        print(f"dashboard: {client.dashboard_link}")


def _quiet_cluster_logs() -> None:
    """Keep dask's INFO lines (worker start/stop) out of the demo's output, in workers too."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.getLogger("distributed").setLevel(logging.WARNING)


def _summary(plate: xr.DataArray, out: Path, write_s: float, project_s: float) -> str:
    stored = sum(p.stat().st_size for p in (out / "plate.zarr").rglob("*") if p.is_file())
    sizes = ", ".join(f"{d}={n}" for d, n in plate.sizes.items())
    return (
        f"\nplate {plate.name!r}: {sizes} {plate.dtype}\n"
        f"  {plate.nbytes / 1e6:.0f} MB of pixels stored in {stored / 1e6:.0f} MB at "
        f"{out / 'plate.zarr'} (NGFF {plate.attrs['ngff_version']}), written in {write_s:.1f} s\n"
        f"  max and best-focus projections written to {out}/plate_max.zarr and "
        f"plate_best_focus.zarr in {project_s:.1f} s"
    )


def _dose_table(mip: xr.DataArray) -> str:
    """Mean nuclei intensity of the max projection per concentration and time point."""
    nuclei = mip.isel(c=0, z=0).astype(np.float64).mean(dim=("field", "y", "x")).compute()
    lines = ["\nmean nuclei-channel intensity of the max projection, per well and time point:"]
    hours = "".join(f"{format(float(t) / 3600, 'g') + ' h':>10}" for t in mip.coords["t"].values)
    lines.append(f"  {'well':<6}{'treatment':<12}{'conc. µM':>9}{hours}")
    for well in mip.coords["well"].values:
        row = nuclei.sel(well=well)
        treatment = str(mip.coords["treatment"].sel(well=well).item())
        concentration = float(mip.coords["concentration"].sel(well=well).item())
        lines.append(
            f"  {well:<6}{treatment:<12}{concentration:>9.3g}"
            + "".join(f"{float(v):>10.0f}" for v in row.values)
        )
    return "\n".join(lines)
