"""Grad-CAMO: does a trained classifier look at the cell or at the background?

Grad-CAM (Selvaraju et al., 2017) weighs each channel of a layer's activation ``A`` (by
default the backbone's last block, ``backbone.layer4``) by the mean gradient of the
explained class's logit over the channel's positions, sums, and keeps the positive part:
``ReLU(sum_k mean(dy/dA_k) A_k)``, upsampled to the crop. Grad-CAMO is the share of that
attention inside the cell's own mask (the pixels whose label is the cell's id): 1 when the
model looks only at the cell, 0 when only at what surrounds it. A cell whose map is zero
everywhere (nothing speaks for the class) has no share: ``NaN``, counted and named in a
:class:`GradCAMOWarning`, never a silent 0 or 1.

The hook is ours, not the ``pytorch-grad-cam`` package's (which keeps its hooks between
calls): for each batch one forward hook is registered on the layer and removed in a
``finally`` before the batch's result is returned. The hook hands the rest of the network a
detached copy of the activation that requires grad, so the backward pass stops at the layer
(it runs through the head only, and never fills the parameters' ``.grad``).

Crops are cut on the fly per chunk of fields, as in training (:class:`CellDataset`); on a
``distributed`` client each chunk is one task, on a GPU worker when the cluster has one
(resource ``GPU``), and a model file is loaded once per worker process. Only the per-cell
scores come back. torch is imported only when a function runs.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import numpy as np
import pandas as pd

from cellscale.cells import CELL_ID

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

    from cellscale.learning._models import CellClassifier
    from cellscale.learning._sources import PlateInput

__all__ = [
    "DEFAULT_LAYER",
    "GradCAMOWarning",
    "cell_scores",
    "grad_cam",
    "gradcamo",
    "plot_gradcamo_gallery",
]

#: The layer Grad-CAM reads by default: the backbone's last convolutional block.
DEFAULT_LAYER = "backbone.layer4"

#: Fields (cell-table partitions) cut and scored by one task.
FIELDS_PER_TASK = 8

_COLUMNS = [CELL_ID, "Metadata_Plate", "Metadata_Well", "predicted", "gradcamo"]
_DTYPES = {CELL_ID: np.int64, "gradcamo": np.float64}
_LOCK = threading.Lock()  # one Grad-CAM batch at a time per process: the hook is on a shared model
_MODELS: dict[tuple[Any, ...], Any] = {}
_NO_CLASS = "(predicted)"  # the one class of a dataset built without a label column


class GradCAMOWarning(UserWarning):
    """Some cells had no attention at all (their Grad-CAMO is ``NaN``)."""


@dataclass(frozen=True)
class _Crops:
    """How the model's crops are cut: as :func:`cellscale.train` was told."""

    size: int | tuple[int, ...]
    mask: str
    compartment: str | None


