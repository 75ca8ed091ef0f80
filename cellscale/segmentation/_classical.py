"""Classical nucleus and cell segmentation on the CPU, scaled by the nuclei's diameter.

Every length below is a fraction of the expected nucleus diameter ``d`` in pixels, which
:func:`estimate_diameter` measures per field when it is not given, so one set of defaults
serves every magnification. Nuclei (2D or 3D):

1. **Denoise**: a 3-pixel median filter (salt noise), then a Gaussian of ``0.05 d``.
2. **Flatten**: subtract the pedestal, a grey opening by a ball of radius ``d`` (on a
   block-minimum thumbnail), which removes uneven illumination and diffuse glow but keeps
   anything nucleus-sized.
3. **Threshold**: the background's level and noise come from the spread of the darker
   half, refined by 3-sigma clipping; foreground is at least 3 noise sigmas above the
   background and ``threshold_fraction`` of the way to the Otsu threshold.
4. **Cut each nucleus at its own level**: a pixel stays foreground only above
   ``edge_fraction`` of the brightest seed-image value within ``d / 2`` of it. Bright
   nuclei do not swell into their blur, dim nuclei keep their size, and a dim nucleus
   touching a bright one is parted from it.
5. **Split touching nuclei**: a watershed of the log of the signal smoothed by ``0.1 d``
   plus ``shape_weight`` times the distance to the mask's edge in diameters, from its
   maxima at least ``log(1 + split_depth)`` deep. Two nuclei split where the intensity
   between them dips by ``split_depth`` of their brightness (bright and dim nuclei alike,
   as the log makes dips relative) or at a neck of the outline.
6. **Reject** objects smaller than ``min_area`` of a nucleus, fainter than 5 noise sigmas,
   or of a Weber contrast over the glow around them below ``min_contrast``: debris, noise
   and out-of-focus nuclei. Holes are filled.

When the diameter is estimated, a first segmentation's median equivalent diameter
refines it, and the field is segmented again when the two differ by more than 10 %.

Cells: a seeded watershed from the nuclei on the smoothed cytoplasm channel, inside that
channel's foreground (pixels above ``cell_threshold_fraction`` of the way from the
background to the Otsu threshold) and every nucleus; cell ``i`` contains nucleus ``i``.

A 3D field is treated as isotropic voxels: resample anisotropic stacks first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage.filters import threshold_otsu
from skimage.morphology import h_maxima
from skimage.segmentation import watershed
from skimage.transform import downscale_local_mean, resize

from cellscale.segmentation._median import median3
from cellscale.segmentation._protocol import SegmenterBase, relabel_consecutive

__all__ = ["OBJECTS", "ClassicalSegmenter", "estimate_diameter"]

OBJECTS = "objects"
"""The name of the one compartment segmented from one channel when nothing says what it is."""

_SCALES_PER_OCTAVE = 4
_SIGMA_RANGE = (1.4, 48.0)  # blob scales searched: diameters of about 4 to 160 pixels
_NOISE_SIGMAS = 6.0  # a blob must beat the noise's LoG response by this many sigmas
_BLOB_STRENGTH = 0.2  # blobs weaker than this fraction of the strongest do not vote
_DIAMETER_PER_SIGMA = 2.0 * np.sqrt(2.0) * 1.05  # a disc's LoG peaks at sigma = r / sqrt(2)
_FOREGROUND_SIGMAS = 3.0  # foreground is this many noise sigmas above the background
_OBJECT_SIGMAS = 5.0  # an object's mean is this many noise sigmas above the background
_SEED_SMOOTHING = 0.1  # Gaussian sigma of the seed image, in diameters
_REFINE_TOLERANCE = 0.1  # resegment when the measured diameter differs by more than this


def estimate_diameter(image: np.ndarray) -> float:
    """The typical diameter in pixels of the bright blobs (nuclei) of a 2D image.

    Scale-normalised Laplacian-of-Gaussian responses over a pyramid of scales, less a
    floor for the noise's own response, are searched for maxima in position and scale.
    Weaker maxima within two scales of a stronger one are dropped (texture inside a large
    nucleus), and so are those below a fifth of the strongest; the median scale of the
    rest gives the diameter.

    Parameters
    ----------
    image
        One 2D field, any real dtype.

    Returns
    -------
    float
        The estimated diameter, or ``nan`` when the image has no blob above its noise
        (an empty or constant field).

    Notes
    -----
    The estimate is the size of whatever blobs dominate the field, so it follows the
    stain: on a punctate or vesicular stain it measures the puncta (a few pixels), and a
    segmentation at that diameter finds them and agrees with it. It cannot tell that the
    wrong structures were found; an independent expectation (a ``diameter`` given by the
    user, or the other wells of the plate, see
    :func:`cellscale.segmentation.check_segmentation`) can.

    Examples
    --------
    >>> yy, xx = np.mgrid[:128, :128]
    >>> discs = sum(((yy - cy) ** 2 + (xx - cx) ** 2 < 10**2) for cy in (32, 96) for cx in (32, 96))
    >>> abs(estimate_diameter(discs * 1000.0) - 20) < 3
    True
    >>> bool(np.isnan(estimate_diameter(np.zeros((64, 64)))))
    True
    """
    values = np.asarray(image, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"estimate_diameter takes a 2D image, got shape {values.shape}")
    denoised = median3(values)
    if denoised.max() <= denoised.min():
        return float("nan")
    blobs = _strongest_blobs(_blob_detections(denoised))
    if not len(blobs):
        return float("nan")
    return float(_DIAMETER_PER_SIGMA * np.median(blobs[:, 2]))


def _blob_detections(image: np.ndarray) -> np.ndarray:
    """Rows ``(y, x, sigma, strength)`` of the LoG scale-space maxima above the noise floor."""
    step = 2.0 ** (1.0 / _SCALES_PER_OCTAVE)
    sigmas = _SIGMA_RANGE[0] * step ** np.arange(-1, _SCALES_PER_OCTAVE + 1)  # one pad each end
    found = []
    level, factor, noise = image, 1, None
    while _SIGMA_RANGE[0] * factor <= _SIGMA_RANGE[1] and min(level.shape) >= 8:
        stack = np.stack([-(s**2) * ndi.gaussian_laplace(level, s) for s in sigmas])
        if noise is None:  # white noise's normalised LoG response falls as 1 / sigma
            finest = stack[1]  # its std from the mean absolute deviation (robust to quanta)
            noise = np.sqrt(np.pi / 2) * np.mean(np.abs(finest - np.median(finest))) * sigmas[1]
        strength = stack - (_NOISE_SIGMAS * noise / (sigmas * factor))[:, None, None]
        peaks = (strength == ndi.maximum_filter(strength, size=3, mode="nearest")) & (strength > 0)
        peaks[[0, -1]] = False
        scale, y, x = np.nonzero(peaks)
        found.append(
            np.column_stack(
                [
                    (y + 0.5) * factor - 0.5,
                    (x + 0.5) * factor - 0.5,
                    sigmas[scale] * factor,
                    strength[scale, y, x],
                ]
            )
        )
        level, factor = downscale_local_mean(level, 2), factor * 2
    return np.concatenate(found) if found else np.zeros((0, 4))


def _strongest_blobs(blobs: np.ndarray) -> np.ndarray:
    """Blobs not within two scales of a stronger one, and at least a fifth as strong as the best."""
    if not len(blobs):
        return blobs
    blobs = blobs[np.argsort(-blobs[:, 3], kind="stable")]
    tree = cKDTree(blobs[:, :2])
    alive = np.ones(len(blobs), dtype=bool)
    kept = []
    for i, blob in enumerate(blobs):
        if alive[i]:
            kept.append(i)
            alive[tree.query_ball_point(blob[:2], 2.0 * blob[2])] = False
    blobs = blobs[kept]
    return blobs[blobs[:, 3] >= _BLOB_STRENGTH * blobs[0, 3]]


@dataclass(frozen=True)
class _Field:
    """One channel denoised and flattened, with its background statistics."""

    smooth: np.ndarray  # denoised image
    pedestal: np.ndarray  # slowly varying background under the objects
    signal: np.ndarray  # smooth - pedestal
    level: float  # background level of the signal
    noise: float  # background noise of the signal
    threshold: float  # foreground threshold of the signal


def _denoise(image: np.ndarray, sigma: float) -> np.ndarray:
    return ndi.gaussian_filter(median3(image), max(0.7, sigma))


def _pedestal(image: np.ndarray, radius: float) -> np.ndarray:
    """Grey opening by a ball of ``radius``, on a block-minimum thumbnail, smoothly upsampled."""
    factor = max(1, round(radius / 4))
    padded = np.pad(image, [(0, -n % factor) for n in image.shape], mode="edge")
    blocks = padded.reshape([x for n in padded.shape for x in (n // factor, factor)])
    thumbnail = blocks.min(axis=tuple(range(1, 2 * image.ndim, 2)))
    opened = ndi.grey_opening(thumbnail, footprint=_ball(radius / factor, image.ndim))
    opened = ndi.gaussian_filter(opened, 1.0)
    if factor > 1:
        opened = resize(opened, padded.shape, order=1)
    return opened[tuple(slice(0, n) for n in image.shape)]


def _ball(radius: float, ndim: int) -> np.ndarray:
    r = max(1, round(radius))
    grid = np.indices((2 * r + 1,) * ndim) - r
    return np.asarray((grid**2).sum(axis=0) <= r * r)


def _background_stats(signal: np.ndarray) -> tuple[float, float]:
    """Level and noise of the background: the darker half's spread, then 3-sigma clipping.

    The median is background while objects cover less than half the field; the darker
    half's spread needs no assumption on the objects at all.
    """
    values = signal.ravel()
    floor = 1e-6 * float(np.abs(values).max()) + 1e-30  # a noise-free field's noise
    level = float(np.median(values))
    lower = values[values <= level] - level
    noise = float(np.sqrt(np.mean(lower**2))) + floor
    for _ in range(3):
        kept = values[np.abs(values - level) <= 3 * noise]
        level, noise = float(kept.mean()), float(kept.std()) + floor
    return level, noise


def _field(image: np.ndarray, diameter: float, smoothing: float, fraction: float) -> _Field:
    smooth = _denoise(image, smoothing * diameter)
    pedestal = _pedestal(smooth, diameter)
    signal = smooth - pedestal
    level, noise = _background_stats(signal)
    otsu = float(threshold_otsu(signal))
    threshold = max(level + _FOREGROUND_SIGMAS * noise, level + fraction * (otsu - level))
    return _Field(smooth, pedestal, signal, level, noise, threshold)


def _expected_size(diameter: float, ndim: int) -> float:
    """Area (2D) or volume (3D) of a nucleus of ``diameter``."""
    return float(np.pi * diameter**2 / 4 if ndim == 2 else np.pi * diameter**3 / 6)


def _equivalent_diameter(size: float, ndim: int) -> float:
    return float(np.sqrt(4 * size / np.pi) if ndim == 2 else np.cbrt(6 * size / np.pi))


def _label_mean(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Per label ``1 … n``, the mean of ``values`` (0 for absent labels)."""
    sums = np.bincount(labels.ravel(), weights=values.ravel(), minlength=n + 1)[1:]
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return sums / np.maximum(counts, 1)


