"""Run a whole screen: every plate through every stage, resumably, then profiles and a report.

Outputs, under the config's ``output`` folder::

    cellscale_run.json              identity, per-stage settings keys, provenance
    progress.html                   fields done per well, per plate and stage, live
    plates/<name>/raw.zarr          the plate as ingested (or generated)
    plates/<name>/projected.zarr    its Z projection, with the labels under each field
    plates/<name>/cells.parquet     the cell table
    plates/<name>/embeddings.zarr   one row per crop, aligned by cell_id
    profiles/pca.npz                the PCA fitted on every plate's embeddings
    profiles/cells.parquet          every cell's metadata and principal components
    profiles/wells.parquet          normalised embeddings aggregated per well
    profiles/field_quality.parquet  a focus score per field
    report/index.html               the report, with its figures

Per-plate stages write through the stores' own ledgers, so a rerun (or a rerun after a
crash or a killed worker) computes only the units not yet finished. A stage whose
settings key changed since it last ran (its own settings or any earlier stage's) is
rewritten from scratch; stages before it are kept.
"""

from __future__ import annotations

import contextlib
import difflib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import xarray as xr

from cellscale._files import file_sha256
from cellscale.cells import metadata_column
from cellscale.ops._projection import ProjectionMethod
from cellscale.pipeline._config import ConfigError, PlateConfig, RunConfig, as_dict, load_config
from cellscale.pipeline._manifest import Manifest, chain_keys, package_versions
from cellscale.pipeline._progress import PROGRESS_PAGE, ProgressPage
from cellscale.pipeline._report import Figures, StageRecord, Thumbnail

__all__ = ["RunSummary", "run"]

PLATE_STAGES = ("ingest", "project", "segment", "measure", "embed")
SCREEN_STAGES = ("pca", "profiles", "report")


@dataclass(frozen=True)
class RunSummary:
    """What a run made: counts, where its outputs are, and each stage's time."""

    output: Path
    report: Path
    plates: int
    wells: int
    fields: int
    timepoints: int
    cells: int
    stages: tuple[StageRecord, ...]
    problems: tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = [
            f"\nscreen: {self.plates} plate(s), {self.wells} wells, {self.fields} fields, "
            f"{self.timepoints} time point(s), {self.cells} cells",
        ]
        for stage in self.stages:
            rate = stage.units / stage.seconds if stage.seconds > 0 else float("nan")
            lines.append(
                f"  {stage.name:<9}{stage.seconds:8.1f} s  {stage.units:>9} units "
                f"{rate:10.1f}/s  {stage.status}"
            )
        total = sum(s.seconds for s in self.stages)
        rate = self.cells / total if total > 0 else float("nan")
        lines.append(f"  total    {total:8.1f} s  {self.cells:>9} cells {rate:10.1f}/s")
        lines.extend(f"  problem: {p}" for p in self.problems)
        lines.append(f"outputs: {self.output}\nreport: {self.report}")
        return "\n".join(lines)


