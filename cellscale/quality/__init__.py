"""Image quality control: focus, saturation and intensity of every image, and flags.

:func:`qc` measures every image of a plate in one pass and flags the blurry, saturated,
empty and dim ones (:class:`QCThresholds`) and those with NaN or infinite pixels;
:func:`flagged_fields` lists the fields to leave out downstream; :func:`write_qc` and
:func:`read_qc` keep the table as Parquet. A pass that already holds the images measures
each with :func:`image_metrics` and makes the same table from the numbers with
:func:`qc_table`, without reading the plate again.
"""

from cellscale.quality._flags import QCThresholds, flag_images
from cellscale.quality._focus import laplacian_variance, power_log_log_slope
from cellscale.quality._metrics import IMAGE_METRICS, image_metrics
from cellscale.quality._parquet import read_qc, write_qc
from cellscale.quality._table import (
    METRICS,
    flagged_fields,
    present_images,
    qc,
    qc_table,
    saturation_level,
)

__all__ = [
    "IMAGE_METRICS",
    "METRICS",
    "QCThresholds",
    "flag_images",
    "flagged_fields",
    "image_metrics",
    "laplacian_variance",
    "power_log_log_slope",
    "present_images",
    "qc",
    "qc_table",
    "read_qc",
    "saturation_level",
    "write_qc",
]
