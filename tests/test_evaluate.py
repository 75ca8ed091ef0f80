"""k-nearest-neighbour accuracy equals scikit-learn's classifier; chance is the majority share."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from cellscale.profiles import knn_accuracy


@pytest.mark.parametrize("k", [1, 5, 12])
def test_knn_accuracy_equals_scikit_learn(k: int) -> None:
    rng = np.random.default_rng(k)
    centres = rng.normal(0, 2, (4, 5))
    train_labels = rng.integers(0, 4, 900)
    test_labels = rng.integers(0, 4, 5000)  # more than one block of test rows
    train = centres[train_labels] + rng.normal(0, 1.5, (900, 5))
    test = centres[test_labels] + rng.normal(0, 1.5, (5000, 5))
    accuracy, chance = knn_accuracy(train, train_labels, test, test_labels, k=k)
    oracle = KNeighborsClassifier(n_neighbors=k).fit(train, train_labels).score(test, test_labels)
    assert accuracy == pytest.approx(oracle, abs=2e-4)  # at most one exact distance tie apart
    majority = np.bincount(train_labels).argmax()
    assert chance == pytest.approx((test_labels == majority).mean())
    assert 0.25 < accuracy < 1


def test_labels_can_be_strings_and_floats() -> None:
    train = np.array([[0.0], [0.2], [5.0], [5.2]])
    assert knn_accuracy(train, [0.0, 0.0, 10.0, 10.0], [[4.9], [0.1]], [10.0, 0.0], k=1)[0] == 1.0
    assert knn_accuracy(train, ["a", "a", "b", "b"], [[4.9]], ["a"], k=1)[0] == 0.0


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="one label"):
        knn_accuracy(np.zeros((3, 2)), [1, 2], np.zeros((1, 2)), [1])
    with pytest.raises(ValueError, match="k must be between 1 and the 3 training rows"):
        knn_accuracy(np.zeros((3, 2)), [1, 2, 3], np.zeros((1, 2)), [1], k=4)
