"""``cellscale.train``: a classifier on a screen's cells, split without leaks, then evaluated.

A training folder holds::

    split.json          the wells (and batches) of each part, made once and reused
    model/              checkpoints per epoch, metrics.parquet, weights.pt, model.pt
    evaluation/         metrics, per-batch, confusion and per-well tables; figures

``model/weights.pt`` is the backbone's state dict: ``cellscale.embed(crops, model,
weights=...)`` and a run's ``embed.weights`` take it unchanged. Every part is an output
with the fingerprint of what made it: a rerun resumes the training from its last epoch,
reuses the split and the evaluation when nothing changed, and refuses (naming each
difference) a folder made from other cells or settings unless ``overwrite``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from dask.base import tokenize

from cellscale._files import file_sha256
from cellscale._stages import FileOutput, Fingerprint
from cellscale.cells import CELL_ID
from cellscale.learning._sources import PlateInput, plate_inputs

__all__ = ["INPUTS", "Training", "train"]

#: What a model is trained on: single-cell crops cut on the fly, or whole fields (sites).
INPUTS = ("cells", "fields")

_SPLIT_KEYS = ("test", "validation", "hold_out", "seed")


@dataclass(frozen=True)
class Training:
    """What :func:`train` made.

    Attributes
    ----------
    folder
        The training folder.
    weights
        The backbone's weights (``model/weights.pt``), for embedding.
    model
        The whole classifier, heads included (``model/model.pt``).
    classes, domains
        The class names (index order) and the batches (``["all"]`` without a domain column).
    history
        One row per epoch: losses and accuracies.
    epochs_run
        The epochs this call trained (0 when the folder held the finished training).
    evaluation
        The tables of :func:`~cellscale.learning._evaluate.evaluate` on every part other
        than training, with ``batch_from_features`` in ``metrics`` when there are batches
        (how well the features of a part's samples, each class's mean removed, tell its
        batches apart; chance is 1 / batches).
    """

    folder: Path
    weights: Path
    model: Path
    classes: list[str]
    domains: list[str]
    history: pd.DataFrame
    epochs_run: int
    evaluation: dict[str, pd.DataFrame]

    def __str__(self) -> str:
        metrics = self.evaluation["metrics"]
        lines = [f"trained on {len(self.classes)} classes; weights: {self.weights}"]
        for row in metrics.itertuples():
            lines.append(
                f"  {row.split:<15} {row.n:>7} samples  accuracy {row.accuracy:.3f}  balanced "
                f"{row.balanced_accuracy:.3f}  chance {row.chance:.3f}"
            )
        return "\n".join(lines)


def train(
    source: Any,
    out: str | Path,
    *,
    label: str | Sequence[str],
    domain: str | None = None,
    split: Mapping[str, Any] | None = None,
    inputs: str = "cells",
    images: str = "projected",
    size: int | Sequence[int] = 64,
    mask: str = "soft",
    compartment: str | None = None,
    downsample: int = 1,
    model: str = "resnet18",
    reconstruction: float = 0.0,
    adversarial: float = 0.0,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    augment: bool = True,
    balance: bool = False,
    seed: int = 0,
    device: str = "auto",
    precision: str = "auto",
    num_workers: int = 0,
    client: Any = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Training:
    """Train a classifier on a screen's cells (or fields); evaluate it on held-out wells, batches.

    Parameters
    ----------
    source
        A :func:`cellscale.run` output folder, or a list of plates: mappings with
        ``plate`` (a plate store or DataArray), ``cells`` (its cell table) and optionally
        ``labels`` (the store with the labels, for masks) and ``name``.
    out
        The training folder (see the module's description).
    label
        The column (or columns, joined as ``"a | b"``) whose values are the classes:
        ``Metadata_treatment``, ``Metadata_concentration``, ``Metadata_Timepoint``, or a
        plate-map column by its short name (``"treatment"``).
    domain
        The batch column (``Metadata_Batch``, ``Metadata_Plate``) for per-batch accuracy,
        the adversarial head and ``batch_from_features``.
    split
        ``test`` and ``validation``: the fractions of each class's wells held out (default
        0.2 and 0.1); ``hold_out``: ``{column: value or [values]}`` held out entirely (a
        batch, a plate); ``seed``. Wells never straddle parts. The split is saved as
        ``split.json`` and reused.
    inputs
        ``"cells"`` (crops of ``size`` pixels cut around each cell, ``mask``:
        ``none``, ``hard`` or ``soft``) or ``"fields"`` (whole sites, block-averaged by
        ``downsample``; labels come from the plate map).
    images
        For a run folder: crops from ``"projected"`` images (2D) or the ``"raw"`` Z stacks
        (3D crops, for ``model="r3d_18"``).
    size, mask, compartment, downsample
        The crops (as :func:`cellscale.extract_crops`) or the fields' block size.
    model
        ``"resnet18"``, ``"resnet50"`` or ``"r3d_18"``, randomly initialised.
    reconstruction, adversarial
        Weights of the autoencoder head's loss and of the domain-adversarial head's
        gradient reversal (0: no such head); ``adversarial`` needs ``domain``.
    epochs, batch_size, lr, weight_decay, seed, device, precision, num_workers
        As for :func:`cellscale.learning.fit`.
    augment
        Random flips, 90° rotations and per-channel intensity jitter in training.
    balance
        Draw every class equally often (random reads); otherwise samples are shuffled a
        few chunks (fields) at a time, so each field is read once per epoch.
    client
        A ``distributed.Client``: training runs as one task on a GPU-tagged worker when the
        cluster has one (the folder must be on a shared filesystem).
    progress
        Show progress bars.
    overwrite
        Replace a training folder made from other cells or settings.

    Returns
    -------
    Training

    Raises
    ------
    ValueError
        For a label or domain column that does not exist (with "did you mean") or has one
        class, a split that leaves a class out of training or holds out a batch that does
        not exist, or settings that cannot train; each message names the fix.
    StaleOutputError
        If ``out`` holds a training of other cells or settings and not ``overwrite``.
    """
    from cellscale.learning._evaluate import evaluate

    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")
    if adversarial and domain is None:
        raise ValueError("adversarial training removes a batch effect: pass domain=<batch column>")
    out = Path(out)
    plates = plate_inputs(source, images=images)
    data = _Data(plates, label, domain, inputs, size, mask, compartment, downsample, seed)
    augmented, plain = data.datasets(augment)
    chosen = _split(plain.rows, split, data.token, out, overwrite)
    parts = chosen.indices(plain.rows)
    trained = _fit(
        augmented,
        plain,
        parts,
        data,
        out / "model",
        model=model,
        reconstruction=reconstruction,
        adversarial=adversarial,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        balance=balance,
        seed=seed,
        device=device,
        precision=precision,
        num_workers=num_workers,
        client=client,
        progress=progress,
        overwrite=overwrite,
        data_token=tokenize(data.token, _groups(chosen), augment, balance),
    )

    def assess(partial: Path) -> None:
        predictions, features = _predictions(trained.model, plain, parts, batch_size, device)
        result = evaluate(predictions)
        if len(plain.domains) > 1:
            result = replace(result, metrics=_batch_from_features(result, predictions, features))
        _write_evaluation(result, partial)

    evaluation = FileOutput(out / "evaluation")
    made = Fingerprint(
        "evaluation",
        inputs={"model": file_sha256(trained.model)},
        parameters={"split": _groups(chosen), "data": data.token},
    )
    if evaluation.state(made) != "current":
        evaluation.write(made, assess, overwrite=True)
    tables = {
        name: pd.read_parquet(evaluation.open() / f"{name}.parquet")
        for name in ("metrics", "per_batch", "confusion", "per_well")
    }
    return Training(
        folder=out,
        weights=trained.weights,
        model=trained.model,
        classes=list(plain.classes),
        domains=list(plain.domains),
        history=trained.metrics,
        epochs_run=trained.epochs_run,
        evaluation=tables,
    )


class _Data:
    """The screen's samples: one dataset per plate, with the classes of all of them."""

    def __init__(
        self,
        plates: list[PlateInput],
        label: str | Sequence[str],
        domain: str | None,
        inputs: str,
        size: int | Sequence[int],
        mask: str,
        compartment: str | None,
        downsample: int,
        seed: int,
    ) -> None:
        self.plates, self.label, self.domain, self.inputs = plates, label, domain, inputs
        self.size, self.mask, self.compartment = size, mask, compartment
        self.downsample, self.seed = downsample, seed
        self.tables = [self._table(p) for p in plates] if inputs == "cells" else None
        self.classes, self.domains = self._names()
        self.token = tokenize(
            [_identity(p) for p in plates],
            label,
            domain,
            inputs,
            size if inputs == "cells" else downsample,
            mask if inputs == "cells" else None,
            compartment,
        )

    def _table(self, plate: PlateInput) -> pd.DataFrame:
        import cellscale

        if plate.cells is None:
            raise ValueError(f"plate {plate.name!r} has no cell table to cut crops from")
        if isinstance(plate.cells, pd.DataFrame):
            return plate.cells
        table = cellscale.read_cells(plate.cells)
        named = {self.domain, *([self.label] if isinstance(self.label, str) else self.label)}
        kept = [c for c in table.columns if _needed(c) or c in named]
        return table[kept].compute()  # not the features: a screen's tables are large

    def _names(self) -> tuple[list[str], list[str]]:
        """The classes and domains of every plate together (as one dataset would name them)."""
        from cellscale.learning._dataset import _field_rows, _open_plate, _targets

        if self.tables is not None:
            table = pd.concat(self.tables, ignore_index=True)
        else:
            fields = [_field_rows(_open_plate(p.plate))[1] for p in self.plates]
            table = pd.concat(fields, ignore_index=True)
        _, classes, _, domains, _ = _targets(
            table, self.label, self.domain, None, None, "the screen's cells"
        )
        return classes, domains

    def datasets(self, augment: bool) -> tuple[Any, Any]:
        """The screen's samples with training's augmentations, and without."""
        from cellscale.learning._augment import Augment
        from cellscale.learning._screen import ScreenDataset

        jitter = Augment(scale=(0.8, 1.25), shift=(-0.2, 0.2)) if augment else None
        return (
            ScreenDataset([self._part(i, jitter) for i in range(len(self.plates))]),
            ScreenDataset([self._part(i, None) for i in range(len(self.plates))]),
        )

    def _part(self, index: int, augment: Any) -> Any:
        from cellscale.learning._dataset import CellDataset, FieldDataset

        plate = self.plates[index]
        common = {
            "domain": self.domain,
            "augment": augment,
            "classes": self.classes,
            "domains": self.domains,
            "seed": self.seed,
        }
        if self.tables is None:
            return FieldDataset(plate.plate, self.label, downsample=self.downsample, **common)
        return CellDataset(
            plate.plate,
            self.tables[index],
            self.label,
            size=self.size,
            mask=self.mask,
            labels=plate.labels if self.mask != "none" else None,
            compartment=self.compartment,
            **common,
        )


