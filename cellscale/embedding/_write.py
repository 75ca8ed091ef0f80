"""Embeddings on disk: ``(cell, feature)`` float32, uncompressed, row-chunked, resumable.

Stored without a codec and chunked along cells over all features, so the profile stage
(:class:`cellscale.PCA`, the normalisers) reads their chunk files straight into its buffers.
The model name, weights hash, layer and preprocessing are in the array's attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from cellscale._stages import DamagedOutputError, Fingerprint
from cellscale.io._rows import BOOKS, open_rows, write_rows
from cellscale.plate import LINEAGE

__all__ = ["open_embeddings", "write_embeddings"]


def write_embeddings(
    embeddings: xr.DataArray,
    path: str | Path,
    *,
    chunk_cells: int = 16384,
    overwrite: bool = False,
    client: Any = None,
    progress: bool = True,
    compute: bool = True,
) -> Any:
    """Write :func:`cellscale.embed`'s output to a Zarr array at ``path``, chunk by chunk.

    Each chunk of ``chunk_cells`` rows is one task recorded in a ledger, so an interrupted
    write resumes; embeddings from another model or other crops are refused unless
    ``overwrite``. ``zarr.open_array(path)`` gives the array; its ``cell_id`` is in
    ``path/.cellscale/cell_id``.
    """
    path = Path(path)
    rows = max(1, min(int(chunk_cells), embeddings.shape[0]))
    model = dict(embeddings.attrs.get("model", {}))
    fingerprint = Fingerprint(
        stage="embeddings",
        inputs={"lineage": embeddings.attrs.get(LINEAGE, []), "data": embeddings.data.name},
        parameters={"chunk_cells": rows},
    )
    result = write_rows(
        embeddings.data.astype(np.float32),
        path,
        fingerprint=fingerprint,
        attrs={"model": model, "dims": ["cell", "feature"]},
        chunk_rows=rows,
        compressors=None,
        stage="write-embeddings",
        overwrite=overwrite,
        client=client,
        progress=progress,
        compute=compute,
    )
    ids = np.asarray(embeddings.coords["cell_id"].values)
    books = zarr.open_group(str(path / BOOKS), mode="r+")
    stored = books.get("cell_id")
    if not isinstance(stored, zarr.Array) or not np.array_equal(stored[:], ids):
        books.create_array("cell_id", data=ids, overwrite=True)  # a resumed write keeps it
    return result


def open_embeddings(path: str | Path) -> xr.DataArray:
    """Open embeddings written by :func:`write_embeddings`, lazily, strictly, with ``cell_id``.

    Returns
    -------
    xarray.DataArray
        ``(cell, feature)`` float32 with the ``cell_id`` of every row and the model in
        ``attrs["model"]``.

    Raises
    ------
    DamagedOutputError
        If some chunks of rows were never written, or (when read) a chunk file is missing
        or damaged: never zeros in their place.
    """
    path = Path(path)
    data = open_rows(path)
    books = zarr.open_group(str(path / BOOKS), mode="r")
    ids = books.get("cell_id")
    if not isinstance(ids, zarr.Array):
        raise DamagedOutputError(f"{path}: the cell ids ({BOOKS}/cell_id) are missing")
    attrs: dict[str, Any] = zarr.open_array(str(path), mode="r").attrs.asdict()
    return xr.DataArray(
        data,
        dims=("cell", "feature"),
        coords={"cell_id": ("cell", np.asarray(ids[...]))},
        attrs={"model": attrs.get("model", {})},
        name="embeddings",
    )
