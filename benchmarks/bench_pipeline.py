"""The whole pipeline at scale: out of core, 2 workers against 1, scheduler share, extrapolation.

Usage::

    python benchmarks/bench_pipeline.py [--plates 1] [--wells 10] [--fields 4]
        [--timepoints 1] [--planes 40] [--channels 5] [--size 1024]
        [--memory-limit 1.75GB] [--workers 1 2] [--out bench-data/pipeline]
        [--allow-small] [--skip-scaling]

Each run is ``cellscale.run`` on a synthetic screen (``plates`` plates of ``wells`` ×
``fields`` × ``timepoints`` fields, ``planes`` Z planes, ``channels`` of nuclei, cytoplasm,
mito, membrane, er, ``size``² uint16, the demo's cell density of 25 cells per 256² so
400 per 1024² field) with the demo's settings: max projection, classical segmentation
of the cytoplasm seeded by the nuclei, 48-pixel soft-masked crops, a ResNet-18 (random
weights, batch 64), PCA with 10 components, normalisation against the DMSO wells and the
report. Each run gets a fresh output folder (``out``, deleted first) and its own local
cluster: ``n`` CPU worker processes and one GPU-tagged worker process, 1 thread each,
each with ``memory-limit``; progress bars and distributed's INFO lines are off.

1. **Out of core**: the raw pixels (plates × t × wells × fields × z × c × size² × 2
   bytes) must be at least 3× the workers' total memory limit (CPU + GPU-tagged workers
   × ``memory-limit``) of the largest run; the script refuses to start below that
   unless ``--allow-small``. For every run: time, units and units/s of every stage (from
   the run's summary), cells/s overall, the peak RSS of every worker process next to its
   memory limit, and whether any worker was restarted or killed (the workers' addresses
   before and after the run, and distributed's log lines about restarts and kills).
2. **2 workers vs 1**: the same screen with each ``--workers`` count of CPU workers (one
   GPU-tagged worker in every run): speed-up of the whole run and of each stage, next to
   the target (≥ 1.7×) and the ceiling the cores allow. The GPU-tagged worker also takes
   untagged (CPU-stage) tasks, so the CPU stages of a run with n CPU workers run on n + 1
   single-threaded processes: on this 2-core machine, 1 CPU worker already keeps both
   cores busy and 2 CPU workers + the GPU-tagged one oversubscribe them (3 processes on
   2 cores), so the ceiling here is about 1.0×, whatever the pipeline does.
3. **Scheduler share**: the cluster's cost per task, measured before the run on the
   same cluster (2,000 no-op tasks through ``client.map`` + ``gather``, median of 3, in
   seconds per task), times the tasks each stage ran (the run's task stream; a task
   belongs to the stage whose window, from the run's manifest entries, holds its start),
   over the stage's wall time; target < 5 %.
4. **Extrapolation** to seed 000's full screen (62,208 fields, about 25 M cells) from the
   per-worker rates of the run with the most CPU workers: fields/s per CPU worker for
   ingest, project, segment and measure, cells/s per GPU-tagged worker for embed, cells/s
   per CPU worker for PCA + profiles (a CPU stage's rate divided by the processes that ran
   it at once: CPU workers + the GPU-tagged one, at most the machine's cores), assuming
   linear scaling; stages run one after
   another, so the total is their sum. The embed rate here is a CPU rate (no GPU on this
   machine): the GPU rows are a lower bound until replaced by a GPU measurement. Ingest
   here renders synthetic images, a stand-in for reading TIFFs.

Full scale on this machine (2 cores, 24 GiB RAM, no GPU), the defaults::

    .venv/bin/python benchmarks/bench_pipeline.py --plates 1 --wells 10 --fields 4 \\
        --timepoints 1 --planes 40 --channels 5 --size 1024 --memory-limit 1.75GB \\
        --workers 1 2

The 3× arithmetic: the 2-worker run has 2 CPU + 1 GPU-tagged workers × 1.75 GB =
5.25 GB of memory limits, so the screen needs ≥ 15.75 GB of raw pixels; 1 plate × 10
wells × 4 fields × 1 time point × 40 planes × 5 channels = 8,000 planes of 1024² × 2
bytes (2.10 MB) = 16.78 GB, 3.20× (the 1-worker run: 2 × 1.75 GB = 3.5 GB, 4.79×).
Many planes on few fields keep the bytes up and the per-field stages (segmentation
above all) short; one field of 5 × 40 planes is 419 MB, which a write task holds, a
quarter of a worker's limit. 1.75 GB fits torch: importing it takes 0.69 GB of RSS
here and a ResNet-18 with a batch of 64 crops 0.94 GB, 54 % of the limit, under the
60 % at which a worker starts spilling. Expected time, from single-core timings on this
machine (rendering a synthetic 1024² plane ≈ 0.05 s, the classical segmenter seeded by
nuclei ≈ 7 s per 1024² field, the embedding ≈ 400 cells/s for ~15,000 cells) with both
cores busy in either run: about 10 minutes a run, 20 in all; ``--skip-scaling`` runs
the 2-worker (out-of-core) run only.

Data goes to ``out`` (git-ignored under bench-data/); the last run's output stays there.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import resource
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dask.utils import format_bytes, key_split, parse_bytes

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = ("nuclei", "cytoplasm", "mito", "membrane", "er")
FIELD_STAGES = ("ingest", "project", "segment", "measure")
SEED_000_FIELDS = 62_208
SEED_000_CELLS = 25_000_000
CPU_WORKERS = (16, 64, 256)
GPU_WORKERS = (1, 4, 8)
GPU_WORKERS_HERE = 1
RATIO_TARGET = 3.0
SPEEDUP_TARGET = 1.7
SHARE_TARGET = 0.05
NOOP_TASKS = 2_000
RESTART_LINES = re.compile(r"restart|killed|exceeded|terminat", re.IGNORECASE)


def raw_bytes(args: argparse.Namespace) -> int:
    """Bytes of the screen's raw pixels: plates × t × wells × fields × z × c × size² × 2."""
    planes = args.timepoints * args.wells * args.fields * args.planes * args.channels
    return args.plates * planes * args.size**2 * 2


