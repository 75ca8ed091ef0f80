"""One dask graph layer per synthetic array, one task per field image.

The graphs are written out directly (one :class:`~dask.highlevelgraph.HighLevelGraph`
layer of plain tasks) rather than stacked from thousands of small arrays, so a
384-well plate builds in milliseconds. Each task draws its field from the field's own
seed inside the task: nothing is generated while the graph is built.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from cellscale.synthetic._model import (
    Recipe,
    field_cells,
    field_rng,
    focal_plane,
    stain_stream,
)
from cellscale.synthetic._phenotype import Phenotype, well_phenotypes
from cellscale.synthetic._render import camera, defocus, paint

__all__ = [
    "COMPARTMENTS",
    "LABEL_DIMS",
    "FieldUnit",
    "field_units",
    "image_chunk",
    "image_data",
    "label_chunk",
    "label_data",
]

LABEL_DIMS = ("t", "well", "field", "y", "x")
COMPARTMENTS = ("cell", "nucleus")

FieldUnit = tuple[int, int, int, int, str, int, Phenotype]
"""``(t_index, well_index, field_index, t_key, well, field, phenotype)``."""


def field_units(plate: xr.DataArray, recipe: Recipe) -> Iterator[FieldUnit]:
    """Every field of ``plate`` with its seed coordinates and phenotype.

    ``t_key`` is the time point in whole seconds, as it enters the field's seed.
    """
    phenos = well_phenotypes(plate, recipe.model.ec50_um)
    t_keys = [round(float(t)) for t in plate.coords["t"].values]
    wells = [str(w) for w in plate.coords["well"].values]
    fields = [int(f) for f in plate.coords["field"].values]
    for ti, t_key in enumerate(t_keys):
        for wi, well in enumerate(wells):
            for fi, field in enumerate(fields):
                yield ti, wi, fi, t_key, well, field, phenos[ti][wi]


def image_chunk(
    recipe: Recipe,
    stain: str,
    dtype: str,
    t_key: int,
    well: str,
    field: int,
    pheno: Phenotype,
    shape: tuple[int, int],
) -> np.ndarray:
    """One ``(t, well, field, c)`` image with its whole Z stack, shaped for the plate."""
    layout, raster = field_cells(recipe, t_key, well, field, pheno, shape)
    rng = field_rng(recipe.seed, t_key, well, field, stain_stream(stain))
    photons = paint(stain, raster, layout, rng)
    images, distances = defocus(
        photons,
        focal_plane(recipe, t_key, well, field),
        recipe.n_z,
        recipe.model.defocus_px_per_plane,
    )
    return camera(images, distances, rng, np.dtype(dtype))[None, None, None, :, None]


def label_chunk(
    recipe: Recipe,
    compartment: str,
    t_key: int,
    well: str,
    field: int,
    pheno: Phenotype,
    shape: tuple[int, int],
) -> np.ndarray:
    """One field's instance labels, shaped ``(1, 1, 1, y, x)``."""
    _, raster = field_cells(recipe, t_key, well, field, pheno, shape)
    labels = raster.labels
    if compartment == "nucleus":
        labels = np.where(raster.rho_nucleus < 1.0, labels, np.uint32(0))
    return labels.copy()[None, None, None]


def _array(
    prefix: str,
    tasks: dict[tuple[Any, ...], tuple[Any, ...]],
    chunks: tuple[tuple[int, ...], ...],
    dtype: np.dtype,
    token_parts: tuple[Any, ...],
) -> da.Array:
    name = f"{prefix}-{tokenize(*token_parts)}"
    # not map_blocks: a source whose tasks take their own field's seed keys and phenotype as args
    dsk: dict[Any, Any] = {(name, *index): task for index, task in tasks.items()}
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    meta = np.empty((0,) * len(chunks), dtype=dtype)
    return da.Array(graph, name, chunks, meta=meta)


def _unit_chunks(plate: xr.DataArray) -> tuple[tuple[int, ...], ...]:
    return tuple((1,) * plate.sizes[d] for d in ("t", "well", "field"))


def image_data(template: xr.DataArray, recipe: Recipe, dtype: np.dtype) -> da.Array:
    """The pixels of a synthetic plate whose coordinates are those of ``template``."""
    shape = (int(template.sizes["y"]), int(template.sizes["x"]))
    channels = [str(c) for c in template.coords["c"].values]
    units = list(field_units(template, recipe))
    tasks: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for ti, wi, fi, t_key, well, field, pheno in units:
        for ci, channel in enumerate(channels):
            stain = recipe.stain(channel)
            tasks[ti, wi, fi, 0, ci, 0, 0] = (
                image_chunk,
                *(recipe, stain, dtype.str, t_key, well, field, pheno, shape),
            )
    chunks = (
        *_unit_chunks(template),
        (recipe.n_z,),
        (1,) * len(channels),
        (shape[0],),
        (shape[1],),
    )
    return _array("synthetic", tasks, chunks, dtype, (recipe, dtype.str, channels, units, shape))


def label_data(plate: xr.DataArray, recipe: Recipe, compartment: str) -> da.Array:
    """Instance labels ``(t, well, field, y, x)`` of the cells of a synthetic plate."""
    if compartment not in COMPARTMENTS:
        raise ValueError(f"compartment must be one of {COMPARTMENTS}, got {compartment!r}")
    shape = (int(plate.sizes["y"]), int(plate.sizes["x"]))
    units = list(field_units(plate, recipe))
    tasks: dict[tuple[Any, ...], tuple[Any, ...]] = {
        (ti, wi, fi, 0, 0): (label_chunk, recipe, compartment, t_key, well, field, pheno, shape)
        for ti, wi, fi, t_key, well, field, pheno in units
    }
    chunks = (*_unit_chunks(plate), (shape[0],), (shape[1],))
    token = (recipe, compartment, units, shape)
    return _array("synthetic-labels", tasks, chunks, np.dtype(np.uint32), token)
