"""Run a stage's unit tasks: every unit is attempted, every failure is reported by unit.

A stage builds one delayed task per unit (a field, a chunk of cells) whose result is
discarded; the task records the unit complete in the output's ledger itself. Before
running, the graph is rewritten so a failing task hands its error downstream as a
value (:func:`cellscale._compat.guard_graph`): on the local scheduler and on a
distributed client alike, every other unit still runs, and the failed ones are
reported together as one :class:`UnitFailure`.

Progress bars are named after the stage's writer (``write-plate``) unless a caller names
what the work is for: within :func:`progress_label` (``"segment P1"``, counting ``field``
out of the plate's fields present), every bar takes that name and counts those units,
units already done before counting as done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import dask
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from tqdm.auto import tqdm

from cellscale._compat import Failed, Task, TaskRef, guard_graph
from cellscale._stages._failures import UnitFailure
from cellscale._stages._lock import Lease

__all__ = [
    "StageBar",
    "UnitListener",
    "compute_units",
    "default_client",
    "delayed_blocks",
    "lazy_units",
    "listen_to_units",
    "progress_label",
    "run_units",
    "shared_delayed_blocks",
]


@dataclass(frozen=True)
class _Label:
    desc: str
    unit: str
    total: int | None


_LABEL: ContextVar[_Label | None] = ContextVar("cellscale_progress_label", default=None)


class UnitListener(Protocol):
    """Told, in the process that runs the units, what :func:`run_units` does."""

    def began(self) -> None:
        """The units are about to run: the output's ledger now says what is left."""

    def done(self, name: str) -> None:
        """The unit ``name`` (``"B03/f2/t0"``) succeeded and is recorded complete."""


_LISTENER: ContextVar[UnitListener | None] = ContextVar("cellscale_units", default=None)


@contextlib.contextmanager
def listen_to_units(listener: UnitListener) -> Iterator[None]:
    """Tell ``listener`` about the units :func:`run_units` runs within the block.

    A progress view follows a stage from these calls instead of polling its ledger.
    """
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


@contextlib.contextmanager
def progress_label(desc: str, *, unit: str = "unit", total: int | None = None) -> Iterator[None]:
    """Name the progress bars made within the block, and say what they count.

    Parameters
    ----------
    desc
        The bars' name, e.g. ``"segment P1"``.
    unit
        What the bars count, e.g. ``"field"`` or ``"cell"``.
    total
        How many of them the whole work has (done before or not); a bar's own work is
        the part not done yet, and moves it on to ``total`` in proportion.
    """
    token = _LABEL.set(_Label(desc, unit, total))
    try:
        yield
    finally:
        _LABEL.reset(token)


class StageBar:
    """A progress bar over ``work`` (the summed weights of its tasks), named as labelled.

    Outside :func:`progress_label` it counts the work itself, named ``stage``. Within
    one, it is named by the label and counts the label's units: those beyond ``work``
    were done before and show as done, and the work moves the bar on to the label's
    total in proportion (exactly, when each unit of work is one of the label's units).
    """

    def __init__(self, stage: str, work: int, *, progress: bool, unit: str = "unit") -> None:
        label = _LABEL.get()
        desc, total = stage, work
        if label is not None:
            desc, unit = label.desc, label.unit
            total = work if label.total is None else int(label.total)
        self._initial = max(total - work, 0)
        self._scale = (total - self._initial) / work if work else 0.0
        self._done = 0
        self._bar = tqdm(
            total=total, initial=self._initial, desc=desc, unit=unit, disable=not progress
        )

    def advance(self, weight: int = 1) -> None:
        """Count ``weight`` more of the work as done."""
        self._done += weight
        self._bar.update(self._initial + round(self._done * self._scale) - self._bar.n)

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()


def default_client() -> Any:
    """The current distributed client, if one is running (never starts one)."""
    try:
        from distributed import default_client as _default_client
    except ImportError:  # pragma: no cover - distributed is a core dependency
        return None
    try:
        return _default_client()
    except ValueError:
        return None


