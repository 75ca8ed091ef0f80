"""One-pass fits stay one pass: every chunk of the input is read exactly once, in one compute."""

from __future__ import annotations

import numpy as np
import pytest

from cellscale.profiles import PCA, Robustizer, Spherizer, Standardizer
from tests.conftest import ChunkReads, count_computes

CHUNKS = ((70, 130, 33, 67), 12)  # uneven row chunks, all features in one column chunk


@pytest.fixture
def values() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) + 50).astype(np.float32)


@pytest.mark.parametrize(
    "estimator",
    [lambda: PCA(4), lambda: Standardizer(), lambda: Spherizer()],
    ids=["PCA", "Standardizer", "Spherizer"],
)
@pytest.mark.parametrize("masked", [False, True], ids=["all", "controls"])
def test_moment_fits_read_each_chunk_once_in_one_compute(
    values: np.ndarray, estimator, masked: bool
) -> None:
    reads = ChunkReads(values, CHUNKS)
    mask = np.arange(len(values)) % 3 == 0 if masked else None
    model = estimator()
    with count_computes() as computes:
        if isinstance(model, PCA):
            model.fit(reads.array, mask=mask)
        else:
            model.fit(reads.array, mask)
    assert len(computes) == 1
    assert reads.passes == 1 and len(reads.counts) == 4


def test_the_robust_fit_is_counted_too(values: np.ndarray) -> None:
    """Medians need the control rows together: still one compute, each chunk read once."""
    reads = ChunkReads(values, CHUNKS)
    with count_computes() as computes:
        Robustizer().fit(reads.array)
    assert len(computes) == 1 and reads.passes == 1
