"""Which files make a plate's Z: the planes, the instrument's projections, or one plane each.

MetaXpress keeps Z planes in ``ZStep_<n>`` folders and its projections beside them
(or in ``ZStep_0``), and a channel may have only planes, only a projection, or a
single plane. A plate of planes, or of projections, needs every channel to have them;
``project_z="max"`` instead makes every channel one plane: the maximum of its planes,
its projection where it has nothing else, or its single plane.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Literal

from cellscale.io._channel_names import natural_key
from cellscale.io._patterns import Discovery, FilePattern, ImageFile
from cellscale.plate import PlateError

__all__ = [
    "ZProjection",
    "check_project_z",
    "check_z_source",
    "describe_projection",
    "select_z_source",
]

ZProjection = Literal["max"]
"""How ingest makes one plane of each channel's images (``None``: keep the planes)."""


def check_project_z(project_z: object) -> None:
    """Refuse a ``project_z`` that is not ``None`` or ``"max"``."""
    if project_z not in (None, "max"):
        raise ValueError(f"project_z must be None or 'max', got {project_z!r}")


def select_z_source(
    files: list[ImageFile], pattern: FilePattern, project_z: ZProjection | None
) -> list[ImageFile]:
    """Keep the Z planes, or the projections, of a ZStep-folder layout.

    With ``project_z``, each channel keeps the pattern's choice (planes, or
    projections) where it has them and the other kind where it has only that.
    """
    if not pattern.zstep_folders:
        return files
    if project_z is not None:
        kinds: dict[str, set[bool]] = defaultdict(set)
        for f in files:
            kinds[f.c].add(f.projection)
        take = {c: pattern.projection if len(k) == 2 else next(iter(k)) for c, k in kinds.items()}
        return [f for f in files if f.projection == take[f.c]]
    if not pattern.projection:
        return [f for f in files if not f.projection]
    stacks: dict[tuple[int, str, int, str], list[ImageFile]] = defaultdict(list)
    for f in files:
        stacks[(f.t, f.well, f.field, f.c)].append(f)
    chosen: list[ImageFile] = []
    for stack in stacks.values():
        projections = [f for f in stack if f.projection]
        if projections:
            chosen.extend(_at_z0(f) for f in projections)
        elif len(stack) == 1:  # a single plane is its own projection
            chosen.append(_at_z0(stack[0]))
    return chosen


def _at_z0(f: ImageFile) -> ImageFile:
    return ImageFile(f.path, f.t, f.well, f.field, 0, f.c, True, f.plate)


def check_z_source(found: Discovery, files: list[ImageFile]) -> None:
    """All channels were asked for: each must exist in the chosen Z source."""
    if not found.pattern.zstep_folders:
        return
    kept = {f.c for f in files}
    dropped = sorted({f.c for f in found.files} - kept, key=natural_key)
    if not dropped:
        return
    one_plane = "or pass project_z='max' to make every channel one plane"
    if found.pattern.projection:
        raise PlateError(
            f"channel(s) {dropped} under {found.source} have Z planes but no projection "
            "image; choose channels=[...] without them, read the planes (pattern "
            f"'imagexpress'), {one_plane}"
        )
    raise PlateError(
        f"channel(s) {dropped} under {found.source} have only projection images (no "
        "ZStep planes); choose channels=[...] without them, read the projections "
        f"(pattern 'imagexpress-projection'), {one_plane}"
    )


def describe_projection(
    files: Sequence[ImageFile],
    stacks: Mapping[str, Sequence[int]],
    names: Mapping[str, str],
    methods: Mapping[str, str | None],
) -> dict[str, str]:
    """How each channel's one plane was made, by channel name.

    Parameters
    ----------
    files
        The files the plate is read from.
    stacks
        The planes (Z indices) each channel's images are made of, by channel id.
    names
        The plate's name of each channel id.
    methods
        How the instrument made each file channel's projections, where its files say.

    Returns
    -------
    dict
        ``"max of <n> planes"``, ``"single plane"`` or ``"instrument projection"``
        (with the instrument's method, e.g. ``"instrument projection (Best Focus)"``).
    """
    projected = {f.c for f in files if f.projection}
    described = {}
    for channel_id, name in names.items():
        planes = len(stacks[channel_id])
        file_id = channel_id.partition("#")[0]
        if file_id in projected:
            method = methods.get(file_id)
            described[name] = (
                f"instrument projection ({method})" if method else "instrument projection"
            )
        else:
            described[name] = "single plane" if planes == 1 else f"max of {planes} planes"
    return described
