"""Torch embedders: torchvision ResNets (2D) and R3D-18 (3D) adapted to N channels, or your module.

The network is built once per worker process (a per-process cache keyed by the embedder's
description) and kept in evaluation mode; on a GPU it runs in bfloat16 (or float16) autocast
with ``channels_last`` memory, on a CPU in float32. Features come from a named layer through a
forward hook (default: the global average pool, 2048-d for ResNet-50), averaged over any
spatial axes it still has. Nothing is downloaded unless ``allow_download=True``: ImageNet
weights come from torch's hub cache, user weights from a local state dict (loaded with
``weights_only=True``) or a TorchScript file. torch and torchvision are imported only here.
"""

from __future__ import annotations

import difflib
import threading
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cellscale._files import file_sha256
from cellscale.embedding._protocol import EmbedderBase, check_batch_size

__all__ = [
    "ARCHITECTURES",
    "TorchEmbedder",
    "check_imagenet_weights",
    "find_layer",
    "imagenet_weights",
    "load_weights",
    "model_builds",
]

ARCHITECTURES = ("resnet18", "resnet50", "r3d_18")
_FEATURES = {"resnet18": 512, "resnet50": 2048, "r3d_18": 512}
_IMAGENET = {
    "resnet18": "ResNet18_Weights",
    "resnet50": "ResNet50_Weights",
    "r3d_18": "R3D_18_Weights",
}
_CACHE: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.Lock()
_BUILDS: list[tuple[Any, ...]] = []
_SHOWN = 3  # keys named per kind of mismatch between a state dict and a network


def model_builds() -> list[tuple[Any, ...]]:
    """The networks this process has built so far (one entry per build): for tests."""
    return list(_BUILDS)


