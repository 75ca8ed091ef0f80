"""Grad-CAMO: attention on the cell for a model that learned the cell, off it for one that
learned the background; hooks released, 3D crops, NaN cells, cluster tasks, the gallery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from distributed import get_task_stream
from matplotlib.figure import Figure
from scipy import ndimage

import cellscale
from cellscale.learning._dataset import CellDataset
from cellscale.learning._gradcamo import (
    GradCAMOWarning,
    cell_scores,
    grad_cam,
    gradcamo,
    plot_gradcamo_gallery,
)
from cellscale.learning._models import build_model
from cellscale.synthetic._background_mark import MarkedScreen, background_mark_screen

CROP = 32
LAYER = "backbone.layer1"  # 8 x 8 positions on 32-pixel crops (layer4 has one)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _screen(carrier: str, **options: Any) -> MarkedScreen:
    return background_mark_screen(carrier, **{"wells": 8, "fields": 3, **options})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A resnet18 trained on each variant of the marked screen (4 epochs, 32-pixel crops)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("gradcamo")
    models = {}
    for carrier in ("cell", "background"):
        screen = _screen(carrier)
        training = cellscale.train(
            screen.source(),
            root / carrier,
            label="Mark",
            size=CROP,
            mask="none",
            augment=False,  # rotations would turn horizontal stripes into vertical ones
            epochs=4,
            lr=2e-3,
            batch_size=32,
            split={"test": 0.25, "validation": 0.0},
            progress=False,
            device="cpu",
        )
        models[carrier] = (screen, training)
    return models


def _scores(screen: MarkedScreen, model: Any, **options: Any) -> Any:
    settings = {"size": CROP, "mask": "none", "layer": LAYER, "progress": False, "device": "cpu"}
    return gradcamo(model, screen.source(), **{**settings, **options})


@pytest.mark.slow  # trains two small networks (~8 s of CPU each)
def test_attention_is_on_the_cell_only_when_the_label_is_in_the_cell(
    trained: dict[str, Any],
) -> None:
    medians = {}
    for carrier, (screen, training) in trained.items():
        accuracy = training.evaluation["metrics"]["accuracy"].iloc[0]
        assert accuracy >= 0.8, f"the {carrier} model did not learn the mark: {accuracy}"
        scores = _scores(screen, training)
        assert len(scores) == len(screen.cells) and scores["gradcamo"].between(0, 1).all()
        assert set(scores["predicted"]) <= set(training.classes)
        assert list(scores.columns) == [
            "cell_id",
            "Metadata_Plate",
            "Metadata_Well",
            "predicted",
            "gradcamo",
        ]
        medians[carrier] = float(scores["gradcamo"].median())
    # the cell fills about a tenth of its crop: uniform attention would score ~0.1
    assert medians["cell"] > 1.8 * medians["background"], medians
    assert medians["cell"] - medians["background"] > 0.08, medians


@pytest.mark.slow  # trains two small networks (~8 s of CPU each)
def test_the_true_label_can_be_explained_instead_of_the_prediction(
    trained: dict[str, Any],
) -> None:
    screen, training = trained["cell"]
    scores = _scores(screen, training, label="Mark")
    truth = screen.cells.set_index("cell_id").loc[scores["cell_id"], "Metadata_Mark"]
    assert (scores["label"] == truth.to_numpy()).all()
    right = scores["label"] == scores["predicted"]
    predicted = _scores(screen, training)
    np.testing.assert_allclose(scores["gradcamo"][right], predicted["gradcamo"][right], atol=1e-6)


def _hooks(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def test_hooks_are_removed_after_every_batch_even_when_one_fails() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", 2, 2).eval()
    screen = _screen("cell", wells=2, fields=1)
    scores = _scores(screen, model, batch_size=4)  # several batches
    assert len(scores) == len(screen.cells) and _hooks(model) == 0
    assert all(p.grad is None for p in model.parameters())  # the backward stops at the layer
    with pytest.raises(RuntimeError):
        grad_cam(model, torch.zeros(2, 3, CROP, CROP), layer=LAYER)  # 3 channels for 2
    assert _hooks(model) == 0
    assert model.training is False


def test_three_dimensional_crops_of_z_stacks() -> None:
    torch.manual_seed(0)
    model = build_model("r3d_18", 2, 2)
    screen = _screen("cell", wells=2, fields=1, n_z=4)
    maps, predicted = grad_cam(model.eval(), torch.randn(3, 2, 4, 16, 16), layer="backbone.layer2")
    assert maps.shape == (3, 4, 16, 16) and predicted.shape == (3,)
    assert maps.min() >= 0 and np.isclose(maps.reshape(3, -1).max(axis=1), 1).all()
    scores = _scores(screen, model, size=(4, 16, 16), layer="backbone.layer2")
    assert len(scores) == len(screen.cells) and scores["gradcamo"].between(0, 1).all()


def test_cells_without_attention_are_nan_counted_and_named() -> None:
    maps = np.zeros((3, 4, 4))
    maps[0, :2] = 1.0
    maps[2, 0, 0] = 2.0
    masks = np.zeros((3, 4, 4), bool)
    masks[:, 0] = True
    np.testing.assert_allclose(cell_scores(maps, masks), [0.5, np.nan, 1.0])
    model = build_model("resnet18", 2, 2)
    with torch.no_grad():
        model.backbone.fc.weight.zero_()  # logits ignore the image: no gradient, no attention
    screen = _screen("cell", wells=2, fields=1)
    n = len(screen.cells)
    with pytest.warns(GradCAMOWarning, match=rf"{n} of {n} cells had no attention.*cell_id 0, 1"):
        scores = _scores(screen, model)
    assert scores["gradcamo"].isna().all()


def test_mistakes_are_errors_naming_the_fix(tmp_path: Path) -> None:
    screen = _screen("cell", wells=2, fields=1)
    model = build_model("resnet18", 2, 2)
    no_labels = [{"plate": screen.plate, "cells": screen.cells}]
    with pytest.raises(ValueError, match="give the plate's 'labels'"):
        gradcamo(model, no_labels, size=CROP, progress=False)
    with pytest.raises(ValueError, match=r"did you mean 'backbone\.layer1'"):
        _scores(screen, model, layer="backbone.layr1")
    with pytest.raises(ValueError, match="pass an earlier layer"):
        _scores(screen, model, layer="backbone.layer4")
    with pytest.raises(ValueError, match="did you mean 'Metadata_Mark'"):
        _scores(screen, model, label="Mrk")
    with pytest.raises(ValueError, match="not among the given label names"):
        _scores(screen, model, label="Mark", classes=["a", "b"])
    with pytest.raises(ValueError, match=r"3 class names given for a model of 2 classes"):
        _scores(screen, model, classes=["a", "b", "c"])
    with pytest.raises(FileNotFoundError, match=r"pass a training's model\.pt"):
        _scores(screen, tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="CellClassifier"):
        _scores(screen, torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="takes 3 channels"):
        _scores(screen, build_model("resnet18", 3, 2))


def test_the_cell_mask_is_the_cells_own_label_in_its_box() -> None:
    screen = _screen("cell", wells=1, fields=1)
    dataset = CellDataset(
        screen.plate, screen.cells, "Mark", size=CROP, labels=screen.labels, classes=["horizontal"]
    )
    labels = screen.labels["cells"].values[0, 0, 0]
    for i, row in enumerate(dataset.rows.itertuples()):
        cell = screen.cells.set_index("cell_id").loc[row.cell_id]
        own = dataset.cell_mask(i)
        assert own.shape == (CROP, CROP) and own.dtype == bool
        assert own.sum() <= (labels == cell.Metadata_ObjectNumber).sum()
        assert own[CROP // 2, CROP // 2] == (
            labels[round(cell.Cells_AreaShape_Center_Y), round(cell.Cells_AreaShape_Center_X)]
            == cell.Metadata_ObjectNumber
        )
    with pytest.raises(ValueError, match="build the CellDataset with labels="):
        CellDataset(
            screen.plate, screen.cells, "Mark", size=CROP, classes=["horizontal"]
        ).cell_mask(0)


def test_chunks_run_as_tasks_on_the_gpu_worker_and_match_a_local_run(
    client: Any, tmp_path: Path
) -> None:
    torch.manual_seed(1)
    model = build_model("resnet18", 2, 2)
    path = tmp_path / "model.pt"
    torch.save({"config": model.config, "state_dict": model.state_dict()}, path)
    screen = _screen("cell", wells=4, fields=3)  # 12 fields: two chunks
    here = _scores(screen, path)
    gpu = {a for a, w in client.scheduler_info()["workers"].items() if w["resources"].get("GPU")}
    with get_task_stream(client) as stream:
        there = _scores(screen, path, client=client)
    ran_on = [t["worker"] for t in stream.data if str(t["key"]).startswith("gradcamo-")]
    assert len(ran_on) == 2 and set(ran_on) <= gpu
    np.testing.assert_allclose(there["gradcamo"], here["gradcamo"], rtol=1e-5)
    assert (there["cell_id"] == here["cell_id"]).all()


@pytest.mark.slow  # trains two small networks (~8 s of CPU each)
def test_the_gallery_shows_the_best_and_the_worst_cells(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    screen, training = trained["cell"]
    scores = _scores(screen, training)
    figure = plot_gradcamo_gallery(
        training,
        screen.source(),
        scores,
        n=3,
        size=CROP,
        mask="none",
        layer=LAYER,
        device="cpu",
        path=tmp_path / "gallery.png",
    )
    assert isinstance(figure, Figure) and (tmp_path / "gallery.png").stat().st_size > 0
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    best = scores.nlargest(1, "gradcamo").iloc[0]
    assert len(titles) == 6 and f"best {best.gradcamo:.2f}" in titles[0]
    assert f"cell {int(best.cell_id)}" in titles[0]
    assert any(ax.get_ylabel().startswith("attention") for ax in figure.axes)  # the colour bar


def test_the_marks_lie_in_the_cells_or_away_from_them() -> None:
    for carrier in ("cell", "background"):
        marked = _screen(carrier, wells=2, fields=1)
        plain = _screen(carrier, wells=2, fields=1, amplitude=0.0)
        added = marked.plate.values.astype(float) - plain.plate.values.astype(float)
        for well in range(2):
            stripes = added[0, well, 0, 0].sum(axis=0)  # over channels
            cells = marked.labels["cells"].values[0, well, 0] > 0
            near = ndimage.binary_dilation(cells, iterations=3)
            where = cells if carrier == "cell" else ~near
            assert (stripes[~where] == 0).all()
            assert (stripes[where] > 0).mean() > 0.3
            rows, columns = np.abs(np.diff(stripes, axis=0)), np.abs(np.diff(stripes, axis=1))
            vertical = marked.plate.coords["Mark"].values[well] == "vertical"
            assert (columns.sum() > 3 * rows.sum()) == vertical


def test_a_written_screen_is_read_field_chunk_by_field_chunk(tmp_path: Path) -> None:
    """A plate store with its labels and a written cell table (the pipeline's layout)."""
    screen = _screen("cell", wells=2, fields=1)
    store, cells = tmp_path / "plate.zarr", tmp_path / "cells.parquet"
    cellscale.write_plate(screen.plate, store, progress=False)
    opened = cellscale.open_plate(store)
    labels = cellscale.segment(opened, "classical", channel="cytoplasm", nuclei_channel="nuclei")
    cellscale.write_labels(labels, store, progress=False)
    cellscale.write_cells(cellscale.open_labels(store), opened, cells, progress=False)
    table = cellscale.read_cells(cells).compute()
    scores = gradcamo(
        build_model("resnet18", 2, 2),
        [{"plate": store, "cells": cells}],
        size=CROP,
        layer=LAYER,
        progress=False,
        device="cpu",
    )
    assert sorted(scores["cell_id"]) == sorted(table["cell_id"])
    assert scores["gradcamo"].between(0, 1).all()
    assert set(scores["Metadata_Plate"]) == set(table["Metadata_Plate"].astype(str))
