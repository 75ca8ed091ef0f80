"""Placeholder until this module lands."""

from typing import Any


def ingest(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError
