"""What a run's stages share, and how each stage decides what to do from its outputs alone.

A stage never asks a second record whether it is done: it asks its outputs. A store stage
(plate, labels, cell table, embeddings) writes with ``overwrite=False``, which resumes the
units its store has not finished and refuses a store made from other inputs or settings;
such a refusal makes it write the store again from scratch. A one-file stage compares the
fingerprint it would write with its file's record (:class:`~cellscale._stages.FileOutput`)
and makes the file again unless it is current and intact. The manifest only keeps, for the
summary and the progress page, what each stage did.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellscale._stages import FileOutput, Fingerprint, StaleOutputError
from cellscale._stages._run import progress_label
from cellscale.pipeline._config import PlateConfig, RunConfig
from cellscale.pipeline._manifest import Manifest
from cellscale.pipeline._progress import ProgressPage
from cellscale.report import StageRecord
from cellscale.segmentation import SegmentationFlag

__all__ = ["RunState", "Step", "file_stage", "store_stage"]

#: How a stage's status reads when its outputs were made from other inputs or settings.
REWRITTEN = "rewritten: inputs or settings changed"

_FILE_STATUS = {
    "missing": "ran",
    "stale": REWRITTEN,
    "damaged": "rewritten: the output was damaged",
}


@dataclass
class RunState:
    """What the stages of one run share."""

    config: RunConfig
    out: Path
    manifest: Manifest
    client: Any
    progress: bool
    stages: list[StageRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    segmentation_flags: list[SegmentationFlag] = field(default_factory=list)
    plate_statuses: list[tuple[str, str, str]] = field(default_factory=list)
    page: ProgressPage | None = None

    def watch(self, plate: str, stage: str) -> contextlib.AbstractContextManager[None]:
        """Let the progress page follow one plate's store stage as its units finish."""
        return contextlib.nullcontext() if self.page is None else self.page.watch(plate, stage)

    def merged_stages(self) -> list[StageRecord]:
        """One record per stage name (plates summed), in the order stages first ran.

        The status shown is the first that says work was done, else the first.
        """
        merged: dict[str, StageRecord] = {}
        for r in self.stages:
            seen = merged.get(r.name)
            merged[r.name] = (
                r
                if seen is None
                else StageRecord(
                    r.name, seen.seconds + r.seconds, seen.units + r.units, _status(seen, r)
                )
            )
        return list(merged.values())

    def record(self, record: StageRecord, plate: str | None) -> None:
        """Add what a stage did (for one plate, or the screen) to the summary."""
        self.stages.append(record)
        if plate is not None:
            self.plate_statuses.append((record.name, plate, record.status))

    def plate_dir(self, plate: PlateConfig | str) -> Path:
        """The folder of a plate's outputs."""
        name = plate if isinstance(plate, str) else plate.name
        return self.out / "plates" / name

    @property
    def common(self) -> dict[str, Any]:
        """The keywords every writer takes from the run."""
        return {"client": self.client, "progress": self.progress}


@dataclass
class Step:
    """One stage of one plate (or of the screen) as it runs."""

    status: str
    units: int = 0


@contextlib.contextmanager
def step(state: RunState, stage: str, plate: str | None, units: int, status: str) -> Iterator[Step]:
    """Time one stage, record what it did in the manifest (on success) and the summary."""
    entry = stage if plate is None else f"{stage}/{plate}"
    state.manifest.start(entry)
    current = Step(status, units)
    start = time.perf_counter()
    yield current
    seconds = time.perf_counter() - start
    state.manifest.finish(entry, seconds=round(seconds, 3), units=current.units)
    state.record(StageRecord(stage, seconds, current.units, current.status), plate)


def store_stage(
    state: RunState,
    stage: str,
    plate: str,
    units: int | Callable[[], int],
    path: Path,
    write: Callable[[bool], Any],
    complete: Callable[[], bool],
    *,
    unit: str = "field",
) -> None:
    """Write a store stage: resume it, or write it again if it was made otherwise.

    Its progress bar is named ``"<stage> <plate>"`` and counts ``unit`` out of ``units``.

    Parameters
    ----------
    units
        How many units the stage has, or a function that tells once it was written.
    write
        Writes the store, taking ``overwrite``.
    complete
        Whether the store is complete (checked before writing, for the status only).
    unit
        What a unit is: ``"field"`` (fields present, every time point counted) or ``"cell"``.
    """
    status = "ran"
    if path.exists():
        status = "finished before, checked" if _safely(complete) else "resumed"
    total = None if callable(units) else units
    label = progress_label(f"{stage} {plate}", unit=unit, total=total)
    with label, step(state, stage, plate, 0, status) as current, state.watch(plate, stage):
        try:
            write(False)
        except StaleOutputError:
            current.status = REWRITTEN
            write(True)
        current.units = units() if callable(units) else units


def file_stage(
    state: RunState,
    stage: str,
    plate: str | None,
    units: int,
    output: FileOutput,
    fingerprint: Fingerprint,
    make: Callable[[Path], Any],
) -> bool:
    """Make a one-file output unless it is current; return whether it was made.

    A plate's stage names its progress bar ``"<stage> <plate>"``, counting its ``units``
    (fields present); a screen stage names it ``stage``.
    """
    found = output.state(fingerprint)
    if found == "current":
        done = "finished before, checked" if plate else "skipped: unchanged"
        state.record(StageRecord(stage, 0.0, 0 if plate is None else units, done), plate)
        return False
    label = (
        progress_label(stage)
        if plate is None
        else progress_label(f"{stage} {plate}", unit="field", total=units)
    )
    with label, step(state, stage, plate, units, _FILE_STATUS[found]):
        output.write(fingerprint, make, overwrite=True)
    return True


def _status(first: StageRecord, then: StageRecord) -> str:
    idle = ("finished before", "skipped")
    return then.status if first.status.startswith(idle) else first.status


def _safely(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except Exception:  # a store too damaged to tell: the write will say what is wrong
        return False
