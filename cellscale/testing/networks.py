"""Small torch networks with fixed weights for tests: they run in milliseconds on a CPU.

:func:`blob_flow_network` follows cellpose's network contract (``forward(x) -> (y,
style)`` with ``y`` holding the Y flow, X flow and cell probability of every pixel, plus
``device`` and ``dtype`` attributes), with weights chosen so that its flows point up the
blurred intensity of the first channel: on fields of bright blobs, cellpose's own dynamics
then turn its output into one mask per blob. It stands in for a trained model where none
can be downloaded. Importing this module imports torch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

__all__ = ["BlobFlowNet", "blob_flow_network"]


class BlobFlowNet(nn.Module):
    """Cellpose-shaped outputs from fixed filters: flows up a blur, probability from brightness.

    Parameters
    ----------
    sigma
        Width of the blur whose gradient gives the flows, in pixels (about a third of the
        blobs' radius works well).
    """

    def __init__(self, sigma: float = 3.0) -> None:
        super().__init__()
        radius = int(3 * sigma)
        grid = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(grid**2) / (2 * sigma**2))
        self.blur: torch.Tensor
        self.register_buffer("blur", (kernel / kernel.sum()).reshape(1, 1, 1, -1))
        self.pad = radius
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)
        self.calls: list[int] = []

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    @property
    def dtype(self) -> torch.dtype:
        return self.anchor.dtype

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(batch, channels, y, x)`` -> flows and cell probability, and zero styles."""
        self.calls.append(int(x.shape[0]))
        image = x[:, :1].float()
        pad = self.pad
        blurred = functional.conv2d(
            functional.pad(image, (pad, pad, 0, 0), mode="replicate"), self.blur
        )
        blurred = functional.conv2d(
            functional.pad(blurred, (0, 0, pad, pad), mode="replicate"), self.blur.transpose(2, 3)
        )
        grad_y = torch.zeros_like(blurred)
        grad_x = torch.zeros_like(blurred)
        grad_y[..., 1:-1, :] = (blurred[..., 2:, :] - blurred[..., :-2, :]) / 2
        grad_x[..., :, 1:-1] = (blurred[..., :, 2:] - blurred[..., :, :-2]) / 2
        norm = torch.sqrt(grad_y**2 + grad_x**2) + 1e-6
        cellprob = 12.0 * (image - 0.5)
        flows = torch.cat([5 * grad_y / norm, 5 * grad_x / norm, cellprob], dim=1)
        style = torch.zeros(x.shape[0], 256, dtype=flows.dtype, device=flows.device)
        return flows.to(x.dtype), style.to(x.dtype)


def blob_flow_network() -> BlobFlowNet:
    """A :class:`BlobFlowNet` in evaluation mode: pass it to ``CellposeSegmenter(network=...)``."""
    return BlobFlowNet().eval()
