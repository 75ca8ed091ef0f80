"""The 3 x 3 median of the classical segmenter against scipy's median_filter."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from cellscale.segmentation._median import median3


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (2, 2), (3, 8), (37, 41), (128, 96)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16, np.int32])
@pytest.mark.parametrize("levels", [3, 50_000])  # many ties, or few
def test_median3_is_scipys_median_filter(shape: tuple[int, int], dtype: type, levels: int) -> None:
    image = np.random.default_rng(levels).integers(0, levels, shape).astype(dtype)
    if np.dtype(dtype).kind == "f":
        image = image / levels + np.random.default_rng(1).random(shape).astype(dtype) * (levels > 3)
        image = image.astype(dtype)
    got, expected = median3(image), ndi.median_filter(image, 3)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_median3_of_a_stack_is_the_3d_filter() -> None:
    stack = np.random.default_rng(2).random((4, 9, 11)).astype(np.float32)
    np.testing.assert_array_equal(median3(stack), ndi.median_filter(stack, 3))


def test_median3_removes_salt_and_keeps_edges() -> None:
    image = np.zeros((16, 16), np.float32)
    image[:, 8:] = 10.0
    image[4, 3] = 1000.0  # a hot pixel
    filtered = median3(image)
    assert filtered[4, 3] == 0.0
    np.testing.assert_array_equal(filtered[:, 8:], 10.0)
