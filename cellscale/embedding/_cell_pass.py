"""The cell pass: measure, crop and embed every field from one read of its images and labels.

:func:`write_cell_pass` writes the cell table (:func:`cellscale.write_cells`) and the
embeddings (:func:`cellscale.write_embeddings`) in one computation. Each field's task
measures it; the field's crops are cut from the same image and label blocks and the
centres of that table (:func:`~cellscale.crops._measured.cut_measured`), and go to the
embedding tasks, GPU-tagged when the embedder is, which pool consecutive fields as
:func:`cellscale.embed` does. Nothing is stored but the two outputs; crops live only
between a field's task and the embedding task that takes them.

The number of cells of every field comes from the labels, so the rows of the embeddings
are laid out before anything runs, and each output keeps its own lock, fingerprint and
ledger: a rerun writes the fields the table lacks and the chunks of rows the embeddings
lack, measuring (and reading) again only the fields a missing chunk of rows covers.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal

import xarray as xr

from cellscale._stages import (
    StaleOutputError,
    lazy_units,
    output_lock,
    run_units,
    take_lease,
)
from cellscale.crops._measured import cut_measured
from cellscale.embedding._embed import embed
from cellscale.embedding._protocol import Embedder
from cellscale.embedding._write import embedding_units
from cellscale.io._rows import seal_rows
from cellscale.measurement._parquet import cell_units, cells_fingerprint, seal_cells
from cellscale.measurement._table import measured_fields

__all__ = ["PassOutput", "StalePassOutputError", "write_cell_pass"]

PassOutput = Literal["cells", "embeddings"]
"""The outputs of the cell pass, as ``overwrite`` and :class:`StalePassOutputError` name them."""


class StalePassOutputError(StaleOutputError):
    """One output of the cell pass was made from something else.

    Attributes
    ----------
    output
        Which: ``"cells"`` or ``"embeddings"``.
    """

    def __init__(self, message: str, output: PassOutput) -> None:
        super().__init__(message)
        self.output = output

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.output))


def write_cell_pass(
    labels: xr.Dataset,
    plate: xr.DataArray,
    cells_path: str | Path,
    embeddings_path: str | Path,
    model: Embedder,
    *,
    size: int | Sequence[int],
    mask: str = "none",
    compartment: str | None = None,
    sigma: float = 2.0,
    intensity: bool = True,
    cp_measure: Sequence[str] = (),
    chunk_cells: int = 16384,
    cells_per_task: int | None = None,
    overwrite: bool | Collection[PassOutput] = False,
    client: Any = None,
    progress: bool = True,
    compute: bool = True,
) -> Any:
    """Write the cell table and the embeddings of every cell's crop, reading each field once.

    Gives what :func:`cellscale.write_cells`, then :func:`cellscale.extract_crops` (with
    ``border="pad"``) of the table, :func:`cellscale.embed` and
    :func:`cellscale.write_embeddings` give, without reading the plate a second time.

    Parameters
    ----------
    labels, plate, intensity, cp_measure
        As for :func:`cellscale.write_cells` (every channel is measured).
    cells_path, embeddings_path
        The cell table (``cells.parquet``) and the embeddings (``embeddings.zarr``).
    model
        The embedder; its tasks are GPU-tagged when it is.
    size, mask, compartment, sigma
        As for :func:`cellscale.extract_crops`.
    chunk_cells
        Rows per chunk of the embeddings, as for :func:`cellscale.write_embeddings`.
    cells_per_task
        Crops pooled per embedding task, as for :func:`cellscale.embed`.
    overwrite
        Replace outputs made from other inputs or settings: ``True`` for both, or the
        ones named (``{"embeddings"}``).
    client, progress, compute
        As for :func:`cellscale.write_plate`; ``compute=False`` returns one lazy write
        that holds both outputs until it ran.

    Returns
    -------
    tuple of pathlib.Path, or dask.delayed.Delayed
        The two paths, or the lazy write when ``compute=False``.

    Raises
    ------
    StalePassOutputError
        If an output was made from other inputs or settings and ``overwrite`` does not
        name it; ``output`` says which (the cell table is checked first).
    """
    cells_path, embeddings_path = Path(cells_path), Path(embeddings_path)
    replace: Collection[str] = (
        ("cells", "embeddings") if overwrite is True else () if overwrite is False else overwrite
    )
    fields = measured_fields(labels, plate, intensity=intensity, cp_measure=cp_measure)
    crops = cut_measured(fields, size=size, mask=mask, compartment=compartment, sigma=sigma)
    embeddings = embed(crops, model, cells_per_task=cells_per_task)
    fingerprint = cells_fingerprint(labels, plate, None, intensity, cp_measure)
    with output_lock(cells_path), output_lock(embeddings_path):
        try:
            tasks, names = cell_units(
                labels, fields, fingerprint, cells_path, overwrite="cells" in replace
            )
        except StaleOutputError as err:
            raise StalePassOutputError(str(err), "cells") from err
        try:
            rows, chunks, _ = embedding_units(
                embeddings,
                embeddings_path,
                chunk_cells=chunk_cells,
                overwrite="embeddings" in replace,
            )
        except StaleOutputError as err:
            raise StalePassOutputError(str(err), "embeddings") from err
        tasks += rows
        names = [f"cells {n}" for n in names] + [f"embeddings {n}" for n in chunks]
        if not compute:
            leases = (take_lease(cells_path), take_lease(embeddings_path))
            return lazy_units(
                "cell-pass",
                tasks,
                names,
                lease=leases,
                then=lambda: _seal(cells_path, embeddings_path),
            )
        run_units("cell-pass", tasks, names, client=client, progress=progress)
        _seal(cells_path, embeddings_path)
    return cells_path, embeddings_path


def _seal(cells_path: Path, embeddings_path: Path) -> None:
    """Seal both outputs' ledgers (see :meth:`Ledger.seal`); hold their leases or locks."""
    seal_cells(cells_path)
    seal_rows(embeddings_path)
