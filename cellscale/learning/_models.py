"""Networks to train on cells: a torchvision backbone with a classification head and optional
reconstruction and domain-adversarial heads.

The backbone is the embedder's own network (:func:`cellscale.embedding._torch._network`),
so the weights training writes load unchanged into
:class:`~cellscale.embedding._torch.TorchEmbedder`. On top of the features (the backbone's
global average pool) sit, when asked for, a decoder to a downsampled copy of the input (the
autoencoder-classifier) and a domain classifier behind a gradient-reversal layer (the
domain-adversarial network of Ganin et al., 2016). This module imports torch: it is only
imported on demand.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from cellscale.embedding._torch import ARCHITECTURES, _network

__all__ = [
    "CellClassifier",
    "GradientReversal",
    "build_model",
    "load_classifier",
    "reconstruction_target",
]

RECONSTRUCTION_SIZE = 16  # pixels per side of the downsampled copy the decoder draws
_HIDDEN = 256  # units of the heads' hidden layer


class GradientReversal(torch.autograd.Function):
    """Identity on the way forward; the gradient times ``-coefficient`` on the way back."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coefficient * grad, None


class CellClassifier(nn.Module):
    """A backbone classifying cells, with optional reconstruction and domain heads.

    Parameters
    ----------
    arch
        ``"resnet18"`` or ``"resnet50"`` for 2D crops ``(N, C, Y, X)``, ``"r3d_18"`` for
        Z stacks ``(N, C, Z, Y, X)``.
    in_channels
        The crops' channels.
    n_classes
        The classes the head tells apart (at least 2).
    reconstruction
        Add a decoder from the features to the input pooled to 16 × 16 per channel (a Z stack
        is averaged over z first): see :func:`reconstruction_target`.
    n_domains
        With 2 or more, add a domain classifier behind a :class:`GradientReversal` whose
        coefficient is :attr:`reversal` (set by the training loop).

    Attributes
    ----------
    backbone
        The torchvision network, its ``fc`` giving ``n_classes`` logits.
    reversal
        The gradient-reversal coefficient (lambda) the domain head's gradient is multiplied
        by on its way into the backbone.
    """

    def __init__(
        self,
        arch: str,
        in_channels: int,
        n_classes: int,
        *,
        reconstruction: bool = False,
        n_domains: int = 0,
    ) -> None:
        super().__init__()
        _check_settings(arch, n_classes, n_domains)
        self.arch = arch
        self.in_channels = int(in_channels)
        self.backbone = _network(arch, self.in_channels, imagenet=False)
        n_features = int(self.backbone.fc.in_features)
        self.backbone.fc = nn.Linear(n_features, n_classes)
        self.decoder = (
            _head(n_features, in_channels * RECONSTRUCTION_SIZE**2) if reconstruction else None
        )
        self.domain_head = _head(n_features, n_domains) if n_domains >= 2 else None
        self.n_domains = int(n_domains) if n_domains >= 2 else 0
        self.reversal = 0.0

    @property
    def config(self) -> dict[str, Any]:
        """What :func:`build_model` needs to build this network again."""
        return {
            "arch": self.arch,
            "in_channels": self.in_channels,
            "n_classes": int(self.backbone.fc.out_features),
            "reconstruction": self.decoder is not None,
            "n_domains": self.n_domains,
        }

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``logits``, ``features`` and (with those heads) ``reconstruction``, ``domain_logits``."""
        *trunk, fc = self.backbone.children()  # the backbone's own order, avgpool last
        for module in trunk:
            x = module(x)
        features = torch.flatten(x, 1)
        out = {"logits": fc(features), "features": features}
        if self.decoder is not None:
            size = (self.in_channels, RECONSTRUCTION_SIZE, RECONSTRUCTION_SIZE)
            out["reconstruction"] = self.decoder(features).reshape(-1, *size)
        if self.domain_head is not None:
            out["domain_logits"] = self.domain_logits(features)
        return out

    def domain_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The domain head's logits of ``features``, behind the gradient reversal."""
        if self.domain_head is None:
            raise ValueError("this model has no domain head: build it with n_domains >= 2")
        return self.domain_head(GradientReversal.apply(features, self.reversal))

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """The backbone's weights: what ``weights.pt`` holds, for the embedder."""
        return {key: value.detach().clone() for key, value in self.backbone.state_dict().items()}


def build_model(
    arch: str, in_channels: int, n_classes: int, *, reconstruction: bool = False, n_domains: int = 0
) -> CellClassifier:
    """A :class:`CellClassifier`, randomly initialised from torch's global generator.

    See :class:`CellClassifier` for the parameters.
    """
    return CellClassifier(
        arch, in_channels, n_classes, reconstruction=reconstruction, n_domains=n_domains
    )


def load_classifier(path: str | Path) -> CellClassifier:
    """The classifier in a ``model.pt`` written by training (its settings and state dict)."""
    saved = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(saved, Mapping) or not {"config", "state_dict"} <= set(saved):
        raise ValueError(
            f"{path} is not a classifier written by cellscale training (it needs 'config' and "
            "'state_dict'); for a backbone's weights.pt use TorchEmbedder(arch, weights=path)"
        )
    model = build_model(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model


def reconstruction_target(x: torch.Tensor) -> torch.Tensor:
    """What the decoder draws: each channel average-pooled to 16 × 16 (a Z stack's z mean)."""
    if x.ndim == 5:
        x = x.mean(dim=2)
    return functional.adaptive_avg_pool2d(x.float(), RECONSTRUCTION_SIZE)


def _head(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, _HIDDEN), nn.ReLU(), nn.Linear(_HIDDEN, n_out))


def _check_settings(arch: str, n_classes: int, n_domains: int) -> None:
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    if n_classes < 2:
        raise ValueError(
            f"n_classes must be at least 2 to train a classifier, got {n_classes}; "
            "check the label column has two or more values in the training data"
        )
    if n_domains < 0:
        raise ValueError(f"n_domains must be 0 or more, got {n_domains}")
