"""The screen stages of a run: PCA of every plate's embeddings, and per-well profiles.

Each of their files is a :class:`~cellscale._stages.FileOutput` whose fingerprint names
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
from cellscale.pipeline._state import RunState, file_stage

__all__ = ["Screen", "pca", "profiles", "screen_cells"]


@dataclass(frozen=True)
class Screen:
    """Every plate's embedded cells, row for row with their embeddings."""

    cells: pd.DataFrame  # metadata and shape of each embedded cell, plate after plate
    embeddings: Any  # (cell, feature) dask array, or None when nothing was embedded
    plate_rows: dict[str, slice]  # each plate's rows
    digests: dict[str, Any]  # each plate's cell table and embeddings, by content


def screen_cells(state: RunState) -> Screen:
    """The embedded cells of the whole screen with plate-level metadata, and their embeddings.

    Only the cells' metadata and shape columns are loaded (the profiles and the report
    need no more), so the driving process holds a few columns per cell, not the table.
    Both are read strictly: a missing or damaged piece is an error naming it.
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
        if len(cells) == 0:
            rows[plate.name] = slice(start, start)
            continue
        embeddings = cellscale.open_embeddings(path)
        digests[plate.name]["embeddings"] = rows_digest(path)
        ids = embeddings.coords["cell_id"].values
        embedded = cells.set_index("cell_id").loc[ids].reset_index()
        tables.append(embedded)
        arrays.append(embeddings.data)
        rows[plate.name] = slice(start, start + len(embedded))
        start += len(embedded)
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
    """Normalise each plate's embeddings against its controls and aggregate them per well."""
    import dask.array as da

    import cellscale

    config = state.config.profiles
    metadata = {p.name: p.metadata for p in state.config.plates}
    wells = Fingerprint(
        "profiles",
        inputs={"cells": screen.digests},
        parameters={**as_dict(config), "metadata": metadata},
    )

    def aggregate(partial: Path) -> None:
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
            da.concatenate(parts), list(config.by), metadata=screen.cells, output=partial
        )

    output = FileOutput(folder / "wells.parquet")
    file_stage(state, "profiles", None, len(screen.cells), output, wells, aggregate)
    quality = Fingerprint(
        "field_quality",
        inputs={"plates": [p.data.name for p in plates], "qc": _qc_digests(state)},
        parameters={"channel": state.config.segment.channel},
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
