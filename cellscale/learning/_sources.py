"""What a training reads: each plate's images, cell table and labels, from a run or by hand."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["IMAGES", "PlateInput", "plate_inputs"]

#: Which of a run's plate stores crops are cut from: the projection (2D crops) or the
#: ingested Z stacks (3D crops, for ``r3d_18``).
IMAGES = ("projected", "raw")

_RUN_RECORD = "cellscale_run.json"


@dataclass(frozen=True)
class PlateInput:
    """One plate's inputs to a training.

    Attributes
    ----------
    name
        The plate's name (for messages).
    plate
        The plate store, or a plate DataArray (lazy: it is opened in each data worker).
    cells
        The plate's cell table (``cells.parquet``), or a DataFrame of its rows (some of
        them, or with a column added to learn); ``None`` to train on whole fields.
    labels
        The store holding the labels the table was measured from (for masked crops).
    """

    name: str
    plate: Any
    cells: Path | pd.DataFrame | None = None
    labels: Any = None


def plate_inputs(source: Any, *, images: str = "projected") -> list[PlateInput]:
    """The plates a training reads, from a run folder or a list of plates.

    Parameters
    ----------
    source
        The output folder of :func:`cellscale.run` (every plate in the run's order, crops
        cut from ``plates/<name>/projected.zarr`` or ``raw.zarr``, cells from
        ``cells.parquet``), or a sequence of :class:`PlateInput` or of mappings with the
        keys ``plate``, ``cells`` (a cell table or a DataFrame of its rows) and optionally
        ``labels`` and ``name``.
    images
        For a run folder: ``"projected"`` or ``"raw"`` (Z stacks, for 3D crops).

    Raises
    ------
    FileNotFoundError
        If the folder is not a run's output, or a plate's store or cell table is missing;
        the message names it.
    """
    if images not in IMAGES:
        raise ValueError(f"images must be one of {IMAGES}, got {images!r}")
    if isinstance(source, str | Path):
        return _run_plates(Path(source), images)
    if not isinstance(source, Sequence) or not source:
        raise ValueError(
            "source must be a run folder or a non-empty list of plates "
            "({'plate': ..., 'cells': ...} or PlateInput)"
        )
    return [_plate(item, i) for i, item in enumerate(source)]


def _run_plates(folder: Path, images: str) -> list[PlateInput]:
    record = folder / _RUN_RECORD
    if not record.is_file():
        raise FileNotFoundError(
            f"{folder} is not the output of a cellscale run ({_RUN_RECORD} is missing); pass "
            "the folder a run wrote, or a list of plates with their cell tables"
        )
    names = [str(p["name"]) for p in json.loads(record.read_text())["plates"]]
    plates = []
    for name in names:
        here = folder / "plates" / name
        store, cells = here / f"{images}.zarr", here / "cells.parquet"
        for path in (store, cells):
            if not path.exists():
                raise FileNotFoundError(
                    f"plate {name!r} of the run in {folder} has no {path.name}: run the "
                    "pipeline to the end first (`cellscale run`)"
                )
        plates.append(PlateInput(name, store, cells, here / "projected.zarr"))
    return plates


def _plate(item: Any, position: int) -> PlateInput:
    if isinstance(item, PlateInput):
        return item
    if not isinstance(item, Mapping) or "plate" not in item:
        raise ValueError(
            f"plate {position} of the source is {item!r}: give a mapping with 'plate' (a plate "
            "store) and 'cells' (its cell table), or a PlateInput"
        )
    unknown = sorted(set(item) - {"plate", "cells", "labels", "name"})
    if unknown:
        raise ValueError(f"plate {position} of the source: unknown keys {unknown}")
    plate, cells = item["plate"], item.get("cells")
    if isinstance(cells, str | Path):
        cells = Path(cells)
    if isinstance(cells, Path) and not cells.exists():
        raise FileNotFoundError(f"plate {position} of the source: no cell table at {cells}")
    if isinstance(plate, str | Path) and not Path(plate).exists():
        raise FileNotFoundError(f"plate {position} of the source: no plate store at {plate}")
    default = Path(plate).parent.name if isinstance(plate, str | Path) else str(plate.name)
    labels = item.get("labels", plate if isinstance(plate, str | Path) else None)
    return PlateInput(str(item.get("name", default)), plate, cells, labels)
