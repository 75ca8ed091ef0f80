"""Compute a fit in one pass, with a progress bar counting the images read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
from dask.callbacks import Callback
from dask.delayed import Delayed
from tqdm.auto import tqdm

from cellscale._stages import default_client

__all__ = ["compute_fit"]


class _ReadTicks(Callback):
    """Moves a progress bar on by one for every finished task of one graph layer."""

    def __init__(self, layer: str, bar: tqdm) -> None:
        super().__init__()
        self._layer = layer
        self._bar = bar

    def _posttask(self, key: Any, *args: Any) -> None:
        if isinstance(key, tuple) and key[0] == self._layer:
            self._bar.update(1)


def compute_fit(
    results: Sequence[Delayed], layer: str, images: int, *, progress: bool, desc: str
) -> list[Any]:
    """Compute ``results`` together, in one graph.

    On the local schedulers a tqdm bar counts the finished tasks of ``layer`` (one per
    image read) out of ``images``, so ``results`` must hold those tasks under their own
    keys (built from arrays with ``to_delayed(optimize_graph=False)``: fusing would
    rename them). On a ``distributed`` client, its own progress bar follows every task.
    """
    client = default_client()
    if client is not None:
        futures = client.compute(list(results))
        if progress:
            from distributed import progress as distributed_progress

            distributed_progress(futures)
        return list(client.gather(futures))
    bar = tqdm(total=images, desc=desc, unit="image", disable=not progress)
    with bar, _ReadTicks(layer, bar):
        return list(dask.compute(*results))
