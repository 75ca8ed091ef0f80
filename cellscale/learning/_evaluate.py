"""How well a trained model does: metrics per split and per batch, confusions, well votes.

A model that classifies cells is judged on cells it did not learn from: a test split of
disjoint wells, and where there are several imaging batches, a batch held out whole
(seed 001). :func:`evaluate` turns a table of predictions into the tables that say how it
did: accuracy against chance, balanced accuracy (which a model cannot raise by favouring
the common class), the same per batch (a model that learnt the batch instead of the
phenotype does well on the batches it saw and badly on the held-out one), the confusion
matrix, and the accuracy of a majority vote of each well's cells.
:func:`domain_predictability` measures how much a model's features encode the batch.
Everything here is plain pandas and NumPy; the figures need matplotlib.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cellscale._stages import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PREDICTION_COLUMNS",
    "EvaluationResult",
    "domain_predictability",
    "evaluate",
    "plot_confusion",
    "plot_per_batch",
    "write_evaluation",
]

PREDICTION_COLUMNS = ("label", "predicted", "domain", "Metadata_Plate", "Metadata_Well", "split")
"""The columns a predictions table must have; ``label``, ``predicted`` hold class names."""

_SCORE_COLUMNS = ["n", "n_classes", "accuracy", "balanced_accuracy", "chance", "majority"]


@dataclass(frozen=True)
class EvaluationResult:
    """The tables of :func:`evaluate`, each with a ``split`` column.

    Attributes
    ----------
    metrics
        One row per split: ``n`` predictions, ``n_classes`` (true classes present),
        ``accuracy``, ``balanced_accuracy`` (mean recall over the true classes present),
        ``chance`` (``1 / n_classes``, the balanced accuracy of any constant guess),
        ``majority`` (the share of the commonest true class, the accuracy of always
        guessing it), and ``n_wells`` and ``well_accuracy`` of the well votes.
    per_batch
        One row per split and ``domain`` with the scores of ``metrics``.
    confusion
        ``split``, ``label`` (true), ``predicted`` and ``count``, for every pair of the
        classes seen anywhere in the predictions (zeros included), so every split's
        matrix is square and of the same classes.
    per_well
        One row per split, ``Metadata_Plate``, ``Metadata_Well`` and true ``label``:
        ``n`` cells, ``cell_accuracy``, the majority ``vote`` of their predictions (ties go
        to the class first in sorted order) and whether it is ``correct``.
    """

    metrics: pd.DataFrame
    per_batch: pd.DataFrame
    confusion: pd.DataFrame
    per_well: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables by name: ``metrics``, ``per_batch``, ``confusion`` and ``per_well``."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


def _check_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """The predictions with string classes, domains and splits, or an error naming the fault."""
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        hints = [
            f"{c!r} (did you mean {close[0]!r}?)" if close else repr(c)
            for c in missing
            for close in [difflib.get_close_matches(c, [str(k) for k in predictions.columns], 1)]
        ]
        raise ValueError(
            f"the predictions lack the column(s) {', '.join(hints)}; "
            f"they need {list(PREDICTION_COLUMNS)}"
        )
    if predictions.empty:
        raise ValueError("the predictions are empty: there is nothing to evaluate")
    table = predictions[list(PREDICTION_COLUMNS)].reset_index(drop=True)
    for column in PREDICTION_COLUMNS:
        absent = table[column].isna().to_numpy()
        if absent.any():
            raise ValueError(
                f"the predictions' column {column!r} has {absent.sum()} missing value(s) "
                f"(first at row {int(np.argmax(absent))})"
            )
    return table.astype(dict.fromkeys(("label", "predicted", "domain", "split"), str))


def _scores(table: pd.DataFrame) -> dict[str, Any]:
    """Accuracy, balanced accuracy and both chance levels of one group of predictions."""
    correct = (table["label"] == table["predicted"]).to_numpy()
    recalls = pd.Series(correct).groupby(table["label"].to_numpy()).mean()
    shares = table["label"].value_counts(normalize=True)
    return {
        "n": len(table),
        "n_classes": len(recalls),
        "accuracy": float(correct.mean()),
        "balanced_accuracy": float(recalls.mean()),
        "chance": 1.0 / len(recalls),
        "majority": float(shares.max()),
    }


def _score_table(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    rows = [
        {**dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)), **_scores(part)}
        for key, part in table.groupby(by, sort=False)
    ]
    return pd.DataFrame(rows, columns=[*by, *_SCORE_COLUMNS])


def _confusion(table: pd.DataFrame) -> pd.DataFrame:
    classes = sorted(set(table["label"]) | set(table["predicted"]))
    counts = table.groupby(["split", "label", "predicted"], sort=False).size()
    every = pd.MultiIndex.from_product(
        [pd.unique(table["split"]), classes, classes], names=["split", "label", "predicted"]
    )
    return counts.reindex(every, fill_value=0).rename("count").reset_index()


def _vote(predicted: pd.Series) -> str:
    """The commonest prediction; of those tied, the first in sorted order."""
    counts = predicted.value_counts()
    return str(min(counts.index[counts == counts.max()]))


def _per_well(table: pd.DataFrame) -> pd.DataFrame:
    keys = ["split", "Metadata_Plate", "Metadata_Well", "label"]
    grouped = table.assign(hit=table["label"] == table["predicted"]).groupby(keys, sort=False)
    wells = grouped.agg(n=("hit", "size"), cell_accuracy=("hit", "mean"))
    wells["vote"] = grouped["predicted"].agg(_vote)
    wells["correct"] = wells["vote"] == wells.index.get_level_values("label")
    return wells.reset_index()


def evaluate(predictions: pd.DataFrame) -> EvaluationResult:
    """Score a model's predictions per split, per batch, per class pair and per well.

    Parameters
    ----------
    predictions
        One row per prediction (a cell, a crop or a site) with the columns
        :data:`PREDICTION_COLUMNS`: true ``label`` and ``predicted`` class names, the
        imaging batch ``domain``, ``Metadata_Plate``, ``Metadata_Well`` and the ``split``
        it belongs to (``"validation"``, ``"test"``, ``"held-out batch"`` …).

    Returns
    -------
    EvaluationResult
        The ``metrics``, ``per_batch``, ``confusion`` and ``per_well`` tables; splits
        keep their order of first appearance.

    Raises
    ------
    ValueError
        If a column is missing or has missing values, or there are no predictions.

    See Also
    --------
    domain_predictability, write_evaluation, plot_confusion, plot_per_batch

    Examples
    --------
    >>> predictions = pd.DataFrame({
    ...     "label": ["a", "a", "a", "b"], "predicted": ["a", "a", "a", "a"],
    ...     "domain": "day1", "Metadata_Plate": "P1", "Metadata_Well": ["A01"] * 3 + ["B01"],
    ...     "split": "test"})
    >>> evaluate(predictions).metrics[["accuracy", "balanced_accuracy", "chance", "majority"]]
       accuracy  balanced_accuracy  chance  majority
    0      0.75                0.5     0.5      0.75
    """
    table = _check_predictions(predictions)
    per_well = _per_well(table)
    votes = per_well.groupby("split", sort=False)["correct"].agg(["size", "mean"])
    metrics = _score_table(table, ["split"]).assign(
        n_wells=lambda m: m["split"].map(votes["size"]),
        well_accuracy=lambda m: m["split"].map(votes["mean"]).astype(float),
    )
    return EvaluationResult(
        metrics=metrics,
        per_batch=_score_table(table, ["split", "domain"]),
        confusion=_confusion(table),
        per_well=per_well,
    )


def _held_out(domains: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """Rows to hold out: about half the groups of each domain, at least one, never all."""
    by_group = pd.Series(domains).groupby(groups, sort=True)
    mixed = by_group.nunique()
    if (mixed > 1).any():
        group = mixed.index[np.argmax(mixed.to_numpy() > 1)]
        raise ValueError(
            f"group {group!r} holds rows of several domains; groups (wells) must lie "
            "within one domain (batch)"
        )
    domain_of = by_group.first()
    rng = np.random.default_rng(seed)
    held: list[Any] = []
    for domain, members in domain_of.groupby(domain_of, sort=True):
        if len(members) < 2:
            raise ValueError(
                f"domain {domain!r} has a single group ({members.index[0]!r}); holding out "
                "needs at least two groups (or rows, without groups) of each domain"
            )
        shuffled = rng.permutation(members.index.to_numpy())
        held.extend(shuffled[: len(shuffled) // 2])
    return np.isin(groups, np.asarray(held, dtype=groups.dtype))


def _nearest_centroid_recall(features: np.ndarray, domains: np.ndarray, test: np.ndarray) -> float:
    """Balanced accuracy on ``test`` rows of nearest centroids fitted on the others."""
    train = features[~test]
    mean, sd = train.mean(axis=0), train.std(axis=0)
    scaled = (features - mean) / np.where(sd > 0, sd, 1.0)
    names = np.unique(domains)
    centroids = np.stack([scaled[~test & (domains == name)].mean(axis=0) for name in names])
    distances = ((scaled[test, None, :] - centroids[None]) ** 2).sum(axis=2)
    guessed = names[np.argmin(distances, axis=1)]
    truth = domains[test]
    return float(np.mean([np.mean(guessed[truth == name] == name) for name in np.unique(truth)]))


def domain_predictability(
    features: Any,
    domains: Sequence[Any] | np.ndarray | pd.Series,
    *,
    groups: Any = None,
    seed: int = 0,
) -> float:
    """How well the batch of a sample can be told from its features, on held-out samples.

    A model whose features encode the imaging batch has learnt something that is not
    biology and will not carry over to a new batch (seed 001). This fits a nearest-
    centroid classifier of the domain on standardised features (scaled by the training
    rows' mean and standard deviation) and scores it on rows it did not see. Compare the
    result with chance, ``1 / n_domains``: near it, the features do not encode the batch;
    near 1, they do.

    Parameters
    ----------
    features
        ``(n, d)`` array or table of numbers, e.g. embeddings of cells.
    domains
        The domain (batch) of each row.
    groups
        The group of each row (e.g. plate and well): about half the groups of each
        domain are held out, so rows of one well are never on both sides. Without it,
        about half the rows of each domain are held out.
    seed
        Seed of the choice of held-out groups.

    Returns
    -------
    float
        Balanced accuracy (mean recall over domains) on the held-out rows, so that chance
        is ``1 / n_domains`` even when domains differ in size.

    Raises
    ------
    ValueError
        On shapes that disagree, non-finite features, fewer than two domains, or a domain
        with fewer than two groups (rows).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> domains = np.repeat(["day1", "day2"], 50)
    >>> encoded = rng.normal(size=(100, 4)) + 3.0 * (domains == "day2")[:, None]
    >>> round(domain_predictability(encoded, domains), 2)
    0.98
    >>> round(domain_predictability(rng.normal(size=(100, 4)), domains), 2)
    0.6
    """
    matrix = np.asarray(features, dtype=np.float64)
    labels = np.asarray(domains).astype(str)
    members = np.arange(len(labels)) if groups is None else np.asarray(groups).astype(str)
    if matrix.ndim != 2 or not len(matrix) == len(labels) == len(members):
        raise ValueError(
            f"features of shape {matrix.shape} need one domain and group per row; got "
            f"{len(labels)} domains and {len(members)} groups"
        )
    if not np.isfinite(matrix).all():
        raise ValueError("features hold NaN or infinite values; drop or impute those rows first")
    if len(np.unique(labels)) < 2:
        raise ValueError(f"need at least two domains to tell apart, got {sorted(set(labels))}")
    return _nearest_centroid_recall(matrix, labels, _held_out(labels, members, seed))


def write_evaluation(result: EvaluationResult, folder: str | os.PathLike[str]) -> list[Path]:
    """Write each table of ``result`` to ``folder/<name>.parquet``, each file whole or not at all.

    Parameters
    ----------
    result
        From :func:`evaluate`.
    folder
        Created if missing; tables already there are replaced.

    Returns
    -------
    list of pathlib.Path
        The files written: ``metrics``, ``per_batch``, ``confusion``, ``per_well``.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in result.tables().items():
        path = root / f"{name}.parquet"
        with atomic_path(path) as partial:
            table.to_parquet(partial, index=False)
        written.append(path)
    return written


def _figure(size: tuple[float, float]) -> tuple[Figure, Any]:
    """A figure drawn off-screen by Agg, leaving pyplot's global state alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def plot_confusion(
    confusion: pd.DataFrame,
    split: str,
    *,
    normalize: bool = False,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """The confusion matrix of one split, counts (or row shares) written in its cells.

    Rows are true classes, columns predicted ones; the shade of a cell is its share of
    its row, so that rare and common classes read alike, and the numbers written are what
    the shade means. There is no colour bar: the numbers are the scale.

    Parameters
    ----------
    confusion
        The ``confusion`` table of :func:`evaluate`.
    split
        The split to draw.
    normalize
        Write each cell's share of its row (the recall on the diagonal) instead of counts.
    path
        Write a PNG here.

    Returns
    -------
    matplotlib.figure.Figure
    """
    splits = list(pd.unique(confusion["split"]))
    if split not in splits:
        raise ValueError(f"split {split!r} is not in the confusion table; it has {splits}")
    matrix = (
        confusion[confusion["split"] == split]
        .pivot(index="label", columns="predicted", values="count")
        .fillna(0)
    )
    counts = matrix.to_numpy(dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = counts / np.maximum(totals, 1)
    n = len(matrix)
    fig, ax = _figure((1.6 + 0.55 * n, 1.2 + 0.5 * n))
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for (row, col), count in np.ndenumerate(counts):
        text = f"{shares[row, col]:.2f}" if normalize else f"{count:,}"
        shade = "white" if shares[row, col] > 0.5 else "black"
        ax.text(col, row, text, ha="center", va="center", fontsize="small", color=shade)
    ax.set_xticks(range(n), [str(c) for c in matrix.columns], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(c) for c in matrix.index])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"{split}: {counts.sum():,} predictions, accuracy {accuracy:.1%}")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_per_batch(
    per_batch: pd.DataFrame,
    *,
    metric: str = "balanced_accuracy",
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Bars of a score per batch (domain), one bar per split, with chance marked on each.

    Parameters
    ----------
    per_batch
        The ``per_batch`` table of :func:`evaluate`.
    metric
        ``"balanced_accuracy"`` (chance ``1 / n_classes``) or ``"accuracy"`` (chance the
        commonest class's share).
    path
        Write a PNG here.

    Returns
    -------
    matplotlib.figure.Figure
    """
    chance_of = {"balanced_accuracy": "chance", "accuracy": "majority"}
    if metric not in chance_of:
        raise ValueError(f"metric {metric!r} is not one of {sorted(chance_of)}")
    splits = list(pd.unique(per_batch["split"]))
    domains = sorted(pd.unique(per_batch["domain"]))
    width = 0.8 / max(len(splits), 1)
    fig, ax = _figure((2.0 + 0.9 * len(domains) * max(len(splits), 1) ** 0.5, 4.2))
    for i, split in enumerate(splits):
        rows = per_batch[per_batch["split"] == split]
        where = np.searchsorted(domains, rows["domain"]) - 0.4 + width * (i + 0.5)
        ax.bar(where, rows[metric], width=width * 0.95, label=split)
        ax.hlines(
            rows[chance_of[metric]],
            where - width / 2,
            where + width / 2,
            color="black",
            label="chance" if i == 0 else None,
        )
    ax.set_xticks(range(len(domains)), domains)
    ax.set_xlabel("batch")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small", frameon=False)
    ax.set_title(f"{metric.replace('_', ' ')} per batch")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