def grad_cam(
    model: CellClassifier,
    images: torch.Tensor,
    *,
    target: torch.Tensor | None = None,
    layer: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps of a batch, upsampled to the images, and the predicted classes.

    Parameters
    ----------
    model
        A :class:`~cellscale.learning._models.CellClassifier` in evaluation mode.
    images
        ``(n, c, y, x)`` or ``(n, c, z, y, x)`` on the model's device.
    target
        The class index to explain for each image (default: the predicted one).
    layer
        The module whose activation is weighed (default :data:`DEFAULT_LAYER`).

    Returns
    -------
    maps : numpy.ndarray
        float32 ``(n, [z,] y, x)``, non-negative, each scaled to a maximum of 1 (a map of
        zeros stays zeros).
    predicted : numpy.ndarray
        int64 ``(n,)``.
    """
    import torch
    from torch.nn import functional

    from cellscale.embedding._torch import find_layer

    name = layer or DEFAULT_LAYER
    captured: list[torch.Tensor] = []

    def keep(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        leaf = output.detach().requires_grad_(True)  # the backward pass stops here
        captured.append(leaf)
        return leaf

    handle = find_layer(model, name).register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(images)["logits"].float()
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"the layer {name!r} did not run in the model's forward pass")
    activation = captured[-1]
    _check_map(activation, images, name)
    predicted = logits.argmax(dim=1)
    chosen = predicted if target is None else target.to(logits.device)
    (gradient,) = torch.autograd.grad(logits.gather(1, chosen[:, None]).sum(), activation)
    spatial = tuple(range(2, activation.ndim))
    weights = gradient.float().mean(dim=spatial, keepdim=True)
    cam = functional.relu((weights * activation.detach().float()).sum(dim=1, keepdim=True))
    mode = "bilinear" if images.ndim == 4 else "trilinear"
    cam = functional.interpolate(cam, size=images.shape[2:], mode=mode, align_corners=False)
    cam = functional.relu(cam[:, 0])
    peak = cam.flatten(1).amax(dim=1).reshape(-1, *(1,) * (cam.ndim - 1))
    cam = torch.where(peak > 0, cam / peak.clamp_min(1e-30), torch.zeros_like(cam))
    return cam.cpu().numpy().astype(np.float32), predicted.cpu().numpy().astype(np.int64)


def _check_map(activation: torch.Tensor, images: torch.Tensor, name: str) -> None:
    """Refuse a layer whose map has one position: every pixel would get the same attention."""
    if all(n == 1 for n in activation.shape[2:]):
        crop = "x".join(map(str, images.shape[2:]))
        raise ValueError(
            f"the layer {name!r} gives a map of one position on {crop} crops, so attention "
            "cannot tell the cell from its surroundings; pass an earlier layer "
            "(layer='backbone.layer3' or 'backbone.layer2') or score larger crops"
        )


def cell_scores(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Each cell's share of its (non-negative) attention inside its mask; ``NaN`` without any.

    Parameters
    ----------
    maps
        ``(n, [z,] y, x)`` non-negative attention.
    masks
        Boolean masks of the same shape: the cell's own pixels.

    Examples
    --------
    >>> maps = np.array([[[1.0, 3.0]], [[0.0, 0.0]]])
    >>> cell_scores(maps, np.array([[[True, False]], [[True, False]]])).tolist()
    [0.25, nan]
    """
    if maps.shape != masks.shape:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} differ in shape")
    if (maps < 0).any():
        raise ValueError("attention must be non-negative (take the ReLU of the map first)")
    axes = tuple(range(1, maps.ndim))
    total = maps.sum(axis=axes, dtype=np.float64)
    inside = np.where(masks, maps, 0.0).sum(axis=axes, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)


