"""Compute a fit in one pass, with a progress bar counting the images read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
from dask.callbacks import Callback
from dask.delayed import Delayed

from cellscale._stages import default_client
from cellscale._stages._run import StageBar

__all__ = ["compute_fit"]


class _ReadTicks(Callback):
    """Moves a progress bar on by one for every finished task of one graph layer."""

    def __init__(self, layer: str, bar: StageBar) -> None:
        super().__init__()
        self._layer = layer
        self._bar = bar

    def _posttask(self, key: Any, *args: Any) -> None:
        if isinstance(key, tuple) and key[0] == self._layer:
            self._bar.advance()


def compute_fit(
    results: Sequence[Delayed], layer: str, images: int, *, progress: bool, desc: str
) -> list[Any]:
    """Compute ``results`` together, in one graph.

    A progress bar (:class:`~cellscale._stages._run.StageBar`: named ``desc`` or by the
    caller's :func:`~cellscale._stages._run.progress_label`) counts the finished tasks of
    ``layer`` (one per image read) out of ``images``, so ``results`` must hold those
    tasks under their own keys (built from arrays with ``to_delayed(optimize_graph=False)``:
    fusing would rename them). On a ``distributed`` client the scheduler is asked how many
    of them are left, every half second.
    """
    bar = StageBar(desc, images, progress=progress, unit="image")
    try:
        client = default_client()
        if client is None:
            with _ReadTicks(layer, bar):
                return list(dask.compute(*results))
        futures = client.compute(list(results))
        if progress:
            _follow(client, futures, layer, images, bar)
        return list(client.gather(futures))
    finally:
        bar.close()


def _follow(client: Any, futures: list[Any], layer: str, images: int, bar: StageBar) -> None:
    """Move ``bar`` on as the scheduler finishes the tasks of ``layer``, until ``futures`` are."""
    from distributed import wait

    done = 0
    while True:
        try:
            wait(futures, timeout=0.5)
            finished = images
        except TimeoutError:
            left = client.run_on_scheduler(_left, layer=layer)
            finished = done if left is None else max(images - left, done)
        bar.advance(finished - done)
        done = finished
        if done >= images:
            return


def _left(layer: str, dask_scheduler: Any) -> int | None:
    """How many tasks of ``layer`` are still to run (None: the scheduler has none of it)."""
    group = dask_scheduler.task_groups.get(layer)
    if group is None:
        return None
    return sum(group.states.get(s, 0) for s in ("waiting", "queued", "processing", "no-worker"))
