"""Batch-effect numbers find a planted batch shift, lose it once centred, sit at chance on noise."""

from __future__ import annotations

from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from cellscale.analysis._batch_effects import (
    batch_effect,
    compare_batch_effect,
    plot_batch_effect,
    plot_batch_effect_numbers,
)

FEATURES = [f"Cells_Feature_{i}" for i in range(30)]


def _wells(batch_shift: float, treatment_shift: float, seed: int = 0) -> pd.DataFrame:
    """3 batches x 2 plates x 8 treatments x 4 wells; shifts in noise SDs per feature."""
    rng = np.random.default_rng(seed)
    batches, plates, treatments, replicates = 3, 2, 8, 4
    batch_offsets = rng.normal(size=(batches, len(FEATURES)))
    treatment_offsets = rng.normal(size=(treatments, len(FEATURES)))
    rows, values = [], []
    for b in range(batches):
        for p in range(plates):
            for t in range(treatments):
                for r in range(replicates):
                    rows.append((f"B{b}", f"B{b}P{p}", f"{'ABCDEFGH'[t]}{r + 1:02d}", f"drug{t}"))
                    shift = batch_shift * batch_offsets[b] + treatment_shift * treatment_offsets[t]
                    values.append(shift)
    meta = pd.DataFrame(
        rows, columns=["Metadata_Batch", "Metadata_Plate", "Metadata_Well", "Metadata_Treatment"]
    )
    noise = rng.normal(size=(len(rows), len(FEATURES)))
    return pd.concat([meta, pd.DataFrame(np.array(values) + noise, columns=FEATURES)], axis=1)


def _centred_per_batch(wells: pd.DataFrame) -> pd.DataFrame:
    centred = wells.copy()
    centred[FEATURES] = wells[FEATURES] - wells.groupby("Metadata_Batch")[FEATURES].transform(
        "mean"
    )
    return centred


def test_strong_batch_dominates_until_centred() -> None:
    wells = _wells(batch_shift=3.0, treatment_shift=0.8)
    table = compare_batch_effect(wells, _centred_per_batch(wells), k=10)
    before, after = table.loc["before"], table.loc["after"]
    assert before["dominant"] == "batch"
    assert before["knn_batch_excess"] > 0.8 > before["knn_treatment_excess"]
    assert before["silhouette_batch"] > 0.3 > before["silhouette_treatment"]
    assert before["knn_batch_p"] < 0.01
    assert after["dominant"] == "treatment"
    assert abs(after["knn_batch_excess"]) < 0.1
    assert after["knn_batch_p"] > 0.05
    assert after["silhouette_batch"] < 0.02 < after["silhouette_treatment"]
    assert after["knn_treatment_excess"] > before["knn_treatment_excess"]


def test_noise_sits_at_chance() -> None:
    result = batch_effect(_wells(batch_shift=0.0, treatment_shift=0.0, seed=1), k=10).iloc[0]
    assert result["knn_batch_chance"] == pytest.approx((3 * 64 * 63) / (192 * 191))
    assert result["knn_treatment_chance"] == pytest.approx((8 * 24 * 23) / (192 * 191))
    for role in ("batch", "treatment"):
        assert abs(result[f"knn_{role}"] - result[f"knn_{role}_chance"]) < 0.05
        assert abs(result[f"knn_{role}_excess"]) < 0.06
        assert abs(result[f"silhouette_{role}"]) < 0.06
    assert result["dominant"] == "neither"


def test_knn_fraction_against_a_direct_count() -> None:
    """Two tight pairs far apart: each point's one neighbour is its pair partner."""
    frame = pd.DataFrame(
        {
            "Metadata_Batch": ["b1", "b1", "b2", "b2"],
            "Metadata_Treatment": ["x", "y", "x", "y"],
            "f": [0.0, 0.1, 10.0, 10.1],
        }
    )
    result = batch_effect(frame, k=1, permutations=20).iloc[0]
    assert result["knn_batch"] == 1.0
    assert result["knn_treatment"] == 0.0
    assert result["knn_batch_chance"] == pytest.approx(1 / 3)
    assert result["knn_batch_excess"] == pytest.approx(1.0)


def test_pca_scores_per_cell_from_dask_skip_cell_id_and_subsample() -> None:
    wells = _wells(batch_shift=3.0, treatment_shift=0.5)
    scores = wells[["Metadata_Batch", "Metadata_Treatment"]].copy()
    scores.insert(0, "cell_id", np.arange(len(wells), dtype=np.int64) * 1_000_003)
    for i in range(5):
        scores[f"PC{i + 1}"] = wells[FEATURES[i]] + wells[FEATURES[i + 5]]
    lazy = dd.from_pandas(scores, npartitions=4)
    result = batch_effect(lazy, sample=150, k=5).iloc[0]
    assert result["n_profiles"] <= 150
    assert result["dominant"] == "batch"
    with pytest.raises(ValueError, match=r"'cell_id'"):
        batch_effect(scores.assign(cell_id=np.nan), features=["cell_id", "PC1"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"batch": "Metadata_Bacth"},
            r"batch column 'Metadata_Bacth'.*did you mean 'Metadata_Batch'",
        ),
        ({"treatment": "Metadata_Treatmnt"}, r"did you mean 'Metadata_Treatment'"),
        ({"features": ["Cells_Feature_O"]}, r"feature column 'Cells_Feature_O'.*did you mean"),
        ({"batch": "Metadata_Well"}, r"Metadata_Well"),
        ({"k": 500}, r"k must be between 1 and 191"),
    ],
)
def test_errors_name_the_culprit(options: dict[str, object], message: str) -> None:
    wells = _wells(1.0, 1.0)
    if options.get("batch") == "Metadata_Well":
        wells = wells.assign(Metadata_Well=np.arange(len(wells)).astype(str))
        message = r"gives every profile its own value"
    with pytest.raises(ValueError, match=message):
        batch_effect(wells, **options)  # type: ignore[arg-type]


def test_one_batch_is_refused() -> None:
    wells = _wells(1.0, 1.0).assign(Metadata_Batch="B0")
    with pytest.raises(ValueError, match=r"one value \('B0'\).*at least two"):
        batch_effect(wells)


def test_figures(tmp_path: Path) -> None:
    wells = _wells(batch_shift=3.0, treatment_shift=0.8)
    coords = pd.DataFrame(wells[FEATURES[:2]].to_numpy(), columns=["PC1", "PC2"])
    meta = wells.assign(Metadata_Plate="P1")
    fig = plot_batch_effect(coords, meta, max_points=100, path=tmp_path / "scatter.png")
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == [
        "by Metadata_Batch",
        "by Metadata_Treatment",
    ]
    assert "100 of 192 points" in fig.get_suptitle()
    assert "Metadata_Plate not shown: one value ('P1')" in fig.get_suptitle()
    assert (tmp_path / "scatter.png").stat().st_size > 5_000
    with pytest.raises(ValueError, match="did you mean 'Metadata_Batch'"):
        plot_batch_effect(coords, meta, columns=("Metadata_Btch",))
    table = compare_batch_effect(wells, _centred_per_batch(wells), k=10, permutations=50)
    bars = plot_batch_effect_numbers(table, path=tmp_path / "bars.png")
    assert bars.get_suptitle() == "before: batch dominates · after: treatment dominates"
    assert len(bars.axes[0].patches) == 4
