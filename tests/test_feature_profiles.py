"""Well profiles from measured features: pycytominer's operations, a dose series, the run."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

import cellscale
from cellscale.measurement import shape_features
from cellscale.pipeline import ConfigError, load_config, run
from cellscale.pipeline._config import ProfilesConfig
from cellscale.profiles import (
    BLOCKLIST,
    DEFAULT_OPERATIONS,
    aggregate_cells,
    blocklist_features,
    feature_select,
    normalize_profiles,
    profile_wells,
)
from tests.test_pipeline import screen_config

pycytominer = pytest.importorskip("pycytominer")

CONTROLS = "Metadata_treatment == 'DMSO'"
PLATE_MAP = [
    "Metadata_treatment",
    "Metadata_concentration",
    "Metadata_replicate",
    "Metadata_control",
]


@pytest.fixture
def planted() -> pd.DataFrame:
    """Random well profiles with planted constant, rare, correlated, missing and blocked columns."""
    rng = np.random.default_rng(7)
    n = 48
    table = pd.DataFrame(
        {
            "Metadata_Plate": ["P1"] * 24 + ["P2"] * 24,
            "Metadata_Well": [f"W{i:02d}" for i in range(n)],
            "Metadata_treatment": (["DMSO"] * 8 + ["drug"] * 16) * 2,
        }
    )
    for i in range(10):
        table[f"Cells_AreaShape_Feature{i}"] = rng.normal(loc=i, scale=i + 1, size=n)
    table["Cells_AreaShape_Constant"] = 3.0
    table["Cells_AreaShape_NearConstant"] = 1 + rng.normal(size=n) * 1e-5
    table["Cells_AreaShape_Rare"] = np.where(np.arange(n) < n - 1, 0.0, 1.0)
    table["Nuclei_AreaShape_Twin"] = 2 * table["Cells_AreaShape_Feature1"] + rng.normal(size=n) / 50
    table["Nuclei_AreaShape_Opposite"] = -table["Cells_AreaShape_Feature2"] + rng.normal(size=n)
    table["Cytoplasm_Intensity_Missing"] = np.where(
        np.arange(n) % 6 == 0, np.nan, rng.normal(size=n)
    )
    table["Cells_Location_Center_X"] = rng.uniform(0, 100, size=n)
    table["Nuclei_AreaShape_Orientation"] = rng.uniform(-90, 90, size=n)
    table["Nuclei_Correlation_Manders_AGP_DNA"] = rng.normal(size=n)
    return table


def _features(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if not c.startswith("Metadata_")]


@pytest.mark.parametrize("samples", ["all", CONTROLS])
@pytest.mark.parametrize(
    "operation",
    ["variance_threshold", "frequency_threshold", "correlation_threshold", "drop_na_columns"],
)
def test_each_operation_drops_what_pycytominer_drops(
    planted: pd.DataFrame, operation: str, samples: str
) -> None:
    ours = feature_select(planted, operation=operation, samples=samples)
    theirs = pycytominer.feature_select(
        planted, features=_features(planted), operation=operation, samples=samples
    )
    assert list(ours.columns) == list(theirs.columns)
    assert len(ours.columns) < len(planted.columns)  # the planted columns are found
    pd.testing.assert_frame_equal(ours, theirs)


def test_the_planted_columns_go_and_the_others_stay(planted: pd.DataFrame) -> None:
    dropped = set(planted.columns) - set(feature_select(planted).columns)
    twins = {"Cells_AreaShape_Feature1", "Nuclei_AreaShape_Twin"}
    assert len(dropped & twins) == 1  # one of a correlated pair goes
    assert dropped - twins == {
        "Cells_AreaShape_Constant",
        "Cells_AreaShape_NearConstant",
        "Cells_AreaShape_Rare",
        "Cytoplasm_Intensity_Missing",
        "Cells_Location_Center_X",
        "Nuclei_AreaShape_Orientation",
        "Nuclei_Correlation_Manders_AGP_DNA",
    }  # a negative correlation (Nuclei_AreaShape_Opposite) is kept, as in pycytominer


def test_the_default_operations_are_pycytominers_in_order(planted: pd.DataFrame) -> None:
    assert ProfilesConfig().feature_select == DEFAULT_OPERATIONS
    ours = feature_select(planted)
    theirs = pycytominer.feature_select(
        planted,
        features=_features(planted),
        operation=list(DEFAULT_OPERATIONS),
        blocklist=blocklist_features(_features(planted)),
    )
    pd.testing.assert_frame_equal(ours, theirs)


def test_spearman_and_kendall_correlations_follow_pycytominer(planted: pd.DataFrame) -> None:
    for method in ("spearman", "kendall"):
        ours = feature_select(
            planted, operation="correlation_threshold", corr_method=method, corr_threshold=0.5
        )
        theirs = pycytominer.feature_select(
            planted,
            features=_features(planted),
            operation="correlation_threshold",
            corr_method=method,
            corr_threshold=0.5,
        )
        assert list(ours.columns) == list(theirs.columns), method


def test_the_blocklist_covers_pycytominers_and_keeps_biology() -> None:
    from pycytominer.cyto_utils.blocklist import get_blocklist_features

    theirs = get_blocklist_features()
    assert blocklist_features(theirs) == theirs  # pycytominer's default, every name of it
    shape = shape_features(np.ones((4, 4), np.uint32), "cells", 1)
    blocked = set(blocklist_features(shape.columns))
    assert blocked == {
        "Cells_AreaShape_Orientation",
        "Cells_AreaShape_Center_X",
        "Cells_AreaShape_Center_Y",
        "Cells_AreaShape_BoundingBoxMinimum_X",
        "Cells_AreaShape_BoundingBoxMinimum_Y",
        "Cells_AreaShape_BoundingBoxMaximum_X",
        "Cells_AreaShape_BoundingBoxMaximum_Y",
        "Cells_AreaShape_TouchesBorder",
        "Cells_Location_Center_X",
        "Cells_Location_Center_Y",
    }
    others = [
        "Nuclei_Number_Object_Number",
        "Cells_Parent_Nuclei",
        "Cells_Children_Cytoplasm_Count",
        "Cells_AreaShape_EulerNumber",
        "Cells_Neighbors_FirstClosestObjectNumber_Adjacent",
    ]
    assert blocklist_features(others) == others
    kept = ["Cells_Correlation_Manders_AGP_DNA", "Nuclei_Granularity_3_DNA", "Cells_AreaShape_Area"]
    assert blocklist_features(kept, BLOCKLIST) == []


@pytest.mark.parametrize("samples", ["all", CONTROLS])
@pytest.mark.parametrize("method", ["standardize", "robustize", "mad_robustize"])
def test_normalisation_follows_pycytominer(
    planted: pd.DataFrame, method: str, samples: str
) -> None:
    features = _features(planted)
    ours = normalize_profiles(planted, samples=samples, method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        theirs = pycytominer.normalize(planted, features=features, samples=samples, method=method)
    assert list(ours.columns) == list(planted.columns)
    np.testing.assert_allclose(
        ours[features].to_numpy(), theirs[features].to_numpy(), rtol=1e-10, atol=1e-12
    )
    pd.testing.assert_frame_equal(ours.drop(columns=features), planted.drop(columns=features))


def test_profile_wells_normalises_each_plate_against_its_own_controls(
    planted: pd.DataFrame,
) -> None:
    shifted = planted.copy()
    on_p2 = (shifted["Metadata_Plate"] == "P2").to_numpy()
    shifted.loc[on_p2, "Cells_AreaShape_Feature3"] += 100.0  # a plate effect
    profiles = profile_wells(shifted, controls=CONTROLS, operation=())
    for _, plate in profiles.groupby("Metadata_Plate"):
        controls = plate.query(CONTROLS)["Cells_AreaShape_Feature3"]
        np.testing.assert_allclose([controls.mean(), controls.std(ddof=0)], [0, 1], atol=1e-12)
    unshifted = profile_wells(planted, controls=CONTROLS, operation=())
    pd.testing.assert_frame_equal(profiles, unshifted, atol=1e-9)  # the plate effect is gone
    together = profile_wells(shifted, plate=None, controls=CONTROLS, operation=())
    values = together["Cells_AreaShape_Feature3"]
    assert values[on_p2].min() > values[~on_p2].max()  # normalised together, it stays
    with pytest.raises(ValueError, match="selects no wells of plate P2"):
        profile_wells(shifted, controls="Metadata_Well == 'W00'")


def test_bad_operations_and_thresholds_are_named(planted: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"unknown feature selection operations \['variance'\]"):
        feature_select(planted, operation="variance")
    with pytest.raises(ValueError, match="corr_threshold must be between 0 and 1"):
        feature_select(planted, operation="correlation_threshold", corr_threshold=2.0)
    with pytest.raises(ValueError, match="selects no rows"):
        normalize_profiles(planted, samples="Metadata_treatment == 'none'")
    with pytest.raises(ValueError, match="method must be one of"):
        normalize_profiles(planted, method="spherize")


# --- a dose series through the real stages -------------------------------------------


@pytest.fixture(scope="module")
def dose_cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cell table of a synthetic dose series: 16 wells, 2 DMSO and 7 doses twice."""
    from cellscale.synthetic import synthetic_plate

    plate = synthetic_plate(
        wells=16, fields=2, n_z=1, shape=(128, 128), cells_per_field=15, seed=1, name="P"
    )
    projected = cellscale.project(plate, "max")
    labels = cellscale.segment(projected, "classical", channel="cytoplasm", nuclei_channel="nuclei")
    path = tmp_path_factory.mktemp("dose") / "cells.parquet"
    cellscale.write_cells(labels, projected, path, progress=False)
    return path


