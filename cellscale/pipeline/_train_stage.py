"""A run that trains its own network: on every plate's measured cells, then embeds with it.

With ``train.enabled`` the plates are measured without embedding; :func:`train_stage`
trains a classifier of ``embed.model`` (:func:`cellscale.train`, into
``<output>/training/``) on crops cut as ``crops`` says from every plate's images around
its cells (their table's metadata and centres, with the plate's ``metadata`` from the
config, so a label can be a time point given there), evaluates it on the wells and
batches it held out, and then embeds every plate's cells with the trained backbone, whose
weights replace ``embed.weights`` for the rest of the run.

The training folder is resumable like every output: a rerun with the same cells and
settings trains nothing, a killed training resumes from its last epoch, and a change to a
plate's cells (a corrected plate map) trains again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cellscale.pipeline._cell_pass import embed_from_table
from cellscale.pipeline._cell_rows import plate_cells
from cellscale.pipeline._config import PlateConfig
from cellscale.pipeline._plate_stages import PlateImages
from cellscale.pipeline._state import REWRITTEN, RunState, step

__all__ = ["TRAINING", "train_stage"]

#: The training folder, in the run's output folder.
TRAINING = "training"


def train_stage(state: RunState, plates: list[PlateImages]) -> None:
    """Train on every plate's cells, then embed each plate with the trained weights."""
    import cellscale
    from cellscale.learning import PlateInput

    config, crops = state.config.train, state.config.crops
    tables = [plate_cells(state, plate, _is_centre) for plate in state.config.plates]
    sources = [
        PlateInput(  # the cells with their plate's config metadata
            plate.name,
            _images(state, plate, images),
            table,
            state.plate_dir(plate) / "projected.zarr",
        )
        for plate, images, table in zip(state.config.plates, plates, tables, strict=True)
    ]
    cells = sum(len(table) for table in tables)
    folder = state.out / TRAINING
    trained_before = (folder / "model" / "weights.pt").exists()
    with step(state, "train", None, cells, "ran") as current:
        training = cellscale.train(
            sources,  # images: chosen in the sources already
            folder,
            **config.train_arguments(),
            size=crops.size,
            mask=crops.mask,
            model=state.config.embed.model,
            device=state.config.embed.device,
            client=state.client,
            progress=state.progress,
            overwrite=True,  # other cells or settings: the run trains again, as it measures again
        )
        current.status = _status(training.epochs_run, config.epochs, trained_before)
    embed = dataclasses.replace(state.config.embed, enabled=True, weights=str(training.weights))
    state.config = dataclasses.replace(state.config, embed=embed)
    for plate, images in zip(state.config.plates, plates, strict=True):
        embed_from_table(state, plate, images.images, images.labels)


def _status(epochs_run: int, epochs: int, trained_before: bool) -> str:
    """What the stage did, in the words of the other stages."""
    if epochs_run == 0:
        return "finished before, checked"
    if epochs_run < epochs:
        return "resumed"
    return REWRITTEN if trained_before else "ran"


def _is_centre(column: str) -> bool:
    return "_AreaShape_Center_" in column


def _images(state: RunState, plate: PlateConfig, images: PlateImages) -> object:
    """What crops are cut from: the images as measured, or the ingested Z stacks."""
    if state.config.train.images == "raw":
        return Path(state.plate_dir(plate) / "raw.zarr")
    return images.images
