"""Training cell classifiers: learning, batch effects, exact resume, weights for the embedder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from distributed import Client, get_task_stream  # noqa: E402
from torch.utils.data import Dataset, Subset, TensorDataset  # noqa: E402

from cellscale._stages import DamagedOutputError, StaleOutputError  # noqa: E402
from cellscale.embedding._torch import TorchEmbedder, load_weights  # noqa: E402
from cellscale.learning import _train  # noqa: E402
from cellscale.learning._checkpoint import load_model_state  # noqa: E402
from cellscale.learning._models import build_model, load_classifier  # noqa: E402
from cellscale.learning._train import fit, fit_on_cluster, predict  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def planted(
    n: int, seed: int, *, shuffle: bool = False, offset: float = 0.0, shape: tuple = (3, 32, 32)
) -> TensorDataset:
    """Noise images; class 1 has a bright 8 × 8 square in channel 0 somewhere, class 0 none.

    ``offset`` adds a constant to every pixel of the last channel of the images of domain 1
    (a batch effect independent of the label); ``shuffle`` permutes the labels, so they
    carry no signal.
    """
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, *shape, generator=generator)
    labels = torch.randint(0, 2, (n,), generator=generator)
    domains = torch.randint(0, 2, (n,), generator=generator)
    for i in np.flatnonzero(labels.numpy()):
        y, x = torch.randint(0, shape[-1] - 8, (2,), generator=generator).tolist()
        images[i, 0, ..., y : y + 8, x : x + 8] += 3.0
    images[:, -1] += offset * domains.reshape(-1, *(1,) * (len(shape) - 1))
    if shuffle:
        labels = labels[torch.randperm(n, generator=generator)]
    return TensorDataset(images, labels, domains)


class Flipped(Dataset):
    """A dataset that flips each image at random from torch's global RNG (an augmentation)."""

    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        image, label, domain = self.data[i]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, int(label), int(domain)


def train(data: Any, out: Path, **settings: Any) -> _train.TrainResult:
    defaults: dict[str, Any] = {"arch": "resnet18", "in_channels": 3, "n_classes": 2, "epochs": 1}
    defaults |= {"batch_size": 16, "device": "cpu", "progress": False}
    return fit(data, out=out, **(defaults | settings))


def test_a_planted_pattern_is_learned_and_shuffled_labels_are_not(tmp_path: Path) -> None:
    test = planted(128, seed=1)
    truth = test.tensors[1].numpy()
    learned = train(
        planted(192, seed=0), tmp_path / "a", epochs=4, batch_size=32, validation_data=test
    )
    predicted, features = predict(learned.model, test, device="cpu")
    assert (predicted == truth).mean() > 0.8
    assert features.shape == (128, 512) and features.dtype == np.float32
    metrics = pd.read_parquet(tmp_path / "a" / "metrics.parquet")
    pd.testing.assert_frame_equal(metrics, learned.metrics)
    assert metrics["epoch"].tolist() == [1, 2, 3, 4]
    assert metrics["validation_accuracy"].iloc[-1] == pytest.approx((predicted == truth).mean())
    assert metrics["train_domain_accuracy"].isna().all()
    shuffled = train(planted(192, seed=0, shuffle=True), tmp_path / "b", epochs=4, batch_size=32)
    predicted, _ = predict(load_classifier(shuffled.model), test, device="cpu")
    assert (predicted == truth).mean() < 0.7