def _dose_response(wells: pd.DataFrame) -> float:
    """Spearman correlation of the treated wells' distance from the controls with their dose."""
    profiles = profile_wells(wells, controls="Metadata_control == True")
    features = _features(profiles)
    distance = np.sqrt((profiles[features] ** 2).mean(axis=1))
    treated = ~profiles["Metadata_control"].astype(bool)
    return float(spearmanr(profiles["Metadata_concentration"][treated], distance[treated])[0])


@pytest.mark.slow
def test_feature_profiles_order_the_doses_and_a_shuffled_plate_map_does_not(
    dose_cells: Path,
) -> None:
    wells = aggregate_cells(dose_cells)
    assert len(wells) == 16 and wells["Metadata_control"].sum() == 2
    assert _dose_response(wells) > 0.7
    rng = np.random.default_rng(0)
    shuffled = []
    for _ in range(20):
        relabelled = wells.copy()
        relabelled[PLATE_MAP] = wells[PLATE_MAP].to_numpy()[rng.permutation(len(wells))]
        shuffled.append(_dose_response(relabelled))
    assert abs(np.mean(shuffled)) < 0.2
    assert _dose_response(wells) > max(shuffled)


@pytest.mark.slow
@pytest.mark.parametrize("operation", ["median", "mean"])
def test_aggregate_cells_matches_pycytominer_one_well_at_a_time(
    dose_cells: Path, operation: str
) -> None:
    cells = cellscale.read_cells(dose_cells).compute()
    features = _features(cells.drop(columns="cell_id"))
    ours = aggregate_cells(dose_cells, operation=operation, metadata={"batch": 3})
    theirs = pycytominer.aggregate(
        cells,
        strata=["Metadata_Plate", "Metadata_Well"],
        features=features,
        operation=operation,
        compute_object_count=True,
        object_feature="Metadata_ObjectNumber",
    )
    assert list(ours["Metadata_Well"]) == list(theirs["Metadata_Well"])
    np.testing.assert_allclose(ours[features].to_numpy(), theirs[features].to_numpy(), rtol=1e-12)
    assert ours["Metadata_Object_Count"].tolist() == theirs["Metadata_Object_Count"].tolist()
    assert set(ours["Metadata_batch"]) == {3}
    assert "Metadata_ObjectNumber" not in ours.columns  # varies within a well
    by_well = cells.groupby("Metadata_Well")["Metadata_concentration"].first()
    assert ours.set_index("Metadata_Well")["Metadata_concentration"].equals(
        by_well.rename_axis("Metadata_Well")
    )
    with pytest.raises(ValueError, match="would replace the cell table's columns"):
        aggregate_cells(dose_cells, metadata={"Well": "A01"})


@pytest.mark.slow
def test_aggregate_cells_names_a_missing_field_file(dose_cells: Path, tmp_path: Path) -> None:
    copy = tmp_path / "cells.parquet"
    shutil.copytree(dose_cells, copy)
    lost = sorted(copy.glob("A03/*.parquet"))[0]
    lost.unlink()
    with pytest.raises(cellscale.DamagedOutputError, match=lost.name):
        aggregate_cells(copy)


# --- the run ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory: pytest.TempPathFactory, client: Any) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("measured") / "run"
    return out, run(screen_config(out), client=client, progress=False)


@pytest.mark.slow
def test_a_run_without_weights_profiles_the_measured_features(
    measured_run: tuple[Path, Any],
) -> None:
    out, summary = measured_run
    assert "embed" not in [s.name for s in summary.stages]
    assert "pca" not in [s.name for s in summary.stages]
    for plate in ("P1", "P2"):
        assert not (out / "plates" / plate / "embeddings.zarr").exists()
    assert not (out / "profiles" / "pca.npz").exists()
    assert not list(out.glob("plates/*/scores.parquet"))
    wells = pd.read_parquet(out / "profiles" / "wells.parquet")
    metadata = [c for c in wells.columns if c.startswith("Metadata_")]
    for column in ("Plate", "Well", "treatment", "concentration", "control", "batch"):
        assert f"Metadata_{column}" in metadata
    features = _features(wells)
    assert features and wells.columns.tolist() == metadata + features
    assert all(c.split("_")[0] in ("Cells", "Nuclei") for c in features)
    assert not blocklist_features(features) and not any(
        c.startswith("Embedding_") for c in features
    )
    assert len(wells) == 8 and set(wells.groupby("Metadata_Plate")["Metadata_batch"].first()) == {
        1,
        2,
    }
    # each plate's only DMSO well is the centre: a well's value is its median minus the DMSO one
    for plate in ("P1", "P2"):
        cells = cellscale.read_cells(out / "plates" / plate / "cells.parquet").compute()
        medians = cells.groupby("Metadata_Well")[features].median()
        dmso = cells.loc[cells["Metadata_treatment"] == "DMSO", "Metadata_Well"].iloc[0]
        mine = wells[wells["Metadata_Plate"] == plate].set_index("Metadata_Well")[features]
        expected = (medians - medians.loc[dmso]).loc[mine.index]
        np.testing.assert_allclose(mine.to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-9)
    html = (out / "report" / "index.html").read_text()
    assert "Embeddings: none" in html


