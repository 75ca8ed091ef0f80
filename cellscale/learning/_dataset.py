"""Torch datasets over a screen: stored crops, crops cut on the fly, and whole fields.

Every sample is ``(image, label, domain)``: a float32 ``(C, Y, X)`` or ``(C, Z, Y, X)``
tensor, the index of its class in ``.classes`` and of its batch in ``.domains``. Each
dataset's ``.rows`` holds one row per sample (plate, well, site, the label and domain
names, ``cell_id`` for cells), which splits (:mod:`cellscale.learning._splits`) and
evaluation work on.

Datasets pickle small, for DataLoader workers: an input given as a path is opened on
first use in each process, and caches of decoded chunks or fields empty themselves when
pickled. Reads stay local: a dataset keeps the last few chunks (crops) or fields (cells)
it decoded, and :class:`ChunkShuffleSampler` visits the samples chunk by chunk, shuffled
within a window of a few chunks, so each chunk is decoded once per epoch and process.

This module imports torch: import it on demand only.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch.utils.data import Dataset, Sampler, Subset, WeightedRandomSampler

from cellscale.cells import CELL_ID, metadata_column
from cellscale.crops._cut import MASKS, cut_field
from cellscale.crops._extract import _box, _centres, _field_images, _fields, _spatial
from cellscale.learning._augment import Augment, augment_rng
from cellscale.plate import as_plate, plate_map_columns

__all__ = [
    "NORMALIZE",
    "CellDataset",
    "ChunkShuffleSampler",
    "CropDataset",
    "FieldDataset",
    "balanced_sampler",
    "balanced_weights",
]

#: How images can be normalised: each channel of each image to zero mean and unit variance.
NORMALIZE = ("per-crop", None)

#: The domain of every sample when no domain column is given.
NO_DOMAIN = "all"

_WELL_COLUMNS = ["Metadata_Plate", "Metadata_Well"]


class _Handle:
    """An input opened on first use in each process; only its source is pickled."""

    def __init__(self, source: Any, opener: Callable[[Any], Any]) -> None:
        self.source, self.opener, self._value = source, opener, None

    def get(self) -> Any:
        if self._value is None:
            self._value = self.opener(self.source)
        return self._value

    def __getstate__(self) -> dict[str, Any]:
        return {"source": self.source, "opener": self.opener, "_value": None}


class _Recent:
    """The last few decoded chunks or fields, by key; pickles empty."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"the cache must hold at least one chunk, got {size}")
        self.size, self._items = size, OrderedDict[Any, Any]()

    def get(self, key: Any, load: Callable[[Any], Any]) -> Any:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self._items[key] = load(key)
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def __getstate__(self) -> dict[str, Any]:
        return {"size": self.size, "_items": OrderedDict()}


def _text(value: Any) -> str:
    """A class name: whole floats without their ``.0``."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _column(columns: Sequence[str], name: str, role: str, where: str) -> str:
    """``name`` or its ``Metadata_`` column; an error with near names if neither exists."""
    for candidate in (name, metadata_column(name)):
        if candidate in columns:
            return candidate
    near = difflib.get_close_matches(name, columns, n=3) or difflib.get_close_matches(
        metadata_column(name), columns, n=3
    )
    hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else "."
    raise ValueError(
        f"the {role} column {name!r} is not in {where}{hint} Its columns are {list(columns)}"
    )


def _columns(table: pd.DataFrame, names: str | Sequence[str], role: str, where: str) -> list[str]:
    """The table's columns named by ``names`` (one or several)."""
    wanted = [names] if isinstance(names, str) else list(names)
    if not wanted:
        raise ValueError(f"give the {role}: a column of {where}, or a list of its columns")
    return [_column(list(table.columns), name, role, where) for name in wanted]


