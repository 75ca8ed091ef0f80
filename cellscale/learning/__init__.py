"""Training models on cells: datasets over a screen, leak-free splits, training, evaluation.

:func:`train` is the whole flow: it reads a run's (or your plates') cell tables, cuts
crops on the fly (2D, or 3D from Z stacks) or takes whole fields, splits wells (and
batches) so that none leaks between training and testing, trains a classifier on an
N-channel ResNet (with an optional autoencoder head and a domain-adversarial head against
a batch column) and evaluates it on what it held out. Its weights embed unchanged
(``cellscale.embed(..., weights=...)``, a run's ``embed.weights``).

The pieces work on their own: :class:`CellDataset`, :class:`CropDataset` and
:class:`FieldDataset` (torch Datasets of ``(image, label, domain)`` that read Zarr in
DataLoader workers), :class:`ChunkShuffleSampler` and :func:`balanced_sampler`,
:class:`Augment`, :func:`split_by_well`, :func:`split_by_group` and :class:`Split`,
:func:`build_model`, :func:`fit` (checkpointed every epoch, resumed exactly),
:func:`predict`, :func:`evaluate` and :func:`domain_predictability`. :func:`gradcamo`
scores where a trained classifier looks: each cell's share of its Grad-CAM attention inside
the cell's mask (:func:`grad_cam`, :func:`plot_gradcamo_gallery`). torch is imported only
when one of them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cellscale.learning._api import Training as Training
    from cellscale.learning._api import train as train
    from cellscale.learning._augment import Augment as Augment
    from cellscale.learning._dataset import CellDataset as CellDataset
    from cellscale.learning._dataset import ChunkShuffleSampler as ChunkShuffleSampler
    from cellscale.learning._dataset import CropDataset as CropDataset
    from cellscale.learning._dataset import FieldDataset as FieldDataset
    from cellscale.learning._dataset import balanced_sampler as balanced_sampler
    from cellscale.learning._evaluate import EvaluationResult as EvaluationResult
    from cellscale.learning._evaluate import domain_predictability as domain_predictability
    from cellscale.learning._evaluate import evaluate as evaluate
    from cellscale.learning._gradcamo import GradCAMOWarning as GradCAMOWarning
    from cellscale.learning._gradcamo import grad_cam as grad_cam
    from cellscale.learning._gradcamo import gradcamo as gradcamo
    from cellscale.learning._gradcamo import plot_gradcamo_gallery as plot_gradcamo_gallery
    from cellscale.learning._models import build_model as build_model
    from cellscale.learning._screen import ScreenDataset as ScreenDataset
    from cellscale.learning._sources import PlateInput as PlateInput
    from cellscale.learning._splits import Split as Split
    from cellscale.learning._splits import split_by_group as split_by_group
    from cellscale.learning._splits import split_by_well as split_by_well
    from cellscale.learning._train import TrainResult as TrainResult
    from cellscale.learning._train import fit as fit
    from cellscale.learning._train import predict as predict

_EXPORTS: dict[str, str] = {
    "train": "_api",
    "Training": "_api",
    "Augment": "_augment",
    "CellDataset": "_dataset",
    "ChunkShuffleSampler": "_dataset",
    "CropDataset": "_dataset",
    "FieldDataset": "_dataset",
    "balanced_sampler": "_dataset",
    "EvaluationResult": "_evaluate",
    "domain_predictability": "_evaluate",
    "evaluate": "_evaluate",
    "GradCAMOWarning": "_gradcamo",
    "grad_cam": "_gradcamo",
    "gradcamo": "_gradcamo",
    "plot_gradcamo_gallery": "_gradcamo",
    "build_model": "_models",
    "ScreenDataset": "_screen",
    "PlateInput": "_sources",
    "Split": "_splits",
    "split_by_group": "_splits",
    "split_by_well": "_splits",
    "TrainResult": "_train",
    "fit": "_train",
    "predict": "_train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cellscale.learning.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cellscale.learning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
