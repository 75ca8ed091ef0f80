"""Image quality control: focus, saturation and intensity of every image, and flags.

:func:`qc` measures every image of a plate in one pass and flags the blurry, saturated,
empty and dim ones (:class:`QCThresholds`) and those with NaN or infinite pixels;
:func:`flagged_fields` lists the fields to leave out downstream; :func:`write_qc` and
:func:`read_qc` keep the table as Parquet.
"""

from cellscale.quality._flags import QCThresholds, flag_images
from cellscale.quality._focus import laplacian_variance, power_log_log_slope
from cellscale.quality._parquet import read_qc, write_qc
from cellscale.quality._table import METRICS, flagged_fields, qc

__all__ = [
    "METRICS",
    "QCThresholds",
    "flag_images",
    "flagged_fields",
    "laplacian_variance",
    "power_log_log_slope",
    "qc",
    "read_qc",
    "write_qc",
]
