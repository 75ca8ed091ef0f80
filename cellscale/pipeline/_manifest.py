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

        Raises
        ------
        RunMismatchError
            If ``out`` holds another run, or files that no run wrote, and not ``overwrite``.
        """
        path = out / MANIFEST
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        stored = json.loads(path.read_text()) if path.is_file() else None
        if overwrite:
            _remove_run(out)
            stored = None
        elif stored is not None and stored.get("identity") != digest:
            ours = [p["name"] for p in identity["plates"]]
            theirs = [p["name"] for p in stored.get("plates", [])]
            raise RunMismatchError(
                f"{out} holds another run (plates {theirs}, or the same names from other "
                f"sources; this run has plates {ours}). Choose another output folder, or pass "
                "overwrite=True (--overwrite) to replace that run"
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
