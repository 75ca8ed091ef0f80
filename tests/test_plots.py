"""Profile figures render to non-empty PNGs and compute only what they draw."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from matplotlib.axis import Axis
from matplotlib.figure import Figure

from cellscale import plots
from cellscale.profiles import PCA


@pytest.fixture
def scores() -> da.Array:
    rng = np.random.default_rng(0)
    return da.from_array(rng.normal(size=(30_000, 4)).astype(np.float32), chunks=(7_000, 4))


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000


@pytest.mark.parametrize(
    "color",
    [None, np.where(np.arange(30_000) % 3 == 0, "DMSO", "drug"), np.linspace(0, 10, 30_000)],
)
def test_pca_scatter_writes_png(scores: da.Array, color: object, tmp_path) -> None:
    fig = plots.pca_scatter(scores, color, max_points=2_000, path=tmp_path / "s.png")
    assert isinstance(fig, Figure)
    assert _is_png(tmp_path / "s.png")
    ax = fig.axes[0]
    if color is None:
        assert "density" in ax.get_title()
    else:
        assert ax.get_title() == "2,000 of 30,000 points"


def test_explained_variance_writes_png(tmp_path) -> None:
    x = np.random.default_rng(1).normal(size=(200, 12)) * np.linspace(3, 1, 12)
    fig = plots.explained_variance(PCA(8).fit(x), path=tmp_path / "ev.png")
    assert _is_png(tmp_path / "ev.png")
    assert "8 components" in fig.axes[0].get_title()


@pytest.mark.parametrize(("wells", "shape"), [(96, (8, 12)), (384, (16, 24))])
def test_plate_heatmap_layout(wells: int, shape: tuple[int, int], tmp_path) -> None:
    rows, cols = shape
    names = [f"{chr(65 + r)}{c + 1:02d}" for r in range(rows) for c in range(cols)][:wells]
    values = pd.Series(np.arange(len(names), dtype=float), index=names).drop("B03")
    fig = plots.plate_heatmap(values, label="cells", center=0, path=tmp_path / "p.png")
    assert _is_png(tmp_path / "p.png")
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape == shape
    assert grid.mask[1, 2]  # the missing well B03 is blank
    assert grid[0, 1] == 1.0


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def _tick_labels(axis: Axis) -> list[str]:
    """The labels of the major ticks drawn (inside the axis' view)."""
    low, high = sorted(axis.get_view_interval())
    ticks = zip(axis.get_majorticklocs(), axis.get_majorticklabels(), strict=True)
    return [label.get_text() for value, label in ticks if low <= value <= high]


def test_plate_heatmap_labels_fit_their_wells() -> None:
    values = pd.Series(
        {"A01": 2090.0, "A02": 12_345.0, "A03": 123_456.0, "A04": 0.0304, "A05": 3.14159}
    )
    fig = plots.plate_heatmap(values, label="cells")
    assert _texts(fig) == ["2.1k", "12k", "123k", "0.03", "3.1"]
    assert all(len(text) <= 4 for text in _texts(fig))


def test_plate_heatmap_label_defaults_to_the_series_name() -> None:
    wells = pd.DataFrame({"well": ["A01", "B02"], "PC1": [-1.5, 2.0]}).set_index("well")
    fig = plots.plate_heatmap(wells["PC1"], center=0)
    assert fig.axes[1].get_ylabel() == "PC1"


def test_explained_variance_ticks_are_whole_components() -> None:
    fig = plots.explained_variance(np.array([0.5, 0.3, 0.2]))
    fig.canvas.draw()
    assert _tick_labels(fig.axes[0].xaxis) == ["PC1", "PC2", "PC3"]


@pytest.mark.parametrize(
    ("name", "log", "scale"),
    [
        ("Metadata_concentration", None, "symlog"),
        ("dose (µM)", None, "symlog"),
        ("area", None, "linear"),
        ("area", True, "symlog"),
        ("concentration", False, "linear"),
    ],
)
def test_pca_scatter_colours_concentrations_on_a_log_scale(
    name: str, log: bool | None, scale: str
) -> None:
    doses = np.resize([0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0], 400)
    color = pd.Series(doses, name=name)
    scores = np.random.default_rng(2).normal(size=(400, 3))
    fig = plots.pca_scatter(scores, color, log=log)
    bar = fig.axes[1]
    fig.canvas.draw()
    assert bar.get_ylabel() == name
    assert bar.get_yscale() == scale
    if scale == "symlog":
        assert _tick_labels(bar.yaxis) == ["0", "0.01", "0.1", "1", "10"]


def test_plate_heatmap_log_scale_for_positive_concentrations() -> None:
    doses = pd.Series({"A01": 0.01, "A02": 0.1, "A03": 1.0, "A04": 10.0}, name="concentration")
    fig = plots.plate_heatmap(doses)
    bar = fig.axes[1]
    fig.canvas.draw()
    assert bar.get_yscale() == "log"
    assert _tick_labels(bar.yaxis) == ["0.01", "0.1", "1", "10"]


def test_log_scale_refuses_negative_values_and_a_centre() -> None:
    values = pd.Series({"A01": -1.0, "A02": 1.0})
    with pytest.raises(ValueError, match=r"log colour scale needs values >= 0.*from -1 to 1"):
        plots.plate_heatmap(values, log=True)
    with pytest.raises(ValueError, match="either center or log=True"):
        plots.plate_heatmap(values, log=True, center=0)
    fig = plots.plate_heatmap(values.rename("dose"))  # negative doses: linear, no error
    assert fig.axes[1].get_yscale() == "linear"


def _qc_table() -> pd.DataFrame:
    """Two channels of three wells × two fields; A02 has a flagged DNA image."""
    wells, fields, channels = ["A01", "A02", "B01"], [1, 2], ["DNA", "actin"]
    rows = [(w, f, c) for w in wells for f in fields for c in channels]
    table = pd.DataFrame(rows, columns=["well", "field", "channel"])
    table.insert(0, "t", 0.0)
    table["p99"] = np.arange(len(table), dtype=float) * 100
    table["flagged"] = (
        (table["well"] == "A02") & (table["field"] == 2) & (table["channel"] == "DNA")
    )
    return table


def test_qc_heatmap_draws_the_mean_over_fields_and_outlines_flagged_wells(tmp_path) -> None:
    fig = plots.qc_heatmap(_qc_table(), "p99", channel="DNA", path=tmp_path / "qc.png")
    assert _is_png(tmp_path / "qc.png")
    ax = fig.axes[0]
    assert ax.get_title() == "p99 (DNA), mean over fields\noutlined: 1 well(s) with flagged images"
    assert _texts(fig) == ["100", "500", "900"]  # A01: (0 + 200) / 2, A02 and B01 likewise
    assert [patch.get_xy() for patch in ax.patches] == [pytest.approx((0.58, -0.42))]  # A02
    assert fig.axes[1].get_ylabel() == "p99"


def test_qc_heatmap_marks_only_the_drawn_channel_and_reduces_as_asked() -> None:
    fig = plots.qc_heatmap(_qc_table(), "p99", channel="actin", reduce="max")
    assert fig.axes[0].get_title() == "p99 (actin), max over fields"
    assert _texts(fig) == ["300", "700", "1.1k"]
    assert not fig.axes[0].patches
    flags = plots.qc_heatmap(_qc_table(), "flagged", channel="DNA", mark=None)
    assert _texts(flags) == ["0", "0.5", "0"]  # the fraction of flagged fields
    assert not flags.axes[0].patches


def test_qc_heatmap_asks_for_a_channel_and_a_known_column() -> None:
    table = _qc_table()
    with pytest.raises(ValueError, match=r"the table has channel \['DNA', 'actin'\]; choose one"):
        plots.qc_heatmap(table, "p99")
    with pytest.raises(ValueError, match=r"channel 'GFP' is not in the table"):
        plots.qc_heatmap(table, "p99", channel="GFP")
    with pytest.raises(ValueError, match=r"'focus' is not a column of the QC table"):
        plots.qc_heatmap(table, "focus", channel="DNA")
    two_times = pd.concat([table, table.assign(t=3600.0)])
    with pytest.raises(ValueError, match=r"the table has t \[0.0, 3600.0\]; choose one"):
        plots.qc_heatmap(two_times, "p99", channel="DNA")
    assert _texts(plots.qc_heatmap(two_times, "p99", channel="DNA", t=3600.0))[0] == "100"


def test_plate_heatmap_prints_a_number_in_every_well_of_a_384_plate() -> None:
    names = [f"{chr(65 + r)}{c + 1:02d}" for r in range(16) for c in range(24)]
    values = pd.Series(np.linspace(10, 4000, len(names)), index=names)
    fig = plots.plate_heatmap(values, label="cells")
    texts = fig.axes[0].texts
    assert len(texts) == 384
    assert texts[0].get_text() == "10" and texts[-1].get_text() == "4k"
    assert all(len(t.get_text()) <= 4 and t.get_fontsize() < 6.5 for t in texts)


DOSES = (0.1, 1.0, 10.0)


def _wells(replicates: int = 3, seed: int = 0) -> pd.DataFrame:
    """Wells of two drugs at three doses and DMSO controls; the dose drives two features."""
    rng = np.random.default_rng(seed)
    rows = [
        (treatment, dose)
        for treatment, doses in (("DMSO", (0.0,)), ("drug_a", DOSES), ("drug_b", DOSES))
        for dose in doses
        for _ in range(replicates)
    ]
    wells = pd.DataFrame(rows, columns=["Metadata_treatment", "Metadata_concentration"])
    n = len(wells)
    wells.insert(0, "Metadata_Plate", "P1")
    wells.insert(1, "Metadata_Well", [f"{chr(65 + i // 12)}{i % 12 + 1:02d}" for i in range(n)])
    wells["Metadata_control"] = wells["Metadata_treatment"] == "DMSO"
    wells["Metadata_batch"] = 1
    effect = np.log10(wells["Metadata_concentration"].clip(lower=0.01)).to_numpy() + 2
    sign = np.where(wells["Metadata_treatment"] == "drug_b", -1.0, 1.0)
    wells["Cells_AreaShape_Area"] = 300 + 60 * effect + rng.normal(0, 5, n)
    wells["Nuclei_Intensity_MeanIntensity_DNA"] = (
        0.2 + 0.05 * sign * effect + rng.normal(0, 0.005, n)
    )
    for k in range(6):
        wells[f"Embedding_{k}"] = rng.normal(size=n)
    return wells


def test_well_pca_colours_treatments_and_sizes_doses(tmp_path) -> None:
    fig = plots.well_pca(_wells(), path=tmp_path / "w.png")
    assert _is_png(tmp_path / "w.png")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["drug_a", "drug_b", "DMSO"]
    assert labels[3:] == ["concentration 0", "concentration 10"]
    assert ax.get_title() == "21 wells, 8 features"
    sizes = np.concatenate([c.get_sizes() for c in ax.collections if len(c.get_offsets())])
    assert sizes.min() < sizes.max()  # doses size the wells
    assert ax.get_xlabel().startswith("PC1 (")


def test_dose_response_draws_the_dose_driven_feature_as_a_monotone_curve(tmp_path) -> None:
    fig = plots.dose_response(_wells(), top=2, path=tmp_path / "d.png")
    assert _is_png(tmp_path / "d.png")
    assert [ax.get_title() for ax in fig.axes] == ["drug_a", "drug_b"]  # DMSO has one dose
    for ax, direction in zip(fig.axes, (1, -1), strict=True):
        assert ax.get_xscale() == "log"
        curves = {c.get_label(): c.lines[0] for c in ax.containers}
        assert set(curves) == {"Cells_AreaShape_Area", "Nuclei_Intensity_MeanIntensity_DNA"}
        line = curves["Nuclei_Intensity_MeanIntensity_DNA"]
        assert list(line.get_xdata()) == list(DOSES)
        assert (np.diff(line.get_ydata()) * direction > 0).all()


def test_dose_response_needs_two_concentrations_and_its_columns() -> None:
    wells = _wells()
    one_dose = wells[wells["Metadata_concentration"].isin([0.0, 1.0])]
    with pytest.raises(ValueError, match="no Metadata_treatment has wells at two or more"):
        plots.dose_response(one_dose)
    with pytest.raises(ValueError, match="has no Metadata_concentration column"):
        plots.dose_response(wells.drop(columns="Metadata_concentration"))
    features = ["Metadata_Plate", "Metadata_treatment", "Metadata_concentration", "Embedding_0"]
    with pytest.raises(ValueError, match="1 usable feature column"):
        plots.dose_response(wells[features])


def _median_of(fig: Figure, name: str) -> float:
    (line,) = [line for line in fig.axes[0].lines if line.get_label().startswith(name)]
    return float(line.get_xdata()[0])


def test_replicate_correlation_replicates_correlate_more_than_other_pairs(tmp_path) -> None:
    fig = plots.replicate_correlation(_wells(replicates=4), path=tmp_path / "r.png")
    assert _is_png(tmp_path / "r.png")
    # 7 conditions of 4 wells: 7 * 6 replicate pairs of the 378
    assert fig.axes[0].get_title().startswith("42 replicate pairs (same treatment & concentration)")
    replicates, others = _median_of(fig, "replicates"), _median_of(fig, "others")
    assert replicates > others
    assert f"replicates (median {replicates:.2f})" in [
        t.get_text() for t in fig.axes[0].get_legend().get_texts()
    ]


def test_replicate_correlation_samples_pairs_of_a_large_table() -> None:
    fig = plots.replicate_correlation(_wells(replicates=4), max_pairs=30)
    assert fig.axes[0].get_title().startswith("30 replicate pairs")


def test_replicate_correlation_needs_replicates() -> None:
    wells = _wells(replicates=1)
    with pytest.raises(ValueError, match="no replicate pairs of wells"):
        plots.replicate_correlation(wells)
    with pytest.raises(ValueError, match="has no Metadata_treatment column"):
        plots.replicate_correlation(wells.drop(columns="Metadata_treatment"))
