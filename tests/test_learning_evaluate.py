"""Evaluation of predictions: metrics against scikit-learn, batches, confusions, wells, files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix

from cellscale.learning._evaluate import (
    PREDICTION_COLUMNS,
    domain_predictability,
    evaluate,
    plot_confusion,
    plot_per_batch,
    write_evaluation,
)
from cellscale.learning._evaluate import (
    _held_out as held_out,
)

CLASSES = ["a", "b", "c", "d"]


def _random_predictions(seed: int = 0, n: int = 600) -> pd.DataFrame:
    """Three splits over three batches; "d" is never predicted, and never true in "test"."""
    rng = np.random.default_rng(seed)
    label = rng.choice(CLASSES, n, p=[0.5, 0.25, 0.15, 0.10])
    guess = rng.choice(CLASSES[:3], n)
    predicted = np.where(rng.random(n) < 0.6, label, guess)
    predicted[predicted == "d"] = "a"
    split = rng.choice(["validation", "test", "held-out batch"], n)
    label[(split == "test") & (label == "d")] = "b"
    domain = np.where(split == "held-out batch", "day3", rng.choice(["day1", "day2"], n))
    return pd.DataFrame(
        {
            "label": label,
            "predicted": predicted,
            "domain": domain,
            "Metadata_Plate": np.where(domain == "day3", "P3", "P1"),
            "Metadata_Well": rng.choice(["A01", "A02", "B01", "B02", "C01"], n),
            "split": split,
        }
    )


def _sklearn_scores(part: pd.DataFrame) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        balanced = balanced_accuracy_score(part["label"], part["predicted"])
    shares = part["label"].value_counts(normalize=True)
    return {
        "n": len(part),
        "accuracy": accuracy_score(part["label"], part["predicted"]),
        "balanced_accuracy": balanced,
        "chance": 1 / part["label"].nunique(),
        "majority": shares.max(),
    }


def test_metrics_of_each_split_equal_scikit_learns() -> None:
    predictions = _random_predictions()
    metrics = evaluate(predictions).metrics.set_index("split")
    assert list(metrics.index) == list(pd.unique(predictions["split"]))
    for split, part in predictions.groupby("split"):
        expected = _sklearn_scores(part)
        for name, value in expected.items():
            assert metrics.loc[split, name] == pytest.approx(value), (split, name)
    assert metrics.loc["test", "n_classes"] == 3 and metrics.loc["validation", "n_classes"] == 4


def test_per_batch_scores_equal_scikit_learns_in_each_split_and_domain() -> None:
    predictions = _random_predictions(seed=1)
    per_batch = evaluate(predictions).per_batch.set_index(["split", "domain"])
    groups = predictions.groupby(["split", "domain"])
    assert sorted(per_batch.index) == sorted(groups.groups)
    for key, part in groups:
        for name, value in _sklearn_scores(part).items():
            assert per_batch.loc[key, name] == pytest.approx(value), (key, name)


def test_confusion_counts_equal_scikit_learns_and_sum_to_the_split_sizes() -> None:
    predictions = _random_predictions(seed=2)
    confusion = evaluate(predictions).confusion
    assert list(confusion.columns) == ["split", "label", "predicted", "count"]
    for split, part in predictions.groupby("split"):
        mine = confusion[confusion["split"] == split].pivot(
            index="label", columns="predicted", values="count"
        )
        assert list(mine.index) == list(mine.columns) == CLASSES
        expected = confusion_matrix(part["label"], part["predicted"], labels=CLASSES)
        np.testing.assert_array_equal(mine.to_numpy(), expected)
        assert mine.to_numpy().sum() == len(part)


def test_wells_vote_by_majority_with_ties_to_the_first_class() -> None:
    predictions = pd.DataFrame(
        {
            "label": ["a"] * 3 + ["b"] * 2 + ["a"] * 2,
            "predicted": ["a", "b", "a", "a", "b", "c", "a"],
            "domain": "day1",
            "Metadata_Plate": "P1",
            "Metadata_Well": ["A01"] * 3 + ["B01"] * 2 + ["C01"] * 2,
            "split": "test",
        }
    )
    result = evaluate(predictions)
    wells = result.per_well.set_index("Metadata_Well")
    assert wells["vote"].to_dict() == {"A01": "a", "B01": "a", "C01": "a"}
    assert wells["correct"].to_dict() == {"A01": True, "B01": False, "C01": True}
    assert wells.loc["A01", "cell_accuracy"] == pytest.approx(2 / 3)
    assert wells["n"].tolist() == [3, 2, 2]
    metrics = result.metrics.iloc[0]
    assert metrics["n_wells"] == 3 and metrics["well_accuracy"] == pytest.approx(2 / 3)


def test_missing_columns_values_and_rows_are_refused_by_name() -> None:
    predictions = _random_predictions()
    with pytest.raises(ValueError, match=r"'label' \(did you mean 'lable'\?\)"):
        evaluate(predictions.rename(columns={"label": "lable"}))
    with pytest.raises(ValueError, match=r"lack the column.*'split'"):
        evaluate(predictions.drop(columns="split"))
    with pytest.raises(ValueError, match="predictions are empty"):
        evaluate(predictions.iloc[:0])
    holes = predictions.copy()
    holes.loc[[5, 9], "predicted"] = None
    with pytest.raises(
        ValueError, match=r"'predicted' has 2 missing value\(s\) \(first at row 5\)"
    ):
        evaluate(holes)


def _domain_data(encoded: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """300 rows of 3 domains in 30 wells, 8 features; domain i shifts feature i if encoded."""
    rng = np.random.default_rng(seed)
    domains = np.repeat(["day1", "day2", "day3"], 100)
    wells = np.repeat([f"well{i}" for i in range(30)], 10)
    features = rng.normal(size=(300, 8))
    if encoded:
        features[:, :3] += 4.0 * (domains[:, None] == np.array(["day1", "day2", "day3"]))
    return features, domains, wells


@pytest.mark.parametrize("by_well", [False, True])
def test_domain_predictability_is_near_one_when_features_encode_the_domain(by_well: bool) -> None:
    features, domains, wells = _domain_data(encoded=True)
    score = domain_predictability(features, domains, groups=wells if by_well else None)
    assert score > 0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_domain_predictability_is_near_chance_when_features_do_not(seed: int) -> None:
    features, domains, wells = _domain_data(encoded=False, seed=seed)
    score = domain_predictability(pd.DataFrame(features), domains, groups=wells, seed=seed)
    assert abs(score - 1 / 3) < 0.15


def test_holding_out_by_group_keeps_each_group_on_one_side_and_each_domain_on_both() -> None:
    _, domains, wells = _domain_data(encoded=False)
    test = held_out(domains, wells, seed=4)
    sides = pd.Series(test).groupby(wells).nunique()
    assert (sides == 1).all()
    for domain in np.unique(domains):
        assert 0 < test[domains == domain].sum() < (domains == domain).sum()
    assert not np.array_equal(test, held_out(domains, wells, seed=5))


def test_domain_predictability_refuses_what_it_cannot_score() -> None:
    features, domains, wells = _domain_data(encoded=True)
    mixed = np.where(np.isin(wells, ["well0", "well10"]), "x", wells)  # a day1 and a day2 well
    with pytest.raises(ValueError, match="group 'x' holds rows of several domains"):
        domain_predictability(features, domains, groups=mixed)
    with pytest.raises(ValueError, match="domain 'day1' has a single group"):
        domain_predictability(features, domains, groups=np.where(domains == "day1", "w", wells))
    with pytest.raises(ValueError, match="at least two domains"):
        domain_predictability(features, np.full(300, "day1"))
    with pytest.raises(ValueError, match="one domain and group per row"):
        domain_predictability(features, domains[:10])
    features[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        domain_predictability(features, domains)


def test_tables_are_written_whole_to_parquet(tmp_path: Path) -> None:
    result = evaluate(_random_predictions())
    written = write_evaluation(result, tmp_path / "evaluation")
    assert [p.name for p in written] == [
        "metrics.parquet",
        "per_batch.parquet",
        "confusion.parquet",
        "per_well.parquet",
    ]
    for path, (name, table) in zip(written, result.tables().items(), strict=True):
        assert path.stem == name
        pd.testing.assert_frame_equal(pd.read_parquet(path), table, check_dtype=False)
    assert sorted(p.name for p in (tmp_path / "evaluation").iterdir()) == sorted(
        p.name for p in written
    )


def test_the_confusion_figure_writes_counts_or_row_shares_in_its_cells(tmp_path: Path) -> None:
    predictions = _random_predictions()
    confusion = evaluate(predictions).confusion
    figure = plot_confusion(confusion, "test", path=tmp_path / "confusion.png")
    assert isinstance(figure, Figure) and (tmp_path / "confusion.png").stat().st_size > 0
    ax = figure.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert len(figure.axes) == 1  # no colour bar
    written = sum(int(t.get_text().replace(",", "")) for t in ax.texts)
    assert written == (predictions["split"] == "test").sum()
    shares = plot_confusion(confusion, "test", normalize=True).axes[0].texts
    rows = np.array([float(t.get_text()) for t in shares]).reshape(len(CLASSES), -1)
    test_rows = rows[[CLASSES.index(c) for c in ("a", "b", "c")]]
    np.testing.assert_allclose(test_rows.sum(axis=1), 1.0, atol=0.03)
    with pytest.raises(ValueError, match="split 'tset' is not in the confusion table"):
        plot_confusion(confusion, "tset")


def test_the_per_batch_figure_has_a_bar_per_split_and_batch() -> None:
    per_batch = evaluate(_random_predictions()).per_batch
    figure = plot_per_batch(per_batch)
    ax = figure.axes[0]
    heights = sorted(round(bar.get_height(), 6) for bar in ax.patches if isinstance(bar, Rectangle))
    assert heights == sorted(round(v, 6) for v in per_batch["balanced_accuracy"])
    assert ax.get_ylabel() == "balanced accuracy" and ax.get_xlabel() == "batch"
    legend = ax.get_legend()
    assert legend is not None
    assert {t.get_text() for t in legend.get_texts()} == {
        "chance",
        "validation",
        "test",
        "held-out batch",
    }
    with pytest.raises(ValueError, match="metric 'f1'"):
        plot_per_batch(per_batch, metric="f1")


def test_prediction_columns_are_those_of_the_shared_interface() -> None:
    assert PREDICTION_COLUMNS == (
        "label",
        "predicted",
        "domain",
        "Metadata_Plate",
        "Metadata_Well",
        "split",
    )
