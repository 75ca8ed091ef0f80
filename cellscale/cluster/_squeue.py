"""What SLURM says about jobs and nodes: ``squeue`` and ``sinfo``, called and read."""

from __future__ import annotations

import getpass
import re
import subprocess
from typing import NamedTuple

__all__ = [
    "JobState",
    "NodeGroup",
    "parse_sinfo",
    "parse_squeue",
    "partition_nodes",
    "squeue_jobs",
]

#: squeue fields: job id, state, partition, reason (last: a reason may hold spaces).
SQUEUE_FORMAT = "%i|%T|%P|%r"
#: sinfo fields per group of like nodes: CPUs, memory (MiB), generic resources, node count.
SINFO_FORMAT = "%c|%m|%G|%D"

_NUMBER = re.compile(r"\d+")


class JobState(NamedTuple):
    """A job as squeue lists it."""

    state: str
    """``PENDING``, ``RUNNING``, ``COMPLETING`` …"""
    partition: str
    reason: str
    """Why a pending job waits (``Resources``, ``PartitionConfig``, ``Priority`` …)."""


class NodeGroup(NamedTuple):
    """A group of like nodes of a partition, as sinfo lists it."""

    cpus: int
    memory: int
    """Bytes."""
    gres: str
    """Generic resources, e.g. ``gpu:a100:4``; ``(null)`` when none."""
    nodes: int
    """How many nodes are alike."""


def parse_squeue(text: str) -> dict[str, JobState]:
    """Jobs by id from ``squeue --noheader --format=%i|%T|%P|%r`` output.

    Examples
    --------
    >>> parse_squeue("174|PENDING|debug|PartitionConfig\\n177|RUNNING|debug|None\\n")["174"]
    JobState(state='PENDING', partition='debug', reason='PartitionConfig')
    """
    jobs = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split("|", 3)]
        if len(fields) == 4 and fields[0]:
            jobs[fields[0]] = JobState(*fields[1:])
    return jobs


def parse_sinfo(text: str) -> list[NodeGroup]:
    """Node groups from ``sinfo --noheader --format=%c|%m|%G|%D`` output.

    Counts that sinfo marks as varying within a group (``2+``) are read as their minimum.

    Examples
    --------
    >>> parse_sinfo("2|19321|gpu:1|1\\n")
    [NodeGroup(cpus=2, memory=20259536896, gres='gpu:1', nodes=1)]
    """
    groups = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) != 4:
            continue
        matches = [_NUMBER.match(fields[i]) for i in (0, 1, 3)]
        numbers = [int(m.group()) for m in matches if m is not None]
        if len(numbers) == 3:
            cpus, mib, nodes = numbers
            groups.append(NodeGroup(cpus, mib * 2**20, fields[2], nodes))
    return groups


def squeue_jobs(timeout: float = 30) -> dict[str, JobState] | None:
    """This user's jobs, by id, as squeue lists them; None when squeue does not answer."""
    user = getpass.getuser()
    out = _run(["squeue", "--noheader", f"--format={SQUEUE_FORMAT}", f"--user={user}"], timeout)
    return None if out is None else parse_squeue(out)


def partition_nodes(partition: str, timeout: float = 30) -> list[NodeGroup]:
    """The groups of like nodes in a partition (empty when sinfo does not answer)."""
    out = _run(
        ["sinfo", "--noheader", f"--partition={partition}", f"--format={SINFO_FORMAT}"], timeout
    )
    return [] if out is None else parse_sinfo(out)


def _run(command: list[str], timeout: float) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
