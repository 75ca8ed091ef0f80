"""cellscale's namespaced dask configuration.

Defaults ship in ``cellscale.yaml`` beside this module and are merged into
:data:`dask.config.config` under the ``cellscale`` key at import time; the user's dask
config files and ``DASK_CELLSCALE__…`` environment variables take precedence, and
keyword arguments take precedence over both (see :func:`config_value`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.config
import yaml

__all__ = ["config_value"]

_DEFAULTS_FILE = Path(__file__).with_name("cellscale.yaml")


def _load_defaults() -> None:
    defaults = yaml.safe_load(_DEFAULTS_FILE.read_text())
    dask.config.update_defaults(defaults)


def config_value(key: str, override: Any = None) -> Any:
    """Return ``override`` unless it is ``None``, else the config value ``cellscale.<key>``.

    Parameters
    ----------
    key
        Dotted key below ``cellscale``, e.g. ``"zarr.codec"``.
    override
        A keyword argument's value; ``None`` means "use the configuration".

    Examples
    --------
    >>> config_value("zarr.codec", "zstd")
    'zstd'
    """
    if override is not None:
        return override
    return dask.config.get(f"cellscale.{key}")


_load_defaults()
