"""Marking tasks that need a GPU, so that only GPU-tagged workers run them."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import dask

__all__ = ["KEEP_ANNOTATIONS", "PRESERVE_ANNOTATIONS", "gpu_tasks", "preserve_annotations"]

#: dask settings under which graph optimisation keeps per-layer annotations: low-level
#: fusion turns the graph into a plain dict and drops them, and blockwise fusion would
#: merge a GPU layer into its CPU-only neighbours (which would then need a GPU too).
PRESERVE_ANNOTATIONS = {"optimization.fuse.active": False, "optimization.annotations.fuse": False}


@contextmanager
def gpu_tasks(gpus: int = 1) -> Iterator[None]:
    """Mark every task built inside the block as needing ``gpus`` GPUs of a worker.

    Stage code wraps the one graph-building call whose tasks run a model on the GPU;
    everything built outside the block (reading, projecting, writing) stays untagged and
    runs on any worker. The mark is the worker resource ``GPU``: cellscale's clusters give it
    to GPU workers only (:func:`~cellscale.start_cluster`), so tagged tasks wait for one.

    The mark is a layer annotation, which dask's default graph optimisation drops; the
    client from :func:`~cellscale.start_cluster` computes with
    :func:`preserve_annotations` in effect for its whole life, so ``.compute()``,
    ``.persist()``, ``dask.compute`` and ``to_zarr`` keep it. Outside such a client, compute
    inside ``with preserve_annotations():``.

    Parameters
    ----------
    gpus
        GPUs each task holds while it runs (a worker with ``GPU=1`` runs one at a time).

    Examples
    --------
    In a stage (the model is loaded once per worker, not shipped with each task):

    >>> import dask.array as da
    >>> images = da.ones((4, 64, 64), chunks=(1, 64, 64))
    >>> with gpu_tasks():
    ...     labels = images.map_blocks(lambda b: (b > 0).astype("uint32"), dtype="uint32")
    >>> layer = labels.__dask_graph__().layers[labels.name]
    >>> layer.annotations
    {'resources': {'GPU': 1}}
    """
    if gpus < 1:
        raise ValueError(f"gpus must be at least 1, got {gpus}")
    with dask.annotate(resources={"GPU": gpus}):
        yield


@contextmanager
def preserve_annotations() -> Iterator[None]:
    """Compute inside this block so that graph optimisation keeps task annotations.

    Blockwise fusion of untagged layers with each other still happens; only fusion across
    differently annotated layers and low-level linear fusion are turned off.

    Examples
    --------
    >>> with preserve_annotations():
    ...     dask.config.get("optimization.fuse.active")
    False
    """
    with dask.config.set(PRESERVE_ANNOTATIONS):
        yield


class SharedConfig:
    """dask config values in effect while at least one holder (e.g. an open client) needs them.

    Holders may come and go in any order: the previous values come back only when the last
    one releases, unlike nested ``dask.config.set`` blocks. Keys named in ``restore`` are
    left alone while held but also get their previous values back on the last release;
    ``distributed.Client`` sets ``scheduler`` like a nested block, so
    clients closed out of order would otherwise leave the distributed scheduler
    configured with no client to run it.
    """

    def __init__(self, values: Mapping[str, Any], restore: Sequence[str] = ()) -> None:
        self._values = dict(values)
        self._restore = tuple(restore)
        self._holders = 0
        self._active: dask.config.set | None = None
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Add a holder; the first one puts the values in effect."""
        with self._lock:
            if self._holders == 0:
                current = {key: dask.config.get(key, None) for key in self._restore}
                self._active = dask.config.set({**current, **self._values})
            self._holders += 1

    def release(self) -> None:
        """Remove a holder; the last one restores the previous values."""
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._active is not None:
                self._active.__exit__(None, None, None)
                self._active = None


#: Held by every open client from :func:`~cellscale.start_cluster`.
KEEP_ANNOTATIONS = SharedConfig(PRESERVE_ANNOTATIONS, restore=("scheduler",))
