"""Every use of another library's private internals, in one place, each named and tested.

- dask's task spec (``dask._task_spec``): :func:`guard_graph` rewrites a graph so that a
  failing task returns its error as a value instead of stopping the whole computation.
- zarr's ``zarr.core`` types (array config, group metadata) and its sync bridge, which
  :func:`chunk_exists` uses for stores that are not on a local disk.
- zarr's array metadata documents: :func:`array_metadata_document` reads one as stored,
  and :func:`array_at` opens an array from a parsed document without reading it again,
  so a plate's many identical field arrays open from one document.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import zarr
from dask._task_spec import GraphNode, Task, TaskRef, convert_legacy_graph
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from zarr.core.array import AsyncArray, get_array_metadata, parse_array_metadata
from zarr.core.array_spec import ArrayConfigParams
from zarr.core.group import GroupMetadata
from zarr.core.metadata import ArrayMetadata
from zarr.core.sync import sync
from zarr.storage import StorePath

__all__ = [
    "ArrayConfigParams",
    "ArrayMetadata",
    "Failed",
    "GroupMetadata",
    "array_at",
    "array_metadata_document",
    "guard_graph",
    "parse_array_metadata",
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
