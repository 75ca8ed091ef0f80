"""Per-well checks that a plate's segmentation found the objects it was meant to find.

A segmenter that fails rarely fails loudly: on a punctate stain it outlines a thousand
vesicles per well, on a faint one it finds a handful of cells, and the cell table looks
like any other. :func:`check_segmentation` compares every well's object count and median
object area with what is expected and names the wells that are far off.

The expectations, and why the thresholds are what they are:

- **Expected size.** With ``expected_diameter`` (the diameter the segmenter was told), an
  object should cover about ``π d² / 4`` pixels. Without it the plate is its own
  reference: the median over its wells of their median areas. A plate reference assumes
  that most wells segment correctly; where most fail alike, only a given diameter tells.
  (A diameter the segmenter estimates per field is no reference: it measures whatever
  blobs the stain shows, puncta included, so it agrees with the failure.)
- **Too small**: a well's median area is below a quarter of the expected area
  (:data:`SMALL_AREA`), i.e. the typical object is less than half the expected diameter.
  That is beyond the spread of cell and nucleus sizes of one cell line across the
  treatments of a screen (about ±30 % in diameter) and above the segmenter's own debris
  cut (a tenth of the expected area), so objects this small are fragments or
  sub-cellular structures. Against the plate the same cut applies to the plate's typical
  well, which stands in for the diameter.
- **Too few objects**: a well has fewer than a quarter (:data:`FEW_OBJECTS`) of the median
  count per well of the plate's wells whose objects are of the expected size (a well of
  fragments has no say in what a normal count is), and is an outlier of those counts: its
  robust z-score (the modified z-score of Iglewicz and Hoaglin,
  ``0.6745 (x - median) / MAD`` on log counts) is below ``-OUTLIER_Z`` (3.5, their
  recommended cut). Counts, unlike sizes, spread widely with treatment (a dose series
  thins the cells), and the z-score keeps a plate with such spread from being flagged
  well by well. Treatments that kill or detach cells still give outliers, so a count
  flag is a question, not a verdict; the message says both.
- **Enough wells**: plate-relative checks need at least :data:`MIN_WELLS` wells with
  objects, so that the median is a typical well and not the midpoint of two.
- **No objects**: a well that was segmented (one of ``wells``) and has none.

Counts are per well, summed over fields and time points, so wells are compared fairly
when they have the same fields, as the wells of one plate do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cellscale.cells import compartment_prefix

__all__ = [
    "FEW_OBJECTS",
    "MIN_WELLS",
    "OUTLIER_Z",
    "SMALL_AREA",
    "SegmentationFlag",
    "check_segmentation",
]

SMALL_AREA = 0.25
"""A well's median object area below this fraction of the expected area is flagged."""

FEW_OBJECTS = 0.25
"""A well with fewer objects than this fraction of the plate's median count is flagged."""

OUTLIER_Z = 3.5
"""Least robust (MAD-based) z-score, on log scale, of a well flagged for its count."""

MIN_WELLS = 3
"""Least number of wells with objects for checks against the plate's own distribution."""

_MAD_TO_SIGMA = 0.6745  # the MAD of a normal distribution is 0.6745 sigma
_WELL = "Metadata_Well"


@dataclass(frozen=True)
class SegmentationFlag:
    """One well whose segmentation looks wrong.

    Attributes
    ----------
    plate, well
        Where.
    reason
        What is wrong, with the numbers, as a sentence.
    objects
        Objects segmented in the well.
    median_area
        Their median area in pixels (``nan`` without objects).
    expected_area
        The area they were expected to have: from the given diameter, else the plate's
        typical well (``None`` where there is no reference).
    """

    plate: str
    well: str
    reason: str
    objects: int
    median_area: float
    expected_area: float | None

    @property
    def message(self) -> str:
        """``"plate P1 well B03: <reason>"``."""
        return f"plate {self.plate} well {self.well}: {self.reason}"


