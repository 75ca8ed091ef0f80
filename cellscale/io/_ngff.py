"""NGFF (OME-Zarr) vocabulary shared by the plate reader and writer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numcodecs
import zarr.codecs
from ome_zarr.format import Format, FormatV04, FormatV05

from cellscale.plate import PlateError

__all__ = [
    "IMAGE_AXES",
    "SUPPORTED_VERSIONS",
    "ZarrFormat",
    "compressor_for",
    "format_for",
    "ome_attrs",
    "zarr_format_for",
]

IMAGE_AXES: tuple[str, ...] = ("t", "c", "z", "y", "x")
"""Axes of every field image cellscale writes."""

ZarrFormat = Literal[2, 3]

SUPPORTED_VERSIONS: tuple[str, ...] = ("0.4", "0.5")

_CODECS = ("blosc-lz4", "blosc-zstd", "zstd", "none")


def format_for(version: str) -> Format:
    """The ome-zarr-py format object for an NGFF version string."""
    if version == "0.5":
        return FormatV05()
    if version == "0.4":
        return FormatV04()
    raise PlateError(f"NGFF version {version!r} is not supported; use one of {SUPPORTED_VERSIONS}")


def zarr_format_for(version: str) -> ZarrFormat:
    """Zarr format of an NGFF version: 0.5 is Zarr v3, 0.4 is Zarr v2."""
    format_for(version)
    return 3 if version == "0.5" else 2


def compressor_for(codec: str, clevel: int, zarr_format: ZarrFormat) -> Any:
    """Build the compressor for ``codec`` in the codec family of ``zarr_format``.

    Parameters
    ----------
    codec
        One of ``"blosc-lz4"`` (the default: fastest to read at a ratio close to
        zstd's on 16-bit images), ``"blosc-zstd"``, ``"zstd"`` or ``"none"``.
    clevel
        Compression level.
    zarr_format
        2 or 3.
    """
    if codec not in _CODECS:
        raise ValueError(f"codec must be one of {_CODECS}, got {codec!r}")
    if codec == "none":
        return None
    if codec == "zstd":
        return zarr.codecs.ZstdCodec(level=clevel) if zarr_format == 3 else numcodecs.Zstd(clevel)
    cname = codec.removeprefix("blosc-")
    if zarr_format == 3:
        return zarr.codecs.BloscCodec(cname=cname, clevel=clevel, shuffle="bitshuffle")  # type: ignore[arg-type]
    return numcodecs.Blosc(cname=cname, clevel=clevel, shuffle=numcodecs.Blosc.BITSHUFFLE)


def ome_attrs(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The OME metadata of a group: under ``"ome"`` in NGFF 0.5, at the top in 0.4."""
    ome = attrs.get("ome")
    return ome if isinstance(ome, Mapping) else attrs
