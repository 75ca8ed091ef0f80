"""Normalisers match pycytominer's normalize() on tables and work lazily on arrays."""

from __future__ import annotations

import copy

import dask.array as da
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import zarr

from cellscale.profiles import (
    Robustizer,
    Spherizer,
    Standardizer,
    robustize,
    spherize,
    standardize,
)
from tests.conftest import raise_if_dask_computes

pycytominer = pytest.importorskip("pycytominer")

FEATURES = ["Cells_a", "Cells_b", "Nuclei_c", "Cytoplasm_d", "Cells_e"]
QUERY = "Metadata_treatment == 'DMSO'"


@pytest.fixture
def table() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 90
    mixing = rng.normal(size=(5, 5)) + 3 * np.eye(5)
    values = rng.normal(size=(n, 5)) @ mixing * [1, 2, 3, 4, 5] + 100
    frame = pd.DataFrame(values, columns=FEATURES)
    frame.insert(0, "Metadata_Well", [f"B{i % 12 + 1:02d}" for i in range(n)])
    frame.insert(1, "Metadata_treatment", np.where(np.arange(n) % 3 == 0, "DMSO", "drug"))
    return frame


def _reference(table: pd.DataFrame, method: str, **kwargs: object) -> pd.DataFrame:
    return pycytominer.normalize(
        table,
        features=FEATURES,
        meta_features=["Metadata_Well", "Metadata_treatment"],
        samples=QUERY,
        method=method,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("method", "ours"),
    [
        ("standardize", lambda t: standardize(t, QUERY)),
        ("robustize", lambda t: robustize(t, QUERY, scale="iqr")),
        ("mad_robustize", lambda t: robustize(t, QUERY)),
    ],
)
def test_scalers_match_pycytominer(table: pd.DataFrame, method: str, ours) -> None:
    expected = _reference(table, method)
    result = ours(table)
    assert list(result.columns) == list(table.columns)
    pd.testing.assert_frame_equal(result[table.columns[:2]], table[table.columns[:2]])
    np.testing.assert_allclose(result[FEATURES], expected[FEATURES], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["PCA", "ZCA", "PCA-cor", "ZCA-cor"])
@pytest.mark.parametrize("epsilon", [1e-6, 0.1])
def test_spherize_matches_pycytominer(table: pd.DataFrame, method: str, epsilon: float) -> None:
    expected = _reference(table, "spherize", spherize_method=method, spherize_epsilon=epsilon)
    result = spherize(table, QUERY, method=method, epsilon=epsilon)
    columns = [c for c in expected.columns if not c.startswith("Metadata_")]
    assert [c for c in result.columns if not c.startswith("Metadata_")] == columns
    ours, theirs = result[columns].to_numpy(), expected[columns].to_numpy()
    if method.startswith("PCA"):  # principal axes are defined up to sign
        ours = ours * np.sign(np.sum(ours * theirs, axis=0))
    np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-8)


def test_spherize_fewer_controls_than_features_matches_pycytominer() -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.normal(size=(40, 6)) + 5, columns=[f"Cells_{i}" for i in range(6)])
    frame.insert(0, "Metadata_control", np.arange(40) < 5)
    expected = pycytominer.normalize(
        frame,
        features=list(frame.columns[1:]),
        meta_features=["Metadata_control"],
        samples="Metadata_control",
        method="spherize",
        spherize_method="ZCA",
    )
    result = spherize(frame, "Metadata_control", method="ZCA")
    np.testing.assert_allclose(result.iloc[:, 1:], expected.iloc[:, 1:], rtol=1e-6, atol=1e-6)


def test_controls_whiten_to_identity_on_arrays(table: pd.DataFrame) -> None:
    values = table[FEATURES].to_numpy(np.float32) + 1e4
    mask = (table["Metadata_treatment"] == "DMSO").to_numpy()
    arr = da.from_array(values, chunks=(17, 5))
    model = Spherizer("ZCA", epsilon=0).fit(arr, mask)
    with raise_if_dask_computes():
        out = model.transform(arr)
    assert isinstance(out, da.Array)
    assert out.dtype == np.float32
    controls = out.compute()[mask].astype(np.float64)
    np.testing.assert_allclose(np.cov(controls, rowvar=False), np.eye(5), atol=2e-3)


