"""The page layout of each channel's files, voted on among a few probed files.

Up to three files of each channel are probed (first, middle, last) and the layout most
of them share is the channel's, so one odd file is named as such rather than every
good file being named against it.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from cellscale.io._patterns import ImageFile
from cellscale.io._tiff import TiffLayout, probe_tiff
from cellscale.plate import PlateError

__all__ = ["probe_channels"]

_PROBE_TRIES = 10  # files tried in turn where a probed file cannot be read


def probe_channels(files: list[ImageFile]) -> tuple[dict[str, TiffLayout], dict[str, str]]:
    """The page layout of each channel's files, and the file it was taken from.

    Up to three files of each channel are probed (first, middle, last) and the layout
    most of them share is the channel's, so one odd file is named as such rather than
    every good file being named against it. All channels must share shape and dtype.
    """
    by_channel: dict[str, list[ImageFile]] = defaultdict(list)
    for f in files:
        by_channel[f.c].append(f)
    layouts, references = {}, {}
    for c, members in by_channel.items():
        layouts[c], references[c] = _channel_layout(c, members)
    ref_c = next(iter(layouts))
    ref = layouts[ref_c]
    for c, layout in layouts.items():
        if (layout.shape, layout.dtype, layout.axes) != (ref.shape, ref.dtype, ref.axes):
            raise PlateError(
                f"{references[c]} (channel {c!r}) is {layout.shape} {layout.dtype} with "
                f"in-file axes {layout.axes!r}; expected {ref.shape} {ref.dtype} with "
                f"{ref.axes!r} like {references[ref_c]} (channel {ref_c!r})"
            )
    return layouts, references


def _channel_layout(channel: str, members: list[ImageFile]) -> tuple[TiffLayout, str]:
    """Vote on the channel's layout among its first, middle and last readable files.

    A file that cannot be probed is left to fail when its unit is read (so the other
    units can still be written); the next file is probed in its place.
    """
    picks = sorted({0, len(members) // 2, len(members) - 1})
    probed: list[tuple[str, TiffLayout]] = []
    first_error: PlateError | None = None
    for start in picks:
        for f in members[start : start + _PROBE_TRIES]:
            try:
                probed.append((str(f.path), probe_tiff(f.path)))
                break
            except PlateError as err:
                first_error = first_error or err
    if not probed:
        assert first_error is not None
        raise first_error
    layout, votes = Counter(lay for _, lay in probed).most_common(1)[0]
    if votes * 2 <= len(probed) and len(probed) > 1:
        raise PlateError(
            f"the files of channel {channel!r} differ: "
            + "; ".join(f"{path} holds {lay.describe()}" for path, lay in probed)
        )
    for path, other in probed:
        if other != layout:
            raise PlateError(
                f"{path} holds {other.describe()}, but the files of channel {channel!r} hold "
                f"{layout.describe()}: every file of a channel needs the same image shape, "
                "dtype and page layout"
            )
    return layout, next(path for path, lay in probed if lay == layout)
