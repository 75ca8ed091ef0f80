"""Several plates' datasets as one: the samples of a screen, with one set of classes.

This module imports torch: import it on demand only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import ConcatDataset

__all__ = ["ScreenDataset"]


class ScreenDataset(ConcatDataset[tuple[torch.Tensor, int, int]]):
    """The samples of several plates' datasets, in order, as one dataset.

    The parts must share their classes and domains (build them with the same
    ``classes=`` and ``domains=``); their chunks are numbered apart, so that
    :class:`~cellscale.learning._dataset.ChunkShuffleSampler` keeps each plate's reads
    local.

    Parameters
    ----------
    parts
        One dataset per plate (:class:`~cellscale.learning._dataset.CellDataset`,
        :class:`~cellscale.learning._dataset.CropDataset` or
        :class:`~cellscale.learning._dataset.FieldDataset`).
    """

    def __init__(self, parts: Sequence[Any]) -> None:
        if not parts:
            raise ValueError("a screen dataset needs at least one plate's samples")
        first = parts[0]
        for part in parts[1:]:
            if part.classes != first.classes or part.domains != first.domains:
                raise ValueError(
                    "the plates' datasets name different classes or domains; build each with "
                    "the same classes= and domains="
                )
        super().__init__(parts)
        self.parts = list(parts)
        self.classes: list[str] = list(first.classes)
        self.domains: list[str] = list(first.domains)
        self.rows = pd.concat([p.rows for p in parts], ignore_index=True)
        self.targets = np.concatenate([np.asarray(p.targets) for p in parts])
        self.domain_targets = np.concatenate([np.asarray(p.domain_targets) for p in parts])

    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentations of ``epoch`` in every plate's samples."""
        for part in self.parts:
            part.set_epoch(epoch)

    def item_chunks(self) -> np.ndarray:
        """The chunk (or field) every sample is read from, numbered across the plates."""
        chunks, offset = [], 0
        for part in self.parts:
            own = (
                np.asarray(part.item_chunks(), np.int64)
                if hasattr(part, "item_chunks")
                else np.arange(len(part), dtype=np.int64)  # whole fields: one read each
            )
            chunks.append(own + offset)
            offset += int(own.max()) + 1 if len(own) else 0
        return np.concatenate(chunks)
