"""cellscale: high-content screening from raw images to single-cell profiles, out of core.

The public API is re-exported here and imported lazily, so ``import cellscale`` stays
cheap and never imports torch or cellpose.
"""

from __future__ import annotations

import importlib
from typing import Any

from cellscale import config as _config  # noqa: F401  (merges the YAML defaults into dask config)

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "open_plate": "cellscale.io",
    "write_plate": "cellscale.io",
    "ingest": "cellscale.io",
    "read_tiff_plate": "cellscale.io",
    "read_plate_map": "cellscale.io",
    "update_plate_map": "cellscale.io",
    "verify_plate": "cellscale.io",
    "write_labels": "cellscale.io",
    "open_labels": "cellscale.io",
    "as_plate": "cellscale.plate",
    "StaleOutputError": "cellscale._stages",
    "UnitFailure": "cellscale._stages",
    "OutputLockedError": "cellscale._stages",
    "project": "cellscale.ops",
    "segment": "cellscale.segmentation",
    "measure": "cellscale.measurement",
    "write_cells": "cellscale.measurement",
    "read_cells": "cellscale.measurement",
    "well_summary": "cellscale.measurement",
    "extract_crops": "cellscale.crops",
    "write_crops": "cellscale.crops",
    "open_crops": "cellscale.crops",
    "embed": "cellscale.embedding",
    "write_embeddings": "cellscale.embedding",
    "start_cluster": "cellscale.cluster",
    "gpu_tasks": "cellscale.cluster",
    "PCA": "cellscale.profiles",
    "standardize": "cellscale.profiles",
    "robustize": "cellscale.profiles",
    "spherize": "cellscale.profiles",
    "aggregate": "cellscale.profiles",
    "knn_accuracy": "cellscale.profiles",
    "run": "cellscale.pipeline",
    "load_config": "cellscale.pipeline",
    "PlateError": "cellscale.plate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cellscale' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