def test_a_kill_mid_epoch_resumes_to_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = Flipped(planted(48, seed=3, offset=1.0))  # 3 batches per epoch, random flips
    settings: dict[str, Any] = {"epochs": 3, "n_domains": 2, "adversarial_weight": 0.5}
    settings |= {"reconstruction_weight": 0.1, "validation_data": planted(16, seed=4)}
    whole = train(data, tmp_path / "whole", **settings)
    assert whole.resumed_from is None and whole.epochs_run == 3

    step = _train._train_step
    calls = []

    def killed_in_epoch_2(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 5:  # the second batch of epoch 2
            raise KeyboardInterrupt("killed")
        return step(*args)

    monkeypatch.setattr(_train, "_train_step", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path / "killed", **settings)
    monkeypatch.setattr(_train, "_train_step", step)
    checkpoints = tmp_path / "killed" / "checkpoints"
    assert [p.name for p in checkpoints.glob("*.pt")] == ["epoch-0001.pt"]
    (checkpoints / "epoch-0002.pt").write_bytes(b"half a checkpoint")  # no record: unfinished
    torch.manual_seed(99)  # the caller's RNGs do not matter: the checkpoint's are restored
    resumed = train(data, tmp_path / "killed", **settings)

    assert resumed.resumed_from == 1 and resumed.epochs_run == 2
    _assert_same_tensors(whole.model, resumed.model)
    _assert_same_tensors(whole.weights, resumed.weights)
    pd.testing.assert_frame_equal(whole.metrics, resumed.metrics)
    assert (whole.metrics["train_domain_accuracy"].notna()).all()
    again = train(data, tmp_path / "killed", **settings)
    assert again.epochs_run == 0 and again.resumed_from == 3
    _assert_same_tensors(whole.weights, again.weights)


def _assert_same_tensors(a: Path, b: Path) -> None:
    first = torch.load(a, weights_only=True)
    second = torch.load(b, weights_only=True)
    first, second = first.get("state_dict", first), second.get("state_dict", second)
    assert first.keys() == second.keys()
    unequal = [key for key in first if not torch.equal(first[key], second[key])]
    assert not unequal


def test_trained_weights_load_into_the_embedder(tmp_path: Path) -> None:
    data = planted(32, seed=5)
    result = train(data, tmp_path, reconstruction_weight=0.5)
    images = data.tensors[0][:6]
    model = load_classifier(result.model).eval()
    with torch.no_grad():
        expected = model(images)["features"].numpy()
    embedder = TorchEmbedder(
        "resnet18", in_channels=3, weights=result.weights, normalize=None, device="cpu"
    )
    np.testing.assert_allclose(embedder(images.numpy()), expected, rtol=1e-5, atol=1e-6)
    _, features = predict(model, TensorDataset(images), device="cpu")
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    assert load_weights("resnet18", result.weights).fc.out_features == 2


def test_other_settings_damaged_checkpoints_and_other_architectures_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = planted(32, seed=6)
    first = train(data, tmp_path / "run", data_token="split-1")
    with pytest.raises(
        StaleOutputError,
        match=r"(?s)input data token: 'split-1' in the output, 'split-2' requested\n"
        r"  lr: 0.001 in the output, 0.01 requested\nPass overwrite=True",
    ):
        train(data, tmp_path / "run", lr=0.01, data_token="split-2")
    train(data, tmp_path / "run", lr=0.01, data_token="split-2", overwrite=True)

    with pytest.raises(ValueError, match=r"do not fit resnet50 with 3 input channels"):
        load_weights("resnet50", first.weights)
    state = torch.load(tmp_path / "run" / "checkpoints" / "epoch-0001.pt", weights_only=True)
    with pytest.raises(
        ValueError,
        match=r"the weights in ckpt do not fit resnet50 with 3 input channels .*missing keys.*"
        r"train into another folder, or pass overwrite=True",
    ):
        load_model_state(build_model("resnet50", 3, 2), state["model"], "ckpt")

    monkeypatch.setattr(_train, "_train_step", _fail_in_epoch(2, batches_per_epoch=2))
    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path / "damaged", epochs=2)
    monkeypatch.undo()
    checkpoint = tmp_path / "damaged" / "checkpoints" / "epoch-0001.pt"
    damaged = bytearray(checkpoint.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(damaged))
    with pytest.raises(DamagedOutputError, match=rf"the checkpoint {checkpoint} is damaged"):
        train(data, tmp_path / "damaged", epochs=2)


