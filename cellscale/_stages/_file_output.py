"""One-file outputs: a model, a table or a report folder, with its fingerprint and checksum.

Beside the output sits ``.<name>.cellscale.json``: the fingerprint of what made it and
the SHA-256 of its bytes (of every file, for a folder). The output is written whole
(:func:`~cellscale._stages.atomic_path`) under the output's lock, and its record only
after it, so a killed write never looks finished; :meth:`FileOutput.open` refuses an
output that is missing, has no record, or whose bytes changed since it was written, naming
the file, and :meth:`FileOutput.verify` finds and removes such an output so that it is
made again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from cellscale._files import file_sha256
from cellscale._stages._fingerprint import Fingerprint, check_fingerprint
from cellscale._stages._lock import output_lock
from cellscale._stages._output import DamagedOutputError, VerifyReport, atomic_path

__all__ = ["FileOutput", "FileState"]

FileState = Literal["current", "missing", "stale", "damaged"]


class FileOutput:
    """A one-file (or one-folder) output at ``path``.

    Examples
    --------
    >>> import tempfile
    >>> out = FileOutput(Path(tempfile.mkdtemp()) / "model.json")
    >>> made = Fingerprint("model", parameters={"k": 3}, version="1")
    >>> out.state(made)
    'missing'
    >>> out.write(made, lambda partial: partial.write_text("{}"))
    >>> out.state(made), out.open().name
    ('current', 'model.json')
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def record_path(self) -> Path:
        """The record beside the output: its fingerprint and checksum."""
        return self.path.with_name(f".{self.path.name}.cellscale.json")

    def fingerprint(self) -> Fingerprint | None:
        """The fingerprint the output was written with, or ``None`` if it has no record."""
        record = self._record()
        return Fingerprint.from_json(record["fingerprint"]) if record else None

    def state(self, requested: Fingerprint) -> FileState:
        """Whether the output is ``current`` (made as ``requested`` and intact), ``missing``,
        ``stale`` (made otherwise) or ``damaged`` (its bytes changed, or it has no record)."""
        record = self._record()
        if not self.path.exists():
            return "missing"
        if record is None or _checksum(self.path) != record.get("sha256"):
            return "damaged"
        stored = Fingerprint.from_json(record["fingerprint"])
        return "current" if not stored.differences(requested) else "stale"

    def write(
        self, fingerprint: Fingerprint, write: Callable[[Path], Any], *, overwrite: bool = False
    ) -> None:
        """Make the output with ``write(partial_path)``, then record ``fingerprint``.

        An output that is missing, damaged or has no record is made; one made as
        ``fingerprint`` is made again; one made otherwise only with ``overwrite``.

        Raises
        ------
        StaleOutputError
            If the output was made otherwise (listing every difference) and not ``overwrite``.
        OutputLockedError
            If another process is writing the same output.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with output_lock(self.path):
            if not overwrite and self.state(fingerprint) == "stale":
                check_fingerprint(self.fingerprint(), fingerprint, self.path)
            self.record_path.unlink(missing_ok=True)
            with atomic_path(self.path) as partial:
                write(partial)
            record = {"fingerprint": fingerprint.to_json(), "sha256": _checksum(self.path)}
            with atomic_path(self.record_path) as partial:
                partial.write_text(json.dumps(record, indent=1, sort_keys=True))

    def open(self) -> Path:
        """The output's path once it is checked whole.

        Raises
        ------
        DamagedOutputError
            If it is missing, has no record, or its bytes changed since it was written.
        """
        problem = self.problem()
        if problem:
            raise DamagedOutputError(f"{self.path}: {problem}")
        return self.path

    def digest(self) -> str:
        """The checksum of the output's bytes, as recorded (what later outputs refer to it by).

        Raises
        ------
        DamagedOutputError
            As for :meth:`open`.
        """
        self.open()
        record = self._record()
        assert record is not None
        return str(record["sha256"])

    def problem(self, *, fresh: bool = False) -> str | None:
        """What is wrong with the output, or ``None`` when it is whole.

        ``fresh`` reads every byte again rather than trusting this process's checksum of
        a file of the same size and modification time.
        """
        if not self.path.exists():
            return "is missing; run the stage that makes it again"
        record = self._record()
        if record is None:
            return (
                f"has no record ({self.record_path.name}): its write never finished, so it "
                "cannot be trusted; run the stage that makes it again"
            )
        if _checksum(self.path, cached=not fresh) != record.get("sha256"):
            return (
                "was changed or damaged since it was written (its checksum differs); run "
                "`cellscale verify` on it, then the stage that makes it again"
            )
        return None

    def verify(self, *, repair: bool = True, kind: str = "file") -> VerifyReport:
        """Check the output; with ``repair``, remove a damaged one so that it is made again."""
        report = VerifyReport(self.path, checked=1, kind=kind)
        if not self.path.exists() and self._record() is None:
            report.checked = 0
            return report
        problem = self.problem(fresh=True)
        if problem:
            report.damaged[self.path.name] = problem
        if repair and problem:
            with output_lock(self.path):
                self.record_path.unlink(missing_ok=True)
            report.repaired = True
        return report

    def _record(self) -> dict[str, Any] | None:
        try:
            record = json.loads(self.record_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return record if isinstance(record, dict) and "fingerprint" in record else None


def _checksum(path: Path, *, cached: bool = True) -> str:
    """SHA-256 of a file's bytes, or of every file of a folder with its relative path.

    Files are hashed by :func:`~cellscale._files.file_sha256`, once per process for a
    given size and modification time unless ``cached`` is false.
    """
    if path.is_file():
        return file_sha256(path, cached=cached)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(os.fsencode(file.relative_to(path).as_posix()) + b"\0")
        digest.update(file_sha256(file, cached=cached).encode())
    return digest.hexdigest()
