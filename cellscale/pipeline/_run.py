"""Run a whole screen: every plate through every stage, resumably, then profiles and a report.

Outputs, under the config's ``output`` folder::

    cellscale_run.json              identity, provenance and what each stage last did
    progress.html                   fields done per well, per plate and stage, live
    plates/<name>/raw.zarr          the plate as ingested (or generated)
    plates/<name>/projected.zarr    its Z projection, with the labels under each field
    plates/<name>/qc.parquet        image QC (when enabled)
    plates/<name>/illumination.npz  the illumination model (when correcting)
    plates/<name>/cells.parquet     the cell table
    plates/<name>/embeddings.zarr   one row per crop, aligned by cell_id (when embedding)
    plates/<name>/scores.parquet    the plate's embedded cells: cell_id, metadata and
                                    principal components (idem)
    training/                       the network the run trained (train.enabled): split,
                                    checkpoints, weights.pt, evaluation on held-out wells
    profiles/pca.npz                the PCA fitted on every plate's embeddings (idem)
    profiles/wells.parquet          per-well profiles: Metadata_* columns, then the selected
                                    features (measured, and Embedding_<i> if asked for),
                                    aggregated, normalised per plate against the control
                                    wells and feature-selected as pycytominer does
    profiles/field_quality.parquet  a focus score per field
    report/index.html               the report, with its figures

Every output carries the fingerprint of what made it, and a rerun asks the outputs alone
what is left to do (:mod:`cellscale.pipeline._state`): stores resume their unfinished
units, outputs made from other inputs or settings are made again, and so is every output
after them, since their fingerprints name their inputs by content. Nothing depends on the
output folder's path, so a moved run folder resumes where it was. One run at a time holds
the folder. The stages live in :mod:`~cellscale.pipeline._plate_stages`,
:mod:`~cellscale.pipeline._image_stages`, :mod:`~cellscale.pipeline._train_stage`,
:mod:`~cellscale.pipeline._screen` and
:mod:`~cellscale.pipeline._report_stage`; this module orchestrates them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cellscale._files import file_sha256
from cellscale._script_guard import check_script_guard
from cellscale._stages import OutputLockedError, output_lock
from cellscale.pipeline._analysis_stage import analysis_stage
from cellscale.pipeline._config import PlateConfig, RunConfig, as_dict, load_config
from cellscale.pipeline._manifest import MANIFEST, Manifest, package_versions
from cellscale.pipeline._plate_stages import PlateImages, run_plate
from cellscale.pipeline._profiles_stage import profiles
from cellscale.pipeline._progress import PROGRESS_PAGE, ProgressPage
from cellscale.pipeline._report_stage import report
from cellscale.pipeline._screen import Screen, drop_legacy_scores, drop_pca, pca, screen_cells
from cellscale.pipeline._state import RunState
from cellscale.pipeline._train_stage import train_stage
from cellscale.report import StageRecord

__all__ = ["RunLockedError", "RunSummary", "run"]


class RunLockedError(OutputLockedError):
    """Another ``cellscale run`` is using the output folder."""


@dataclass(frozen=True)
class RunSummary:
    """What a run made: counts, where its outputs are, and each stage's time."""

    output: Path
    report: Path
    plates: int
    wells: int
    """Wells with at least one field."""
    fields: int
    """Fields present (imaged positions of the wells; time points are counted apart)."""
    timepoints: int
    cells: int
    stages: tuple[StageRecord, ...]
    problems: tuple[str, ...] = ()
    plate_statuses: tuple[tuple[str, str, str], ...] = ()
    """Each (stage, plate, status) of the per-plate stages."""

    def __str__(self) -> str:
        lines = [
            f"\nscreen: {self.plates} plate(s), {self.wells} wells, {self.fields} fields, "
            f"{self.timepoints} time point(s), {self.cells} cells",
        ]
        for stage in self.stages:
            rate = stage.units / stage.seconds if stage.seconds > 0 else float("nan")
            lines.append(
                f"  {stage.name:<13}{stage.seconds:8.1f} s  {stage.units:>9} units "
                f"{rate:10.1f}/s  {stage.status}"
            )
            mine = [
                (plate, status) for name, plate, status in self.plate_statuses if name == stage.name
            ]
            if len({status for _, status in mine}) > 1:
                lines.extend(f"{'':17}{plate}: {status}" for plate, status in mine)
        total = sum(s.seconds for s in self.stages)
        rate = self.cells / total if total > 0 else float("nan")
        lines.append(f"  total        {total:8.1f} s  {self.cells:>9} cells {rate:10.1f}/s")
        lines.extend(f"  problem: {p}" for p in self.problems)
        lines.append(f"outputs: {self.output}\nreport: {self.report}")
        return "\n".join(lines)


