"""Every private use in ``cellscale._compat``, pinned against the installed libraries.

Each test exercises one name and checks what it means, so an upgrade that removes or
changes the private thing underneath fails here, by name, rather than deep in a stage.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from types import SimpleNamespace
from typing import Any

import dask
import numcodecs
import numpy as np
import pandas as pd
import pytest
import zarr
from dask.highlevelgraph import HighLevelGraph
from zarr.storage import MemoryStore

from cellscale._compat import (
    _SYNC_CANCEL_RACE,
    ArrayConfigParams,
    Failed,
    GroupMetadata,
    SpecClusterHooks,
    Task,
    TaskRef,
    array_at,
    array_metadata_document,
    blosc_sizes,
    close_with_cluster,
    correct_state,
    frame_meta,
    frame_name,
    guard_graph,
    is_sync_cancel_race,
    job_command,
    parse_array_metadata,
    quiet_sync_cancel_race,
    regular_chunk_grid,
    set_job_command,
    store_key_exists,
)

# -- dask ------------------------------------------------------------------------------


def test_task_and_taskref_build_a_task_that_reads_its_dependency() -> None:
    graph = {"a": Task("a", np.arange, 4), "b": Task("b", np.sum, TaskRef("a"))}
    assert dask.get(graph, "b") == 6


def test_guard_graph_returns_failures_as_values_downstream() -> None:
    graph = HighLevelGraph(
        {"a": {"a": (np.log, "not a number")}, "b": {"b": (np.sum, "a")}, "c": {"c": (len, "")}},
        {"a": set(), "b": {"a"}, "c": set()},
    )
    b, c = dask.get(guard_graph([graph]), ["b", "c"])
    assert isinstance(b, Failed) and b.key == "a" and isinstance(b.error, TypeError)
    assert c == 0


def test_frame_meta_is_the_empty_pandas_object_with_the_frame_dtypes() -> None:
    dd = pytest.importorskip("dask.dataframe")
    data = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5]})
    frame = dd.from_pandas(data, npartitions=2)
    meta = frame_meta(frame)
    assert isinstance(meta, pd.DataFrame) and len(meta) == 0
    pd.testing.assert_series_equal(meta.dtypes, data.dtypes)
    assert isinstance(frame_meta(frame["a"]), pd.Series)


def test_frame_name_is_the_token_its_keys_are_named_by() -> None:
    dd = pytest.importorskip("dask.dataframe")
    data = pd.DataFrame({"a": [1, 2, 3]})
    frame = dd.from_pandas(data, npartitions=2)
    name = frame_name(frame)
    assert isinstance(name, str)
    assert {key[0] for key in frame.__dask_keys__()} == {name}
    assert frame_name(dd.from_pandas(data, npartitions=2)) == name
    assert frame_name(frame + 1) != name


# -- zarr and numcodecs ----------------------------------------------------------------


def _array(store: Any, zarr_format: int = 3) -> zarr.Array:
    array = zarr.create_array(
        store, name="x", shape=(4, 6), chunks=(2, 3), dtype="u2", zarr_format=zarr_format
    )
    array[:2, :3] = 7
    array.attrs["kind"] = "test"
    return array


def test_store_key_exists_answers_for_metadata_and_chunks() -> None:
    store = MemoryStore()
    _array(store)
    assert store_key_exists(store, "x/zarr.json")
    assert store_key_exists(store, "x/c/0/0")
    assert not store_key_exists(store, "x/c/1/1")


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_metadata_document_parses_back_and_opens_the_array(zarr_format: int) -> None:
    store = MemoryStore()
    array = _array(store, zarr_format)
    document = array_metadata_document(array)
    assert document["zarr_format"] == zarr_format
    assert document["attributes"] == {"kind": "test"}  # v2's .zattrs included
    metadata = parse_array_metadata(document)
    assert metadata == array.metadata
    opened = array_at(store, "x", metadata)
    np.testing.assert_array_equal(opened[:], array[:])


def test_array_config_params_reach_the_array() -> None:
    store = MemoryStore()
    config: ArrayConfigParams = {"write_empty_chunks": True}
    array = zarr.create_array(store, name="x", shape=(4,), chunks=(2,), dtype="u1", config=config)
    array[:] = 0  # the fill value: written only because of the config
    assert store_key_exists(store, "x/c/0")


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_group_metadata_creates_groups_in_a_hierarchy(zarr_format: int) -> None:
    store = MemoryStore()
    nodes = {"g": GroupMetadata(attributes={"a": 1}, zarr_format=zarr_format)}
    list(zarr.create_hierarchy(store=store, nodes=nodes))
    assert dict(zarr.open_group(store, path="g", mode="r").attrs) == {"a": 1}


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_regular_chunk_grid(zarr_format: int) -> None:
    assert regular_chunk_grid(_array(MemoryStore(), zarr_format).metadata)
    assert not regular_chunk_grid(SimpleNamespace(chunk_grid=object()))


def test_blosc_sizes_read_the_header() -> None:
    data = np.arange(1000, dtype="u4")
    encoded = numcodecs.Blosc(cname="lz4").encode(data)
    assert blosc_sizes(encoded) == (data.nbytes, len(encoded))


# -- dask-jobqueue ---------------------------------------------------------------------


def test_job_command_is_the_worker_command_of_the_script() -> None:
    slurm = pytest.importorskip("dask_jobqueue.slurm")
    job = slurm.SLURMJob("tcp://10.0.0.1:8786", name="cpu-0", cores=1, memory="1GiB")
    command = job_command(job)
    assert "distributed.cli.dask_worker tcp://10.0.0.1:8786 --name cpu-0" in command
    assert command in job.job_script()
    set_job_command(job, "echo replaced")
    assert "echo replaced" in job.job_script()
    assert command not in job.job_script()


# -- distributed -----------------------------------------------------------------------


def _recording_cluster() -> Any:
    from distributed import Scheduler, SpecCluster

    class Recording(SpecClusterHooks, SpecCluster):
        def __init__(self) -> None:
            self.events: list[Any] = []
            options = {"host": "127.0.0.1", "dashboard_address": ":0"}
            super().__init__(workers={}, scheduler={"cls": Scheduler, "options": options})

        def after_correct_state(self) -> None:
            self.events.append("corrected")

        def on_worker_removed(self, address: str) -> None:
            self.events.append(("removed", self.scheduler_info["workers"][address]["name"]))

        def before_close(self) -> None:
            self.events.append("closing")

        def after_close(self) -> None:
            self.events.append("closed")

    return Recording()


def _wait_for(condition: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_spec_cluster_hooks_and_helpers() -> None:
    from distributed import SpecCluster, Worker

    done: list[bool] = []

    async def slow() -> None:
        await asyncio.sleep(0.2)
        done.append(True)

    async def hold(cluster: Any) -> None:
        close_with_cluster(cluster, slow())

    assert isinstance(inspect.getattr_static(SpecCluster, "_supports_scaling"), property)
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "50ms"}):
        cluster = _recording_cluster()
        try:
            assert cluster._supports_scaling is True  # SpecCluster says False: no template
            cluster.events.clear()  # starting the cluster corrected its state once
            cluster.worker_spec["a"] = {"cls": Worker, "options": {"nthreads": 1}}
            cluster.sync(correct_state, cluster)
            assert set(cluster.workers) == {"a"} and cluster.events == ["corrected"]
            cluster.sync(cluster.workers["a"].close)
            _wait_for(lambda: ("removed", "a") in cluster.events)
            time.sleep(0.3)  # past the lost-worker timeout
            assert "a" in cluster.workers  # SpecCluster's own handler would have dropped it
            cluster.sync(hold, cluster)
        finally:
            cluster.close()
    events = cluster.events
    assert events[-1] == "closed" and events.index("closing") > events.index(("removed", "a"))
    assert done == [True]  # closing waited for it


def test_the_sync_cancel_race_of_the_pinned_distributed_is_dropped_from_the_log() -> None:
    """Ctrl-C before ``sync``'s coroutine starts: its cancel callback fails on ``future``."""
    import logging
    import os
    import signal
    import threading

    from distributed.utils import LoopRunner, sync

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[assignment,method-assign]
    logger = logging.getLogger("tornado.application")
    logger.addHandler(handler)
    quieted = _SYNC_CANCEL_RACE in logger.filters  # by a client an earlier test made
    logger.removeFilter(_SYNC_CANCEL_RACE)
    interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)  # some set their own
    runner = LoopRunner(asynchronous=False)
    runner.start()
    try:

        async def answer() -> int:
            return 1

        def interrupted_sync() -> None:
            runner.loop.add_callback(time.sleep, 0.5)  # the loop is busy: the race opens
            threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
            with pytest.raises(KeyboardInterrupt):
                sync(runner.loop, answer)
            time.sleep(0.8)  # the loop runs the coroutine, then the cancel callback

        interrupted_sync()
        assert any(is_sync_cancel_race(r.exc_info) for r in records)  # the pinned bug
        records.clear()
        quiet_sync_cancel_race()
        interrupted_sync()
        assert records == []
    finally:
        logger.removeHandler(handler)
        if quieted:
            logger.addFilter(_SYNC_CANCEL_RACE)
        signal.signal(signal.SIGINT, interrupt)
        runner.stop()


