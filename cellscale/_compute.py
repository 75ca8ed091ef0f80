"""Run a batch of independent unit tasks with a progress bar and per-unit failures.

Stages that write by unit (a field, a chunk of cells) build one delayed task per
unit and hand them here. On a distributed client every unit runs even when some
fail, and the failures are reported together; on the local scheduler the first
failure stops the run. Either way, units that finished are recorded by the task
itself, so a rerun does only what is missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask
from dask.delayed import Delayed
from tqdm.auto import tqdm

__all__ = ["UnitFailure", "default_client", "run_units"]


class UnitFailure(RuntimeError):
    """Some units of a stage failed; ``failures`` maps each unit's name to its error."""

    def __init__(self, stage: str, failures: dict[str, BaseException]) -> None:
        self.failures = failures
        lines = [f"{len(failures)} unit(s) of {stage!r} failed:"]
        lines += [f"  {unit}: {type(err).__name__}: {err}" for unit, err in failures.items()]
        super().__init__("\n".join(lines))


def default_client() -> object | None:
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
    client: object | None = None,
    progress: bool = True,
) -> None:
    """Compute ``tasks`` (one per unit, named by ``names``) and raise if any failed.

    Parameters
    ----------
    stage
        Stage name for the progress bar and error messages.
    tasks
        One delayed task per unit; their results are discarded.
    names
        A readable name per unit (``"B03/f2/t0"``) used in error messages.
    client
        A ``distributed.Client``; defaults to the current one, else the local threaded
        scheduler.
    progress
        Show a progress bar.

    Raises
    ------
    UnitFailure
        Listing every failed unit (distributed) or the first one (local scheduler).
    """
    if not tasks:
        return
    client = client if client is not None else default_client()
    bar = tqdm(total=len(tasks), desc=stage, unit="unit", disable=not progress)
    try:
        if client is None:
            _run_local(stage, tasks, bar)
        else:
            _run_distributed(stage, tasks, names, client, bar)
    finally:
        bar.close()


def _run_local(stage: str, tasks: Sequence[Delayed], bar: tqdm) -> None:
    from dask.callbacks import Callback

    keys = {task.key for task in tasks}

    class _Tick(Callback):
        def _posttask(self, key: object, *args: object) -> None:
            if key in keys:
                bar.update(1)

    try:
        with _Tick():
            dask.compute(*tasks)
    except Exception as err:
        raise UnitFailure(stage, {"first failure": err}) from err


def _run_distributed(
    stage: str, tasks: Sequence[Delayed], names: Sequence[str], client: object, bar: tqdm
) -> None:
    from distributed import as_completed

    futures = client.compute(list(tasks))  # type: ignore[attr-defined]
    unit_of = {future.key: name for future, name in zip(futures, names, strict=True)}
    failures: dict[str, BaseException] = {}
    for future in as_completed(futures):
        if future.status == "error":
            failures[unit_of[future.key]] = future.exception()
        bar.update(1)
    if failures:
        raise UnitFailure(stage, failures)
