"""A run that trains its own network before embedding (``train:``), evaluated on held-out wells."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import zarr

import cellscale
from cellscale._files import file_sha256
from cellscale.pipeline import ConfigError


def _config(out: Path, **train: Any) -> dict[str, Any]:
    plates = [
        {
            "name": f"P{i}",
            "synthetic": {
                "wells": 8,
                "fields": 2,
                "planes": 1,
                "size": 128,
                "cells_per_field": 12.0,
                "seed": i,
            },
        }
        for i in (1, 2)
    ]
    return {
        "output": str(out),
        "plates": plates,
        "segment": {"channel": "cytoplasm", "nuclei_channel": "nuclei"},
        "crops": {"size": 32, "mask": "soft"},
        "embed": {"model": "resnet18", "device": "cpu", "batch_size": 32},
        "train": {
            "enabled": True,
            "label": "treatment",
            "epochs": 2,
            "batch_size": 32,
            "split": {"test": 0.25, "validation": 0.0},
            **train,
        },
        "pca": {"n_components": 4},
    }


@pytest.mark.slow
def test_a_run_trains_then_embeds_with_its_own_weights_and_resumes_without_training(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    config = _config(out)
    config["analysis"] = {"enabled": True, "umap": False, "outliers": False, "map": False}
    summary = cellscale.run(config, progress=False)
    weights = out / "training" / "model" / "weights.pt"
    assert weights.is_file()
    stages = {s.name: s for s in summary.stages}
    assert stages["train"].status == "ran"
    for plate in ("P1", "P2"):
        embeddings = zarr.open_array(str(out / "plates" / plate / "embeddings.zarr"), mode="r")
        made_with = embeddings.attrs["model"]["weights"]
        assert made_with == {"file": str(weights), "sha256": file_sha256(weights)}
        assert (out / "plates" / plate / "scores.parquet").is_file()
    metrics = pd.read_parquet(out / "training" / "evaluation" / "metrics.parquet")
    assert metrics["split"].tolist() == ["test"] and metrics["n"].iloc[0] > 0
    split = json.loads((out / "training" / "split.json").read_text())
    assert split  # the wells of each part, reused by the rerun
    report = (out / "report" / "index.html").read_text()
    assert "trained by the run to predict" in report and "<h2>Training</h2>" in report
    for plate in ("P1", "P2"):  # Grad-CAMO of the trained network, one score per embedded cell
        scores = pd.read_parquet(out / "plates" / plate / "analysis.parquet")["GradCAMO"]
        assert scores.notna().mean() > 0.5  # NaN: no attention at all, named under Problems
        assert scores.dropna().between(0, 1).all() and scores.std() > 0
    assert "Grad-CAMO" in report and "network&#39;s attention inside the cell" in report

    again = cellscale.run(config, progress=False)
    assert {s.name: s for s in again.stages}["train"].status == "finished before, checked"
    assert {s.name: s for s in again.stages}["embed"].status == "finished before, checked"


def test_a_misspelt_label_is_refused_before_anything_runs(tmp_path: Path) -> None:
    config = _config(tmp_path / "run", label="treatmnet")
    with pytest.raises(ConfigError, match=r"train.label\[0\].*did you mean 'Metadata_treatment'"):
        cellscale.run(config, progress=False)
    assert not (tmp_path / "run" / "plates").exists()


def test_adversarial_training_needs_a_batch_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.adversarial needs train\.domain"):
        cellscale.load_config(_config(tmp_path / "run", adversarial=0.5))
