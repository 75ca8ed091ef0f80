"""Cellpose on GPU-tagged workers, with the tiles of several fields pooled into each network call.

Cellpose's own ``eval`` runs a list of images one image at a time, so small fields leave a
GPU mostly idle. :class:`CellposeSegmenter` does cellpose's steps itself, with cellpose's
own functions: it normalises each field, stacks the fields of a task into one array so
``cellpose.core.run_net`` tiles them all and fills every network batch with tiles from
several fields, then runs cellpose's dynamics (``resize_and_compute_masks``) per field.

The network is loaded once per worker process (a per-process cache keyed by weights file,
device and precision) from a local file or cellpose's model folder; nothing is downloaded
unless ``allow_download=True``. torch and cellpose are imported only here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cellscale._files import file_sha256
from cellscale.segmentation._protocol import SegmenterBase, relabel_consecutive

__all__ = ["CellposeSegmenter", "builtin_models", "model_folder", "network_loads", "weights_path"]

_BUILTIN_V4 = ("cpsam", "cpsam_v2", "cpdino", "cpdino-vitb")
_BUILTIN_V3 = ("cyto3", "cyto2", "cyto", "nuclei")
_CACHE: dict[tuple[Any, ...], Any] = {}
_CACHE_LOCK = threading.Lock()
_LOADS: list[tuple[Any, ...]] = []


def network_loads() -> list[tuple[Any, ...]]:
    """The networks this process has loaded so far (one entry per load): for tests."""
    return list(_LOADS)


class CellposeSegmenter(SegmenterBase):
    """Cellpose (4.x ``cpsam``, or 3.x models where cellpose 3 is installed), fields pooled.

    Parameters
    ----------
    model
        A weights file, or the name of a model in cellpose's model folder (``"cpsam"``;
        ``"cyto3"``, ``"nuclei"`` with cellpose 3). A missing model is an error naming
        the file and how to get it.
    compartment
        What the model segments: the name of the labels (``"cells"`` or ``"nuclei"``).
    diameter
        Expected object diameter in pixels: fields are rescaled so objects are 30 px, as
        cellpose does. ``None``: no rescaling (cellpose 4's default); ``0``: estimated per
        field with :func:`cellscale.segmentation.estimate_diameter`.
    flow_threshold, cellprob_threshold, min_size
        Cellpose's mask thresholds (``flow_threshold=0`` keeps every mask).
    batch_size
        Tiles per network call.
    fields_per_task
        Fields pooled in one task: tiles of all of them fill the network's batches.
    device
        ``"auto"`` (the worker's GPU when it has one, else the CPU), ``"cuda"`` (fail when
        the worker has no GPU) or ``"cpu"``.
    bf16
        Run the network in bfloat16 (cellpose 4 only).
    allow_download
        Let cellpose download a named model that is not in its model folder.
    network
        Instead of ``model``: a callable returning a torch module with cellpose's network
        contract (``forward(x) -> (flows_and_cellprob, style)``, attributes ``device``
        and ``dtype``); it is called once per worker.
    """

    gpu = True

    def __init__(
        self,
        model: str | Path = "cpsam",
        *,
        compartment: str = "cells",
        diameter: float | None = None,
        flow_threshold: float = 0.4,
        cellprob_threshold: float = 0.0,
        min_size: int = 15,
        batch_size: int = 32,
        fields_per_task: int = 8,
        device: str = "auto",
        bf16: bool = True,
        tile_overlap: float = 0.1,
        allow_download: bool = False,
        network: Callable[[], Any] | None = None,
    ) -> None:
        if device not in ("auto", "cuda", "cpu"):
            raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
        if batch_size < 1 or fields_per_task < 1:
            raise ValueError("batch_size and fields_per_task must be at least 1")
        self.model = model if network is not None else weights_path(model, allow_download)
        self.compartments = (compartment,)
        self.diameter = diameter
        self.flow_threshold = float(flow_threshold)
        self.cellprob_threshold = float(cellprob_threshold)
        self.min_size = int(min_size)
        self.batch_size = int(batch_size)
        self.fields_per_task = int(fields_per_task)
        self.device = device
        self.bf16 = bool(bf16)
        self.tile_overlap = float(tile_overlap)
        self.network = network

    def describe(self) -> dict[str, Any]:
        """The settings and the weights' identity, for the labels' fingerprint."""
        weights = (
            f"network {getattr(self.network, '__qualname__', repr(self.network))}"
            if self.network is not None
            else file_sha256(Path(self.model))
        )
        return {
            "class": "CellposeSegmenter",
            "model": str(self.model) if self.network is None else None,
            "weights": weights,
            "compartment": self.compartments[0],
            "diameter": self.diameter,
            "flow_threshold": self.flow_threshold,
            "cellprob_threshold": self.cellprob_threshold,
            "min_size": self.min_size,
            "bf16": self.bf16,
            "tile_overlap": self.tile_overlap,
        }

    def __dask_tokenize__(self) -> Any:
        return ("CellposeSegmenter", sorted(self.describe().items(), key=str))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Labels ``(1, y, x)`` of one field ``(c, y, x)``."""
        return self.segment_batch([image])[0]

    def segment_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Segment several fields, pooling the tiles of same-shaped fields into each batch."""
        for image in images:
            if image.ndim != 3:
                raise ValueError(
                    f"the cellpose segmenter takes 2D fields (c, y, x), got shape {image.shape}; "
                    "project the plate first, or segment Z stacks with method='classical'"
                )
        loaded = _load(self)
        out: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[tuple[int, ...], float], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault((image.shape, self._rescale(image)), []).append(i)
        for (_, rescale), members in groups.items():
            masks = _segment_stack(loaded, [images[i] for i in members], rescale, self)
            for i, labels in zip(members, masks, strict=True):
                out[i] = labels
        assert all(labels is not None for labels in out)
        return [labels for labels in out if labels is not None]

    def _rescale(self, image: np.ndarray) -> float:
        if self.diameter is None:
            return 1.0
        diameter = float(self.diameter)
        if diameter == 0:
            from cellscale.segmentation._classical import estimate_diameter

            diameter = float(estimate_diameter(image[-1]))
            if not np.isfinite(diameter) or diameter <= 0:
                return 1.0
        return 30.0 / diameter


class _Loaded:
    """A network on a device, with what preprocessing it needs."""

    def __init__(self, net: Any, device: Any, channels: int, bsize: int) -> None:
        self.net = net
        self.device = device
        self.channels = channels
        self.bsize = bsize


def _load(segmenter: CellposeSegmenter) -> _Loaded:
    """The segmenter's network, loaded once per process and device."""
    import torch

    device = _device(segmenter.device)
    source = segmenter.network if segmenter.network is not None else str(segmenter.model)
    key = (source, str(device), segmenter.bf16)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _build(segmenter, device, torch)
            _LOADS.append(key)
        return _CACHE[key]


def _device(choice: str) -> Any:
    import torch

    has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise RuntimeError(
            f"a GPU was required (device='cuda') but {_worker_name()} has none: "
            "torch.cuda.is_available() is False. Check the job's GPU request and the CUDA "
            "build of torch (README, 'GPUs and torch'), or pass device='auto'"
        )
    return torch.device("cuda" if has_cuda and choice != "cpu" else "cpu")


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return f"worker {get_worker().name}"
    except (ImportError, ValueError):
        return "this process"


def _build(segmenter: CellposeSegmenter, device: Any, torch: Any) -> _Loaded:
    if segmenter.network is not None:
        net = segmenter.network().to(device)
        return _Loaded(net, device, channels=3, bsize=256)
    from cellpose import models

    path = str(segmenter.model)
    version = _cellpose_major()
    try:
        if version >= 4:
            model = models.CellposeModel(
                pretrained_model=path, device=device, use_bfloat16=segmenter.bf16
            )
            return _Loaded(model.net, device, channels=3, bsize=256)
        model = models.CellposeModel(pretrained_model=path, device=device)
        return _Loaded(model.net, device, channels=2, bsize=224)
    except Exception as err:
        raise ValueError(
            f"{path} is not a cellpose {version} model that loads here "
            f"({type(err).__name__}: {err})"
        ) from err


def _cellpose_major() -> int:
    from importlib.metadata import version

    return int(version("cellpose").split(".")[0])


def _segment_stack(
    loaded: _Loaded, images: list[np.ndarray], rescale: float, settings: CellposeSegmenter
) -> list[np.ndarray]:
    """Run the network once over all fields' tiles, then cellpose's dynamics per field."""
    from cellpose import core, dynamics, transforms

    stack = np.stack([_prepared(image, loaded.channels, transforms) for image in images])
    flows, _ = core.run_net(
        loaded.net,
        stack,
        batch_size=settings.batch_size,
        tile_overlap=settings.tile_overlap,
        bsize=loaded.bsize,
        rsz=rescale if rescale != 1.0 else None,
    )
    height, width = images[0].shape[-2:]
    if flows.shape[1:3] != (height, width):
        flows = transforms.resize_image(flows, height, width)
    niter = int(200 / rescale) if rescale != 1.0 else 200
    masks = []
    for field_flows in flows:
        labels = dynamics.resize_and_compute_masks(
            field_flows[..., -3:-1].transpose(2, 0, 1),
            field_flows[..., -1],
            niter=niter,
            cellprob_threshold=settings.cellprob_threshold,
            flow_threshold=settings.flow_threshold,
            min_size=settings.min_size,
            device=loaded.device,
        )
        masks.append(relabel_consecutive(np.asarray(labels))[np.newaxis])
    return masks


def _prepared(image: np.ndarray, channels: int, transforms: Any) -> np.ndarray:
    """A field ``(c, y, x)`` as cellpose's network takes it: ``(y, x, channels)``, normalised."""
    field = np.moveaxis(np.asarray(image, dtype=np.float32), 0, -1)[..., :channels]
    if field.shape[-1] < channels:
        pad = np.zeros((*field.shape[:-1], channels - field.shape[-1]), np.float32)
        field = np.concatenate([field, pad], axis=-1)
    return transforms.normalize_img(field, axis=-1)


def weights_path(model: str | Path, allow_download: bool = False) -> Path:
    """The local weights file of ``model``, or an error saying how to get it."""
    path = Path(model).expanduser()
    if path.is_file():
        return path
    name = str(model)
    if name not in (*_BUILTIN_V4, *_BUILTIN_V3):
        raise FileNotFoundError(
            f"cellpose model {name!r} is neither a file nor a known model name "
            f"({', '.join(_BUILTIN_V4 + _BUILTIN_V3)})"
        )
    folder = model_folder()
    cached = folder / name
    if cached.is_file():
        return cached
    if allow_download:
        from cellpose import models

        return Path(models.cache_model_path(name))
    raise FileNotFoundError(
        f"cellpose model {name!r} is not in cellpose's model folder ({cached} does not exist) "
        "and cellscale does not download models at run time. Download it once where there is "
        f"internet (`cellscale models --fetch {name}`) and copy it to {cached} (or set "
        "CELLPOSE_LOCAL_MODELS_PATH), pass model=<file>, or pass allow_download=True"
    )


def builtin_models() -> tuple[str, ...]:
    """The model names the installed cellpose knows (its major version's)."""
    from importlib.metadata import PackageNotFoundError

    try:
        return _BUILTIN_V4 if _cellpose_major() >= 4 else _BUILTIN_V3
    except PackageNotFoundError:
        return ()


def model_folder() -> Path:
    """Cellpose's model folder: ``$CELLPOSE_LOCAL_MODELS_PATH``, else ``~/.cellpose/models``."""
    import os

    configured = os.environ.get("CELLPOSE_LOCAL_MODELS_PATH")
    return Path(configured) if configured else Path.home() / ".cellpose" / "models"
