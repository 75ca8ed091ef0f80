"""Embeddings on CPU with small models: conformance, chunking, tagging, one build, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

pytest.importorskip("torch")

import torch

import cellscale
from cellscale._stages import Ledger
from cellscale.crops import extract_crops
from cellscale.embedding import embed, write_embeddings
from cellscale.embedding._torch import TorchEmbedder, model_builds
from cellscale.io._raw_rows import raw_rows
from cellscale.measurement import measure
from cellscale.segmentation import segment
from cellscale.testing import EmbedderTests, synthetic_plate
from tests.test_segment import Threshold


class TestResNetConforms(EmbedderTests):
    def make_embedder(self) -> TorchEmbedder:
        return TorchEmbedder("resnet18", in_channels=2, device="cpu", batch_size=4)


class TestR3DConforms(EmbedderTests):
    crop_shape = (2, 4, 32, 32)

    def make_embedder(self) -> TorchEmbedder:
        return TorchEmbedder("r3d_18", in_channels=2, device="cpu")


class TestPlanewiseResNetConforms(EmbedderTests):
    crop_shape = (1, 3, 32, 32)

    def make_embedder(self) -> TorchEmbedder:
        return TorchEmbedder("resnet18", in_channels=1, device="cpu", resize=48)


@pytest.fixture(scope="module")
def crops():
    plate = cellscale.project(
        synthetic_plate(wells=2, fields=3, n_z=3, shape=(80, 80), seed=10), "max"
    )
    labels = segment(plate, Threshold(), channel="nuclei")
    cells = measure(labels, plate).compute()
    return extract_crops(plate, cells, size=24, mask="soft", labels=labels)


def _reference(crops) -> np.ndarray:
    return TorchEmbedder("resnet18", in_channels=2, device="cpu")(crops.values)


@pytest.mark.parametrize(("batch_size", "per_task"), [(4, 5), (16, 64), (64, 1)])
def test_embeddings_do_not_depend_on_batching_or_task_grouping(crops, batch_size, per_task) -> None:
    lazy = embed(crops, "resnet18", batch_size=batch_size, cells_per_task=per_task, device="cpu")
    assert lazy.dims == ("cell", "feature") and lazy.shape == (crops.shape[0], 512)
    np.testing.assert_allclose(lazy.values, _reference(crops), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(lazy.coords["cell_id"].values, crops.coords["cell_id"].values)


@pytest.mark.parametrize("workers", [1, 2])
def test_one_or_two_workers_give_the_same_embeddings(crops, workers: int) -> None:
    with cellscale.start_cluster(
        "local",
        n_workers=workers,
        gpu_workers=workers,
        processes=False,
        threads_per_worker=1,
        quiet=True,
    ) as client:
        values = client.compute(
            embed(crops, "resnet18", device="cpu", cells_per_task=10).data, sync=True
        )
    np.testing.assert_allclose(values, _reference(crops), rtol=1e-4, atol=1e-4)


_BUILT_ON: list[bool] = []


def _recording_factory() -> torch.nn.Module:
    """A tiny network, noting whether the worker that built it has the GPU tag."""
    from distributed import get_worker

    _BUILT_ON.append(bool(get_worker().state.total_resources.get("GPU")))
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )


def test_tasks_are_tagged_run_on_the_gpu_worker_and_build_the_model_once(crops) -> None:
    model = TorchEmbedder(factory=_recording_factory, in_channels=2, n_features=8, device="cpu")
    lazy = embed(crops, model, cells_per_task=4)
    layers = lazy.data.__dask_graph__().layers
    tagged = [n for n, layer in layers.items() if (layer.annotations or {}).get("resources")]
    assert len(tagged) == 1 and tagged[0].startswith("embed-")
    _BUILT_ON.clear()
    with cellscale.start_cluster(
        "local", n_workers=1, gpu_workers=1, processes=False, threads_per_worker=1, quiet=True
    ) as client:
        client.compute(lazy.data, sync=True)
    assert len(lazy.data.chunks[0]) > 3  # many tasks ...
    assert _BUILT_ON == [True]  # ... one build, on the GPU-tagged worker


@pytest.mark.slow
def test_each_worker_process_builds_the_model_once(crops) -> None:
    with cellscale.start_cluster(
        "local", n_workers=1, gpu_workers=2, threads_per_worker=1, quiet=True
    ) as client:
        client.compute(embed(crops, "resnet18", device="cpu", cells_per_task=4).data, sync=True)
        builds = client.run(_build_count)
        workers = client.scheduler_info()["workers"]
    gpu = {address for address, info in workers.items() if info.get("resources", {}).get("GPU")}
    assert len(gpu) == 2 and all(builds[a] <= 1 for a in gpu) and sum(builds[a] for a in gpu) >= 1
    assert all(builds[a] == 0 for a in workers if a not in gpu)  # CPU workers never build it


def _build_count() -> int:
    return len(model_builds())


def test_written_embeddings_resume_identically_and_pca_reads_their_chunk_files(
    crops, tmp_path: Path
) -> None:
    lazy = embed(crops, "resnet18", device="cpu", cells_per_task=8)
    reference = write_embeddings(lazy, tmp_path / "reference.zarr", chunk_cells=9, progress=False)
    out = write_embeddings(lazy, tmp_path / "emb.zarr", chunk_cells=9, progress=False)
    ledger = Ledger(zarr.open_array(str(out / ".cellscale" / "ledger"), mode="r+"))
    ledger.clear((1,))  # as if the write had stopped before the second chunk
    write_embeddings(lazy, out, chunk_cells=9, progress=False)
    assert _files(out) == _files(reference)
    array = zarr.open_array(str(out), mode="r")
    assert array.attrs["model"]["model"] == "resnet18" and array.compressors == ()
    assert raw_rows(array) is not None  # the profile stage reads the chunk files directly
    pca = cellscale.PCA(3).fit(out)
    values = np.asarray(array[...], dtype=np.float64)
    centred = values - values.mean(axis=0)
    top = np.linalg.eigvalsh(centred.T @ centred / (len(values) - 1))[::-1][:3]
    np.testing.assert_allclose(pca.explained_variance_, top, rtol=1e-3)


def _files(path: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(path)): f.read_bytes()
        for f in path.rglob("*")
        if f.is_file() and ".cellscale" not in f.parts
    }


def test_bad_models_and_inputs_are_clear_errors(crops, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the model takes 3 channels but the crops have 2"):
        TorchEmbedder("resnet18", in_channels=3, device="cpu")(crops.values[:2])
    wrong = tmp_path / "wrong.pt"
    torch.save(torch.nn.Linear(3, 3).state_dict(), wrong)
    with pytest.raises(
        ValueError, match=rf"the weights in {wrong} do not fit resnet18 with 2 input channels"
    ):
        TorchEmbedder("resnet18", in_channels=2, weights=wrong, device="cpu")(crops.values[:2])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TorchEmbedder("resnet18", in_channels=2, weights=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="has no layer 'layer9'"):
        TorchEmbedder("resnet18", in_channels=2, layer="layer9", n_features=1, device="cpu")(
            crops.values[:2]
        )
    nan_model = TorchEmbedder(factory=_nan_network, in_channels=2, n_features=4, device="cpu")
    with pytest.raises(ValueError, match=r"non-finite features for \d+ cell\(s\) \(cell_id 0, 1"):
        embed(crops, nan_model).values  # noqa: B018


def _nan_network() -> torch.nn.Module:
    class Nan(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 4), float("nan"))

    return Nan()


def test_missing_imagenet_weights_say_where_to_put_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(
        FileNotFoundError,
        match=r"ImageNet weights for resnet50 are not in torch's hub cache .*allow_download=True",
    ):
        TorchEmbedder("resnet50", in_channels=3, weights="imagenet")


def test_a_torchscript_file_is_a_model(crops, tmp_path: Path) -> None:
    torch.manual_seed(1)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    scripted = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(module), str(scripted))
    embedder = TorchEmbedder(
        "resnet18", in_channels=2, weights=scripted, layer=None, n_features=4, device="cpu"
    )
    features = embedder(crops.values[:3])
    expected = module(torch.from_numpy(_per_crop(crops.values[:3]))).detach().numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    assert len(embedder.describe()["weights"]["sha256"]) == 64


def _per_crop(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    mean = x.mean(axis=(2, 3), keepdims=True)
    std = x.std(axis=(2, 3), keepdims=True)
    return (x - mean) / np.where(std > 0, std, 1)


def _another_recording_factory() -> torch.nn.Module:
    return _recording_factory()


def test_written_embeddings_keep_the_gpu_tag(crops, tmp_path: Path) -> None:
    model = TorchEmbedder(  # a model this process has not built before
        factory=_another_recording_factory, in_channels=2, n_features=8, device="cpu"
    )
    lazy = embed(crops, model, cells_per_task=4)
    write = write_embeddings(lazy, tmp_path / "lazy.zarr", chunk_cells=5, compute=False)
    layers = write.__dask_graph__().layers.values()
    assert any((layer.annotations or {}).get("resources") == {"GPU": 1} for layer in layers)
    _BUILT_ON.clear()
    with cellscale.start_cluster(
        "local", n_workers=1, gpu_workers=1, processes=False, threads_per_worker=1, quiet=True
    ) as client:
        write_embeddings(lazy, tmp_path / "emb.zarr", chunk_cells=5, client=client, progress=False)
    assert _BUILT_ON == [True]  # built once, on the GPU-tagged worker