def _needed(column: str) -> bool:
    """Whether crops and labels need a cell-table column: ids, metadata, centres."""
    return column == CELL_ID or column.startswith("Metadata_") or "_AreaShape_Center_" in column


def _identity(plate: PlateInput) -> Any:
    """A plate's inputs by content: its images' token and its cell table's digest."""
    from cellscale.learning._dataset import _open_plate
    from cellscale.measurement import cells_digest

    cells: str | None = None
    if isinstance(plate.cells, pd.DataFrame):
        cells = tokenize(plate.cells)
    elif plate.cells is not None:
        cells = cells_digest(plate.cells)
    return [plate.name, _open_plate(plate.plate).data.name, cells]


def _split(
    rows: pd.DataFrame, spec: Mapping[str, Any] | None, data: str, out: Path, overwrite: bool
) -> Any:
    """The split saved in ``out`` if it was made from these rows and ``spec``, else a new one."""
    from cellscale.learning._splits import Split, split_by_group, split_by_well

    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(_SPLIT_KEYS))
    if unknown:
        raise ValueError(f"split: unknown keys {unknown}; known keys: {list(_SPLIT_KEYS)}")
    test, validation = float(spec.get("test", 0.2)), float(spec.get("validation", 0.1))
    seed, hold_out = int(spec.get("seed", 0)), spec.get("hold_out")
    saved = FileOutput(out / "split.json")
    made = Fingerprint(
        "split",
        inputs={"data": data},
        parameters={"test": test, "validation": validation, "hold_out": hold_out, "seed": seed},
    )
    if saved.state(made) == "current":
        split = Split.load(saved.open())
        split.check(rows)
        return split
    if hold_out:
        if not isinstance(hold_out, Mapping) or len(hold_out) != 1:
            raise ValueError(
                "split.hold_out holds out one column's values: {'Metadata_Batch': ['b3']}, "
                f"got {hold_out!r}"
            )
        ((column, values),) = hold_out.items()
        split = split_by_group(
            rows,
            _metadata(rows, str(column)),
            values,
            test=test,
            validation=validation,
            seed=seed,
        )
    else:
        split = split_by_well(rows, test=test, validation=validation, seed=seed)
    saved.write(made, split.save, overwrite=overwrite)
    return split


