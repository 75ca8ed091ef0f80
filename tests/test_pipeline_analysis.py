"""The run's analysis stage: UMAP, outliers, batch effects and mAP on disk and in the report."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cellscale.pipeline import ConfigError, run
from cellscale.pipeline._config import load_config
from cellscale.pipeline._preflight import preflight
from tests.test_pipeline import embedded_config

pytestmark = pytest.mark.slow


def analysed_config(out: Path, **changes: Any) -> dict[str, Any]:
    """Two tiny embedded plates, one batch each, with every analysis on."""
    config = embedded_config(
        out,
        analysis={
            "enabled": True,
            "batch": "Metadata_batch",
            "outlier_k": 5,
            "page_cells": 60,
        },
    )
    for plate in config["plates"]:
        plate["synthetic"] = {**plate["synthetic"], "wells": 8, "cells_per_field": 12}
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    return config


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, client: Any) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("analysed") / "run"
    return out, run(analysed_config(out), client=client, progress=False)


def test_every_embedded_cell_gets_umap_coordinates_and_an_outlier_score(
    analysed: tuple[Path, Any],
) -> None:
    out, _ = analysed
    for plate in ("P1", "P2"):
        scores = pd.read_parquet(out / "plates" / plate / "scores.parquet")
        cells = pd.read_parquet(out / "plates" / plate / "analysis.parquet")
        assert list(cells["cell_id"]) == list(scores["cell_id"])
        assert {"UMAP1", "UMAP2", "Outlier_Score"} <= set(cells.columns)
        assert cells[["UMAP1", "UMAP2", "Outlier_Score"]].notna().all().all()
        assert cells["Outlier_Score"].std() > 0
    assert (out / "analysis" / "umap.pkl").is_file()


def test_wells_batch_effect_and_map_are_written(analysed: tuple[Path, Any]) -> None:
    out, _ = analysed
    wells = pd.read_parquet(out / "analysis" / "wells.parquet")
    profiles = pd.read_parquet(out / "profiles" / "wells.parquet")
    assert len(wells) == len(profiles) == 16
    assert {"UMAP1", "UMAP2", "Outlier_robust_z", "Outlier_outlying"} <= set(wells.columns)
    batch = pd.read_parquet(out / "analysis" / "batch_effect.parquet")
    assert list(batch["profiles"]) == ["before", "after"]
    assert {"silhouette_batch", "knn_treatment", "dominant"} <= set(batch.columns)
    found = pd.read_parquet(out / "analysis" / "map.parquet")
    assert set(found["kind"]) <= {"activity", "consistency"}
    assert "activity" in set(found["kind"])
    assert "DMSO" not in " ".join(found["condition"].astype(str))  # controls are the reference
    assert found["mean_average_precision"].between(0, 1).all()


def test_the_report_shows_the_analyses_and_links_a_page_without_network(
    analysed: tuple[Path, Any],
) -> None:
    out, _ = analysed
    html = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "Embeddings and profiles, analysed" in html
    assert 'href="explore/index.html"' in html
    for kind in ("umap-cells", "umap-density", "outliers", "outlier-wells", "batch-effect", "map"):
        assert re.search(rf'src="figures/{kind}-\d\d', html), kind
    page = (out / "report" / "explore" / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", page)  # BokehJS is inline
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", page, flags=re.DOTALL)
    assert not re.search(r"(src|href)=\"https?://", markup)
    sheets = list((out / "report" / "explore" / "crops").glob("*.png"))
    assert sheets


def test_a_rerun_redoes_no_analysis(analysed: tuple[Path, Any], client: Any) -> None:
    out, _ = analysed
    again = run(analysed_config(out), client=client, progress=False)
    (analysis,) = [s for s in again.stages if s.name == "analysis"]
    assert analysis.status.startswith(("skipped", "finished before"))


def test_analyses_turned_off_leave_no_stale_results(
    analysed: tuple[Path, Any], client: Any
) -> None:
    out, _ = analysed
    run(analysed_config(out, analysis={"batch": None, "map": False}), client=client, progress=False)
    assert not (out / "analysis" / "batch_effect.parquet").exists()
    assert not (out / "analysis" / "map.parquet").exists()
    html = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "Batch against treatment" not in html and "Mean average precision" not in html
    assert "Embeddings and profiles, analysed" in html  # the rest is still shown


def test_analysis_columns_are_checked_before_a_run(tmp_path: Path) -> None:
    config = load_config(analysed_config(tmp_path / "run", analysis={"batch": "Metadata_bach"}))
    with pytest.raises(ConfigError, match=r"analysis\.batch.*did you mean 'Metadata_batch'"):
        preflight(config)
    with pytest.raises(ConfigError, match=r"analysis\.page_cells must be at least 1"):
        load_config(analysed_config(tmp_path / "run", analysis={"page_cells": 0}))
