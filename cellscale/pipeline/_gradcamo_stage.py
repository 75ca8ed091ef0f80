"""Grad-CAMO in a run: each plate's cells scored by the network the run trained.

Where ``train.enabled`` and ``analysis.gradcamo``, every cell of a plate gets its share
of the trained network's Grad-CAM attention inside its mask
(:func:`cellscale.learning.gradcamo`), from crops cut as the network was trained on them,
at the deepest block whose map is fine enough for the crops (:func:`gradcamo_layer`);
cells without attention are listed under the run's Problems.
"""

from __future__ import annotations

import warnings

import pandas as pd

from cellscale.cells import CELL_ID
from cellscale.pipeline._plate_stages import PlateImages
from cellscale.pipeline._screen import PlateCells
from cellscale.pipeline._state import RunState
from cellscale.pipeline._train_stage import TRAINING

__all__ = ["gradcamo_layer", "plate_gradcamo"]


def plate_gradcamo(state: RunState, plate: PlateCells, images: PlateImages) -> pd.DataFrame:
    """The Grad-CAMO score of every cell of one plate, from the network the run trained."""
    from cellscale.learning import PlateInput
    from cellscale.learning._gradcamo import GradCAMOWarning, gradcamo

    crops = state.config.crops
    projected = state.config.train.images == "projected"
    source = [
        PlateInput(
            plate.name,
            images.images if projected else plate.folder / "raw.zarr",
            plate.folder / "cells.parquet",
            plate.folder / "projected.zarr",
        )
    ]
    with warnings.catch_warnings(record=True) as caught:  # cells without attention
        warnings.simplefilter("always", GradCAMOWarning)
        scored = gradcamo(
            state.out / TRAINING / "model" / "model.pt",
            source,
            layer=gradcamo_layer(state.config.embed.model, crops.size),
            size=crops.size,
            mask=crops.mask,
            images=state.config.train.images,
            device=state.config.embed.device,
            client=state.client,
            progress=state.progress,
        )
    for caught_warning in caught:  # none lost: ours become problems, the others go on
        if issubclass(caught_warning.category, GradCAMOWarning):
            state.problems.append(f"plate {plate.name}: {caught_warning.message}")
        else:
            warnings.warn(caught_warning.message, stacklevel=1)
    names = {"gradcamo": "GradCAMO", "predicted": "GradCAMO_Class"}
    return scored[[CELL_ID, *names]].rename(columns=names)


def gradcamo_layer(model: str, size: int) -> str:
    """The deepest block whose Grad-CAM map has at least 4 positions across a crop.

    The ResNets halve a crop 32 times by their last block (16 times in 3D, whose stem
    keeps the resolution), so on small crops the last block's map is one position.
    """
    strides = {"layer4": 32, "layer3": 16, "layer2": 8, "layer1": 4}
    scale = 2 if model == "r3d_18" else 1
    for block, stride in strides.items():
        if size // (stride // scale) >= 4:
            return f"backbone.{block}"
    return "backbone.layer1"
