"""``cellscale.train`` and ``cellscale train``: a screen's cells to an evaluated classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
import yaml

import cellscale
from cellscale.cli import main
from cellscale.embedding._torch import TorchEmbedder
from cellscale.synthetic import default_plate_map, synthetic_plate, synthetic_screen_plates


@pytest.fixture(scope="module")
def screen(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Path]]:
    """Three measured plates in three batches (batch effect on), 8 wells of a dose series."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("screen")
    plates = synthetic_screen_plates(
        3, 3, wells=8, fields=2, n_z=1, shape=(96, 96), cells_per_field=10.0, name="S"
    )
    return [_measured(plate, root) for plate in plates]


def _measured(plate: xr.DataArray, folder: Path) -> dict[str, Path]:
    """The plate written, segmented and measured in ``folder``, as a training source."""
    store, cells = folder / f"{plate.name}.zarr", folder / f"{plate.name}.parquet"
    cellscale.write_plate(plate, store, progress=False)
    opened = cellscale.open_plate(store)
    labels = cellscale.segment(opened, "classical", channel="cytoplasm", nuclei_channel="nuclei")
    cellscale.write_labels(labels, store, progress=False)
    cellscale.write_cells(cellscale.open_labels(store), opened, cells, progress=False)
    return {"plate": store, "cells": cells}


def _train(screen: list[dict[str, Path]], out: Path, **options: object) -> cellscale.Training:
    settings: dict[str, object] = {
        "label": "control",
        "size": 24,
        "epochs": 1,
        "batch_size": 16,
        "split": {"test": 0.25, "validation": 0.0},
        "progress": False,
        "device": "cpu",
    }
    return cellscale.train(screen, out, **{**settings, **options})  # type: ignore[arg-type]


def test_training_writes_weights_the_embedder_takes_and_an_evaluation_of_held_out_wells(
    screen: list[dict[str, Path]], tmp_path: Path
) -> None:
    training = _train(screen, tmp_path / "t", domain="Batch")
    assert training.classes == ["False", "True"]
    assert training.domains == ["batch1", "batch2", "batch3"]
    assert training.epochs_run == 1 and len(training.history) == 1
    metrics = training.evaluation["metrics"]
    assert metrics["split"].tolist() == ["test"]
    assert (
        0.0 <= metrics["batch_from_features"].iloc[0] <= 1.0
        or metrics["batch_from_features"].isna().all()
    )
    per_well = training.evaluation["per_well"]
    split = cellscale.learning.Split.load(tmp_path / "t" / "split.json")
    tested = {(p, w) for p, w in per_well[["Metadata_Plate", "Metadata_Well"]].itertuples(False)}
    assert tested == set(split.parts["test"])  # every test well evaluated, no training well
    assert not tested & set(split.parts["train"])
    embedder = TorchEmbedder("resnet18", in_channels=2, weights=training.weights, device="cpu")
    assert embedder(torch.zeros(2, 2, 24, 24).numpy()).shape == (2, 512)
    assert (tmp_path / "t" / "evaluation" / "confusion-test.png").is_file()
    assert "accuracy" in str(training)


def test_a_rerun_reuses_split_model_and_evaluation_and_other_settings_are_refused(
    screen: list[dict[str, Path]], tmp_path: Path
) -> None:
    _train(screen, tmp_path / "t")
    split = (tmp_path / "t" / "split.json").stat().st_mtime_ns
    again = _train(screen, tmp_path / "t")
    assert again.epochs_run == 0
    assert (tmp_path / "t" / "split.json").stat().st_mtime_ns == split
    with pytest.raises(cellscale.StaleOutputError, match="overwrite"):
        _train(screen, tmp_path / "t", split={"test": 0.5, "validation": 0.0})
    replaced = _train(screen, tmp_path / "t", split={"test": 0.5}, overwrite=True)
    assert replaced.epochs_run == 1


