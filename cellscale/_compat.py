"""Every use of another library's private internals, in one place, each named and tested.

- dask's task spec (``dask._task_spec``): :func:`guard_graph` rewrites a graph so that a
  failing task returns its error as a value instead of stopping the whole computation.
- zarr's ``zarr.core`` types (array config, group metadata) and its sync bridge, which
  :func:`chunk_exists` uses for stores that are not on a local disk.
- zarr's array metadata documents: :func:`array_metadata_document` reads one as stored,
  and :func:`array_at` opens an array from a parsed document without reading it again,
  so a plate's many identical field arrays open from one document.
- zarr's chunk grid type: :func:`regular_chunk_grid`, for the chunk files read directly.
- numcodecs' Blosc header: :func:`blosc_sizes`, to check a chunk file before decoding it.
- dask's task nodes, :class:`Task` and :class:`TaskRef`, to add one task to a graph.
- dask DataFrame internals: :func:`frame_meta` and :func:`frame_name`.
- distributed's SpecCluster internals: :class:`SpecClusterHooks` turns the hooks a
  subclass overrides into public-named ones; :func:`correct_state` and
  :func:`close_with_cluster` call into it.
- dask-jobqueue's worker command: :func:`job_command` and :func:`set_job_command`.
- distributed's ``sync``: a Ctrl-C that lands before its coroutine has started makes
  the loop's ``cancel`` callback raise ``NameError`` (its ``future`` is not assigned
  yet), which tornado logs with a traceback; :func:`quiet_sync_cancel_race` drops
  exactly that record. A Ctrl-C that cancels a ``gather`` leaves its inner task failed
  with distributed's ``AllExit``, which asyncio logs as "Task exception was never
  retrieved" when the task is collected; :func:`quiet_cancelled_gather` drops that.

Each is pinned by ``tests/test_compat.py`` against the installed versions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import zarr
from dask._task_spec import GraphNode, Task, TaskRef, convert_legacy_graph
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from numcodecs import blosc
from zarr.core.array import AsyncArray, get_array_metadata, parse_array_metadata
from zarr.core.array_spec import ArrayConfigParams
from zarr.core.chunk_grids import RegularChunkGrid
from zarr.core.group import GroupMetadata
from zarr.core.metadata import ArrayMetadata
from zarr.core.sync import sync
from zarr.storage import StorePath

if TYPE_CHECKING:  # distributed is imported by its users, not here: _compat stays cheap
    from distributed import SpecCluster

    _SpecClusterBase = SpecCluster
else:
    _SpecClusterBase = object

__all__ = [
    "ArrayConfigParams",
    "ArrayMetadata",
    "Failed",
    "GroupMetadata",
    "SpecClusterHooks",
    "Task",
    "TaskRef",
    "array_at",
    "array_metadata_document",
    "blosc_sizes",
    "close_with_cluster",
    "correct_state",
    "frame_meta",
    "frame_name",
    "guard_graph",
    "job_command",
    "parse_array_metadata",
    "regular_chunk_grid",
    "set_job_command",
    "store_key_exists",
]


class Failed:
    """The value a guarded task returns when it, or a task it depends on, raised.

    Attributes
    ----------
    error
        The exception, with its type and traceback (where it survived pickling).
    key
        The key of the task that raised.
    """

    __slots__ = ("error", "key")

    def __init__(self, error: BaseException, key: Any) -> None:
        self.error = error
        self.key = key

    def __repr__(self) -> str:
        return f"Failed({self.error!r} in task {self.key!r})"


class _Held:
    """A task node carried as a plain argument, so dask does not evaluate it in place."""

    __slots__ = ("node",)

    def __init__(self, node: GraphNode) -> None:
        self.node = node

    def __dask_tokenize__(self) -> str:
        return tokenize("guarded", self.node)


def _run_guarded(held: _Held, keys: tuple[Any, ...], *values: Any) -> Any:
    for value in values:
        if isinstance(value, Failed):
            return value
    try:
        return held.node(dict(zip(keys, values, strict=True)))
    except Exception as err:
        return Failed(err, held.node.key)


def _guard(node: GraphNode) -> Task:
    keys = tuple(node.dependencies)
    return Task(node.key, _run_guarded, _Held(node), keys, *(TaskRef(k) for k in keys))


def guard_graph(graphs: Iterable[Mapping[Any, Any]]) -> HighLevelGraph:
    """Merge ``graphs`` into one whose tasks return :class:`Failed` instead of raising.

    A task whose inputs include a :class:`Failed` returns that value without running,
    so the failure reaches every output that depends on it and nothing else stops. Keys,
    layers and layer annotations (e.g. GPU resources) are kept; each layer is
    materialised.
    """
    # not blockwise: rewrites the tasks of any graph, under their own keys, whatever built them
    merged = HighLevelGraph.merge(*graphs)
    every_key = set(merged.keys())  # a legacy tuple naming another layer's key is a reference
    layers = {}
    for name, layer in merged.layers.items():
        tasks = convert_legacy_graph(dict(layer), all_keys=every_key)
        layers[name] = MaterializedLayer(
            {key: _guard(node) for key, node in tasks.items()}, annotations=layer.annotations
        )
    return HighLevelGraph(layers, dict(merged.dependencies))


def store_key_exists(store: Any, key: str) -> bool:
    """Whether ``key`` exists in a zarr store, from synchronous code."""
    return bool(sync(store.exists(key)))


def array_metadata_document(array: zarr.Array) -> dict[str, Any]:
    """The JSON metadata document of ``array`` as stored (v2 attributes included)."""
    where = StorePath(array.store, array.path)
    return dict(sync(get_array_metadata(where, zarr_format=array.metadata.zarr_format)))


def array_at(store: Any, path: str, metadata: ArrayMetadata) -> zarr.Array:
    """The array at ``path`` in ``store`` with ``metadata``, opened without reading the store."""
    return zarr.Array(AsyncArray(metadata=metadata, store_path=StorePath(store, path)))


def regular_chunk_grid(metadata: Any) -> bool:
    """Whether zarr array ``metadata`` has a regular chunk grid (``zarr.core.chunk_grids``)."""
    return isinstance(metadata.chunk_grid, RegularChunkGrid)


def blosc_sizes(data: bytes) -> tuple[int, int]:
    """Decoded and encoded byte counts from a Blosc header (``numcodecs.blosc._cbuffer_sizes``)."""
    nbytes, cbytes, _ = blosc._cbuffer_sizes(data)
    return int(nbytes), int(cbytes)


def frame_meta(frame: Any) -> Any:
    """The empty pandas object a dask DataFrame or Series declares (its ``_meta``)."""
    return frame._meta


def frame_name(frame: Any) -> str:
    """A dask DataFrame's graph name, a token of how it was built (its ``_name``)."""
    return str(frame._name)


