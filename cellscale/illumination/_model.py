"""The fitted illumination model: per-channel flatfield and darkfield with their provenance."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["IlluminationModel"]

_MEAN_TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False)
class IlluminationModel:
    """How each channel of a plate is lit: ``image = darkfield + flatfield * true image``.

    Usually made by :func:`cellscale.illumination.fit_illumination` and applied with
    :func:`cellscale.illumination.correct_illumination`; it can also be built from
    profiles estimated elsewhere (e.g. CellProfiler's illumination functions).

    Parameters
    ----------
    channels
        Channel names, one per profile.
    flatfield
        ``(channels, y, x)`` relative illumination. It must be positive and finite
        everywhere; each channel is scaled to mean 1 (stored as float32, read-only).
    darkfield
        ``(channels, y, x)`` additive offset in the images' units (finite), or ``None``.
    method
        How the profiles were estimated (``"mean"``, ``"basic"``, or your own name).
    params
        The estimation's parameters (JSON-serialisable).
    provenance
        Where the profiles come from: plate name, its lineage, the number of fields
        used, the cellscale version (JSON-serialisable).

    Raises
    ------
    ValueError
        If the arrays disagree with the channels or with each other in shape, or a
        flatfield holds zeros, negative values, NaN or infinity (the message names the
        channel and counts the pixels), or a darkfield holds NaN or infinity.

    Examples
    --------
    >>> import numpy as np
    >>> flat = np.stack([np.full((4, 6), 2.0), np.linspace(1, 3, 24).reshape(4, 6)])
    >>> model = IlluminationModel(channels=("DNA", "GFP"), flatfield=flat)
    >>> model.shape, model.flatfield.dtype, model.flatfield.mean(axis=(1, 2)).round(6).tolist()
    ((4, 6), dtype('float32'), [1.0, 1.0])
    """

    channels: tuple[str, ...]
    flatfield: np.ndarray
    darkfield: np.ndarray | None = None
    method: str = "custom"
    params: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        channels = _checked_channels(self.channels)
        flat = _checked_flatfield(channels, self.flatfield)
        dark = (
            None if self.darkfield is None else _checked_darkfield(channels, self.darkfield, flat)
        )
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "flatfield", flat)
        object.__setattr__(self, "darkfield", dark)
        object.__setattr__(self, "method", str(self.method))
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "provenance", dict(self.provenance))

    @property
    def shape(self) -> tuple[int, int]:
        """``(y, x)`` size of the images the model corrects."""
        return (int(self.flatfield.shape[1]), int(self.flatfield.shape[2]))

    @property
    def digest(self) -> str:
        """A hash of the profiles, channels, method and parameters (not the provenance).

        Two models that correct images identically share it; a plate corrected with
        the model records it in its lineage.
        """
        sha = hashlib.sha256()
        record = [self.channels, self.method, self.params]
        sha.update(json.dumps(record, sort_keys=True, default=str).encode())
        sha.update(self.flatfield.tobytes())
        if self.darkfield is not None:
            sha.update(self.darkfield.tobytes())
        return sha.hexdigest()[:16]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model to one ``.npz`` file (the suffix is added if missing).

        The file holds the arrays ``flatfield`` (and ``darkfield``) and, under
        ``__cellscale__``, a JSON record of the channels, method, parameters,
        provenance, digest and versions, readable with ``numpy.load``. It is the format
        of cellscale's other fitted models.

        Returns
        -------
        pathlib.Path
            The file written.
        """
        from cellscale.illumination._io import save_model

        return save_model(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> IlluminationModel:
        """Read a model written by :meth:`save` (the ``.npz`` suffix may be left out).

        Raises
        ------
        ValueError
            If the file is no cellscale illumination model, lacks or has unexpected
            arrays, has arrays of the wrong shape, does not match its recorded digest,
            or holds a flatfield with zeros, negatives or NaN (each message says which).
        """
        from cellscale.illumination._io import load_model

        return load_model(cls, path)

    def plot(self, path: str | os.PathLike[str] | None = None) -> Figure:
        """Draw each channel's flatfield (and darkfield) with a colour bar.

        Parameters
        ----------
        path
            Also write the figure here as a PNG.

        Returns
        -------
        matplotlib.figure.Figure
            One row per channel; drawn off-screen (Agg), pyplot is not touched.
        """
        from cellscale.illumination._draw import draw_model

        return draw_model(self, path)

    def __repr__(self) -> str:
        return (
            f"IlluminationModel(method={self.method!r}, channels={self.channels}, "
            f"shape={self.shape}, darkfield={self.darkfield is not None})"
        )


def _checked_channels(channels: Sequence[str]) -> tuple[str, ...]:
    names = (channels,) if isinstance(channels, str) else tuple(str(c) for c in channels)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"channels must be distinct names, at least one; got {list(names)}")
    return names


def _checked_flatfield(channels: tuple[str, ...], values: Any) -> np.ndarray:
    flat = np.asarray(values, dtype=np.float64)
    _check_shape("flatfield", flat.shape, channels)
    for name, plane in zip(channels, flat, strict=True):
        bad_values = int(np.count_nonzero(~np.isfinite(plane)))
        not_positive = int(np.count_nonzero(plane <= 0))
        if bad_values or not_positive:
            raise ValueError(
                f"the flatfield of channel {name!r} has {not_positive} pixels that are zero "
                f"or negative and {bad_values} that are NaN or infinite; a flatfield must be "
                "positive and finite everywhere"
            )
    means = flat.mean(axis=(1, 2), keepdims=True)
    if np.any(np.abs(means - 1.0) > _MEAN_TOLERANCE):
        flat = flat / means
    return _frozen(flat)


def _checked_darkfield(channels: tuple[str, ...], values: Any, flat: np.ndarray) -> np.ndarray:
    dark = np.asarray(values, dtype=np.float64)
    if dark.shape != flat.shape:
        raise ValueError(
            f"the darkfield has shape {dark.shape}, the flatfield {flat.shape}; they must agree"
        )
    for name, plane in zip(channels, dark, strict=True):
        bad_values = int(np.count_nonzero(~np.isfinite(plane)))
        if bad_values:
            raise ValueError(
                f"the darkfield of channel {name!r} has {bad_values} NaN or infinite pixels"
            )
    return _frozen(dark)


def _check_shape(what: str, shape: tuple[int, ...], channels: tuple[str, ...]) -> None:
    if len(shape) != 3 or shape[0] != len(channels) or min(shape) < 1:
        raise ValueError(
            f"the {what} has shape {shape}; it must be (channels, y, x) with one image "
            f"per channel: ({len(channels)}, y, x) for {list(channels)}"
        )


def _frozen(values: np.ndarray) -> np.ndarray:
    out = np.ascontiguousarray(values, dtype=np.float32)
    out.flags.writeable = False
    return out
