"""A conformance suite every embedder passes (subclass :class:`EmbedderTests` as ``Test…``).

Implement :meth:`~EmbedderTests.make_embedder`; the suite checks the output shape and dtype,
finite features, determinism, that a batch's features do not depend on the batch it came
in, and that different crops give different features.
"""

from __future__ import annotations

import numpy as np

from cellscale.embedding._protocol import Embedder

__all__ = ["EmbedderTests"]


class EmbedderTests:
    """Conformance tests for an embedder (see the module docs)."""

    #: The crops' shape after the batch axis: ``(c, y, x)`` or ``(c, z, y, x)``.
    crop_shape: tuple[int, ...] = (2, 32, 32)

    def make_embedder(self) -> Embedder:
        """The embedder under test."""
        raise NotImplementedError

    def crops(self, n: int = 6, seed: int = 0) -> np.ndarray:
        """Random uint16 crops with a bright square whose place varies per crop."""
        rng = np.random.default_rng(seed)
        crops = rng.integers(0, 200, (n, *self.crop_shape)).astype(np.uint16)
        for i in range(n):
            at = (i * 3) % (self.crop_shape[-1] // 2)
            crops[i, ..., at : at + 8, at : at + 8] += 2000
        return crops

    def test_features_are_float32_of_the_declared_width(self) -> None:
        embedder = self.make_embedder()
        features = np.asarray(embedder(self.crops()))
        assert features.dtype == np.float32
        assert features.shape == (6, embedder.n_features)
        assert np.isfinite(features).all()

    def test_is_deterministic(self) -> None:
        crops = self.crops(seed=1)
        first = np.asarray(self.make_embedder()(crops))
        np.testing.assert_array_equal(first, np.asarray(self.make_embedder()(crops)))

    def test_features_do_not_depend_on_the_batch(self) -> None:
        embedder = self.make_embedder()
        crops = self.crops(n=5, seed=2)
        together = np.asarray(embedder(crops))
        apart = np.concatenate([np.asarray(embedder(crops[i : i + 1])) for i in range(5)])
        np.testing.assert_allclose(together, apart, rtol=1e-4, atol=1e-4)

    def test_different_crops_give_different_features(self) -> None:
        features = np.asarray(self.make_embedder()(self.crops()))
        assert not np.allclose(features[0], features[1])
