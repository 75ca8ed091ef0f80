"""A conformance suite every segmenter passes, in the spirit of zarr's ``StoreTests``.

Subclass :class:`SegmenterTests` in a test module, name the subclass ``Test…`` so pytest
collects it, and implement :meth:`~SegmenterTests.make_segmenter`::

    class TestMySegmenter(SegmenterTests):
        channels = 1

        def make_segmenter(self):
            return MySegmenter(compartment="nuclei")

Every ``test_*`` method then runs against it: output shape and dtype, ids ``1 … n`` with
background 0, compartments sharing ids, no objects on empty and constant fields,
determinism, ``segment_batch`` agreeing with single calls, and objects found on a field of
well-separated bright blobs.
"""

from __future__ import annotations

import numpy as np

from cellscale.segmentation._protocol import Segmenter, check_labels
from cellscale.synthetic._blobs import blob_field

__all__ = ["SegmenterTests"]


class SegmenterTests:
    """Conformance tests for a segmenter (see the module docs)."""

    #: How many channels the segmenter takes (1: the channel; 2: the channel and nuclei).
    channels = 1
    #: The field shape tested, ``(y, x)`` or ``(z, y, x)``.
    shape: tuple[int, ...] = (128, 128)

    def make_segmenter(self) -> Segmenter:
        """The segmenter under test."""
        raise NotImplementedError

    def field(self, seed: int = 0) -> np.ndarray:
        """A field of separated blobs the segmenter must find objects in."""
        return blob_field(self.shape, self.channels, seed=seed)

    def test_output_has_one_uint32_plane_per_compartment(self) -> None:
        segmenter = self.make_segmenter()
        image = self.field()
        labels = np.asarray(segmenter(image))
        assert labels.dtype == np.uint32
        assert labels.shape == (len(segmenter.compartments), *image.shape[1:])

    def test_ids_are_consecutive_from_one_and_compartments_share_them(self) -> None:
        segmenter = self.make_segmenter()
        image = self.field()
        labels = check_labels(np.asarray(segmenter(image)), image, segmenter.compartments, "field")
        ids = np.unique(labels[0])
        assert ids[0] == 0 and (ids[1:] == np.arange(1, len(ids))).all()

    def test_finds_separated_blobs(self) -> None:
        labels = np.asarray(self.make_segmenter()(self.field()))
        assert labels[0].max() >= 1

    def test_empty_field_has_no_objects(self) -> None:
        segmenter = self.make_segmenter()
        image = np.zeros((self.channels, *self.shape), np.uint16)
        assert not np.asarray(segmenter(image)).any()

    def test_constant_field_has_no_objects(self) -> None:
        segmenter = self.make_segmenter()
        for value in (1000, np.iinfo(np.uint16).max):
            image = np.full((self.channels, *self.shape), value, np.uint16)
            assert not np.asarray(segmenter(image)).any()

    def test_is_deterministic(self) -> None:
        image = self.field(seed=3)
        first = np.asarray(self.make_segmenter()(image))
        again = np.asarray(self.make_segmenter()(image))
        np.testing.assert_array_equal(first, again)

    def test_a_batch_equals_single_fields(self) -> None:
        segmenter = self.make_segmenter()
        images = [self.field(seed=s) for s in range(3)]
        batch = segmenter.segment_batch(images)
        assert len(batch) == 3
        for image, labels in zip(images, batch, strict=True):
            np.testing.assert_array_equal(np.asarray(labels), np.asarray(segmenter(image)))
