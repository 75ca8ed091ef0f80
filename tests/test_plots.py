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
