"""What every output shares: damaged-piece errors, verify reports and atomic files.

Every output kind (plates and labels, row arrays, cell tables, one-file results) is
written under :func:`~cellscale._stages.output_lock` (or a lazy write's
:class:`~cellscale._stages.Lease`), carries the :class:`~cellscale._stages.Fingerprint` of
what made it and a completion record per unit, is read back by a reader that raises
:class:`DamagedOutputError` for a missing, incomplete or damaged piece, and is checked by a
``verify`` that returns a :class:`VerifyReport`. This module holds the pieces they share.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellscale._compat import Failed

__all__ = ["DamagedOutputError", "VerifyReport", "atomic_path"]


class DamagedOutputError(ValueError):
    """A piece of an output is missing, incomplete or damaged; the message names it."""


@dataclass
class VerifyReport:
    """What verifying one output found.

    Attributes
    ----------
    path
        The output.
    checked
        How many complete units (or files) were checked.
    damaged
        Each damaged unit (``"B03/f1/t0"``, ``"rows 0:100"``) and what is wrong with it.
    repaired
        Whether the damaged units were unmarked, so that writing again redoes them.
    kind
        What the output is (``"plate"``, ``"labels 'nuclei'"``, ``"cell table"`` …).
    """

    path: Path
    checked: int
    damaged: dict[str, str] = field(default_factory=dict)
    repaired: bool = False
    kind: str = "plate"

    def add(self, unit: str, result: Any) -> bool:
        """Record what checking ``unit`` returned; whether it is damaged.

        ``result`` is ``None`` for an intact unit, the problem found, or the
        :class:`~cellscale._compat.Failed` of a check that raised.
        """
        problem = (
            f"{type(result.error).__name__}: {result.error}"
            if isinstance(result, Failed)
            else result
        )
        if problem:
            self.damaged[unit] = str(problem)
        return bool(problem)

    @property
    def ok(self) -> bool:
        """Whether every checked unit is intact."""
        return not self.damaged

    def __str__(self) -> str:
        if self.ok:
            return f"{self.path} ({self.kind}): all {self.checked} complete units are intact"
        action = (
            "unmarked: write it again (or rerun) to repair them"
            if self.repaired
            else "left marked (repair=False)"
        )
        count = f"{len(self.damaged)} of {self.checked} complete units are damaged"
        lines = [f"{self.path} ({self.kind}): {count}, {action}"]
        lines += [f"  {unit}: {problem}" for unit, problem in self.damaged.items()]
        return "\n".join(lines)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a hidden partial path beside ``path``; move it into place if the block succeeds.

    Whatever the block writes at the partial path (a file or a folder) replaces ``path``
    only once it is whole, so a reader never sees half of it; a block that raises leaves
    ``path`` as it was and removes the partial. Partials a killed writer left behind are
    named ``.<name>.partial…`` and removed by :func:`~cellscale._stages.remove_partials`.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "model.json"
    >>> with atomic_path(target) as partial:
    ...     _ = partial.write_text("{}")
    >>> target.read_text()
    '{}'
    """
    path = Path(path)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    _remove(partial)
    try:
        yield partial
        if partial.is_dir() and path.exists():
            _swap_folder(partial, path)
        else:
            os.replace(partial, path)
    except BaseException:
        _remove(partial)
        raise


def _swap_folder(partial: Path, path: Path) -> None:
    """Replace the folder ``path`` by ``partial`` (a folder cannot be renamed over another)."""
    old = path.with_name(f".{path.name}.partial.old")
    _remove(old)
    os.replace(path, old)
    os.replace(partial, path)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
