"""A training run's output folder: per-epoch checkpoints, metrics and the trained weights.

The folder holds ``checkpoints/epoch-NNNN.pt`` (the latest complete epoch only),
``metrics.parquet``, and at the end ``weights.pt`` (the backbone, for the embedder) and
``model.pt`` (the classifier with its heads). Every file is written whole
(:func:`~cellscale._stages.atomic_path`) as a :class:`~cellscale._stages.FileOutput`, with
a record of its checksum and of the :class:`~cellscale._stages.Fingerprint` of the training
settings; the fingerprint also sits in ``.cellscale-training.json``, so resuming with other
settings is refused before anything is written. A checkpoint holds the model, optimiser,
learning-rate scheduler and gradient scaler states, the epoch, the RNG states of torch,
numpy and Python, and the metrics of every epoch so far.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cellscale._stages import (
    DamagedOutputError,
    FileOutput,
    Fingerprint,
    atomic_path,
    check_fingerprint,
    remove_partials,
)

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from cellscale.learning._models import CellClassifier

__all__ = ["TrainingFolder", "load_model_state", "make_checkpoint", "restore_checkpoint"]

_CHECKPOINT = re.compile(r"epoch-(\d+)\.pt")
_OUTPUTS = ("checkpoints", "weights.pt", "model.pt", "metrics.parquet")


class TrainingFolder:
    """The output folder of one training run.

    Parameters
    ----------
    out
        The folder (made if missing).
    fingerprint
        The training settings and a token of the data.
    """

    def __init__(self, out: str | Path, fingerprint: Fingerprint) -> None:
        self.out = Path(out)
        self.fingerprint = fingerprint

    @property
    def weights(self) -> Path:
        """``weights.pt``: the backbone's state dict."""
        return self.out / "weights.pt"

    @property
    def model(self) -> Path:
        """``model.pt``: the classifier's settings and state dict, heads included."""
        return self.out / "model.pt"

    @property
    def metrics(self) -> Path:
        """``metrics.parquet``: one row per epoch."""
        return self.out / "metrics.parquet"

    def prepare(self, *, overwrite: bool = False) -> None:
        """Check the folder was made with these settings, or clear it (``overwrite``); record them.

        Call it while holding :func:`~cellscale._stages.output_lock` on the folder.

        Raises
        ------
        StaleOutputError
            If the folder holds a run with other settings or data (each difference named)
            or training outputs without a record of their settings, and not ``overwrite``.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        record = self.out / ".cellscale-training.json"
        stored = Fingerprint.from_json(json.loads(record.read_text())) if record.exists() else None
        remove_partials(self.out)
        if stored is not None and not stored.differences(self.fingerprint):
            return  # made with these settings: resume it
        if overwrite:
            self._clear()
        elif stored is not None or any((self.out / name).exists() for name in _OUTPUTS):
            check_fingerprint(stored, self.fingerprint, self.out)
        with atomic_path(record) as partial:
            partial.write_text(json.dumps(self.fingerprint.to_json(), indent=1, sort_keys=True))

    def latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The last complete checkpoint and its path, or ``None`` when no epoch finished.

        Raises
        ------
        DamagedOutputError
            If that checkpoint's bytes changed since it was written or it cannot be read,
            naming the file.
        """
        import torch

        for path in sorted(self._checkpoints(), key=_epoch, reverse=True):
            output = FileOutput(path)
            if output.fingerprint() is None:
                continue  # its write never finished: the one before is the last complete
            if output.problem(fresh=True) is not None:
                why = "its checksum differs from the one recorded when it was written"
                raise _damaged(path, why)
            try:
                checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as err:
                raise _damaged(path, f"it cannot be read ({err})") from err
            return path, dict(checkpoint)
        return None

    def save(self, checkpoint: Mapping[str, Any]) -> Path:
        """Write the checkpoint of ``checkpoint["epoch"]``, then remove older ones."""
        import torch

        epoch = int(checkpoint["epoch"])
        path = self.out / "checkpoints" / f"epoch-{epoch:04d}.pt"
        FileOutput(path).write(
            self.fingerprint, lambda partial: torch.save(dict(checkpoint), partial), overwrite=True
        )
        for older in self._checkpoints():
            if _epoch(older) < epoch:
                FileOutput(older).record_path.unlink(missing_ok=True)
                older.unlink(missing_ok=True)
        return path

    def write_metrics(self, metrics: pd.DataFrame) -> None:
        """Write ``metrics.parquet`` whole."""
        FileOutput(self.metrics).write(
            self.fingerprint,
            lambda partial: metrics.to_parquet(partial, index=False),
            overwrite=True,
        )

    def write_model(self, model: CellClassifier) -> None:
        """Write ``weights.pt`` (the backbone) and ``model.pt`` (the classifier), each whole."""
        import torch

        payload = {"config": model.config, "state_dict": model.state_dict()}
        FileOutput(self.weights).write(
            self.fingerprint,
            lambda partial: torch.save(model.backbone_state_dict(), partial),
            overwrite=True,
        )
        FileOutput(self.model).write(
            self.fingerprint, lambda partial: torch.save(payload, partial), overwrite=True
        )

    def finished(self) -> bool:
        """Whether ``weights.pt``, ``model.pt`` and the metrics were written whole with these
        settings."""
        return all(
            FileOutput(path).state(self.fingerprint) == "current"
            for path in (self.weights, self.model, self.metrics)
        )

    def _checkpoints(self) -> list[Path]:
        folder = self.out / "checkpoints"
        return [p for p in folder.glob("epoch-*.pt") if _CHECKPOINT.fullmatch(p.name)]

    def _clear(self) -> None:
        for name in _OUTPUTS:
            path = self.out / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                FileOutput(path).record_path.unlink(missing_ok=True)
                path.unlink(missing_ok=True)


