"""Task names that say the stage and the unit, grouped per stage on the dashboard."""

from __future__ import annotations

from dask.base import tokenize
from distributed.utils import key_split

from cellscale.plate import normalize_well

__all__ = ["task_name"]


def task_name(
    stage: str,
    *,
    well: str | None = None,
    field: int | None = None,
    t: int | None = None,
    token: object = None,
) -> str:
    """Name a task (or graph layer) after its stage and plate unit, e.g. ``project-B03-f2``.

    The dashboard groups tasks into progress bars by
    :func:`distributed.utils.key_split`, which keeps the leading all-letter words of a key
    and stops at the first word with a digit. So the stage name must be letters only
    (words joined by ``-``, like ``extract-crops``) and the unit follows it:
    ``key_split("project-B03-f2-…") == "project"``, one bar per stage, while the full key
    names the well and field in the task stream and in error messages.

    Parameters
    ----------
    stage
        Stage name: words of letters joined by ``-``.
    well, field, t
        The unit the task works on; omitted parts are left out. ``well`` is normalised
        (``"b3"`` -> ``"B03"``).
    token
        Anything whose dask token makes the key unique to its inputs (e.g. the input
        array); a graph must never reuse a key for different work.

    Returns
    -------
    str
        ``<stage>[-t<t>][-<well>][-f<field>][-<token>]``.

    Examples
    --------
    >>> task_name("project", well="B03", field=2)
    'project-B03-f2'
    >>> task_name("extract-crops", well="c7", t=0)
    'extract-crops-t0-C07'
    >>> key_split(task_name("project", well="B03", field=2, token="x"))
    'project'
    """
    words = stage.split("-")
    if not all(w.isascii() and w.isalpha() for w in words):
        raise ValueError(
            f"stage name {stage!r} must be letters joined by '-': the dashboard groups "
            f"tasks by {key_split(stage)!r}, cutting it at the first word with a digit"
        )
    parts = [stage]
    if t is not None:
        parts.append(f"t{t}")
    if well is not None:
        parts.append(normalize_well(well))
    if field is not None:
        parts.append(f"f{field}")
    if token is not None:
        parts.append(tokenize(token))
    return "-".join(parts)