class TorchEmbedder(EmbedderBase):
    """A torch network as an embedder.

    Parameters
    ----------
    arch
        ``"resnet18"``, ``"resnet50"`` (2D crops) or ``"r3d_18"`` (Z-stack crops, z as the
        network's time axis). 2D networks on Z-stack crops embed each plane and average
        over z.
    in_channels
        The crops' channels; the first convolution is adapted to them (with ImageNet
        weights the RGB filters are kept and extra channels start from their mean).
    weights
        ``None`` (random initialisation from ``seed``), ``"imagenet"`` (torchvision's, from
        torch's hub cache), or a local file: a state dict of the architecture adapted to
        ``in_channels``, or a TorchScript module.
    factory
        Instead of ``arch``: a callable returning any ``torch.nn.Module`` taking
        ``(n, in_channels, [z,] y, x)``; called once per worker.
    layer
        The module whose output are the features (default ``"avgpool"``; for a factory,
        the module's own output).
    normalize
        ``"per-crop"`` (each crop and channel to zero mean and unit variance), ``"imagenet"``
        (scale by the dtype's range, then ImageNet's mean and std; 3 channels), ``None``, or
        ``(means, stds)`` per channel.
    resize
        Resize crops to ``resize`` × ``resize`` pixels before the network (``None``: keep).
    batch_size
        Crops per network call, at least 1.
    device
        ``"auto"`` (the worker's GPU when it has one), ``"cuda"`` (fail without one) or ``"cpu"``.
    precision
        ``"auto"`` (bfloat16 on a GPU, float32 on a CPU), ``"bf16"``, ``"fp16"`` or ``"fp32"``.
    allow_download
        Let torchvision download ImageNet weights that are not in the hub cache.
    """

    gpu = True

    def __init__(
        self,
        arch: str = "resnet50",
        *,
        in_channels: int,
        weights: str | Path | None = None,
        factory: Callable[[], Any] | None = None,
        layer: str | None = "avgpool",
        n_features: int | None = None,
        normalize: str | tuple[Sequence[float], Sequence[float]] | None = "per-crop",
        resize: int | None = None,
        batch_size: int = 64,
        device: str = "auto",
        precision: str = "auto",
        seed: int = 0,
        allow_download: bool = False,
    ) -> None:
        if factory is None and arch not in ARCHITECTURES:
            raise ValueError(
                f"arch must be one of {ARCHITECTURES} (or pass factory=), got {arch!r}"
            )
        if device not in ("auto", "cuda", "cpu"):
            raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
        if precision not in ("auto", "bf16", "fp16", "fp32"):
            raise ValueError(
                f"precision must be 'auto', 'bf16', 'fp16' or 'fp32', got {precision!r}"
            )
        if isinstance(normalize, str) and normalize not in ("per-crop", "imagenet"):
            raise ValueError(
                "normalize must be 'per-crop', 'imagenet', None or (means, stds), "
                f"got {normalize!r}"
            )
        if normalize == "imagenet" and in_channels != 3:
            raise ValueError(
                "normalize='imagenet' needs 3 channels; use 'per-crop' or (means, stds)"
            )
        self.arch = arch if factory is None else "custom"
        self.in_channels = int(in_channels)
        self.weights = _weights(arch, weights, allow_download) if factory is None else None
        self.factory = factory
        self.layer = layer if factory is None else None if layer == "avgpool" else layer
        self.normalize = normalize
        self.resize = resize
        self.batch_size = check_batch_size(batch_size)
        self.device = device
        self.precision = precision
        self.seed = int(seed)
        known = _FEATURES.get(self.arch) if self.layer == "avgpool" else None
        self.n_features = int(n_features or known or 0)
        if not self.n_features:
            raise ValueError("pass n_features= for a factory or a layer other than 'avgpool'")

    def describe(self) -> dict[str, Any]:
        """Model, weights hash, layer and preprocessing, for the embeddings' attributes."""
        weights: Any = self.weights
        if isinstance(weights, Path):
            weights = {"file": str(weights), "sha256": file_sha256(weights)}
        elif weights == "imagenet":
            weights = {"torchvision": f"{_IMAGENET[self.arch]}.DEFAULT"}
        elif weights is None and self.factory is None:
            weights = {"random": self.seed}
        return {
            "class": "TorchEmbedder",
            "model": self.arch if self.factory is None else _qualname(self.factory),
            "weights": weights,
            "in_channels": self.in_channels,
            "layer": self.layer,
            "n_features": self.n_features,
            "normalize": self.normalize
            if not isinstance(self.normalize, tuple)
            else [list(v) for v in self.normalize],
            "resize": self.resize,
        }

    def __dask_tokenize__(self) -> Any:
        return (
            "TorchEmbedder",
            repr(sorted(self.describe().items(), key=str)),
            self.device,
            self.precision,
        )

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Features ``(n, n_features)`` float32 of a batch ``(n, in_channels, [z,] y, x)``."""
        return self.run_batch(self.prepare_batch(batch))

    def load(self) -> None:
        """Build the network in this process now (it is built once per process)."""
        _load(self)

    def prepare_batch(self, batch: np.ndarray) -> Any:
        """A batch normalised, resized and on the device (run on a CPU thread ahead of time)."""
        return _load(self).prepare(batch)

    def run_batch(self, prepared: Any) -> np.ndarray:
        """The features of a prepared batch."""
        return _load(self).run(prepared)


class _Loaded:
    """A network on a device with its feature hook and preprocessing."""

    def __init__(self, embedder: TorchEmbedder, net: Any, device: Any, torch: Any) -> None:
        self.embedder = embedder
        self.net = net
        self.device = device
        self.torch = torch
        self.local = threading.local()  # the hook's output, per calling thread
        if embedder.layer is not None:
            module = find_layer(net, embedder.layer)
            module.register_forward_hook(lambda _m, _i, output: setattr(self.local, "out", output))
        on_gpu = device.type == "cuda"
        precision = (
            embedder.precision if embedder.precision != "auto" else ("bf16" if on_gpu else "fp32")
        )
        self.autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.channels_last = on_gpu

    def prepare(self, batch: np.ndarray) -> Any:
        """The batch as a normalised, resized float32 tensor on the device."""
        torch = self.torch
        embedder = self.embedder
        if batch.shape[1] != embedder.in_channels:
            raise ValueError(
                f"the model takes {embedder.in_channels} channels but the crops have "
                f"{batch.shape[1]}"
            )
        x = torch.from_numpy(_normalized(batch, embedder.normalize))
        if embedder.resize is not None:
            x = _resized(torch, x, embedder.resize)
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def run(self, x: Any) -> np.ndarray:
        """Features of a prepared batch."""
        torch = self.torch
        planes = x.ndim == 5 and self.embedder.arch in ("resnet18", "resnet50")
        if planes:  # a 2D network on Z stacks: every plane, then the mean over z
            n, c, z = x.shape[:3]
            x = x.transpose(1, 2).reshape(n * z, c, *x.shape[3:])
        self.local.out = None
        with (
            torch.inference_mode(),
            torch.autocast(
                self.device.type,
                dtype=self.autocast or torch.float32,
                enabled=self.autocast is not None,
            ),
        ):
            output = self.net(x)
        features = self.local.out if self.embedder.layer is not None else output
        features = features.float()
        if features.ndim > 2:  # a layer with spatial axes left: average over them
            features = features.flatten(2).mean(dim=2)
        if planes:
            features = features.reshape(n, z, -1).mean(dim=1)
        return features.reshape(features.shape[0], -1).cpu().numpy().astype(np.float32)


def _load(embedder: TorchEmbedder) -> _Loaded:
    import torch

    device = _device(embedder.device, torch)
    key = (embedder.__dask_tokenize__(), str(device))
    with _LOCK:
        if key not in _CACHE:
            net = _build(embedder, torch).to(device).eval()
            if device.type == "cuda" and embedder.arch != "r3d_18":
                net = net.to(memory_format=torch.channels_last)
            _CACHE[key] = _Loaded(embedder, net, device, torch)
            _BUILDS.append(key)
        return _CACHE[key]


def _device(choice: str, torch: Any) -> Any:
    has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise RuntimeError(
            "a GPU was required (device='cuda') but this worker has none: "
            "torch.cuda.is_available() is False; pass device='auto' to use the CPU there"
        )
    return torch.device("cuda" if has_cuda and choice != "cpu" else "cpu")


def _build(embedder: TorchEmbedder, torch: Any) -> Any:
    if embedder.factory is not None:
        return embedder.factory()
    weights = embedder.weights
    if isinstance(weights, Path):
        return load_weights(embedder.arch, weights, in_channels=embedder.in_channels)
    torch.manual_seed(embedder.seed)
    return _network(embedder.arch, embedder.in_channels, imagenet=weights == "imagenet")


def load_weights(arch: str, path: str | Path, *, in_channels: int | None = None) -> Any:
    """The network in a weights file, on the CPU: TorchScript, or ``arch`` with a state dict.

    Parameters
    ----------
    arch
        One of :data:`ARCHITECTURES`; a state dict must fit it exactly, except that its
        classification head (``fc``) may have any number of classes (a trained classifier).
    path
        A state dict (loaded with ``weights_only=True``; one under a ``"state_dict"`` key
        is taken) or a TorchScript file, which is the network whatever ``arch`` is.
    in_channels
        The channels the network is to take; ``None`` takes them from the state dict's
        first convolution, so only the rest of the network is checked.

    Returns
    -------
    torch.nn.Module
        The network, not cached: each call loads the file again.

    Raises
    ------
    ValueError
        If the file is not a state dict or TorchScript file, or its keys or shapes do not
        fit ``arch`` with ``in_channels`` inputs; the message names the file and a few
        of the missing keys, unexpected keys and shape mismatches.
    """
    import torch

    path = Path(path)
    if _is_torchscript(path):
        return torch.jit.load(str(path), map_location="cpu")
    state = _read_state(path, torch)
    channels = in_channels or _stem_channels(arch, state)
    net = _network(arch, channels, imagenet=False)
    head = _shape(state.get("fc.weight"))
    if len(head) == 2 and head[1] == net.fc.in_features:  # a classifier of any number of classes
        net.fc = torch.nn.Linear(head[1], head[0], bias="fc.bias" in state)
    mismatch = _mismatch(net.state_dict(), state)
    if mismatch:
        raise ValueError(
            f"the weights in {path} do not fit {arch} with {channels} input channels: {mismatch}"
        )
    net.load_state_dict(state, strict=True)
    return net


def find_layer(net: Any, name: str) -> Any:
    """The module of ``net`` called ``name``, or a ValueError suggesting the name it resembles."""
    modules = dict(net.named_modules())
    if name in modules:
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"its layers include {names[:20]}"
    raise ValueError(f"the model has no layer {name!r}; {hint}")


def _network(arch: str, channels: int, *, imagenet: bool) -> Any:
    """The architecture (random, or with ImageNet weights) taking ``channels`` inputs."""
    import torch

    net = _architecture(arch, imagenet=imagenet, torch=torch)
    _adapt_first_convolution(net, arch, channels, torch)
    return net


def _architecture(arch: str, *, imagenet: bool, torch: Any) -> Any:
    import torchvision

    if arch == "r3d_18":
        from torchvision.models import video

        return video.r3d_18(weights=video.R3D_18_Weights.DEFAULT if imagenet else None)
    builder = getattr(torchvision.models, arch)
    enum = getattr(torchvision.models, _IMAGENET[arch])
    return builder(weights=enum.DEFAULT if imagenet else None)


def _adapt_first_convolution(net: Any, arch: str, channels: int, torch: Any) -> None:
    """Give the stem convolution ``channels`` inputs; RGB filters kept, extra ones their mean."""
    holder, name = (net.stem, "0") if arch == "r3d_18" else (net, "conv1")
    conv = getattr(holder, name) if name != "0" else holder[0]
    if conv.in_channels == channels:
        return
    weight = conv.weight.detach()
    mean = weight.mean(dim=1, keepdim=True)
    if channels < 3:
        new = mean.repeat(1, channels, *(1,) * (weight.ndim - 2)) * (3 / channels)
    else:
        new = torch.cat([weight, mean.repeat(1, channels - 3, *(1,) * (weight.ndim - 2))], dim=1)
    replacement = type(conv)(
        channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )
    replacement.weight.data = new.clone()
    if name == "0":
        holder[0] = replacement
    else:
        setattr(holder, name, replacement)


def _read_state(path: Path, torch: Any) -> Mapping[str, Any]:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} is not a torch state dict or TorchScript file ({first})") from err
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def _stem_channels(arch: str, state: Mapping[str, Any]) -> int:
    """The input channels of the first convolution in a state dict (3 when it has none)."""
    weight = state.get("stem.0.weight" if arch == "r3d_18" else "conv1.weight")
    shape = _shape(weight)
    return shape[1] if len(shape) > 2 else 3


def _mismatch(expected: Mapping[str, Any], found: Mapping[str, Any]) -> str:
    """A few of the keys and shapes in which a state dict differs from a network's ("" if none)."""
    missing = [k for k in expected if k not in found]
    unexpected = [str(k) for k in found if k not in expected]
    shapes = [
        f"{k} is {_shape(found[k])} in the file but {_shape(v)} in the network"
        for k, v in expected.items()
        if k in found and _shape(found[k]) != _shape(v)
    ]
    kinds = {"missing keys": missing, "unexpected keys": unexpected, "shape mismatches": shapes}
    return "; ".join(f"{kind} {_few(items)}" for kind, items in kinds.items() if items)


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in getattr(value, "shape", ()))


