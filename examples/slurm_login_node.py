"""Run cellscale from an HPC login node: CPU jobs and GPU jobs, one script, one dashboard.

Copy this file to the login node, change the lines marked SITE, then run it there:

    python slurm_login_node.py

The dask scheduler runs in this process (keep it alive: use tmux/screen, or submit the
script itself as a small long-running job); workers run as SLURM batch jobs. The script
prints the dashboard link and the ``ssh -N -L`` command to reach it from your own computer.
The same settings can live in ``~/.config/dask/cellscale.yaml`` instead (see
docs/clusters.md), so scripts only say ``cellscale.start_cluster("slurm")``.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

import cellscale
from cellscale.cluster import task_name


def fake_model(block: np.ndarray) -> np.ndarray:
    """Stands in for a GPU model: a real stage loads its model once per worker."""
    return (block > block.mean()).astype(np.uint32)


def main() -> None:
    client = cellscale.start_cluster(
        "slurm",
        queue="cpu",  # SITE: partition for CPU jobs (sinfo lists them)
        account="my-lab",  # SITE: your accounting/project code, or None
        walltime="04:00:00",  # SITE: per job; workers retire ~5-7 min before it
        interface="ib0",  # SITE: network the compute nodes reach this node on (ip addr)
        local_directory="$TMPDIR",  # SITE: node-local scratch for spilling
        job_script_prologue=[  # SITE: what your jobs need before Python starts
            "module load cuda/12.4",
            "source ~/venvs/cellscale/bin/activate",
        ],
        cpu={"jobs": 4, "cores": 8, "memory": "32GiB"},  # SITE: size of one CPU job
        gpu={
            "jobs": 1,
            "queue": "gpu",  # SITE: GPU partition
            "cores": 8,
            "memory": "64GiB",
            "gpus_per_job": 1,  # one dask worker per GPU
            "gpu_directive": "--gres=gpu:{n}",  # SITE: or "--gpus={n}", "--gres=gpu:a100:{n}"
        },
    )
    with client:
        # Each pool scales (or adapts) on its own; GPU jobs can wait in the queue meanwhile.
        client.pools["cpu"].adapt(minimum=1, maximum=20)
        client.pools["gpu"].adapt(minimum=0, maximum=2)

        images = da.random.random((16, 1024, 1024), chunks=(1, 1024, 1024))
        smoothed = images.map_blocks(
            lambda b: b - b.mean(), name=task_name("project", well="B03", token=images)
        )  # CPU tasks: run on any worker
        with cellscale.gpu_tasks():  # GPU tasks: run on GPU workers only
            labels = smoothed.map_blocks(
                fake_model, dtype=np.uint32, name=task_name("segment", well="B03", token=smoothed)
            )
        print("foreground pixels:", int(labels.sum().compute()))


if __name__ == "__main__":  # needed: dask may start processes that re-import this file
    main()
