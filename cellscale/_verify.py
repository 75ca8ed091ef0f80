"""Verify any output cellscale wrote, or a whole run folder, and repair what is damaged.

:func:`verify` recognises what ``path`` holds (a plate store with its labels, a cell
table, a row array, a one-file output, or a run folder) and checks every complete unit of
it. With ``repair`` the damaged units are unmarked (a damaged one-file output loses its
record), so the next write makes exactly them again from the inputs their fingerprints
record; for a run folder, ``rerun`` then reruns the run from its manifest, so one call
finds and repairs a damaged label, embedding, table or model file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cellscale._stages import FileOutput, VerifyReport

__all__ = ["verify"]

#: A run's one-file outputs, per plate and for the screen.
_PLATE_FILES = ("qc.parquet", "illumination.npz", "scores.parquet")
_SCREEN_FILES = (
    "profiles/pca.npz",
    "profiles/wells.parquet",
    "profiles/field_quality.parquet",
    "report",
)


def verify(
    path: str | Path,
    *,
    repair: bool = True,
    rerun: bool = True,
    client: Any = None,
    progress: bool = True,
) -> list[VerifyReport]:
    """Check every complete unit of the output (or run folder) at ``path``.

    Parameters
    ----------
    path
        A plate store (its images at every pyramid level and its labels), a cell table
        (``cells.parquet``), a row array (embeddings or crops), a one-file output (a QC
        table, an illumination or PCA model, profiles, a report folder) or a run folder
        (``cellscale_run.json``: every output of the run).
    repair
        Unmark damaged units (forget a damaged one-file output), so that writing again
        redoes exactly them.
    rerun
        For a run folder with damaged outputs (and ``repair``): rerun the run from its
        manifest's config afterwards, which recomputes only what was unmarked.
    client, progress
        As for :func:`cellscale.verify_plate`.

    Returns
    -------
    list of VerifyReport
        One report per output checked (before any rerun).

    Raises
    ------
    ValueError
        If ``path`` holds nothing cellscale wrote.
    """
    path = Path(path)
    common = {"repair": repair, "client": client, "progress": progress}
    if (path / "cellscale_run.json").is_file():
        reports = _verify_run(path, **common)
        if repair and rerun and any(not r.ok for r in reports):
            _rerun(path, client, progress)
        return reports
    return _verify_output(path, **common)


def _verify_output(path: Path, *, repair: bool, client: Any, progress: bool) -> list[VerifyReport]:
    from cellscale.io import verify_plate
    from cellscale.io._rows import verify_rows
    from cellscale.io._store_setup import read_store_record
    from cellscale.io._verify_labels import verify_labels
    from cellscale.measurement import verify_cells

    common = {"repair": repair, "client": client, "progress": progress}
    if FileOutput(path).record_path.exists():
        return [FileOutput(path).verify(repair=repair, kind=_kind(path))]
    if (path / "_cellscale").is_dir():
        return [verify_cells(path, repair=repair)]
    if (path / ".cellscale").is_dir():
        return [verify_rows(path, **common)]
    if path.is_dir() and (path / "zarr.json").is_file() and read_store_record(path) is not None:
        return [verify_plate(path, **common), *verify_labels(path, **common)]
    raise ValueError(
        f"{path} holds no output cellscale wrote (a plate store, cell table, row array, "
        "one-file output or run folder)"
    )


def _verify_run(path: Path, *, repair: bool, client: Any, progress: bool) -> list[VerifyReport]:
    common = {"repair": repair, "client": client, "progress": progress}
    outputs: list[Path] = []
    for plate in sorted((path / "plates").iterdir()) if (path / "plates").is_dir() else []:
        stores = ("raw.zarr", "projected.zarr", "cells.parquet", "embeddings.zarr")
        outputs += [plate / name for name in (*stores, *_PLATE_FILES)]
    outputs += [path / name for name in _SCREEN_FILES]
    reports = []
    for output in outputs:
        if output.exists() or FileOutput(output).record_path.exists():
            reports += _verify_output(output, **common)
    return reports


def _rerun(path: Path, client: Any, progress: bool) -> None:
    from cellscale.pipeline import run

    config = json.loads((path / "cellscale_run.json").read_text())["provenance"]["config"]
    config["output"] = str(path)
    run(config, client=client, progress=progress)


def _kind(path: Path) -> str:
    return "report" if path.is_dir() else path.suffix.lstrip(".") + " file"
