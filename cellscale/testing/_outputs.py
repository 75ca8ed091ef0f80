"""A conformance suite every output kind passes, as zarr's ``StoreTests`` is for stores.

Subclass :class:`OutputTests` in a test module and fill in its hooks for one output kind
(plates, labels, row arrays, cell tables, one-file results); pytest then runs every test
below against it: a killed write resumes to the same output, a changed input is refused
with its differences worded (or redone with ``overwrite``), a deleted or truncated piece
is named by the reader and found and repaired by ``verify``, an incomplete output is
refused, and of two writers on one output (eager or lazy) one wins and the other is told.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import dask
import numpy as np
import pandas as pd
import pytest

from cellscale._stages import DamagedOutputError, OutputLockedError, StaleOutputError

__all__ = ["OutputTests"]


class OutputTests:
    """Tests every output kind passes; subclass and fill in the hooks.

    Attributes
    ----------
    lazy
        Whether the kind has a lazy (``compute=False``) write.
    """

    lazy: ClassVar[bool] = True

    # ------------------------------------------------------------------ hooks

    def write(self, path: Path, variant: int, **options: Any) -> Any:
        """Write the output made from input ``variant`` (0 or 1) at ``path``.

        ``options`` are ``overwrite`` and ``compute``; return what the writer returns.
        """
        raise NotImplementedError

    def read(self, path: Path) -> Any:
        """Read the whole output into memory (an array, a table or bytes), strictly."""
        raise NotImplementedError

    def pieces(self, path: Path) -> list[Path]:
        """The files holding the output's data (one is deleted or truncated by the tests)."""
        raise NotImplementedError

    def unfinish(self, path: Path) -> str:
        """Make the output look as a write killed before its last unit left it; return how
        the reader names that unit."""
        raise NotImplementedError

    def verify(self, path: Path) -> list[Any]:
        """Verify (and repair) the output; return its reports."""
        raise NotImplementedError

    # ------------------------------------------------------------------ tests

    def test_written_output_reads_back(self, tmp_path: Path) -> None:
        path = tmp_path / "out"
        self.write(path, 0)
        first = self.read(path)
        self.write(path, 0)  # a rerun with nothing to do
        _assert_same(self.read(path), first)

    def test_a_killed_write_resumes_to_the_same_output(self, tmp_path: Path) -> None:
        path = tmp_path / "out"
        self.write(path, 0)
        whole = self.read(path)
        unit = self.unfinish(path)
        with pytest.raises(DamagedOutputError, match=_escaped(unit)):
            self.read(path)
        self.write(path, 0)
        _assert_same(self.read(path), whole)

    def test_a_changed_input_is_refused_with_its_differences_or_redone(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "out"
        self.write(path, 0)
        with pytest.raises(StaleOutputError, match=r"in the output, .* requested"):
            self.write(path, 1)
        self.write(path, 1, overwrite=True)
        other = tmp_path / "other"
        self.write(other, 1)
        _assert_same(self.read(path), self.read(other))

    @pytest.mark.parametrize("harm", ["delete", "truncate"])
    def test_a_damaged_piece_is_named_found_and_repaired(self, tmp_path: Path, harm: str) -> None:
        path = tmp_path / "out"
        self.write(path, 0)
        whole = self.read(path)
        piece = self.pieces(path)[0]
        if harm == "delete":
            piece.unlink()
        else:
            piece.write_bytes(piece.read_bytes()[: max(1, piece.stat().st_size // 3)])
        with pytest.raises((DamagedOutputError, OSError), match=_escaped(piece.name)):
            self.read(path)
        reports = self.verify(path)
        assert any(not r.ok for r in reports), reports
        assert any(piece.name in str(r) for r in reports), reports
        self.write(path, 0)
        assert all(r.ok for r in self.verify(path))
        _assert_same(self.read(path), whole)

    def test_two_writers_one_wins_the_other_is_told(self, tmp_path: Path) -> None:
        if not self.lazy:
            pytest.skip("this output has no lazy write")
        path = tmp_path / "out"
        self.write(path, 0)
        pending = self.write(path, 1, overwrite=True, compute=False)
        with pytest.raises(OutputLockedError, match="lazy write"):
            self.write(path, 0, overwrite=True)
        with pytest.raises(OutputLockedError, match="lazy write"):
            self.write(path, 0, overwrite=True, compute=False)
        dask.compute(pending)
        other = tmp_path / "other"
        self.write(other, 1)
        _assert_same(self.read(path), self.read(other))
        self.write(path, 0, overwrite=True)  # the lease went with the computed graph
        fresh = tmp_path / "fresh"
        self.write(fresh, 0)
        _assert_same(self.read(path), self.read(fresh))


def _assert_same(got: Any, expected: Any) -> None:
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(got, expected)
    elif isinstance(expected, bytes):
        assert got == expected
    else:
        np.testing.assert_array_equal(got, expected)


def _escaped(text: str) -> str:
    import re

    return re.escape(text)
