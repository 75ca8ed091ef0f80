"""Training data: datasets against extract_crops, chunk-local reads, augmentations, splits."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import cellscale
from cellscale.crops import extract_crops, write_crops
from cellscale.learning._augment import Augment, augment_rng
from cellscale.learning._dataset import (
    CellDataset,
    ChunkShuffleSampler,
    CropDataset,
    FieldDataset,
    balanced_sampler,
    balanced_weights,
)
from cellscale.learning._splits import Split, split_by_group, split_by_well
from cellscale.synthetic import (
    synthetic_cells,
    synthetic_labels,
    synthetic_plate,
    write_synthetic_plate,
)

torch.set_num_threads(1)

PLATE_MAP = pd.DataFrame(
    {
        "treatment": ["DMSO", "DMSO", "compound", "compound"] * 2,
        "concentration": [0.0, 0.0, 3.0, 10.0, 0.0, 0.0, 10.0, 3.0],
        "control": [True, True, False, False] * 2,
        "batch": ["B1", "B2"] * 4,
    },
    index=pd.Index([f"A{i:02d}" for i in range(1, 9)], name="well"),
)


def _plate(n_z: int = 1) -> xr.DataArray:
    plate = synthetic_plate(
        list(PLATE_MAP.index),
        fields=2,
        n_z=max(n_z, 2),
        shape=(40, 40),
        cells_per_field=6,
        plate_map=PLATE_MAP,
        seed=4,
    )
    return cellscale.project(plate, "max") if n_z == 1 else plate


def _cell_table(plate: xr.DataArray) -> pd.DataFrame:
    """The true cells of a synthetic plate as a measured cell table has them."""
    truth = synthetic_cells(plate)
    wells = PLATE_MAP.loc[truth.well]
    return pd.DataFrame(
        {
            "cell_id": np.arange(len(truth)),
            "Metadata_Plate": str(plate.name),
            "Metadata_Well": truth.well.to_numpy(),
            "Metadata_Site": truth.field.to_numpy(),
            "Metadata_Timepoint": truth.t.to_numpy(),
            "Metadata_ObjectNumber": truth.label.to_numpy(np.int64),
            **{f"Metadata_{c}": wells[c].to_numpy() for c in PLATE_MAP.columns},
            "Cells_AreaShape_Center_Y": truth.y.to_numpy(),
            "Cells_AreaShape_Center_X": truth.x.to_numpy(),
        }
    )


Screen = tuple[xr.DataArray, pd.DataFrame, Path]


@pytest.fixture(scope="module")
def screen(tmp_path_factory: pytest.TempPathFactory) -> Screen:
    plate = _plate()
    cells = _cell_table(plate)
    store = tmp_path_factory.mktemp("crops") / "crops.zarr"
    write_crops(extract_crops(plate, cells, size=12), store, chunk_cells=7, progress=False)
    return plate, cells, store


def _images(dataset: object) -> np.ndarray:
    return np.stack([dataset[i][0].numpy() for i in range(len(dataset))])  # type: ignore[index, arg-type]


# ---- datasets against the eager oracle -------------------------------------------------


def test_crop_dataset_equals_extract_crops_and_follows_the_table(screen: Screen) -> None:
    plate, cells, store = screen
    dataset = CropDataset(store, cells, "treatment", normalize=None)
    expected = extract_crops(plate, cells, size=12).values.astype(np.float32)
    assert len(dataset) == len(cells)
    np.testing.assert_array_equal(_images(dataset), expected)
    image, label, domain = dataset[3]
    assert image.dtype == torch.float32 and image.shape == (2, 12, 12)
    assert dataset.classes == ["DMSO", "compound"] and dataset.domains == ["all"] and domain == 0
    np.testing.assert_array_equal(dataset.rows.cell_id, cells.cell_id)
    assert (dataset.rows.label == cells.Metadata_treatment).all()
    assert dataset.classes[label] == cells.Metadata_treatment.iloc[3]
    assert {"Metadata_Plate", "Metadata_Well", "label", "domain"} <= set(dataset.rows.columns)


def test_crop_dataset_takes_the_cells_of_a_table_subset_from_an_array(screen: Screen) -> None:
    plate, cells, _ = screen
    crops = extract_crops(plate, cells, size=12)
    subset = cells[cells.Metadata_batch == "B2"]
    dataset = CropDataset(crops, subset, "concentration", domain="batch", normalize=None)
    np.testing.assert_array_equal(dataset.rows.cell_id, subset.cell_id)
    np.testing.assert_array_equal(_images(dataset), crops.values[subset.cell_id].astype(np.float32))
    assert dataset.domains == ["B2"]


def test_cell_dataset_cuts_the_crops_extract_crops_cuts(screen: Screen) -> None:
    plate, cells, _ = screen
    labels = xr.Dataset({"cells": synthetic_labels(plate)}, attrs={"compartments": ["cells"]})
    for mask in ("none", "hard", "soft"):
        dataset = CellDataset(
            plate, cells, "treatment", size=11, mask=mask, labels=labels, normalize=None
        )
        expected = extract_crops(plate, cells, size=11, mask=mask, labels=labels).values
        np.testing.assert_allclose(_images(dataset), expected.astype(np.float32), rtol=1e-6)
    assert (dataset.rows.label == cells.Metadata_treatment).all()


def test_cell_dataset_gives_3d_crops_from_z_stacks() -> None:
    plate = _plate(n_z=3)
    cells = _cell_table(plate)
    dataset = CellDataset(plate, cells, "treatment", size=(3, 10, 10), normalize=None)
    expected = extract_crops(plate, cells, size=(3, 10, 10)).values.astype(np.float32)
    assert dataset[0][0].shape == (2, 3, 10, 10)
    np.testing.assert_array_equal(_images(dataset), expected)


def test_field_dataset_gives_whole_fields_labelled_from_the_plate_map(screen: Screen) -> None:
    plate, _, _ = screen
    dataset = FieldDataset(plate, "concentration", domain="batch", normalize=None, downsample=3)
    assert len(dataset) == 16 and dataset.classes == ["0", "3", "10"]
    assert dataset.domains == ["B1", "B2"]
    image, label, domain = dataset[5]  # well A03, field 2
    whole = plate.isel(t=0, well=2, field=1).values.astype(np.float64)
    expected = whole[:, :39, :39].reshape(2, 13, 3, 13, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(image.numpy(), expected, rtol=1e-6)
    assert dataset.classes[label] == "3" and dataset.domains[domain] == "B1"
    row = dataset.rows.iloc[5]
    assert (row.Metadata_Well, row.Metadata_Site, row.label) == ("A03", 2, "3")
    stack = FieldDataset(_plate(n_z=3), "treatment")
    assert stack[0][0].shape == (2, 3, 40, 40)


def test_per_crop_normalisation_gives_each_channel_zero_mean_unit_variance(screen: Screen) -> None:
    _, cells, store = screen
    image = CropDataset(store, cells, "treatment")[0][0].double()
    np.testing.assert_allclose(image.mean(dim=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(image.std(dim=(1, 2), correction=0), 1, atol=1e-4)


# ---- labels ------------------------------------------------------------------------------


def test_labels_of_numbers_sort_as_numbers_and_columns_combine(screen: Screen) -> None:
    _, cells, store = screen
    dataset = CropDataset(store, cells, ["treatment", "concentration"])
    assert dataset.classes == ["DMSO | 0", "compound | 3", "compound | 10"]
    names = cells.Metadata_treatment + " | " + cells.Metadata_concentration.map("{:g}".format)
    assert (dataset.rows.label == names).all()
    assert [dataset.classes[i] for i in dataset.targets] == names.tolist()


def test_classes_of_another_dataset_keep_indices_aligned(screen: Screen) -> None:
    _, cells, store = screen
    train = CropDataset(store, cells, "concentration")
    ten = CropDataset(store, cells[cells.Metadata_concentration == 10], "concentration",
                      classes=train.classes)  # fmt: skip
    assert ten.classes == train.classes and set(ten.targets) == {2}
    with pytest.raises(ValueError, match=r"the label values \['10', '3'\] are not among"):
        CropDataset(store, cells, "concentration", classes=["0"])


def test_bad_labels_are_clear_errors(screen: Screen) -> None:
    plate, cells, store = screen
    with pytest.raises(ValueError, match=r"'treatmnt' is not in the cell table; did you mean"):
        CropDataset(store, cells, "treatmnt")
    with pytest.raises(ValueError, match=r"the domain column 'Metadata_Bacth'.*'Metadata_batch'"):
        CropDataset(store, cells, "treatment", domain="Metadata_Bacth")
    with pytest.raises(ValueError, match=r"has one class \(\['DMSO'\]\).*at least two"):
        CropDataset(store, cells[cells.Metadata_control], "treatment")
    holes = cells.assign(Metadata_moa=cells.Metadata_treatment.where(cells.cell_id % 5 != 0))
    with pytest.raises(ValueError, match=r"missing values \(first at row 0\).*dropna"):
        CropDataset(store, holes, "moa")
    with pytest.raises(ValueError, match="normalize must be one of"):
        CropDataset(store, cells, "treatment", normalize="global")
    with pytest.raises(ValueError, match="needs the labels"):
        CellDataset(plate, cells, "treatment", size=10, mask="hard")
    with pytest.raises(ValueError, match="is not in the plate map of plate"):
        FieldDataset(plate, "moa")


# ---- chunk-local reads -------------------------------------------------------------------


def _count_reads(monkeypatch: pytest.MonkeyPatch, cls: type, method: str) -> Counter:
    reads: Counter = Counter()
    original = getattr(cls, method)

    def counted(self: object, key: int) -> object:
        reads[key] += 1
        return original(self, key)

    monkeypatch.setattr(cls, method, counted)
    return reads


def test_chunk_shuffle_reads_each_chunk_once_per_epoch(
    screen: Screen, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, cells, store = screen
    reads = _count_reads(monkeypatch, CropDataset, "_read_chunk")
    dataset = CropDataset(store, cells, "treatment", cache_chunks=3)
    n_chunks = -(-len(cells) // 7)
    sampler = ChunkShuffleSampler(dataset, seed=1, window=3)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for index in sampler:
            dataset[index]
    assert set(reads) == set(range(n_chunks)) and max(reads.values()) == 2  # once per epoch
    reads.clear()
    for index in np.random.default_rng(0).permutation(len(dataset)):
        dataset[int(index)]
    assert sum(reads.values()) > 2 * n_chunks  # a plain shuffle decodes chunks again and again


def test_chunk_shuffle_order_is_a_seeded_windowed_permutation(screen: Screen) -> None:
    _, cells, store = screen
    dataset = CropDataset(store, cells, "treatment")
    chunks = dataset.item_chunks()
    order = list(ChunkShuffleSampler(dataset, seed=3, epoch=1, window=2))
    assert sorted(order) == list(range(len(dataset)))
    assert order == list(ChunkShuffleSampler(dataset, seed=3, epoch=1, window=2))
    assert order != list(ChunkShuffleSampler(dataset, seed=3, epoch=2, window=2))
    assert order != sorted(order)
    seen = chunks[order]
    for chunk in set(chunks):  # a chunk's samples lie in a stretch of at most two chunks' samples
        where = np.flatnonzero(seen == chunk)
        assert len(set(seen[where[0] : where[-1] + 1])) <= 2
    subset = torch.utils.data.Subset(dataset, np.flatnonzero(chunks < 2).tolist())
    assert sorted(ChunkShuffleSampler(subset, seed=0)) == list(range(len(subset)))


def test_cell_dataset_reads_each_field_once_in_sampler_order(
    screen: Screen, monkeypatch: pytest.MonkeyPatch
) -> None:
    plate, cells, _ = screen
    reads = _count_reads(monkeypatch, CellDataset, "_read_field")
    dataset = CellDataset(plate, cells, "treatment", size=10, cache_fields=2)
    for index in ChunkShuffleSampler(dataset, seed=0, window=2):
        dataset[index]
    assert len(reads) == 16 and set(reads.values()) == {1}


# ---- workers and pickling ----------------------------------------------------------------


def test_datasets_pickle_without_pixels(screen: Screen) -> None:
    plate, cells, store = screen
    crops = CropDataset(store, cells, "treatment")
    on_the_fly = CellDataset(plate, cells, "treatment", size=10)
    for dataset in (crops, on_the_fly):
        before = _images(dataset)  # fills the caches
        data = pickle.dumps(dataset)
        assert len(data) < 100_000
        assert b"zarr.core" not in data
        np.testing.assert_array_equal(_images(pickle.loads(data)), before)
    assert len(pickle.dumps(crops)) < before.nbytes


def test_a_dataloader_with_two_workers_gives_the_same_batches(screen: Screen) -> None:
    _, cells, store = screen
    dataset = CropDataset(store, cells, "treatment", augment=Augment(), seed=5)
    sampler = ChunkShuffleSampler(dataset, seed=2)
    single = list(torch.utils.data.DataLoader(dataset, batch_size=8, sampler=sampler))
    workers = list(
        torch.utils.data.DataLoader(dataset, batch_size=8, sampler=sampler, num_workers=2)
    )
    assert len(single) == len(workers)
    for (a, la, da), (b, lb, db) in zip(single, workers, strict=True):
        torch.testing.assert_close(a, b)
        assert la.tolist() == lb.tolist() and da.tolist() == db.tolist()


# ---- balancing ---------------------------------------------------------------------------


def test_balanced_weights_give_each_class_equal_weight(screen: Screen) -> None:
    _, cells, store = screen
    dataset = CropDataset(store, cells, "concentration")
    weights = balanced_weights(dataset)
    totals = np.bincount(dataset.targets, weights=weights)
    np.testing.assert_allclose(totals, 1.0)
    first = list(balanced_sampler(dataset, seed=4, num_samples=3000))
    assert first == list(balanced_sampler(dataset, seed=4, num_samples=3000))
    drawn = np.bincount(dataset.targets[first], minlength=3) / 3000
    np.testing.assert_allclose(drawn, 1 / 3, atol=0.05)
    half = torch.utils.data.Subset(dataset, list(range(0, len(dataset), 2)))
    assert len(balanced_weights(half)) == len(half)


# ---- augmentations -----------------------------------------------------------------------


def test_flips_and_rotations_keep_the_pixels_and_follow_the_seed() -> None:
    image = np.random.default_rng(0).random((3, 4, 9, 9)).astype(np.float32)
    augment = Augment()
    outputs = [augment(image, augment_rng(0, 0, i)) for i in range(12)]
    for out in outputs:
        assert out.shape == image.shape and out.dtype == np.float32
        for c in range(3):
            for z in range(4):  # spatial ops act on y, x only: each plane keeps its pixels
                np.testing.assert_array_equal(np.sort(out[c, z], None), np.sort(image[c, z], None))
    assert len({out.tobytes() for out in outputs}) > 3
    np.testing.assert_array_equal(augment(image, augment_rng(0, 0, 5)), outputs[5])
    np.testing.assert_array_equal(augment(image, 7), augment(image, 7))
    as_tensor = augment(torch.from_numpy(image), augment_rng(0, 0, 5))
    np.testing.assert_array_equal(as_tensor.numpy(), outputs[5])
    generator = torch.Generator().manual_seed(1)
    assert augment(image, generator).shape == image.shape


def test_intensity_jitter_is_an_affine_map_per_channel() -> None:
    image = np.random.default_rng(1).random((2, 8, 8)).astype(np.float32)
    out = Augment(flip=False, rotate=False, scale=(0.5, 2.0), shift=(-1.0, 1.0))(image, 3)
    for c in range(2):
        slope, offset = np.polyfit(image[c].ravel(), out[c].ravel(), 1)
        np.testing.assert_allclose(image[c] * slope + offset, out[c], atol=1e-5)
        assert 0.5 <= slope <= 2.0 and -1.0 <= offset <= 1.0
    assert Augment.none()(image, 3) is image


def test_augment_refuses_rotating_non_square_images() -> None:
    with pytest.raises(ValueError, match=r"90° rotations need square images.*rotate=False"):
        Augment()(np.zeros((1, 8, 6), np.float32), 0)
    assert Augment(rotate=False)(np.zeros((1, 8, 6), np.float32), 0).shape == (1, 8, 6)
    with pytest.raises(ValueError, match="low <= high"):
        Augment(scale=(2.0, 1.0))


def test_dataset_augmentation_depends_on_seed_and_epoch(screen: Screen) -> None:
    _, cells, store = screen
    dataset = CropDataset(store, cells, "treatment", augment=Augment(scale=(0.8, 1.2)), seed=1)
    first = dataset[4][0]
    torch.testing.assert_close(dataset[4][0], first)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[4][0], first)


# ---- splits ------------------------------------------------------------------------------


def _rows(wells_per_class: dict[str, int], cells_per_well: int = 3) -> pd.DataFrame:
    records = [
        {"Metadata_Plate": plate, "Metadata_Well": f"{label}{w}", "label": label, "batch": plate}
        for plate in ("P1", "P2")
        for label, n in wells_per_class.items()
        for w in range(n)
        for _ in range(cells_per_well)
    ]
    return pd.DataFrame.from_records(records)


def _wells(rows: pd.DataFrame, positions: np.ndarray) -> set[tuple[str, str]]:
    return set(
        zip(rows.Metadata_Plate.iloc[positions], rows.Metadata_Well.iloc[positions], strict=True)
    )


def test_split_by_well_keeps_wells_whole_and_classes_stratified() -> None:
    rows = _rows({"a": 5, "b": 5, "c": 1})
    split = split_by_well(rows, test=0.2, validation=0.2, seed=3)
    parts = split.indices(rows)
    assert sum(map(len, parts.values())) == len(rows)
    wells = {part: _wells(rows, positions) for part, positions in parts.items()}
    assert not (wells["train"] & wells["test"] or wells["train"] & wells["validation"])
    assert not wells["test"] & wells["validation"]
    for label in ("a", "b", "c"):
        assert label in set(rows.label.iloc[parts["train"]])
    for label in ("a", "b"):  # ten wells each: two in test, two in validation
        assert (rows.label.iloc[parts["test"]] == label).sum() == 2 * 3
        assert (rows.label.iloc[parts["validation"]] == label).sum() == 2 * 3
    assert split == split_by_well(rows, test=0.2, validation=0.2, seed=3)
    assert split != split_by_well(rows, test=0.2, validation=0.2, seed=4)


def test_split_round_trips_through_json(tmp_path: Path) -> None:
    rows = _rows({"a": 4, "b": 4}).assign(Metadata_Site=1)
    split = split_by_group(rows, "Metadata_Plate", "P2", validation=0.25)
    loaded = Split.load(split.save(tmp_path / "split.json"))
    assert loaded == split and loaded.held_out == "Metadata_Plate in ['P2']"
    for part, positions in split.indices(rows).items():
        np.testing.assert_array_equal(loaded.indices(rows)[part], positions)
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match=r"is not a split written by Split\.save"):
        Split.load(tmp_path / "other.json")


def test_split_by_group_holds_out_a_whole_batch() -> None:
    rows = _rows({"a": 3, "b": 3})
    split = split_by_group(rows, "batch", ["P1"], validation=0.34)
    parts = split.indices(rows)
    assert (rows.batch.iloc[parts["held-out"]] == "P1").all() and len(parts["held-out"]) == 18
    assert len(parts["test"]) == 0 and len(parts["validation"]) == 6
    as_test = split_by_group(rows, "batch", "P1", part="test").indices(rows)
    np.testing.assert_array_equal(as_test["test"], parts["held-out"])
    with pytest.raises(ValueError, match=r"the held-out values \['P3'\] do not occur in 'batch'"):
        split_by_group(rows, "batch", "P3")
    with pytest.raises(ValueError, match="the column 'bacth' is not in the rows"):
        split_by_group(rows, "bacth", "P1")
    with pytest.raises(ValueError, match="leaves no rows to train on"):
        split_by_group(rows, "batch", ["P1", "P2"])
    only_in_p2 = pd.concat([rows, _rows({"z": 1}).query("batch == 'P2'")])
    with pytest.raises(ValueError, match=r"the classes \['z'\] have no rows in training"):
        split_by_group(only_in_p2, "batch", "P2")


def test_split_check_refuses_overlaps_and_rows_of_no_part() -> None:
    rows = _rows({"a": 2, "b": 2})
    overlapping = Split(
        by=("Metadata_Plate", "Metadata_Well"),
        parts={"train": frozenset({("P1", "a0"), ("P1", "b0")}), "test": frozenset({("P1", "a0")})},
    )
    with pytest.raises(ValueError, match=r"parts 'train' and 'test' share 1 groups"):
        overlapping.check(rows)
    split = split_by_well(rows, test=0.5, seed=0)
    more = pd.concat([rows, _rows({"a": 3}).query("Metadata_Well == 'a2'")])
    with pytest.raises(ValueError, match=r"6 rows belong to no part.*\('P1', 'a2'\)"):
        split.check(more)
    split.check(more, complete=False)
    no_b = Split(by=split.by, parts={"train": frozenset({("P1", "a0")}), "test": frozenset()})
    with pytest.raises(ValueError, match=r"the classes \['b'\] have no rows in training"):
        no_b.check(rows, complete=False)


def test_split_bad_fractions_are_clear_errors() -> None:
    rows = _rows({"a": 2, "b": 2})
    with pytest.raises(ValueError, match=r"test must be a fraction in \[0, 1\)"):
        split_by_well(rows, test=1.5)
    with pytest.raises(ValueError, match="test \\+ validation must leave rows for training"):
        split_by_well(rows, test=0.5, validation=0.5)
    with pytest.raises(ValueError, match="the stratify column 'moa' is not in the rows"):
        split_by_well(rows, stratify="moa")


def test_a_split_of_dataset_rows_never_shares_a_well(screen: Screen) -> None:
    _, cells, store = screen
    dataset = CropDataset(store, cells, "treatment")
    parts = split_by_well(dataset.rows, test=0.25, seed=1).indices(dataset.rows)
    assert _wells(dataset.rows, parts["train"]).isdisjoint(_wells(dataset.rows, parts["test"]))
    assert set(dataset.rows.label.iloc[parts["test"]]) == {"DMSO", "compound"}
    train = torch.utils.data.Subset(dataset, parts["train"].tolist())
    assert len(list(ChunkShuffleSampler(train))) == len(parts["train"])


def test_datasets_of_a_plate_store_open_it_in_each_process(tmp_path: Path) -> None:
    path = tmp_path / "plate.zarr"
    plate = write_synthetic_plate(
        path, wells=["A01", "A02"], fields=2, n_z=2, shape=(32, 32), cells_per_field=5, seed=1
    )
    cells = _cell_table(plate).assign(Metadata_control=lambda t: t.Metadata_Well == "A01")
    on_the_fly = CellDataset(path, cells, "control", size=(2, 8, 8), normalize=None)
    fields = FieldDataset(path, "control", normalize=None)
    for dataset in (on_the_fly, fields):
        before = _images(dataset)
        data = pickle.dumps(dataset)
        assert len(data) < 20_000 and b"zarr" not in data.replace(b"plate.zarr", b"")
        np.testing.assert_array_equal(_images(pickle.loads(data)), before)
    np.testing.assert_array_equal(before[3], plate.isel(t=0, well=1, field=1).values.swapaxes(0, 1))
