"""One read per pass, pinned on a whole run: which stage opens which image and label chunk.

A Python audit hook sees every file this process opens; the run uses a cluster of threads
in this process, so the workers' reads are seen too. Each open is put down to the stage
the run had started last (``Manifest.start``): the embedding is part of the cell pass.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import cellscale
from cellscale.pipeline import run
from cellscale.pipeline._manifest import Manifest
from tests.test_pipeline import screen_config

_WATCHED: list[str] = []
_STAGE: list[str] = ["-"]
_OPENS: Counter[tuple[str, str]] = Counter()  # (path, stage)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not _WATCHED or not isinstance(args[0], str | bytes):
        return
    path = args[0].decode() if isinstance(args[0], bytes) else args[0]
    mode, flags = args[1], args[2] or 0
    reading = (mode is None and not flags & 0o3) or (mode is not None and "r" in mode)
    if reading and path.startswith(_WATCHED[0]):
        _OPENS[(path, _STAGE[0])] += 1


sys.addaudithook(_audit)


def _kind(path: str) -> str | None:
    """``raw``, ``projected`` (level-0 image chunks), ``labels`` (level-0 label chunks)."""
    parts = Path(path).parts
    store = next((p for p in parts if p in ("raw.zarr", "projected.zarr")), None)
    if store is None or "c" not in parts:
        return None
    at = parts.index(store)
    inside = parts[at + 1 :]
    if len(inside) > 6 and inside[3] == "labels" and inside[5] == "0" and inside[6] == "c":
        return "labels"
    if len(inside) > 4 and inside[3] == "0" and inside[4] == "c":
        return "raw" if store == "raw.zarr" else "projected"
    return None


def _channel(path: str) -> int:
    """The channel of a level-0 image chunk: ``…/0/c/<t>/<c>/<z>/<y>/<x>``."""
    parts = Path(path).parts
    return int(parts[parts.index("c", parts.index("projected.zarr")) + 2])


@pytest.fixture(scope="module")
def reads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("reads") / "run"
    config = screen_config(
        out,
        qc={"enabled": True},
        illumination={"method": "mean"},
        embed={"enabled": True},
        report={"overlays_per_condition": 1},
    )
    plate = config["plates"][0]
    plate["synthetic"].update(fields=2, channels=["nuclei", "cytoplasm", "mito"])
    config["plates"] = [plate]
    start, finish = Manifest.start, Manifest.finish

    def started(self: Manifest, stage: str) -> None:
        _STAGE[0] = stage.split("/")[0].replace("embed", "measure")  # one cell pass
        start(self, stage)

    def finished(self: Manifest, stage: str, **record: Any) -> None:
        finish(self, stage, **record)
        _STAGE[0] = "-"

    mp = pytest.MonkeyPatch()
    mp.setattr(Manifest, "start", started)
    mp.setattr(Manifest, "finish", finished)
    _OPENS.clear()
    _WATCHED.append(str(out))
    try:
        with cellscale.start_cluster(
            "local", n_workers=1, gpu_workers=1, processes=False, threads_per_worker=2, quiet=True
        ) as client:
            run(config, client=client, progress=False)
    finally:
        _WATCHED.clear()
        mp.undo()
    files: dict[str, list[str]] = {"raw": [], "projected": [], "labels": []}
    for path in (out / "plates" / "P1").rglob("*"):
        kind = _kind(str(path))
        if kind is not None and path.is_file():
            files[kind].append(str(path))
    return {"files": files, "opens": Counter(_OPENS)}


def _opened(reads: dict[str, Any], path: str, stage: str | None = None) -> int:
    opens: Counter[tuple[str, str]] = reads["opens"]
    return sum(n for (p, s), n in opens.items() if p == path and (stage is None or s == stage))


@pytest.mark.slow
def test_each_raw_chunk_is_read_once_by_the_projection(reads: dict[str, Any]) -> None:
    raw = reads["files"]["raw"]
    assert len(raw) == 8 * 3  # fields x channels, each chunk a whole Z stack
    assert all(_opened(reads, p) == 1 == _opened(reads, p, "project") for p in raw)


@pytest.mark.slow
def test_qc_illumination_and_the_screen_stages_read_no_projected_image(
    reads: dict[str, Any],
) -> None:
    projected = reads["files"]["projected"]
    assert len(projected) == 8 * 3
    for stage in ("project", "qc", "illumination", "pca", "profiles", "-"):
        assert sum(_opened(reads, p, stage) for p in projected) == 0, stage


@pytest.mark.slow
def test_segmentation_reads_its_two_channels_once_and_the_cell_pass_every_chunk_once(
    reads: dict[str, Any],
) -> None:
    for path in reads["files"]["projected"]:
        wanted = 0 if _channel(path) == 2 else 1  # mito is not segmented
        assert _opened(reads, path, "segment") == wanted, path
        assert _opened(reads, path, "measure") == 1, path


@pytest.mark.slow
def test_each_label_chunk_is_read_once_by_the_cell_pass(reads: dict[str, Any]) -> None:
    labels = reads["files"]["labels"]
    assert len(labels) == 8 * 2  # cells and nuclei
    assert all(_opened(reads, p, "measure") == 1 for p in labels)
    assert all(_opened(reads, p) - _opened(reads, p, "report") == 1 for p in labels)


@pytest.mark.slow
def test_the_report_reads_only_the_fields_it_draws(reads: dict[str, Any]) -> None:
    drawn = {
        Path(p).parts[-10:-7]
        for p in reads["files"]["projected"]
        if _opened(reads, p, "report") > 0
    }
    assert 0 < len(drawn) < 8  # the fields of its overlays and crop galleries, not all
    for path in reads["files"]["projected"]:
        assert _opened(reads, path, "report") <= 2, path  # an overlay and a crop gallery
