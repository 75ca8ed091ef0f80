"""Crops on disk: a ``(cell, c, [z,] y, x)`` Zarr array chunked along cells, written resumably."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from cellscale._stages import Fingerprint
from cellscale.io._ngff import compressor_for
from cellscale.io._rows import BOOKS, open_rows, write_rows
from cellscale.plate import LINEAGE

__all__ = ["open_crops", "write_crops"]


def write_crops(
    crops: xr.DataArray,
    path: str | Path,
    *,
    chunk_cells: int = 1024,
    overwrite: bool = False,
    client: Any = None,
    progress: bool = True,
    compute: bool = True,
) -> Any:
    """Write crops from :func:`cellscale.extract_crops` to a Zarr array, chunk of cells by chunk.

    At screen scale crops are as large as the raw images: :func:`cellscale.embed` takes them
    straight from :func:`~cellscale.extract_crops` without storing them. Write them when
    they are read many times (training). Compressed like plate images; each chunk of
    ``chunk_cells`` cells is one task, recorded in a ledger, so a rerun resumes.
    """
    path = Path(path)
    fingerprint = Fingerprint(
        stage="crops",
        inputs={"lineage": crops.attrs.get(LINEAGE, []), "data": crops.data.name},
        parameters={"chunk_cells": chunk_cells},
    )
    attrs = {"dims": list(crops.dims), "channels": [str(c) for c in crops.coords["c"].values]}
    result = write_rows(
        crops.data,
        path,
        fingerprint=fingerprint,
        attrs=attrs,
        chunk_rows=chunk_cells,
        compressors=compressor_for("blosc-lz4", 5, 3),
        stage="write-crops",
        overwrite=overwrite,
        client=client,
        progress=progress,
        compute=compute,
    )
    books = zarr.open_group(str(path / BOOKS), mode="r+")
    for coord in ("cell_id", "padded"):
        books.create_array(coord, data=crops.coords[coord].values, overwrite=True)
    return result


def _array(group: zarr.Group, name: str) -> zarr.Array:
    node = group[name]
    assert isinstance(node, zarr.Array)
    return node


def open_crops(path: str | Path) -> xr.DataArray:
    """Open crops written by :func:`write_crops`, lazily, with their ``cell_id`` and ``padded``.

    Raises
    ------
    DamagedOutputError
        If some chunks of crops were never written, or (when read) a chunk file is
        missing or damaged.
    """
    path = Path(path)
    array = zarr.open_array(str(path), mode="r")
    books = zarr.open_group(str(path / BOOKS), mode="r")
    meta: Any = array.attrs.asdict()
    coords: dict[str, Any] = {
        name: ("cell", np.asarray(_array(books, name)[...])) for name in ("cell_id", "padded")
    }
    coords["c"] = ("c", [str(c) for c in meta["channels"]])
    dims = tuple(meta["dims"])
    data = open_rows(path)
    return xr.DataArray(data, dims=dims, coords=coords, name="crops")
