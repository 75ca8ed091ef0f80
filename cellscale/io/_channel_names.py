"""Channel names of an ingested plate: from an ``.HTD`` file, else from the files' headers.

A channel is named, in order of preference, by the HTD's wavelength name, by the
instrument's name in the file header (MetaXpress's illumination setting, e.g.
``"DAPI"``), or by its id (``"w1"``). Channels held inside one file (ImageJ
hyperstacks) are named by ImageJ's page labels where the file has them, else
``c1``, ``c2`` … Names from headers that several channels share are not used: such
channels keep their ids, so every channel can still be told apart and chosen.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cellscale.io._htd import HtdInfo
from cellscale.io._instrument_meta import FileMeta
from cellscale.io._tiff import TiffLayout

__all__ = ["channel_names", "instrument_names", "natural_key"]


def natural_key(text: str) -> list[Any]:
    """A sort key that orders numbers inside names by value (``w2`` before ``w10``)."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def instrument_names(
    ids: Sequence[str],
    references: Mapping[str, str],
    layouts: Mapping[str, TiffLayout],
    meta: Callable[[str], FileMeta],
) -> dict[str, str]:
    """The names the files' headers give channels, by channel id, where they give one.

    Parameters
    ----------
    ids
        Channel ids: file channels (``"w1"``) and channels inside files (``"w1#c2"``).
    references
        A file of each file channel, whose header is read.
    layouts
        The page layout of each file channel (to find an in-file channel's page).
    meta
        Reads a file's header metadata.
    """
    names = {}
    for channel_id in ids:
        file_id, _, in_file = channel_id.partition("#")
        found = meta(references[file_id])
        if not in_file:
            name = found.illumination
        else:
            page = layouts[file_id].plane_key({"C": int(in_file[1:]) - 1})
            name = found.labels[page] if page < len(found.labels) else None
        if name:
            names[channel_id] = name
    return names


def channel_names(
    ids: Sequence[str], htd: HtdInfo | None, instrument: Mapping[str, str]
) -> dict[str, str]:
    """Each channel's default name, by id (see the module docs)."""
    named = {i: _name(i, htd, instrument) for i in ids}
    counts = Counter(named.values())
    return {i: named[i] if counts[named[i]] == 1 else _name(i, htd, {}) for i in ids}


def _name(channel_id: str, htd: HtdInfo | None, instrument: Mapping[str, str]) -> str:
    file_id, _, in_file = channel_id.partition("#")
    planned = htd.wave_names.get(file_id) if htd else None
    name = planned or instrument.get(file_id) or file_id
    if not in_file:
        return name
    label = instrument.get(channel_id, in_file)
    return label if file_id == "0" else f"{name}-{label}"
