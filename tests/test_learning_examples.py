"""The training examples in examples/ (seeds 001-003) at their smallest size: they learn."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import cellscale

torch = pytest.importorskip("torch")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _written(training: object) -> None:
    """The training folder holds the weights, the model, the split and the evaluation."""
    folder = training.folder  # type: ignore[attr-defined]
    assert training.weights.is_file() and training.model.is_file()  # type: ignore[attr-defined]
    assert (folder / "split.json").is_file()
    assert (folder / "evaluation" / "metrics.parquet").is_file()


@pytest.mark.slow
def test_seed001_both_models_classify_an_unseen_batch(tmp_path: Path) -> None:
    example = _example("seed001_batch_effect")
    source = example.write_screen(tmp_path / "plates", small=True)
    assert len(source) == len(example.BATCHES)
    trainings = example.train_models(source, tmp_path / "models", small=True)
    assert set(trainings) == set(example.MODELS)
    for training in trainings.values():
        _written(training)
        assert training.domains == list(example.BATCHES)
    crop = example.screen_design(small=True)["crop"]
    table = example.compare(trainings, source, crop=crop)
    assert table.notna().all().all(), table
    assert (table["chance"] == 0.5).all() and (table["unseen_cells"] > 300).all()
    assert (table["balanced_accuracy"] > 0.75).all(), table  # chance 0.5; about 0.95 seen
    assert table["batch_from_features"].between(0.0, 1.0).all()
    assert math.isclose(table["batch_chance"].iloc[0], 1 / 3)


@pytest.mark.slow
def test_seed002_a_3d_network_classifies_held_out_wells(tmp_path: Path) -> None:
    example = _example("seed002_zstack_3d")
    source = example.write_screen(tmp_path / "plates", small=True)
    training = example.train_3d(source, tmp_path / "model", small=True)
    _written(training)
    test = training.evaluation["metrics"].set_index("split").loc["test"]
    assert test["n"] > 50 and test["n_wells"] >= 4
    assert test["balanced_accuracy"] > 0.7, test  # chance 0.5; about 0.9 seen


@pytest.mark.slow
def test_seed003_six_channel_sites_classify_an_unseen_batch(tmp_path: Path) -> None:
    example = _example("seed003_whole_sites")
    source = example.write_screen(tmp_path / "plates", small=True)
    import cellscale

    plate = cellscale.open_plate(source[0]["plate"])
    assert list(plate.coords["c"].values) == list(example.CHANNELS)
    training = example.train_sites(source, tmp_path / "model", small=True)
    _written(training)
    unseen = training.evaluation["metrics"].set_index("split").loc["held-out"]
    assert unseen["n"] == 64 and unseen["chance"] == 0.5
    assert unseen["balanced_accuracy"] > 0.7, unseen  # about 0.9 seen


def test_seed004_spoils_the_wells_it_names_and_its_run_config_passes_preflight(
    tmp_path: Path,
) -> None:
    """The screen and config of seed 004's flow; the flow itself is tests/test_pipeline_analysis."""
    from cellscale.pipeline import load_config
    from cellscale.pipeline._preflight import preflight

    example = _example("seed004_outliers")
    stores, spoiled = example.write_plates(tmp_path / "plates", small=True)
    assert set(stores) == set(example.SPOILED) and len(spoiled) == 4
    for name, store in stores.items():  # dust and over-exposure reach 90 % of full scale
        plate = cellscale.open_plate(store)
        brightest = plate.max(["t", "field", "z", "c", "y", "x"]).to_series()
        full = np.iinfo(plate.dtype).max
        wells = {w for p, w in spoiled if p == name}
        assert set(brightest[brightest >= 0.85 * full].index.astype(str)) == wells
    config = load_config(example.run_config(stores, tmp_path / "run", small=True))
    assert config.analysis.enabled and config.train.enabled
    preflight(config)