def make_checkpoint(
    epoch: int,
    *,
    model: torch.nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    metrics: list[dict[str, float]],
) -> dict[str, Any]:
    """Everything that resuming after ``epoch`` needs to continue exactly as if never stopped."""
    return {
        "epoch": int(epoch),
        "model": model.state_dict(),
        "optimizers": {name: optimizer.state_dict() for name, optimizer in optimizers.items()},
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": _rng_state(),
        "metrics": [dict(row) for row in metrics],
    }


def restore_checkpoint(
    checkpoint: Mapping[str, Any],
    *,
    model: torch.nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    where: str | Path,
) -> list[dict[str, float]]:
    """Put a checkpoint's states back (the RNGs included); its metrics so far.

    Raises
    ------
    ValueError
        If its model state does not fit ``model`` (another architecture, channels or heads).
    """
    load_model_state(model, checkpoint["model"], where)
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(checkpoint["optimizers"][name])
    scheduler.load_state_dict(checkpoint["scheduler"])
    scaler.load_state_dict(checkpoint["scaler"])
    _set_rng_state(checkpoint["rng"])
    return [dict(row) for row in checkpoint["metrics"]]


def load_model_state(model: torch.nn.Module, state: Mapping[str, Any], where: str | Path) -> None:
    """Load ``state`` into ``model`` if every key and shape fits.

    Raises
    ------
    ValueError
        Naming ``where``, the model and a few of the differing keys and shapes, and the fix.
    """
    from cellscale.embedding._torch import _mismatch

    mismatch = _mismatch(model.state_dict(), state)
    if mismatch:
        config = getattr(model, "config", {})
        raise ValueError(
            f"the weights in {where} do not fit {config.get('arch', type(model).__name__)} "
            f"with {config.get('in_channels', '?')} input channels and these heads "
            f"({config}): {mismatch}. They were written by another model: train into "
            "another folder, or pass overwrite=True to start again"
        )
    model.load_state_dict(state, strict=True)


def _epoch(path: Path) -> int:
    match = _CHECKPOINT.fullmatch(path.name)
    return int(match.group(1)) if match else -1


def _damaged(path: Path, why: str) -> DamagedOutputError:
    return DamagedOutputError(
        f"the checkpoint {path} is damaged: {why}. Delete it and its record "
        f"{FileOutput(path).record_path.name} to resume from the epoch before, or pass "
        "overwrite=True to train again from the start"
    )


def _rng_state() -> dict[str, Any]:
    import torch

    name, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, np.asarray(keys).tolist(), int(position), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    cuda = list(state["cuda"])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, position, has_gauss, gauss = state["numpy"]
    keys = np.asarray(keys, dtype=np.uint32)
    np.random.set_state((name, keys, position, has_gauss, gauss))  # noqa: NPY002
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