def gradcamo(
    model: Any,
    source: Any,
    *,
    label: str | None = None,
    classes: Sequence[str] | None = None,
    size: int | Sequence[int] = 64,
    mask: str = "soft",
    compartment: str | None = None,
    images: str = "projected",
    layer: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    client: Any = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The Grad-CAMO score of every cell of a screen: its share of attention inside its mask.

    Parameters
    ----------
    model
        What :func:`cellscale.train` returned (its ``model.pt`` and classes are used), a
        ``model.pt``, or a :class:`~cellscale.learning._models.CellClassifier`.
    source
        As for :func:`cellscale.train`: a run folder or a list of plates (``plate``,
        ``cells``, and ``labels``: the labels the cells were measured from, which give each
        cell's mask; a plate store holds its own).
    label
        Explain each cell's true class, this column's value, rather than the predicted one.
    classes
        The model's class names in index order, for a model without them (default: those
        of the training, else the indices as text).
    size, mask, compartment, images
        The crops, as the model was trained on them: the values given to
        :func:`cellscale.train` (whose defaults these are; a training does not record them).
    layer
        The module Grad-CAM reads (default ``backbone.layer4``, whose map has one position
        per 32 pixels of crop; on small crops an earlier one with more positions:
        ``backbone.layer3``, ``layer2`` or ``layer1``, 16, 8 and 4 pixels apart).
    batch_size, device
        Crops per batch; ``"auto"`` (a GPU when there is one), ``"cuda"`` or ``"cpu"``.
    client
        A ``distributed.Client``: each chunk of fields is one task, held by a worker with
        the resource ``GPU`` when the cluster has one (inputs on a shared filesystem).
    progress
        Show a progress bar over each plate's chunks.

    Returns
    -------
    pandas.DataFrame
        One row per cell, plate after plate: ``cell_id``, ``Metadata_Plate``,
        ``Metadata_Well``, ``predicted`` (class name), ``gradcamo`` (0 to 1, ``NaN`` for a
        cell with no attention) and, with ``label``, ``label``.

    Warns
    -----
    GradCAMOWarning
        When some cells had no attention, with their number and first ``cell_id``\\ s.

    Raises
    ------
    ValueError
        For a plate without labels, a label column that does not exist or with values
        the model has no class for, a layer the model lacks or whose map has one position,
        or crops whose channels are not the model's; each message names the fix.
    """
    from cellscale.learning._sources import plate_inputs

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    reference, names = _model_reference(model, classes)
    crops = _Crops(_size(size), mask, compartment)
    plates = plate_inputs(source, images=images)
    for plate in plates:
        if plate.labels is None:
            raise ValueError(
                f"plate {plate.name!r} has no labels to take each cell's mask from: give the "
                "plate's 'labels' (the labels store or Dataset its cells were measured from)"
            )
    frames = [
        _score_plate(
            reference, plate, crops, label, names, layer, batch_size, device, client, progress
        )
        for plate in plates
    ]
    scores = pd.concat(frames, ignore_index=True)
    _warn_no_attention(scores)
    return scores


def _size(size: int | Sequence[int]) -> int | tuple[int, ...]:
    return int(size) if isinstance(size, int | np.integer) else tuple(int(s) for s in size)


def _model_reference(model: Any, classes: Sequence[str] | None) -> tuple[Any, list[str] | None]:
    """The model as a task takes it (a file, or the module itself) and its class names."""
    from cellscale.learning._api import Training

    if isinstance(model, Training):
        return Path(model.model), list(classes or model.classes)
    if isinstance(model, str | Path):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(
                f"no model at {path}: pass a training's model.pt (Training.model) or the "
                "Training cellscale.train returned"
            )
        return path, None if classes is None else list(classes)
    if not hasattr(model, "config") or not hasattr(model, "backbone"):
        raise TypeError(
            f"model is a {type(model).__name__}: pass what cellscale.train returned, its "
            "model.pt, or a CellClassifier"
        )
    return model, None if classes is None else list(classes)


def _score_plate(
    reference: Any,
    plate: PlateInput,
    crops: _Crops,
    label: str | None,
    names: list[str] | None,
    layer: str | None,
    batch_size: int,
    device: str,
    client: Any,
    progress: bool,
) -> pd.DataFrame:
    """One plate's scores, chunk by chunk of fields (tasks on ``client``, or here)."""
    from tqdm.auto import tqdm

    chunks = list(_chunks(plate, label))
    work: dict[str, Any] = {
        "plate": plate,
        "crops": crops,
        "label": label,
        "names": names,
        "layer": layer,
        "batch_size": batch_size,
        "device": device,
    }
    bar = tqdm(
        total=len(chunks), desc=f"Grad-CAMO {plate.name}", unit="chunk", disable=not progress
    )
    try:
        if client is None:
            results = []
            for rows in chunks:
                results.append(_score_chunk(reference, _pandas(rows), **work))
                bar.update()
        else:
            results = _on_cluster(client, reference, chunks, work, bar)
    finally:
        bar.close()
    return pd.concat(results, ignore_index=True) if results else _empty(label)


def _on_cluster(
    client: Any, reference: Any, chunks: list[Any], work: dict[str, Any], bar: Any
) -> list[pd.DataFrame]:
    """Every chunk as a task (on a GPU worker when there is one), results in chunk order."""
    from distributed import as_completed

    workers = client.scheduler_info()["workers"].values()
    gpu = any(worker.get("resources", {}).get("GPU", 0) >= 1 for worker in workers)
    options = {"resources": {"GPU": 1}} if gpu else {}
    if not isinstance(reference, Path):
        [reference] = client.scatter([reference], broadcast=True)
    rows = [client.compute(c) if hasattr(c, "dask") else c for c in chunks]
    futures = [
        client.submit(_score_chunk, reference, r, **work, **options, key=f"gradcamo-{uuid4().hex}")
        for r in rows
    ]
    order = {future.key: i for i, future in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    for future in as_completed(futures):
        results[order[future.key]] = future.result()
        bar.update()
    return results


def _chunks(plate: PlateInput, label: str | None) -> Iterator[Any]:
    """The plate's cells in chunks of :data:`FIELDS_PER_TASK` fields (lazy for a stored table)."""
    import cellscale

    if plate.cells is None:
        raise ValueError(f"plate {plate.name!r} has no cell table: Grad-CAMO scores cells")
    if isinstance(plate.cells, pd.DataFrame):
        table = plate.cells
        units = table.groupby(["Metadata_Timepoint", "Metadata_Well", "Metadata_Site"]).ngroup()
        chunk = units.to_numpy() // FIELDS_PER_TASK
        for number in np.unique(chunk):
            yield table[chunk == number]
        return
    table = cellscale.read_cells(plate.cells)
    kept = [c for c in table.columns if _needed(c) or c == label or c == f"Metadata_{label}"]
    pieces = table[kept].to_delayed()  # one per field's file
    for start in range(0, len(pieces), FIELDS_PER_TASK):
        yield _concat(pieces[start : start + FIELDS_PER_TASK])


def _needed(column: str) -> bool:
    """Whether crops and scores need a cell-table column: ids, metadata, centres."""
    return column == CELL_ID or column.startswith("Metadata_") or "_AreaShape_Center_" in column


def _concat(pieces: list[Any]) -> Any:
    import dask

    return dask.delayed(pd.concat)(pieces, ignore_index=True)


def _pandas(rows: Any) -> pd.DataFrame:
    return rows.compute(scheduler="synchronous") if hasattr(rows, "compute") else rows


def _score_chunk(
    reference: Any,
    rows: pd.DataFrame,
    *,
    plate: PlateInput,
    crops: _Crops,
    label: str | None,
    names: list[str] | None,
    layer: str | None,
    batch_size: int,
    device: str,
) -> pd.DataFrame:
    """The scores of one chunk's cells (one task): crops cut, Grad-CAM run batch by batch."""
    import torch
    from torch.utils.data import DataLoader

    if not len(rows):
        return _empty(label)
    model, where = _loaded(reference, device)
    n_classes = int(model.config["n_classes"])
    names = names or [str(i) for i in range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(
            f"{len(names)} class names given for a model of {n_classes} classes: pass the "
            "training's classes (Training.classes), in index order"
        )
    dataset = _dataset(plate, rows, crops, label, names)
    masked: Any = _WithMasks(dataset)  # a map-style dataset, as DataLoader takes it
    loader = DataLoader(masked, batch_size=batch_size, shuffle=False)
    channels = int(model.config["in_channels"])
    predicted, scores = [], []
    for images, targets, masks in loader:
        if images.shape[1] != channels:
            raise ValueError(
                f"the model takes {channels} channels but the crops of plate {plate.name!r} "
                f"have {images.shape[1]}; score the images it was trained on"
            )
        images = images.to(where)
        with _LOCK, _evaluating(model), _autocast(where, torch):
            maps, classes = grad_cam(model, images, target=targets if label else None, layer=layer)
        predicted.append(classes)
        scores.append(cell_scores(maps, masks.numpy()))
    rows_out = dataset.rows
    out = pd.DataFrame(
        {
            CELL_ID: rows_out[CELL_ID].to_numpy(np.int64),
            "Metadata_Plate": rows_out["Metadata_Plate"].astype(str).to_numpy(),
            "Metadata_Well": rows_out["Metadata_Well"].astype(str).to_numpy(),
            "predicted": np.asarray(names, dtype=object)[np.concatenate(predicted)],
            "gradcamo": np.concatenate(scores),
        }
    )
    if label:
        out["label"] = rows_out["label"].to_numpy()
    return out


def _dataset(
    plate: PlateInput, rows: pd.DataFrame, crops: _Crops, label: str | None, names: list[str]
) -> Any:
    """The chunk's crops as training cut them; the true classes as the model's indices."""
    from cellscale.learning._dataset import CellDataset

    if label is None:  # a placeholder label: the explained class is the predicted one
        rows = rows.assign(_gradcamo_placeholder=_NO_CLASS)
        label, names = "_gradcamo_placeholder", [_NO_CLASS]
    if "Metadata_Plate" not in rows.columns:
        rows = rows.assign(Metadata_Plate=plate.name)
    return CellDataset(
        plate.plate,
        rows,
        label,
        size=crops.size,
        mask=crops.mask,
        labels=plate.labels,
        compartment=crops.compartment,
        classes=names,
    )


class _WithMasks:
    """A CellDataset's ``(image, class, mask)``: the domain left out, the cell's mask added."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int, Any]:
        import torch

        image, target, _domain = self.dataset[index]
        return image, target, torch.from_numpy(self.dataset.cell_mask(index))


def _loaded(reference: Any, device: str) -> tuple[Any, Any]:
    """The model on this process's device; a file is loaded once per process."""
    import torch

    from cellscale.learning._models import load_classifier
    from cellscale.learning._train import _device

    where = _device(device, torch)
    if not isinstance(reference, Path):
        return reference.to(where), where
    stat = reference.stat()
    key = (str(reference.resolve()), stat.st_mtime_ns, stat.st_size, str(where))
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_classifier(reference).to(where).eval()
        return _MODELS[key], where


@contextmanager
def _evaluating(model: Any) -> Iterator[None]:
    """The model in evaluation mode for the block, its own mode after it."""
    was_training = bool(model.training)
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _autocast(where: Any, torch: Any) -> Any:
    """bfloat16 autocast on a GPU (as prediction runs), nothing on a CPU."""
    return torch.autocast(where.type, dtype=torch.bfloat16, enabled=where.type == "cuda")


def _empty(label: str | None) -> pd.DataFrame:
    columns = _COLUMNS + (["label"] if label else [])
    return pd.DataFrame({c: pd.Series(dtype=_DTYPES.get(c, object)) for c in columns})


def _warn_no_attention(scores: pd.DataFrame) -> None:
    missing = scores[scores["gradcamo"].isna()]
    if len(missing):
        shown = ", ".join(str(int(i)) for i in missing[CELL_ID].head(10))
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        warnings.warn(
            f"{len(missing)} of {len(scores)} cells had no attention for the class explained "
            f"(their Grad-CAM map is zero; Grad-CAMO is NaN): cell_id {shown}{more}. Leave "
            "them out of summaries (scores.dropna()) or count them apart",
            GradCAMOWarning,
            stacklevel=3,
        )


def plot_gradcamo_gallery(
    model: Any,
    source: Any,
    scores: pd.DataFrame,
    *,
    n: int = 6,
    channel: int | None = None,
    label: str | None = None,
    classes: Sequence[str] | None = None,
    size: int | Sequence[int] = 64,
    mask: str = "soft",
    compartment: str | None = None,
    images: str = "projected",
    layer: str | None = None,
    device: str = "auto",
    path: str | Path | None = None,
) -> Figure:
    """The ``n`` best- and ``n`` worst-scoring cells, their attention over the crop.

    Each panel shows the crop (one channel, or the mean of the channels; a Z stack's
    maximum over z), the Grad-CAM map over it and the outline of the cell's mask, titled
    with the score, the ``cell_id`` and the class explained.

    Parameters
    ----------
    model, source, label, classes, size, mask, compartment, images, layer, device
        As given to :func:`gradcamo` for ``scores``.
    scores
        What :func:`gradcamo` returned (cells with ``NaN`` scores are left out).
    n
        Cells per row.
    channel
        The channel shown (default: the mean of all).
    path
        Also write the figure as a PNG there.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from cellscale.learning._sources import plate_inputs

    scored = scores.dropna(subset=["gradcamo"]).sort_values("gradcamo", kind="stable")
    if scored.empty:
        raise ValueError("no cell has a Grad-CAMO score to show: every score is NaN or none given")
    rows = {"best": scored.iloc[::-1].head(n), "worst": scored.head(n)}
    reference, names = _model_reference(model, classes)
    crops = _Crops(_size(size), mask, compartment)
    plates = plate_inputs(source, images=images)
    panels = {
        kind: _panels(reference, plates, chosen, crops, label, names, layer, device)
        for kind, chosen in rows.items()
    }
    return _draw_gallery(panels, rows, channel, path)


def _panels(
    reference: Any,
    plates: list[PlateInput],
    chosen: pd.DataFrame,
    crops: _Crops,
    label: str | None,
    names: list[str] | None,
    layer: str | None,
    device: str,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(crop, map, mask)`` of each chosen cell, in the order of ``chosen``."""
    import torch

    model, where = _loaded(reference, device)
    names = names or [str(i) for i in range(int(model.config["n_classes"]))]
    found: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for plate in plates:
        rows = _cell_rows(plate, chosen, label)
        if not len(rows):
            continue
        dataset = _dataset(plate, rows, crops, label, names)
        items = [_WithMasks(dataset)[i] for i in range(len(dataset))]
        images = torch.stack([image for image, _, _ in items]).to(where)
        targets = torch.as_tensor([target for _, target, _ in items])
        with _LOCK, _evaluating(model), _autocast(where, torch):
            maps, _ = grad_cam(model, images, target=targets if label else None, layer=layer)
        for i, cell in enumerate(dataset.rows[CELL_ID].to_numpy(np.int64)):
            found[int(cell)] = (items[i][0].numpy(), maps[i], items[i][2].numpy())
    missing = sorted(set(chosen[CELL_ID].astype(int)) - set(found))
    if missing:
        raise ValueError(
            f"cells {missing[:5]} of the scores are not in the source's cell tables: pass the "
            "source the scores were computed from"
        )
    return [found[int(cell)] for cell in chosen[CELL_ID]]


def _cell_rows(plate: PlateInput, chosen: pd.DataFrame, label: str | None) -> pd.DataFrame:
    """The rows of the chosen cells that are on ``plate`` (read with a filter, not whole)."""
    import cellscale

    ids = chosen[CELL_ID].to_numpy(np.int64)
    if plate.cells is None:
        return pd.DataFrame()
    if isinstance(plate.cells, pd.DataFrame):
        table = plate.cells
        rows = table[table[CELL_ID].isin(ids)]
    else:
        lazy = cellscale.read_cells(plate.cells)
        kept = [c for c in lazy.columns if _needed(c) or c in (label, f"Metadata_{label}")]
        rows = lazy[kept][lazy[CELL_ID].isin(ids)].compute()
    if "Metadata_Plate" in rows.columns:
        wanted = set(chosen["Metadata_Plate"].astype(str))
        rows = rows[rows["Metadata_Plate"].astype(str).isin(wanted)]
    return rows


def _draw_gallery(
    panels: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]],
    rows: dict[str, pd.DataFrame],
    channel: int | None,
    path: str | Path | None,
) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = max(len(p) for p in panels.values())
    fig = Figure(figsize=(1.9 * columns + 1.0, 4.4), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, columns, squeeze=False)
    shown = None
    for r, (kind, cells) in enumerate(panels.items()):
        for c, ax in enumerate(axes[r]):
            ax.set_axis_off()
            if c >= len(cells):
                continue
            crop, attention, own = cells[c]
            image = crop.mean(axis=0) if channel is None else crop[channel]
            if image.ndim == 3:  # a Z stack: its maximum over z
                image, attention = image.max(axis=0), attention.max(axis=0)
                own = np.asarray(own.any(axis=0))
            ax.imshow(image, cmap="gray")
            shown = ax.imshow(attention, cmap="inferno", alpha=0.5, vmin=0.0, vmax=1.0)
            if own.any() and not own.all():
                ax.contour(own.astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
            row = rows[kind].iloc[c]
            ax.set_title(
                f"{kind} {row['gradcamo']:.2f}\ncell {int(row[CELL_ID])}: {row['predicted']}",
                fontsize=7,
            )
    if shown is not None:
        fig.colorbar(shown, ax=axes, label="attention (Grad-CAM, scaled to 1)", shrink=0.8)
    fig.suptitle("Grad-CAMO: share of attention inside the cell (outline)", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
