"""The completion ledger of an output: which of its units are complete, and from what.

A ledger is a small ``uint64`` Zarr array with one chunk per unit, so workers mark
units independently without locks. ``0`` means "not done"; any other value is the
token of the inputs the unit was made from (see :func:`~cellscale._stages.unit_token`).
A unit is marked only after all of its chunks are written and cleared before it is
rewritten, so a half-written unit never reads as complete, and a rerun can tell a unit
made from other inputs from one that is still valid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import zarr

__all__ = ["Ledger"]


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
        """The recorded token of every unit (``0`` where not done), as ``uint64``."""
        return np.asarray(self.array[...]).astype(np.uint64)

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
        """Record the unit at ``index`` as not done."""
        self.array[index] = np.uint64(0)
