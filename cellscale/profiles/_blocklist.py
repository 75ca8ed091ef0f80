"""CellProfiler features that describe the image or the bookkeeping, not the cell.

Each pattern of :data:`BLOCKLIST` is a regular expression matched against a whole
column name. A feature is blocked when, by construction, it cannot carry biology that
a profile should compare across wells:

- **where the object lies in the field**: ``Location_*`` (centres, centres of mass,
  positions of the brightest pixel), ``AreaShape_Center_*`` and the axis-aligned
  bounding box (``AreaShape_BoundingBox*``, whose size also turns with the object);
- **how the object is turned relative to the camera**: ``AreaShape_Orientation``;
- **bookkeeping**: object numbers (``Number_Object_Number``, ``*ObjectNumber*``,
  nearest neighbours' ids), parent and child links (``Parent_*``, ``Children_*``),
  and whether the object touches the image border (``AreaShape_TouchesBorder``);
- **segmentation topology**: ``AreaShape_EulerNumber`` counts holes in a mask, which
  follow the thresholding rather than the cell;
- **measurements known to be noise** in Cell Painting data, pycytominer's default
  blocklist (Way 2019, doi:10.6084/m9.figshare.10255811) written for any channel
  names: nuclear Manders and rank-weighted colocalisation (``Nuclei_Correlation_Manders_*``,
  ``Nuclei_Correlation_RWC_*``) and the coarsest nuclear granularity scales
  (``Nuclei_Granularity_14``–``16``).

Shape, size, intensity, texture, granularity, colocalisation of other compartments,
radial distribution and neighbour counts are kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["BLOCKLIST", "blocklist_features"]

BLOCKLIST: tuple[str, ...] = (
    # where the object lies in the field
    r".*_Location_.*",
    r".*_AreaShape_Center_.*",
    r".*_AreaShape_BoundingBox.*",
    # how it is turned relative to the camera
    r".*_AreaShape_Orientation",
    # bookkeeping
    r".*_Number_Object_Number",
    r".*ObjectNumber.*",
    r".*_Parent_.*",
    r".*_Children_.*",
    r".*_AreaShape_TouchesBorder",
    # segmentation topology
    r".*_AreaShape_EulerNumber",
    # known noise (pycytominer's default blocklist, for any channel names)
    r"Nuclei_Correlation_(Manders|RWC)_.*",
    r"Nuclei_Granularity_1[456]_.*",
)
"""Regular expressions of the feature columns that are not biology (see the module)."""


def blocklist_features(columns: Iterable[str], blocklist: Sequence[str] = BLOCKLIST) -> list[str]:
    """The columns that a pattern of ``blocklist`` matches whole, in their order.

    A plain feature name is a pattern matching itself, so a list of names (as
    pycytominer's ``blocklist``) works too.

    Examples
    --------
    >>> blocklist_features(["Cells_AreaShape_Area", "Cells_Location_Center_X",
    ...                     "Nuclei_AreaShape_Orientation"])
    ['Cells_Location_Center_X', 'Nuclei_AreaShape_Orientation']
    """
    pattern = re.compile("|".join(f"(?:{p})" for p in blocklist)) if blocklist else None
    return [c for c in columns if pattern is not None and pattern.fullmatch(c)]