def _groups(split: Any) -> dict[str, list[str]]:
    """A split's groups in a stable order (a set's order changes between processes)."""
    return {part: sorted(map(repr, groups)) for part, groups in split.parts.items()}


def _metadata(rows: pd.DataFrame, column: str) -> str:
    """``column`` as the rows name it (``Batch`` is ``Metadata_Batch`` of a cell table)."""
    from cellscale.cells import metadata_column

    if column in rows.columns or metadata_column(column) not in rows.columns:
        return column
    return metadata_column(column)


def _fit(
    augmented: Any,
    plain: Any,
    parts: dict[str, np.ndarray],
    data: _Data,
    folder: Path,
    *,
    model: str,
    reconstruction: float,
    adversarial: float,
    balance: bool,
    seed: int,
    client: Any,
    **options: Any,
) -> Any:
    from torch.utils.data import Subset

    from cellscale.learning._dataset import ChunkShuffleSampler, balanced_sampler
    from cellscale.learning._train import fit, fit_on_cluster

    training = Subset(augmented, parts["train"].tolist())
    validation = parts.get("validation", np.zeros(0, np.int64))
    sampler = balanced_sampler(training, seed) if balance else ChunkShuffleSampler(training, seed)
    image = plain[int(parts["train"][0])][0]
    arguments = {
        "train_data": training,
        "arch": model,
        "in_channels": int(image.shape[0]),
        "n_classes": len(data.classes),
        "out": folder,
        "validation_data": Subset(plain, validation.tolist()) if len(validation) else None,
        "n_domains": len(data.domains) if adversarial else 0,
        "reconstruction_weight": reconstruction,
        "adversarial_weight": adversarial,
        "seed": seed,
        "sampler": sampler,
        **options,
    }
    return fit(**arguments) if client is None else fit_on_cluster(client, **arguments)


