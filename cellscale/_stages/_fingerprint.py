"""Fingerprints: what produced an output, so a rerun never reuses one made from something else.

A fingerprint records the stage, the identity of its input (a source store's own
fingerprint digest, source files' names, or a dask token), its parameters and the
cellscale version, as JSON stored with the output. Writing into an output whose
fingerprint differs from the request is refused with the differences spelled out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Fingerprint", "StaleOutputError", "check_fingerprint", "names_digest"]

_SHOWN = 60  # characters of a value shown in a difference


class StaleOutputError(ValueError):
    """An output exists that was produced from other inputs, by another stage or settings."""


@dataclass(frozen=True)
class Fingerprint:
    """What produced an output.

    Attributes
    ----------
    stage
        The operation, e.g. ``"plate"`` or ``"labels"``.
    inputs
        The identity of what the stage read (JSON-serialisable).
    parameters
        The settings that change the output (JSON-serialisable).
    version
        The cellscale version that wrote the output.
    """

    stage: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    version: str = field(default_factory=lambda: _version())

    def to_json(self) -> dict[str, Any]:
        """The fingerprint as a JSON-serialisable dict."""
        return {
            "stage": self.stage,
            "inputs": _plain(self.inputs),
            "parameters": _plain(self.parameters),
            "cellscale": self.version,
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Fingerprint:
        """Read a fingerprint written by :meth:`to_json`."""
        return cls(
            stage=str(record["stage"]),
            inputs=dict(record.get("inputs", {})),
            parameters=dict(record.get("parameters", {})),
            version=str(record.get("cellscale", "unknown")),
        )

    @property
    def digest(self) -> str:
        """A short hex digest of the whole fingerprint (how outputs refer to their sources)."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def differences(self, other: Fingerprint, *, ignore: Iterable[str] = ()) -> list[str]:
        """Human-readable differences between ``self`` (stored) and ``other`` (requested).

        Parameters
        ----------
        other
            The fingerprint of the request.
        ignore
            Dotted prefixes (``"inputs.data"``) whose differences do not count.
        """
        mine, theirs = _flatten(self.to_json()), _flatten(other.to_json())
        skipped = tuple(ignore)
        lines = []
        for key in sorted(set(mine) | set(theirs), key=_natural):
            if key.startswith(skipped) or mine.get(key, _ABSENT) == theirs.get(key, _ABSENT):
                continue
            lines.append(
                f"{_label(key)}: {_show(mine.get(key, _ABSENT))} in the output, "
                f"{_show(theirs.get(key, _ABSENT))} requested"
            )
        return lines


def check_fingerprint(
    stored: Fingerprint | None,
    requested: Fingerprint,
    where: str | Path,
    *,
    ignore: Iterable[str] = (),
) -> None:
    """Refuse to write into ``where`` unless its fingerprint matches the request.

    Raises
    ------
    StaleOutputError
        Listing every difference and how to proceed.
    """
    if stored is None:
        raise StaleOutputError(
            f"{where} holds output with no cellscale fingerprint (written by another tool or "
            "an older cellscale), so what produced it is unknown. Pass overwrite=True to "
            "replace it, or write to another path"
        )
    differences = stored.differences(requested, ignore=ignore)
    if differences:
        raise StaleOutputError(
            f"{where} was produced from something else, so it cannot be resumed:\n  "
            + "\n  ".join(differences)
            + "\nPass overwrite=True to replace it, or write to another path"
        )


def names_digest(names: Iterable[str]) -> str:
    """A digest of a set of names (e.g. the files a plate was ingested from)."""
    text = "\n".join(sorted(names))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _Absent:
    def __repr__(self) -> str:
        return "nothing"


_ABSENT = _Absent()


def _version() -> str:
    from cellscale import __version__

    return __version__


def _plain(value: Any) -> Any:
    """``value`` through a JSON round trip, so stored and fresh fingerprints compare alike."""
    return json.loads(json.dumps(value, default=str))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value and any(isinstance(v, Mapping) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _label(key: str) -> str:
    if key == "inputs.data":
        return "dask token of the data"
    label = key.replace("inputs.", "input ").replace("parameters.", "")
    return "cellscale version" if label == "cellscale" else label


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _natural(key: str) -> tuple[tuple[int, int, str], ...]:
    parts = key.replace("[", ".").replace("]", "").split(".")
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)
