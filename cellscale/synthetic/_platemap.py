"""Plate formats and default plate maps for synthetic screens."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from cellscale.plate import PlateError, format_well, normalize_well, row_letters

__all__ = ["DEFAULT_CONCENTRATIONS", "PLATE_FORMATS", "default_plate_map", "plate_wells"]

PLATE_FORMATS: dict[int, tuple[int, int]] = {
    6: (2, 3),
    12: (3, 4),
    24: (4, 6),
    48: (6, 8),
    96: (8, 12),
    384: (16, 24),
    1536: (32, 48),
}
"""Standard plate formats: number of wells -> (rows, columns)."""

DEFAULT_CONCENTRATIONS: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
"""A seven-point, roughly half-log dose series in micromolar."""


def plate_wells(plate_format: int = 96) -> list[str]:
    """All well names of a standard plate, row by row (``A01, A02, …``).

    Parameters
    ----------
    plate_format
        Number of wells: one of 6, 12, 24, 48, 96, 384 or 1536.

    Returns
    -------
    list of str
        Well names such as ``"B03"``.

    Examples
    --------
    >>> plate_wells(6)
    ['A01', 'A02', 'A03', 'B01', 'B02', 'B03']
    """
    if plate_format not in PLATE_FORMATS:
        raise PlateError(
            f"unknown plate format {plate_format!r}; choose one of {sorted(PLATE_FORMATS)}"
        )
    n_rows, n_cols = PLATE_FORMATS[plate_format]
    return [format_well(row_letters(r), c + 1) for r in range(n_rows) for c in range(n_cols)]


def resolve_wells(wells: int | Sequence[str], plate_format: int) -> list[str]:
    """Well names from a count (the first ``n`` wells of the plate) or from names."""
    if isinstance(wells, int):
        every = plate_wells(plate_format)
        if not 1 <= wells <= len(every):
            raise PlateError(
                f"asked for {wells} wells; a {plate_format}-well plate holds 1 to {len(every)}"
            )
        return every[:wells]
    names = [normalize_well(w) for w in wells]
    if not names:
        raise PlateError("no wells given")
    if len(set(names)) != len(names):
        raise PlateError(f"wells are repeated: {names}")
    return names


def default_plate_map(
    wells: int | Sequence[str],
    *,
    treatments: Sequence[str] = ("compound",),
    concentrations: Sequence[float] = DEFAULT_CONCENTRATIONS,
    control: str = "DMSO",
    plate_format: int = 96,
) -> pd.DataFrame:
    """A dose-response plate map: a control plus each treatment at each concentration.

    The conditions ``[control, (treatment, c) for each treatment and c]`` are dealt
    to the wells in order and repeat, so every repetition is one more replicate.

    Parameters
    ----------
    wells
        Well names, or a count meaning the first ``n`` wells of ``plate_format``.
    treatments
        Treatment names.
    concentrations
        Concentrations in micromolar, applied to every treatment.
    control
        Name of the vehicle control (concentration 0, ``control=True``).
    plate_format
        Plate format used when ``wells`` is a count.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``well``, with columns ``treatment`` (str), ``concentration``
        (float, µM), ``replicate`` (int, from 1) and ``control`` (bool).

    Examples
    --------
    >>> default_plate_map(4, concentrations=[1.0, 10.0]).to_dict("list")["treatment"]
    ['DMSO', 'compound', 'compound', 'DMSO']
    """
    names = resolve_wells(wells, plate_format)
    conditions = [(control, 0.0, True)] + [
        (str(name), float(conc), False) for name in treatments for conc in concentrations
    ]
    rows = [(*conditions[i % len(conditions)], i // len(conditions) + 1) for i in range(len(names))]
    table = pd.DataFrame(
        rows, columns=["treatment", "concentration", "control", "replicate"], index=names
    )
    table.index.name = "well"
    return table[["treatment", "concentration", "replicate", "control"]]