def test_a_batch_held_out_is_evaluated_apart_and_never_trained_on(
    screen: list[dict[str, Path]], tmp_path: Path
) -> None:
    training = _train(
        screen,
        tmp_path / "t",
        domain="Batch",
        split={"hold_out": {"Batch": ["batch3"]}, "test": 0.0, "validation": 0.0},
    )
    per_batch = training.evaluation["per_batch"]
    assert per_batch["domain"].tolist() == ["batch3"]
    assert per_batch["split"].tolist() == ["held-out"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"label": "treatmnet"}, "did you mean"),
        ({"label": "replicate"}, "one class"),
        ({"split": {"hold_out": {"Batch": ["batch9"]}}}, r"batch9.*do not occur"),
        ({"split": {"tset": 0.2}}, "unknown keys"),
        ({"adversarial": 0.5}, "domain="),
        ({"inputs": "wells"}, "inputs must be one of"),
    ],
)
def test_bad_input_is_an_error_naming_the_fix(
    screen: list[dict[str, Path]], tmp_path: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _train(screen, tmp_path / "t", **options)


def test_whole_fields_train_from_the_plate_map(
    screen: list[dict[str, Path]], tmp_path: Path
) -> None:
    fields = [{"plate": s["plate"]} for s in screen]
    training = _train(fields, tmp_path / "t", inputs="fields", downsample=4, label="control")
    assert training.evaluation["metrics"]["n"].iloc[0] > 0


def test_the_command_trains_from_a_yaml_file(
    screen: list[dict[str, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "source": [{"plate": str(s["plate"]), "cells": str(s["cells"])} for s in screen],
        "out": "training",
        "label": "control",
        "size": 24,
        "epochs": 1,
        "batch_size": 16,
        "device": "cpu",
        "split": {"test": 0.25, "validation": 0.0},
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--no-progress"]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert (tmp_path / "training" / "model" / "weights.pt").is_file()
    metrics = pd.read_parquet(tmp_path / "training" / "evaluation" / "metrics.parquet")
    assert len(metrics) == 1
    path.write_text(yaml.safe_dump({**config, "epoch": 2}))
    assert main(["train", str(path)]) == 1
    assert "did you mean 'epochs'" in capsys.readouterr().err


@pytest.mark.slow
def test_held_out_wells_are_classified_above_chance_and_shuffled_labels_are_not(
    tmp_path: Path,
) -> None:
    """Treated cells (10 µM: wider, elongated, brighter nuclei) against controls, by well."""
    torch.set_num_threads(1)
    plate_map = default_plate_map(16, concentrations=(10.0,))
    rng = np.random.default_rng(0)
    sources, shuffled = [], []
    for i in range(2):
        plate = synthetic_plate(
            16, fields=2, n_z=1, shape=(192, 192), plate_map=plate_map, seed=10 + i, name=f"D{i}"
        )
        sources.append(_measured(plate, tmp_path))
        # the same wells with their labels dealt at random, half of each condition each way
        table = cellscale.read_cells(sources[-1]["cells"]).compute()
        wells = sorted(table["Metadata_Well"].unique())
        flip = dict(zip(wells, rng.permutation([True, False] * (len(wells) // 2)), strict=True))
        table["Metadata_random"] = table["Metadata_Well"].map(flip)
        shuffled.append(table)
    settings = {
        "size": 32,
        "epochs": 4,
        "batch_size": 32,
        "split": {"test": 0.25, "validation": 0.0},
        "progress": False,
        "device": "cpu",
    }
    real = cellscale.train(sources, tmp_path / "real", label="control", **settings)
    accuracy = real.evaluation["metrics"]["balanced_accuracy"].iloc[0]
    assert accuracy > 0.8, real.evaluation["metrics"]
    relabelled = [{**s, "cells": t} for s, t in zip(sources, shuffled, strict=True)]
    random = cellscale.train(relabelled, tmp_path / "random", label="random", **settings)
    chance = random.evaluation["metrics"]["balanced_accuracy"].iloc[0]
    assert chance < 0.7, random.evaluation["metrics"]
    assert accuracy > chance + 0.2
