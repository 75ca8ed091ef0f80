"""SLURM batch jobs for the GPU pool (dask-jobqueue's SLURMJob serves the CPU pool)."""

from __future__ import annotations

import math
from typing import Any

from dask.utils import parse_bytes
from dask_jobqueue.slurm import SLURMJob

from cellscale._compat import job_command, set_job_command

__all__ = ["GPUJob", "SLURMJob"]


class GPUJob(SLURMJob):
    """A SLURM job holding ``gpus`` GPUs and running one dask worker per GPU.

    Worker ``i`` sees only the job's ``i``-th GPU (``CUDA_VISIBLE_DEVICES`` taken from the
    list SLURM set for the job), offers ``--resources GPU=1`` and is named ``<name>-<i>``.
    The job's cores and memory are split evenly between its workers.

    Parameters
    ----------
    scheduler, name
        As for :class:`dask_jobqueue.slurm.SLURMJob`.
    gpus
        GPUs per job.
    gpu_directive
        ``#SBATCH`` option asking for them, with ``{n}`` for the count (``--gres=gpu:{n}``,
        ``--gpus={n}``, ``--gres=gpu:a100:{n}`` …).
    **kwargs
        Other :class:`~dask_jobqueue.slurm.SLURMJob` options; ``cores`` and ``memory`` are
        per job.
    """

    def __init__(
        self,
        scheduler: str | None = None,
        name: str | None = None,
        *,
        gpus: int,
        gpu_directive: str,
        **kwargs: Any,
    ) -> None:
        if gpus < 1:
            raise ValueError(f"a GPU job needs at least one GPU, got gpus={gpus}")
        extra = [*kwargs.pop("job_extra_directives", []), gpu_directive.format(n=gpus)]
        args = [*kwargs.pop("worker_extra_args", []), "--resources", "GPU=1"]
        cores, memory = int(kwargs.pop("cores")), parse_bytes(kwargs.pop("memory"))
        super().__init__(
            scheduler=scheduler,
            name=f"{name}-$i",  # $i: the worker's GPU number, set by the loop below
            cores=max(cores // gpus, 1),
            memory=str(memory // gpus),
            processes=1,
            job_cpu=cores,
            job_mem=f"{math.ceil(memory / 2**20)}M",
            job_extra_directives=extra,
            worker_extra_args=args,
            **kwargs,
        )
        one_worker = job_command(self)
        default = ",".join(str(i) for i in range(gpus))
        per_gpu = "\n".join(
            [
                f'IFS=, read -r -a CELLSCALE_GPUS <<< "${{CUDA_VISIBLE_DEVICES:-{default}}}"',
                f"for i in $(seq 0 {gpus - 1}); do",
                f'  CUDA_VISIBLE_DEVICES="${{CELLSCALE_GPUS[$i]}}" {one_worker} &',
                "done",
                "wait",
            ]
        )
        set_job_command(self, per_gpu)