def _fail_in_epoch(epoch: int, *, batches_per_epoch: int) -> Any:
    step, calls = _train._train_step, []

    def failing(*args: Any) -> Any:
        calls.append(1)
        if len(calls) > (epoch - 1) * batches_per_epoch:
            raise KeyboardInterrupt("killed")
        return step(*args)

    return failing


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"n_classes": 1}, r"n_classes must be at least 2"),
        (
            {"n_classes": 2, "in_channels": 4},
            r"in_channels=4 but .* 3 channels; pass in_channels=3",
        ),
        ({"adversarial_weight": 1.0, "n_domains": 1}, r"needs at least 2 domains .*n_domains=1"),
        ({"arch": "r3d_18"}, r"r3d_18 takes \(C, Z, Y, X\) images but .* \(3, 32, 32\)"),
        ({"precision": "bf16"}, r"precision='bf16' needs a GPU"),
    ],
)
def test_bad_settings_are_named_with_the_fix(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        train(planted(16, seed=7), tmp_path, **settings)


def test_labels_out_of_range_are_named(tmp_path: Path) -> None:
    data = planted(16, seed=8)
    data.tensors[1][3] = 5
    with pytest.raises(
        ValueError,
        match=r"labels must be indices 0..1 for n_classes=2, but the "
        r"first batch has label 5; pass n_classes=len\(dataset.classes\)",
    ):
        train(data, tmp_path)


class Epochs(Dataset):
    """A dataset that records the epochs it was told to draw its augmentations for."""

    def __init__(self, data: TensorDataset) -> None:
        self.data, self.epochs = data, []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        image, label, domain = self.data[i]
        return image, int(label), int(domain)


def test_each_epoch_draws_its_own_augmentations(tmp_path: Path) -> None:
    data = Epochs(planted(16, seed=4))
    train(Subset(data, list(range(12))), tmp_path, epochs=3)  # a split's part, as train makes
    assert data.epochs == [1, 2, 3]


def test_z_stacks_train_with_r3d(tmp_path: Path) -> None:
    data = planted(8, seed=9, shape=(2, 4, 16, 16))
    result = train(
        data, tmp_path, arch="r3d_18", in_channels=2, batch_size=4, reconstruction_weight=1.0
    )
    assert len(result.metrics) == 1 and np.isfinite(result.metrics["train_loss"]).all()
    embedder = TorchEmbedder(
        "r3d_18", in_channels=2, weights=result.weights, normalize=None, device="cpu"
    )
    assert embedder(data.tensors[0][:2].numpy()).shape == (2, 512)


def test_training_runs_on_a_gpu_worker_when_the_cluster_has_one(
    client: Any, tmp_path: Path
) -> None:
    gpu_workers = {
        address
        for address, worker in client.scheduler_info()["workers"].items()
        if worker["resources"].get("GPU")
    }
    with get_task_stream(client) as stream:
        result = fit_on_cluster(client, train_data=planted(16, seed=10), **_small(tmp_path / "a"))
    assert result.weights.is_file()
    ran_on = [task["worker"] for task in stream.data if str(task["key"]).startswith("fit-")]
    assert len(ran_on) == 1 and ran_on[0] in gpu_workers
    with Client(processes=False, n_workers=1, dashboard_address=":0") as cpu_only:
        with get_task_stream(cpu_only) as stream:
            result = fit_on_cluster(
                cpu_only, train_data=planted(16, seed=10), **_small(tmp_path / "b")
            )
        assert not stream.data and result.weights.is_file()


def _small(out: Path) -> dict[str, Any]:
    return {
        "arch": "resnet18",
        "in_channels": 3,
        "n_classes": 2,
        "out": out,
        "epochs": 1,
        "batch_size": 8,
        "device": "cpu",
        "progress": False,
    }


@pytest.mark.slow
def test_the_adversarial_model_forgets_the_batch(tmp_path: Path) -> None:
    shape = (3, 16, 16)
    train_data = planted(192, seed=0, offset=2.0, shape=shape)
    test_data = planted(128, seed=1, offset=2.0, shape=shape)
    settings = {"epochs": 10, "batch_size": 16, "n_domains": 2}
    plain = train(train_data, tmp_path / "plain", **settings)
    adversarial = train(train_data, tmp_path / "adversarial", adversarial_weight=1.0, **settings)
    plain_domain = _domain_accuracy(plain.model, train_data, test_data)
    adversarial_domain = _domain_accuracy(adversarial.model, train_data, test_data)
    assert plain_domain > 0.9  # the plain model's features keep the batch
    assert adversarial_domain < plain_domain - 0.05
    predicted, _ = predict(adversarial.model, test_data, device="cpu")
    assert (predicted == test_data.tensors[1].numpy()).mean() > 0.8


def _domain_accuracy(model: Path, train_data: TensorDataset, test_data: TensorDataset) -> float:
    """Held-out accuracy of a nearest-centroid domain classifier on standardised features."""
    _, train_features = predict(model, train_data, device="cpu")
    _, test_features = predict(model, test_data, device="cpu")
    mean, std = train_features.mean(axis=0), train_features.std(axis=0) + 1e-6
    train_features, test_features = (train_features - mean) / std, (test_features - mean) / std
    domains = train_data.tensors[2].numpy()
    centroids = np.stack([train_features[domains == d].mean(axis=0) for d in (0, 1)])
    distances = ((test_features[:, None, :] - centroids[None]) ** 2).sum(axis=2)
    return float((distances.argmin(axis=1) == test_data.tensors[2].numpy()).mean())
