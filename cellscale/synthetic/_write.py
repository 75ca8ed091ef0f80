"""Synthetic plates written straight to disk, for plates larger than memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xarray as xr

from cellscale.io import open_plate, write_plate
from cellscale.synthetic._synthetic import synthetic_plate

__all__ = ["write_synthetic_plate"]


def write_synthetic_plate(
    path: str | Path,
    *,
    version: str | None = None,
    codec: str | None = None,
    levels: int | None = None,
    overwrite: bool = False,
    client: Any = None,
    progress: bool = False,
    **params: Any,
) -> xr.DataArray:
    """Generate a synthetic plate into an OME-Zarr HCS store and open it.

    Fields are generated and written one ``(t, well, field)`` unit per task by
    :func:`cellscale.write_plate`, so the plate never has to fit in memory, and an
    interrupted write resumes where it stopped when called again with the same
    parameters.

    Parameters
    ----------
    path
        Directory of the plate store (``*.zarr``).
    version, codec, levels, overwrite, client, progress
        Passed to :func:`cellscale.write_plate`.
    **params
        Passed to :func:`synthetic_plate` (wells, fields, shape, seed, …).

    Returns
    -------
    xarray.DataArray
        The plate as read back by :func:`cellscale.open_plate`; its recipe attribute
        survives, so :func:`synthetic_labels` and :func:`synthetic_cells` work on it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from cellscale.synthetic import write_synthetic_plate
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> plate = write_synthetic_plate(folder / "p.zarr", wells=2, fields=1, shape=(32, 32))
    >>> plate.sizes["well"]
    2
    """
    plate = synthetic_plate(**params)
    write_plate(
        plate,
        path,
        version=version,
        codec=codec,
        levels=levels,
        overwrite=overwrite,
        client=client,
        progress=progress,
    )
    return open_plate(path)
