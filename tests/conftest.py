"""Shared fixtures: the real data beside the repository, laziness guards, a pipeline cluster."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest

import cellscale

#: The real microscopy the ``realdata`` tests read: ``$CELLSCALE_REAL_DATA``, by default
#: ``../shared/data/real`` beside the repository.
REAL_DATA = Path(
    os.environ.get(
        "CELLSCALE_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
    )
)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """A local cluster of one CPU and one GPU-tagged worker (threads), per test module."""
    with cellscale.start_cluster(
        "local", n_workers=1, gpu_workers=1, processes=False, threads_per_worker=2, quiet=True
    ) as started:
        yield started


@pytest.fixture
def real_data() -> Path:
    """The folder of real microscopy beside the repository; skips when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data not found at {REAL_DATA}")
    return REAL_DATA


class _ComputeForbidden:
    """A dask scheduler that fails every compute: proves that code builds graphs only."""

    def __call__(self, dsk: object, keys: object, **kwargs: object) -> None:
        raise AssertionError("a dask computation ran where only a graph should be built")


@contextmanager
def raise_if_dask_computes() -> Iterator[None]:
    """Raise AssertionError if anything computes with dask inside the block."""
    with dask.config.set(scheduler=_ComputeForbidden()):
        yield


class ChunkReads:
    """A dask array that counts how often each of its chunks is computed."""

    def __init__(self, values: np.ndarray, chunks: object) -> None:
        import dask.array as da

        self.counts: dict[tuple[int, ...], int] = {}
        self._lock = threading.Lock()
        self.array = da.from_array(values, chunks=chunks).map_blocks(
            self._count, dtype=values.dtype
        )

    def _count(self, block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        if block_info is not None:
            location = tuple(block_info[0]["chunk-location"])
            with self._lock:
                self.counts[location] = self.counts.get(location, 0) + 1
        return block

    @property
    def passes(self) -> int:
        """How many times the most-read chunk was computed (1 for a one-pass algorithm)."""
        return max(self.counts.values(), default=0)


@contextmanager
def count_computes() -> Iterator[list[int]]:
    """Count the dask computations inside the block (each call of the scheduler)."""
    calls: list[int] = []

    def scheduler(dsk: object, keys: object, **kwargs: object) -> object:
        calls.append(1)
        return dask.get(dsk, keys, **kwargs)

    with dask.config.set(scheduler=scheduler):
        yield calls
