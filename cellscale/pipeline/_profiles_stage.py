"""The profiles stage of a run: per-well profiles as pycytominer makes them, and field quality.

The profiles (``wells.parquet``) come from the cell tables' measured features by default
(:func:`cellscale.profile_wells`): each plate's cells are aggregated per well one well at
a time (:func:`cellscale.aggregate_cells`) and annotated with their metadata
(``wells_aggregated.parquet``, :data:`WELLS_AGGREGATED`), then normalised against the
plate's control wells and feature-selected. Where the run embeds cells and
``profiles.features`` asks for them, the aggregated embeddings join them as
``Embedding_<i>`` columns, aggregated from each plate's chunks (means from per-chunk sums,
medians from one group's rows at a time, both exact) with the metadata of
:data:`~cellscale.pipeline._cell_rows.CHUNK_CELLS` embedded cells at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from cellscale._stages import FileOutput, Fingerprint
from cellscale.pipeline._cell_rows import CHUNK_CELLS
from cellscale.pipeline._config import ConfigError, as_dict
from cellscale.pipeline._focus import FOCUS_COLUMN
from cellscale.pipeline._screen import PlateCells, Screen, embedded_rows
from cellscale.pipeline._state import RunState, file_stage

__all__ = ["WELLS_AGGREGATED", "profiles"]

#: The per-well profiles before normalisation and feature selection, beside ``wells.parquet``.
WELLS_AGGREGATED = "wells_aggregated.parquet"


def profiles(state: RunState, screen: Screen, plates: list[xr.DataArray], folder: Path) -> None:
    """Make the per-well profiles and the field quality table.

    The wells are aggregated and annotated into ``wells_aggregated.parquet``
    (:data:`WELLS_AGGREGATED`, pycytominer's "augmented" profiles), then normalised and
    feature-selected into ``wells.parquet``; a change to the normalisation alone
    aggregates nothing again.
    """
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

    aggregated = FileOutput(folder / WELLS_AGGREGATED)
    by_wells = Fingerprint(
        "aggregated",
        inputs={"cells": inputs},
        parameters={
            "features": config.features,
            "aggregate": config.aggregate,
            "by": list(config.by),
            "metadata": metadata,
        },
    )

    def aggregate(partial: Path) -> None:
        _aggregated_wells(state, screen).to_parquet(partial, index=False)

    def normalise(partial: Path) -> None:
        aggregated_wells = pd.read_parquet(aggregated.open())
        _normalised_wells(state, aggregated_wells).to_parquet(partial, index=False)

    if screen.cells:
        file_stage(state, "profiles", None, screen.cells, aggregated, by_wells, aggregate)
        output = FileOutput(folder / "wells.parquet")
        file_stage(state, "profiles", None, screen.cells, output, wells, normalise)
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
        screen.cells,
        focus,
        quality,
        lambda partial: _field_quality(state, plates).to_parquet(partial, index=False),
    )


def _aggregated_wells(state: RunState, screen: Screen) -> pd.DataFrame:
    """Every plate's wells aggregated and annotated (the profiles before normalisation)."""
    import cellscale

    config = state.config.profiles
    tables = []
    for plate in screen.plates:
        if not plate.rows:
            continue
        wells = cellscale.aggregate_cells(
            plate.folder / "cells.parquet",
            list(config.by),
            operation=config.aggregate,
            metadata=plate.config.metadata,
        )
        if config.features != "measured":
            measured = config.features == "both"
            kept = [c for c in wells.columns if measured or c.startswith("Metadata_")]
            embedded = _embedding_wells(state, plate)
            wells = wells[kept].merge(embedded, on=list(config.by), how="left")
        if config.per_plate:
            _check_controls(config.controls, wells, plate.name)
        tables.append(wells)
    return pd.concat(tables, ignore_index=True)


def _normalised_wells(state: RunState, profiles: pd.DataFrame) -> pd.DataFrame:
    """The aggregated wells normalised against controls and feature-selected."""
    import cellscale

    config = state.config.profiles
    _check_controls(config.controls, profiles, None)
    return cellscale.profile_wells(
        profiles,
        plate="Metadata_Plate" if config.per_plate else None,
        controls=config.controls,
        normalize=None if config.normalize == "none" else config.normalize,
        operation=config.feature_select,
    )


def _embedding_wells(state: RunState, plate: PlateCells) -> pd.DataFrame:
    """One plate's embeddings aggregated per group, as ``Embedding_<i>`` columns.

    The groups are read from the metadata :data:`CHUNK_CELLS` embedded cells at a time,
    each row given its group's number; then, from the plate's chunks of embeddings, a mean
    from per-chunk sums, a median from one group's rows at a time
    (:func:`~cellscale.profiles._aggregate.aggregate_codes`), both exact and the same as
    :func:`cellscale.aggregate` with all the metadata at once.
    """
    from cellscale.profiles._aggregate import aggregate_codes

    by = list(state.config.profiles.by)
    rows = embedded_rows(state, plate)
    known: pd.DataFrame | None = None  # each group's key, numbered by its first row
    codes = []
    for start in range(0, len(rows), CHUNK_CELLS):
        grouped = rows.between(start, start + CHUNK_CELLS).groupby(by, sort=False, dropna=False)
        mine = grouped.size().reset_index()[by]
        keys = mine if known is None else pd.concat([known, mine], ignore_index=True)
        numbers = keys.groupby(by, sort=False, dropna=False).ngroup().to_numpy()
        codes.append(numbers[len(keys) - len(mine) :][grouped.ngroup().to_numpy()])
        known = keys.iloc[np.unique(numbers, return_index=True)[1]].reset_index(drop=True)
    assert known is not None, "a plate with embedded cells"
    found = known.groupby(by, sort=True, dropna=False).ngroup().to_numpy()
    names = [f"Embedding_{i}" for i in range(plate.embeddings.shape[1])]
    table = aggregate_codes(
        plate.embeddings,
        found[np.concatenate(codes)],
        known.iloc[np.argsort(found)],
        operation=state.config.profiles.aggregate,
        features=names,
    )
    return table[[*by, *names]]


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
