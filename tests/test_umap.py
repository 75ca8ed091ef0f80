"""UMAP fitted on a seeded subsample, lazy chunked transform, sphering on controls, figures.

UMAP's numba code compiles on first use (about 30 s here), so the tests share one small
fit and keep their other fits small; fits under 4096 rows use exact neighbours.
"""

from __future__ import annotations

import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.manifold import trustworthiness
from sklearn.neighbors import NearestNeighbors

from cellscale.analysis._umap import UmapModel, fit_umap, plot_density, plot_umap

pytest.importorskip("umap")
pytestmark = pytest.mark.slow  # numba compiles UMAP on first use: about 35 s of CPU

FAST = {"n_epochs": 60}


def _blobs(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(0, 4, (classes, d))
    return (centres[labels] + rng.normal(0, 1, (n, d))).astype(np.float32), labels


def _fit(*args: Any, **kwargs: Any) -> UmapModel:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"umap|sklearn")
        return fit_umap(*args, **kwargs)


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray, UmapModel]:
    data, labels = _blobs(900, 10, 4, seed=0)
    return data, labels, _fit(da.from_array(data, chunks=200), sample=400, seed=0, **FAST)


def _same_label_share(
    points: np.ndarray, reference: np.ndarray, labels: np.ndarray, mine: np.ndarray
) -> float:
    """Mean share of each point's 10 nearest reference points that carry its label."""
    _, nearest = NearestNeighbors(n_neighbors=10).fit(reference).kneighbors(points)
    return float((labels[nearest] == mine[:, None]).mean())


def test_held_out_rows_land_near_their_neighbours(
    blobs: tuple[np.ndarray, np.ndarray, UmapModel],
) -> None:
    data, labels, model = blobs
    assert len(model.sample_rows) == 400 and model.embedding.shape == (400, 2)
    held_out = np.setdiff1d(np.arange(len(data)), model.sample_rows)
    coords = model.transform(da.from_array(data[held_out], chunks=250)).compute()
    assert coords.shape == (500, 2) and coords.dtype == np.float32
    trained = labels[model.sample_rows]
    input_space = _same_label_share(
        data[held_out], data[model.sample_rows], trained, labels[held_out]
    )
    umap_space = _same_label_share(coords, model.embedding, trained, labels[held_out])
    assert umap_space > 0.95 * input_space
    assert trustworthiness(data[held_out], coords, n_neighbors=5) > 0.9


