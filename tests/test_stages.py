"""The resumable-stage mechanism: fingerprints, ledgers, unit runs, failures, locks."""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from distributed import Client

import cellscale
from cellscale._stages import (
    Fingerprint,
    Ledger,
    OutputLockedError,
    StaleOutputError,
    UnitFailure,
    check_fingerprint,
    lazy_units,
    output_lock,
    remove_partials,
    run_units,
    task_key,
    unit_token,
)
from cellscale.io._raw_rows import BOOKS
from cellscale.testing import write_synthetic_plate

SCHEDULERS = ["threads", "sync", "distributed"]


@pytest.fixture(params=SCHEDULERS)
def scheduler(request: pytest.FixtureRequest):
    """Run the test body on each scheduler; yields the client for 'distributed'."""
    if request.param == "distributed":
        with Client(
            processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0"
        ) as client:
            yield client
    else:
        with dask.config.set(scheduler=request.param):
            yield None


_DONE: dict[tuple[str, int], bool] = {}  # module level: shared with in-process workers


def _read(i: int, fail: frozenset[int], error: type[Exception]) -> int:
    if i in fail:
        if error is OSError:
            raise OSError(errno.ENOSPC, "No space left on device")
        raise error(f"unit {i} is broken")
    return i * 10


def _write(tag: str, i: int, value: int) -> None:
    _DONE[(tag, i)] = value == i * 10


def _units(tag: str, fail: set[int], error: type[Exception] = OSError) -> tuple[list, list[str]]:
    """Five units; the upstream read of each unit in ``fail`` raises ``error``."""
    reads = [
        dask.delayed(_read, pure=True)(
            i, frozenset(fail), error, dask_key_name=task_key("read", tag, i)
        )
        for i in range(5)
    ]
    tasks = [
        dask.delayed(_write, pure=False)(tag, i, r, dask_key_name=task_key("write", tag, i))
        for i, r in enumerate(reads)
    ]
    return tasks, [f"A01/f{i}/t0" for i in range(5)]


def _ran(tag: str) -> dict[int, bool]:
    """The units of ``tag`` whose write ran, and whether it got the right value."""
    return {i: ok for (t, i), ok in _DONE.items() if t == tag}


def test_every_unit_runs_and_every_failure_is_reported_on_every_scheduler(scheduler) -> None:
    tag = f"every-{scheduler}"
    tasks, names = _units(tag, {1, 3})
    with pytest.raises(OSError) as info:  # the errors' own type still catches it
        run_units("write", tasks, names, client=scheduler, progress=False)
    failure = info.value
    assert isinstance(failure, UnitFailure)
    assert set(failure.failures) == {"A01/f1/t0", "A01/f3/t0"}
    assert failure.errno == errno.ENOSPC
    assert isinstance(failure.__cause__, OSError)
    assert "2 unit(s) of 'write' failed" in str(failure) and "A01/f3/t0: OSError" in str(failure)
    assert _ran(tag) == {0: True, 2: True, 4: True}  # the others all ran


def test_mixed_failures_are_reported_together_as_a_plain_unit_failure() -> None:
    tasks, names = _units("mixed-a", {0}, error=ValueError)
    more, _ = _units("mixed-b", {4}, error=KeyError)
    with pytest.raises(UnitFailure) as info:
        run_units("write", [tasks[0], more[4]], [names[0], names[4]], progress=False)
    assert not isinstance(info.value, ValueError | KeyError)
    assert set(info.value.failures) == {"A01/f0/t0", "A01/f4/t0"}


def test_a_unit_failure_survives_pickling_with_its_type() -> None:
    error = UnitFailure.build("write", {"B03/f1/t0": FileNotFoundError(2, "gone", "/x")})
    back = pickle.loads(pickle.dumps(error))
    assert isinstance(back, FileNotFoundError) and isinstance(back, UnitFailure)
    assert str(back) == str(error)


