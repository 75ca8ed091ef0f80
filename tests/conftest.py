"""Shared fixtures: paths to the real data beside the repository, and laziness guards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dask
import pytest

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


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
