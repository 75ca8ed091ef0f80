"""The training loop: a classifier on cells, with reconstruction and domain-adversarial losses,
checkpointed every epoch and resumed exactly.

:func:`fit` trains a :class:`~cellscale.learning._models.CellClassifier` on any torch
Dataset of ``(image, label, domain)`` samples with AdamW and a cosine learning-rate schedule
over the epochs. The loss is the cross-entropy of the labels, plus
``reconstruction_weight`` times the mean squared error of the decoder's 16 × 16 copy of the
input, plus the cross-entropy of the domain head, whose gradient reaches the backbone
reversed and scaled by lambda (DANN: lambda rises from 0 to ``adversarial_weight`` as
``adversarial_weight · (2 / (1 + exp(-10 p)) - 1)``, ``p`` the fraction of training steps
done, so the features first learn the labels). The domain head has its own AdamW at a
constant learning rate and takes :data:`DOMAIN_HEAD_STEPS` steps on each batch's (detached)
features before the backbone's step, so the backbone always plays against a nearly optimal
domain classifier: with one step each, the two chase each other on small data and the
features flip the domain's sign rather than lose it. A run is deterministic for its seed on a
CPU: the data order of each epoch comes from a generator seeded by ``(seed, epoch)`` and a
checkpoint after each epoch holds every state (RNGs included), so a run killed at any point
and started again ends with the same weights, bit for bit, as one never stopped. On a GPU
the forward pass runs in bfloat16 autocast. torch is imported only when a function runs.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cellscale._stages import Fingerprint, output_lock
from cellscale.learning._checkpoint import TrainingFolder, make_checkpoint, restore_checkpoint

if TYPE_CHECKING:
    import torch

    from cellscale.learning._models import CellClassifier

__all__ = ["TrainResult", "fit", "fit_on_cluster", "predict"]

_ARCHITECTURES = ("resnet18", "resnet50", "r3d_18")
_PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DOMAIN_HEAD_STEPS = 5  # extra steps of the domain head per batch in adversarial training


@dataclass(frozen=True)
class TrainResult:
    """What a training run wrote.

    Attributes
    ----------
    weights
        ``weights.pt``: the backbone's state dict, for
        ``TorchEmbedder(arch, in_channels=C, weights=weights)``.
    model
        ``model.pt``: the classifier with its heads, for :func:`predict`.
    metrics
        One row per epoch: ``epoch``, ``train_loss`` (the whole objective),
        ``train_accuracy``, ``train_domain_accuracy`` (of the domain head on each training batch
        after its own steps on it; NaN without a head),
        ``validation_loss`` (cross-entropy of the labels) and ``validation_accuracy`` (NaN
        without validation data), ``learning_rate`` and ``adversarial_lambda`` (at the
        epoch's last step).
    epochs_run
        The epochs this call trained (0 when the folder held the finished run).
    resumed_from
        The epoch of the checkpoint this call resumed from (``None``: it started afresh).
    """

    weights: Path
    model: Path
    metrics: pd.DataFrame
    epochs_run: int
    resumed_from: int | None


@dataclass(frozen=True)
class _Settings:
    """What makes the trained weights what they are (all of it goes in the fingerprint)."""

    arch: str
    in_channels: int
    n_classes: int
    n_domains: int
    reconstruction_weight: float
    adversarial_weight: float
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int


def fit(
    train_data: Any,
    *,
    arch: str,
    in_channels: int,
    n_classes: int,
    out: str | Path,
    validation_data: Any = None,
    n_domains: int = 0,
    reconstruction_weight: float = 0.0,
    adversarial_weight: float = 0.0,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: str = "auto",
    precision: str = "auto",
    num_workers: int = 0,
    sampler: Any = None,
    progress: bool = True,
    data_token: str | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train a classifier on cells into ``out``, resuming from its last complete epoch.

    Parameters
    ----------
    train_data
        A torch Dataset of ``(image, label, domain)``: a float32 image ``(C, Y, X)`` (or
        ``(C, Z, Y, X)`` for ``r3d_18``), the class index and the domain (batch) index.
    arch
        ``"resnet18"``, ``"resnet50"`` (2D) or ``"r3d_18"`` (Z stacks), randomly initialised.
    in_channels, n_classes
        The images' channels and the number of classes (at least 2).
    out
        The run's folder: checkpoints, ``metrics.parquet``, ``weights.pt``, ``model.pt``.
    validation_data
        A Dataset like ``train_data``, scored after every epoch.
    n_domains
        The domains (batches) in the data; at least 2 for adversarial training.
    reconstruction_weight
        Weight of the decoder's reconstruction loss (0: no decoder).
    adversarial_weight
        The final gradient-reversal coefficient of the domain head (0: no domain head).
    epochs, batch_size, lr, weight_decay
        The schedule: AdamW with cosine annealing of ``lr`` over ``epochs``. The last
        training batch of an epoch is dropped when it would be smaller than ``batch_size``.
    seed
        Seeds torch, numpy and Python's ``random`` at the start and every epoch's data order.
    device
        ``"auto"`` (a GPU when there is one), ``"cuda"`` or ``"cpu"``.
    precision
        ``"auto"`` (bfloat16 autocast on a GPU, float32 on a CPU), ``"bf16"``, ``"fp16"``
        (with a gradient scaler) or ``"fp32"``; mixed precision needs a GPU.
    num_workers
        DataLoader worker processes (0: load in this process).
    sampler
        A torch Sampler of training indices instead of shuffling (its ``set_epoch`` is
        called every epoch when it has one).
    progress
        Show a progress bar over each epoch's batches.
    data_token
        A token of the data and split (e.g. a hash of the split's sample ids), recorded in
        the fingerprint so that resuming on other data is refused.
    overwrite
        Replace a run with other settings in ``out`` rather than refusing.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        For settings or data that cannot train (named, with the fix).
    StaleOutputError
        If ``out`` holds a run with other settings or data, naming each difference.
    DamagedOutputError
        If the checkpoint to resume from is damaged, naming it.
    """
    import torch

    settings = _Settings(
        arch,
        int(in_channels),
        int(n_classes),
        int(n_domains),
        float(reconstruction_weight),
        float(adversarial_weight),
        int(epochs),
        int(batch_size),
        float(lr),
        float(weight_decay),
        int(seed),
    )
    _check_settings(settings, train_data)
    where = _device(device, torch)
    autocast = _autocast_dtype(precision, where, torch)
    fingerprint = _fingerprint(settings, autocast, train_data, validation_data, sampler, data_token)
    folder = TrainingFolder(out, fingerprint)
    with output_lock(folder.out), _deterministic(where, torch):
        folder.prepare(overwrite=overwrite)
        _seed_everything(settings.seed, torch)
        trainer = _Trainer(settings, where, autocast)
        latest = folder.latest()
        metrics = trainer.restore(*latest) if latest else []
        start = len(metrics)
        for epoch in range(start + 1, settings.epochs + 1):
            loader = _loader(train_data, settings, epoch, sampler, num_workers, where)
            metrics.append(trainer.train_epoch(epoch, loader, progress))
            metrics[-1].update(trainer.validate(validation_data, num_workers))
            folder.save(trainer.checkpoint(epoch, metrics))
            folder.write_metrics(pd.DataFrame(metrics))
        if not folder.finished():
            folder.write_metrics(pd.DataFrame(metrics))
            folder.write_model(trainer.model)
    return TrainResult(
        weights=folder.weights,
        model=folder.model,
        metrics=pd.DataFrame(metrics),
        epochs_run=settings.epochs - start,
        resumed_from=start if latest else None,
    )


def fit_on_cluster(client: Any, **fit_kwargs: Any) -> TrainResult:
    """Run :func:`fit` as one task on a GPU worker of ``client``'s cluster, if it has one.

    The task holds the worker resource ``GPU`` (the mark cellscale's clusters give GPU
    workers), so it waits for a GPU worker. The datasets travel to the worker pickled, and
    ``out`` must be on a filesystem it sees. When no worker has a ``GPU`` resource, ``fit``
    runs here, in the calling process, instead.

    Parameters
    ----------
    client
        A ``distributed.Client``.
    **fit_kwargs
        The arguments of :func:`fit`, ``train_data`` included.
    """
    workers = client.scheduler_info()["workers"].values()
    if any(worker.get("resources", {}).get("GPU", 0) >= 1 for worker in workers):
        task = client.submit(fit, **fit_kwargs, resources={"GPU": 1}, key=f"fit-{uuid.uuid4().hex}")
        return task.result()
    return fit(**fit_kwargs)


def predict(
    model_or_path: CellClassifier | str | Path,
    data: Any,
    *,
    batch_size: int = 64,
    device: str = "auto",
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The predicted class index and the features of every sample of ``data``, in order.

    Parameters
    ----------
    model_or_path
        A trained :class:`~cellscale.learning._models.CellClassifier` or its ``model.pt``.
    data
        A Dataset of ``(image, label, domain)`` (or of images).

    Returns
    -------
    predicted : numpy.ndarray
        int64 ``(n,)`` class indices.
    features : numpy.ndarray
        float32 ``(n, n_features)``: the backbone's average-pooled features.
    """
    import torch

    from cellscale.learning._models import load_classifier

    model = (
        load_classifier(model_or_path) if isinstance(model_or_path, str | Path) else model_or_path
    )
    where = _device(device, torch)
    model.to(where)
    autocast = _autocast_dtype("auto", where, torch)
    predicted, features = [], []
    for out, _labels in _inference(model, data, batch_size, num_workers, where, autocast):
        predicted.append(out["logits"].argmax(dim=1).cpu().numpy())
        features.append(out["features"].float().cpu().numpy())
    n_features = int(model.backbone.fc.in_features)
    return (
        np.concatenate(predicted) if predicted else np.zeros(0, np.int64),
        np.concatenate(features) if features else np.zeros((0, n_features), np.float32),
    )


class _Trainer:
    """The model, optimiser, schedule and gradient scaler of one run, on its device."""

    def __init__(self, settings: _Settings, device: torch.device, autocast: Any) -> None:
        import torch

        from cellscale.learning._models import build_model

        self.settings = settings
        self.device = device
        self.autocast = autocast
        self.channels_last = device.type == "cuda" and settings.arch != "r3d_18"
        model = build_model(
            settings.arch,
            settings.in_channels,
            settings.n_classes,
            reconstruction=settings.reconstruction_weight > 0,
            n_domains=settings.n_domains if settings.adversarial_weight > 0 else 0,
        ).to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        backbone = [p for name, p in model.named_parameters() if not name.startswith("domain_")]
        self.optimizer = torch.optim.AdamW(
            backbone, lr=settings.lr, weight_decay=settings.weight_decay
        )
        self.domain_optimizer = (  # the domain head's own, at a constant learning rate
            None
            if model.domain_head is None
            else torch.optim.AdamW(
                model.domain_head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
            )
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=settings.epochs
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=autocast == torch.float16)

    def restore(self, path: Path, checkpoint: dict[str, Any]) -> list[dict[str, float]]:
        """Continue from a checkpoint; the metrics of the epochs it had run."""
        return restore_checkpoint(checkpoint, where=path, **self._states())

    def checkpoint(self, epoch: int, metrics: list[dict[str, float]]) -> dict[str, Any]:
        """The checkpoint after ``epoch``."""
        return make_checkpoint(epoch, metrics=metrics, **self._states())

    def train_epoch(self, epoch: int, loader: Any, progress: bool) -> dict[str, float]:
        """One pass over ``loader``; the epoch's training metrics."""
        import torch
        from tqdm.auto import tqdm

        self.model.train()
        totals = torch.zeros(4, dtype=torch.float64, device=self.device)
        learning_rate = float(self.optimizer.param_groups[0]["lr"])
        steps = len(loader)
        bar = tqdm(
            loader, desc=f"epoch {epoch}/{self.settings.epochs}", unit="batch", disable=not progress
        )
        for step, batch in enumerate(bar):
            images, labels, domains = _unpack(batch, torch)
            if step == 0:
                _check_batch(images, labels, domains, self.settings)
            done = ((epoch - 1) * steps + step) / max(self.settings.epochs * steps, 1)
            self.model.reversal = _dann_lambda(self.settings.adversarial_weight, done)
            totals += _train_step(self, images, labels, domains)
        self.scheduler.step()
        loss, correct, domain_correct, count = totals.tolist()
        row = {
            "epoch": float(epoch),
            "train_loss": loss / max(count, 1),
            "train_accuracy": correct / max(count, 1),
            "train_domain_accuracy": domain_correct / max(count, 1)
            if self.model.domain_head is not None
            else math.nan,
            "learning_rate": learning_rate,
            "adversarial_lambda": float(self.model.reversal),
        }
        bar.set_postfix(loss=f"{row['train_loss']:.4g}", accuracy=f"{row['train_accuracy']:.3f}")
        bar.close()
        return row

    def validate(self, data: Any, num_workers: int) -> dict[str, float]:
        """The classification loss and accuracy on ``data`` (NaN without data)."""
        from torch.nn import functional

        if data is None or len(data) == 0:
            return {"validation_loss": math.nan, "validation_accuracy": math.nan}
        loss = correct = count = 0.0
        batches = _inference(
            self.model, data, self.settings.batch_size, num_workers, self.device, self.autocast
        )
        for out, labels in batches:
            labels = labels.to(self.device)
            logits = out["logits"].float()
            loss += float(functional.cross_entropy(logits, labels, reduction="sum"))
            correct += float((logits.argmax(dim=1) == labels).sum())
            count += len(labels)
        self.model.train()
        return {"validation_loss": loss / count, "validation_accuracy": correct / count}

    def _states(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "optimizers": {"model": self.optimizer}
            | ({} if self.domain_optimizer is None else {"domain head": self.domain_optimizer}),
            "scheduler": self.scheduler,
            "scaler": self.scaler,
        }


def _train_step(trainer: _Trainer, images: Any, labels: Any, domains: Any) -> torch.Tensor:
    """One optimiser step; ``[loss × n, correct, domain correct, n]`` of the batch."""
    import torch

    from cellscale.learning._models import reconstruction_target

    device, settings = trainer.device, trainer.settings
    images = images.to(device, non_blocking=True)
    if trainer.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels, domains = labels.to(device), domains.to(device)
    with torch.autocast(
        device.type, dtype=trainer.autocast or torch.float32, enabled=trainer.autocast is not None
    ):
        out = trainer.model(images)
    logits = out["logits"].float()
    loss = torch.nn.functional.cross_entropy(logits, labels)
    if "reconstruction" in out:
        target = reconstruction_target(images)
        loss = loss + settings.reconstruction_weight * torch.nn.functional.mse_loss(
            out["reconstruction"].float(), target
        )
    domain_correct = torch.zeros((), device=device)
    if "domain_logits" in out:
        features = out["features"].float()
        _catch_up_domain_head(trainer, features.detach(), domains)
        domain_logits = trainer.model.domain_logits(features)
        loss = loss + torch.nn.functional.cross_entropy(domain_logits, domains)
        domain_correct = (domain_logits.argmax(dim=1) == domains).sum()
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.scaler.scale(loss).backward()
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    n = len(labels)
    correct = (logits.argmax(dim=1) == labels).sum()
    return torch.stack(
        [loss.detach() * n, correct, domain_correct, torch.tensor(n, device=device)]
    ).to(torch.float64)


def _catch_up_domain_head(trainer: _Trainer, features: torch.Tensor, domains: Any) -> None:
    """Steps of the domain head alone on the batch's features (as a GAN's discriminator takes
    k steps per generator step): see the module's description."""
    from torch.nn import functional

    assert trainer.domain_optimizer is not None and trainer.model.domain_head is not None
    for _ in range(DOMAIN_HEAD_STEPS):
        trainer.domain_optimizer.zero_grad(set_to_none=True)
        functional.cross_entropy(trainer.model.domain_head(features), domains).backward()
        trainer.domain_optimizer.step()


def _inference(
    model: CellClassifier,
    data: Any,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    autocast: Any,
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """The model's outputs and the labels of each batch of ``data``, in order, in eval mode."""
    import torch
    from torch.utils.data import DataLoader

    model.eval()
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    channels = model.config["in_channels"]
    with torch.inference_mode():
        for batch in loader:
            images, labels, _domains = _unpack(batch, torch)
            if images.shape[1] != channels:
                raise ValueError(
                    f"the model takes {channels} channels but the images have {images.shape[1]}"
                )
            images = images.to(device, non_blocking=True)
            with torch.autocast(
                device.type, dtype=autocast or torch.float32, enabled=autocast is not None
            ):
                yield model(images), labels


def _unpack(batch: Any, torch: Any) -> tuple[Any, Any, Any]:
    """``(images, labels, domains)`` of a collated batch; zeros for what the samples lack."""
    if isinstance(batch, torch.Tensor):
        batch = [batch]
    images, *rest = batch
    zeros = torch.zeros(len(images), dtype=torch.long)
    labels = rest[0] if len(rest) > 0 else zeros
    domains = rest[1] if len(rest) > 1 else zeros
    return images, torch.as_tensor(labels).long(), torch.as_tensor(domains).long()


def _loader(
    data: Any, settings: _Settings, epoch: int, sampler: Any, num_workers: int, device: Any
) -> Any:
    """The epoch's DataLoader, its order drawn from a generator seeded by (seed, epoch)."""
    import torch
    from torch.utils.data import DataLoader

    seed = np.random.SeedSequence([settings.seed, epoch]).generate_state(1)[0]
    generator = torch.Generator().manual_seed(int(seed))
    if sampler is not None and hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    _set_epoch(data, epoch)
    size = len(sampler) if sampler is not None else len(data)
    return DataLoader(
        data,
        batch_size=settings.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generator,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        drop_last=size > settings.batch_size,
    )


def _set_epoch(data: Any, epoch: int) -> None:
    """Let a dataset (under any ``Subset``) draw the augmentations of ``epoch``.

    DataLoader workers are started for each epoch, so they take the dataset as it is now.
    """
    while hasattr(data, "dataset") and not hasattr(data, "set_epoch"):
        data = data.dataset
    if hasattr(data, "set_epoch"):
        data.set_epoch(epoch)


def _dann_lambda(weight: float, done: float) -> float:
    """DANN's gradient-reversal coefficient after the fraction ``done`` of training."""
    return weight * (2.0 / (1.0 + math.exp(-10.0 * done)) - 1.0)


def _check_settings(settings: _Settings, train_data: Any) -> None:
    if settings.arch not in _ARCHITECTURES:
        raise ValueError(f"arch must be one of {_ARCHITECTURES}, got {settings.arch!r}")
    if settings.n_classes < 2:
        raise ValueError(
            f"n_classes must be at least 2 to train a classifier, got {settings.n_classes}; "
            "train on data with two or more label values"
        )
    if settings.adversarial_weight > 0 and settings.n_domains < 2:
        raise ValueError(
            f"adversarial_weight={settings.adversarial_weight} needs at least 2 domains "
            f"(batches) to tell apart, but n_domains={settings.n_domains}; pass "
            "n_domains=len(dataset.domains) with a batch column, or adversarial_weight=0"
        )
    for name in ("epochs", "batch_size"):
        if getattr(settings, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(settings, name)}")
    if settings.reconstruction_weight < 0 or settings.adversarial_weight < 0:
        raise ValueError("reconstruction_weight and adversarial_weight must be 0 or more")
    if len(train_data) == 0:
        raise ValueError("the training data has no samples; check the split's train part")


def _check_batch(images: Any, labels: Any, domains: Any, settings: _Settings) -> None:
    """Refuse a first batch that does not fit the settings, saying what to pass instead."""
    planes = settings.arch == "r3d_18"
    if images.ndim != (5 if planes else 4):
        shape = "(C, Z, Y, X)" if planes else "(C, Y, X)"
        raise ValueError(
            f"{settings.arch} takes {shape} images but the training data gives "
            f"{tuple(images.shape[1:])}; use r3d_18 for Z stacks and resnet18 or resnet50 for "
            "2D crops"
        )
    if images.shape[1] != settings.in_channels:
        raise ValueError(
            f"in_channels={settings.in_channels} but the training images have "
            f"{images.shape[1]} channels; pass in_channels={images.shape[1]}"
        )
    _check_indices("label", labels, "n_classes", settings.n_classes, "classes")
    if settings.adversarial_weight > 0:
        _check_indices("domain", domains, "n_domains", settings.n_domains, "domains")


def _check_indices(kind: str, values: Any, name: str, count: int, values_of: str) -> None:
    outside = values[(values < 0) | (values >= count)]
    if len(outside):
        raise ValueError(
            f"{kind}s must be indices 0..{count - 1} for {name}={count}, but the first batch "
            f"has {kind} {int(outside[0])}; pass {name}=len(dataset.{values_of}), or give the "
            f"dataset {kind}s as indices into its sorted {values_of}"
        )


def _device(choice: str, torch: Any) -> Any:
    from cellscale.embedding._torch import _device as embedder_device

    if choice not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {choice!r}")
    return embedder_device(choice, torch)


def _autocast_dtype(precision: str, device: Any, torch: Any) -> Any:
    """The autocast dtype (``None``: float32 throughout)."""
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {_PRECISIONS}, got {precision!r}")
    if device.type != "cuda":
        if precision in ("bf16", "fp16"):
            raise ValueError(
                f"precision={precision!r} needs a GPU (mixed precision runs on CUDA only) but "
                "training runs on the CPU; pass precision='auto' or 'fp32'"
            )
        return None
    return {"auto": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def _fingerprint(
    settings: _Settings,
    autocast: Any,
    train_data: Any,
    validation_data: Any,
    sampler: Any,
    data_token: str | None,
) -> Fingerprint:
    precision = {None: "fp32"}.get(autocast, str(autocast).removeprefix("torch."))
    return Fingerprint(
        "train",
        inputs={
            "data token": data_token,
            "training samples": len(train_data),
            "validation samples": 0 if validation_data is None else len(validation_data),
            "sampler": None if sampler is None else type(sampler).__name__,
        },
        parameters={
            **asdict(settings),
            "precision": precision,
            "optimizer": "AdamW",
            "schedule": "cosine",
            "domain head steps": DOMAIN_HEAD_STEPS if settings.adversarial_weight > 0 else 0,
        },
    )


def _seed_everything(seed: int, torch: Any) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (augmentations may draw from it)
    random.seed(seed)


@contextmanager
def _deterministic(device: Any, torch: Any) -> Iterator[None]:
    """Deterministic algorithms on a CPU for the block; the caller's setting after it."""
    if device.type != "cpu":
        yield
        return
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
