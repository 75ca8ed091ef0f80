"""Reading and writing plates: OME-Zarr HCS plates and TIFF-folder ingest."""

from cellscale.io._access import UnreadableError
from cellscale.io._hcs_read import open_plate
from cellscale.io._hcs_write import write_plate
from cellscale.io._htd import HtdInfo, read_htd
from cellscale.io._ingest import ingest, read_tiff_plate
from cellscale.io._labels import open_labels, write_labels
from cellscale.io._patterns import FilePattern, cellprofiler, imagexpress
from cellscale.io._platemap import read_plate_map
from cellscale.io._update import update_plate_map
from cellscale.io._verify import VerifyReport, verify_plate

__all__ = [
    "FilePattern",
    "HtdInfo",
    "UnreadableError",
    "VerifyReport",
    "cellprofiler",
    "imagexpress",
    "ingest",
    "open_labels",
    "open_plate",
    "read_htd",
    "read_plate_map",
    "read_tiff_plate",
    "update_plate_map",
    "verify_plate",
    "write_labels",
    "write_plate",
]
