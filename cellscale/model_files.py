"""Pretrained model files on this machine: which are there, where they go, how to fetch one.

cellscale never downloads at run time (a cluster's compute nodes often have no internet,
and a surprise download of a gigabyte is not a default). The models it can use are:

- **cellpose** models by name (``cpsam``, ``cyto3`` …), in cellpose's model folder
  (``$CELLPOSE_LOCAL_MODELS_PATH``, else ``~/.cellpose/models``);
- **ImageNet** weights of the embedding architectures (``embed.weights: imagenet``), in
  torch's hub cache (``$TORCH_HOME/hub/checkpoints``, else ``~/.cache/torch/...``).

:func:`local_models` lists them with where each is or would be; :func:`fetch_model`
downloads one with its own library's downloader where there is internet, and otherwise
says which file to fetch elsewhere and where to copy it. ``cellscale models`` is the
command line of both.

Examples
--------
>>> sorted({m.kind for m in local_models()})
['cellpose', 'imagenet']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModelFile", "fetch_model", "local_models"]


@dataclass(frozen=True)
class ModelFile:
    """One pretrained model cellscale can use, and whether its file is on this machine."""

    kind: str  # "cellpose" or "imagenet"
    name: str  # the cellpose model name, or the embedding architecture
    path: Path  # where the file is, or where it must be
    url: str | None  # where it is downloaded from (None: the library decides)

    @property
    def available(self) -> bool:
        """Whether the file is on this machine."""
        return self.path.is_file()

    def __str__(self) -> str:
        state = "available" if self.available else "missing  "
        return f"{self.kind:<9} {self.name:<12} {state} {self.path}"


def local_models() -> list[ModelFile]:
    """Every named model cellscale can use, with where its file is or must be.

    Cellpose names are those of the installed cellpose version; without cellpose or
    torchvision installed, their models are not listed.
    """
    return [*_cellpose_models(), *_imagenet_models()]


def fetch_model(name: str) -> ModelFile:
    """Download the named model (a cellpose model or an architecture's ImageNet weights).

    Raises
    ------
    ValueError
        If no model has that name.
    OSError
        If it cannot be downloaded (no internet); the message says which file to fetch
        where there is internet, and where to copy it.
    """
    found = {m.name: m for m in local_models()}
    if name not in found:
        raise ValueError(f"no model named {name!r}; cellscale knows {sorted(found)}")
    model = found[name]
    if model.available:
        return model
    try:
        if model.kind == "cellpose":
            from cellpose import models

            models.cache_model_path(name)
        else:
            import torch

            assert model.url is not None
            torch.hub.load_state_dict_from_url(model.url, progress=True)
    except OSError as err:
        source = f"it downloads {model.url}" if model.url else "cellpose downloads it"
        raise OSError(
            f"could not download {model.kind} model {name!r} ({err}). Where there is internet, "
            f"run `cellscale models --fetch {name}` ({source}) and copy the file to {model.path}"
        ) from err
    return model


def _cellpose_models() -> list[ModelFile]:
    try:
        from cellscale.segmentation._cellpose import builtin_models, model_folder
    except ImportError:  # pragma: no cover - cellpose is an optional dependency
        return []
    folder = model_folder()
    return [ModelFile("cellpose", name, folder / name, None) for name in builtin_models()]


def _imagenet_models() -> list[ModelFile]:
    try:
        from cellscale.embedding._torch import ARCHITECTURES, imagenet_weights
    except ImportError:  # pragma: no cover - torch is an optional dependency
        return []
    models = []
    for arch in ARCHITECTURES:
        url, path = imagenet_weights(arch)
        models.append(ModelFile("imagenet", arch, path, url))
    return models
