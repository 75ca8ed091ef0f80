"""How well profiles tell conditions apart: k-nearest-neighbour accuracy against chance."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["knn_accuracy"]

_BLOCK_ROWS = 2048


def knn_accuracy(
    train: Any, train_labels: Any, test: Any, test_labels: Any, *, k: int = 5
) -> tuple[float, float]:
    """The k-nearest-neighbour accuracy of ``test_labels`` from ``train``, and its chance level.

    Each test row gets the label most common among its ``k`` nearest training rows
    (Euclidean; ties go to the label that sorts first, as in scikit-learn's
    ``KNeighborsClassifier``). Train on one replicate and test on another, so that cells
    of one well never vote for each other.

    Parameters
    ----------
    train, test
        ``(n, d)`` profiles (e.g. PC1–5 of cells).
    train_labels, test_labels
        A label per row (concentration, treatment …).
    k
        Neighbours that vote.

    Returns
    -------
    tuple of float
        The accuracy, and the chance level: the test share of the most common training
        label (what always guessing it would score).

    Examples
    --------
    >>> train = np.array([[0.0], [0.1], [1.0], [1.1]])
    >>> knn_accuracy(train, ["a", "a", "b", "b"], np.array([[0.05], [0.9]]), ["a", "b"], k=1)
    (1.0, 0.5)
    """
    train = np.asarray(train, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    classes, train_codes = np.unique(np.asarray(train_labels), return_inverse=True)
    truth = np.asarray(test_labels)
    if len(train) != len(train_codes) or len(test) != len(truth):
        raise ValueError("each profile needs one label")
    if not 1 <= k <= len(train):
        raise ValueError(f"k must be between 1 and the {len(train)} training rows, got {k}")
    predicted = np.empty(len(test), dtype=np.intp)
    squared = (train**2).sum(axis=1)
    for start in range(0, len(test), _BLOCK_ROWS):
        block = test[start : start + _BLOCK_ROWS]
        distances = squared[np.newaxis] - 2 * block @ train.T
        nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
        votes = np.zeros((len(block), len(classes)), dtype=np.int64)
        np.add.at(votes, (np.arange(len(block))[:, np.newaxis], train_codes[nearest]), 1)
        predicted[start : start + len(block)] = votes.argmax(axis=1)
    accuracy = float((classes[predicted] == truth).mean()) if len(truth) else float("nan")
    common = classes[np.bincount(train_codes).argmax()]
    chance = float((truth == common).mean()) if len(truth) else float("nan")
    return accuracy, chance
