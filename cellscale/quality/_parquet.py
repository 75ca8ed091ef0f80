"""QC tables on disk as Parquet."""

from __future__ import annotations

import os

import pandas as pd

from cellscale._stages import DamagedOutputError

__all__ = ["read_qc", "write_qc"]


def write_qc(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a QC table as one Parquet file (pyarrow), dtypes and column order kept.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "qc.parquet"
    >>> write_qc(pd.DataFrame({"well": ["B03"], "field": [1], "flagged": [False]}), path)
    >>> read_qc(path).dtypes["flagged"]
    dtype('bool')
    """
    table.to_parquet(path, engine="pyarrow", index=False)


def read_qc(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a QC table written by :func:`write_qc`.

    Raises
    ------
    DamagedOutputError
        If the file cannot be read (truncated or damaged), naming it.
    """
    try:
        return pd.read_parquet(path, engine="pyarrow")
    except (OSError, ValueError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DamagedOutputError(
            f"{os.fspath(path)}: the QC table cannot be read ({type(err).__name__}: {err}); it "
            "is damaged: run QC again (a cellscale run remakes it)"
        ) from err
