"""How long building a synthetic plate's graph takes (nothing is drawn: building is lazy).

Usage::

    python benchmarks/bench_synthetic.py [--repeats 5]

Builds a 384-well × 9-field × 5-channel plate of 1080 × 1080 images (17,280 tasks) and its
labels, ``repeats`` times after one warm-up build, and prints the median and the fastest
build, and the time per task. The tests pin the graph's shape (one layer, one plain task
per image, no pixels in it); this script is where its time is measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

PLATE = {"wells": 384, "plate_format": 384, "fields": 9, "channels": 5, "shape": (1080, 1080)}


def _build() -> tuple[float, float, int]:
    from cellscale.synthetic import synthetic_labels, synthetic_plate

    start = time.perf_counter()
    plate = synthetic_plate(**PLATE)
    built = time.perf_counter()
    synthetic_labels(plate)
    return built - start, time.perf_counter() - built, plate.data.npartitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    _build()  # imports and caches warmed
    runs = [_build() for _ in range(args.repeats)]
    plates = [r[0] for r in runs]
    result = {
        "tasks": runs[0][2],
        "plate_median_s": round(statistics.median(plates), 3),
        "plate_fastest_s": round(min(plates), 3),
        "labels_median_s": round(statistics.median(r[1] for r in runs), 3),
        "us_per_task": round(1e6 * statistics.median(plates) / runs[0][2], 1),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
