"""cellscale.PCA equals a float64 SVD of the full matrix, on any chunking, lazily."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr

from cellscale.profiles import PCA
from tests.conftest import raise_if_dask_computes

K = 5


def _data(n: int, d: int, dtype: type, offset: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.linspace(4.0, 0.5, d)
    return (rng.standard_normal((n, d)) * scales + offset).astype(dtype)


def _oracle(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x64 = x.astype(np.float64)
    centred = x64 - x64.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    ev = s**2 / (len(x) - 1)
    return ev[:k], vt[:k], ev[:k] / ev.sum()


def _assert_matches(pca: PCA, x: np.ndarray, rtol: float) -> None:
    ev, vt, ratio = _oracle(x, pca.n_components_)
    np.testing.assert_allclose(pca.explained_variance_, ev, rtol=rtol)
    np.testing.assert_allclose(pca.explained_variance_ratio_, ratio, rtol=rtol)
    cosines = np.abs(np.sum(pca.components_ * vt, axis=1))
    np.testing.assert_allclose(cosines, 1.0, atol=10 * rtol)
    np.testing.assert_allclose(pca.mean_, x.astype(np.float64).mean(axis=0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float64, 1e-6), (np.float32, 1e-4)])
@pytest.mark.parametrize("chunks", [(400, 12), (97, 5), ((50, 1, 349, 200), 12)])
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_fit_matches_full_svd(dtype: type, rtol: float, chunks: object, offset: float) -> None:
    x = _data(600, 12, dtype, offset)
    pca = PCA(K).fit(da.from_array(x, chunks=chunks))
    _assert_matches(pca, x, rtol)
    assert pca.n_samples_seen_ == 600
    assert pca.n_features_in_ == 12


def test_fewer_rows_than_features() -> None:
    x = _data(9, 30, np.float64, offset=100.0)
    pca = PCA().fit(da.from_array(x, chunks=(4, 30)))
    assert pca.n_components_ == 9
    _assert_matches(PCA(6).fit(da.from_array(x, chunks=(4, 30))), x, 1e-6)
    np.testing.assert_allclose(pca.explained_variance_[-1], 0.0, atol=1e-9)


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float64, 1e-9), (np.float32, 1e-5)])
def test_partial_fit_chain_equals_one_fit(dtype: type, rtol: float) -> None:
    x = _data(500, 10, dtype, offset=1e4)
    chained = PCA(K)
    for lo, hi in [(0, 3), (3, 180), (180, 181), (181, 500)]:
        chained.partial_fit(x[lo:hi])
    whole = PCA(K).fit(x)
    np.testing.assert_allclose(chained.explained_variance_, whole.explained_variance_, rtol=rtol)
    np.testing.assert_allclose(chained.components_, whole.components_, atol=10 * rtol)
    _assert_matches(chained, x, 1e-4)


def test_mask_fits_selected_rows_only() -> None:
    x = _data(400, 8, np.float64)
    mask = np.random.default_rng(3).random(400) < 0.3
    pca = PCA(K).fit(da.from_array(x, chunks=(77, 8)), mask=da.from_array(mask, chunks=50))
    _assert_matches(pca, x[mask], 1e-6)
    assert pca.n_samples_seen_ == mask.sum()


def test_sign_convention_is_deterministic() -> None:
    x = _data(300, 6, np.float64)
    pca = PCA(3).fit(x)
    rows = np.arange(3)
    largest = pca.components_[rows, np.argmax(np.abs(pca.components_), axis=1)]
    assert np.all(largest > 0)


def test_transform_is_lazy_and_exact(tmp_path: object) -> None:
    x = _data(300, 8, np.float32, offset=1e4)
    pca = PCA(3, whiten=True).fit(x)
    arr = da.from_array(x, chunks=(64, 8))
    with raise_if_dask_computes():
        scores = pca.transform(arr)
        back = pca.inverse_transform(scores)
    assert isinstance(scores, da.Array)
    assert scores.dtype == np.float32
    assert scores.chunks[0] == arr.chunks[0]
    centred = x.astype(np.float64) - pca.mean_
    expected = centred @ pca.components_.T / np.sqrt(pca.explained_variance_)
    np.testing.assert_allclose(scores.compute(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(back.compute(), pca.inverse_transform(expected), rtol=1e-6)
    np.testing.assert_allclose(np.var(expected, axis=0, ddof=1), 1.0, rtol=1e-6)


def test_fit_and_transform_from_zarr(tmp_path) -> None:
    x = _data(260, 6, np.float32)
    store = zarr.create_array(str(tmp_path / "emb.zarr"), shape=x.shape, chunks=(50, 6), dtype="f4")
    store[:] = x
    pca = PCA(2).fit(str(tmp_path / "emb.zarr"))
    _assert_matches(pca, x, 1e-4)
    pca.transform(store).to_zarr(str(tmp_path / "scores.zarr"))
    written = zarr.open_array(str(tmp_path / "scores.zarr"), mode="r")[:]
    np.testing.assert_allclose(written, pca.transform(x), rtol=1e-5)


@pytest.mark.parametrize("compressors", [None, "auto"], ids=["raw-chunks", "compressed"])
def test_fit_from_zarr_on_worker_processes(tmp_path, compressors) -> None:
    from distributed import Client, LocalCluster

    x = _data(1030, 6, np.float32, offset=3.0)
    path = str(tmp_path / "emb.zarr")
    zarr.create_array(path, shape=x.shape, chunks=(100, 6), dtype="f4", compressors=compressors)[
        :
    ] = x
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster),
    ):
        pca = PCA(3).fit(path)
    _assert_matches(pca, x, 1e-4)


def test_save_and_load_round_trip(tmp_path) -> None:
    x = _data(200, 7, np.float64)
    pca = PCA(3).fit(x[:120])
    pca.save(tmp_path / "pca.npz")
    loaded = PCA.load(tmp_path / "pca.npz")
    np.testing.assert_array_equal(loaded.components_, pca.components_)
    np.testing.assert_array_equal(loaded.transform(x), pca.transform(x))
    loaded.partial_fit(x[120:])
    _assert_matches(loaded, x, 1e-6)
    pca.save(tmp_path / "small.npz", statistics=False)
    frozen = PCA.load(tmp_path / "small.npz")
    np.testing.assert_allclose(frozen.explained_variance_ratio_, pca.explained_variance_ratio_)
    with pytest.raises(ValueError, match="without statistics"):
        frozen.partial_fit(x)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_names_the_chunk(bad: float) -> None:
    x = _data(300, 4, np.float32)
    x[130, 2] = bad
    with pytest.raises(ValueError, match=r"rows 100:200 \(first at row 130\)"):
        PCA(2).fit(da.from_array(x, chunks=(100, 4)))


def test_unfitted_and_bad_arguments() -> None:
    with pytest.raises(AttributeError, match="not fitted"):
        PCA(2).components_  # noqa: B018
    with pytest.raises(ValueError, match="4 features"):
        PCA(2).fit(_data(20, 5, np.float64)).partial_fit(_data(20, 4, np.float64))


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (2.5, TypeError, r"n_components must be a positive int or None, got 2\.5 of type float"),
        ("3", TypeError, r"got '3' of type str"),
        (True, TypeError, r"got True of type bool"),
        (0, ValueError, r"n_components must be a positive int or None, got 0"),
        (-1, ValueError, r"got -1"),
    ],
)
def test_n_components_is_checked_at_construction(value: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        PCA(value)  # type: ignore[arg-type]  # wrong on purpose


def test_n_components_accepts_numpy_integers(tmp_path) -> None:
    pca = PCA(np.int64(3)).fit(_data(20, 4, np.float64))
    pca.save(tmp_path / "pca.npz")  # the saved parameters are plain JSON
    assert PCA.load(tmp_path / "pca.npz").n_components_ == 3


@pytest.mark.parametrize(
    ("k", "shape", "message"),
    [
        (
            20,
            (100, 8),
            r"n_components=20 must be at most min\(n_samples, n_features\) = "
            r"min\(100, 8\) = 8",
        ),
        (9, (6, 30), r"n_components=9 .* min\(6, 30\) = 6"),
    ],
)
def test_fit_refuses_more_components_than_the_data_has(
    k: int, shape: tuple[int, int], message: str
) -> None:
    x = da.from_array(_data(*shape, np.float64), chunks=(50, -1))
    with raise_if_dask_computes(), pytest.raises(ValueError, match=message):
        PCA(k).fit(x)  # refused before any pass over the data


def test_fit_counts_the_masked_rows() -> None:
    x = _data(100, 8, np.float64)
    mask = np.zeros(100, dtype=bool)
    mask[:4] = True
    with pytest.raises(ValueError, match=r"n_components=5 .* min\(4, 8\) = 4"):
        PCA(5).fit(x, mask=mask)


def test_partial_fit_checks_features_and_reading_checks_rows() -> None:
    with pytest.raises(ValueError, match=r"n_components=9 must be at most n_features=4"):
        PCA(9).partial_fit(_data(20, 4, np.float64))
    small = PCA(5).partial_fit(_data(3, 8, np.float64))  # later batches may add rows
    with pytest.raises(ValueError, match=r"n_components=5 must be between 1 and .*=3"):
        small.components_  # noqa: B018


@pytest.mark.parametrize("dtype", [np.complex128, np.str_])
def test_non_real_input_is_refused(dtype: type) -> None:
    x = _data(50, 4, np.float64).astype(dtype)
    with pytest.raises(TypeError, match=rf"X has dtype {x.dtype}; PCA needs real numbers"):
        PCA(2).fit(x)
    with pytest.raises(TypeError, match="PCA needs real numbers"):
        PCA(2).fit(_data(50, 4, np.float64)).transform(x)


def test_feature_names_out_are_pc1_to_pck() -> None:
    assert PCA(3).fit(_data(50, 6, np.float64)).get_feature_names_out() == ["PC1", "PC2", "PC3"]
    assert PCA().fit(_data(4, 6, np.float64)).get_feature_names_out() == [
        "PC1",
        "PC2",
        "PC3",
        "PC4",
    ]


def _saved(tmp_path, **changes: object) -> object:
    """A saved PCA with some arrays replaced (``None`` drops one)."""
    PCA(3).fit(_data(50, 6, np.float64)).save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as data:
        arrays = {key: data[key] for key in data.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(tmp_path / "bad.npz", **arrays)
    return tmp_path / "bad.npz"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"components": None}, r"bad\.npz' is not a complete PCA file: it misses \['components'\]"),
        ({"mean": None, "n": None}, r"misses \['n', 'mean'\]"),
        (
            {"mean": np.zeros(5)},
            r"m2 has shape \(6, 6\), expected \(5, 5\); components has "
            r"shape \(3, 6\), expected \(k, 5\)",
        ),
        ({"components": np.zeros((2, 6))}, r"components has 2 rows, n_components=3"),
        (
            {"eigenvalues": np.zeros(9)},
            r"eigenvalues has shape \(9,\), expected \(r,\) with 3 "
            r"<= r <= 6",
        ),
        ({"m2": np.zeros((6, 5))}, r"inconsistent PCA arrays: m2 has shape \(6, 5\)"),
        ({"n": np.array([50, 1])}, r"n has shape \(2,\), expected a scalar"),
        ({"mean": np.zeros((1, 6))}, r"mean has shape \(1, 6\), expected \(n_features,\)"),
    ],
)
def test_load_names_what_is_wrong_with_the_file(
    tmp_path, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PCA.load(_saved(tmp_path, **changes))
