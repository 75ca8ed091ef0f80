"""The recipe of a synthetic plate and the cells of each of its fields.

Everything random about a field comes from generators seeded by
``(seed, t, row, column, field, stream)``, where ``t`` is the time point in whole
seconds and the well and field are their names: a field depends on nothing but its own
coordinates, so any chunk can be generated alone, on any worker, in any order, and a
subset of a plate shows the same cells as the whole plate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from cellscale.plate import PlateError, row_index, split_well
from cellscale.synthetic._cells import CellLayout, Raster, draw_layout, rasterize
from cellscale.synthetic._phenotype import Phenotype
from cellscale.synthetic._render import CHANNEL_KINDS

__all__ = ["ATTRS_KEY", "CellModel", "Recipe", "field_cells", "field_rng", "focal_plane"]

ATTRS_KEY = "synthetic"
"""The plate attribute holding the recipe, so labels and truth can be derived later."""

_LAYOUT_STREAM = 0
_FOCUS_STREAM = 1
_STAIN_STREAM = 100
_FIELD_CACHE_SIZE = 8


@dataclass(frozen=True)
class CellModel:
    """Biology and optics of synthetic cells.

    Parameters
    ----------
    cell_radius_um, nucleus_radius_um
        Mean radius of untreated cells and nuclei, in micrometres.
    ec50_um
        Concentration (µM) of half-maximal response; a plate-map column
        ``ec50_um`` overrides it per well.
    defocus_px_per_plane
        Gaussian blur (sigma, pixels) added per Z plane of distance from focus.
    """

    cell_radius_um: float = 9.0
    nucleus_radius_um: float = 4.5
    ec50_um: float = 1.0
    defocus_px_per_plane: float = 2.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (np.isfinite(value) and value > 0):
                raise PlateError(f"CellModel.{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class Recipe:
    """Everything, besides the plate's coordinates, that decides a synthetic plate's pixels."""

    seed: int
    cells_per_field: float
    n_z: int
    pixel_size_um: float
    model: CellModel
    stains: tuple[tuple[str, str], ...]

    def to_attrs(self) -> dict[str, Any]:
        """A JSON-friendly record for the plate's attrs."""
        record = asdict(self)
        record["stains"] = dict(self.stains)
        return record

    @classmethod
    def from_plate_attrs(cls, attrs: dict[str, Any]) -> Recipe:
        """Read the recipe back from a synthetic plate's attrs."""
        record = attrs.get(ATTRS_KEY)
        if not isinstance(record, dict):
            raise PlateError(
                f"this plate has no {ATTRS_KEY!r} attribute: it was not made by synthetic_plate"
            )
        return cls(
            seed=int(record["seed"]),
            cells_per_field=float(record["cells_per_field"]),
            n_z=int(record["n_z"]),
            pixel_size_um=float(record["pixel_size_um"]),
            model=CellModel(**record["model"]),
            stains=tuple((str(k), str(v)) for k, v in record["stains"].items()),
        )

    def stain(self, channel: str) -> str:
        """The stain painted in ``channel``."""
        return dict(self.stains)[channel]


def field_rng(seed: int, t_key: int, well: str, field: int, stream: int) -> np.random.Generator:
    """The random generator of one stream of one field."""
    row, col = split_well(well)
    return np.random.default_rng([seed, t_key, row_index(row) + 1, col, field, stream])


def stain_stream(kind: str) -> int:
    """The random stream of a stain, independent of the channel's name and position."""
    return _STAIN_STREAM + CHANNEL_KINDS.index(kind)


def focal_plane(recipe: Recipe, t_key: int, well: str, field: int) -> int:
    """The in-focus Z plane of a field: an inner plane when there are three or more."""
    rng = field_rng(recipe.seed, t_key, well, field, _FOCUS_STREAM)
    if recipe.n_z >= 3:
        return int(rng.integers(1, recipe.n_z - 1))
    return int(rng.integers(0, recipe.n_z))


def field_layout(
    recipe: Recipe, t_key: int, well: str, field: int, pheno: Phenotype, shape: tuple[int, int]
) -> CellLayout:
    """The cells of one field (cheap: no pixels)."""
    rng = field_rng(recipe.seed, t_key, well, field, _LAYOUT_STREAM)
    return draw_layout(
        rng,
        shape,
        recipe.cells_per_field,
        recipe.model.cell_radius_um / recipe.pixel_size_um,
        recipe.model.nucleus_radius_um / recipe.pixel_size_um,
        pheno,
    )


@lru_cache(maxsize=_FIELD_CACHE_SIZE)
def field_cells(
    recipe: Recipe, t_key: int, well: str, field: int, pheno: Phenotype, shape: tuple[int, int]
) -> tuple[CellLayout, Raster]:
    """The cells of one field and their raster, cached for the channels of the same field.

    The returned arrays are read-only: they are shared between tasks.
    """
    layout = field_layout(recipe, t_key, well, field, pheno, shape)
    raster = rasterize(layout, shape)
    for array in (*vars(layout).values(), *vars(raster).values()):
        array.flags.writeable = False
    return layout, raster
