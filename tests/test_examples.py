"""The reference workflow in examples/: its embeddings' PCA tells concentrations apart."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

import cellscale

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_seed000_screen_separates_concentrations(tmp_path: Path) -> None:
    example = _example("seed000_screen")
    config = example.screen_config(tmp_path / "run", small=True)
    assert len(config["plates"]) == 4
    with cellscale.start_cluster(
        "local", n_workers=1, gpu_workers=1, processes=False, threads_per_worker=2, quiet=True
    ) as client:
        summary = cellscale.run(config, client=client, progress=False)
    assert summary.cells > 1000
    table = example.per_condition(tmp_path / "run")
    elongated = table["mean_eccentricity"]
    assert elongated.loc[10.0].mean() > elongated.loc[0.0].mean() + 0.15  # the phenotype is there
    accuracy, chance = example.concentration_knn(tmp_path / "run")
    assert 0.1 < chance < 0.2  # eight concentrations, about equally many cells each
    assert accuracy > 1.25 * chance, (accuracy, chance)
    trained, guess = example.held_out_accuracy(tmp_path / "run")
    assert guess == 1 / 16  # 2 time points x 8 concentrations
    assert trained > 1.5 * guess, (trained, guess)