def run_units(
    stage: str,
    tasks: Sequence[Delayed],
    names: Sequence[str],
    *,
    client: Any = None,
    progress: bool = True,
    weights: Sequence[int] | None = None,
) -> list[Any]:
    """Compute ``tasks`` (one per unit, named by ``names``); return their results, or raise.

    Parameters
    ----------
    stage
        Stage name for the progress bar and error messages.
    tasks
        One delayed task per unit.
    names
        A readable name per unit (``"B03/f2/t0"``) used in error messages.
    client
        A ``distributed.Client``; defaults to the current one, else the local scheduler
        dask is configured with.
    progress
        Show a progress bar (named by :func:`progress_label` where one is given).
    weights
        How much of the work each task is (e.g. its rows), for the bar; 1 each by default.

    Returns
    -------
    list
        Each unit's result, in the order of ``tasks``.

    Raises
    ------
    UnitFailure
        Listing every failed unit with its error; also an instance of the errors'
        common type.
    """
    if len(tasks) != len(names):
        raise ValueError(f"{len(tasks)} tasks but {len(names)} unit names")
    listener = _LISTENER.get()
    if listener is not None:
        listener.began()
    listened = None if listener is None else dict(zip((t.key for t in tasks), names, strict=True))
    results = compute_units(
        stage, tasks, client=client, progress=progress, weights=weights, _names=listened
    )
    _raise_failures(stage, names, results)
    return results


def compute_units(
    stage: str,
    tasks: Sequence[Delayed],
    *,
    client: Any = None,
    progress: bool = True,
    weights: Sequence[int] | None = None,
    _names: dict[Any, str] | None = None,
) -> list[Any]:
    """Compute every unit task and return its result, or a :class:`~cellscale._compat.Failed`.

    Parameters are as for :func:`run_units`; nothing is raised for a failed unit.
    ``_names`` (from :func:`run_units`): each task's unit, told to the listener as it succeeds.
    """
    if not tasks:
        return []
    sizes = [1] * len(tasks) if weights is None else [int(w) for w in weights]
    if len(sizes) != len(tasks):
        raise ValueError(f"{len(tasks)} tasks but {len(sizes)} weights")
    guarded = _guarded(tasks)
    client = client if client is not None else default_client()
    bar = StageBar(stage, sum(sizes), progress=progress)
    weight = {task.key: size for task, size in zip(tasks, sizes, strict=True)}
    tick = _Ticker(bar, weight, _names, _LISTENER.get())
    try:
        if client is None:
            return _run_local(guarded, tick)
        return _run_distributed(guarded, client, tick)
    finally:
        bar.close()


@dataclass
class _Ticker:
    """Moves the bar, and tells the listener, as each unit's task finishes."""

    bar: StageBar
    weight: dict[Any, int]
    names: dict[Any, str] | None
    listener: UnitListener | None

    def __call__(self, key: Any, result: Any) -> None:
        if key not in self.weight:
            return
        self.bar.advance(self.weight[key])
        failed = isinstance(result, Failed | BaseException)
        if self.listener is not None and self.names is not None and not failed:
            self.listener.done(self.names[key])


def lazy_units(
    stage: str,
    tasks: Sequence[Delayed],
    names: Sequence[str],
    *,
    lease: Lease | Sequence[Lease] | None = None,
    then: Callable[[], Any] | None = None,
) -> Delayed:
    """One delayed object that runs every unit and raises :class:`UnitFailure` if any failed.

    Computing it together with other collections (``dask.compute(a, b)``) lets stages
    share one graph.

    Parameters
    ----------
    stage, tasks, names
        As for :func:`run_units`.
    lease
        The output's :class:`~cellscale._stages.Lease` (or the leases of the outputs the
        units write), released by the last task whether the units failed or not, so the
        outputs are held until the graph ran.
    then
        Called by the last task once every unit succeeded, before the lease is released
        (e.g. to index the finished store).
    """
    if len(tasks) != len(names):
        raise ValueError(f"{len(tasks)} tasks but {len(names)} unit names")
    guarded = guard_graph([task.__dask_graph__() for task in tasks])
    leases = () if lease is None else (lease,) if isinstance(lease, Lease) else tuple(lease)
    key = f"{stage}-{tokenize(stage, [t.key for t in tasks], leases)}"
    refs = (TaskRef(t.key) for t in tasks)
    collect = Task(key, _collect, stage, tuple(names), Opaque((leases, then)), *refs)
    # not blockwise: one task after every unit's (delayed, not array blocks), on their guarded graph
    graph = HighLevelGraph(
        {**guarded.layers, key: MaterializedLayer({key: collect})},
        {**guarded.dependencies, key: set(guarded.layers)},
    )
    return Delayed(key, graph)


