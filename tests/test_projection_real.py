"""Max projection against the ImageXpress instrument's own projections (real data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cellscale
from cellscale.io import read_tiff_plate

PROJECTION_MIX = "faim_imagexpress_hcs/ImageXpress/Projection-Mix"


@pytest.mark.realdata
def test_max_projection_agrees_with_the_instruments_maximum_projection(real_data: Path) -> None:
    source = real_data / PROJECTION_MIX
    stacks = read_tiff_plate(source, "imagexpress", channels=["w1"])
    instrument = read_tiff_plate(source, "imagexpress-projection", channels=["w1"])
    assert stacks.sizes["z"] == 10
    ours = cellscale.project(stacks, "max").values.astype(np.float64)
    theirs = instrument.isel(z=0).values.astype(np.float64)
    present = stacks.coords["field_present"].values
    assert present.sum() == 3  # one field of the acquisition is held out
    for w, f in np.argwhere(present):
        a, b = ours[0, w, f, 0].ravel(), theirs[0, w, f, 0].ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.9999
        assert (a == b).mean() > 0.7
        assert abs(a.mean() - b.mean()) / b.mean() < 0.03
