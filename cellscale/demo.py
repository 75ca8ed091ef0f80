"""The demo: the whole pipeline on a synthetic screen, on a LocalCluster, with its report.

Run it with ``cellscale demo``. It is :func:`cellscale.run` on :func:`demo_config`: two
synthetic plates (two batches) of a dose series, two time points and Z stacks, each
ingested as an OME-Zarr HCS plate, max-projected, segmented (classical segmenter, cells
seeded by nuclei) and measured into the cell table; the per-well profiles are its
measured features, aggregated, normalised against each plate's DMSO wells and
feature-selected as pycytominer does. To show the GPU path too, the demo also cuts
soft-masked crops and embeds them with a ResNet-18 on the GPU-tagged worker and fits the
PCA of the cells the report draws; that network is randomly initialised (nothing is
downloaded; set ``embed.weights`` in a config to use your own), so the profiles leave its
embeddings out. Then the HTML report. It prints the dashboard link at
the start and a summary at the end. Every stage is resumable: run it again and only what
is missing is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cellscale.pipeline._config import (
    ClusterConfig,
    CropsConfig,
    EmbedConfig,
    IlluminationConfig,
    PCAConfig,
    PlateConfig,
    ProfilesConfig,
    RunConfig,
    SegmentConfig,
    SyntheticSource,
)
from cellscale.pipeline._run import RunSummary

__all__ = ["DemoSettings", "demo_config", "run_demo"]


@dataclass(frozen=True)
class DemoSettings:
    """What the demo makes; the defaults take a few minutes on two cores."""

    out: Path = Path("demo-output")
    plates: int = 2
    wells: int = 8
    fields: int = 2
    timepoints: int = 2
    planes: int = 6
    size: int = 384
    crop: int = 48
    workers: int | None = None


def demo_config(settings: DemoSettings) -> RunConfig:
    """The run the demo makes: ``settings.plates`` synthetic plates, one batch each."""
    plates = tuple(
        PlateConfig(
            name=f"demo-{i + 1}",
            synthetic=SyntheticSource(
                wells=settings.wells,
                fields=settings.fields,
                timepoints=settings.timepoints,
                planes=settings.planes,
                channels=("nuclei", "cytoplasm", "mito"),
                size=settings.size,
                cells_per_field=25.0 * (settings.size / 256) ** 2,
                seed=i + 1,
            ),
            metadata={"batch": i + 1},
        )
        for i in range(settings.plates)
    )
    return RunConfig(
        output=str(settings.out),
        plates=plates,
        cluster=ClusterConfig(kind="local", n_workers=settings.workers, gpu_workers=1),
        illumination=_illumination(settings),
        segment=SegmentConfig(channel="cytoplasm", nuclei_channel="nuclei"),
        crops=CropsConfig(size=settings.crop, mask="soft"),
        embed=EmbedConfig(enabled=True, model="resnet18", batch_size=64),
        pca=PCAConfig(n_components=10),
        profiles=ProfilesConfig(controls="Metadata_treatment == 'DMSO'"),
    )


def _illumination(settings: DemoSettings) -> IlluminationConfig:
    """Correct illumination where each plate has the fields a flatfield needs."""
    from cellscale.illumination import MIN_FIELDS

    fields = settings.wells * settings.fields * settings.timepoints
    return IlluminationConfig(method="mean" if fields >= MIN_FIELDS["mean"] else None)


def run_demo(settings: DemoSettings) -> RunSummary:
    """Run the demo pipeline, print its summary and per-condition table; return the summary."""
    from cellscale.pipeline._run import run

    summary = run(demo_config(settings))
    print(summary)
    print(_dose_table(Path(settings.out)))
    return summary


def _dose_table(out: Path) -> str:
    """Cells per condition and time point, and their mean size and roundness, all plates."""
    import cellscale

    tables = [cellscale.read_cells(p / "cells.parquet") for p in sorted((out / "plates").iterdir())]
    cells = pd.concat([t.compute() for t in tables], ignore_index=True)
    wells = cellscale.well_summary(cells, compartment="cells")
    keys = ["Metadata_treatment", "Metadata_concentration", "Metadata_Timepoint"]
    table = wells.groupby(keys, sort=True).agg(
        wells=("n_cells", "size"),
        cells=("n_cells", "mean"),
        area=("mean_area", "mean"),
        roundness=("mean_roundness", "mean"),
    )
    lines = ["\nper condition (means of wells): cells per well, area (px), roundness (4πA/P²):"]
    header = f"{'treatment':<12}{'conc. µM':>9}{'hours':>7}{'wells':>6}{'cells':>7}{'area':>8}"
    lines.append(f"  {header}{'round':>7}")
    for (treatment, conc, t), row in table.iterrows():
        lines.append(
            f"  {treatment!s:<12}{float(conc):>9.3g}{float(t) / 3600:>7.0f}{int(row.wells):>6}"
            f"{row.cells:>7.1f}{row.area:>8.0f}{row.roundness:>7.2f}"
        )
    return "\n".join(lines)
