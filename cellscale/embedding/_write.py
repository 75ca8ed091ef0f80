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
from cellscale.io._rows import BOOKS, open_rows, row_units, write_rows
from cellscale.plate import LINEAGE

__all__ = ["embedding_units", "open_embeddings", "write_embeddings"]


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
    result = write_rows(
        embeddings.data.astype(np.float32),
        path,
        **_row_options(embeddings, chunk_cells),
        overwrite=overwrite,
        client=client,
        progress=progress,
        compute=compute,
    )
    _store_cell_ids(path, embeddings)
    return result


def embedding_units(
    embeddings: xr.DataArray, path: Path, *, chunk_cells: int, overwrite: bool
) -> tuple[list[Any], list[str], list[int]]:
    """The tasks writing each chunk of rows the embeddings at ``path`` lack; names and rows.

    As :func:`write_embeddings` writes them; call it holding
    :func:`~cellscale._stages.output_lock` of ``path``.

    Raises
    ------
    StaleOutputError
        If the embeddings there come from another model or other crops and not ``overwrite``.
    """
    units = row_units(
        embeddings.data.astype(np.float32),
        path,
        **_row_options(embeddings, chunk_cells),
        overwrite=overwrite,
    )
    _store_cell_ids(path, embeddings)
    return units


def _row_options(embeddings: xr.DataArray, chunk_cells: int) -> dict[str, Any]:
    """How the embeddings' rows are stored: chunks, fingerprint, attributes, no compression."""
    rows, fingerprint, attrs = _layout(embeddings, chunk_cells)
    return {
        "fingerprint": fingerprint,
        "attrs": attrs,
        "chunk_rows": rows,
        "compressors": None,
        "stage": "write-embeddings",
    }


def _layout(embeddings: xr.DataArray, chunk_cells: int) -> tuple[int, Fingerprint, dict[str, Any]]:
    """Rows per chunk, the fingerprint and the array's attributes."""
    rows = max(1, min(int(chunk_cells), embeddings.shape[0]))
    fingerprint = Fingerprint(
        stage="embeddings",
        inputs={"lineage": embeddings.attrs.get(LINEAGE, []), "data": embeddings.data.name},
        parameters={"chunk_cells": rows},
    )
    model = dict(embeddings.attrs.get("model", {}))
    return rows, fingerprint, {"model": model, "dims": ["cell", "feature"]}


def _store_cell_ids(path: Path, embeddings: xr.DataArray) -> None:
    """Record each row's ``cell_id`` in the books (kept as it is by a resumed write)."""
    ids = np.asarray(embeddings.coords["cell_id"].values)
    books = zarr.open_group(str(path / BOOKS), mode="r+")
    stored = books.get("cell_id")
    if not isinstance(stored, zarr.Array) or not np.array_equal(stored[:], ids):
        books.create_array("cell_id", data=ids, overwrite=True)


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