def _complete_markers(markers: np.ndarray, mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``markers`` plus one at the maximum of each component of ``mask`` that has none."""
    components, n = ndi.label(mask)
    seeded = np.zeros(n + 1, dtype=bool)
    seeded[components[markers > 0]] = True
    missing = np.flatnonzero(~seeded[1:]) + 1
    if len(missing):
        where = tuple(np.array(ndi.maximum_position(values, components, missing)).T)
        markers[where] = markers.max() + 1 + np.arange(len(missing))
    return markers


def _seeded_watershed(landscape: np.ndarray, mask: np.ndarray, depth: float) -> np.ndarray:
    """Watershed of ``-landscape`` in ``mask`` from its maxima at least ``depth`` deep."""
    markers = ndi.label(h_maxima(landscape, depth) & mask)[0]
    markers = _complete_markers(markers, mask, landscape)
    return watershed(-landscape, markers, mask=mask)


def _fill_holes(labels: np.ndarray) -> np.ndarray:
    """Holes inside objects, each given to the object around it."""
    holes = ndi.binary_fill_holes(labels > 0) & (labels == 0)
    if not holes.any():
        return labels
    hole_ids, n = ndi.label(holes)
    around = ndi.grey_dilation(labels, size=(3,) * labels.ndim)
    owner = np.asarray(ndi.maximum(around, hole_ids, np.arange(1, n + 1)), dtype=labels.dtype)
    filled = labels.copy()
    filled[holes] = owner[hole_ids[holes] - 1]
    return filled


class ClassicalSegmenter(SegmenterBase):
    """Blobs of one stain (nuclei …), or cells seeded by their nuclei, by thresholds and watersheds.

    CPU only.

    See the module docs for the method; every length is a fraction of the nucleus
    diameter, so the defaults work at any magnification when ``diameter`` is estimated.

    Parameters
    ----------
    compartment
        ``"cells"``: the image is ``(2, y, x)`` (or ``(2, z, y, x)``), a cytoplasm stain
        then the nuclear stain, and the labels ``(2, …)`` hold cells then their nuclei
        with shared ids. Any other name (letters and digits): the image is ``(1, …)``, one
        stain whose bright blobs are segmented, and the labels ``(1, …)`` are that
        compartment (``"nuclei"`` for a nuclear stain). The default, ``"objects"``, says
        nothing about the stain: this method finds blobs of any stain, and on a cytoplasmic
        or punctate stain they may be whole cells or sub-cellular structures, so calling
        them nuclei (CellProfiler's habit) would mislabel every feature column
        (``Objects_AreaShape_Area``, not ``Nuclei_AreaShape_Area``).
    diameter
        Expected nucleus diameter in pixels; ``None`` estimates it per field with
        :func:`estimate_diameter` (on the Z maximum projection for 3D fields) and refines
        it from a first segmentation.
    smoothing
        Gaussian denoising sigma, in diameters.
    split_depth
        Relative intensity dip between two touching nuclei that splits them (0.05: the
        valley is 5 % darker than the dimmer peak).
    shape_weight
        Weight of the distance to the edge (in diameters) against the log intensity in
        the splitting watershed; 0 splits by intensity only.
    edge_fraction
        A nucleus ends where its intensity falls below this fraction of the brightest
        (smoothed) intensity within half a diameter, above the background.
    threshold_fraction
        Foreground pixels are at least this fraction of the way from the background to
        the field's Otsu threshold (and 3 noise sigmas above the background).
    min_contrast
        Least Weber contrast of a nucleus: its mean signal over its local pedestal (the
        glow around it above the field's darkest level); dimmer objects are out of focus.
    min_area
        Least area (volume in 3D) of a nucleus, as a fraction of a disc (ball) of the
        diameter.
    cell_threshold_fraction
        Cytoplasm foreground: pixels at least this fraction of the way from the
        background to the cytoplasm channel's Otsu threshold.

    Examples
    --------
    >>> from cellscale.synthetic import blob_field
    >>> labels = ClassicalSegmenter()(blob_field((128, 128), blobs=6))
    >>> labels.shape, labels.dtype, int(labels.max())
    ((1, 128, 128), dtype('uint32'), 6)
    >>> ClassicalSegmenter().compartments, ClassicalSegmenter(compartment="nuclei").compartments
    (('objects',), ('nuclei',))
    >>> cells = ClassicalSegmenter(compartment="cells")(blob_field((128, 128), channels=2))
    >>> cells.shape, int(cells[0].max()), bool(((cells[1] > 0) <= (cells[0] == cells[1])).all())
    ((2, 128, 128), 6, True)
    """

    def __init__(
        self,
        *,
        compartment: str = OBJECTS,
        diameter: float | None = None,
        smoothing: float = 0.05,
        split_depth: float = 0.05,
        shape_weight: float = 2.0,
        edge_fraction: float = 0.35,
        threshold_fraction: float = 0.3,
        min_contrast: float = 0.5,
        min_area: float = 0.1,
        cell_threshold_fraction: float = 0.5,
    ) -> None:
        if not (compartment.isascii() and compartment.isalnum() and compartment[:1].isalpha()):
            raise ValueError(
                f"compartment must be a name of letters and digits ('cells', 'nuclei', "
                f"'objects' …), got {compartment!r}"
            )
        if diameter is not None and not diameter > 0:
            raise ValueError(f"diameter must be positive or None, got {diameter}")
        self.compartment = compartment
        self.compartments = ("cells", "nuclei") if compartment == "cells" else (compartment,)
        self.diameter = diameter
        self.smoothing = smoothing
        self.split_depth = split_depth
        self.shape_weight = shape_weight
        self.edge_fraction = edge_fraction
        self.threshold_fraction = threshold_fraction
        self.min_contrast = min_contrast
        self.min_area = min_area
        self.cell_threshold_fraction = cell_threshold_fraction

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Labels ``(len(compartments), *image.shape[1:])`` ``uint32`` of one field."""
        image = np.asarray(image)
        channels = len(self.compartments)
        if image.ndim not in (3, 4) or image.shape[0] != channels:
            raise ValueError(
                f"compartment {self.compartment!r} takes a ({channels}, y, x) or "
                f"({channels}, z, y, x) image, got shape {image.shape}"
            )
        nuclei = self.segment_nuclei(image[-1])
        if self.compartment != "cells":
            return nuclei[np.newaxis]
        cells = self._cells(image[0].astype(np.float32), nuclei)
        return np.stack([cells, nuclei])

    def segment_nuclei(self, image: np.ndarray) -> np.ndarray:
        """``uint32`` labels ``1 … n`` of the nuclei of one 2D or 3D nuclear-stain image.

        Non-finite pixels count as the darkest finite value.
        """
        values = np.asarray(image, dtype=np.float32)
        empty = np.zeros(values.shape, dtype=np.uint32)
        finite = np.isfinite(values)
        if not finite.any():
            return empty
        if not finite.all():
            values = np.where(finite, values, values[finite].min())
        if values.max() <= values.min():
            return empty
        if self.diameter is not None:
            return relabel_consecutive(self._nuclei(values, float(self.diameter)))
        guess = estimate_diameter(values.max(axis=0) if values.ndim == 3 else values)
        if not np.isfinite(guess):
            return empty
        labels = self._nuclei(values, guess)
        sizes = np.bincount(labels.ravel())[1:]
        sizes = sizes[sizes > 0]
        if len(sizes):
            measured = _equivalent_diameter(float(np.median(sizes)), values.ndim)
            if abs(np.log(measured / guess)) > np.log1p(_REFINE_TOLERANCE):
                labels = self._nuclei(values, measured)
        return relabel_consecutive(labels)

    def _nuclei(self, image: np.ndarray, diameter: float) -> np.ndarray:
        """Labels (not consecutive) of the nuclei of ``image`` for a given diameter."""
        field = _field(image, diameter, self.smoothing, self.threshold_fraction)
        if field.signal.max() <= field.threshold:
            return np.zeros(image.shape, dtype=np.int32)
        seeds = ndi.gaussian_filter(field.signal, _SEED_SMOOTHING * diameter)
        nearby_peak = ndi.maximum_filter(seeds, size=max(3, round(diameter) | 1))
        edge = field.level + self.edge_fraction * (nearby_peak - field.level)
        mask = (field.signal > field.threshold) & (field.signal > edge)
        # the noise floor keeps the log finite and flattens dips in the dimmest objects
        log_seeds = np.log(np.maximum(seeds - field.level, 0) + _FOREGROUND_SIGMAS * field.noise)
        labels = self._split(mask, log_seeds.astype(np.float32), diameter)
        return _fill_holes(self._reject(labels, field, diameter))

    def _reject(self, labels: np.ndarray, field: _Field, diameter: float) -> np.ndarray:
        """Objects too small, too faint over the noise, or of too low local contrast removed."""
        n = int(labels.max())
        if not n:
            return labels
        sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        contrast = _label_mean(field.signal, labels, n) - field.level
        darkest = float(np.percentile(field.smooth, 1))
        glow = np.maximum(_label_mean(field.pedestal, labels, n) - darkest, 0)
        weber = contrast / (glow + _OBJECT_SIGMAS * field.noise)
        keep = (
            (sizes >= self.min_area * _expected_size(diameter, labels.ndim))
            & (contrast > _OBJECT_SIGMAS * field.noise)
            & (weber >= self.min_contrast)
        )
        return np.concatenate([[0], np.where(keep, np.arange(1, n + 1), 0)])[labels]

    def _split(self, mask: np.ndarray, log_seeds: np.ndarray, diameter: float) -> np.ndarray:
        """Objects of ``mask`` by a watershed of the log intensity plus the scaled edge distance."""
        if not mask.any():
            return np.zeros(mask.shape, dtype=np.int32)
        landscape = log_seeds
        if self.shape_weight > 0:
            distance = ndi.gaussian_filter(ndi.distance_transform_edt(mask), 1.0)
            landscape = landscape + (self.shape_weight / diameter) * distance.astype(np.float32)
        return _seeded_watershed(landscape, mask, float(np.log1p(self.split_depth)))

    def _cells(self, cytoplasm: np.ndarray, nuclei: np.ndarray) -> np.ndarray:
        """Cells grown from ``nuclei`` over the cytoplasm channel's foreground."""
        if not nuclei.any():
            return np.zeros(nuclei.shape, dtype=np.uint32)
        sizes = np.bincount(nuclei.ravel())[1:]
        diameter = _equivalent_diameter(float(np.median(sizes)), nuclei.ndim)
        smooth = _denoise(cytoplasm, self.smoothing * diameter)
        foreground = nuclei > 0
        if smooth.max() > smooth.min():
            otsu = float(threshold_otsu(smooth))
            level = float(np.median(smooth[smooth <= otsu]))
            foreground |= smooth > level + self.cell_threshold_fraction * (otsu - level)
        cells = watershed(-smooth, nuclei.astype(np.int32), mask=foreground)
        return cells.astype(np.uint32)
