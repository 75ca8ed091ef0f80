"""The completion ledger: which (t, well, field) units of a plate store are complete.

The ledger is a small uint8 array at the plate root, one chunk per unit, so workers
mark units independently without locks. A unit is marked only after all of its
chunks are written, and unmarked before it is rewritten: a unit that was only half
written never reads as complete.
"""

from __future__ import annotations

import numpy as np
import zarr

__all__ = ["LEDGER_NAME", "create_ledger", "ledger_done", "mark_unit"]

LEDGER_NAME = "cellscale_ledger"


def create_ledger(root: zarr.Group, shape: tuple[int, int, int]) -> zarr.Array:
    """Create an empty ledger of shape ``(t, well, field)`` in ``root``."""
    return root.create_array(
        LEDGER_NAME,
        shape=shape,
        chunks=(1, 1, 1),
        dtype="uint8",
        fill_value=0,
        compressors=None,
        overwrite=True,
    )


def ledger_done(root: zarr.Group) -> np.ndarray | None:
    """Boolean ``(t, well, field)`` completion mask, or ``None`` when the store has no ledger."""
    if LEDGER_NAME not in root:
        return None
    ledger = root[LEDGER_NAME]
    assert isinstance(ledger, zarr.Array)
    return np.asarray(ledger[...]).astype(bool)


def mark_unit(ledger: zarr.Array, index: tuple[int, int, int], done: bool) -> None:
    """Record the unit at ``(t, well, field)`` index as complete or not."""
    ledger[index] = np.uint8(done)
