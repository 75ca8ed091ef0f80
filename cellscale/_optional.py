"""Optional heavy dependencies (torch, cellpose, dask-jobqueue, umap, copairs), imported on use."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "import_optional"]

EXTRAS: dict[str, str] = {
    "torch": "gpu",
    "torchvision": "gpu",
    "cellpose": "gpu",
    "dask_jobqueue": "slurm",
    "umap": "analysis",
    "copairs": "analysis",
    "sklearn": "analysis",
}
"""Which ``pip install "cellscale[<extra>]"`` extra provides each optional module."""


def import_optional(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise an ImportError that names the extra to install.

    Parameters
    ----------
    module
        Top-level module name, e.g. ``"torch"``.
    feature
        What needs it, for the message, e.g. ``"cellpose segmentation"``.

    Examples
    --------
    >>> import_optional("json", "reading settings").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra = EXTRAS.get(module.split(".")[0])
        hint = (
            f'install it with: pip install "cellscale[{extra}]"'
            if extra
            else f"install {module.split('.')[0]!r}"
        )
        raise ImportError(f"{feature} needs {module!r}, which is not installed; {hint}") from err
