"""TLS for a scheduler on a shared login node: temporary certificates or the user's own."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distributed import Security

__all__ = ["cluster_security"]


def cluster_security(
    mode: str, shared_temp_directory: str | None
) -> tuple[Security | None, Security | None, Callable[[], None]]:
    """Security for the scheduler and client, the same for the batch-job workers, and a cleanup.

    Parameters
    ----------
    mode
        ``"temporary"``: a self-signed certificate made for this cluster only
        (:meth:`distributed.Security.temporary`); the workers' copy is written to files only
        the user can read, in ``shared_temp_directory``, and removed at cleanup.
        ``"dask-config"``: the user's certificates from ``distributed.comm.tls``.
        ``"none"``: plain TCP (anyone on the network can connect to the scheduler).
    shared_temp_directory
        A folder the compute nodes also see (default ``~/.cellscale/tls``).

    Returns
    -------
    tuple
        ``(security, worker_security, cleanup)``; both securities are None for ``"none"``.
    """
    if mode == "none":
        return None, None, _nothing
    if mode == "dask-config":
        security: Any = Security(require_encryption=True)
        if not security.tls_ca_file or not security.tls_worker_cert:
            raise ValueError(
                "cellscale.slurm.security is 'dask-config' but distributed.comm.tls.ca-file "
                "and distributed.comm.tls.worker.cert are not both set in the dask config"
            )
        return security, security, _nothing
    if mode != "temporary":
        raise ValueError(
            f"cellscale.slurm.security must be 'temporary', 'dask-config' or 'none', got {mode!r}"
        )
    security = Security.temporary()
    base = Path(os.path.expandvars(shared_temp_directory or "~/.cellscale/tls")).expanduser()
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = Path(tempfile.mkdtemp(prefix="cluster-", dir=base))  # mode 0700
    worker = copy.copy(security)
    for attr, value in [
        ("tls_ca_file", security.tls_ca_file),
        ("tls_worker_cert", security.tls_worker_cert),
        ("tls_worker_key", security.tls_worker_key),
    ]:
        path = folder / f"{attr}.pem"
        path.touch(mode=0o600)
        path.write_text(str(value))
        setattr(worker, attr, str(path))
    return security, worker, lambda: shutil.rmtree(folder, ignore_errors=True)


def _nothing() -> None:
    return None
