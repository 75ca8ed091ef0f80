"""Peak memory of the measuring process, for the benchmark scripts."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_gb() -> float:
    """This process's peak resident memory in GB.

    Read from ``VmHWM``: unlike ``ru_maxrss``, it is not carried over from the parent
    across ``exec``, so a measuring process started by a script that generated a plate
    reports its own peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