def test_a_cancelled_gathers_allexit_is_not_logged_as_never_retrieved() -> None:
    """distributed's gather still waits with a task that raises ``AllExit`` (pinned), and
    the record asyncio writes for such a task left unretrieved is dropped, others kept."""
    import gc

    from distributed.client import AllExit, Client

    from cellscale._compat import _CANCELLED_GATHER, quiet_cancelled_gather

    assert "raise AllExit()" in inspect.getsource(Client._gather)
    logger = logging.getLogger("asyncio")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    quieted = _CANCELLED_GATHER in logger.filters
    logger.removeFilter(_CANCELLED_GATHER)

    def unretrieved(error: BaseException) -> None:
        async def fail() -> None:
            raise error

        async def main() -> None:
            task = asyncio.ensure_future(fail())
            await asyncio.sleep(0)
            del task  # failed and never awaited: asyncio logs it when collected
            gc.collect()

        asyncio.run(main())
        gc.collect()

    try:
        unretrieved(AllExit())
        assert [r.getMessage().splitlines()[0] for r in records] == [
            "Task exception was never retrieved"
        ]
        records.clear()
        quiet_cancelled_gather()
        unretrieved(AllExit())
        assert records == []
        unretrieved(ValueError("a real failure"))
        assert len(records) == 1  # anything else is still logged
    finally:
        logger.removeHandler(handler)
        if not quieted:
            logger.removeFilter(_CANCELLED_GATHER)
