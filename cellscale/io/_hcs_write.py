"""Placeholder until this module lands."""

from typing import Any


def write_plate(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError
