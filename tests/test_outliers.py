"""Outlier scores of cells and wells, their figures, and planted synthetic artefacts."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from cellscale.analysis._outliers import (
    outlier_scores,
    plot_outlier_gallery,
    plot_outlier_wells,
    well_outliers,
)
from cellscale.synthetic import default_plate_map, synthetic_plate
from cellscale.synthetic._artefacts import with_artefacts

WELLS = [f"{r}{c:02d}" for r in "AB" for c in range(1, 13)]
SPOILED_WELLS = {("P2", "A05"), ("P3", "B10")}


def _screen(
    cells_per_well: int = 40, d: int = 12, seed: int = 0
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Three plates of 24 wells (four treatments, six replicate wells each) and planted outliers.

    Two wells are artefacts as a whole (far off, their cells more alike than any
    treatment's) and 1 %
    of the other cells are scattered far from everything. Returns the rows, their
    metadata and a mask of the scattered outlier cells.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (4, d))
    rows, frames = [], []
    for plate in ("P1", "P2", "P3"):
        plate_shift = rng.normal(0, 1, d)
        for w, well in enumerate(WELLS):
            values = centres[w % 4] + plate_shift + rng.normal(0, 1, (cells_per_well, d))
            if (plate, well) in SPOILED_WELLS:  # e.g. saturated: alike, far from all others
                values = rng.normal(0, 8, d) + 0.3 * rng.normal(0, 1, (cells_per_well, d))
            rows.append(values)
            frames.append(
                pd.DataFrame({"Metadata_Plate": plate, "Metadata_Well": [well] * cells_per_well})
            )
    data, metadata = np.concatenate(rows), pd.concat(frames, ignore_index=True)
    spoiled = np.array(
        [
            (p, w) in SPOILED_WELLS
            for p, w in zip(metadata.Metadata_Plate, metadata.Metadata_Well, strict=True)
        ]
    )
    scattered = np.zeros(len(data), bool)
    scattered[rng.choice(np.flatnonzero(~spoiled), len(data) // 100, replace=False)] = True
    data[scattered] += rng.normal(0, 6, (scattered.sum(), d))
    return data.astype(np.float32), metadata, scattered


def test_planted_cells_and_wells_rank_at_the_top() -> None:
    data, metadata, scattered = _screen()
    lazy = da.from_array(data, chunks=500)
    scores = outlier_scores(
        lazy, k=5, by=metadata.Metadata_Plate, leave_out=metadata.Metadata_Well, sample=600
    )
    assert isinstance(scores, da.Array) and scores.numblocks == lazy.numblocks[:1]
    values = scores.compute()
    spoiled = metadata.set_index(["Metadata_Plate", "Metadata_Well"]).index.isin(
        list(SPOILED_WELLS)
    )
    top = np.argsort(-values)[: scattered.sum() + spoiled.sum()]
    assert (scattered[top] | spoiled[top]).mean() > 0.9
    wells = well_outliers(values, metadata)
    assert (
        set(wells.loc[wells.outlying, ["Metadata_Plate", "Metadata_Well"]].itertuples(index=False))
        == SPOILED_WELLS
    )
    assert list(wells.columns) == [
        "Metadata_Plate",
        "Metadata_Well",
        "n_cells",
        "median_score",
        "fraction_outlying",
        "robust_z",
        "outlying",
    ]
    assert len(wells) == 72 and (wells.n_cells == 40).all()


def test_a_whole_artefact_well_hides_behind_its_own_cells_unless_left_out() -> None:
    data, metadata, _ = _screen()
    plate = (metadata.Metadata_Plate == "P2").to_numpy()
    rows, cells = data[plate], metadata[plate].reset_index(drop=True)
    hidden = well_outliers(outlier_scores(rows, k=5), cells)
    found = well_outliers(outlier_scores(rows, k=5, leave_out=cells.Metadata_Well), cells)
    assert found.Metadata_Well.iloc[0] == "A05" and found.outlying.sum() == 1
    assert "A05" not in set(hidden.Metadata_Well[hidden.outlying])


def test_scores_equal_a_brute_force_oracle_on_any_chunking() -> None:
    rng = np.random.default_rng(3)
    data = rng.normal(size=(300, 5)).astype(np.float32)
    plates = np.repeat(["a", "b"], 150)
    wells = np.tile(np.repeat(["A01", "A02", "A03"], 50), 2)
    eager = outlier_scores(data, k=4, by=plates, leave_out=wells, sample=1000)
    lazy = outlier_scores(
        da.from_array(data, chunks=37), k=4, by=plates, leave_out=wells, sample=1000
    )
    expected = np.empty(300)
    x = data.astype(np.float64)
    for i in range(300):
        others = (plates == plates[i]) & (wells != wells[i])
        expected[i] = np.sort(np.linalg.norm(x[others] - x[i], axis=1))[3]
    np.testing.assert_allclose(eager, expected, rtol=1e-6)
    np.testing.assert_array_equal(lazy.compute(), eager)
    alone = outlier_scores(data, k=1, sample=1000)
    distances = np.linalg.norm(x[:, None] - x[None], axis=2) + np.diag(np.full(300, np.inf))
    np.testing.assert_allclose(alone, distances.min(axis=1), rtol=1e-6)


def test_the_reference_sample_is_seeded() -> None:
    data, metadata, _ = _screen(cells_per_well=10)
    first = outlier_scores(data, by=metadata.Metadata_Plate, sample=100, seed=1)
    again = outlier_scores(data, by=metadata.Metadata_Plate, sample=100, seed=1)
    other = outlier_scores(data, by=metadata.Metadata_Plate, sample=100, seed=2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_projection_on_principal_components() -> None:
    data, metadata, scattered = _screen(cells_per_well=10)
    scores = outlier_scores(data, k=3, by=metadata.Metadata_Plate, n_components=4)
    assert scores.shape == (len(data),) and np.all(np.isfinite(scores))
    assert np.median(scores[scattered]) > 2 * np.median(scores[~scattered])


def test_errors_name_what_is_wrong() -> None:
    data = np.zeros((20, 3), np.float32)
    with pytest.raises(ValueError, match=r"by has 19 labels for 20 rows"):
        outlier_scores(data, by=np.zeros(19))
    with pytest.raises(
        ValueError,
        match=r"group 0 has 20 reference cells, too few for k=10 .* largest label holds 15",
    ):
        outlier_scores(data, leave_out=np.repeat([0, 1], [15, 5]))
    with pytest.raises(ValueError, match=r"no \['Metadata_Well'\]"):
        well_outliers(np.zeros(20), pd.DataFrame({"Metadata_Plate": ["p"] * 20}))


def test_figures() -> None:
    rng = np.random.default_rng(0)
    crops = rng.uniform(size=(30, 2, 16, 16))
    scores = rng.uniform(size=30)
    fig = plot_outlier_gallery(
        crops, scores, top=10, columns=5, labels=[f"w{i}" for i in range(30)]
    )
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0] == f"{scores.max():.3g}\nw{int(np.argmax(scores))}" and len(titles) == 10
    data, metadata, _ = _screen(cells_per_well=10)
    wells = well_outliers(
        outlier_scores(data, k=3, by=metadata.Metadata_Plate, leave_out=metadata.Metadata_Well),
        metadata,
    )
    heatmap = plot_outlier_wells(wells, plate="P2")
    assert "P2" in heatmap.axes[0].get_title()
    assert heatmap.axes[1].get_ylabel() == "robust_z"
    with pytest.raises(ValueError, match=r"plates \['P1', 'P2', 'P3'\]; choose one"):
        plot_outlier_wells(wells)


@pytest.mark.parametrize("kind", ["debris", "saturated", "blur"])
def test_artefacts_change_only_the_chosen_wells(kind: str) -> None:
    plate = synthetic_plate(wells=4, fields=2, n_z=2, shape=(48, 48), seed=2)
    spoiled, truth = with_artefacts(plate, ["a2"], kind, seed=5)
    before, after = plate.values, spoiled.values
    assert spoiled.dtype == plate.dtype and spoiled.chunks == plate.chunks
    np.testing.assert_array_equal(np.delete(after, 1, axis=1), np.delete(before, 1, axis=1))
    assert not np.array_equal(after[:, 1], before[:, 1])
    assert set(truth.well) == {"A02"} and set(truth.field) == {1, 2} and set(truth.kind) == {kind}
    assert spoiled.attrs["synthetic_artefacts"] == [{"kind": kind, "wells": ["A02"], "seed": 5}]
    np.testing.assert_array_equal(with_artefacts(plate, ["A02"], kind, seed=5)[0].values, after)
    if kind == "debris":
        full = np.iinfo(plate.dtype).max
        for row in truth.itertuples():
            image = spoiled.sel(well="A02", field=row.field).values
            y, x = min(int(row.y), 47), min(int(row.x), 47)
            assert (image[..., y, x] >= 0.85 * full).all()


def test_artefacts_refuse_unknown_wells_and_kinds() -> None:
    plate = synthetic_plate(wells=2, fields=1, n_z=1, shape=(16, 16))
    with pytest.raises(ValueError, match=r"wells \['H12'\] are not wells of plate"):
        with_artefacts(plate, ["H12"])
    with pytest.raises(ValueError, match=r"kind must be one of"):
        with_artefacts(plate, ["A01"], "smudge")


def test_a_saturated_well_is_the_top_outlier_from_measured_features() -> None:
    from cellscale.measurement import measure
    from cellscale.segmentation import segment

    wells = [f"A{c:02d}" for c in range(1, 13)]
    plate_map = default_plate_map(wells, concentrations=(0.01,))
    plate = synthetic_plate(
        wells, fields=2, n_z=1, shape=(96, 96), cells_per_field=12, plate_map=plate_map, seed=1
    )
    spoiled, _ = with_artefacts(plate.isel(z=0), ["A05"], "saturated")
    labels = segment(spoiled, "classical", channel="cytoplasm", nuclei_channel="nuclei")
    table = measure(labels, spoiled).compute()
    features = [c for c in table.columns if not c.startswith("Metadata_") and c != "cell_id"]
    x = table[features].to_numpy(float)
    x = np.nan_to_num((x - np.nanmedian(x, axis=0)) / (np.nanstd(x, axis=0) + 1e-9))
    scores = outlier_scores(x, k=5, leave_out=table.Metadata_Well, n_components=10)
    ranked = well_outliers(scores, table)
    assert ranked.Metadata_Well.iloc[0] == "A05" and ranked.outlying.iloc[0]
