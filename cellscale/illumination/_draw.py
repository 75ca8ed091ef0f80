"""Figures of illumination models (matplotlib, off-screen with Agg; imported only here)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from cellscale.illumination._model import IlluminationModel

__all__ = ["draw_model"]

_PANEL_INCHES = 3.2


def draw_model(model: IlluminationModel, path: str | os.PathLike[str] | None = None) -> Figure:
    """One row per channel: its flatfield and, if the model has one, its darkfield.

    Each panel is an image of the profile with its own colour bar; the figure is
    written as a PNG to ``path`` when given.
    """
    profiles = [("flatfield", model.flatfield, "viridis")]
    if model.darkfield is not None:
        profiles.append(("darkfield", model.darkfield, "magma"))
    rows, cols = len(model.channels), len(profiles)
    aspect = model.shape[0] / model.shape[1]
    fig = Figure(
        figsize=(_PANEL_INCHES * cols, _PANEL_INCHES * aspect * rows + 0.4),
        dpi=120,
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for row, channel in enumerate(model.channels):
        for col, (what, values, cmap) in enumerate(profiles):
            ax = axes[row, col]
            image = ax.imshow(values[row], cmap=cmap, interpolation="nearest")
            fig.colorbar(image, ax=ax, shrink=0.85)
            ax.set_title(f"{channel} {what}", fontsize=9)
            ax.set_axis_off()
    fig.suptitle(f"illumination model ({model.method})", fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