def run(
    config: RunConfig | Mapping[str, Any] | str | Path,
    *,
    client: Any = None,
    overwrite: bool = False,
    progress: bool = True,
) -> RunSummary:
    """Run the screen that ``config`` describes, resuming whatever an earlier run finished.

    Parameters
    ----------
    config
        A :class:`RunConfig`, a dict of the same shape or a YAML file.
    client
        A dask client to run on (default: one from :func:`cellscale.start_cluster` with
        the config's ``cluster`` settings, shut down at the end).
    overwrite
        Replace another run found in the output folder.
    progress
        Show a progress bar per stage.

    Returns
    -------
    RunSummary
        Counts, time per stage and where the report is; ``print`` it for a summary.

    Raises
    ------
    ConfigError
        On a config that cannot be run (an unknown key or channel, a missing weights file,
        weights that do not fit the model, a column the cell table will not have), before
        anything is written (:mod:`cellscale.pipeline._preflight`).
    RunMismatchError
        If the output folder holds another run and not ``overwrite``.
    RunLockedError
        If another run is using the output folder (the message names its process).
    ScriptGuardError
        If it would start a cluster of worker processes from a script's top level outside
        ``if __name__ == "__main__":`` (they would run the script again); a
        :class:`SystemExit`, so Python stops with one line.
    """
    from cellscale.cluster._start import starts_worker_processes
    from cellscale.pipeline._preflight import preflight

    config = load_config(config)
    if client is None and starts_worker_processes(config.cluster.kind, config.cluster.options):
        check_script_guard()
    preflight(config)
    out = Path(config.output)
    weights = file_sha256(config.embed.weights) if config.embed.weights else None
    identity = {"plates": [_identity(p) for p in config.plates]}
    provenance = {
        "config": as_dict(config),
        "versions": package_versions(),
        "weights_sha256": weights,
    }
    out.mkdir(parents=True, exist_ok=True)
    with _run_lock(out), _client(config, client) as active:
        manifest = Manifest.open(out, identity, provenance, overwrite)
        state = RunState(config, out, manifest, active, progress)
        with ProgressPage(out, [p.name for p in config.plates], serve=progress) as page:
            state.page = page
            if progress:
                print(
                    f"progress per plate and well: {page.url} or {out / PROGRESS_PAGE}", flush=True
                )
            images = [run_plate(state, plate) for plate in config.plates]
            if config.train.enabled:
                train_stage(state, images)
            plates = [p.projected for p in images]
            screen = screen_cells(state)
            _screen_stages(state, images, screen)
    return RunSummary(
        output=out,
        report=out / "report" / "index.html",
        plates=len(plates),
        wells=sum(int(_present(p).any(axis=1).sum()) for p in plates),
        fields=sum(int(_present(p).sum()) for p in plates),
        timepoints=max(p.sizes["t"] for p in plates),
        cells=screen.cells,
        stages=tuple(state.merged_stages()),
        problems=tuple(state.problems),
        plate_statuses=tuple(state.plate_statuses),
    )


@contextlib.contextmanager
def _run_lock(out: Path) -> Iterator[None]:
    """Hold the output folder for this run; refuse if another run holds it."""
    lock = output_lock(out / MANIFEST)
    try:
        lock.__enter__()
    except OutputLockedError as err:
        raise RunLockedError(
            f"{out} is in use by another cellscale run ({err.holder}); wait for it to finish "
            "or stop it, or choose another output folder",
            err.holder,
        ) from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def _present(plate: xr.DataArray) -> np.ndarray:
    """``(well, field)``: which fields the plate holds."""
    return np.asarray(plate.coords["field_present"].values, dtype=bool)


def _identity(plate: PlateConfig) -> dict[str, Any]:
    identity = {
        "name": plate.name,
        "folder": plate.folder,
        "pattern": plate.pattern if plate.folder else None,
        "plate_map": plate.plate_map,
        "synthetic": as_dict(plate.synthetic),
    }
    return identity if plate.zarr is None else {**identity, "zarr": plate.zarr}


@contextlib.contextmanager
def _client(config: RunConfig, client: Any) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    with config.cluster.start(Path(config.output) / "logs") as started:
        yield started


def _screen_stages(state: RunState, images: list[PlateImages], screen: Screen) -> None:
    plates = [p.projected for p in images]
    profiles_folder = state.out / "profiles"
    profiles_folder.mkdir(exist_ok=True)
    drop_legacy_scores(profiles_folder)
    if screen.embeddings is not None:
        pca(state, screen, profiles_folder)
    else:
        drop_pca(state, profiles_folder)
        if state.config.embed.active:
            state.problems.append("no cells were embedded on any plate: no PCA of cells")
    profiles(state, screen, plates, profiles_folder)
    if state.config.analysis.enabled:
        analysis_stage(state, images, screen)
    report(state, screen, plates, profiles_folder)
