"""Instance-segmentation accuracy: match predicted to true objects by IoU and score the match.

Objects are matched one to one by their intersection over union (IoU). Above an IoU of 0.5
a true object can overlap at most one predicted object that much (and vice versa), so the
match is unique and needs no assignment; below 0.5 the largest one-to-one matching is
found with :func:`scipy.optimize.linear_sum_assignment`. A pair matches when its IoU is
strictly greater than the threshold, as in the Data Science Bowl 2018.

The overlaps come from one contingency table of the pixels both images label, so the cost
is one :func:`numpy.unique` over those pixels, whatever the number of objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["DSB_THRESHOLDS", "MatchCounts", "dsb_score", "iou_pairs", "match_counts"]

DSB_THRESHOLDS: tuple[float, ...] = tuple(np.round(np.arange(0.5, 1.0, 0.05), 2).tolist())
"""The IoU thresholds of the Data Science Bowl 2018 score: 0.5, 0.55, …, 0.95."""


@dataclass(frozen=True)
class MatchCounts:
    """True positives, false positives and false negatives of one match (or a sum of them).

    Ratios whose denominator is 0 are 1.0 when neither image has objects (nothing to find,
    nothing found) and 0.0 otherwise. Counts add up with ``+`` to pool several images.

    Examples
    --------
    >>> counts = MatchCounts(tp=8, fp=2, fn=0) + MatchCounts(tp=0, fp=0, fn=2)
    >>> counts.precision, counts.recall, counts.f1
    (0.8, 0.8, 0.8)
    >>> MatchCounts(tp=0, fp=0, fn=0).f1
    1.0
    """

    tp: int
    fp: int
    fn: int

    def __add__(self, other: MatchCounts) -> MatchCounts:
        return MatchCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def _ratio(self, numerator: int, denominator: int) -> float:
        if denominator:
            return numerator / denominator
        return 1.0 if self.tp + self.fp + self.fn == 0 else 0.0

    @property
    def precision(self) -> float:
        """Share of predicted objects that match a true one."""
        return self._ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """Share of true objects that match a predicted one."""
        return self._ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall, ``2 tp / (2 tp + fp + fn)``."""
        return self._ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def jaccard(self) -> float:
        """``tp / (tp + fp + fn)``: the DSB 2018 score at one threshold."""
        return self._ratio(self.tp, self.tp + self.fp + self.fn)


def _dense_ids(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """``labels`` renumbered ``0 … n`` (0 stays background) and the number of objects ``n``."""
    ids, dense = np.unique(labels, return_inverse=True)
    if ids.size and ids[0] != 0:  # no background pixel: shift so that object ids start at 1
        dense = dense + 1
    return dense.reshape(labels.shape), int(np.count_nonzero(ids))


def _overlaps(
    true: np.ndarray, pred: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """:func:`iou_pairs` and the numbers of true and of predicted objects."""
    if true.shape != pred.shape:
        raise ValueError(f"label images differ in shape: {true.shape} and {pred.shape}")
    true_dense, n_true = _dense_ids(true)
    pred_dense, n_pred = _dense_ids(pred)
    true_area = np.bincount(true_dense.ravel(), minlength=n_true + 1)
    pred_area = np.bincount(pred_dense.ravel(), minlength=n_pred + 1)
    both = (true_dense > 0) & (pred_dense > 0)
    pair_keys = true_dense[both].astype(np.int64) * (n_pred + 1) + pred_dense[both]
    keys, intersection = np.unique(pair_keys, return_counts=True)
    true_id, pred_id = np.divmod(keys, n_pred + 1)
    union = true_area[true_id] + pred_area[pred_id] - intersection
    return true_id - 1, pred_id - 1, intersection / union, n_true, n_pred


def iou_pairs(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every overlapping pair of a true and a predicted object and its IoU.

    Parameters
    ----------
    true, pred
        Instance label images of the same shape (any dimension); 0 is background, ids need
        not be consecutive.

    Returns
    -------
    true_index, pred_index, iou
        Per overlapping pair: the 0-based rank of the true object among the sorted ids of
        ``true``, that of the predicted object in ``pred``, and their IoU.

    Examples
    --------
    >>> true = np.array([[1, 1, 0, 0], [1, 1, 0, 5]])
    >>> pred = np.array([[2, 2, 2, 0], [2, 2, 0, 0]])
    >>> iou_pairs(true, pred)
    (array([0]), array([0]), array([0.8]))
    """
    true_index, pred_index, iou, _, _ = _overlaps(true, pred)
    return true_index, pred_index, iou


def _count_matches(
    true_index: np.ndarray, pred_index: np.ndarray, iou: np.ndarray, threshold: float
) -> int:
    """Size of the largest one-to-one matching among pairs with IoU above ``threshold``."""
    keep = iou > threshold
    if threshold >= 0.5:  # each object has at most one such partner
        return int(np.count_nonzero(keep))
    rows, true_index = np.unique(true_index[keep], return_inverse=True)
    cols, pred_index = np.unique(pred_index[keep], return_inverse=True)
    candidates = np.zeros((len(rows), len(cols)))
    candidates[true_index, pred_index] = 1.0
    matched_rows, matched_cols = linear_sum_assignment(candidates, maximize=True)
    return int(candidates[matched_rows, matched_cols].sum())


def match_counts(true: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> MatchCounts:
    """Match the objects of ``pred`` to those of ``true`` one to one at an IoU threshold.

    Parameters
    ----------
    true, pred
        Instance label images of the same shape, 0 for background.
    threshold
        A pair matches when its IoU is strictly greater than this.

    Returns
    -------
    MatchCounts
        Matched pairs (``tp``), unmatched predictions (``fp``) and unmatched true objects
        (``fn``).

    Examples
    --------
    >>> true = np.array([[1, 1, 0, 2, 2]])
    >>> pred = np.array([[3, 3, 3, 0, 0]])
    >>> match_counts(true, pred)
    MatchCounts(tp=1, fp=0, fn=1)
    >>> match_counts(true, pred, threshold=0.7)
    MatchCounts(tp=0, fp=1, fn=2)
    """
    true_index, pred_index, iou, n_true, n_pred = _overlaps(true, pred)
    tp = _count_matches(true_index, pred_index, iou, threshold)
    return MatchCounts(tp=tp, fp=n_pred - tp, fn=n_true - tp)


def dsb_score(
    true: np.ndarray, pred: np.ndarray, thresholds: tuple[float, ...] = DSB_THRESHOLDS
) -> float:
    """The Data Science Bowl 2018 score of one image.

    The mean over IoU thresholds of ``tp / (tp + fp + fn)``: 1.0 when neither image has
    objects, 0.0 when exactly one has.

    Examples
    --------
    >>> labels = np.array([[1, 1, 0, 2]])
    >>> dsb_score(labels, labels)
    1.0
    >>> dsb_score(labels, np.zeros_like(labels))
    0.0
    """
    true_index, pred_index, iou, n_true, n_pred = _overlaps(true, pred)
    scores = []
    for threshold in thresholds:
        tp = _count_matches(true_index, pred_index, iou, threshold)
        scores.append(MatchCounts(tp=tp, fp=n_pred - tp, fn=n_true - tp).jaccard)
    return float(np.mean(scores))