def run_config(args: argparse.Namespace, out: Path, n_workers: int) -> dict[str, Any]:
    """The demo's settings on the benchmark's synthetic screen."""
    plates = [
        {
            "name": f"bench-{i + 1}",
            "synthetic": {
                "wells": args.wells,
                "fields": args.fields,
                "timepoints": args.timepoints,
                "planes": args.planes,
                "channels": list(CHANNELS[: args.channels]),
                "size": args.size,
                "cells_per_field": 25.0 * (args.size / 256) ** 2,
                "seed": i + 1,
            },
            "metadata": {"batch": i + 1},
        }
        for i in range(args.plates)
    ]
    return {
        "output": str(out),
        "plates": plates,
        "cluster": {
            "kind": "local",
            "n_workers": n_workers,
            "gpu_workers": GPU_WORKERS_HERE,
            "options": cluster_options(args),
        },
        "segment": {"channel": "cytoplasm", "nuclei_channel": "nuclei"},
        "crops": {"size": 48, "mask": "soft"},
        "embed": {"enabled": True, "model": "resnet18", "batch_size": 64},
        "pca": {"n_components": 10},
        "profiles": {"controls": "Metadata_treatment == 'DMSO'"},
    }


def cluster_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"threads_per_worker": 1, "memory_limit": args.memory_limit, "processes": True}


@dataclass
class Measured:
    """What one run measured."""

    n_workers: int
    summary: Any
    wall: float
    overhead: float  # seconds per no-op task
    stage_tasks: dict[str, Counter]  # stage -> task prefix -> count
    gpu_tasks: dict[str, Counter]  # the same, of the tasks the GPU-tagged workers ran
    model_workers: Counter  # worker address -> the model's tasks (key prefix "embed") it ran
    model_seconds: float  # the compute time of those tasks, summed
    workers: list[tuple[str, str, int, int, int]]  # address, kind, limit, VmHWM, ru_maxrss
    client_rss: int
    gone: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    restart_lines: list[str] = field(default_factory=list)

    def stage(self, name: str) -> Any:
        return next((s for s in self.summary.stages if s.name == name), None)


