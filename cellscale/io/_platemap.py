"""Plate maps: a table of per-well annotations (treatment, concentration, controls …).

Plate maps come from spreadsheets, so files are read as they are saved: UTF-8 with or
without a byte-order mark, UTF-16 ("Unicode text"), or Windows-1252/Latin-1, separated
by commas, semicolons, tabs or ``|``. Rows and unnamed columns left wholly empty are
dropped.
"""

from __future__ import annotations

import codecs
import io
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cellscale.plate import PlateError, format_well, normalize_well, split_well

__all__ = ["check_plate_map", "read_plate_map"]

WELL_COLUMNS = ("well", "well_id", "well_name", "wellname", "metadata_well")
"""Column names (case-insensitive) recognised as holding well names."""

_DELIMITERS = (",", "\t", ";", "|")
_SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".ods")
_MAX_LISTED = 20


def read_plate_map(
    source: str | Path | pd.DataFrame, *, well_column: str | None = None
) -> pd.DataFrame:
    """Read a plate map into a table indexed by well name.

    Parameters
    ----------
    source
        A CSV or TSV file (the encoding and the delimiter, one of ``,``, ``;``,
        tab or ``|``, are detected), or a DataFrame.
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
        If the file cannot be read as a table, no well column is found, or a well
        name is invalid or repeated; the message names the file.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"Well": ["b3", "B4"], "treatment": ["DMSO", "drug"]})
    >>> read_plate_map(table)["treatment"].to_dict()
    {'B03': 'DMSO', 'B04': 'drug'}
    """
    label = str(source) if not isinstance(source, pd.DataFrame) else "the plate map"
    table = source.copy() if isinstance(source, pd.DataFrame) else _read_table(Path(source))
    table.columns = [str(c).strip() for c in table.columns]
    table.index = pd.RangeIndex(2, 2 + len(table))  # line numbers, the header on line 1
    table = _drop_empty(table)
    wells, used = _well_names(table, well_column, label)
    table = table.drop(columns=used)
    table.index = pd.Index(wells)
    duplicated = sorted(set(table.index[table.index.duplicated()]))
    if duplicated:
        raise PlateError(f"{label} lists wells more than once: {duplicated}")
    return table


def _read_table(path: Path) -> pd.DataFrame:
    """A plate-map file as a table, whatever its encoding and delimiter."""
    if path.suffix.lower() in _SPREADSHEETS:
        raise PlateError(
            f"plate map {path} is a spreadsheet; save it as CSV, or pass a DataFrame "
            "(pandas.read_excel)"
        )
    text = _decode(path.read_bytes())
    header = next((line for line in text.splitlines() if line.strip()), "")
    sep = max(_DELIMITERS, key=header.count)
    try:
        return pd.read_csv(io.StringIO(text), sep=sep, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise PlateError(
            f"cannot read plate map {path} as a {sep!r}-separated table: {exc}"
        ) from exc


def _decode(data: bytes) -> str:
    """Text of a file saved as UTF-16 (with its mark), UTF-8, or else Windows-1252/Latin-1."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")  # cp1252 leaves five bytes undefined; Latin-1 none


def _drop_empty(table: pd.DataFrame) -> pd.DataFrame:
    """Drop wholly empty rows, and wholly empty columns without a header (spreadsheet debris)."""
    unnamed = [c for c in table.columns if c.startswith("Unnamed:") and table[c].isna().all()]
    return table.drop(columns=unnamed).dropna(how="all")


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
    for line, value in values.items():
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
        format.

    Warns
    -----
    UserWarning
        If map wells were not imaged (naming them): the plate leaves them out, which
        is expected when a map describes the whole plate but a mistake when the map
        names wells differently from the images.
    """
    unmapped = [w for w in wells if w not in table.index]
    if unmapped:
        raise PlateError(
            f"{len(unmapped)} imaged well(s) are missing from {label}: {unmapped[:20]}; "
            f"the map lists {len(table.index)} well(s), e.g. {list(table.index[:5])}"
        )
    if plate_shape is not None:
        rows, cols = plate_shape
        outside = [w for w in table.index if not _inside(w, rows, cols)]
        if outside:
            raise PlateError(
                f"{label} lists wells outside the {rows} x {cols} plate: {outside[:20]}"
            )
    imaged = set(wells)
    unimaged = [w for w in table.index if w not in imaged]
    if unimaged:
        more = f" … and {len(unimaged) - _MAX_LISTED} more" if len(unimaged) > _MAX_LISTED else ""
        warnings.warn(
            f"{label} lists {len(unimaged)} well(s) that were not imaged, which the plate "
            f"leaves out: {unimaged[:_MAX_LISTED]}{more}",
            UserWarning,
            stacklevel=2,
        )


def _inside(well: str, rows: int, cols: int) -> bool:
    row, col = split_well(well)
    index = 0
    for letter in row:
        index = index * 26 + (ord(letter) - ord("A") + 1)
    return index <= rows and col <= cols
