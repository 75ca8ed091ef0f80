"""The cellpose segmenter on CPU: tile pooling, ids, devices, weights, tagging, one load per worker.

The fast tests use :class:`cellscale.testing.networks.BlobFlowNet`, a network with fixed
filters and cellpose's contract, so cellpose's own tiling and dynamics turn its output
into one mask per blob; the slow test builds a real, randomly initialised cellpose 4
network and loads it from a file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("cellpose")

from cellscale.segmentation._cellpose import CellposeSegmenter, network_loads
from cellscale.testing import SegmenterTests, blob_field
from cellscale.testing.networks import BlobFlowNet, blob_flow_network


def _segmenter(**options: object) -> CellposeSegmenter:
    settings = {"network": blob_flow_network, "flow_threshold": 0.0, "device": "cpu"}
    return CellposeSegmenter(**{**settings, **options})  # type: ignore[arg-type]


class TestCellposeConforms(SegmenterTests):
    def make_segmenter(self) -> CellposeSegmenter:
        return _segmenter()


class TestCellposeWithNucleiConforms(SegmenterTests):
    channels = 2

    def make_segmenter(self) -> CellposeSegmenter:
        return _segmenter()


def _network(segmenter: CellposeSegmenter) -> BlobFlowNet:
    from cellscale.segmentation._cellpose import _load

    net = _load(segmenter).net
    assert isinstance(net, BlobFlowNet)
    return net


def test_one_mask_per_blob_through_cellposes_own_dynamics() -> None:
    labels = _segmenter()(blob_field((128, 128), blobs=9, radius=6))
    assert labels.shape == (1, 128, 128) and labels.max() == 9


def test_tiles_of_several_fields_share_network_calls() -> None:
    pooled = _segmenter(batch_size=16)
    images = [blob_field((300, 300), seed=s) for s in range(4)]  # 4 tiles of 256 per field
    net = _network(pooled)
    net.calls.clear()
    masks = pooled.segment_batch(images)
    assert net.calls == [16]  # 16 tiles from 4 fields in one forward pass
    net.calls.clear()
    single = [pooled(image) for image in images]  # cellpose's own eval: one field at a time
    assert net.calls == [4, 4, 4, 4]
    for one, many in zip(single, masks, strict=True):
        np.testing.assert_array_equal(one, many)


def test_fields_of_different_shapes_are_pooled_by_shape() -> None:
    segmenter = _segmenter()
    images = [blob_field((128, 128)), blob_field((160, 96)), blob_field((128, 128), seed=1)]
    masks = segmenter.segment_batch(images)
    assert [m.shape[1:] for m in masks] == [(128, 128), (160, 96), (128, 128)]
    assert all(m.max() >= 1 for m in masks)


def test_the_network_is_loaded_once_per_process() -> None:
    first = _segmenter()
    second = _segmenter(batch_size=4)  # another segmenter, same network and device
    before = len(network_loads())
    for _ in range(3):
        first(blob_field((64, 64)))
        second(blob_field((64, 64)))
    assert len(network_loads()) - before <= 1


def test_a_required_gpu_that_is_absent_is_a_loud_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(
        RuntimeError, match=r"a GPU was required \(device='cuda'\) but this process has none"
    ):
        _segmenter(device="cuda")(blob_field((64, 64)))
    from cellscale.segmentation._cellpose import _device

    assert _device("auto").type == "cpu"


def test_a_missing_model_names_the_file_and_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path))
    with pytest.raises(
        FileNotFoundError,
        match=r"'cpsam' is not in cellpose's model folder .*cpsam does not exist.*allow_download",
    ):
        CellposeSegmenter("cpsam")
    with pytest.raises(FileNotFoundError, match="neither a file nor a known model name"):
        CellposeSegmenter(tmp_path / "nowhere.pt")


def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "weights.pt"
    bogus.write_bytes(b"these are not weights")
    segmenter = CellposeSegmenter(bogus, device="cpu")
    with pytest.raises(ValueError, match=rf"{bogus} is not a cellpose \d model that loads here"):
        segmenter(blob_field((64, 64)))


_BUILT_ON: list[tuple[str, bool]] = []  # module level: shared with in-process workers


def _recording_network() -> BlobFlowNet:
    """The test network, noting which worker built it and whether that worker has a GPU tag."""
    from distributed import get_worker

    worker = get_worker()
    _BUILT_ON.append((str(worker.name), bool(worker.state.total_resources.get("GPU"))))
    return blob_flow_network()


def test_segment_tags_its_tasks_and_they_run_on_the_gpu_worker() -> None:
    import cellscale
    from cellscale.segmentation import segment
    from cellscale.testing import synthetic_plate

    mip = cellscale.project(synthetic_plate(wells=2, fields=2, shape=(64, 64), seed=3), "max")
    segmenter = _segmenter(network=_recording_network, fields_per_task=1)
    labels = segment(mip, segmenter, channel="nuclei")
    layers = labels["cells"].data.__dask_graph__().layers
    tagged = [name for name, layer in layers.items() if (layer.annotations or {}).get("resources")]
    assert len(tagged) == 1 and tagged[0].startswith("segment-")
    _BUILT_ON.clear()
    with cellscale.start_cluster(
        "local", n_workers=1, gpu_workers=1, processes=False, threads_per_worker=1, quiet=True
    ) as client:
        result = client.compute(labels["cells"].data, sync=True)
    assert result.max() >= 1
    assert _BUILT_ON and all(has_gpu for _, has_gpu in _BUILT_ON)  # built on the GPU worker ...
    assert len(_BUILT_ON) == 1  # ... once, for the four tasks


@pytest.mark.slow
def test_a_real_cellpose_4_network_loads_from_a_file_and_segments(tmp_path: Path) -> None:
    import torch
    from cellpose.vit import CPSAM

    torch.manual_seed(0)
    weights = tmp_path / "random_cpsam.pt"
    torch.save(CPSAM().state_dict(), weights)
    segmenter = CellposeSegmenter(weights, device="cpu", flow_threshold=0.0, fields_per_task=2)
    description = segmenter.describe()
    assert len(description["weights"]) == 64  # the sha256 of the file
    masks = segmenter.segment_batch([blob_field((96, 96)), blob_field((96, 96), seed=1)])
    assert [m.shape for m in masks] == [(1, 96, 96), (1, 96, 96)]
    assert all(m.dtype == np.uint32 for m in masks)
