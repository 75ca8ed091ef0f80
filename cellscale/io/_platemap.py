"""Plate maps: a table of per-well annotations (treatment, concentration, controls …)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cellscale.plate import PlateError, format_well, normalize_well, split_well

__all__ = ["check_plate_map", "read_plate_map"]

WELL_COLUMNS = ("well", "well_id", "well_name", "wellname", "metadata_well")
"""Column names (case-insensitive) recognised as holding well names."""


def read_plate_map(
    source: str | Path | pd.DataFrame, *, well_column: str | None = None
) -> pd.DataFrame:
    """Read a plate map into a table indexed by well name.

    Parameters
    ----------
    source
        A CSV or TSV file (the delimiter is sniffed), or a DataFrame.
    well_column
        The column holding well names. By default the first of ``well``,
        ``well_id``, ``well_name``, ``wellname``, ``Metadata_Well`` (any case);
        failing that, a ``row`` column with a ``col``/``column`` column.

    Returns
    -------
    pandas.DataFrame
        Indexed by canonical well names (``"B03"``); every other column is an
        annotation that becomes a ``well`` coordinate of the plate.

    Raises
    ------
    PlateError
        If no well column is found, or a well name is invalid or repeated.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"Well": ["b3", "B4"], "treatment": ["DMSO", "drug"]})
    >>> read_plate_map(table)["treatment"].to_dict()
    {'B03': 'DMSO', 'B04': 'drug'}
    """
    label = str(source) if not isinstance(source, pd.DataFrame) else "the plate map"
    if isinstance(source, pd.DataFrame):
        table = source.copy()
    else:
        table = pd.read_csv(source, sep=None, engine="python", skipinitialspace=True)
    table.columns = [str(c).strip() for c in table.columns]
    wells, used = _well_names(table, well_column, label)
    table = table.drop(columns=used)
    table.index = pd.Index(wells)
    duplicated = sorted(set(table.index[table.index.duplicated()]))
    if duplicated:
        raise PlateError(f"{label} lists wells more than once: {duplicated}")
    return table


def _well_names(
    table: pd.DataFrame, well_column: str | None, label: str
) -> tuple[list[str], list[str]]:
    by_lower = {c.lower(): c for c in table.columns}
    column = well_column or next((by_lower[n] for n in WELL_COLUMNS if n in by_lower), None)
    if column is not None:
        if column not in table.columns:
            raise PlateError(f"{label} has no column {column!r}; columns: {list(table.columns)}")
        return _normalised(table[column], label, lambda v: normalize_well(str(v))), [column]
    row = by_lower.get("row")
    col = by_lower.get("col", by_lower.get("column"))
    if row is None or col is None:
        raise PlateError(
            f"{label} has no well column: name one with well_column=, or use one of "
            f"{list(WELL_COLUMNS)} or 'row' + 'col'; columns: {list(table.columns)}"
        )
    pairs = pd.Series(list(zip(table[row], table[col], strict=True)), index=table.index)
    return _normalised(pairs, label, lambda rc: format_well(*split_well(f"{rc[0]}{rc[1]}"))), [
        row,
        col,
    ]


def _normalised(values: pd.Series, label: str, convert: Callable[[Any], str]) -> list[str]:
    names: list[str] = []
    bad: list[str] = []
    for line, value in enumerate(values, start=2):
        try:
            names.append(convert(value))
        except PlateError:
            bad.append(f"line {line}: {value!r}")
    if bad:
        raise PlateError(f"{label} has invalid well names: {', '.join(bad[:20])}")
    return names


def check_plate_map(
    table: pd.DataFrame,
    wells: Sequence[str],
    *,
    plate_shape: tuple[int, int] | None = None,
    label: str = "the plate map",
) -> None:
    """Check a plate map against the wells of a plate.

    Parameters
    ----------
    table
        A plate map from :func:`read_plate_map`.
    wells
        The plate's (imaged) wells.
    plate_shape
        ``(rows, columns)`` of the plate format, when known: map wells outside it
        are errors.
    label
        How to name the plate map in messages.

    Raises
    ------
    PlateError
        If imaged wells are absent from the map, or map wells lie outside the plate
        format. Map wells that were not imaged are allowed (a map usually describes
        the whole plate).
    """
    unmapped = [w for w in wells if w not in table.index]
    if unmapped:
        raise PlateError(
            f"{len(unmapped)} imaged well(s) are missing from {label}: {unmapped[:20]}; "
            f"the map lists {len(table.index)} well(s), e.g. {list(table.index[:5])}"
        )
    if plate_shape is None:
        return
    rows, cols = plate_shape
    outside = [w for w in table.index if not _inside(w, rows, cols)]
    if outside:
        raise PlateError(f"{label} lists wells outside the {rows} x {cols} plate: {outside[:20]}")


def _inside(well: str, rows: int, cols: int) -> bool:
    row, col = split_well(well)
    index = 0
    for letter in row:
        index = index * 26 + (ord(letter) - ord("A") + 1)
    return index <= rows and col <= cols
