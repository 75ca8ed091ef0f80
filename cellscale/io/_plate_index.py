"""The plate index: what opening a complete plate needs, in one group read in a few requests.

Opening a plate by walking its metadata reads two documents per field and one per
unit's ledger chunk: 3,456 fields take seconds. When a write leaves every present unit
complete, cellscale writes ``cellscale_index`` at the plate root: a snapshot of the
ledger's tokens (one chunk) and, in the group's attributes, the field image metadata
and every pyramid level's array metadata, which are the same for every field of a
cellscale store. :func:`cellscale.open_plate` builds the plate from it without visiting
a field.

The index never outlives what it describes: every cellscale write that can change a
unit (``write_plate``, ``ingest``, ``verify`` with repair) deletes it, under the store's
lock, before it changes anything, and it is written again only when the plate is
complete once more. Its attributes are written last, so an index whose writing was
interrupted is never read. Stores without an index (or written by other tools) are
opened by the walk; ``cellscale verify`` writes the index of an intact plate.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from cellscale._compat import (
    ArrayMetadata,
    array_at,
    array_metadata_document,
    parse_array_metadata,
)
from cellscale._stages import Ledger
from cellscale.io._layout import PlateLayout
from cellscale.io._store_setup import LEDGER_NAME, field_image_path

__all__ = ["INDEX_NAME", "PlateIndex", "drop_index", "write_index"]

INDEX_NAME = "cellscale_index"
_INDEX_VERSION = 1


@dataclass(frozen=True)
class PlateIndex:
    """A complete plate's ledger tokens, field image attributes and level array metadata."""

    tokens: np.ndarray
    image_attrs: dict[str, Any]
    levels: list[ArrayMetadata]

    @classmethod
    def read(cls, root: zarr.Group, layout: PlateLayout) -> PlateIndex | None:
        """The index of the plate at ``root``; ``None`` where it has none, or a partial one."""
        node = root.get(INDEX_NAME)
        if not isinstance(node, zarr.Group):
            return None
        attrs = node.attrs.asdict()
        if attrs.get("index_version") != _INDEX_VERSION:
            return None
        tokens = node.get("tokens")
        expected = (len(layout.t), len(layout.wells), len(layout.fields))
        if not isinstance(tokens, zarr.Array) or tuple(tokens.shape) != expected:
            return None
        documents: Any = attrs["levels"]
        image_attrs: Any = attrs["image_attrs"]
        return cls(
            tokens=np.asarray(tokens[...], dtype=np.uint64),
            image_attrs=dict(image_attrs),
            levels=[parse_array_metadata(document) for document in documents],
        )

    def array(self, root: zarr.Group, well: str, field: int, level: int) -> zarr.Array:
        """A field's array at ``level``, opened from the index without reading the store."""
        path = f"{root.path}/{field_image_path(well, field)}/{level}".lstrip("/")
        return array_at(root.store, path, self.levels[level])


def drop_index(path: Path) -> None:
    """Delete the plate's index, if it has one: call it before changing any unit."""
    index = path / INDEX_NAME
    if index.exists():
        shutil.rmtree(index)


def write_index(path: Path, layout: PlateLayout) -> bool:
    """Write the index of the plate at ``path`` if every present unit is complete.

    Returns
    -------
    bool
        Whether an index was written.
    """
    root = zarr.open_group(str(path), mode="r+")
    ledger = Ledger.open(root, LEDGER_NAME)
    if ledger is None:
        return False
    tokens = ledger.tokens()
    present = np.asarray(layout.field_present, dtype=bool)
    if not present.any() or ((tokens == 0) & present[np.newaxis]).any():
        return False
    well, field = next(
        (w, f)
        for i, w in enumerate(layout.wells)
        for j, f in enumerate(layout.fields)
        if present[i, j]
    )
    image = root[field_image_path(well, field)]
    assert isinstance(image, zarr.Group)
    levels = sorted((int(name), node) for name, node in image.arrays() if name.isdigit())
    drop_index(path)
    index = root.create_group(INDEX_NAME)
    snapshot = index.create_array(
        "tokens", shape=tokens.shape, chunks=tokens.shape, dtype="uint64", fill_value=0
    )
    snapshot[...] = tokens
    index.attrs.put(
        {
            "index_version": _INDEX_VERSION,
            "image_attrs": image.attrs.asdict(),
            "levels": [array_metadata_document(array) for _, array in levels],
        }
    )
    return True
