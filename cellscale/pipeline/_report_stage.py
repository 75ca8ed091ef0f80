"""The report stage of a run: gather what the report shows and write it as one output.

The report folder is a :class:`~cellscale._stages.FileOutput`: its fingerprint names every
file it draws from by content (each plate's scores, profiles, field quality, QC tables,
illumination models, each plate's labels), the report settings and the problems found, so
it is made again whenever any of them changed, and a rerun that changed nothing leaves it
alone.

Nothing here loads every cell: counts and per-well means come from the screen's
:class:`~cellscale.pipeline._cell_summary.CellSummary`, and the per-cell figures draw its
seeded sample (:data:`~cellscale.pipeline._cell_summary.SAMPLE_CELLS` cells at most,
spread over the plates), whose scores are read plate by plate.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from cellscale._stages import DamagedOutputError, FileOutput, Fingerprint
from cellscale.cells import CELL_ID
from cellscale.pipeline._analysis_report import analysis_digests, analysis_results
from cellscale.pipeline._config import RunConfig, as_dict
from cellscale.pipeline._scores import SCORES, read_scores
from cellscale.pipeline._screen import Screen
from cellscale.pipeline._state import RunState, file_stage
from cellscale.pipeline._train_stage import TRAINING
from cellscale.report import (
    Figures,
    Gallery,
    Overlay,
    ReportInputs,
    Thumbnail,
    TrainingResults,
    write_report,
)

__all__ = ["report"]

#: Most flagged fields the report shows.
MAX_FLAGGED_SHOWN = 12


def report(state: RunState, screen: Screen, plates: list[xr.DataArray], profiles: Path) -> None:
    """Write ``report/`` unless it is current."""
    sources = {name: _digest(profiles / name) for name in _PROFILE_FILES}
    for plate in state.config.plates:
        for name in ("qc.parquet", "illumination.npz", SCORES):
            sources[f"{plate.name}/{name}"] = _digest(state.plate_dir(plate) / name)
    if state.config.train.enabled:
        sources["training"] = _digest(state.out / TRAINING / "evaluation")
    sources |= analysis_digests(state)
    fingerprint = Fingerprint(
        "report",
        inputs={"files": sources, "plates": [p.data.name for p in plates], "cells": screen.digests},
        parameters={**as_dict(state.config.report), "problems": list(state.problems)},
    )
    output = FileOutput(state.out / "report")
    file_stage(
        state,
        "report",
        None,
        len(plates),
        output,
        fingerprint,
        lambda partial: write_report(partial, _inputs(state, screen, plates, profiles)),
    )


_PROFILE_FILES = ("pca.npz", "wells.parquet", "field_quality.parquet")


def _digest(path: Path) -> str | None:
    """A file's recorded checksum, or ``None`` where the run did not make it."""
    output = FileOutput(path)
    return output.digest() if path.exists() or output.record_path.exists() else None


def _inputs(
    state: RunState, screen: Screen, plates: list[xr.DataArray], profiles: Path
) -> ReportInputs:
    from cellscale.profiles import PCA

    qc = _qc_tables(state)
    quality = profiles / "field_quality.parquet"
    pca = profiles / "pca.npz"
    ratio = PCA.load(FileOutput(pca).open()).explained_variance_ratio_ if pca.exists() else ()
    wells = profiles / "wells.parquet"
    summary = screen.summary
    return ReportInputs(
        title=f"cellscale run: {', '.join(p.name for p in state.config.plates)}",
        cells=summary.sample,
        scores=_sample_scores(screen, pca.exists()),
        explained_variance_ratio=np.asarray(ratio),
        field_quality=pd.read_parquet(FileOutput(quality).open()) if quality.exists() else None,
        overlays=_overlays(state, plates),
        qc=qc,
        qc_channel=state.config.segment.channel,
        flagged=_flagged_thumbnails(qc, plates),
        illumination=_illumination_figures(state, plates),
        galleries=_galleries(state, plates, summary.gallery),
        stages=tuple(state.merged_stages()),
        problems=tuple(state.problems),
        notes=tuple(_notes(state.config)),
        wells=pd.read_parquet(FileOutput(wells).open()) if wells.exists() else None,
        segmentation_problems=_segmentation_problems(state, plates),
        cell_counts=summary.counts,
        well_summary=summary.wells,
        training=_training(state),
        analysis=analysis_results(state, screen, plates),
    )


