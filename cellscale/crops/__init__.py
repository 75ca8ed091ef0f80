"""Single-cell crops: a lazy ``(cell, c, [z,] y, x)`` tensor aligned with the cell table."""

from cellscale.crops._cut import MASKS, cut_field
from cellscale.crops._extract import extract_crops
from cellscale.crops._write import open_crops, write_crops

__all__ = ["MASKS", "cut_field", "extract_crops", "open_crops", "write_crops"]