def _predictions(
    model: Path, plain: Any, parts: dict[str, np.ndarray], batch_size: int, device: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """Every evaluated sample's prediction (all parts but training), and its features."""
    from torch.utils.data import Subset

    from cellscale.learning._train import predict

    frames, features = [], []
    for part, positions in parts.items():
        if part == "train" or not len(positions):
            continue
        predicted, feature = predict(
            model, Subset(plain, positions.tolist()), batch_size=batch_size, device=device
        )
        rows = plain.rows.iloc[positions]
        frames.append(
            pd.DataFrame(
                {
                    "label": rows["label"].to_numpy(),
                    "predicted": np.asarray(plain.classes, dtype=object)[predicted],
                    "domain": rows["domain"].to_numpy(),
                    "Metadata_Plate": rows["Metadata_Plate"].astype(str).to_numpy(),
                    "Metadata_Well": rows["Metadata_Well"].astype(str).to_numpy(),
                    "split": part,
                }
            )
        )
        features.append(feature)
    if not frames:
        raise ValueError("the split holds nothing out to evaluate on: give split test > 0")
    return pd.concat(frames, ignore_index=True), np.concatenate(features)


def _batch_from_features(
    result: Any, predictions: pd.DataFrame, features: np.ndarray
) -> pd.DataFrame:
    """The metrics with how well each part's features tell its batches apart (chance 1/n).

    Each class's mean is subtracted from its samples' features first, so that a part whose
    batches hold the classes in other proportions does not look batch-ridden; the batch
    is then predicted on wells held out (:func:`domain_predictability`). ``NaN`` where a
    part has fewer than two batches of two wells each (a part holding one batch out).
    """
    from cellscale.learning._evaluate import domain_predictability

    metrics = result.metrics.copy()
    scores = []
    for part in metrics["split"]:
        chosen = (predictions["split"] == part).to_numpy()
        rows = predictions[chosen]
        centred = features[chosen].astype(np.float64)
        for label in rows["label"].unique():
            of_class = (rows["label"] == label).to_numpy()
            centred[of_class] -= centred[of_class].mean(axis=0)
        wells = (rows["Metadata_Plate"] + "/" + rows["Metadata_Well"]).to_numpy()
        try:
            scores.append(domain_predictability(centred, rows["domain"].to_numpy(), groups=wells))
        except ValueError:
            scores.append(float("nan"))
    metrics["batch_from_features"] = scores
    return metrics


def _write_evaluation(result: Any, folder: Path) -> None:
    import matplotlib.pyplot as plt

    from cellscale.learning._evaluate import plot_confusion, plot_per_batch, write_evaluation

    folder.mkdir(parents=True, exist_ok=True)
    write_evaluation(result, folder)
    for part in result.metrics["split"]:
        plt.close(plot_confusion(result.confusion, part, path=folder / f"confusion-{part}.png"))
    plt.close(plot_per_batch(result.per_batch, path=folder / "per_batch.png"))
