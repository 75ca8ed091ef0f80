"""Nucleus segmentation accuracy of the classical segmenter on real, manually annotated fields.

Usage::

    python benchmarks/bench_segment_accuracy.py [--data ../shared/data/real] [--worst 5]

Runs :class:`cellscale.segmentation.ClassicalSegmenter` with its defaults (diameter estimated
per field) on every image of two datasets with manual instance ground truth:

- ``bbbc039_u2os_nuclei``: U2OS nuclei (Hoechst), 520 × 696 uint16 (12-bit), 20x;
- ``dsb2018_fluo_nuclei``: the fluorescence images of the Data Science Bowl 2018 training
  set, 8-bit, many cell types, sizes and magnifications.

and, in the same run, a plain baseline: Otsu threshold of the image smoothed by a Gaussian
of 2 pixels, holes filled, objects under a tenth of a nucleus's area dropped, then a
watershed of the distance transform from its peaks at least a third of a diameter apart,
the diameter coming from :func:`cellscale.segmentation.estimate_diameter` as for the segmenter.

Per dataset and method it prints: the number of images, F1 at IoU 0.5 from true/false
positives and false negatives pooled over all images, the mean per-image F1 at IoU 0.5,
the DSB 2018 mean average precision (the mean over images of the mean over IoU
thresholds 0.5 … 0.95 of tp / (tp + fp + fn)), and seconds per megapixel of
segmentation alone (reading and scoring excluded), on one thread.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.io import imread
from skimage.segmentation import watershed
from threadpoolctl import threadpool_limits

from cellscale.segmentation._classical import ClassicalSegmenter, estimate_diameter
from cellscale.segmentation._metrics import MatchCounts, dsb_score, match_counts

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("bbbc039_u2os_nuclei", "dsb2018_fluo_nuclei")

Image = tuple[str, np.ndarray, np.ndarray]  # name, 2D image, instance labels


def bbbc039(folder: Path) -> Iterator[Image]:
    """BBBC039 fields and their labels (``images/*.tif``, ``labels/<same name>``)."""
    for path in sorted((folder / "images").glob("*.tif")):
        yield path.stem, tifffile.imread(path), tifffile.imread(folder / "labels" / path.name)


def dsb2018(folder: Path) -> Iterator[Image]:
    """DSB 2018 images (RGBA PNG holding grey) and their labels (``<id>/label.tif``)."""
    for sample in sorted(p for p in folder.iterdir() if p.is_dir()):
        image = imread(sample / "images" / f"{sample.name}.png")
        grey = image[..., 0] if image.ndim == 3 else image
        yield sample.name, grey, tifffile.imread(sample / "label.tif")


READERS: dict[str, Callable[[Path], Iterator[Image]]] = {
    "bbbc039_u2os_nuclei": bbbc039,
    "dsb2018_fluo_nuclei": dsb2018,
}


def otsu_watershed(image: np.ndarray) -> np.ndarray:
    """The baseline: Otsu, then a distance-transform watershed scaled by the estimated diameter."""
    diameter = estimate_diameter(image)
    smooth = ndi.gaussian_filter(image.astype(np.float32), 2.0)
    if not np.isfinite(diameter) or smooth.max() <= smooth.min():
        return np.zeros(image.shape, dtype=np.int32)
    foreground = ndi.binary_fill_holes(smooth > threshold_otsu(smooth))
    components, n = ndi.label(foreground)
    sizes = np.bincount(components.ravel(), minlength=n + 1)
    large = sizes >= 0.1 * np.pi * diameter**2 / 4
    large[0] = False
    foreground = large[components]
    distance = ndi.distance_transform_edt(foreground)
    peaks = peak_local_max(
        distance,
        min_distance=max(1, round(diameter / 3)),
        labels=components * foreground,
        exclude_border=False,
    )
    markers = np.zeros(image.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=foreground)


@dataclass
class Score:
    """Accumulated accuracy and time of one method on one dataset."""

    pooled: MatchCounts = field(default_factory=lambda: MatchCounts(0, 0, 0))
    f1: list[float] = field(default_factory=list)
    dsb: list[float] = field(default_factory=list)
    seconds: float = 0.0
    megapixels: float = 0.0
    per_image: list[tuple[float, str, MatchCounts]] = field(default_factory=list)

    def add(self, name: str, truth: np.ndarray, labels: np.ndarray, seconds: float) -> None:
        counts = match_counts(truth, labels)
        self.pooled += counts
        self.f1.append(counts.f1)
        self.dsb.append(dsb_score(truth, labels))
        self.seconds += seconds
        self.megapixels += truth.size / 1e6
        self.per_image.append((counts.f1, name, counts))

    def row(self, method: str) -> str:
        return (
            f"  {method:<26} {len(self.f1):>6} {self.pooled.f1:>10.4f} {np.mean(self.f1):>12.4f} "
            f"{np.mean(self.dsb):>8.4f} {self.pooled.precision:>9.3f} {self.pooled.recall:>7.3f} "
            f"{self.seconds / self.megapixels:>6.2f}"
        )


def evaluate(
    images: Iterator[Image], methods: dict[str, Callable[[np.ndarray], np.ndarray]]
) -> dict[str, Score]:
    scores = {method: Score() for method in methods}
    for name, image, truth in images:
        for method, segment in methods.items():
            start = time.perf_counter()
            labels = segment(image)
            scores[method].add(name, truth, labels, time.perf_counter() - start)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "data" / "real",
        help="folder holding the datasets (default: ../shared/data/real from the repository)",
    )
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--worst", type=int, default=0, help="also list the N worst images")
    args = parser.parse_args()

    segmenter = ClassicalSegmenter()
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "ClassicalSegmenter": lambda image: segmenter(image[np.newaxis])[0],
        "baseline Otsu + distance": otsu_watershed,
    }
    header = (
        f"  {'method':<26} {'images':>6} {'F1@0.5':>10} {'mean F1@0.5':>12} "
        f"{'DSB mAP':>8} {'precision':>9} {'recall':>7} {'s/MP':>6}"
    )
    with threadpool_limits(1):
        for dataset in args.datasets:
            scores = evaluate(READERS[dataset](args.data / dataset), methods)
            print(f"\n{dataset}  (F1@0.5 pools tp/fp/fn over all images)")
            print(header)
            for method, score in scores.items():
                print(score.row(method))
            for method, score in scores.items():
                for f1, name, counts in sorted(score.per_image)[: args.worst]:
                    print(f"    worst {method}: {name} F1={f1:.3f} {counts}")


if __name__ == "__main__":
    main()
