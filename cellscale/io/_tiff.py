"""Reading TIFF planes for ingest: probing a file's layout and reading one chunk.

Every read checks the plane against the shape and dtype the plate expects and names
the file when it differs or cannot be decoded. Palette TIFFs yield their index
plane (the colour map is ignored); RGB TIFFs yield one grey channel.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile

from cellscale.io._access import open_source
from cellscale.io._instrument_meta import metaxpress_props
from cellscale.plate import PlateError

__all__ = [
    "ChunkSpec",
    "NonFinite",
    "PlaneRef",
    "TiffLayout",
    "file_layout",
    "probe_tiff",
    "read_chunk",
    "read_plane",
    "tiff_problem",
]

IN_FILE_AXES = ("Z", "C")
"""Axes a multi-image file (e.g. an ImageJ hyperstack) may hold besides Y and X."""

_SAMPLE_AXES = frozenset("YXS")

NonFinite = Literal["raise", "keep"]
"""What ingest does with NaN and infinite pixels: refuse them, or keep them as they are."""


@dataclass(frozen=True)
class TiffLayout:
    """The layout of one TIFF file.

    Attributes
    ----------
    shape
        ``(y, x)`` of one plane.
    dtype
        Pixel dtype of one plane (for palette files, the index dtype).
    axes
        In-file axes besides Y and X (a subset of ``"ZC"`` in file order), e.g.
        ``"C"`` for an ImageJ composite, ``""`` for a single image.
    sizes
        Length of each of ``axes``.
    pixel_size_um
        ``(y, x)`` pixel size from MetaXpress metadata, if present.
    """

    shape: tuple[int, int]
    dtype: np.dtype
    axes: str = ""
    sizes: tuple[int, ...] = ()
    pixel_size_um: tuple[float, float] | None = None
    series: tuple[str, tuple[int, ...]] = ("YX", ())

    @property
    def pages(self) -> tuple[str, tuple[int, ...]]:
        """The file's page structure: its series axes and their sizes besides Y and X."""
        axes, shape = self.series
        kept = [(a, n) for a, n in zip(axes, shape, strict=True) if a not in "YX"]
        return "".join(a for a, _ in kept), tuple(n for _, n in kept)

    def describe(self) -> str:
        """The page structure in words, e.g. ``"one 12 × 10 uint16 plane"``."""
        axes, shape = self.series
        planes = int(np.prod(self.pages[1], dtype=np.int64))
        plane = f"{self.shape[0]}x{self.shape[1]} {self.dtype}"
        if self.is_rgb:
            return f"one {plane} RGB image"
        if planes == 1:
            return f"one {plane} plane"
        return f"{planes} planes of {plane} (axes {axes!r}, shape {shape})"

    @property
    def is_rgb(self) -> bool:
        """Whether the file is one RGB(A) image: colour samples of a single plane."""
        return self.series[0] == "YXS"

    def plane_key(self, index: dict[str, int]) -> int:
        """The page number of the plane at in-file ``index`` (e.g. ``{"C": 1}``)."""
        if not self.axes:
            return 0
        coords = tuple(index.get(axis, 0) for axis in self.axes)
        return int(np.ravel_multi_index(coords, self.sizes))


@dataclass(frozen=True)
class PlaneRef:
    """One plane of one file: ``key`` is its page in the file's first series.

    ``size`` and ``mtime_ns`` are the file's as found when the plate was read (``None``:
    not checked); a file that differs when its pixels are read is an error.
    """

    path: str
    key: int = 0
    size: int | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True)
class ChunkSpec:
    """Everything a task needs to read one ``(t, well, field, c)`` image.

    Attributes
    ----------
    planes
        One entry per Z plane; ``None`` fills the plane with zeros (or, with
        ``max_project``, leaves it out).
    shape, dtype
        What every plane must be.
    rgb
        Which sample of an RGB file to take; ``None`` requires equal samples.
    reference
        The file the expected shape and dtype came from (named in errors).
    layout
        The page layout every file of this channel has (``None``: not checked).
    channel
        The channel's id, for messages.
    max_project
        Read the image as one plane: the maximum over ``planes``.
    position
        The image's plate position (``"t=1 well B03 field 2"``), for messages.
    on_nonfinite
        ``"raise"``: a floating-point plane with NaN or infinite pixels is an error
        naming its file; ``"keep"``: such pixels are read as they are.
    """

    planes: tuple[PlaneRef | None, ...]
    shape: tuple[int, int]
    dtype: str
    rgb: int | None
    reference: str
    layout: TiffLayout | None = None
    channel: str = ""
    max_project: bool = False
    position: str = ""
    on_nonfinite: NonFinite = "raise"