@pytest.mark.parametrize("model", [Standardizer(), Robustizer("iqr"), Spherizer("ZCA-cor")])
def test_uncompressed_zarr_fits_like_numpy(table: pd.DataFrame, model, tmp_path) -> None:
    values = table[FEATURES].to_numpy()
    mask = (table["Metadata_treatment"] == "DMSO").to_numpy()
    path = str(tmp_path / "features.zarr")
    zarr.create_array(path, shape=values.shape, chunks=(16, 5), dtype="f8", compressors=None)[:] = (
        values
    )
    expected = copy.deepcopy(model).fit(values, mask).transform(values)
    np.testing.assert_allclose(model.fit(path, mask).transform(values), expected, rtol=1e-9)


@pytest.mark.parametrize("model", [Standardizer(), Robustizer("mad"), Robustizer("iqr")])
def test_array_and_table_paths_agree(table: pd.DataFrame, model) -> None:
    from_table = model.fit(table, QUERY).transform(table)[FEATURES].to_numpy()
    arr = da.from_array(table[FEATURES].to_numpy(), chunks=(13, 5))
    meta = table[["Metadata_Well", "Metadata_treatment"]]
    fitted = model.fit(arr, QUERY, metadata=meta)
    with raise_if_dask_computes():
        lazy = fitted.transform(arr)
    np.testing.assert_allclose(lazy.compute(), from_table, rtol=1e-12, atol=1e-12)


def test_robust_medians_are_exact_when_read_in_column_groups(table: pd.DataFrame) -> None:
    arr = da.from_array(table[FEATURES].to_numpy(), chunks=(20, 5))
    whole = Robustizer("mad").fit(arr)
    grouped = Robustizer("mad", max_memory=90 * 8 * 2).fit(arr)  # two columns per pass
    np.testing.assert_array_equal(grouped.center_, whole.center_)
    np.testing.assert_array_equal(grouped.scale_, whole.scale_)
    np.testing.assert_array_equal(whole.center_, np.median(table[FEATURES].to_numpy(), axis=0))


def test_pyarrow_table_round_trip(table: pd.DataFrame) -> None:
    result = standardize(pa.Table.from_pandas(table, preserve_index=False), QUERY)
    assert isinstance(result, pa.Table)
    np.testing.assert_allclose(
        result.to_pandas()[FEATURES], standardize(table, QUERY)[FEATURES], rtol=1e-12
    )


@pytest.mark.parametrize(
    "model", [Standardizer(), Robustizer("iqr", epsilon=0.5), Spherizer("PCA-cor", epsilon=0.01)]
)
def test_save_and_load(table: pd.DataFrame, model, tmp_path) -> None:
    fitted = model.fit(table, QUERY)
    fitted.save(tmp_path / "model.npz")
    loaded = type(model).load(tmp_path / "model.npz")
    pd.testing.assert_frame_equal(loaded.transform(table), fitted.transform(table))
    with pytest.raises(ValueError, match="holds a"):
        (Spherizer if not isinstance(model, Spherizer) else Standardizer).load(
            tmp_path / "model.npz"
        )


def test_errors_are_clear(table: pd.DataFrame) -> None:
    values = table[FEATURES].to_numpy().copy()
    values[40, 1] = np.nan
    with pytest.raises(ValueError, match=r"rows 30:60 \(first at row 40\)"):
        Standardizer().fit(da.from_array(values, chunks=(30, 5)))
    with pytest.raises(ValueError, match="no rows match"):
        standardize(table, "Metadata_treatment == 'nothing'")
    with pytest.raises(ValueError, match="needs a metadata table"):
        standardize(values, "Metadata_treatment == 'DMSO'")
    with pytest.raises(ValueError, match="method must be one of"):
        Spherizer("ICA")