@dataclass
class _Run:
    """What the stages share."""

    config: RunConfig
    out: Path
    manifest: Manifest
    keys: dict[str, str]
    client: Any
    progress: bool
    stages: list[StageRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def plate_dir(self, plate: PlateConfig) -> Path:
        return self.out / "plates" / plate.name


@dataclass
class _Step:
    """One stage of one plate (or of the screen) as it runs."""

    overwrite: bool
    units: int = 0


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
        On a config that cannot be run (an unknown key or channel, a missing weights file).
    RunMismatchError
        If the output folder holds another run and not ``overwrite``.
    """
    config = load_config(config)
    if not config.plates:
        raise ConfigError("plates: the run names no plates")
    _check_weights(config)
    out = Path(config.output)
    weights = file_sha256(config.embed.weights) if config.embed.weights else None
    keys = chain_keys(_stage_settings(config, weights))
    identity = {"plates": [_identity(p) for p in config.plates]}
    provenance = {
        "config": as_dict(config),
        "versions": package_versions(),
        "weights_sha256": weights,
    }
    manifest = Manifest.open(out, identity, provenance, overwrite)
    with _client(config, client) as active:
        state = _Run(config, out, manifest, keys, active, progress)
        with ProgressPage(out, [p.name for p in config.plates], serve=progress) as page:
            if progress:
                print(
                    f"progress per plate and well: {page.url} or {out / PROGRESS_PAGE}", flush=True
                )
            plates = [_run_plate(state, plate) for plate in config.plates]
            screen = _screen_cells(state, plates)
            _screen_stages(state, plates, screen)
    n_fields = sum(p.sizes["well"] * p.sizes["field"] for p in plates)
    return RunSummary(
        output=out,
        report=out / "report" / "index.html",
        plates=len(plates),
        wells=sum(p.sizes["well"] for p in plates),
        fields=int(n_fields),
        timepoints=max(p.sizes["t"] for p in plates),
        cells=len(screen.cells),
        stages=tuple(_merged(state.stages)),
        problems=tuple(state.problems),
    )


def _stage_settings(config: RunConfig, weights_sha256: str | None) -> dict[str, Any]:
    """Each stage's settings, in order: what its outputs depend on besides earlier stages."""
    return {
        "ingest": [_identity(p) for p in config.plates],
        "project": as_dict(config.project),
        "qc": as_dict(config.qc),
        "segment": as_dict(config.segment),
        "illumination": as_dict(config.illumination),
        "measure": as_dict(config.measure),
        "embed": {"crops": as_dict(config.crops), **as_dict(config.embed), "sha": weights_sha256},
        "pca": as_dict(config.pca),
        "profiles": {
            **as_dict(config.profiles),
            "metadata": {p.name: p.metadata for p in config.plates},
        },
        "report": as_dict(config.report),
    }


def _identity(plate: PlateConfig) -> dict[str, Any]:
    return {
        "name": plate.name,
        "folder": plate.folder,
        "pattern": plate.pattern if plate.folder else None,
        "plate_map": plate.plate_map,
        "synthetic": as_dict(plate.synthetic),
    }


def _check_weights(config: RunConfig) -> None:
    weights = config.embed.weights
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(
            f"embed.weights: {weights} does not exist. Give the path of a state dict or "
            "TorchScript file of the model, or leave weights out for a seeded random network"
        )


@contextlib.contextmanager
def _client(config: RunConfig, client: Any) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    import cellscale

    options = dict(config.cluster.options)
    if config.cluster.n_workers is not None:
        options["n_workers"] = config.cluster.n_workers
    with cellscale.start_cluster(
        config.cluster.kind, gpu_workers=config.cluster.gpu_workers, **options
    ) as started:
        yield started


@contextlib.contextmanager
def _step(state: _Run, stage: str, plate: str | None = None, units: int = 0) -> Iterator[_Step]:
    """Run one stage of one plate (or of the screen): its manifest entry, time and record.

    The entry records the settings key the stage starts with; if the key differs from the
    one it last started with, the step's outputs are rewritten (``overwrite``). The entry
    is marked finished only when the step ends without an error.
    """
    entry = stage if plate is None else f"{stage}/{plate}"
    key, last = state.keys[stage], state.manifest.key(entry)
    step = _Step(overwrite=last is not None and last != key, units=units)
    if step.overwrite:
        status = "rewritten: settings changed"
    elif state.manifest.done(entry, key):
        status = "finished before, checked"
    else:
        status = "resumed" if last == key else "ran"
    state.manifest.start(entry, key)
    start = time.perf_counter()
    yield step
    seconds = time.perf_counter() - start
    state.manifest.finish(entry, seconds=round(seconds, 3), units=step.units)
    state.stages.append(StageRecord(stage, seconds, step.units, status))


def _merged(records: list[StageRecord]) -> list[StageRecord]:
    """One record per stage name (plates summed), in the order stages first ran."""
    merged: dict[str, StageRecord] = {}
    for r in records:
        seen = merged.get(r.name)
        merged[r.name] = (
            r
            if seen is None
            else StageRecord(r.name, seen.seconds + r.seconds, seen.units + r.units, seen.status)
        )
    return list(merged.values())


# ---------------------------------------------------------------- per-plate stages


def _run_plate(state: _Run, plate: PlateConfig) -> xr.DataArray:
    """Ingest, project, segment, measure and embed one plate; return the projected plate."""
    import cellscale

    folder = state.plate_dir(plate)
    folder.mkdir(parents=True, exist_ok=True)
    common = {"client": state.client, "progress": state.progress}
    with _step(state, "ingest", plate.name) as step:
        raw = _ingest(state, plate, folder / "raw.zarr", step.overwrite)
        step.units = fields = int(raw.sizes["t"] * raw.sizes["well"] * raw.sizes["field"])
    _check_channels(state.config, [str(c) for c in raw.coords["c"].values])

    projected_path = folder / "projected.zarr"
    with _step(state, "project", plate.name, fields) as step:
        project = state.config.project
        focus = project.focus_channel or state.config.segment.channel
        method = cast(ProjectionMethod, project.method)  # checked when the config loaded
        projection = (
            cellscale.project(raw, method, focus_channel=focus or 0)
            if method == "best_focus"
            else cellscale.project(raw, method)
        )
        cellscale.write_plate(
            projection,
            projected_path,
            overwrite=step.overwrite,
            **common,
        )
    projected = cellscale.open_plate(projected_path)
    exclude = _quality_control(state, plate, projected, folder / "qc.parquet", fields)

    with _step(state, "segment", plate.name, fields) as step:
        segment = state.config.segment
        labels = cellscale.segment(
            projected,
            segment.method,
            channel=str(segment.channel),
            nuclei_channel=segment.nuclei_channel,
            exclude_border=segment.exclude_border,
            exclude=exclude,
            **segment.options,
        )
        cellscale.write_labels(labels, projected_path, overwrite=step.overwrite, **common)
    labels = cellscale.open_labels(projected_path)
    images = _illumination(state, plate, projected, folder / "illumination.npz", fields)

    cells_path = folder / "cells.parquet"
    with _step(state, "measure", plate.name, fields) as step:
        cellscale.write_cells(
            labels,
            images,
            cells_path,
            intensity=state.config.measure.intensity,
            overwrite=step.overwrite,
            **common,
        )
    cells = cellscale.read_cells(cells_path).compute()

    with _step(state, "embed", plate.name, len(cells)) as step:
        _embed_plate(state, plate, images, labels, cells, folder / "embeddings.zarr", step)
    return projected


def _quality_control(
    state: _Run, plate: PlateConfig, projected: xr.DataArray, path: Path, fields: int
) -> pd.DataFrame | None:
    """The plate's QC table (``qc.parquet``), and the fields segmentation is to skip."""
    import cellscale
    from cellscale.quality import QCThresholds

    config = state.config.qc
    if not config.enabled:
        return None
    finished = _finished(state, "qc", plate, path)
    with _step(state, "qc", plate.name, fields):
        if finished:
            table = cellscale.read_qc(path)
        else:
            table = cellscale.qc(
                projected,
                thresholds=QCThresholds(**config.thresholds),
                client=state.client,
                progress=state.progress,
            )
            _write_atomically(path, lambda partial: cellscale.write_qc(table, partial))
    flagged = cellscale.flagged_fields(table)
    if len(flagged):
        action = "not segmented" if config.exclude_flagged else "kept (qc.exclude_flagged is off)"
        state.problems.append(
            f"plate {plate.name}: QC flagged {len(flagged)} field(s), {action}: "
            + ", ".join(f"{r.well} f{r.field}" for r in flagged.head(8).itertuples())
            + (" …" if len(flagged) > 8 else "")
        )
    return flagged if config.exclude_flagged and len(flagged) else None


def _illumination(
    state: _Run, plate: PlateConfig, projected: xr.DataArray, path: Path, fields: int
) -> xr.DataArray:
    """The images cells are measured and cropped from: corrected where the run corrects.

    The model is fitted on the projected plate and saved as ``illumination.npz``; a
    rerun with the same settings loads it instead of fitting again.
    """
    import cellscale
    from cellscale.illumination import IlluminationModel

    config = state.config.illumination
    if config.method is None:
        return projected
    finished = _finished(state, "illumination", plate, path)
    with _step(state, "illumination", plate.name, fields):
        if finished:
            model = IlluminationModel.load(path)
        else:
            model = cellscale.fit_illumination(
                projected,
                list(config.channels) if config.channels else None,
                cast(Any, config.method),
                darkfield=config.darkfield,
                progress=state.progress,
            )
            _write_atomically(path, model.save)
    return cellscale.correct_illumination(projected, model)


def _finished(state: _Run, stage: str, plate: PlateConfig, output: Path) -> bool:
    """Whether a plate's one-file stage finished with today's settings and its file is there."""
    return state.manifest.done(f"{stage}/{plate.name}", state.keys[stage]) and output.exists()


def _illumination_figures(state: _Run, plates: list[xr.DataArray]) -> list[Figures]:
    """Each plate's illumination model, drawn; none where the run corrects nothing."""
    from cellscale.illumination import IlluminationModel

    if state.config.illumination.method is None:
        return []
    figures = []
    for plate in plates:
        path = state.out / "plates" / str(plate.name) / "illumination.npz"
        if path.exists():
            model = IlluminationModel.load(path)
            figures.append(Figures(f"Plate {plate.name}: {model.method} flatfield", model.plot()))
    return figures


def _ingest(state: _Run, plate: PlateConfig, path: Path, overwrite: bool) -> xr.DataArray:
    import cellscale

    common = {"client": state.client, "progress": state.progress}
    if plate.synthetic is not None:
        from cellscale.testing import write_synthetic_plate

        s = plate.synthetic
        return write_synthetic_plate(
            path,
            wells=s.wells,
            fields=s.fields,
            n_t=len(s.t_hours) if s.t_hours else s.timepoints,
            t_hours=s.t_hours,
            n_z=s.planes,
            channels=list(s.channels),
            shape=(s.size, s.size),
            cells_per_field=s.cells_per_field,
            seed=s.seed,
            name=plate.name,
            overwrite=overwrite,
            **common,
        )
    assert plate.folder is not None
    cellscale.ingest(
        plate.folder,
        path,
        plate.pattern,
        plate.plate_map,
        name=plate.name,
        overwrite=overwrite,
        **common,
    )
    return cellscale.open_plate(path)


def _check_channels(config: RunConfig, channels: list[str]) -> None:
    """Every channel the config names is one of the plate's, or a :class:`ConfigError`."""
    named = {
        "segment.channel": config.segment.channel,
        "segment.nuclei_channel": config.segment.nuclei_channel,
        "project.focus_channel": config.project.focus_channel,
    }
    if config.segment.channel is None:
        raise ConfigError(f"segment.channel is required: one of the plate's channels {channels}")
    for where, name in named.items():
        if name is not None and name not in channels:
            close = difflib.get_close_matches(name, channels, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{where}: the plates have no channel {name!r} (they have {channels}){hint}"
            )


def _embed_plate(
    state: _Run,
    plate: PlateConfig,
    projected: xr.DataArray,
    labels: xr.Dataset,
    cells: pd.DataFrame,
    path: Path,
    step: _Step,
) -> None:
    import cellscale
    from cellscale.embedding import TorchEmbedder

    if len(cells) == 0:
        state.problems.append(f"plate {plate.name}: no cells were found, so none were embedded")
        return
    crops_config, embed_config = state.config.crops, state.config.embed
    crops = cellscale.extract_crops(
        projected,
        cells,
        size=crops_config.size,
        mask=crops_config.mask,
        labels=labels,
        border=crops_config.border,
    )
    model = TorchEmbedder(
        embed_config.model,
        in_channels=projected.sizes["c"],
        weights=embed_config.weights,
        layer=embed_config.layer,
        batch_size=embed_config.batch_size,
        device=embed_config.device,
        seed=embed_config.seed,
    )
    cellscale.write_embeddings(
        cellscale.embed(crops, model),
        path,
        overwrite=step.overwrite,
        client=state.client,
        progress=state.progress,
    )


# ---------------------------------------------------------------- screen stages


@dataclass(frozen=True)
class _Screen:
    """Every plate's embedded cells, row for row with their embeddings."""

    cells: pd.DataFrame  # metadata and features of each embedded cell, plate after plate
    embeddings: Any  # (cell, feature) dask array, or None when nothing was embedded
    plate_rows: dict[str, slice]  # each plate's rows


def _screen_cells(state: _Run, plates: list[xr.DataArray]) -> _Screen:
    """The embedded cells of the whole screen with plate-level metadata, and their embeddings.

    Only the cells' metadata and shape columns are loaded (the profiles and the report
    need no more), so the driving process holds a few columns per cell, not the table.
    """
    import dask.array as da
    import zarr

    import cellscale
    from cellscale.io._rows import BOOKS

    tables, arrays, rows, start = [], [], {}, 0
    for plate in state.config.plates:
        folder = state.plate_dir(plate)
        table = cellscale.read_cells(folder / "cells.parquet")
        kept = [
            c
            for c in table.columns
            if c == "cell_id" or c.startswith("Metadata_") or "_AreaShape_" in c
        ]
        cells = _with_plate_metadata(table[kept].compute(), plate)
        path = folder / "embeddings.zarr"
        if not (path / "zarr.json").is_file() or len(cells) == 0:
            rows[plate.name] = slice(start, start)
            continue
        ids = zarr.open_array(str(path / BOOKS / "cell_id"), mode="r")[:]
        embedded = cells.set_index("cell_id").loc[ids].reset_index()
        tables.append(embedded)
        arrays.append(da.from_zarr(str(path)))
        rows[plate.name] = slice(start, start + len(embedded))
        start += len(embedded)
    cells = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    embeddings = da.concatenate(arrays) if arrays else None
    return _Screen(cells, embeddings, rows)


def _with_plate_metadata(cells: pd.DataFrame, plate: PlateConfig) -> pd.DataFrame:
    for key, value in plate.metadata.items():
        column = metadata_column(str(key))
        if column in cells.columns:
            raise ConfigError(
                f"plate {plate.name!r}: metadata key {key!r} would replace the cell table's "
                f"column {column} (from the plate map); rename the key"
            )
        cells[column] = value
    return cells


def _screen_stages(state: _Run, plates: list[xr.DataArray], screen: _Screen) -> None:
    profiles = state.out / "profiles"
    profiles.mkdir(exist_ok=True)
    if screen.embeddings is None:
        state.problems.append("no cells were embedded on any plate: no PCA or profiles")
    else:
        _pca(state, screen, profiles)
        _profiles(state, screen, plates, profiles)
    _report(state, screen, plates, profiles)


def _unchanged(state: _Run, stage: str, outputs: list[Path]) -> bool:
    """Whether ``stage`` finished with today's settings and its outputs are all there."""
    if state.manifest.done(stage, state.keys[stage]) and all(p.exists() for p in outputs):
        state.stages.append(StageRecord(stage, 0.0, 0, "skipped: unchanged"))
        return True
    return False


def _pca(state: _Run, screen: _Screen, profiles: Path) -> None:
    import cellscale

    outputs = [profiles / "pca.npz", profiles / "cells.parquet"]
    if _unchanged(state, "pca", outputs):
        return
    with _step(state, "pca", units=len(screen.cells)) as step:
        k = min(state.config.pca.n_components, *screen.embeddings.shape)
        pca = cellscale.PCA(k).fit(screen.embeddings)
        pca.save(profiles / "pca.npz")
        scores = np.asarray(pca.transform(screen.embeddings).compute())
        meta = screen.cells[["cell_id", *_metadata(screen.cells)]].copy()
        for i in range(scores.shape[1]):
            meta[f"PC{i + 1}"] = scores[:, i]
        _write_parquet(meta, profiles / "cells.parquet")
        step.units = len(meta)


def _profiles(state: _Run, screen: _Screen, plates: list[xr.DataArray], profiles: Path) -> None:
    import dask.array as da

    import cellscale

    outputs = [profiles / "wells.parquet", profiles / "field_quality.parquet"]
    if _unchanged(state, "profiles", outputs):
        return
    config = state.config.profiles
    with _step(state, "profiles", units=len(screen.cells)) as step:
        groups = screen.plate_rows if config.per_plate else {"": slice(0, len(screen.cells))}
        parts = []
        for name, rows in groups.items():
            if rows.stop == rows.start:
                continue
            meta = screen.cells.iloc[rows].reset_index(drop=True)
            if config.controls is not None and meta.query(config.controls).empty:
                where = f" of plate {name}" if name else ""
                raise ConfigError(f"profiles.controls: {config.controls!r} selects no cells{where}")
            block = screen.embeddings[rows]
            normalise = {"standardize": cellscale.standardize, "robustize": cellscale.robustize}
            method = normalise.get(config.normalize)
            parts.append(block if method is None else method(block, config.controls, metadata=meta))
        cellscale.aggregate(
            da.concatenate(parts),
            list(config.by),
            metadata=screen.cells,
            output=profiles / "wells.parquet",
        )
        quality = pd.concat([_field_quality(state, p) for p in plates], ignore_index=True)
        _write_parquet(quality, profiles / "field_quality.parquet")
        step.units = len(screen.cells)


def _field_quality(state: _Run, plate: xr.DataArray) -> pd.DataFrame:
    """A focus score (variance of the Laplacian) of every field's segmentation channel.

    Taken from the plate's QC table where the run made one, else computed here.
    """
    import dask.array as da

    qc_path = state.out / "plates" / str(plate.name) / "qc.parquet"
    if state.config.qc.enabled and qc_path.exists():
        import cellscale

        table = cellscale.read_qc(qc_path)
        table = table[table["channel"] == state.config.segment.channel]
        return pd.DataFrame(
            {
                "Metadata_Plate": table["Metadata_Plate"].astype(str).to_numpy(),
                "Metadata_Well": table["well"].astype(str).to_numpy(),
                "Metadata_Site": table["field"].to_numpy(),
                "Metadata_Timepoint": table["t"].to_numpy(),
                "focus_score": table["focus_laplacian_var"].to_numpy(),
            }
        )

    image = plate.sel(c=state.config.segment.channel)
    if "z" in image.dims:
        image = image.max("z")
    image = image.transpose("t", "well", "field", "y", "x")
    scores = da.map_blocks(
        _block_focus, image.data, drop_axis=[3, 4], dtype=np.float64, meta=np.array((), float)
    )
    values = np.asarray(state.client.compute(scores, sync=True))
    t, well, field_ = np.meshgrid(
        plate.coords["t"].values,
        plate.coords["well"].values,
        plate.coords["field"].values,
        indexing="ij",
    )
    return pd.DataFrame(
        {
            "Metadata_Plate": str(plate.name),
            "Metadata_Well": well.ravel().astype(str),
            "Metadata_Site": field_.ravel(),
            "Metadata_Timepoint": t.ravel(),
            "focus_score": values.ravel(),
        }
    )


def _block_focus(block: np.ndarray) -> np.ndarray:
    from cellscale.ops import focus_scores

    planes = block.reshape(-1, *block.shape[-2:])
    return focus_scores(planes).reshape(block.shape[:-2])


def _metadata(cells: pd.DataFrame) -> list[str]:
    return [c for c in cells.columns if c.startswith("Metadata_")]


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    """Write atomically: a half-written file never looks complete."""
    _write_atomically(path, lambda partial: table.to_parquet(partial, index=False))


def _write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """``write`` a hidden partial file beside ``path``, then rename it into place."""
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    write(partial)
    partial.replace(path)


def _report(state: _Run, screen: _Screen, plates: list[xr.DataArray], profiles: Path) -> None:
    from cellscale.pipeline._report import ReportInputs, write_report
    from cellscale.profiles import PCA

    index = state.out / "report" / "index.html"
    if not state.problems and _unchanged(state, "report", [index]):
        return
    with _step(state, "report", units=len(plates)):
        scores = _scores(profiles / "cells.parquet", len(screen.cells))
        qc = _qc_tables(state, plates)
        quality_path = profiles / "field_quality.parquet"
        pca_path = profiles / "pca.npz"
        ratio = PCA.load(pca_path).explained_variance_ratio_ if pca_path.exists() else np.zeros(0)
        inputs = ReportInputs(
            title=f"cellscale run: {', '.join(p.name for p in state.config.plates)}",
            cells=screen.cells,
            scores=scores,
            explained_variance_ratio=np.asarray(ratio),
            field_quality=pd.read_parquet(quality_path) if quality_path.exists() else None,
            overlays=_overlays(state, plates),
            qc=qc,
            qc_channel=state.config.segment.channel,
            flagged=_flagged_thumbnails(qc, plates),
            illumination=_illumination_figures(state, plates),
            galleries=_galleries(state, plates, screen.cells),
            stages=tuple(_merged(state.stages)),
            problems=tuple(state.problems),
            notes=tuple(_notes(state.config)),
        )
        write_report(state.out / "report", inputs)


def _qc_tables(state: _Run, plates: list[xr.DataArray]) -> pd.DataFrame | None:
    """Every plate's QC table, one after the other; ``None`` where the run has none."""
    import cellscale

    paths = [state.out / "plates" / str(p.name) / "qc.parquet" for p in plates]
    tables = [cellscale.read_qc(path) for path in paths if path.exists()]
    if not state.config.qc.enabled or not tables:
        return None
    return pd.concat(tables, ignore_index=True)


#: Most flagged fields the report shows.
MAX_FLAGGED_SHOWN = 12


def _flagged_thumbnails(qc: pd.DataFrame | None, plates: list[xr.DataArray]) -> list[Thumbnail]:
    """The flagged images (at most :data:`MAX_FLAGGED_SHOWN`), each captioned with its flags."""
    if qc is None:
        return []
    flags = ["blurry", "saturated", "empty", "dim"]
    by_name = {str(p.name): p for p in plates}
    thumbs = []
    for row in qc[qc["flagged"]].head(MAX_FLAGGED_SHOWN).itertuples():
        plate = by_name[str(row.Metadata_Plate)]
        image = plate.sel(t=row.t, well=row.well, field=row.field, c=row.channel)
        image = image.max("z") if "z" in image.dims else image
        why = ", ".join(f for f in flags if getattr(row, f))
        title = f"{row.Metadata_Plate} · {row.well} field {row.field} · {row.channel}: {why}"
        thumbs.append(Thumbnail(title, np.asarray(image.values)))
    return thumbs


def _scores(path: Path, n: int) -> np.ndarray:
    if not path.exists():
        return np.zeros((n, 0))
    table = pd.read_parquet(path)
    return table[[c for c in table.columns if c.startswith("PC")]].to_numpy()


def _conditions(cells: pd.DataFrame) -> list[str]:
    wanted = ("Metadata_treatment", "Metadata_concentration")
    return [c for c in wanted if c in cells.columns]


def _overlays(state: _Run, plates: list[xr.DataArray]) -> list[Any]:
    """A few fields per condition of the first plate, with their cells' outlines."""
    import cellscale
    from cellscale.pipeline._report import Overlay

    plate = plates[0]
    labels = cellscale.open_labels(state.plate_dir(state.config.plates[0]) / "projected.zarr")
    compartment = str(labels.attrs.get("compartments", ["cells"])[0])
    channel = str(state.config.segment.channel)
    per_condition = state.config.report.overlays_per_condition
    conditions = [c for c in ("treatment", "concentration") if c in plate.coords]
    seen: dict[tuple[Any, ...], int] = {}
    overlays = []
    t = plate.coords["t"].values[-1]
    for well in plate.coords["well"].values:
        condition = tuple(plate.coords[c].sel(well=well).item() for c in conditions)
        if seen.get(condition, 0) >= per_condition:
            continue
        seen[condition] = seen.get(condition, 0) + 1
        field_ = plate.coords["field"].values[0]
        image = plate.sel(t=t, well=well, field=field_, c=channel)
        if "z" in image.dims:
            image = image.max("z")
        mask = labels[compartment].sel(t=t, well=well, field=field_)
        what = " · ".join(str(v) for v in condition)
        overlays.append(
            Overlay(f"{plate.name} · {well} field {field_} · {what}", image.values, mask.values)
        )
    return overlays


def _galleries(state: _Run, plates: list[xr.DataArray], cells: pd.DataFrame) -> list[Any]:
    """Crops of the first cells of each condition (first plate), the segmentation channel."""
    import cellscale
    from cellscale.pipeline._report import Gallery

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
    for values, group in mine.groupby(conditions, sort=True):
        (t, well, site), field_cells = max(group.groupby(keys, sort=True), key=lambda g: len(g[1]))
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
    if embed.weights:
        model = f"{embed.model} with the weights in {embed.weights}"
    else:
        model = (
            f"{embed.model} randomly initialised from seed {embed.seed} (no weights were given; "
            "set embed.weights to a state dict or TorchScript file to use trained weights)"
        )
    segment = config.segment
    seeds = f", seeded by {segment.nuclei_channel!r}" if segment.nuclei_channel else ""
    per_plate = ", per plate" if config.profiles.per_plate else ""
    return [
        f"Embeddings: {model}, layer {embed.layer!r}, "
        f"{config.crops.size}-pixel crops, mask {config.crops.mask!r}.",
        f"Segmentation: {segment.method} on channel {segment.channel!r}{seeds}; "
        f"border cells {'dropped' if segment.exclude_border else 'kept'}.",
        f"Projection: {config.project.method}. Normalisation: {config.profiles.normalize} "
        f"against {config.profiles.controls or 'all cells'}{per_plate}.",
    ]