def _few(items: list[str]) -> str:
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return f"{items[:_SHOWN]}{more}"


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(
            name.endswith("/code/__torch__.py") or "/code/" in name for name in archive.namelist()
        )


def _weights(arch: str, weights: str | Path | None, allow_download: bool) -> Path | str | None:
    if weights is None:
        return None
    if weights == "imagenet":
        check_imagenet_weights(arch, allow_download)
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    return path


def imagenet_weights(arch: str) -> tuple[str, Path]:
    """Where torchvision downloads ``arch``'s ImageNet weights from, and its cached file."""
    import torch
    import torchvision

    module = torchvision.models.video if arch == "r3d_18" else torchvision.models
    url = str(getattr(module, _IMAGENET[arch]).DEFAULT.url)
    return url, Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def check_imagenet_weights(arch: str, allow_download: bool) -> None:
    """Raise ``FileNotFoundError`` saying how to get them unless ``arch``'s weights are cached."""
    url, cached = imagenet_weights(arch)
    if not cached.is_file() and not allow_download:
        raise FileNotFoundError(
            f"ImageNet weights for {arch} are not in torch's hub cache ({cached} does not exist) "
            f"and cellscale does not download at run time. Run `cellscale models --fetch {arch}` "
            f"where there is internet (it downloads {url}) and copy the file there (or set "
            "TORCH_HOME), pass weights=<file>, or pass allow_download=True"
        )