def test_transform_is_lazy_one_task_per_chunk_and_ships_the_model_once(
    blobs: tuple[np.ndarray, np.ndarray, UmapModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _, model = blobs
    calls: list[int] = []
    transform = model.reducer.transform

    def counted(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        return transform(rows)

    monkeypatch.setattr(model.reducer, "transform", counted)
    with dask.config.set(scheduler=_refuse_compute):
        coords = model.transform(da.from_array(data[:300], chunks=70))
    assert coords.chunks == ((70, 70, 70, 70, 20), (2,))
    assert sum(str(key).startswith("umap-model-") for key in dict(coords.dask)) == 1
    assert not calls
    first = coords.compute(scheduler="sync")
    assert sorted(calls) == [20, 70, 70, 70, 70]
    np.testing.assert_array_equal(coords.compute(scheduler="threads"), first)
    eager = model.transform(data[:300], rows_per_task=70)
    assert isinstance(eager, np.ndarray)
    np.testing.assert_array_equal(eager, first)


def _refuse_compute(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("a dask graph was computed while building the transform")


def test_a_seed_gives_the_same_model_and_coordinates(
    blobs: tuple[np.ndarray, np.ndarray, UmapModel],
) -> None:
    data, _, model = blobs
    again = _fit(data, sample=400, seed=0, **FAST)
    np.testing.assert_array_equal(again.sample_rows, model.sample_rows)
    np.testing.assert_array_equal(again.embedding, model.embedding)
    np.testing.assert_array_equal(again.transform(data[:100]), model.transform(data[:100]))
    other = _fit(data, sample=400, seed=1, **FAST)
    assert not np.array_equal(other.sample_rows, model.sample_rows)


def test_save_and_load_round_trip(
    blobs: tuple[np.ndarray, np.ndarray, UmapModel], tmp_path: Path
) -> None:
    data, _, model = blobs
    model.save(tmp_path / "umap.pkl")
    loaded = UmapModel.load(tmp_path / "umap.pkl")
    assert loaded.token == model.token and not list(tmp_path.glob(".*partial*"))
    np.testing.assert_array_equal(loaded.transform(data[:50]), model.transform(data[:50]))
    (tmp_path / "other.pkl").write_bytes(pickle.dumps({"weights": 1}))
    with pytest.raises(
        ValueError, match=r"other.pkl' is not a UMAP model written by UmapModel.save"
    ):
        UmapModel.load(tmp_path / "other.pkl")
    with pytest.raises(ValueError, match=r"data has 3 columns; the UMAP model was fitted on 10"):
        model.transform(data[:, :3])


def test_sphering_on_controls_lets_the_treatments_rather_than_the_nuisance_shape_the_map() -> None:
    rng = np.random.default_rng(4)
    n = 600
    treatment = rng.integers(0, 3, n)
    data = rng.normal(0, 0.5, (n, 8))
    data[:, :4] += rng.normal(0, 5.0, (n, 4))  # nuisance: large, in every cell, controls too
    data[:, 4:] += rng.normal(0, 1.5, (3, 4))[treatment]  # treatments: smaller, dims 4-7
    metadata = pd.DataFrame({"Metadata_Treatment": np.where(treatment == 0, "DMSO", "drug")})
    plain = _fit(data, sample=n, seed=0, **FAST)
    sphered = _fit(
        data,
        sample=n,
        seed=0,
        sphere=True,
        controls="Metadata_Treatment == 'DMSO'",
        metadata=metadata,
        **FAST,
    )
    assert plain.spherizer is None and sphered.spherizer is not None
    assert sphered.spherizer.n_samples_fit_ == int((treatment == 0).sum())
    assert _same_label_share(plain.embedding, plain.embedding, treatment, treatment) < 0.7
    assert _same_label_share(sphered.embedding, sphered.embedding, treatment, treatment) > 0.9
    with pytest.raises(
        ValueError, match=r"controls are only used to fit the sphering; pass sphere=True"
    ):
        fit_umap(data, controls=np.ones(n, bool))


def test_figures_colour_by_any_column_and_refuse_constant_ones(
    blobs: tuple[np.ndarray, np.ndarray, UmapModel],
) -> None:
    _, labels, model = blobs
    cells = pd.DataFrame(
        {
            "Metadata_Treatment": np.array(["a", "b", "c", "d"])[labels[model.sample_rows]],
            "Metadata_Concentration": np.linspace(0, 10, 400),
            "Metadata_Plate": "P1",
        }
    )
    categorical = plot_umap(model.embedding, cells, "Metadata_Treatment")
    legend = categorical.axes[0].get_legend()
    assert legend is not None
    assert sorted(t.get_text() for t in legend.get_texts()) == ["a", "b", "c", "d"]
    numeric = plot_umap(
        da.from_array(model.embedding, chunks=100), cells, "Metadata_Concentration", max_points=150
    )
    assert numeric.axes[1].get_ylabel() == "Metadata_Concentration"
    assert numeric.axes[0].get_title() == "150 of 400 cells by Metadata_Concentration"
    assert "uncoloured" in plot_umap(model.embedding).axes[0].get_title()
    with pytest.raises(
        ValueError, match=r"'Metadata_Plate' holds the single value 'P1' in all 400"
    ):
        plot_umap(model.embedding, cells, "Metadata_Plate")
    with pytest.raises(ValueError, match=r"did you mean 'Metadata_Treatment'\?"):
        plot_umap(model.embedding, cells, "Metadata_Treatmnt")
    density = plot_density(model.embedding, bins=30)
    assert isinstance(density, Figure) and density.axes[1].get_ylabel() == "cells per bin"


def test_a_missing_umap_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(ImportError, match=r'pip install "cellscale\[analysis\]"'):
        fit_umap(np.zeros((50, 3), np.float32))