def check_segmentation(
    cells: pd.DataFrame,
    *,
    plate: str,
    compartment: str,
    expected_diameter: float | None = None,
    wells: Sequence[str] | None = None,
) -> list[SegmentationFlag]:
    """Flag the wells of one plate whose objects are far too small, too few, or absent.

    Parameters
    ----------
    cells
        One plate's cell table, with ``Metadata_Well`` and
        ``<Compartment>_AreaShape_Area``.
    plate
        The plate's name, for the messages.
    compartment
        Whose areas to check (``"objects"``, ``"nuclei"``, ``"cells"`` …).
    expected_diameter
        The object diameter in pixels the segmenter was given; ``None`` compares every
        well with the plate's other wells only.
    wells
        The wells that were segmented; those absent from ``cells`` are flagged as having
        no objects. ``None``: only the wells in ``cells`` are checked.

    Returns
    -------
    list of SegmentationFlag
        In well order; a well may be flagged for both its size and its count.

    Raises
    ------
    ValueError
        When ``cells`` lacks the well or area column, or the diameter is not positive.

    Examples
    --------
    >>> wells = np.repeat(["A01", "A02", "A03", "A04"], [20, 22, 19, 400])
    >>> areas = np.where(wells == "A04", 30.0, 700.0)
    >>> cells = pd.DataFrame({"Metadata_Well": wells, "Objects_AreaShape_Area": areas})
    >>> [f.message for f in check_segmentation(cells, plate="P1", compartment="objects")]
    ... # doctest: +NORMALIZE_WHITESPACE
    ["plate P1 well A04: 400 objects with median area 30 px, 23x below the plate's
    typical 700 px (the median of its wells): the segmenter may be outlining
    sub-cellular structures or fragments, not whole objects"]
    """
    area_column = f"{compartment_prefix(compartment)}_AreaShape_Area"
    missing = [c for c in (_WELL, area_column) if c not in cells.columns]
    if missing:
        raise ValueError(
            f"plate {plate}: the cell table has no column {missing} to check the segmentation "
            f"of {compartment!r} with"
        )
    if expected_diameter is not None and not expected_diameter > 0:
        raise ValueError(f"expected_diameter must be positive, got {expected_diameter}")
    per_well = cells.groupby(_WELL, sort=True)[area_column].agg(["size", "median"])
    per_well = per_well[per_well["size"] > 0]  # a categorical well column lists empty wells
    names = [str(w) for w in per_well.index]
    counts = per_well["size"].to_numpy(np.int64)
    medians = per_well["median"].to_numpy(np.float64)
    given = None if expected_diameter is None else float(np.pi * expected_diameter**2 / 4)
    reference = given if given is not None else _typical(medians)
    small = np.zeros(len(names), dtype=bool)
    flags = []
    if reference is not None:
        small = medians < SMALL_AREA * reference
        flags += [
            SegmentationFlag(
                plate,
                names[i],
                _small_reason(int(counts[i]), medians[i], reference, expected_diameter),
                int(counts[i]),
                float(medians[i]),
                reference,
            )
            for i in np.flatnonzero(small)
        ]
    sized = ~small  # counts are compared among wells whose objects are of the expected size
    typical_count = _typical(counts[sized])
    if typical_count is not None:
        z = _robust_z(np.log(counts[sized]))
        few = (counts[sized] < FEW_OBJECTS * typical_count) & (z < -OUTLIER_Z)
        flags += [
            SegmentationFlag(
                plate,
                names[i],
                f"{counts[i]:,} objects, {typical_count / counts[i]:.0f}x fewer than the plate's "
                f"typical {typical_count:,.0f} per well (median area {medians[i]:,.0f} px): the "
                "segmenter may be missing most objects (a faint or diffuse stain, a wrong "
                "diameter), or the well has few cells",
                int(counts[i]),
                float(medians[i]),
                reference,
            )
            for i in np.flatnonzero(sized)[few]
        ]
    seen = set(names)
    flags += [
        SegmentationFlag(
            plate,
            str(w),
            "no objects were segmented in any of its fields (fields flagged by QC are not)",
            0,
            np.nan,
            reference,
        )
        for w in wells or ()
        if str(w) not in seen
    ]
    return sorted(flags, key=lambda f: f.well)


def _typical(values: np.ndarray) -> float | None:
    """The median well (geometric), or ``None`` with fewer than :data:`MIN_WELLS` wells."""
    return float(np.exp(np.median(np.log(values)))) if len(values) >= MIN_WELLS else None


def _small_reason(n: int, median: float, expected: float, diameter: float | None) -> str:
    source = (
        f"expected ~{expected:,.0f} px from the {diameter:g} px diameter"
        if diameter is not None
        else f"{expected / median:.0f}x below the plate's typical {expected:,.0f} px "
        "(the median of its wells)"
    )
    return (
        f"{n:,} objects with median area {median:,.0f} px, {source}: the segmenter may be "
        "outlining sub-cellular structures or fragments, not whole objects"
    )


def _robust_z(values: np.ndarray) -> np.ndarray:
    """Modified z-scores ``0.6745 (x - median) / MAD``; ±inf off the median when MAD is 0."""
    if not len(values):
        return values
    centre = np.median(values)
    spread = np.median(np.abs(values - centre))
    deviation = values - centre
    if spread == 0:
        return np.select([deviation > 0, deviation < 0], [np.inf, -np.inf], 0.0)
    return _MAD_TO_SIGMA * deviation / spread
