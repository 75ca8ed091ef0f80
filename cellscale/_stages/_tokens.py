"""Deterministic names: task keys from tokens of their inputs, and 64-bit unit tokens."""

from __future__ import annotations

import hashlib
from typing import Any

from dask.base import tokenize

__all__ = ["task_key", "unit_token"]


def task_key(stage: str, *inputs: Any) -> str:
    """A dask key for a stage's task: the stage name and a token of every input.

    Two tasks share a key only when they compute the same thing, so writes of two
    plates that happen to share a name never collide on one client.

    Examples
    --------
    >>> task_key("write-plate", "a.zarr", 3) == task_key("write-plate", "a.zarr", 3)
    True
    >>> task_key("write-plate", "a.zarr", 3) == task_key("write-plate", "b.zarr", 3)
    False
    """
    return f"{stage}-{tokenize(*inputs)}"


def unit_token(*parts: Any) -> int:
    """A nonzero 64-bit token of ``parts``: what a completion ledger records for a unit.

    Zero is reserved for "not done", so a token is never 0.

    Examples
    --------
    >>> unit_token("B03", 1) == unit_token("B03", 1) != 0
    True
    """
    digest = hashlib.blake2b(tokenize(*parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1