class _LineCounter(logging.Handler):
    """Keeps distributed's log lines (nanny, memory monitor) about restarts and kills."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if RESTART_LINES.search(message):
            self.lines.append(f"{record.name}: {message}")


@contextlib.contextmanager
def stage_windows() -> Iterator[list[tuple[str, float, float]]]:
    """``(stage, start, stop)`` in ``time.time()`` of every stage entry the run records.

    The run marks each stage of each plate as started and finished in its manifest;
    wrapping those two calls gives the stages' windows without touching the pipeline.
    """
    from cellscale.pipeline._manifest import Manifest

    windows: list[tuple[str, float, float]] = []
    started: dict[str, float] = {}
    start, finish = Manifest.start, Manifest.finish

    def timed_start(self: Manifest, stage: str) -> None:
        started[stage] = time.time()
        start(self, stage)

    def timed_finish(self: Manifest, stage: str, **record: Any) -> None:
        finish(self, stage, **record)
        windows.append((stage.split("/")[0], started.pop(stage), time.time()))

    Manifest.start, Manifest.finish = timed_start, timed_finish  # type: ignore[method-assign]
    try:
        yield windows
    finally:
        Manifest.start, Manifest.finish = start, finish  # type: ignore[method-assign]


def tasks_by_stage(
    stream: list[dict[str, Any]],
    windows: list[tuple[str, float, float]],
    kinds: dict[str, tuple[str, int]],
) -> tuple[dict[str, Counter], dict[str, Counter]]:
    """The task stream's tasks by the stage whose window holds their start, then by key prefix.

    Returns the counts of all tasks and of those the GPU-tagged workers ran.
    """
    grouped: dict[str, Counter] = {}
    on_gpu: dict[str, Counter] = {}
    for record in stream:
        starts = [s["start"] for s in record["startstops"] if s.get("action") == "compute"]
        begin = min(starts) if starts else min(s["start"] for s in record["startstops"])
        stage = next((name for name, a, b in windows if a <= begin <= b), "between stages")
        prefix = key_split(record["key"])
        grouped.setdefault(stage, Counter())[prefix] += 1
        if kinds.get(record.get("worker"), ("cpu",))[0] == "gpu":
            on_gpu.setdefault(stage, Counter())[prefix] += 1
    return grouped, on_gpu


def noop_overhead(client: Any, repeats: int = 3) -> float:
    """Seconds per task of ``NOOP_TASKS`` no-op tasks mapped and gathered (median)."""
    client.gather(client.map(lambda i: i, range(100), pure=False))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        futures = client.map(lambda i: i, range(NOOP_TASKS), pure=False)
        client.gather(futures)
        times.append(time.perf_counter() - start)
        del futures
    return statistics.median(times) / NOOP_TASKS


def _scheduler_workers(dask_scheduler: Any) -> dict[str, tuple[str, int]]:
    """Every worker the scheduler knows: its kind (GPU-tagged or not) and memory limit."""
    return {
        address: ("gpu" if ws.resources.get("GPU") else "cpu", int(ws.memory_limit))
        for address, ws in dask_scheduler.workers.items()
    }


def _peak_rss() -> tuple[int, int]:
    """This process's own peak RSS (VmHWM) and its ``ru_maxrss``, in bytes.

    A worker process is spawned (fork + exec) by its nanny, and Linux carries the
    parent's peak into the child's ``ru_maxrss`` across the exec; VmHWM is the high-water
    mark of the process's own memory since the exec.
    """
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024, maxrss
    except OSError:
        pass
    return maxrss, maxrss


def measure(args: argparse.Namespace, n_workers: int) -> Measured:
    """One pipeline run on a fresh output folder and a fresh cluster of ``n_workers``."""
    from distributed import get_task_stream

    import cellscale
    from cellscale.pipeline._manifest import MANIFEST

    out = Path(args.out)
    if out.exists():
        if any(out.iterdir()) and not (out / MANIFEST).is_file():
            raise SystemExit(f"{out} holds something other than a cellscale run: not deleting it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    config = run_config(args, out, n_workers)
    counter = _LineCounter()
    with cellscale.start_cluster(
        "local", n_workers=n_workers, gpu_workers=GPU_WORKERS_HERE, quiet=True,
        dashboard_address="127.0.0.1:0",
        **cluster_options(args),
    ) as client:  # fmt: skip
        overhead = noop_overhead(client)
        before = client.run_on_scheduler(_scheduler_workers)
        logging.getLogger("distributed").addHandler(counter)
        try:
            with stage_windows() as windows, get_task_stream(client) as stream:
                start = time.perf_counter()
                summary = cellscale.run(config, client=client, progress=False)
                wall = time.perf_counter() - start
        finally:
            logging.getLogger("distributed").removeHandler(counter)
        after = client.run_on_scheduler(_scheduler_workers)
        rss = client.run(_peak_rss)
    workers = [(a, *after[a], *rss[a]) for a in sorted(after, key=lambda a: after[a][0])]
    stage_tasks, gpu_tasks = tasks_by_stage(stream.data, windows, {**before, **after})
    model_tasks = [r for r in stream.data if key_split(r["key"]) == "embed"]
    model_workers = Counter(r["worker"] for r in model_tasks)
    model_seconds = sum(
        s["stop"] - s["start"]
        for r in model_tasks
        for s in r.get("startstops", ())
        if s.get("action") == "compute"
    )
    return Measured(
        n_workers=n_workers,
        summary=summary,
        wall=wall,
        overhead=overhead,
        stage_tasks=stage_tasks,
        gpu_tasks=gpu_tasks,
        model_workers=model_workers,
        model_seconds=model_seconds,
        workers=workers,
        client_rss=_peak_rss()[0],
        gone=sorted(set(before) - set(after)),
        new=sorted(set(after) - set(before)),
        restart_lines=counter.lines,
    )


def report_run(m: Measured, args: argparse.Namespace) -> None:
    s = m.summary
    total_limit = sum(w[2] for w in m.workers)
    ratio = raw_bytes(args) / total_limit
    print(
        f"\nout of core, {m.n_workers} CPU worker(s) + {GPU_WORKERS_HERE} GPU-tagged: raw pixels "
        f"{format_bytes(raw_bytes(args))} = {ratio:.2f}x the workers' total memory limit "
        f"({len(m.workers)} x {format_bytes(total_limit // max(len(m.workers), 1))} = "
        f"{format_bytes(total_limit)}; target >= {RATIO_TARGET:.0f}x)"
    )
    print(
        f"  screen: {s.plates} plate(s), {s.wells} wells, {s.fields} fields, "
        f"{s.timepoints} time point(s), {s.cells} cells"
    )
    print(
        f"  {'stage':<10}{'seconds':>9}{'units':>10}{'units/s':>11}{'tasks':>8}"
        f"{'sched. share':>14}  status"
    )
    all_tasks = 0
    for stage in s.stages:
        rate = stage.units / stage.seconds if stage.seconds > 0 else float("nan")
        tasks = sum(m.stage_tasks.get(stage.name, Counter()).values())
        all_tasks += tasks
        share = tasks * m.overhead / stage.seconds if stage.seconds > 0 else float("nan")
        print(
            f"  {stage.name:<10}{stage.seconds:9.1f}{stage.units:>10}{rate:11.2f}{tasks:>8}"
            f"{100 * share:13.2f}%  {stage.status}"
        )
    outside = sum(m.stage_tasks.get("between stages", Counter()).values())
    all_tasks += outside
    staged = sum(st.seconds for st in s.stages)
    print(
        f"  {'run':<10}{m.wall:9.1f}{s.cells:>10}{s.cells / m.wall:11.2f}{all_tasks:>8}"
        f"{100 * all_tasks * m.overhead / m.wall:13.2f}%  cells/s overall; stages "
        f"{staged:.1f} s, the rest between stages ({outside} tasks there)"
    )
    for problem in s.problems:
        print(f"  problem: {problem}")
    print(
        f"  {'worker':<24}{'kind':<6}{'memory limit':>14}{'peak RSS':>12}{'x limit':>9}"
        f"{'ru_maxrss':>12}"
    )
    for address, kind, limit, peak, maxrss in m.workers:
        print(
            f"  {address:<24}{kind:<6}{format_bytes(limit):>14}{format_bytes(peak):>12}"
            f"{peak / limit:9.2f}{format_bytes(maxrss):>12}"
        )
    print(
        "  (peak RSS: the worker process's VmHWM, read at the end of the run; its ru_maxrss "
        "also carries\n  the peak of the process that spawned it, this one, at the time)"
    )
    print(
        f"  this process (client + scheduler): peak RSS {format_bytes(m.client_rss)} "
        "(since the script started)"
    )
    if not m.gone and not m.new and not m.restart_lines:
        print(
            f"  restarts: none (the same {len(m.workers)} worker addresses before and after the "
            "run; no restart or kill lines from distributed)"
        )
    else:
        print(
            f"  restarts: YES: {len(m.gone)} worker(s) gone {m.gone}, {len(m.new)} new {m.new}, "
            f"{len(m.restart_lines)} restart/kill log line(s) (a restarted worker's peak RSS "
            "starts again from its restart)"
        )
        for line in m.restart_lines[:5]:
            print(f"    {line}")


def report_share(m: Measured) -> None:
    print(
        f"\nscheduler share, {m.n_workers} CPU worker(s): {NOOP_TASKS:,} no-op tasks cost "
        f"{1e3 * m.overhead:.2f} ms/task (median of 3, client.map + gather, same cluster, "
        f"before the run); share = tasks x that / stage seconds "
        f"(target < {100 * SHARE_TARGET:.0f} %)"
    )
    stages = {st.name: st for st in m.summary.stages}
    for name, counts in m.stage_tasks.items():
        seconds = stages[name].seconds if name in stages else None
        total = sum(counts.values())
        share = f"{100 * total * m.overhead / seconds:6.2f} %" if seconds else "   (outside)"
        prefixes = ", ".join(f"{p} {n}" for p, n in counts.most_common(4))
        more = f", +{len(counts) - 4} more prefixes" if len(counts) > 4 else ""
        gpu = m.gpu_tasks.get(name, Counter())
        print(
            f"  {name:<15}{total:>7} tasks {share}{sum(gpu.values()):>6} on GPU-tagged  "
            f"({prefixes}{more})"
        )
    total = sum(sum(c.values()) for c in m.stage_tasks.values())
    gpu = sum(sum(c.values()) for c in m.gpu_tasks.values())
    share = total * m.overhead / m.wall
    verdict = "met" if share < SHARE_TARGET else "NOT met"
    print(
        f"  {'whole run':<15}{total:>7} tasks {100 * share:6.2f} %{gpu:>6} on GPU-tagged  "
        f"over {m.wall:.1f} s (target < {100 * SHARE_TARGET:.0f} %: {verdict})"
    )
    # the model runs in the cell pass (the measure stage's window): count it in every window
    embed = sum(tasks["embed"] for tasks in m.gpu_tasks.values())
    model = sum(m.model_workers.values())
    print(
        f"  the model's tasks (key prefix 'embed'): {embed} of {model} on the GPU-tagged "
        f"worker, run by {len(m.model_workers)} worker process(es); untagged tasks of every "
        f"stage may run there too,\n  so CPU stages here run on {m.n_workers} CPU worker(s) "
        "+ the GPU-tagged one"
    )
    if embed < model:
        print(
            f"  WARNING: {model - embed} model task(s) ran on CPU workers: their GPU tag "
            "(resources GPU=1) did not reach the scheduler"
        )


def report_scaling(runs: list[Measured]) -> None:
    base = min(runs, key=lambda m: m.n_workers)
    print(
        f"\nspeed-up against {base.n_workers} CPU worker(s) (each run also has "
        f"{GPU_WORKERS_HERE} GPU-tagged worker, which takes CPU-stage tasks too; "
        f"threads_per_worker=1;\n  on {_cores()} cores, 2 CPU workers + the GPU-tagged one "
        "oversubscribe the cores)"
    )
    names = [st.name for st in base.summary.stages]
    header = "".join(f"{n:>10}" for n in names)
    print(f"  {'CPU workers':<12}{header}{'run':>10}")
    for m in sorted(runs, key=lambda m: m.n_workers):
        seconds = "".join(
            f"{m.stage(n).seconds if m.stage(n) else float('nan'):9.1f}s" for n in names
        )
        print(f"  {m.n_workers:<12}{seconds}{m.wall:9.1f}s")
    for m in sorted(runs, key=lambda m: m.n_workers):
        if m is base:
            continue
        ratios = []
        for n in names:
            a, b = base.stage(n), m.stage(n)
            ratios.append(a.seconds / b.seconds if a and b and b.seconds > 0 else float("nan"))
        speedup = base.wall / m.wall
        verdict = "met" if speedup >= SPEEDUP_TARGET else "NOT met"
        row = "".join(f"{r:9.2f}x" for r in ratios)
        label = f"{m.n_workers} vs {base.n_workers}:"
        print(
            f"  {label:<12}{row}{speedup:9.2f}x  "
            f"(target >= {SPEEDUP_TARGET}x on the whole run: {verdict})"
        )
        ceiling = _busy_cores(m) / _busy_cores(base)
        print(
            f"  the ceiling of CPU stages here: {_busy_cores(m)} / {_busy_cores(base)} cores "
            f"busy = {ceiling:.2f}x (processes {m.n_workers}+{GPU_WORKERS_HERE} vs "
            f"{base.n_workers}+{GPU_WORKERS_HERE} on {_cores()} cores); the target needs a "
            f"machine with >= {m.n_workers + GPU_WORKERS_HERE} cores"
        )


def report_extrapolation(m: Measured) -> None:
    """Hours per stage of seed 000's screen for N CPU and M GPU workers, linear in each."""
    # CPU stages ran on every worker process (the GPU-tagged one takes untagged tasks too),
    # 1 thread each, so as many at once as there are processes or cores, whichever is fewer
    sharing = _busy_cores(m)
    rates: dict[str, float] = {}  # units per second per worker
    for name in FIELD_STAGES:
        st = m.stage(name)
        rates[name] = st.units / st.seconds / sharing if st and st.seconds > 0 else 0.0
    # measurement and embedding are one pass, timed under "measure": the model's tasks'
    # compute time is the embedding's, the rest of the processes' busy time the measuring's
    cell_pass, models = m.stage("measure"), max(len(m.model_workers), 1)
    if cell_pass and cell_pass.seconds > 0 and m.model_seconds > 0:
        measuring = cell_pass.seconds * sharing - m.model_seconds
        rates["measure"] = cell_pass.units / measuring if measuring > 0 else 0.0
        rates["embed"] = m.summary.cells / m.model_seconds
    else:
        rates["embed"] = 0.0
    screen = [m.stage(n) for n in ("pca", "profiles") if m.stage(n)]
    seconds = sum(st.seconds for st in screen)
    rates["pca+prof"] = m.summary.cells / seconds / sharing if screen and seconds > 0 else 0.0
    print(
        f"\nextrapolation to seed 000's full screen: {SEED_000_FIELDS:,} fields, "
        f"~{SEED_000_CELLS / 1e6:.0f} M cells, from the {m.n_workers}-CPU-worker run"
    )
    print(
        "  assumed: each stage scales linearly with its workers (CPU workers for ingest, "
        "project, segment,\n  measure, pca+profiles; GPU workers for embed); stages run one "
        "after another (total = sum);\n  the report is not extrapolated. Measurement and "
        "embedding are one pass (timed as measure):\n  embed is the model tasks' compute time, "
        "measure the rest of the busy process time.\n  CPU rates come from "
        "this 2-core machine: a stage's rate over\n  the single-threaded worker processes "
        f"that ran it at once ({m.n_workers} CPU + {GPU_WORKERS_HERE} GPU-tagged, at most "
        f"{_cores()} cores:\n  {sharing}), at this screen's field size, planes and channels; "
        "GPU workers' help with CPU stages is\n  left out. Ingest here renders synthetic "
        "images. The embed rate is a CPU rate (no GPU here):\n  the GPU rows are a lower "
        "bound, to be replaced by a GPU measurement."
    )
    per_worker = ", ".join(
        f"{name} {rate:.3g} {'cells' if name in ('embed', 'pca+prof') else 'fields'}/s"
        for name, rate in rates.items()
    )
    print(
        f"  per-worker rates (embed: per worker process that ran the model, {models}): {per_worker}"
    )
    names = [*FIELD_STAGES, "embed", "pca+prof"]
    print(f"  {'CPU':>5}{'GPU':>5}" + "".join(f"{n:>10}" for n in names) + f"{'total':>10}  hours")
    for n_cpu in CPU_WORKERS:
        for n_gpu in GPU_WORKERS:
            hours = []
            for name in names:
                units = SEED_000_CELLS if name in ("embed", "pca+prof") else SEED_000_FIELDS
                workers = n_gpu if name == "embed" else n_cpu
                rate = rates[name] * workers
                hours.append(units / rate / 3600 if rate > 0 else float("nan"))
            row = "".join(f"{h:10.2f}" for h in hours)
            print(f"  {n_cpu:>5}{n_gpu:>5}{row}{sum(hours):10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--plates", type=int, default=1)
    parser.add_argument("--wells", type=int, default=10)
    parser.add_argument("--fields", type=int, default=4)
    parser.add_argument("--timepoints", type=int, default=1)
    parser.add_argument("--planes", type=int, default=40)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument(
        "--channels", type=int, default=5, choices=range(2, len(CHANNELS) + 1),
        help=f"how many of {CHANNELS}",
    )  # fmt: skip
    parser.add_argument("--memory-limit", default="1.75GB", help="per worker process")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="CPU workers")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-data" / "pipeline")
    parser.add_argument("--allow-small", action="store_true", help="run below 3x memory")
    parser.add_argument("--skip-scaling", action="store_true", help="only the largest run")
    args = parser.parse_args()

    counts = sorted(set(args.workers))
    if args.skip_scaling:
        counts = counts[-1:]
    limit = parse_bytes(args.memory_limit)
    most = counts[-1] + GPU_WORKERS_HERE
    ratio = raw_bytes(args) / (most * limit)
    print(
        f"screen: {args.plates} plate(s) x {args.timepoints} t x {args.wells} wells x "
        f"{args.fields} fields x {args.planes} z x {args.channels} c x {args.size}^2 uint16 = "
        f"{format_bytes(raw_bytes(args))} raw; the largest run has {most} workers x "
        f"{format_bytes(limit)} = {format_bytes(most * limit)}: {ratio:.2f}x "
        f"(target >= {RATIO_TARGET:.0f}x)"
    )
    print(
        f"runs: {', '.join(str(n) for n in counts)} CPU worker(s), each with "
        f"{GPU_WORKERS_HERE} GPU-tagged worker, threads_per_worker=1, processes, "
        f"{args.memory_limit} each; this machine: {_cores()} cores"
    )
    if ratio < RATIO_TARGET and not args.allow_small:
        parser.error(
            f"the raw screen is only {ratio:.2f}x the workers' memory (need >= "
            f"{RATIO_TARGET:.0f}x): enlarge it or pass --allow-small"
        )
    if ratio < RATIO_TARGET:
        print(f"  (below {RATIO_TARGET:.0f}x, --allow-small: NOT an out-of-core measurement)")
    runs = []
    for n in counts:
        runs.append(measure(args, n))
        report_run(runs[-1], args)
    for m in runs:
        report_share(m)
    if len(runs) > 1:
        report_scaling(runs)
    report_extrapolation(runs[-1])


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def _busy_cores(m: Measured) -> int:
    """Cores a run's single-threaded worker processes can keep busy at once."""
    return min(m.n_workers + GPU_WORKERS_HERE, _cores())


if __name__ == "__main__":
    main()
