"""mAP via copairs: planted phenotypes retrieved, null ones at chance, wiring pinned to NumPy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from cellscale.analysis._map import MapResult, mean_average_precision, plot_map

NULL_SIZE = 2_000
FEATURES = [f"Cells_Feature_{i}" for i in range(20)]
DMSO = "Metadata_Treatment == 'DMSO'"


def _wells(shifts: dict[str, float], replicates: int, controls: int, seed: int = 0) -> pd.DataFrame:
    """Control and treated wells on two plates; each treatment shifted along its own direction."""
    rng = np.random.default_rng(seed)
    names = ["DMSO"] * controls + [t for t in shifts for _ in range(replicates)]
    x = rng.normal(size=(len(names), len(FEATURES)))
    for t, size in shifts.items():
        direction = rng.normal(size=len(FEATURES))
        x[np.asarray(names) == t] += size * direction
    meta = pd.DataFrame(
        {
            "Metadata_Plate": [f"P{i % 2}" for i in range(len(names))],
            "Metadata_Well": [f"W{i:03d}" for i in range(len(names))],
            "Metadata_Treatment": names,
        }
    )
    return pd.concat([meta, pd.DataFrame(x, columns=FEATURES)], axis=1)


def _chance_ap(positives: int, total: int, draws: int = 20_000) -> float:
    """Mean AP of random rankings of ``positives`` relevant among ``total``."""
    rng = np.random.default_rng(1)
    ranks = np.sort(rng.random((draws, total)).argsort(axis=1)[:, :positives], axis=1) + 1
    return float((np.arange(1, positives + 1) / ranks).mean())


@pytest.fixture(scope="module")
def screen() -> MapResult:
    shifts = {"strong_a": 3.0, "strong_b": 3.0, "null_a": 0.0, "null_b": 0.0}
    wells = _wells(shifts, replicates=8, controls=24)
    return mean_average_precision(wells, controls=DMSO, null_size=NULL_SIZE)


def test_strong_phenotypes_retrieved_null_ones_at_chance(screen: MapResult) -> None:
    activity = screen.activity.set_index("Metadata_Treatment")
    assert set(activity.index[:2]) == {"strong_a", "strong_b"}  # best first
    for strong in ("strong_a", "strong_b"):
        assert activity.loc[strong, "mean_average_precision"] > 0.95
        assert activity.loc[strong, "p_value"] == pytest.approx(1 / (NULL_SIZE + 1))
        assert activity.loc[strong, "retrieved"]
    chance = _chance_ap(positives=7, total=7 + 24)
    for null in ("null_a", "null_b"):
        assert abs(activity.loc[null, "mean_average_precision"] - chance) < 0.15
        assert activity.loc[null, "p_value"] > 0.05
        assert not activity.loc[null, "retrieved"]
    assert (activity["n_profiles"] == 8).all()
    assert screen.activity_fraction == 0.5
    assert screen.unscored == ()


def test_consistency_retrieves_distinct_phenotypes_only(screen: MapResult) -> None:
    consistency = screen.consistency.set_index("Metadata_Treatment")
    assert "DMSO" not in consistency.index
    assert consistency.loc[["strong_a", "strong_b"], "retrieved"].all()
    assert not consistency.loc[["null_a", "null_b"], "retrieved"].any()
    assert screen.consistency_fraction == 0.5


def _cosine(x: np.ndarray) -> np.ndarray:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit @ unit.T


def _average_precision(
    similarity: np.ndarray, positives: np.ndarray, negatives: np.ndarray
) -> float:
    """AP of one query: precision at each positive's rank in the similarity-sorted pairs."""
    candidates = np.concatenate([positives, negatives])
    relevant = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    order = np.argsort(-similarity[candidates], kind="stable")
    hits = relevant[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def _oracle_map(
    wells: pd.DataFrame, negatives_of: str, replicate_by: str | None
) -> dict[str, float]:
    """Per-treatment mAP from a direct NumPy ranking (controls against, or other treatments)."""
    similarity = _cosine(wells[FEATURES].to_numpy())
    treatment = wells["Metadata_Treatment"].to_numpy()
    plate = wells["Metadata_Plate"].to_numpy()
    scores: dict[str, list[float]] = {}
    for i in np.flatnonzero(treatment != "DMSO"):
        same = (treatment == treatment[i]) & (np.arange(len(wells)) != i)
        if replicate_by:
            same &= plate != plate[i]
        if negatives_of == "controls":
            others = treatment == "DMSO"
        else:
            others = (treatment != treatment[i]) & (treatment != "DMSO")
        ap = _average_precision(similarity[i], np.flatnonzero(same), np.flatnonzero(others))
        scores.setdefault(treatment[i], []).append(ap)
    return {t: float(np.mean(v)) for t, v in scores.items()}


def _benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    scaled = p[order] * len(p) / np.arange(1, len(p) + 1)
    corrected = np.minimum.accumulate(scaled[::-1])[::-1].clip(max=1)
    return corrected[np.argsort(order)]


@pytest.mark.parametrize("replicate_by", [None, "Metadata_Plate"])
def test_copairs_wiring_matches_numpy(replicate_by: str | None) -> None:
    wells = _wells({"a": 1.0, "b": 0.5, "c": 0.0}, replicates=4, controls=6, seed=3)
    result = mean_average_precision(
        wells,
        controls={"Metadata_Treatment": "DMSO"},
        replicate_by=replicate_by or (),
        null_size=200,
    )
    for table, negatives_of in ((result.activity, "controls"), (result.consistency, "others")):
        got = table.set_index("Metadata_Treatment")["mean_average_precision"]
        expected = _oracle_map(wells, negatives_of, replicate_by)
        assert sorted(got.index) == sorted(expected)
        for t, value in expected.items():
            assert got[t] == pytest.approx(value, abs=1e-5)
        assert 0 < got.max() < 1  # a case that ranks, not a trivial one
        p = table["p_value"].to_numpy()
        corrected = table["corrected_p_value"].to_numpy()
        np.testing.assert_allclose(corrected, _benjamini_hochberg(p), rtol=1e-6)
        assert (corrected > p).any()  # the correction is applied, not skipped
        assert (table["retrieved"] == (table["corrected_p_value"] < 0.05)).all()


def test_single_replicates_are_listed_unscored() -> None:
    wells = _wells({"a": 3.0, "b": 3.0}, replicates=4, controls=8)
    lone = _wells({"lone": 3.0}, replicates=1, controls=0, seed=5)
    result = mean_average_precision(
        pd.concat([wells, lone], ignore_index=True), controls=DMSO, null_size=200
    )
    assert result.unscored == ("lone",)
    assert set(result.activity["Metadata_Treatment"]) == {"a", "b"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"treatment": "Metadata_Treatmnt"}, r"treatment column 'Metadata_Treatmnt'.*did you mean"),
        ({"replicate_by": "Metadata_Plat"}, r"replicate_by column.*did you mean 'Metadata_Plate'"),
        ({"controls": "Metadata_Treatment == 'dmso'"}, r"select no profile"),
        ({"controls": "Metadata_Treatmnt == 'DMSO'"}, r"did you mean 'Metadata_Treatment'"),
        ({"controls": {"Metadata_Treatmnt": "DMSO"}}, r"controls column.*did you mean"),
        ({"controls": "Metadata_Treatment == Metadata_Treatment"}, r"select every profile"),
        ({"features": ["Cells_Feature_X"]}, r"feature column 'Cells_Feature_X'"),
    ],
)
def test_errors_name_the_culprit(options: dict[str, object], message: str) -> None:
    wells = _wells({"a": 1.0}, replicates=3, controls=4)
    arguments: dict[str, object] = {"controls": DMSO, "null_size": 50} | options
    with pytest.raises(ValueError, match=message):
        mean_average_precision(wells, **arguments)  # type: ignore[arg-type]


def test_no_replicates_at_all_is_refused() -> None:
    wells = _wells({"a": 1.0, "b": 1.0}, replicates=1, controls=4)
    with pytest.raises(ValueError, match=r"no treatment in 'Metadata_Treatment' has two profiles"):
        mean_average_precision(wells, controls=DMSO, null_size=50)


def test_plot_map(screen: MapResult, tmp_path: Path) -> None:
    fig = plot_map(screen, path=tmp_path / "map.png")
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "activity against controls: 2 of 4 retrieved (50%)",
        "replicate consistency: 2 of 4 retrieved (50%)",
    ]
    line = fig.axes[0].lines[0]
    assert np.asarray(line.get_ydata())[0] == pytest.approx(-np.log10(0.05))
    assert (tmp_path / "map.png").stat().st_size > 5_000
