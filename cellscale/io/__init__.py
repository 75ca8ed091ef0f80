"""Reading and writing plates: OME-Zarr HCS plates and TIFF-folder ingest."""

from cellscale.io._hcs_read import open_plate
from cellscale.io._hcs_write import write_plate
from cellscale.io._ingest import ingest

__all__ = ["ingest", "open_plate", "write_plate"]
