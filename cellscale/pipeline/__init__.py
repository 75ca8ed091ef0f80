"""The pipeline: one resumable run from microscope folders to profiles and a report.

:func:`run` takes a :class:`RunConfig` (or a dict or YAML file of the same shape) naming
the screen's plates and each stage's settings, and runs ingest → project → segment →
measure → crops and embeddings → PCA → normalise and aggregate → report on a dask
client. Every stage writes its outputs resumably; a rerun skips what is finished, and a
changed setting redoes that stage and the ones after it, never those before.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ConfigError": "cellscale.pipeline._config",
    "RunConfig": "cellscale.pipeline._config",
    "load_config": "cellscale.pipeline._config",
    "RunSummary": "cellscale.pipeline._run",
    "run": "cellscale.pipeline._run",
    "write_report": "cellscale.report",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cellscale.pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
