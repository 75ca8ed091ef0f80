"""One way of reporting the failed units of a stage, the same on every scheduler.

:class:`UnitFailure` lists every failed unit by its position with its error, chains the
first error, and is also an instance of the type all the errors share, so
``except OSError`` still catches a stage whose units failed on a full disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["UnitFailure"]

_SHOWN = 20  # failed units listed in full


class UnitFailure(Exception):
    """Some units of a stage failed.

    Attributes
    ----------
    stage
        The stage's name.
    failures
        Each failed unit's name (``"B03/f2/t0"``) and its original exception.

    Notes
    -----
    Use :meth:`build`, which returns an instance of a subclass that also derives from the
    type every failure shares (e.g. ``OSError``), so that ordinary ``except`` clauses for
    the original error keep working.
    """

    def __init__(self, stage: str, failures: Mapping[str, BaseException]) -> None:
        self.stage = stage
        self.failures = dict(failures)
        self.message = _message(stage, self.failures)
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (UnitFailure.build, (self.stage, self.failures))

    @staticmethod
    def build(stage: str, failures: Mapping[str, BaseException]) -> UnitFailure:
        """A :class:`UnitFailure` that is also an instance of the failures' common type."""
        errors = list(failures.values())
        cls = _failure_class(_common_type(errors))
        error = cls.__new__(cls, _message(stage, dict(failures)))
        UnitFailure.__init__(error, stage, failures)
        if isinstance(errors[0], OSError) and isinstance(error, OSError):
            error.errno, error.filename = errors[0].errno, errors[0].filename
        error.__cause__ = errors[0]
        return error


def _message(stage: str, failures: dict[str, BaseException]) -> str:
    lines = [f"{len(failures)} unit(s) of {stage!r} failed:"]
    shown = list(failures.items())[:_SHOWN]
    lines += [f"  {unit}: {type(err).__name__}: {err}" for unit, err in shown]
    if len(failures) > _SHOWN:
        lines.append(f"  … and {len(failures) - _SHOWN} more (see .failures)")
    return "\n".join(lines)


def _common_type(errors: list[BaseException]) -> type[Exception]:
    """The most derived exception type that every error is an instance of."""
    for candidate in type(errors[0]).__mro__:
        if (
            isinstance(candidate, type)
            and issubclass(candidate, Exception)
            and all(isinstance(e, candidate) for e in errors)
        ):
            return candidate
    return Exception


_CLASSES: dict[type[Exception], type[UnitFailure]] = {}


def _failure_class(base: type[Exception]) -> type[UnitFailure]:
    if base is Exception or issubclass(base, UnitFailure):
        return UnitFailure
    if base not in _CLASSES:
        try:
            cls = type(f"UnitFailure[{base.__name__}]", (UnitFailure, base), {})
            cls.__new__(cls, "probe")
        except TypeError:  # a type that cannot be combined or built from a message
            return UnitFailure
        cls.__module__ = __name__
        _CLASSES[base] = cls
    return _CLASSES[base]