def _training(state: RunState) -> TrainingResults | None:
    """The evaluation of the network the run trained, or ``None``."""
    if not state.config.train.enabled:
        return None
    folder = FileOutput(state.out / TRAINING / "evaluation").open()
    label = state.config.train.label
    return TrainingResults(
        label=label if isinstance(label, str) else " and ".join(label),
        metrics=pd.read_parquet(folder / "metrics.parquet"),
        per_batch=pd.read_parquet(folder / "per_batch.parquet"),
        confusion=pd.read_parquet(folder / "confusion.parquet"),
    )


def _qc_tables(state: RunState) -> pd.DataFrame | None:
    """Every plate's QC table, one after the other; ``None`` where the run has none."""
    import cellscale

    if not state.config.qc.enabled:
        return None
    paths = [state.plate_dir(p) / "qc.parquet" for p in state.config.plates]
    tables = [cellscale.read_qc(FileOutput(path).open()) for path in paths if path.exists()]
    return pd.concat(tables, ignore_index=True) if tables else None


def _illumination_figures(state: RunState, plates: list[xr.DataArray]) -> list[Figures]:
    """Each plate's illumination model, drawn; none where the run corrects nothing."""
    from cellscale.illumination import IlluminationModel

    if state.config.illumination.method is None:
        return []
    figures = []
    for plate in plates:
        path = state.plate_dir(str(plate.name)) / "illumination.npz"
        if path.exists():
            model = IlluminationModel.load(FileOutput(path).open())
            figures.append(Figures(f"Plate {plate.name}: {model.method} flatfield", model.plot()))
    return figures


def _flagged_thumbnails(qc: pd.DataFrame | None, plates: list[xr.DataArray]) -> list[Thumbnail]:
    """The flagged images (at most :data:`MAX_FLAGGED_SHOWN`), each captioned with its flags."""
    if qc is None:
        return []
    from cellscale.quality._flags import FLAGS

    by_name = {str(p.name): p for p in plates}
    thumbs = []
    for row in qc[qc["flagged"]].head(MAX_FLAGGED_SHOWN).itertuples():
        plate = by_name[str(row.Metadata_Plate)]
        image = plate.sel(t=row.t, well=row.well, field=row.field, c=row.channel)
        image = image.max("z") if "z" in image.dims else image
        why = ", ".join(f for f in FLAGS if getattr(row, f, False))
        title = f"{row.Metadata_Plate} · {row.well} field {row.field} · {row.channel}: {why}"
        thumbs.append(Thumbnail(title, np.asarray(image.values)))
    return thumbs


def _sample_scores(screen: Screen, fitted: bool) -> np.ndarray:
    """The scores of the sampled cells, read plate by plate; no columns without a PCA."""
    samples = screen.summary.samples
    if not fitted:
        return np.zeros((sum(len(s) for s in samples.values()), 0))
    parts = []
    for plate in screen.plates:
        ids = samples[plate.name][CELL_ID].to_numpy() if plate.name in samples else None
        if ids is None or not len(ids):
            continue
        path = FileOutput(plate.folder / SCORES).open()
        found = read_scores(path, ids).set_index(CELL_ID)
        missing = np.setdiff1d(ids, found.index.to_numpy())
        if len(missing):
            raise DamagedOutputError(
                f"{path}: no scores of cells {missing[:5].tolist()} of plate {plate.name}; "
                "run `cellscale verify` on it, then the run again"
            )
        parts.append(found.loc[ids].to_numpy())
    return np.concatenate(parts)


def _conditions(cells: pd.DataFrame) -> list[str]:
    wanted = ("Metadata_treatment", "Metadata_concentration")
    return [c for c in wanted if c in cells.columns]


def _overlays(state: RunState, plates: list[xr.DataArray]) -> Iterator[Overlay]:
    """A few fields per condition of every plate, with the outlines of each compartment.

    Each field is read as the report asks for it: the report holds one at a time.
    """
    per_condition = state.config.report.overlays_per_condition
    for plate in plates:
        labels = _labels(state, plate)
        conditions = [c for c in ("treatment", "concentration") if c in plate.coords]
        seen: dict[tuple[Any, ...], int] = {}
        for well in plate.coords["well"].values:
            condition = tuple(plate.coords[c].sel(well=well).item() for c in conditions)
            if seen.get(condition, 0) >= per_condition:
                continue
            seen[condition] = seen.get(condition, 0) + 1
            what = " · ".join(str(v) for v in condition)
            yield _overlay(state, plate, labels, str(well), what)


def _segmentation_problems(state: RunState, plates: list[xr.DataArray]) -> Iterator[Overlay]:
    """A field of each well the run flagged for its segmentation, captioned with why.

    The flags are ``state.segmentation_flags``; a run without any shows none. Each field
    is read as the report asks for it.
    """
    flags = state.segmentation_flags
    flagged = {str(flag.plate) for flag in flags}
    by_name = {str(p.name): (p, _labels(state, p)) for p in plates if str(p.name) in flagged}
    for flag in flags:  # the reason is a sentence with the well's numbers
        plate, labels = by_name[str(flag.plate)]
        yield _overlay(state, plate, labels, str(flag.well), flag.reason)


def _labels(state: RunState, plate: xr.DataArray) -> xr.Dataset:
    import cellscale

    return cellscale.open_labels(state.plate_dir(str(plate.name)) / "projected.zarr")


def _overlay(
    state: RunState, plate: xr.DataArray, labels: xr.Dataset, well: str, what: str
) -> Overlay:
    """The first field of ``well`` at the last time point, every compartment outlined."""
    channel = str(state.config.segment.channel)
    t, field_ = plate.coords["t"].values[-1], plate.coords["field"].values[0]
    image = plate.sel(t=t, well=well, field=field_, c=channel)
    if "z" in image.dims:
        image = image.max("z")
    outlines = {
        str(c): labels[str(c)].sel(t=t, well=well, field=field_).values
        for c in labels.attrs.get("compartments", ["cells"])
    }
    pixel_size = plate.attrs.get("pixel_size_um")
    return Overlay(
        f"{plate.name} · {well} field {field_} · {what}",
        np.asarray(image.values),
        outlines,
        channel,
        pixel_size_um=float(pixel_size[-1]) if pixel_size else None,
    )


def _galleries(state: RunState, plates: list[xr.DataArray], cells: pd.DataFrame) -> list[Any]:
    """Crops of the first cells of each condition (first plate), the segmentation channel.

    ``cells`` are those of the first plate's fields the galleries cut: per condition, one
    field (:func:`~cellscale.pipeline._cell_summary.gallery_cells`).
    """
    import cellscale

    if cells.empty:
        return []
    first = state.config.plates[0]
    plate = plates[0].sel(c=[str(state.config.segment.channel)])
    labels = cellscale.open_labels(state.plate_dir(first) / "projected.zarr")
    mine = cells[cells["Metadata_Plate"] == plates[0].name]
    conditions = _conditions(mine) or ["Metadata_Well"]
    galleries = []
    n = state.config.report.crops_per_gallery
    keys = ["Metadata_Timepoint", "Metadata_Well", "Metadata_Site"]
    for values, field_cells in mine.groupby(conditions, sort=True):
        t, well, site = field_cells[keys].iloc[0]
        where = {"t": [t], "well": [well], "field": [site]}
        crops = cellscale.extract_crops(
            plate.sel(where),
            field_cells.assign(cell_id=np.arange(len(field_cells))),
            size=state.config.crops.size,
            mask=state.config.crops.mask,
            labels=labels.sel(where),
            border="pad",
        )
        what = values if isinstance(values, tuple) else (values,)
        tiles = np.asarray(crops[:n].values)[:, 0]
        galleries.append(Gallery(" ".join(str(v) for v in what), tiles))
    return galleries


def _notes(config: RunConfig) -> list[str]:
    embed = config.embed
    if config.train.enabled:
        model = f"{embed.model} trained by the run to predict {config.train.label!r} (training/)"
    elif embed.weights:
        model = f"{embed.model} with the weights in {embed.weights}"
    else:
        model = (
            f"{embed.model} randomly initialised from seed {embed.seed} (no weights were given; "
            "set embed.weights to a state dict or TorchScript file to use trained weights)"
        )
    segment = config.segment
    seeds = f", seeded by {segment.nuclei_channel!r}" if segment.nuclei_channel else ""
    per_plate = ", per plate" if config.profiles.per_plate else ""
    embedded = (
        f"Embeddings: {model}, layer {embed.layer!r}, "
        f"{config.crops.size}-pixel crops, mask {config.crops.mask!r}."
        if embed.active
        else "Embeddings: none (profiles are the measured features; set embed.weights to embed)."
    )
    return [
        embedded,
        f"Segmentation: {segment.method} on channel {segment.channel!r}{seeds}; "
        f"border cells {'dropped' if segment.exclude_border else 'kept'}.",
        f"Projection: {config.project.method}. Normalisation: {config.profiles.normalize} "
        f"against {config.profiles.controls or 'all cells'}{per_plate}.",
    ]