def test_lazy_units_share_one_graph_and_raise_when_computed(scheduler) -> None:
    good, good_names = _units(f"lazy-good-{scheduler}", set())
    bad, bad_names = _units(f"lazy-bad-{scheduler}", {2}, error=ValueError)
    first = lazy_units("write-a", good, good_names)
    second = lazy_units("write-b", bad, bad_names)
    with pytest.raises(ValueError, match=r"1 unit\(s\) of 'write-b' failed"):
        if scheduler is None:
            dask.compute(first, second)
        else:
            scheduler.compute([first, second], sync=True)
    assert len(_ran(f"lazy-bad-{scheduler}")) == 4  # every unit of the failed stage ran
    dask.compute(first) if scheduler is None else scheduler.compute(first, sync=True)
    assert len(_ran(f"lazy-good-{scheduler}")) == 5


def test_task_keys_are_tokens_of_their_inputs() -> None:
    assert task_key("write-plate", "a.zarr", "data-1", 0) != task_key(
        "write-plate", "b.zarr", "data-1", 0
    )
    assert task_key("write-plate", "a.zarr", "data-1", 0).startswith("write-plate-")


def test_unit_tokens_are_nonzero_and_differ_with_their_inputs() -> None:
    assert unit_token("x", 1) == unit_token("x", 1)
    assert unit_token("x", 1) != unit_token("x", 2)
    assert all(unit_token(i) != 0 for i in range(1000))


def test_fingerprint_differences_name_each_changed_setting() -> None:
    stored = Fingerprint(
        "plate",
        inputs={
            "lineage": [
                {"op": "open_plate", "fingerprint": "abc"},
                {"op": "project", "method": "max"},
            ]
        },
        parameters={"codec": "blosc-lz4"},
        version="0.1.0",
    )
    requested = Fingerprint(
        "plate",
        inputs={
            "lineage": [
                {"op": "open_plate", "fingerprint": "abc"},
                {"op": "project", "method": "middle"},
            ]
        },
        parameters={"codec": "blosc-lz4"},
        version="0.2.0",
    )
    assert stored.differences(requested) == [
        "cellscale version: '0.1.0' in the output, '0.2.0' requested",
        "input lineage[1].method: 'max' in the output, 'middle' requested",
    ]
    with pytest.raises(StaleOutputError, match=r"out\.zarr was produced from something else"):
        check_fingerprint(stored, requested, "out.zarr")
    check_fingerprint(stored, stored, "out.zarr")
    assert Fingerprint.from_json(stored.to_json()) == stored
    assert stored.digest != requested.digest


def test_an_output_without_a_fingerprint_is_never_resumed() -> None:
    with pytest.raises(StaleOutputError, match=r"no cellscale fingerprint.*overwrite=True"):
        check_fingerprint(None, Fingerprint("plate"), "old.zarr")


