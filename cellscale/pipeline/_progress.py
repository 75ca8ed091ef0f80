"""A live plate view of a run's progress: ``<output>/progress.html``, rewritten as it runs.

Every few seconds a thread draws, per plate and stage, a plate map whose wells show how
many of their fields are done. The page reloads itself, so a browser opened on it from
disk follows the run; the run also serves it on localhost (like the dask dashboard:
forward the port with ssh from a login node).

The counts come from the completion ledgers of each plate's stores (the raw plate, its
projection, the labels and the cell table), read once when the page starts and once as
each stage begins and ends; in between, the stage tells the page of every unit it
finishes (:meth:`ProgressPage.watch`). So the page costs a few reads per store, however
often it is drawn, and never reads pixels.
"""

from __future__ import annotations

import contextlib
import html
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import zarr

from cellscale._stages import Ledger
from cellscale._stages._run import listen_to_units
from cellscale.io._labels import LABELS_KEY
from cellscale.io._store_setup import LEDGER_NAME, StoreRecord, read_store_record
from cellscale.pipeline._progress_server import page_server
from cellscale.plate import split_well

__all__ = ["PROGRESS_PAGE", "REPORT_PAGE", "ProgressPage", "stage_progress"]

PROGRESS_PAGE = "progress.html"

#: The run's report, relative to the output folder (and so to the page).
REPORT_PAGE = "report/index.html"

#: The per-field stages of a plate and where their ledger lives: (store, group in it, name).
_LEDGERS = {
    "ingest": ("raw.zarr", "", LEDGER_NAME),
    "project": ("projected.zarr", "", LEDGER_NAME),
    "segment": ("projected.zarr", LABELS_KEY, "ledger"),
    "measure": ("cells.parquet", "_cellscale", "ledger"),
}


