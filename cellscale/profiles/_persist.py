"""Save fitted profile models as one small ``.npz`` file with JSON provenance inside."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import zipfile
from typing import Any

import numpy as np

from cellscale._stages import DamagedOutputError

__all__ = ["read_model", "save_model"]

_META_KEY = "__cellscale__"


def save_model(
    path: str | os.PathLike[str],
    kind: str,
    params: dict[str, Any],
    arrays: dict[str, np.ndarray],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``arrays`` and a JSON record of ``kind``, ``params`` and provenance to ``path``.

    Parameters
    ----------
    path
        Destination file; NumPy appends ``.npz`` if it is missing.
    kind
        Name of the model class, checked again on load.
    params
        JSON-serialisable constructor parameters.
    arrays
        Fitted state.
    extra
        Further JSON-serialisable provenance (e.g. number of rows, data source).
    """
    import cellscale

    meta = {
        "kind": kind,
        "params": params,
        "cellscale_version": cellscale.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    payload: dict[str, Any] = {**arrays, _META_KEY: np.array(json.dumps(meta))}
    np.savez(path, **payload)


def read_model(
    path: str | os.PathLike[str], kind: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`save_model`; returns ``(metadata, arrays)``.

    Raises
    ------
    ValueError
        If the file holds another kind of model or was not written by cellscale.
    DamagedOutputError
        If the file cannot be read (truncated or damaged).
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            if _META_KEY not in data:
                raise ValueError(f"{os.fspath(path)!r} is not a cellscale model file")
            meta = json.loads(str(data[_META_KEY]))
            arrays = {key: data[key] for key in data.files if key != _META_KEY}
    except (OSError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise DamagedOutputError(
            f"{os.fspath(path)}: the {kind} file cannot be read ({type(err).__name__}: {err}); "
            "it is damaged: make it again (a cellscale run remakes it)"
        ) from err
    if meta["kind"] != kind:
        raise ValueError(f"{os.fspath(path)!r} holds a {meta['kind']}, not a {kind}")
    return meta, arrays