def test_ledger_records_tokens_and_zero_means_not_done(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    ledger = Ledger.create(group, "ledger", (2, 3))
    ledger.mark((1, 2), unit_token("a"))
    reopened = Ledger.open(group, "ledger")
    assert reopened is not None
    assert reopened.done().tolist() == [[False, False, False], [False, False, True]]
    assert reopened.tokens()[1, 2] == np.uint64(unit_token("a"))
    reopened.clear((1, 2))
    assert not reopened.done().any()
    with pytest.raises(ValueError, match="never 0"):
        reopened.mark((0, 0), 0)
    assert Ledger.open(group, "absent") is None


def test_a_sealed_ledger_reads_one_record_and_clearing_a_unit_unseals_it(
    tmp_path: Path,
) -> None:
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    ledger = Ledger.create(group, "ledger", (2, 3))
    ledger.mark((0, 0), unit_token("a"))
    assert not ledger.seal()  # incomplete: nothing is sealed
    for index in np.ndindex(2, 3):
        ledger.mark(index, unit_token("b", index))
    expected = ledger.tokens()
    assert ledger.seal()
    for index in np.ndindex(2, 3):  # a unit chunk lost behind the seal's back
        (tmp_path / "g.zarr" / "ledger" / "c" / str(index[0]) / str(index[1])).unlink()
    reopened = Ledger.open(zarr.open_group(str(tmp_path / "g.zarr"), mode="r"), "ledger")
    assert reopened is not None
    np.testing.assert_array_equal(reopened.tokens(), expected)  # from the one record
    ledger.clear((1, 2))  # a writer about to redo a unit drops the seal first
    assert not reopened.done().any()  # every unit is read again: the lost chunks are not done
    ledger.mark((1, 2), unit_token("c"))
    assert reopened.tokens()[1, 2] == np.uint64(unit_token("c"))


def test_every_writer_seals_the_ledger_of_the_output_it_finished(tmp_path: Path) -> None:
    plate = tmp_path / "p.zarr"
    write_synthetic_plate(plate, wells=2, fields=1, n_z=1, shape=(32, 32))
    rows = xr.DataArray(
        da.ones((10, 4), chunks=(5, 4), dtype="float32"),
        dims=("cell", "feature"),
        coords={"cell_id": ("cell", np.arange(10))},
    )
    lazy = cellscale.write_embeddings(rows, tmp_path / "e.zarr", progress=False, compute=False)
    dask.compute(lazy)
    for group, name in [
        (zarr.open_group(str(plate), mode="r"), "cellscale_ledger"),
        (zarr.open_group(str(tmp_path / "e.zarr" / BOOKS), mode="r"), "ledger"),
    ]:
        assert "cellscale_sealed" in group[name].attrs, name


def test_one_writer_per_output(tmp_path: Path) -> None:
    out = tmp_path / "p.zarr"
    with (
        output_lock(out),
        pytest.raises(
            OutputLockedError, match=r"p\.zarr is being written by another process \(pid"
        ),
        output_lock(out),
    ):
        pass
    with output_lock(out):  # released
        pass


def test_partial_files_left_by_a_killed_writer_are_removed(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "0.3f2a.partial").write_bytes(b"x")
    (tmp_path / "a" / "keep").write_bytes(b"x")
    assert remove_partials(tmp_path) == 1
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["keep"]


def test_partial_folders_and_files_of_atomic_writes_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".report.partial" / "figures").mkdir(parents=True)
    (tmp_path / ".report.partial" / "figures" / "a.png").write_bytes(b"x")
    (tmp_path / ".cells.partial.parquet").write_bytes(b"x")
    (tmp_path / "report").mkdir()
    assert remove_partials(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_guarded_graphs_keep_references_across_layers_and_annotations() -> None:
    import dask.array as da
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph

    from cellscale._compat import Failed, guard_graph
    from cellscale._stages import delayed_blocks
    from cellscale.cluster import gpu_tasks

    # a task of one layer naming another layer's key in a legacy tuple
    graph = HighLevelGraph(
        {"a": {("a", 0): (np.arange, 4)}, "b": {"b": (np.sum, ("a", 0))}},
        {"a": set(), "b": {"a"}},
    )
    assert dask.compute(Delayed("b", guard_graph([graph])), scheduler="sync")[0] == 6
    graph = HighLevelGraph(
        {"a": {("a", 0): (np.log, "not a number")}, "b": {"b": (np.sum, ("a", 0))}},
        {"a": set(), "b": {"a"}},
    )
    failed = dask.compute(Delayed("b", guard_graph([graph])), scheduler="sync")[0]
    assert isinstance(failed, Failed) and failed.key == ("a", 0)

    source = da.arange(12, chunks=4).reshape(3, 4).rechunk((1, 4))
    with gpu_tasks():
        doubled = source.map_blocks(lambda b: b * 2)
    blocks = delayed_blocks((doubled + 1).rechunk((3, 2))).ravel()

    def tagged(graph: HighLevelGraph) -> list[str]:
        return [n for n, layer in graph.layers.items() if "resources" in (layer.annotations or {})]

    assert tagged(blocks[0].__dask_graph__())  # unoptimised: the GPU layer is kept
    summed = dask.delayed(sum)([b.sum() for b in blocks], dask_key_name="summed")
    guarded = guard_graph([summed.__dask_graph__()])
    assert (
        dask.compute(Delayed("summed", guarded), scheduler="sync")[0]
        == (np.arange(12) * 2 + 1).sum()
    )
    assert tagged(guarded)  # and so is the mark through the unit tasks' graph
