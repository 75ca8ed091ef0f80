"""Write the report folder whole: ``index.html`` from the one template, and its figures.

The folder is built under a temporary name beside the target and swapped in at the
end, so a report folder is always complete: an interrupted or failed write leaves the
previous report as it was.
"""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from pathlib import Path

import jinja2

from cellscale.report._analysis import write_explore_page
from cellscale.report._inputs import ReportInputs
from cellscale.report._page import FIGURES
from cellscale.report._sections import build_page

__all__ = ["write_report"]


def write_report(folder: str | os.PathLike[str], inputs: ReportInputs) -> Path:
    """Write ``folder/index.html`` and its PNGs (``folder/figures/*.png``).

    The page has inline CSS, no scripts and nothing fetched from the network (the
    interactive page of ``inputs.analysis``, in ``explore/``, has BokehJS inline), and every
    string of ``inputs`` (titles, plate and treatment names, problems, notes) is escaped.
    The report is built in a temporary folder beside ``folder`` and then replaces it
    whole, so an interrupted run leaves the previous report, never half of a new one.

    Parameters
    ----------
    folder
        The report folder; an existing one (an earlier report) is replaced.
    inputs
        What the report shows.

    Returns
    -------
    pathlib.Path
        The path of ``index.html``.

    Raises
    ------
    NotADirectoryError
        If ``folder`` exists and is not a folder.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np, pandas as pd
    >>> from cellscale.report import ReportInputs, write_report
    >>> inputs = ReportInputs(title="<empty> screen", cells=pd.DataFrame(),
    ...     scores=np.zeros((0, 0)), explained_variance_ratio=np.zeros(0), field_quality=None)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     index = write_report(Path(tmp) / "report", inputs)
    ...     "<h1>&lt;empty&gt; screen</h1>" in index.read_text(encoding="utf-8")
    True
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} exists and is not a folder")
    partial = _sibling(folder, "partial")
    (partial / FIGURES).mkdir(parents=True)
    try:
        page = build_page(inputs, partial / FIGURES)
        write_explore_page(partial, inputs.analysis)
        html = _template().render(page=page)
        (partial / "index.html").write_text(html, encoding="utf-8")
        _swap_in(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder / "index.html"


@functools.cache
def _template() -> jinja2.Template:
    """The page template, autoescaped: no string from the inputs is read as markup."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("cellscale.report", "templates"),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template("index.html.j2")


def _sibling(folder: Path, kind: str) -> Path:
    return folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:12]}.{kind}")


def _swap_in(new: Path, folder: Path) -> None:
    """Move ``new`` to ``folder``, replacing an earlier report (restored if the move fails)."""
    if not folder.exists():
        new.rename(folder)
        return
    old = _sibling(folder, "old")
    folder.rename(old)
    try:
        new.rename(folder)
    except BaseException:
        old.rename(folder)
        raise
    shutil.rmtree(old, ignore_errors=True)
