"""Synthetic screens: deterministic, lazy plates of cells with known ground truth.

:func:`synthetic_plate` makes a deterministic, lazy plate of cells of any size whose
phenotypes follow a plate map (:func:`default_plate_map`, :func:`plate_wells`,
:data:`PLATE_FORMATS`); :func:`synthetic_labels`, :func:`synthetic_cells` and
:func:`synthetic_focal_planes` give its ground truth, :func:`illumination_truth` its
flatfield (and :data:`CAMERA_OFFSET` its darkfield), and :func:`write_synthetic_plate`
streams one to an OME-Zarr store for plates larger than memory; :func:`blob_field` is a
single field of bright blobs for segmenters. :func:`with_batch_effect` shifts a plate as
if imaged in another batch (:func:`batch_plate_map`, :func:`synthetic_screen_plates` for
screens of several plates), :func:`with_artefacts` plants debris, saturation or blur in
chosen wells (for outlier detection) and :func:`background_mark_screen` draws a class in
the cells or only in their background (for Grad-CAMO). The demo, the pipeline's
``synthetic`` plates, the tests and the benchmarks all draw their screens from here.
"""

from cellscale.synthetic._artefacts import with_artefacts
from cellscale.synthetic._background_mark import MarkedScreen, background_mark_screen
from cellscale.synthetic._batch import (
    BATCH_COLUMN,
    batch_plate_map,
    synthetic_screen_plates,
    with_batch_effect,
)
from cellscale.synthetic._blobs import blob_field
from cellscale.synthetic._model import CellModel
from cellscale.synthetic._platemap import (
    DEFAULT_CONCENTRATIONS,
    PLATE_FORMATS,
    default_plate_map,
    plate_wells,
)
from cellscale.synthetic._render import CAMERA_OFFSET, CHANNEL_KINDS, illumination_truth
from cellscale.synthetic._synthetic import DTYPES, synthetic_plate
from cellscale.synthetic._truth import synthetic_cells, synthetic_focal_planes, synthetic_labels
from cellscale.synthetic._write import write_synthetic_plate

__all__ = [
    "BATCH_COLUMN",
    "CAMERA_OFFSET",
    "CHANNEL_KINDS",
    "DEFAULT_CONCENTRATIONS",
    "DTYPES",
    "PLATE_FORMATS",
    "CellModel",
    "MarkedScreen",
    "background_mark_screen",
    "batch_plate_map",
    "blob_field",
    "default_plate_map",
    "illumination_truth",
    "plate_wells",
    "synthetic_cells",
    "synthetic_focal_planes",
    "synthetic_labels",
    "synthetic_plate",
    "synthetic_screen_plates",
    "with_artefacts",
    "with_batch_effect",
    "write_synthetic_plate",
]
