"""Augmentations of training images: flips, 90° rotations and per-channel intensity jitter.

Every draw comes from a generator passed in, so an image's augmentation depends only on
that generator's seed: datasets derive one from ``(seed, epoch, index)`` with
:func:`augment_rng`, which makes a training run repeatable whatever the number of
DataLoader workers. Spatial operations act on the last two axes only (``y, x``), so the
same augmentation serves ``(C, Y, X)`` and ``(C, Z, Y, X)`` images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Augment", "augment_rng"]


def augment_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample's augmentation in one epoch.

    Examples
    --------
    >>> bool(augment_rng(0, 1, 5).random() == augment_rng(0, 1, 5).random())
    True
    """
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def _numpy_rng(rng: Any) -> np.random.Generator:
    """A NumPy generator from a NumPy or torch generator or an int seed."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer):
        return np.random.default_rng(int(rng))
    import torch

    if isinstance(rng, torch.Generator):
        seed = torch.randint(0, 2**62, (1,), generator=rng).item()
        return np.random.default_rng(int(seed))
    raise TypeError(
        f"rng must be a numpy.random.Generator, a torch.Generator or an int seed, got {type(rng)}"
    )


@dataclass(frozen=True)
class Augment:
    """Random flips, 90° rotations and per-channel intensity jitter of an image.

    Parameters
    ----------
    flip
        Flip along y and along x, each with probability 1/2.
    rotate
        Rotate by a multiple of 90° drawn uniformly (square images only).
    scale
        ``(low, high)`` of the factor each channel is multiplied by.
    shift
        ``(low, high)`` of the offset added to each channel (after scaling). Datasets
        normalise before augmenting, so the offset is in units of a channel's standard
        deviation.

    Examples
    --------
    >>> image = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    >>> out = Augment(scale=(0.9, 1.1))(image, np.random.default_rng(0))
    >>> out.shape, out.dtype
    ((2, 2, 2), dtype('float32'))
    >>> Augment.none().identity
    True
    """

    flip: bool = True
    rotate: bool = True
    scale: tuple[float, float] = (1.0, 1.0)
    shift: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        for name in ("scale", "shift"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ValueError(f"the {name} range must be (low, high) with low <= high")

    @classmethod
    def none(cls) -> Augment:
        """The identity: no flips, no rotations, no jitter."""
        return cls(flip=False, rotate=False)

    @property
    def identity(self) -> bool:
        """Whether this augmentation leaves every image as it is."""
        return (
            not self.flip
            and not self.rotate
            and self.scale == (1.0, 1.0)
            and self.shift == (0.0, 0.0)
        )

    def __call__(self, image: Any, rng: Any) -> Any:
        """Augment one ``(C, Y, X)`` or ``(C, Z, Y, X)`` image (NumPy array or torch tensor).

        Parameters
        ----------
        image
            The image; the result has its type, shape and (floating) dtype.
        rng
            A ``numpy.random.Generator``, a ``torch.Generator`` or an int seed.
        """
        if image.ndim not in (3, 4):
            raise ValueError(f"Augment takes (C, Y, X) or (C, Z, Y, X) images, got {image.shape}")
        if self.rotate and image.shape[-1] != image.shape[-2]:
            raise ValueError(
                f"90° rotations need square images, got y, x = {tuple(image.shape[-2:])}; "
                "cut square crops or use Augment(rotate=False)"
            )
        if self.identity:
            return image
        draws = _numpy_rng(rng)
        flips = draws.random(2) < 0.5 if self.flip else np.zeros(2, bool)
        turns = int(draws.integers(4)) if self.rotate else 0
        channels = image.shape[0]
        scale = draws.uniform(*self.scale, channels).astype(np.float32)
        shift = draws.uniform(*self.shift, channels).astype(np.float32)
        if isinstance(image, np.ndarray):
            return _numpy_apply(image, flips, turns, scale, shift)
        return _torch_apply(image, flips, turns, scale, shift)


def _numpy_apply(
    image: np.ndarray, flips: np.ndarray, turns: int, scale: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    axes = tuple(a for a, flipped in zip((-2, -1), flips, strict=True) if flipped)
    out = np.flip(image, axes) if axes else image
    out = np.rot90(out, turns, axes=(-2, -1))
    spread = (-1,) + (1,) * (image.ndim - 1)
    dtype = image.dtype if image.dtype.kind == "f" else np.dtype(np.float32)
    return (out * scale.reshape(spread) + shift.reshape(spread)).astype(dtype, copy=False)


def _torch_apply(
    image: Any, flips: np.ndarray, turns: int, scale: np.ndarray, shift: np.ndarray
) -> Any:
    import torch

    dims = [d for d, flipped in zip((-2, -1), flips, strict=True) if flipped]
    out = torch.flip(image, dims) if dims else image
    out = torch.rot90(out, turns, dims=(-2, -1))
    spread = (-1,) + (1,) * (image.ndim - 1)
    dtype = image.dtype if image.is_floating_point() else torch.float32
    factor = torch.from_numpy(scale).reshape(spread).to(out.device)
    offset = torch.from_numpy(shift).reshape(spread).to(out.device)
    return (out * factor + offset).to(dtype)
