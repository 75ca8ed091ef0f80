"""Well profiles the way pycytominer makes them: aggregate, annotate, normalise, select.

:func:`~cellscale.profiles.aggregate_cells` aggregates and annotates each plate's cells;
:func:`profile_wells` takes the aggregated wells of one or many plates, normalises each
plate against its control wells (:func:`~cellscale.profiles.normalize_profiles`) and
then keeps the features that :func:`~cellscale.profiles.feature_select` keeps on the
whole table, so every plate ends up with the same columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from cellscale.profiles._feature_select import DEFAULT_OPERATIONS, feature_select
from cellscale.profiles._profile_normalize import normalize_profiles
from cellscale.profiles._table import METADATA_PREFIX

__all__ = ["profile_wells"]


def profile_wells(
    wells: pd.DataFrame,
    features: Sequence[str] | None = None,
    *,
    plate: str | None = "Metadata_Plate",
    controls: str | None = None,
    normalize: str | None = "standardize",
    operation: str | Sequence[str] = DEFAULT_OPERATIONS,
) -> pd.DataFrame:
    """Normalise aggregated well profiles per plate against controls, then select features.

    Parameters
    ----------
    wells
        Aggregated, annotated profiles (:func:`~cellscale.profiles.aggregate_cells`),
        one row per well of one or many plates.
    features
        The feature columns; by default every numeric column not prefixed ``Metadata_``.
    plate
        The column whose values are normalised apart (each plate against its own
        controls); ``None`` normalises the whole table together.
    controls
        A pandas query selecting the control wells, e.g. ``"Metadata_treatment ==
        'DMSO'"``; ``None`` normalises against all wells.
    normalize
        ``"standardize"``, ``"robustize"``, ``"mad_robustize"`` or ``None`` (keep the
        aggregated values).
    operation
        The feature selection operations, in order (:func:`feature_select`); empty to
        keep every feature.

    Returns
    -------
    pandas.DataFrame
        The profiles in the order of ``wells``: the ``Metadata_`` columns, then the
        selected features.

    Raises
    ------
    ValueError
        If ``controls`` selects no wells of a plate (naming it), or as
        :func:`normalize_profiles` and :func:`feature_select` do.
    """
    names = list(features) if features is not None else _features(wells)
    if normalize is not None and len(wells):
        groups = [("", wells)] if plate is None else list(wells.groupby(plate, sort=False))
        parts = []
        for name, rows in groups:
            if controls is not None and rows.query(controls).empty:
                where = f" of plate {name}" if plate else ""
                raise ValueError(f"controls {controls!r} selects no wells{where}")
            parts.append(
                normalize_profiles(rows, names, samples=controls or "all", method=normalize)
            )
        wells = pd.concat(parts).loc[wells.index]
    if operation and names:
        wells = feature_select(wells, names, operation=operation)
    return wells.reset_index(drop=True)


def _features(wells: pd.DataFrame) -> list[str]:
    return [
        str(c)
        for c in wells.columns
        if not str(c).startswith(METADATA_PREFIX) and pd.api.types.is_numeric_dtype(wells[c])
    ]
