"""The dashboard link, and the ssh port-forward that reaches a dashboard bound to localhost."""

from __future__ import annotations

import getpass
import socket

from distributed import SpecCluster
from distributed.core import Status
from distributed.utils import format_dashboard_link

__all__ = ["dashboard_link", "dashboard_message", "dashboard_port"]


def dashboard_port(cluster: SpecCluster) -> int | None:
    """Port the cluster's dashboard listens on, or None when it has no dashboard."""
    port = cluster.scheduler_info.get("services", {}).get("dashboard")
    return int(port) if port is not None else None


def dashboard_link(cluster: SpecCluster) -> str:
    """Link to the dashboard as seen from the scheduler's machine; ``""`` unless it is running.

    The link names ``localhost`` (the dashboard listens there, whatever interface the
    scheduler uses) and follows ``distributed.dashboard.link``. A closed cluster has no
    dashboard, so it has no link either.
    """
    port = dashboard_port(cluster)
    if cluster.status != Status.running or port is None:
        return ""
    return format_dashboard_link("localhost", port)


def dashboard_message(cluster: SpecCluster, *, ssh_hint: bool) -> str:
    """Text announcing the dashboard: its link and, for remote users, the ssh tunnel to it.

    The dashboard listens on the loopback interface only, so other users of a shared login
    node cannot reach it; from a laptop one forwards the port over ssh. A cluster that is
    not running gets no link.

    Parameters
    ----------
    cluster
        A cluster.
    ssh_hint
        Add the ``ssh -N -L`` command to run on one's own computer.
    """
    if cluster.status != Status.running:
        return f"cellscale: cluster {cluster.name!r} is {cluster.status.name}: no dashboard"
    link, port = dashboard_link(cluster), dashboard_port(cluster)
    if not link:
        return f"cellscale: cluster {cluster.name!r} started without a dashboard"
    lines = [f"cellscale: dask dashboard of {cluster.name!r} at {link} (listening on localhost)"]
    if ssh_hint:
        login = f"{getpass.getuser()}@{socket.getfqdn()}"
        lines.append(
            f"  from your own computer run:  ssh -N -L {port}:localhost:{port} {login}\n"
            f"  and open {link} there"
        )
    return "\n".join(lines)