def job_command(job: Any) -> str:
    """The worker command a dask-jobqueue job's script runs (``Job._command_template``)."""
    return str(job._command_template)


def set_job_command(job: Any, command: str) -> None:
    """Make a dask-jobqueue job's script run ``command`` (``Job._command_template``)."""
    job._command_template = command


def correct_state(cluster: Any) -> Any:
    """Start and stop a SpecCluster's processes to match its ``worker_spec``; awaitable.

    This is ``SpecCluster._correct_state``, which ``scale`` calls; concurrent calls share
    one run.
    """
    return cluster._correct_state()


def close_with_cluster(cluster: Any, awaitable: Awaitable[Any]) -> None:
    """Run ``awaitable`` now; closing the SpecCluster waits for it (``SpecCluster._futures``)."""
    cluster._futures.add(asyncio.ensure_future(awaitable))


class SpecClusterHooks(_SpecClusterBase):
    """Mixin for a :class:`distributed.SpecCluster` subclass (listed before SpecCluster).

    It overrides SpecCluster's private hooks and calls public-named methods the subclass
    overrides in turn: :meth:`after_correct_state`, :meth:`on_worker_removed`,
    :meth:`before_close` and :meth:`after_close`. SpecCluster's own handling of a lost
    worker (forget its process after ``distributed.deploy.lost-worker-timeout``) is skipped:
    the subclass decides in :meth:`on_worker_removed`.
    """

    def after_correct_state(self) -> None:
        """Called on the loop each time the processes were brought in line with ``worker_spec``."""

    def on_worker_removed(self, address: str) -> None:
        """Called when the scheduler reports ``address`` gone; ``scheduler_info`` still lists it."""

    def before_close(self) -> None:
        """Called on the loop as closing begins, before SpecCluster's own close."""

    def after_close(self) -> None:
        """Called on the loop after SpecCluster's own close, even if that failed."""

    @property
    def _supports_scaling(self) -> bool:  # type: ignore[override]
        """``Cluster._supports_scaling``: without a ``worker`` template SpecCluster says no."""
        return True

    async def _correct_state_internal(self) -> None:
        """``SpecCluster._correct_state_internal``, then :meth:`after_correct_state`."""
        await super()._correct_state_internal()
        self.after_correct_state()

    def _update_worker_status(self, op: str, msg: Any) -> None:
        """:meth:`on_worker_removed`, then ``Cluster._update_worker_status`` (not SpecCluster's)."""
        from distributed import SpecCluster

        if op == "remove" and msg in self.scheduler_info.get("workers", {}):
            self.on_worker_removed(msg)
        super(SpecCluster, self)._update_worker_status(op, msg)

    async def _close(self) -> None:
        """``SpecCluster._close``, between :meth:`before_close` and :meth:`after_close`."""
        self.before_close()
        try:
            await super()._close()
        finally:
            self.after_close()