def probe_tiff(path: str | Path) -> TiffLayout:
    """Read the layout of a TIFF file from its header, without reading pixels.

    Raises
    ------
    UnreadableError
        If the file cannot be opened.
    PlateError
        If the file cannot be parsed, or holds axes other than Z and C besides Y, X
        and colour samples.
    """
    try:
        with open_source(path) as handle, tifffile.TiffFile(handle) as tif:
            return file_layout(tif, path)
    except PlateError:
        raise
    except Exception as exc:
        raise PlateError(f"cannot read TIFF {path}: {tiff_problem(exc)}") from exc


def file_layout(tif: tifffile.TiffFile, path: str | Path) -> TiffLayout:
    """The layout of the open file ``tif`` (see :func:`probe_tiff`)."""
    series = tif.series[0]
    page = tif.pages.first
    description = page.description if page.description else ""
    axes, shape, dtype = series.axes, tuple(int(n) for n in series.shape), series.dtype
    extra = [(a, n) for a, n in zip(axes, shape, strict=True) if a not in _SAMPLE_AXES and n > 1]
    unsupported = [a for a, _ in extra if a not in IN_FILE_AXES]
    if unsupported:
        planes = int(np.prod([n for _, n in extra], dtype=np.int64))
        raise PlateError(
            f"{path} holds {planes} planes (axes {axes!r}, shape {shape}); ingest reads single "
            f"images or Z/C stacks, not {''.join(unsupported)!r}: name them in the file "
            "pattern instead"
        )
    if "S" in axes and axes != "YXS":
        raise PlateError(
            f"{path} holds {shape[axes.index('S')]} planes stored as the samples of one page "
            f"(axes {axes!r}, shape {shape}), not one RGB image; ingest reads single planes, "
            "RGB images and Z/C stacks of one plane per page (e.g. ImageJ hyperstacks)"
        )
    plane_shape = tuple(n for a, n in zip(axes, shape, strict=True) if a in "YX")
    return TiffLayout(
        shape=(int(plane_shape[0]), int(plane_shape[1])),
        dtype=np.dtype(dtype),
        axes="".join(a for a, _ in extra),
        sizes=tuple(int(n) for _, n in extra),
        pixel_size_um=_metaxpress_pixel_size(description),
        series=(axes, shape),
    )


def tiff_problem(exc: BaseException) -> str:
    """What a tifffile error says about the file, in words."""
    text = str(exc)
    if isinstance(exc, IndexError) or "offset to first page" in text:
        return (
            f"no readable image page: the file is truncated or its first IFD offset is bad ({text})"
        )
    if "failed to read" in text:
        return f"the file is truncated: its pixel data ends early ({text})"
    if isinstance(exc, tifffile.TiffFileError):
        return f"corrupt TIFF structure ({text})"
    return f"{type(exc).__name__}: {text}"


def _metaxpress_pixel_size(description: str) -> tuple[float, float] | None:
    props = metaxpress_props(description)
    if "spatial-calibration-x" not in props:
        return None
    x = float(props["spatial-calibration-x"])
    return float(props.get("spatial-calibration-y", x)), x


def read_plane(tif: tifffile.TiffFile, ref: PlaneRef, spec: ChunkSpec, out: np.ndarray) -> None:
    """Read plane ``ref`` of the open file ``tif`` into ``out``, checking it against ``spec``.

    A plane that already has the plate's shape and dtype is read straight into ``out``;
    others (RGB, or not fitting the plate) are read, converted or rejected.
    """
    expected = np.dtype(spec.dtype)
    page = tif.series[0].pages[ref.key]
    if page is not None and page.shape == spec.shape and page.dtype == expected:
        tif.asarray(key=ref.key, series=0, out=out)
        return
    data = tif.asarray(key=ref.key, series=0)
    if data.ndim == 3:
        data = _grey(data, ref.path, spec.rgb)
    if data.shape != spec.shape or data.dtype != expected:
        raise PlateError(
            f"{ref.path}: image is {data.shape} {data.dtype}, expected {spec.shape} "
            f"{expected} like {spec.reference}"
        )
    out[...] = data