@pytest.mark.slow
def test_embed_enabled_embeds_and_turning_it_off_drops_the_pca(
    measured_run: tuple[Path, Any], tmp_path: Path, client: Any
) -> None:
    out = tmp_path / "run"
    shutil.copytree(measured_run[0], out)
    summary = run(screen_config(out, embed={"enabled": True}), client=client, progress=False)
    statuses = {s.name: s.status for s in summary.stages}
    assert statuses["embed"] == statuses["pca"] == "ran"
    assert statuses["profiles"] == "skipped: unchanged"  # measured features: no embeddings in
    assert (out / "plates" / "P1" / "embeddings.zarr").is_dir()
    scores = [pd.read_parquet(p) for p in sorted(out.glob("plates/*/scores.parquet"))]
    assert len(scores) == 2 and sum(len(s) for s in scores) == summary.cells
    again = run(screen_config(out), client=client, progress=False)
    assert "pca" not in {s.name for s in again.stages}
    assert not (out / "profiles" / "pca.npz").exists()
    assert not list(out.glob("plates/*/scores.parquet"))
    assert "Embeddings: none" in (out / "report" / "index.html").read_text()


def test_profiles_of_embeddings_need_a_run_that_embeds(tmp_path: Path) -> None:
    config = screen_config(tmp_path / "run", profiles={"features": "embeddings"})
    with pytest.raises(ConfigError, match=r"profiles.features: 'embeddings' needs embeddings"):
        run(config, progress=False)
    assert not (tmp_path / "run").exists()
    assert load_config(screen_config(tmp_path, embed={"weights": "w.pt"})).embed.active
    assert not load_config(
        screen_config(tmp_path, embed={"weights": "w.pt", "enabled": False})
    ).embed.active


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"features": "measure"}, r"profiles.features must be one of .*did you mean 'measured'"),
        ({"aggregate": "medain"}, r"profiles.aggregate must be one of .*did you mean 'median'"),
        ({"normalize": "mad"}, r"profiles.normalize must be one of"),
        (
            {"feature_select": ["blocklist", "corelation_threshold"]},
            r"profiles.feature_select\[1\] .*did you mean 'correlation_threshold'",
        ),
    ],
)
def test_bad_profile_settings_name_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({"output": "o", "plates": [{"name": "P", "synthetic": {}}], "profiles": change})
