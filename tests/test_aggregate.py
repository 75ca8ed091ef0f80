"""aggregate equals pandas/pycytominer groupby and writes pycytominer-readable Parquet."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from cellscale.profiles import PCA, aggregate

FEATURES = ["Cells_a", "Cells_b", "Nuclei_c"]


@pytest.fixture
def cells() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 700
    wells = rng.choice(["B02", "B03", "C02", "C07"], n)
    frame = pd.DataFrame(
        {
            "Metadata_Plate": np.where(np.arange(n) < 350, "P1", "P2"),
            "Metadata_Well": wells,
            "Metadata_treatment": pd.Series(wells).map(
                {"B02": "DMSO", "B03": "x", "C02": "y", "C07": "DMSO"}
            ),
            "Metadata_cell_id": np.arange(n),
        }
    )
    for name in FEATURES:
        frame[name] = rng.normal(size=n) * 3 + 10
    return frame


@pytest.mark.parametrize("operation", ["mean", "median"])
def test_table_matches_pycytominer(cells: pd.DataFrame, operation: str, tmp_path) -> None:
    pycytominer = pytest.importorskip("pycytominer")
    expected = pycytominer.aggregate(cells, features=FEATURES, operation=operation)
    result = aggregate(cells, operation=operation, output=tmp_path / "wells.parquet")
    np.testing.assert_allclose(result[FEATURES], expected[FEATURES], rtol=1e-12)
    assert result["Metadata_treatment"].tolist() == ["DMSO", "x", "y", "DMSO"] * 2
    assert result["Metadata_Object_Count"].sum() == len(cells)
    assert "Metadata_cell_id" not in result  # not constant within a well
    written = pd.read_parquet(tmp_path / "wells.parquet")
    pd.testing.assert_frame_equal(written, result)
    again = pycytominer.aggregate(written, features=FEATURES, operation=operation)
    np.testing.assert_allclose(again[FEATURES], result[FEATURES], rtol=1e-12)


@pytest.mark.parametrize("operation", ["mean", "median"])
@pytest.mark.parametrize("chunks", [(100, 3), (33, 3), ((1, 499, 200), 3)])
def test_array_matches_pandas_groupby(cells: pd.DataFrame, operation: str, chunks: object) -> None:
    values = cells[FEATURES].to_numpy(np.float32)
    meta = cells[["Metadata_Plate", "Metadata_Well", "Metadata_treatment"]].rename(
        columns={"Metadata_Well": "well"}
    )
    result = aggregate(
        da.from_array(values, chunks=chunks),
        ["Metadata_Plate", "well"],
        operation=operation,
        metadata=meta,
    )
    assert list(result.columns[:4]) == [
        "Metadata_Plate",
        "Metadata_well",
        "Metadata_treatment",
        "Metadata_Object_Count",
    ]
    frame = meta.assign(**{f"feature_{i:04d}": values[:, i].astype(float) for i in range(3)})
    grouped = frame.groupby(["Metadata_Plate", "well"]).agg(
        {f"feature_{i:04d}": operation for i in range(3)}
    )
    np.testing.assert_allclose(result.iloc[:, 4:], grouped.to_numpy(), rtol=1e-6)


def test_non_finite_and_bad_arguments(cells: pd.DataFrame) -> None:
    values = cells[FEATURES].to_numpy().copy()
    values[250, 0] = np.inf
    with pytest.raises(ValueError, match=r"rows 200:300 \(first at row 250\)"):
        aggregate(da.from_array(values, chunks=(100, 3)), "Metadata_Well", metadata=cells)
    with pytest.raises(ValueError, match=r"non-finite values .* group P1/"):
        aggregate(values, ["Metadata_Plate", "Metadata_Well"], operation="median", metadata=cells)
    with pytest.raises(ValueError, match="operation must be"):
        aggregate(cells, operation="sum")
    with pytest.raises(ValueError, match="grouping columns not found"):
        aggregate(cells, "Metadata_Site")


def test_pca_scores_aggregate_to_pc_columns(cells: pd.DataFrame) -> None:
    values = cells[FEATURES].to_numpy()
    pca = PCA(2).fit(values)
    scores = pca.transform(da.from_array(values, chunks=(100, 3)))
    keys = ["Metadata_Plate", "Metadata_Well"]
    wells = aggregate(scores, keys, metadata=cells, features=pca.get_feature_names_out())
    assert list(wells.columns[-2:]) == ["PC1", "PC2"]
    expected = cells[keys].assign(PC1=pca.transform(values)[:, 0]).groupby(keys)["PC1"].mean()
    np.testing.assert_allclose(wells["PC1"], expected.to_numpy(), rtol=1e-9)