def _grey(data: np.ndarray, path: str, rgb: int | None) -> np.ndarray:
    colours = data[..., :3]
    if rgb is not None:
        return np.ascontiguousarray(data[..., rgb])
    if all(np.array_equal(colours[..., 0], colours[..., i]) for i in (1, 2)):
        return np.ascontiguousarray(colours[..., 0])
    maxima = ", ".join(f"{name}={int(colours[..., i].max())}" for i, name in enumerate("RGB"))
    raise PlateError(
        f"{path}: RGB image whose colour channels differ (max {maxima}); pass rgb=<sample "
        "index> (0=R, 1=G, 2=B) to take one channel"
    )


def read_chunk(spec: ChunkSpec) -> np.ndarray:
    """Read one ``(t, well, field, c)`` image as a ``(1, 1, 1, z, 1, y, x)`` array.

    With ``spec.max_project`` the image is one plane (``z`` of 1), the maximum of the
    planes, read one at a time. Every file is checked against the channel's page
    layout and against the size and modification time it had when the plate was read,
    and every floating-point plane for NaN and infinite pixels (unless
    ``spec.on_nonfinite == "keep"``).

    Raises
    ------
    UnreadableError
        Naming the file that cannot be opened.
    PlateError
        Naming the file that cannot be read, whose pages differ from the channel's, that
        changed since the plate was read, whose plane does not fit the plate, or whose
        plane holds NaN or infinite pixels (with their count).
    """
    depth = 1 if spec.max_project else len(spec.planes)
    shape = (1, 1, 1, depth, 1, *spec.shape)
    complete = all(ref is not None for ref in spec.planes)
    out = np.empty(shape, spec.dtype) if complete else np.zeros(shape, spec.dtype)
    image = out[0, 0, 0, :, 0]
    scratch = np.empty(spec.shape, spec.dtype) if spec.max_project else None
    check_finite = spec.on_nonfinite == "raise" and np.dtype(spec.dtype).kind in "fc"
    with ExitStack() as stack:
        opened: dict[str, tifffile.TiffFile] = {}
        present = [(z, ref) for z, ref in enumerate(spec.planes) if ref is not None]
        for n, (z, ref) in enumerate(present):
            target = image[z] if scratch is None else image[0] if n == 0 else scratch
            _read_checked(stack, opened, ref, spec, target)
            if check_finite:
                _check_finite(target, ref, spec)
            if target is scratch:
                np.maximum(image[0], scratch, out=image[0])
    return out


def _read_checked(
    stack: ExitStack,
    opened: dict[str, tifffile.TiffFile],
    ref: PlaneRef,
    spec: ChunkSpec,
    out: np.ndarray,
) -> None:
    """Read plane ``ref`` into ``out``, opening and checking its file on first use."""
    try:
        if ref.path not in opened:
            handle = stack.enter_context(open_source(ref.path))
            opened[ref.path] = stack.enter_context(tifffile.TiffFile(handle))
            _check_file(opened[ref.path], ref, spec)
        read_plane(opened[ref.path], ref, spec, out)
    except PlateError:
        raise
    except Exception as exc:
        raise PlateError(f"cannot read TIFF {ref.path}: {tiff_problem(exc)}") from exc


def _check_file(tif: tifffile.TiffFile, ref: PlaneRef, spec: ChunkSpec) -> None:
    if ref.size is not None:
        found = os.fstat(tif.filehandle.fileno())
        if (found.st_size, found.st_mtime_ns) != (ref.size, ref.mtime_ns):
            raise PlateError(
                f"{ref.path} changed since the plate was read (size {ref.size} -> "
                f"{found.st_size} bytes, or a new modification time); read the folder again"
            )
    if spec.layout is None:
        return
    layout = file_layout(tif, ref.path)
    if layout.pages != spec.layout.pages:
        raise PlateError(
            f"{ref.path} holds {layout.describe()}, but the files of channel {spec.channel!r} "
            f"hold {spec.layout.describe()} like {spec.reference}: every file of a channel "
            "needs the same page layout, so this file's planes would be lost"
        )


def _check_finite(plane: np.ndarray, ref: PlaneRef, spec: ChunkSpec) -> None:
    """Raise naming the file, position and count if ``plane`` has NaN or infinite pixels."""
    if np.isfinite(plane).all():
        return
    n_nan = int(np.count_nonzero(np.isnan(plane)))
    n_inf = int(np.count_nonzero(np.isinf(plane)))
    at = f" ({spec.position} channel {spec.channel!r})" if spec.position else ""
    raise PlateError(
        f"{ref.path}{at}: {n_nan + n_inf} of {plane.size} pixels are not finite ({n_nan} NaN, "
        f"{n_inf} infinite); pass on_nonfinite='keep' to ingest them "
        "as they are (cellscale.qc flags such images 'nonfinite')"
    )
