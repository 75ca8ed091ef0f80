"""The report's training section: how the run's own network did on what it held out."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from cellscale.report._inputs import TrainingResults
from cellscale.report._page import Panel, Table, Tile, png_name
from cellscale.report._tables import training_table

__all__ = ["training_section"]


def training_section(training: TrainingResults | None, folder: Path) -> tuple[Panel, Table] | None:
    """A confusion matrix per evaluated part and accuracy per batch, and the scores table.

    ``None`` when the run trained no network (the page then has no training section).
    """
    from cellscale.learning._evaluate import plot_confusion, plot_per_batch

    if training is None:
        return None
    tiles = []
    for i, part in enumerate(training.metrics["split"], start=1):
        name = png_name("confusion", i, str(part))
        plt.close(plot_confusion(training.confusion, str(part), normalize=True, path=folder / name))
        caption = f"Predicted against true {training.label} on the {part} part (row shares)"
        tiles.append(Tile(name, f"confusion matrix, {part}", caption))
    if training.per_batch["domain"].nunique() > 1:
        name = png_name("per-batch", 1, "accuracy")
        plt.close(plot_per_batch(training.per_batch, path=folder / name))
        caption = "Balanced accuracy per batch and part, chance marked"
        tiles.append(Tile(name, "balanced accuracy per batch", caption))
    return Panel(tuple(tiles)), training_table(training.metrics)
