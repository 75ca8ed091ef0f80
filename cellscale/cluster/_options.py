"""Resolve a config section against keyword arguments (keywords win over dask config)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dask.config

from cellscale.config import config_value

__all__ = ["settings"]


def settings(section: str, overrides: Mapping[str, Any], *, nested: tuple[str, ...] = ()) -> dict:
    """Settings of ``cellscale.<section>``, keyword arguments taking precedence.

    Keys are returned with ``_`` instead of ``-`` (``walltime``, ``job_script_prologue``),
    which is also how keyword arguments spell them.

    Parameters
    ----------
    section
        Dotted config section below ``cellscale``, e.g. ``"slurm"``.
    overrides
        Keyword arguments; None means "use the configuration".
    nested
        Sub-sections that are not settings themselves (e.g. ``("cpu", "gpu")``).

    Raises
    ------
    TypeError
        A keyword that is no setting of the section; the message lists the valid ones.
    """
    keys = [k for k in dask.config.get(f"cellscale.{section}") if k not in nested]
    valid = {k.replace("-", "_"): k for k in keys}
    unknown = sorted(set(overrides) - set(valid) - set(nested))
    if unknown:
        raise TypeError(f"unknown cellscale.{section} setting(s) {unknown}; valid: {sorted(valid)}")
    return {
        name: config_value(f"{section}.{key}", overrides.get(name)) for name, key in valid.items()
    }