def _encode(
    frame: pd.DataFrame, role: str, names: Sequence[str] | None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Class names (sorted by value), each row's class index and name, of ``frame``'s columns."""
    columns = list(frame.columns)
    missing = frame.isna().any(axis=1).to_numpy()
    if missing.any():
        raise ValueError(
            f"the {role} columns {columns} have {int(missing.sum())} missing values (first at "
            f"row {int(np.argmax(missing))}); drop those rows first "
            f"(table.dropna(subset={columns})) or fill them"
        )
    values = frame.drop_duplicates()
    try:
        values = values.sort_values(columns)
    except TypeError:  # mixed types in a column: sort by their names
        values = values.iloc[np.argsort(values.map(_text).agg(" | ".join, axis=1).to_numpy())]
    value_names = values.map(_text).agg(" | ".join, axis=1).to_numpy(dtype=object)
    position = pd.MultiIndex.from_frame(values).get_indexer(pd.MultiIndex.from_frame(frame))
    row_names = value_names[position]
    if names is None:
        names = list(dict.fromkeys(value_names))
    unknown = sorted(set(value_names) - set(names))
    if unknown:
        raise ValueError(
            f"the {role} values {unknown} are not among the given {role} names {list(names)}; "
            "build this dataset with the classes of the one it is compared with, on rows they share"
        )
    codes = pd.Index(list(names)).get_indexer(row_names)
    return list(names), codes.astype(np.int64), row_names


def _targets(
    table: pd.DataFrame,
    label: str | Sequence[str],
    domain: str | Sequence[str] | None,
    classes: Sequence[str] | None,
    domains: Sequence[str] | None,
    where: str,
) -> tuple[pd.DataFrame, list[str], np.ndarray, list[str], np.ndarray]:
    """The rows with ``label`` and ``domain`` names, the class and domain lists and indices."""
    label_columns = _columns(table, label, "label", where)
    class_names, labels, label_names = _encode(table[label_columns], "label", classes)
    if classes is None and len(class_names) < 2:
        raise ValueError(
            f"the label {label_columns} has one class ({class_names}) in {where}; a classifier "
            "needs at least two: choose another label column or add samples of other classes"
        )
    domain_columns = [] if domain is None else _columns(table, domain, "domain", where)
    if domain_columns:
        domain_names, domain_codes, domain_text = _encode(table[domain_columns], "domain", domains)
    else:
        domain_names, domain_codes = [NO_DOMAIN], np.zeros(len(table), np.int64)
        domain_text = np.full(len(table), NO_DOMAIN, dtype=object)
    keep = [c for c in table.columns if c == CELL_ID or c.startswith("Metadata_")]
    keep += [c for c in (*label_columns, *domain_columns) if c not in keep]
    rows = table[keep].reset_index(drop=True).assign(label=label_names, domain=domain_text)
    return rows, class_names, labels, domain_names, domain_codes


def _normalize(image: np.ndarray, normalize: str | None) -> np.ndarray:
    """Each channel to zero mean and unit variance (a flat channel to zeros)."""
    if normalize is None:
        return image
    axes = tuple(range(1, image.ndim))
    mean = image.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = image.std(axis=axes, keepdims=True, dtype=np.float64)
    return ((image - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def _pandas(cells: Any) -> pd.DataFrame:
    """The cell table as pandas (a dask table is computed)."""
    return (cells.compute() if hasattr(cells, "compute") else cells).reset_index(drop=True)


def _open_plate(source: Any) -> xr.DataArray:
    if isinstance(source, str | Path):
        from cellscale.io import open_plate

        return open_plate(source)
    return as_plate(source)


class _Samples(Dataset[tuple[torch.Tensor, int, int]]):
    """What every dataset shares: labels, domains, normalisation, augmentation, epochs."""

    rows: pd.DataFrame
    classes: list[str]
    domains: list[str]
    targets: np.ndarray
    domain_targets: np.ndarray

    def __init__(
        self,
        table: pd.DataFrame,
        label: str | Sequence[str],
        domain: str | Sequence[str] | None,
        *,
        augment: Augment | None,
        normalize: str | None,
        classes: Sequence[str] | None,
        domains: Sequence[str] | None,
        seed: int,
        where: str,
    ) -> None:
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
        if len(table) == 0:
            raise ValueError(f"{where} has no samples")
        self.rows, self.classes, self.targets, self.domains, self.domain_targets = _targets(
            table, label, domain, classes, domains, where
        )
        self.augment = None if augment is None or augment.identity else augment
        self.normalize, self.seed, self.epoch = normalize, seed, 0

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentations of ``epoch`` (each epoch's are different, and repeatable)."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} of a dataset of {len(self)}")
        index %= len(self)
        image = _normalize(self._image(index).astype(np.float32, copy=False), self.normalize)
        if self.augment is not None:
            image = self.augment(image, augment_rng(self.seed, self.epoch, index))
        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        return tensor, int(self.targets[index]), int(self.domain_targets[index])

    def _image(self, index: int) -> np.ndarray:
        raise NotImplementedError


class CropDataset(_Samples):
    """Stored crops, labelled from the cell table.

    Parameters
    ----------
    crops
        A crop store (:func:`cellscale.write_crops`; opened lazily in each process) or a
        ``(cell, c, [z,] y, x)`` DataArray with a ``cell_id`` coordinate
        (:func:`cellscale.extract_crops`); an in-memory one is pickled with its pixels.
    cells
        The cell table (pandas or dask) with ``cell_id`` and the label and domain columns.
        Only crops whose cell is in the table are samples, so a subset of the table makes
        a subset of the crops.
    label
        The column (``"treatment"`` or ``"Metadata_treatment"``), or columns joined as
        ``"a | b"``, whose values are the classes. Numbers are sorted as numbers.
    domain
        The batch column(s), for domain adaptation and per-batch evaluation.
    augment
        Applied after normalisation, drawn from ``(seed, epoch, index)``.
    normalize
        ``"per-crop"`` (each channel of each crop to zero mean and unit variance) or ``None``.
    classes, domains
        The class (domain) names of another dataset, so that indices agree across datasets.
    seed
        Seed of the augmentations.
    cache_chunks
        How many decoded chunks of crops each process keeps.
    """

    def __init__(
        self,
        crops: str | Path | xr.DataArray,
        cells: Any,
        label: str | Sequence[str],
        *,
        domain: str | Sequence[str] | None = None,
        augment: Augment | None = None,
        normalize: str | None = "per-crop",
        classes: Sequence[str] | None = None,
        domains: Sequence[str] | None = None,
        seed: int = 0,
        cache_chunks: int = 4,
    ) -> None:
        from cellscale.crops._write import open_crops

        opened = open_crops(crops) if isinstance(crops, str | Path) else crops
        self._crops = _Handle(crops, _crop_data)
        chunks = (
            opened.data.chunks[0] if hasattr(opened.data, "chunks") else (opened.sizes["cell"],)
        )
        self._bounds = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
        table = _pandas(cells)
        if CELL_ID not in table.columns:
            raise ValueError(f"the cell table has no {CELL_ID!r} column to join the crops on")
        if table[CELL_ID].duplicated().any():
            raise ValueError(f"the cell table repeats some {CELL_ID}s; pass one row per cell")
        where = table.set_index(CELL_ID).index.get_indexer(opened.coords[CELL_ID].values)
        self._crop_rows = np.flatnonzero(where >= 0)
        if not len(self._crop_rows):
            raise ValueError(
                "no crop's cell_id is in the cell table: were the crops cut from another table?"
            )
        joined = table.iloc[where[self._crop_rows]]
        super().__init__(
            joined,
            label,
            domain,
            augment=augment,
            normalize=normalize,
            classes=classes,
            domains=domains,
            seed=seed,
            where="the cell table",
        )
        self._cache = _Recent(cache_chunks)

    def item_chunks(self) -> np.ndarray:
        """The chunk of crops each sample is read from."""
        return np.searchsorted(self._bounds, self._crop_rows, side="right") - 1

    def _image(self, index: int) -> np.ndarray:
        row = int(self._crop_rows[index])
        chunk = int(np.searchsorted(self._bounds, row, side="right") - 1)
        return self._cache.get(chunk, self._read_chunk)[row - self._bounds[chunk]]

    def _read_chunk(self, chunk: int) -> np.ndarray:
        """Decode one chunk of crops."""
        block = self._crops.get()[self._bounds[chunk] : self._bounds[chunk + 1]]
        if hasattr(block, "compute"):
            block = block.compute(scheduler="synchronous")
        return np.asarray(block)


def _crop_data(source: Any) -> Any:
    from cellscale.crops._write import open_crops

    return (open_crops(source) if isinstance(source, str | Path) else source).data


class CellDataset(_Samples):
    """Crops cut on the fly from a plate around the cell table's centres.

    A projected plate gives ``(C, Y, X)`` crops, a plate with Z stacks ``(C, Z, Y, X)``,
    exactly as :func:`cellscale.extract_crops` cuts them. Samples are in field order, and
    each process keeps the last ``cache_fields`` fields it read.

    Parameters
    ----------
    plate
        A plate store (opened lazily in each process) or a plate DataArray.
    cells
        The cell table: ``cell_id``, ``Metadata_Timepoint``, ``Metadata_Well``,
        ``Metadata_Site``, ``Metadata_ObjectNumber``, the compartment's
        ``AreaShape_Center_X/Y[/Z]`` and the label and domain columns. A subset of the
        table makes a subset of the cells.
    label, domain, augment, normalize, classes, domains, seed
        As for :class:`CropDataset`.
    size, mask, compartment
        As for :func:`cellscale.extract_crops`.
    labels
        The labels the table was measured from (a Dataset, or the plate store holding
        them), for ``"hard"`` and ``"soft"`` masks.
    cache_fields
        How many fields each process keeps decoded (at least the window of
        :class:`ChunkShuffleSampler`, so each field is decoded once per epoch).
    """

    def __init__(
        self,
        plate: str | Path | xr.DataArray,
        cells: Any,
        label: str | Sequence[str],
        *,
        size: int | Sequence[int],
        mask: str = "none",
        labels: str | Path | xr.Dataset | None = None,
        compartment: str | None = None,
        domain: str | Sequence[str] | None = None,
        augment: Augment | None = None,
        normalize: str | None = "per-crop",
        classes: Sequence[str] | None = None,
        domains: Sequence[str] | None = None,
        seed: int = 0,
        cache_fields: int = 4,
    ) -> None:
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
        if mask != "none" and labels is None:
            raise ValueError(f"mask={mask!r} needs the labels the cells were measured from")
        opened = _open_plate(plate)
        spatial = _spatial(opened)
        self._box = _box(size, spatial, opened)
        table = _pandas(cells)
        centres, prefix = _centres(table, compartment, len(self._box), spatial)
        fields = [
            (unit, rows)
            for unit, rows in _fields(
                centres.assign(_row=np.arange(len(table))), opened, None, False
            )
            if len(rows)
        ]
        if not fields:
            raise ValueError("the cell table has no cells")
        self._units = [unit for unit, _ in fields]
        ordered = pd.concat([rows for _, rows in fields])
        axes = ("Z", "Y", "X")[-len(self._box) :]
        self._centres = ordered[[f"{prefix}_AreaShape_Center_{a}" for a in axes]].to_numpy(float)
        self._objects = ordered["Metadata_ObjectNumber"].to_numpy(np.int64)
        self._fields = np.repeat(np.arange(len(fields)), [len(rows) for _, rows in fields])
        super().__init__(
            table.iloc[ordered["_row"].to_numpy()],
            label,
            domain,
            augment=augment,
            normalize=normalize,
            classes=classes,
            domains=domains,
            seed=seed,
            where="the cell table",
        )
        self._mask, self._plate = mask, _Handle(plate, _plate_images)
        self._labels = None
        if labels is not None:  # read for masked crops and for :meth:`cell_mask`
            self._labels = _Handle((labels, compartment), _label_images)
        self._cache = _Recent(cache_fields)

    def item_chunks(self) -> np.ndarray:
        """The field each sample is cut from."""
        return self._fields

    def cell_mask(self, index: int) -> np.ndarray:
        """Sample ``index``'s own cell in its crop: ``True`` where the labels hold its id.

        The mask's shape is the crop's without channels; pixels past the field are ``False``.
        """
        if self._labels is None:
            raise ValueError(
                "the cell masks need the labels the cells were measured from: build the "
                "CellDataset with labels=<the labels' store or Dataset>"
            )
        _, label_field = self._cache.get(int(self._fields[index]), self._read_field)
        ids, _ = cut_field(label_field[None], self._centres[index : index + 1], self._box)
        return np.asarray(ids[0, 0] == self._objects[index])

    def _image(self, index: int) -> np.ndarray:
        image, label_field = self._cache.get(int(self._fields[index]), self._read_field)
        crops, _ = cut_field(
            image,
            self._centres[index : index + 1],
            self._box,
            labels=label_field,
            ids=self._objects[index : index + 1],
            mask=self._mask,
            dtype=np.dtype(np.float32),
        )
        return crops[0]

    def _read_field(self, field: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Decode one field's image (and labels, for masks)."""
        unit = self._units[field]
        image = np.asarray(self._plate.get()[unit].compute(scheduler="synchronous"))
        if self._labels is None:
            return image, None
        label_field = np.asarray(self._labels.get()[unit].compute(scheduler="synchronous"))
        if label_field.ndim < image.ndim - 1:  # 2D labels, 3D crops
            label_field = np.broadcast_to(label_field, image.shape[1:])
        return image, label_field


def _plate_images(source: Any) -> Any:
    """``(t, well, field, c, [z,] y, x)`` images, one chunk per image."""
    return _field_images(_open_plate(source))


def _label_images(source: tuple[Any, str | None]) -> Any:
    labels, compartment = source
    if isinstance(labels, str | Path):
        from cellscale.io import open_labels

        labels = open_labels(labels)
    name = compartment or labels.attrs["compartments"][0]
    data = labels[name].data
    return data if hasattr(data, "compute") else _eager(data)


def _eager(data: np.ndarray) -> Any:
    import dask.array as da

    return da.from_array(data, chunks=(1, 1, 1, *data.shape[3:]))


class FieldDataset(_Samples):
    """Whole fields (sites) of a plate, one sample per ``(t, well, field)``, for site classifiers.

    Samples are labelled from the plate map (well coordinates: ``"treatment"`` or
    ``"Metadata_treatment"``); ``.rows`` holds each field's ``Metadata_*`` columns as a
    cell table would. A projected plate gives ``(C, Y, X)`` images, one with Z stacks
    ``(C, Z, Y, X)``.

    Parameters
    ----------
    plate
        A plate store (opened lazily in each process) or a plate DataArray.
    label, domain, augment, normalize, classes, domains, seed
        As for :class:`CropDataset`.
    downsample
        Average blocks of ``downsample`` x ``downsample`` pixels (the edge that does not
        fill a block is dropped).
    """

    def __init__(
        self,
        plate: str | Path | xr.DataArray,
        label: str | Sequence[str],
        *,
        domain: str | Sequence[str] | None = None,
        augment: Augment | None = None,
        normalize: str | None = "per-crop",
        downsample: int = 1,
        classes: Sequence[str] | None = None,
        domains: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        if int(downsample) < 1:
            raise ValueError(f"downsample must be a whole number >= 1, got {downsample}")
        opened = _open_plate(plate)
        self._units, table = _field_rows(opened)
        super().__init__(
            table,
            label,
            domain,
            augment=augment,
            normalize=normalize,
            classes=classes,
            domains=domains,
            seed=seed,
            where=f"the plate map of plate {opened.name!r}",
        )
        self._plate, self._downsample = _Handle(plate, _plate_images), int(downsample)

    def _image(self, index: int) -> np.ndarray:
        image = np.asarray(self._plate.get()[self._units[index]].compute(scheduler="synchronous"))
        return _block_mean(image, self._downsample)


def _field_rows(plate: xr.DataArray) -> tuple[list[tuple[int, int, int]], pd.DataFrame]:
    """Every present field's ``(t, well, field)`` and metadata, as a cell table has it."""
    present = np.asarray(plate.coords["field_present"].values, dtype=bool)
    columns = plate_map_columns(plate)
    units, records = [], []
    for t, w, f in np.ndindex(plate.sizes["t"], *present.shape):
        if present[w, f]:
            units.append((t, w, f))
            records.append(
                {
                    "Metadata_Plate": str(plate.name),
                    "Metadata_Well": str(plate.coords["well"].values[w]),
                    "Metadata_Site": int(plate.coords["field"].values[f]),
                    "Metadata_Timepoint": plate.coords["t"].values[t],
                    **{metadata_column(c): plate.coords[c].values[w] for c in columns},
                }
            )
    return units, pd.DataFrame.from_records(records)


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """The mean of each ``factor`` x ``factor`` block of the last two axes."""
    if factor == 1:
        return image
    y, x = (image.shape[-2] // factor) * factor, (image.shape[-1] // factor) * factor
    if not y or not x:
        raise ValueError(f"downsample={factor} is larger than the fields ({image.shape[-2:]})")
    blocks = image[..., :y, :x].reshape(*image.shape[:-2], y // factor, factor, x // factor, factor)
    return blocks.mean(axis=(-3, -1), dtype=np.float64).astype(np.float32)


def _sample_labels(dataset: Any) -> np.ndarray:
    """The class index of every sample of a dataset or a ``Subset`` of one."""
    if isinstance(dataset, Subset):
        return _sample_labels(dataset.dataset)[np.asarray(dataset.indices)]
    return np.asarray(dataset.targets)


def _sample_chunks(dataset: Any) -> np.ndarray:
    """The chunk every sample of a dataset or a ``Subset`` of one is read from."""
    if isinstance(dataset, Subset):
        return _sample_chunks(dataset.dataset)[np.asarray(dataset.indices)]
    if not hasattr(dataset, "item_chunks"):
        raise TypeError(
            f"{type(dataset).__name__} has no chunks to keep reads local; use a CropDataset "
            "or CellDataset, or a plain shuffling sampler"
        )
    return np.asarray(dataset.item_chunks())


def balanced_weights(dataset: Any) -> np.ndarray:
    """Each sample's weight, the inverse of its class's frequency (each class weighs 1 in all).

    ``dataset`` is one of these datasets or a ``torch.utils.data.Subset`` of one.
    """
    labels = _sample_labels(dataset)
    counts = np.bincount(labels)
    return 1.0 / counts[labels]


def balanced_sampler(
    dataset: Any, seed: int = 0, num_samples: int | None = None
) -> WeightedRandomSampler:
    """A seeded ``WeightedRandomSampler`` that draws every class equally often.

    Parameters
    ----------
    dataset
        One of these datasets or a ``Subset`` of one.
    seed
        Seed of the draws: the same seed draws the same samples.
    num_samples
        Samples per epoch (default: the dataset's length).
    """
    weights = balanced_weights(dataset)
    return WeightedRandomSampler(
        weights.tolist(),
        num_samples=len(weights) if num_samples is None else int(num_samples),
        replacement=True,
        generator=torch.Generator().manual_seed(int(seed)),
    )


class ChunkShuffleSampler(Sampler[int]):
    """Shuffle samples so that reads stay within a few chunks while batches stay mixed.

    Chunks (of crops, or fields for cells) are visited in a random order, ``window`` at
    a time, and the samples of each window are shuffled together. With a dataset cache of
    at least ``window`` chunks, each chunk is decoded once per epoch in each process. The
    order depends only on ``seed`` and the epoch.

    Parameters
    ----------
    dataset
        A :class:`CropDataset` or :class:`CellDataset`, or a ``Subset`` of one.
    seed, epoch
        The order's seed and epoch (see :meth:`set_epoch`).
    window
        Chunks shuffled together.
    """

    def __init__(self, dataset: Any, seed: int = 0, epoch: int = 0, *, window: int = 4) -> None:
        if window < 1:
            raise ValueError(f"window must be at least one chunk, got {window}")
        self.chunks = _sample_chunks(dataset)
        self.seed, self.epoch, self.window = int(seed), int(epoch), int(window)

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        names, chunk_of = np.unique(self.chunks, return_inverse=True)
        rank = np.empty(len(names), np.int64)
        rank[rng.permutation(len(names))] = np.arange(len(names))
        windows = rank[chunk_of] // self.window
        order = np.lexsort((rng.random(len(self.chunks)), windows))
        return iter(order.tolist())
