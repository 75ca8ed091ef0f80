"""Profile figures render to non-empty PNGs and compute only what they draw."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
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
