"""Illumination models on disk: one ``.npz`` of arrays with a JSON record, checked on load."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cellscale.profiles._persist import read_model
from cellscale.profiles._persist import save_model as _save

if TYPE_CHECKING:
    from cellscale.illumination._model import IlluminationModel

__all__ = ["load_model", "save_model"]

KIND = "IlluminationModel"
_REQUIRED = ("flatfield",)
_OPTIONAL = ("darkfield",)
_RECORD = ("channels", "method", "provenance", "digest")


def _npz(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def save_model(model: IlluminationModel, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``path`` (``.npz`` added if missing); returns the file written."""
    target = _npz(path)
    arrays = {"flatfield": model.flatfield}
    if model.darkfield is not None:
        arrays["darkfield"] = model.darkfield
    record = {
        "channels": list(model.channels),
        "method": model.method,
        "provenance": model.provenance,
        "digest": model.digest,
    }
    params = json.loads(json.dumps(model.params, default=str))
    _save(target, KIND, params, arrays, json.loads(json.dumps(record, default=str)))
    return target


def load_model(cls: type[IlluminationModel], path: str | os.PathLike[str]) -> IlluminationModel:
    """Read a model written by :func:`save_model`, checking every part (see ``load``)."""
    source = _npz(path)
    meta, arrays = read_model(source, KIND)
    missing = [key for key in _RECORD if key not in meta]
    missing += [key for key in _REQUIRED if key not in arrays]
    if missing:
        raise ValueError(
            f"{str(source)!r} lacks {missing}: it is not a complete illumination model"
        )
    unexpected = sorted(set(arrays) - {*_REQUIRED, *_OPTIONAL})
    if unexpected:
        raise ValueError(f"{str(source)!r} holds unexpected arrays {unexpected}")
    try:
        model = cls(
            channels=tuple(meta["channels"]),
            flatfield=arrays["flatfield"],
            darkfield=arrays.get("darkfield"),
            method=meta["method"],
            params=meta["params"],
            provenance=meta["provenance"],
        )
    except ValueError as err:
        raise ValueError(f"{str(source)!r}: {err}") from None
    if model.digest != meta["digest"]:
        raise ValueError(
            f"{str(source)!r} does not match the digest recorded in it ({meta['digest']}, "
            f"its contents give {model.digest}): it was changed after it was written"
        )
    return model
