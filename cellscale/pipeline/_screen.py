"""The screen stages of a run: per-well profiles, and the PCA of every plate's embeddings.

The profiles (``wells.parquet``) come from the cell tables' measured features by default,
made as pycytominer makes them (:func:`cellscale.profile_wells`): each plate's cells are
aggregated per well one well at a time (:func:`cellscale.aggregate_cells`), annotated
with their metadata, normalised against the plate's control wells and feature-selected.
Where the run embeds cells and ``profiles.features`` asks for them, the aggregated
embeddings join them as ``Embedding_<i>`` columns. The PCA of cells (``pca.npz``,
``cells.parquet``) is made only from embeddings.

Each of these files is a :class:`~cellscale._stages.FileOutput` whose fingerprint names
its inputs by content (each plate's cell table and embeddings by their digests, the PCA
by its checksum), so a rerun makes again exactly the files whose inputs changed: a
corrected plate map changes the cell tables, hence the scores' metadata and the profiles'
treatments and control set, without refitting a PCA whose embeddings did not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from cellscale._stages import FileOutput, Fingerprint
from cellscale.cells import metadata_column
from cellscale.pipeline._config import ConfigError, PlateConfig, as_dict
from cellscale.pipeline._focus import FOCUS_COLUMN
from cellscale.pipeline._state import RunState, file_stage

__all__ = ["Screen", "drop_pca", "pca", "profiles", "screen_cells"]


@dataclass(frozen=True)
class Screen:
    """Every plate's cells (the embedded ones where the run embeds), with their embeddings."""

    cells: pd.DataFrame  # metadata and shape of each cell, plate after plate
    embeddings: Any  # (cell, feature) dask array, or None when nothing was embedded
    plate_rows: dict[str, slice]  # each plate's rows
    digests: dict[str, Any]  # each plate's cell table and embeddings, by content


def screen_cells(state: RunState) -> Screen:
    """The cells of the whole screen with plate-level metadata, and their embeddings.

    Where the run embeds (``embed.active``), these are the embedded cells, row for row
    with their embeddings; otherwise every cell, and no embeddings. Only the cells'
    metadata and shape columns are loaded (the report needs no more), so the driving
    process holds a few columns per cell, not the table. Both are read strictly: a
    missing or damaged piece is an error naming it.
    """
    import dask.array as da

    import cellscale
    from cellscale.io._rows import rows_digest
    from cellscale.measurement import cells_digest

    tables, arrays, rows, digests, start = [], [], {}, {}, 0
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
        digests[plate.name] = {"cells": cells_digest(folder / "cells.parquet")}
        if len(cells) and state.config.embed.active:
            embeddings = cellscale.open_embeddings(path)
            digests[plate.name]["embeddings"] = rows_digest(path)
            ids = embeddings.coords["cell_id"].values
            cells = cells.set_index("cell_id").loc[ids].reset_index()
            arrays.append(embeddings.data)
        if len(cells):
            tables.append(cells)
        rows[plate.name] = slice(start, start + len(cells))
        start += len(cells)
    cells = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return Screen(cells, da.concatenate(arrays) if arrays else None, rows, digests)


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


def pca(state: RunState, screen: Screen, folder: Path) -> None:
    """Fit the PCA (``pca.npz``) and score every embedded cell (``cells.parquet``)."""
    import cellscale

    model = FileOutput(folder / "pca.npz")
    embeddings = {name: d.get("embeddings") for name, d in screen.digests.items()}
    fitted = Fingerprint(
        "pca", inputs={"embeddings": embeddings}, parameters=as_dict(state.config.pca)
    )

    def fit(partial: Path) -> None:
        k = min(state.config.pca.n_components, *screen.embeddings.shape)
        cellscale.PCA(k).fit(screen.embeddings).save(partial)

    file_stage(state, "pca", None, len(screen.cells), model, fitted, fit)
    scored = Fingerprint("scores", inputs={"pca": model.digest(), "cells": screen.digests})

    def score(partial: Path) -> None:
        components = cellscale.PCA.load(model.open()).transform(screen.embeddings)
        values = np.asarray(components.compute())
        meta = screen.cells[["cell_id", *_metadata(screen.cells)]].copy()
        for i in range(values.shape[1]):
            meta[f"PC{i + 1}"] = values[:, i]
        meta.to_parquet(partial, index=False)

    scores = FileOutput(folder / "cells.parquet")
    file_stage(state, "pca", None, len(screen.cells), scores, scored, score)


