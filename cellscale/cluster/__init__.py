"""Clusters: a local one by default, or SLURM batch jobs from a login node.

Both kinds have a ``cpu`` and a ``gpu`` worker pool attached to one scheduler; stage code
marks GPU tasks with :func:`gpu_tasks` and names tasks with :func:`task_name`, and never
looks at which kind of cluster runs it.
"""

from cellscale.cluster._gpu import gpu_tasks, preserve_annotations
from cellscale.cluster._naming import task_name
from cellscale.cluster._pools import PoolAdaptive, PooledCluster, WorkerPool
from cellscale.cluster._start import ClusterClient, start_cluster

__all__ = [
    "ClusterClient",
    "PoolAdaptive",
    "PooledCluster",
    "WorkerPool",
    "gpu_tasks",
    "preserve_annotations",
    "start_cluster",
    "task_name",
]