def _normalized(batch: np.ndarray, normalize: Any) -> np.ndarray:
    x = np.asarray(batch, dtype=np.float32)
    axes = tuple(range(2, x.ndim))
    if normalize == "per-crop":
        mean = x.mean(axis=axes, keepdims=True)
        std = x.std(axis=axes, keepdims=True)
        return (x - mean) / np.where(std > 0, std, 1.0)
    if normalize == "imagenet":
        top = np.iinfo(batch.dtype).max if batch.dtype.kind in "ui" else 1.0
        x = x / top
        normalize = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    if isinstance(normalize, tuple):
        shape = (1, -1, *(1,) * (x.ndim - 2))
        means = np.asarray(normalize[0], np.float32).reshape(shape)
        stds = np.asarray(normalize[1], np.float32).reshape(shape)
        return (x - means) / stds
    return x


def _resized(torch: Any, x: Any, size: int) -> Any:
    from torch.nn import functional

    if x.ndim == 4:
        return functional.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    n, c, z = x.shape[:3]
    planes = x.transpose(1, 2).reshape(n * z, c, *x.shape[3:])
    planes = functional.interpolate(
        planes, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return planes.reshape(n, z, c, size, size).transpose(1, 2)


def _qualname(factory: Callable[[], Any]) -> str:
    return (
        f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"
    )
