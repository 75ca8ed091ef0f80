"""The completion ledger of an output: which of its units are complete, and from what.

A ledger is a small ``uint64`` Zarr array with one chunk per unit, so workers mark
units independently without locks. ``0`` means "not done"; any other value is the
token of the inputs the unit was made from (see :func:`~cellscale._stages.unit_token`).
A unit is marked only after all of its chunks are written and cleared before it is
rewritten, so a half-written unit never reads as complete, and a rerun can tell a unit
made from other inputs from one that is still valid.

Reading a ledger unit by unit costs one file per unit (62,208 for a campaign's plate
store), so the writer **seals** a ledger it has just completed, under its lock: every
token is copied into one record in the ledger's own metadata, and a resume check or a
progress page then reads one small file per store. :meth:`Ledger.clear` drops the seal
before it touches a unit, and a unit of a sealed ledger (which is complete) is only ever
rewritten after it was cleared, so a seal never outlives the tokens it copied.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr

__all__ = ["Ledger"]

_SEAL = "cellscale_sealed"


class Ledger:
    """The completion ledger stored in ``array`` (one element per unit)."""

    def __init__(self, array: zarr.Array) -> None:
        self.array = array

    @classmethod
    def create(cls, group: zarr.Group, name: str, shape: Sequence[int]) -> Ledger:
        """Create an empty ledger of ``shape`` units named ``name`` in ``group``."""
        array = group.create_array(
            name,
            shape=tuple(shape),
            chunks=(1,) * len(shape),
            dtype="uint64",
            fill_value=0,
            compressors=None,
            overwrite=True,
        )
        return cls(array)

    @classmethod
    def open(cls, group: zarr.Group, name: str) -> Ledger | None:
        """The ledger ``name`` in ``group``, or ``None`` if there is none."""
        if name not in group:
            return None
        array = group[name]
        if not isinstance(array, zarr.Array):
            return None
        return cls(array)

    def tokens(self) -> np.ndarray:
        """The recorded token of every unit (``0`` where not done), as ``uint64``.

        One small read when the ledger is sealed (see :meth:`seal`), one per unit if not.
        """
        sealed = _unsealed(self._fresh_attributes().get(_SEAL), self.array.shape)
        if sealed is not None:
            return sealed
        return self._unit_tokens()

    def seal(self) -> bool:
        """Copy every token into one record if every unit is complete; return whether it did.

        Call it holding the output's lock (or lease), after the units ran: no unit may be
        cleared or marked between the read of the units and the record's write.
        """
        if _unsealed(self._fresh_attributes().get(_SEAL), self.array.shape) is not None:
            return True  # sealed already: nothing was cleared since, so nothing changed
        tokens = self._unit_tokens()
        if not tokens.all():
            return False
        packed = zlib.compress(tokens.astype("<u8").tobytes())
        self.array.attrs[_SEAL] = {
            "shape": list(tokens.shape),
            "tokens": base64.b64encode(packed).decode("ascii"),
        }
        return True

    def unseal(self) -> None:
        """Drop the sealed record, so that the units are read one by one again."""
        if _SEAL in self._fresh_attributes():
            del self.array.attrs[_SEAL]

    def _unit_tokens(self) -> np.ndarray:
        return np.asarray(self.array[...]).astype(np.uint64)

    def _fresh_attributes(self) -> dict[str, Any]:
        """The ledger's attributes as stored now (another process may have sealed it)."""
        stored = zarr.open_array(self.array.store, path=self.array.path, mode="r")
        return dict(stored.attrs)

    def done(self) -> np.ndarray:
        """Boolean completion mask of every unit."""
        return self.tokens() != 0

    def done_units(self) -> list[tuple[int, ...]]:
        """The index of every complete unit, in order."""
        return [tuple(int(i) for i in unit) for unit in np.argwhere(self.done())]

    def mark(self, index: tuple[int, ...], token: int) -> None:
        """Record the unit at ``index`` complete, made from inputs with ``token``."""
        if token == 0:
            raise ValueError("a unit token is never 0 (0 means 'not done')")
        self.array[index] = np.uint64(token)

    def clear(self, index: tuple[int, ...]) -> None:
        """Record the unit at ``index`` as not done (dropping the seal first)."""
        self.unseal()
        self.array[index] = np.uint64(0)


def _unsealed(record: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """The tokens of a sealed record, or ``None`` if there is none or it does not fit."""
    if not isinstance(record, dict) or tuple(record.get("shape", ())) != tuple(shape):
        return None
    try:
        raw = zlib.decompress(base64.b64decode(record["tokens"]))
    except (KeyError, ValueError, zlib.error):
        return None
    tokens = np.frombuffer(raw, dtype="<u8")
    if tokens.size != int(np.prod(shape)):
        return None
    return tokens.reshape(shape).astype(np.uint64)