class _SyncCancelRace(logging.Filter):
    """Drops the record of distributed's ``sync`` cancel callback failing on ``future``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_sync_cancel_race(record.exc_info)


_SYNC_CANCEL_RACE = _SyncCancelRace()


def is_sync_cancel_race(exc_info: Any) -> bool:
    """Whether ``exc_info`` is distributed's ``sync.<locals>.cancel`` failing on ``future``."""
    if not exc_info or not isinstance(exc_info[1], NameError) or exc_info[2] is None:
        return False
    frame = exc_info[2]
    while frame.tb_next is not None:
        frame = frame.tb_next
    code = frame.tb_frame.f_code
    return (
        code.co_name == "cancel"
        and code.co_filename.replace("\\", "/").endswith("distributed/utils.py")
        and exc_info[1].name == "future"
    )


class _CancelledGather(logging.Filter):
    """Drops asyncio's record of a ``gather`` task a Ctrl-C cancelled (``AllExit``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_cancelled_gather(record.exc_info)


_CANCELLED_GATHER = _CancelledGather()


def is_cancelled_gather(exc_info: Any) -> bool:
    """Whether ``exc_info`` is distributed's ``AllExit``: all of a gather's futures cancelled."""
    from distributed.client import AllExit

    return bool(exc_info) and isinstance(exc_info[1], AllExit)


def quiet_cancelled_gather() -> None:
    """Keep asyncio from logging the ``AllExit`` of a cancelled gather (idempotent)."""
    logger = logging.getLogger("asyncio")
    if _CANCELLED_GATHER not in logger.filters:
        logger.addFilter(_CANCELLED_GATHER)


def quiet_sync_cancel_race() -> None:
    """Keep tornado from logging the ``sync`` cancel race (idempotent)."""
    logger = logging.getLogger("tornado.application")
    if _SYNC_CANCEL_RACE not in logger.filters:
        logger.addFilter(_SYNC_CANCEL_RACE)
