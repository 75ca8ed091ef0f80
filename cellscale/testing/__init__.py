"""Test kit: conformance suites, and the synthetic screens of :mod:`cellscale.synthetic`.

:class:`SegmenterTests` and :class:`EmbedderTests` are the conformance suites every
segmenter and embedder passes, :class:`OutputTests` the one every output kind passes;
:mod:`cellscale.testing.networks` holds small torch networks for tests. The synthetic
plates and their ground truth (:func:`synthetic_plate`, :func:`write_synthetic_plate`,
:func:`synthetic_labels`, :func:`blob_field` …) live in :mod:`cellscale.synthetic` and are
re-exported here.
Library code never imports this package.
"""

from cellscale.synthetic import (
    CAMERA_OFFSET,
    CHANNEL_KINDS,
    DEFAULT_CONCENTRATIONS,
    DTYPES,
    PLATE_FORMATS,
    CellModel,
    blob_field,
    default_plate_map,
    illumination_truth,
    plate_wells,
    synthetic_cells,
    synthetic_focal_planes,
    synthetic_labels,
    synthetic_plate,
    write_synthetic_plate,
)
from cellscale.testing._embedder_tests import EmbedderTests
from cellscale.testing._outputs import OutputTests
from cellscale.testing._segmenter_tests import SegmenterTests

__all__ = [
    "CAMERA_OFFSET",
    "CHANNEL_KINDS",
    "DEFAULT_CONCENTRATIONS",
    "DTYPES",
    "PLATE_FORMATS",
    "CellModel",
    "EmbedderTests",
    "OutputTests",
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