def stage_progress(folder: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """A plate folder's wells and, per stage, fields done per well ``(well,)``.

    Stages not started yet are absent. The wells are in the raw store's order.
    """
    record = _record(folder)
    return ([], {}) if record is None else (list(record.layout.wells), _done(folder))


def _record(folder: Path) -> StoreRecord | None:
    raw = folder / "raw.zarr"
    return read_store_record(raw) if raw.exists() else None


def _done(folder: Path) -> dict[str, np.ndarray]:
    """Per stage begun, fields done per well."""
    done: dict[str, np.ndarray] = {}
    for stage in _LEDGERS:
        counts = _stage_done(folder, stage)
        if counts is not None:
            done[stage] = counts
    return done


def _stage_done(folder: Path, stage: str) -> np.ndarray | None:
    """Fields done per well of one stage, or ``None`` before it began."""
    store, group, name = _LEDGERS[stage]
    ledger = _ledger(folder / store, group, name)
    return None if ledger is None else ledger.done().sum(axis=(0, 2))  # (t, well, field)


def _ledger(store: Path, group: str, name: str) -> Ledger | None:
    if not store.exists():
        return None
    try:
        node: object = zarr.open_group(str(store / group), mode="r")
        if group == LABELS_KEY:  # one ledger per labels name: the first written
            assert isinstance(node, zarr.Group)
            names = sorted(node.group_keys())
            node = node[names[0]] if names else None
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
        return None
    return Ledger.open(node, name) if isinstance(node, zarr.Group) else None


@dataclass
class _PlateCounts:
    """What the page knows of one plate: its wells and, per stage begun, fields done."""

    wells: list[str]
    per_well: int
    done: dict[str, np.ndarray] = field(default_factory=dict)


class _StageListener:
    """Counts a stage's finished units into the page (see :func:`listen_to_units`)."""

    def __init__(self, page: ProgressPage, plate: str, stage: str) -> None:
        self.page, self.plate, self.stage = page, plate, stage

    def began(self) -> None:
        self.page._reload(self.plate, self.stage)

    def done(self, name: str) -> None:
        """Count a field's unit (``"B03/f2/t0"``, or ``"cells B03/f2/t0"`` in a joint pass)."""
        unit = name.rsplit(" ", 1)[-1]
        if "/" in unit:
            self.page._count(self.plate, self.stage, unit.split("/", 1)[0])


class ProgressPage:
    """Rewrite ``<output>/progress.html`` every ``interval`` seconds while a run goes on.

    Use it as a context manager around the run, and :meth:`watch` around each stage;
    leaving the block reads every ledger once more, writes the page a last time and stops
    the server. Leaving it without an error (the run is done) links the page to the
    run's report, ``report/index.html``. Reading a ledger while a writer creates it can
    fail; such a reading is tried again at the next drawing. With ``serve``, the page is
    also served on ``127.0.0.1`` at :attr:`url` (port 0: any free port), and nothing else
    of the output folder is (:func:`~cellscale.pipeline._progress_server.page_server`).
    """

    def __init__(
        self, out: Path, plates: Sequence[str], interval: float = 2.0, serve: bool = False
    ) -> None:
        self.out = out
        self.plates = list(plates)
        self.interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._plates: dict[str, _PlateCounts] = {}
        self._thread = threading.Thread(target=self._loop, name="cellscale-progress", daemon=True)
        self._server: ThreadingHTTPServer | None = None
        if serve:
            self._server = page_server(out / PROGRESS_PAGE)

    @property
    def url(self) -> str | None:
        """Where the page is served, or ``None``."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{PROGRESS_PAGE}"

    def __enter__(self) -> ProgressPage:
        self._try_write()
        self._thread.start()
        if self._server is not None:
            threading.Thread(
                target=self._server.serve_forever, name="cellscale-progress-server", daemon=True
            ).start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            self._plates.clear()  # the last page is drawn from the ledgers themselves
        self.write(final=True, done=kind is None)

    @contextlib.contextmanager
    def watch(self, plate: str, stage: str) -> Iterator[None]:
        """Follow one plate's stage from its units as they finish, not from its ledger.

        Its ledger is read as the units begin (what is left after the writer's checks)
        and once more when the block ends.
        """
        if stage not in _LEDGERS:
            yield
            return
        try:
            with listen_to_units(_StageListener(self, plate, stage)):
                yield
        finally:
            self._reload(plate, stage)

    def _reload(self, plate: str, stage: str) -> None:
        """Read one stage's ledger of ``plate`` again (and the plate, if still unknown)."""
        with contextlib.suppress(Exception):  # a ledger being created: read at the next drawing
            counts = self._counts(plate)
            if counts is None:
                return
            done = _stage_done(self.out / "plates" / plate, stage)
            with self._lock:
                if done is None:
                    counts.done.pop(stage, None)
                else:
                    counts.done[stage] = done

    def _count(self, plate: str, stage: str, well: str) -> None:
        with self._lock:
            counts = self._plates.get(plate)
            if counts is None or stage not in counts.done or well not in counts.wells:
                return
            counts.done[stage][counts.wells.index(well)] += 1

    def _counts(self, plate: str) -> _PlateCounts | None:
        """What the page knows of ``plate``; its ledgers are read the first time."""
        with self._lock:
            known = self._plates.get(plate)
        if known is not None:
            return known
        folder = self.out / "plates" / plate
        record = _record(folder)
        if record is None:
            return None
        layout = record.layout
        counts = _PlateCounts(list(layout.wells), len(layout.t) * len(layout.fields))
        counts.done = _done(folder)
        with self._lock:
            return self._plates.setdefault(plate, counts)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._try_write()

    def _try_write(self) -> None:
        try:
            self.write(final=False)
        except Exception:  # a ledger being created right now: try again next time
            return

    def write(self, *, final: bool, done: bool = False) -> None:
        """Write the page from the ledgers as they are now.

        ``done``: the run finished; the page names it so and links its report.
        """
        sections = [self._plate(name) for name in self.plates]
        refresh = "" if final else f'<meta http-equiv="refresh" content="{self.interval:g}">'
        state = "finished" if done else ("stopped" if final else "running")
        if done and (self.out / REPORT_PAGE).is_file():
            sections.insert(0, f'<p class="report"><a href="{REPORT_PAGE}">The report</a></p>')
        page = _PAGE.format(refresh=refresh, state=state, body="\n".join(sections))
        partial = self.out / f".{PROGRESS_PAGE}.partial"
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, self.out / PROGRESS_PAGE)

    def _plate(self, name: str) -> str:
        title = f"<h2>{html.escape(name)}</h2>"
        counts = self._counts(name)
        if counts is None:
            return f"{title}<p>not started</p>"
        with self._lock:
            done = {stage: per_well.copy() for stage, per_well in counts.done.items()}
        maps = [
            _plate_map(stage, counts.wells, per_well, counts.per_well)
            for stage, per_well in done.items()
        ]
        return title + '<div class="maps">' + "".join(maps) + "</div>"


def _plate_map(stage: str, wells: list[str], counts: np.ndarray, per_well: int) -> str:
    """One stage's plate map: a cell per well, shaded by its fields done."""
    positions = [split_well(w) for w in wells]
    rows = sorted({r for r, _ in positions})
    cols = sorted({c for _, c in positions})
    value = {p: int(n) for p, n in zip(positions, counts, strict=True)}
    total = int(counts.sum())
    head = "".join(f"<th>{c}</th>" for c in cols)
    lines = [f"<tr><th></th>{head}</tr>"]
    for r in rows:
        cells = []
        for c in cols:
            if (r, c) not in value:
                cells.append("<td></td>")
                continue
            n = value[(r, c)]
            shade = "done" if n == per_well else ("part" if n else "todo")
            cells.append(f'<td class="{shade}" title="{r}{c:02d}: {n}/{per_well}">{n}</td>')
        lines.append(f"<tr><th>{r}</th>{''.join(cells)}</tr>")
    caption = f"{stage}: {total} / {per_well * len(wells)} fields"
    return f"<table><caption>{caption}</caption>{''.join(lines)}</table>"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">{refresh}
<title>cellscale run progress</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; }}
.maps {{ display: flex; flex-wrap: wrap; gap: 1.5em; }}
table {{ border-collapse: collapse; font-size: 0.8em; }}
caption {{ text-align: left; font-weight: bold; padding-bottom: 0.3em; }}
td, th {{ width: 2.2em; height: 1.6em; text-align: center; border: 1px solid #ddd; }}
td.done {{ background: #3b8f5a; color: white; }}
td.part {{ background: #e8c547; }}
td.todo {{ background: #f3f3f3; color: #999; }}
</style></head>
<body><h1>cellscale run: {state}</h1>
<p>Fields done per well, per plate and stage (green: all of the well's fields).</p>
{body}
</body></html>
"""
