"""A run's manifest: which screen an output folder holds, its provenance and its summary.

``<output>/cellscale_run.json`` records the run's identity (its plates and their sources),
the provenance of the outputs (the config, package versions, model hashes) and, for the
summary and the progress page, what each stage last did (its time and units, and whether
it finished). Whether a stage has work left is never read from here but from the stage's
own outputs (see :mod:`cellscale.pipeline._state`). It is rewritten atomically.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from cellscale._stages import StaleOutputError, atomic_path

__all__ = ["MANIFEST", "Manifest", "RunMismatchError", "package_versions"]

MANIFEST = "cellscale_run.json"

#: What a run writes into its output folder; ``overwrite`` removes these and nothing else.
RUN_ENTRIES = ("plates", "profiles", "report", "progress.html", MANIFEST)


class RunMismatchError(StaleOutputError):
    """The output folder holds another run (other plates or sources) or something else."""


def package_versions() -> dict[str, str]:
    """Versions of the packages whose code shapes a run's outputs (those installed)."""
    names = ("cellscale", "numpy", "dask", "distributed", "zarr", "scikit-image", "scipy")
    optional = ("torch", "torchvision", "cellpose", "cp-measure")
    versions = {}
    for name in (*names, *optional):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class Manifest:
    """The manifest of one output folder (see the module docstring)."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(
        cls, out: Path, identity: dict[str, Any], provenance: dict[str, Any], overwrite: bool
    ) -> Manifest:
        """Open (or start) the manifest of ``out`` for a run of ``identity``.

        Another run that finished nothing (no stage done, no plate output written: e.g. it
        stopped at a misspelt folder or pattern) does not hold the folder: its remains are
        removed and this run takes the folder.

        Raises
        ------
        RunMismatchError
            If ``out`` holds another run that finished something, or files that no run
            wrote, and not ``overwrite``. The message names each identity field that differs.
        """
        path = out / MANIFEST
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        stored = json.loads(path.read_text()) if path.is_file() else None
        if overwrite or (
            stored is not None and stored.get("identity") != digest and not _made_any(out, stored)
        ):
            _remove_run(out)
            stored = None
        elif stored is not None and stored.get("identity") != digest:
            theirs = {key: stored.get(key, _ABSENT) for key in identity}
            changes = "; ".join(_differences(theirs, identity)) or "how its identity was recorded"
            raise RunMismatchError(
                f"{out} holds another run, which differs from this one in {changes}. Choose "
                "another output folder, or pass overwrite=True (--overwrite) to replace that run"
            )
        elif stored is None and out.is_dir() and any(_foreign(out)):
            raise RunMismatchError(
                f"{out} is not empty and holds no cellscale run ({MANIFEST} is missing). "
                "Choose another output folder, or pass overwrite=True (--overwrite) to write "
                "the run beside what is there"
            )
        out.mkdir(parents=True, exist_ok=True)
        data = stored or {"cellscale_run": 1, "identity": digest, "stages": {}}
        data.update(identity)
        data["provenance"] = provenance
        manifest = cls(path, data)
        manifest.save()
        return manifest

    def start(self, stage: str) -> None:
        """Record that ``stage`` (``"segment/P1"``) starts (not yet finished)."""
        self.data["stages"][stage] = {"done": False}
        self.save()

    def finish(self, stage: str, **record: Any) -> None:
        """Record that ``stage`` finished, with what it did."""
        self.data["stages"][stage].update(done=True, **record)
        self.save()

    def save(self) -> None:
        """Write the manifest atomically."""
        with atomic_path(self.path) as partial:
            partial.write_text(json.dumps(self.data, indent=2, sort_keys=True, default=str))


def _made_any(out: Path, stored: dict[str, Any]) -> bool:
    """Whether the run recorded in ``stored`` finished a stage or wrote any plate output."""
    stages = stored.get("stages", {})
    if any(record.get("done") for record in stages.values()):
        return True
    plates = out / "plates"
    return plates.is_dir() and any(
        not p.name.endswith(".lock") for p in plates.rglob("*") if p.is_file()
    )


def _differences(stored: Any, ours: Any, where: str = "") -> list[str]:
    """Each field of the identity that differs, as ``where: 'theirs' → 'ours'``."""
    if isinstance(stored, dict) and isinstance(ours, dict):
        keys = [*stored, *(k for k in ours if k not in stored)]
        return [
            line
            for key in keys
            for line in _differences(
                stored.get(key, _ABSENT), ours.get(key, _ABSENT), f"{where}.{key}" if where else key
            )
        ]
    if isinstance(stored, list) and isinstance(ours, list):
        return [
            line
            for i in range(max(len(stored), len(ours)))
            for line in _differences(
                stored[i] if i < len(stored) else _ABSENT,
                ours[i] if i < len(ours) else _ABSENT,
                f"{where}[{i}]",
            )
        ]
    if stored == ours:
        return []
    return [f"{where}: {_show(stored)} → {_show(ours)}"]


class _Absent:
    def __repr__(self) -> str:
        return "(none)"


_ABSENT = _Absent()


def _show(value: Any) -> str:
    if isinstance(value, dict) and "name" in value:
        return f"plate {value['name']!r}"
    return repr(value)


def _foreign(out: Path) -> list[Path]:
    """What ``out`` holds besides the run's own lock file."""
    return [p for p in out.iterdir() if p.name != f".{MANIFEST}.lock"]


def _remove_run(out: Path) -> None:
    for name in RUN_ENTRIES:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
