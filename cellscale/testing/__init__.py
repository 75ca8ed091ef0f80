"""Synthetic plates for tests, demos and benchmarks.

:func:`synthetic_plate` makes a deterministic, lazy plate of cells of any size whose
phenotypes follow a plate map; :func:`synthetic_labels`, :func:`synthetic_cells` and
:func:`synthetic_focal_planes` give its ground truth, :func:`illumination_truth` its
flatfield (and :data:`CAMERA_OFFSET` its darkfield), and
:func:`write_synthetic_plate` streams one to an OME-Zarr store for plates larger than
memory. :class:`SegmenterTests` and :class:`EmbedderTests` are the conformance suites every
segmenter and embedder passes; :mod:`cellscale.testing.networks` holds small torch networks
for tests.
"""

from cellscale.testing._embedder_tests import EmbedderTests
from cellscale.testing._model import CellModel
from cellscale.testing._platemap import (
    DEFAULT_CONCENTRATIONS,
    PLATE_FORMATS,
    default_plate_map,
    plate_wells,
)
from cellscale.testing._render import CAMERA_OFFSET, CHANNEL_KINDS, illumination_truth
from cellscale.testing._segmenter_tests import SegmenterTests, blob_field
from cellscale.testing._synthetic import DTYPES, synthetic_plate
from cellscale.testing._truth import synthetic_cells, synthetic_focal_planes, synthetic_labels
from cellscale.testing._write import write_synthetic_plate

__all__ = [
    "CAMERA_OFFSET",
    "CHANNEL_KINDS",
    "DEFAULT_CONCENTRATIONS",
    "DTYPES",
    "PLATE_FORMATS",
    "CellModel",
    "EmbedderTests",
    "SegmenterTests",
    "blob_field",
    "default_plate_map",
    "illumination_truth",
    "plate_wells",
    "synthetic_cells",
    "synthetic_focal_planes",
    "synthetic_labels",
    "synthetic_plate",
    "write_synthetic_plate",
]
