"""The same work on two revisions of cellscale, interleaved in one run: did a change cost speed?

Usage::

    python benchmarks/bench_revisions.py --baseline 220e261 [--repeats 3]
        [--only projection ingest pipeline] [--out bench-data/revisions]

The baseline revision is checked out (``git worktree``) under ``out``; every measurement
runs in a fresh Python process whose ``cellscale`` is imported from either this working
tree or the baseline's (``PYTHONPATH``), alternating baseline / this tree, ``repeats``
times. Each process reports the wall time of the operation alone and its peak RSS
(``VmHWM``). Inputs are made once, by this tree, before anything is timed:

* **projection**: ``write_plate(project(open_plate(src), "max"), dst)`` of a synthetic
  plate of 6 wells × 4 fields × 12 planes × 3 channels × 512² uint16 (113 MB raw),
  local threaded scheduler;
* **ingest**: ``ingest(folder, dst)`` of the same plate's planes as 864 ImageXpress-named
  TIFFs, local threaded scheduler;
* **pipeline**: ``cellscale.run`` of the pipeline tests' two-plate synthetic screen
  (8 wells × 2 fields, 3 planes, 128², ResNet-18, PCA, profiles, report) on a fresh
  ``LocalCluster`` of one CPU and one GPU-tagged worker (threads), fresh output folder;
* **demo**: ``cellscale.run`` of the demo's screen (:func:`cellscale.demo.demo_config`
  with its defaults: 2 plates × 8 wells × 2 fields × 2 time points × 6 planes × 3
  channels, 384²) on its default cluster of worker processes, as ``cellscale demo``
  runs it (not in the default ``--only``: it takes minutes).

It prints, per operation, the median time of each revision, the ratio this tree /
baseline (below 1 is faster) and the peak RSS of each; per measurement, the CPU time
(user and system) of the process and every process it started (worker processes included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_MEASURE = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path({bench!r})))
from _rss import peak_rss_gb
import cellscale
assert Path(cellscale.__file__).is_relative_to({tree!r}), cellscale.__file__
op, data, out = {op!r}, Path({data!r}), Path({out!r})
start = time.perf_counter()
if op == "projection":
    plate = cellscale.open_plate(data / "plate.zarr")
    cellscale.write_plate(cellscale.project(plate, "max"), out, progress=False)
elif op == "ingest":
    cellscale.ingest(data / "tiffs", out, "imagexpress", progress=False)
elif op == "demo":
    from cellscale.demo import DemoSettings, demo_config
    if __name__ == "__main__":
        cellscale.run(demo_config(DemoSettings(out=out)), progress=False)
else:
    config = json.loads((data / "screen.json").read_text())
    config["output"] = str(out)
    with cellscale.start_cluster("local", n_workers=1, gpu_workers=1, processes=False,
                                 threads_per_worker=2, quiet=True) as client:
        cellscale.run(config, client=client, progress=False)
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "rss_gb": peak_rss_gb()}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--baseline", required=True, help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--only", nargs="+", default=["projection", "ingest", "pipeline"], help="operations"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-data" / "revisions")
    args = parser.parse_args()
    baseline = _checkout(args.baseline, args.out)
    data = _inputs(args.out / "inputs")
    trees = {f"baseline {args.baseline}": baseline, "this tree": ROOT}
    print(f"baseline {args.baseline} at {baseline}; this tree {ROOT}", flush=True)
    for op in args.only:
        times: dict[str, list[float]] = {name: [] for name in trees}
        rss: dict[str, list[float]] = {name: [] for name in trees}
        cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for i in range(args.repeats):
            for name, tree in trees.items():
                result = _measure(op, tree, data, args.out / f"{op}-{i}.out")
                times[name].append(result["seconds"])
                rss[name].append(result["rss_gb"])
                cpu[name].append((result["user_s"], result["sys_s"]))
                print(
                    f"  {op} {name}: {result['seconds']:.2f} s (CPU of all its processes: "
                    f"user {result['user_s']:.1f} s, system {result['sys_s']:.1f} s)",
                    flush=True,
                )
        old = f"baseline {args.baseline}"
        before, after = statistics.median(times[old]), statistics.median(times["this tree"])
        print(
            f"{op}: this tree {after:.2f} s, baseline {before:.2f} s, ratio {after / before:.2f} "
            f"(median of {args.repeats}); peak RSS this tree {max(rss['this tree']):.2f} GB, "
            f"baseline {max(rss[old]):.2f} GB; CPU user + system (medians) this tree "
            f"{_cpu(cpu['this tree'])}, baseline {_cpu(cpu[old])}",
            flush=True,
        )


def _cpu(measured: list[tuple[float, float]]) -> str:
    user, system = (statistics.median(values) for values in zip(*measured, strict=True))
    return f"{user:.1f} + {system:.1f} s"


def _checkout(revision: str, out: Path) -> Path:
    tree = out / f"tree-{revision}"
    if not tree.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision],
            check=True,
            capture_output=True,
        )
    return tree


def _inputs(folder: Path) -> Path:
    """The plate, its TIFFs and the screen config, made once by this tree."""
    if (folder / "done").exists():
        return folder
    import numpy as np
    import tifffile

    sys.path.insert(0, str(ROOT))
    import cellscale
    from cellscale.synthetic import synthetic_plate

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    plate = synthetic_plate(wells=6, fields=4, n_z=12, channels=3, shape=(512, 512), seed=1)
    cellscale.write_plate(plate, folder / "plate.zarr", progress=False)
    tiffs = folder / "tiffs" / "TimePoint_1"
    for z in range(plate.sizes["z"]):
        (tiffs / f"ZStep_{z + 1}").mkdir(parents=True)
    for well in plate.coords["well"].values:
        for f, field in enumerate(plate.coords["field"].values):
            images = plate.sel(well=well, field=field).isel(t=0).values  # (z, c, y, x)
            for z, planes in enumerate(images):
                for c, image in enumerate(planes):
                    name = f"P_{well}_s{f + 1}_w{c + 1}.tif"
                    tifffile.imwrite(tiffs / f"ZStep_{z + 1}" / name, np.ascontiguousarray(image))
    sys.path.insert(0, str(ROOT / "tests"))
    from test_pipeline import screen_config

    config = screen_config(folder / "unused")
    (folder / "screen.json").write_text(json.dumps(config))
    (folder / "done").touch()
    return folder


def _measure(op: str, tree: Path, data: Path, out: Path) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    code = _MEASURE.format(
        bench=str(ROOT / "benchmarks"), tree=str(tree), op=op, data=str(data), out=str(out)
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=out.parent,  # never a source tree: `python -c` imports from its folder first
        check=True,
        capture_output=True,
        text=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the process and its workers
    time.sleep(1)
    shutil.rmtree(out, ignore_errors=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["user_s"] = after.ru_utime - before.ru_utime
    result["sys_s"] = after.ru_stime - before.ru_stime
    return result


if __name__ == "__main__":
    main()