def _guarded(tasks: Sequence[Delayed]) -> list[Delayed]:
    # not blockwise: the units' delayed tasks, rebuilt under their own keys on the guarded graph
    graph = guard_graph([task.__dask_graph__() for task in tasks])
    return [Delayed(task.key, graph) for task in tasks]


def _collect(stage: str, names: tuple[str, ...], after: Opaque, *results: Any) -> None:
    leases, then = after.value
    try:
        _raise_failures(stage, names, list(results))
        if then is not None:
            then()
    finally:
        for lease in leases:
            lease.release()


def _raise_failures(stage: str, names: Sequence[str], results: Sequence[Any]) -> None:
    failures = {
        name: result.error if isinstance(result, Failed) else result
        for name, result in zip(names, results, strict=True)
        if isinstance(result, Failed | BaseException)
    }
    if failures:
        raise UnitFailure.build(stage, failures)


def _run_local(tasks: list[Delayed], tick: _Ticker) -> list[Any]:
    from dask.callbacks import Callback

    class _Tick(Callback):
        def _posttask(self, key: object, result: object, *args: object) -> None:
            tick(key, result)

    with _Tick():
        return list(dask.compute(*tasks))


def _run_distributed(tasks: list[Delayed], client: Any, tick: _Ticker) -> list[Any]:
    from distributed import as_completed

    futures = client.compute(tasks)
    results: dict[str, Any] = {}
    for future in as_completed(futures):
        # a task's own errors come back as values; what is left is the cluster's
        # (a worker lost too often, a result that could not be sent back)
        results[future.key] = future.exception() if future.status == "error" else future.result()
        tick(future.key, results[future.key])
    return [results[future.key] for future in futures]


def delayed_blocks(array: Any) -> Any:
    """``array.to_delayed()``, keeping its layers' annotations (the GPU mark) where it has any.

    ``to_delayed`` optimises the graph into one plain layer by default, which drops every
    annotation: the GPU tasks of an embedding or a cellpose segmentation written block by
    block would then run on any worker. Graphs with annotations are therefore handed over
    unoptimised; graphs without any are optimised as usual.

    Examples
    --------
    >>> import dask.array as da
    >>> from cellscale.cluster import gpu_tasks
    >>> with gpu_tasks():
    ...     doubled = da.ones((4, 8), chunks=(1, 8)).map_blocks(lambda b: b * 2)
    >>> block = delayed_blocks(doubled + 1).ravel()[0]
    >>> [layer.annotations for layer in block.__dask_graph__().layers.values()][1]
    {'resources': {'GPU': 1}}
    """
    return shared_delayed_blocks(array)[0]


def shared_delayed_blocks(*arrays: Any) -> list[Any]:
    """:func:`delayed_blocks` of several arrays that may share tasks, each run once.

    Every compartment's labels are picked from one segmentation of each field: optimised
    (each array apart, as dask does), each array's graph would fuse its own copy of that
    task into its blocks, and computing the blocks of all of them would segment every
    field once per compartment. Several arrays are therefore handed over unoptimised.
    """
    if len(arrays) > 1:
        return [array.to_delayed(optimize_graph=False) for array in arrays]
    layers = arrays[0].__dask_graph__().layers.values()
    annotated = any(getattr(layer, "annotations", None) for layer in layers)
    return [arrays[0].to_delayed(optimize_graph=not annotated)]


class Opaque:
    """A task argument dask passes as it is, without walking it for collections.

    dask looks for collections inside every argument of a delayed call, descending into
    lists, dicts and dataclasses; a zarr array is a tree of nested dataclasses, so
    building one task per unit with its arrays as plain arguments costs milliseconds per
    array (seconds for a plate). Wrap such arguments; the task reads ``.value``.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value