def profiles(state: RunState, screen: Screen, plates: list[xr.DataArray], folder: Path) -> None:
    """Make the per-well profiles (``wells.parquet``) and the field quality table."""
    config = state.config.profiles
    metadata = {p.name: p.metadata for p in state.config.plates}
    inputs = {
        name: {k: v for k, v in digest.items() if k == "cells" or config.features != "measured"}
        for name, digest in screen.digests.items()
    }
    wells = Fingerprint(
        "profiles",
        inputs={"cells": inputs},
        parameters={**as_dict(config), "metadata": metadata},
    )

    def make(partial: Path) -> None:
        _well_profiles(state, screen).to_parquet(partial, index=False)

    if len(screen.cells):
        output = FileOutput(folder / "wells.parquet")
        file_stage(state, "profiles", None, len(screen.cells), output, wells, make)
    else:
        state.problems.append("no cells on any plate: no well profiles")
    quality = Fingerprint(
        "field_quality",
        inputs={"plates": [p.data.name for p in plates], "qc": _qc_digests(state)},
        parameters={"channel": state.config.segment.channel, "measure": FOCUS_COLUMN},
    )
    focus = FileOutput(folder / "field_quality.parquet")
    file_stage(
        state,
        "profiles",
        None,
        len(screen.cells),
        focus,
        quality,
        lambda partial: _field_quality(state, plates).to_parquet(partial, index=False),
    )


def drop_pca(folder: Path) -> None:
    """Remove the PCA and scores an earlier run with embeddings left in ``folder``.

    A run without embeddings makes neither, and the report must not show stale ones.
    """
    from cellscale._stages import output_lock

    for name in ("pca.npz", "cells.parquet"):
        output = FileOutput(folder / name)
        if output.path.exists() or output.record_path.exists():
            with output_lock(output.path):
                output.record_path.unlink(missing_ok=True)
                output.path.unlink(missing_ok=True)


def _well_profiles(state: RunState, screen: Screen) -> pd.DataFrame:
    """Every plate's wells aggregated and annotated, then normalised and feature-selected."""
    import cellscale

    config = state.config.profiles
    tables = []
    for plate in state.config.plates:
        rows = screen.plate_rows[plate.name]
        if rows.stop == rows.start:
            continue
        wells = cellscale.aggregate_cells(
            state.plate_dir(plate) / "cells.parquet",
            list(config.by),
            operation=config.aggregate,
            metadata=plate.metadata,
        )
        if config.features != "measured":
            measured = config.features == "both"
            kept = [c for c in wells.columns if measured or c.startswith("Metadata_")]
            embedded = _embedding_wells(state, screen, rows)
            wells = wells[kept].merge(embedded, on=list(config.by), how="left")
        if config.per_plate:
            _check_controls(config.controls, wells, plate.name)
        tables.append(wells)
    profiles = pd.concat(tables, ignore_index=True)
    _check_controls(config.controls, profiles, None)
    return cellscale.profile_wells(
        profiles,
        plate="Metadata_Plate" if config.per_plate else None,
        controls=config.controls,
        normalize=None if config.normalize == "none" else config.normalize,
        operation=config.feature_select,
    )


def _embedding_wells(state: RunState, screen: Screen, rows: slice) -> pd.DataFrame:
    """One plate's embeddings aggregated per group, as ``Embedding_<i>`` columns."""
    import cellscale

    config = state.config.profiles
    block = screen.embeddings[rows]
    names = [f"Embedding_{i}" for i in range(block.shape[1])]
    cells = screen.cells.iloc[rows].reset_index(drop=True)
    table = cellscale.aggregate(
        block, list(config.by), operation=config.aggregate, features=names, metadata=cells
    )
    return table[[*config.by, *names]]


def _check_controls(controls: str | None, wells: pd.DataFrame, plate: str | None) -> None:
    if controls is not None and wells.query(controls).empty:
        where = f" of plate {plate}" if plate else ""
        raise ConfigError(f"profiles.controls: {controls!r} selects no wells{where}")


def _qc_digests(state: RunState) -> dict[str, str]:
    if not state.config.qc.enabled:
        return {}
    return {
        p.name: FileOutput(state.plate_dir(p) / "qc.parquet").digest() for p in state.config.plates
    }


def _field_quality(state: RunState, plates: list[xr.DataArray]) -> pd.DataFrame:
    from cellscale.pipeline._focus import field_quality

    return pd.concat([field_quality(state, p) for p in plates], ignore_index=True)


def _metadata(cells: pd.DataFrame) -> list[str]:
    return [c for c in cells.columns if c.startswith("Metadata_")]
