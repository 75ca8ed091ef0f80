"""cellscale: high-content screening from raw images to single-cell profiles, out of core.

The public API is re-exported here and imported lazily, as are the
:mod:`cellscale.analysis`, :mod:`cellscale.learning`, :mod:`cellscale.plots`,
:mod:`cellscale.quality`, :mod:`cellscale.synthetic` and :mod:`cellscale.testing`
submodules, so ``import cellscale`` stays cheap and never imports torch, cellpose or
matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cellscale import config as _config  # noqa: F401  (merges the YAML defaults into dask config)

if TYPE_CHECKING:  # the real signatures, for type checkers; at run time see __getattr__
    from cellscale import analysis as analysis
    from cellscale import learning as learning
    from cellscale import plots as plots
    from cellscale import quality as quality
    from cellscale import synthetic as synthetic
    from cellscale import testing as testing
    from cellscale._stages import DamagedOutputError as DamagedOutputError
    from cellscale._stages import OutputLockedError as OutputLockedError
    from cellscale._stages import StaleOutputError as StaleOutputError
    from cellscale._stages import UnitFailure as UnitFailure
    from cellscale._stages import release_lazy_write as release_lazy_write
    from cellscale._verify import verify as verify
    from cellscale.cluster import gpu_tasks as gpu_tasks
    from cellscale.cluster import start_cluster as start_cluster
    from cellscale.crops import extract_crops as extract_crops
    from cellscale.crops import open_crops as open_crops
    from cellscale.crops import write_crops as write_crops
    from cellscale.embedding import embed as embed
    from cellscale.embedding import open_embeddings as open_embeddings
    from cellscale.embedding import write_embeddings as write_embeddings
    from cellscale.illumination import IlluminationModel as IlluminationModel
    from cellscale.illumination import correct_illumination as correct_illumination
    from cellscale.illumination import fit_illumination as fit_illumination
    from cellscale.io import ingest as ingest
    from cellscale.io import open_labels as open_labels
    from cellscale.io import open_plate as open_plate
    from cellscale.io import read_plate_map as read_plate_map
    from cellscale.io import read_tiff_plate as read_tiff_plate
    from cellscale.io import update_plate_map as update_plate_map
    from cellscale.io import verify_plate as verify_plate
    from cellscale.io import write_labels as write_labels
    from cellscale.io import write_plate as write_plate
    from cellscale.learning import Training as Training
    from cellscale.learning import train as train
    from cellscale.measurement import measure as measure
    from cellscale.measurement import read_cells as read_cells
    from cellscale.measurement import well_summary as well_summary
    from cellscale.measurement import write_cells as write_cells
    from cellscale.ops import project as project
    from cellscale.pipeline import load_config as load_config
    from cellscale.pipeline import run as run
    from cellscale.plate import PlateError as PlateError
    from cellscale.plate import as_plate as as_plate
    from cellscale.profiles import PCA as PCA
    from cellscale.profiles import aggregate as aggregate
    from cellscale.profiles import aggregate_cells as aggregate_cells
    from cellscale.profiles import feature_select as feature_select
    from cellscale.profiles import knn_accuracy as knn_accuracy
    from cellscale.profiles import normalize_profiles as normalize_profiles
    from cellscale.profiles import profile_wells as profile_wells
    from cellscale.profiles import robustize as robustize
    from cellscale.profiles import spherize as spherize
    from cellscale.profiles import standardize as standardize
    from cellscale.quality import flagged_fields as flagged_fields
    from cellscale.quality import qc as qc
    from cellscale.quality import read_qc as read_qc
    from cellscale.quality import write_qc as write_qc
    from cellscale.segmentation import segment as segment

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
    "DamagedOutputError": "cellscale._stages",
    "release_lazy_write": "cellscale._stages",
    "verify": "cellscale._verify",
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
    "open_embeddings": "cellscale.embedding",
    "start_cluster": "cellscale.cluster",
    "gpu_tasks": "cellscale.cluster",
    "PCA": "cellscale.profiles",
    "standardize": "cellscale.profiles",
    "robustize": "cellscale.profiles",
    "spherize": "cellscale.profiles",
    "aggregate": "cellscale.profiles",
    "knn_accuracy": "cellscale.profiles",
    "aggregate_cells": "cellscale.profiles",
    "normalize_profiles": "cellscale.profiles",
    "feature_select": "cellscale.profiles",
    "profile_wells": "cellscale.profiles",
    "run": "cellscale.pipeline",
    "load_config": "cellscale.pipeline",
    "PlateError": "cellscale.plate",
    "qc": "cellscale.quality",
    "fit_illumination": "cellscale.illumination",
    "correct_illumination": "cellscale.illumination",
    "IlluminationModel": "cellscale.illumination",
    "flagged_fields": "cellscale.quality",
    "write_qc": "cellscale.quality",
    "read_qc": "cellscale.quality",
    "train": "cellscale.learning",
    "Training": "cellscale.learning",
}
#: Submodules reachable as attributes of the package, imported on first use.
_SUBMODULES = ("analysis", "learning", "plots", "quality", "synthetic", "testing")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"cellscale.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cellscale' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
