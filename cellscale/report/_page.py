"""The page as the template sees it: figures, tables and sentences, nothing to compute.

Figure functions return :class:`Tile` records of the PNGs they wrote, the table
functions return :class:`Table` records of formatted text, and :class:`Page` holds one
field per piece of ``index.html`` in page order. The template lays them out and escapes
every string, so none of these records holds HTML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["EXPLORE", "FIGURES", "AnalysisSection", "Page", "Panel", "Table", "Tile", "png_name"]

#: The folder, beside ``index.html``, that holds the figures.
FIGURES = "figures"
#: The folder, beside ``index.html``, of the interactive page of cells and wells.
EXPLORE = "explore"


@dataclass(frozen=True)
class Tile:
    """One PNG in :data:`FIGURES` with its alternative text and caption."""

    name: str
    alt: str
    caption: str

    @property
    def src(self) -> str:
        """The PNG's path relative to ``index.html``."""
        return f"{FIGURES}/{self.name}"


@dataclass(frozen=True)
class Panel:
    """Figures shown side by side, after a sentence for each one that was skipped."""

    tiles: tuple[Tile, ...] = ()
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    """A table of formatted values; ``numeric`` marks the columns aligned right."""

    headers: tuple[str, ...]
    numeric: tuple[bool, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class AnalysisSection:
    """The analyses of the embeddings and profiles: figures, their numbers, the page's link.

    ``explore`` is the interactive page's path relative to ``index.html``, or ``None``
    where there is none.
    """

    panel: Panel
    batch_effect: Table | None
    mean_average_precision: Table | None
    explore: str | None


@dataclass(frozen=True)
class Page:
    """Every piece of ``index.html``, in page order.

    ``None`` marks a table (or the flagged fields) that its section skips; the sentence
    saying why is in the section's panel (``wells`` and ``run`` have panels for that only).
    ``training`` is ``None`` for a run that trained no network, ``analysis`` for one that
    analysed nothing: they have no such sections.
    """

    title: str
    summary: str
    written: str
    no_cells: str | None
    problems: tuple[str, ...]
    segmentation_problems: tuple[Tile, ...]
    plates: tuple[Panel, ...]
    quality: Panel
    qc_counts: Table | None
    flagged: tuple[Tile, ...] | None
    illumination: Panel
    segmentation: Panel
    crops: Panel
    pca: Panel
    training: Panel | None
    training_scores: Table | None
    well_profiles: Panel
    analysis: AnalysisSection | None
    wells: Panel
    per_condition: Table | None
    per_well: Table | None
    run: Panel
    stages: Table | None
    total_seconds: str | None
    notes: tuple[str, ...]


def png_name(kind: str, index: int, text: str) -> str:
    """A file name of plain ASCII letters, digits and dashes, unique per kind and index."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40]
    return f"{kind}-{index:02d}-{slug}.png" if slug else f"{kind}-{index:02d}.png"
