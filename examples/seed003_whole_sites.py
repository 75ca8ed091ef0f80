"""A six-channel classifier of whole sites, tested on a batch it never saw.

The reference workflow (seed 003, the RxRx1 / CellSignal challenge): each site (field) is
a six-channel image (nucleus, endoplasmic reticulum, actin, nucleoli, mitochondria,
Golgi); a ResNet classifies the whole site by its perturbation, with no segmentation,
and is scored on experiments (batches) held out of training.

Here the plates are synthetic, in three batches with their own channel gains, offsets and
texture (:func:`cellscale.synthetic.with_batch_effect`), each a control (DMSO) and
10 µM of a compound that makes cells larger, longer and fewer. The synthetic cells have
five stains (``cellscale.synthetic.CHANNEL_KINDS``), so the six channels are six names
mapped onto them: the nucleoli channel shows the nuclear stain again (with its own
noise and batch shift) and the Golgi channel the cytoplasmic one. :func:`cellscale.train`
with ``inputs="fields"`` trains a six-channel ResNet-18 on whole sites, block-averaged
by ``downsample``, of two batches, and prints its accuracy on the third next to chance.

    python examples/seed003_whole_sites.py --out seed003-output          # 6 plates, 20 epochs
    python examples/seed003_whole_sites.py --out seed003-small --small   # 3 plates, minutes

There are few samples (one per site), so the label is kept easy (control against a
saturating dose) and the small run holds 3 plates of 16 wells of 4 sites.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import cellscale
from cellscale.synthetic import default_plate_map, synthetic_screen_plates

#: The six channels of the reference workflow and the synthetic stain each shows.
CHANNELS = {
    "DNA": "nuclei",
    "ER": "er",
    "actin": "membrane",
    "RNA": "nuclei",
    "mito": "mito",
    "golgi": "cytoplasm",
}
BATCHES = ("batch1", "batch2", "batch3")
HELD_OUT = "batch3"
LABEL = "concentration"  # DMSO (0) or 10 µM


def screen_design(*, small: bool = False) -> dict[str, Any]:
    """The screen's size: plates per batch, wells, sites, image size, block size and epochs."""
    if small:
        return {
            "plates_per_batch": 1,
            "wells": 16,
            "fields": 4,
            "shape": 128,
            "downsample": 2,
            "epochs": 8,
        }
    return {
        "plates_per_batch": 2,
        "wells": 32,
        "fields": 6,
        "shape": 512,
        "downsample": 4,
        "epochs": 20,
    }


def write_screen(folder: Path, *, small: bool = False, seed: int = 0) -> list[dict[str, Any]]:
    """Write the batches' six-channel plates; the plates as :func:`cellscale.train` reads them."""
    design = screen_design(small=small)
    plates = synthetic_screen_plates(
        design["plates_per_batch"] * len(BATCHES),
        [b for b in BATCHES for _ in range(design["plates_per_batch"])],
        seed=seed,
        name="sites",
        wells=design["wells"],
        fields=design["fields"],
        n_z=1,
        t_hours=[72.0],
        channels=CHANNELS,
        shape=(design["shape"],) * 2,
        cells_per_field=30.0 * (design["shape"] / 128) ** 2,
        plate_map=default_plate_map(design["wells"], concentrations=[10.0]),
        pixel_size_um=2.0,
    )
    folder.mkdir(parents=True, exist_ok=True)
    source = []
    for plate in plates:
        store = folder / f"{plate.name}.zarr"
        cellscale.write_plate(cellscale.project(plate, "max"), store, progress=False)
        source.append({"plate": store, "name": str(plate.name)})
    return source


def train_sites(
    source: list[dict[str, Any]], out: Path, *, small: bool = False, seed: int = 0
) -> Any:
    """A six-channel ResNet-18 on whole sites of the batches other than :data:`HELD_OUT`."""
    design = screen_design(small=small)
    return cellscale.train(
        source,
        out,
        label=LABEL,
        domain="Batch",
        inputs="fields",
        downsample=design["downsample"],
        split={"hold_out": {"Batch": [HELD_OUT]}, "seed": seed},
        epochs=design["epochs"],
        batch_size=16,
        seed=seed,
        progress=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("seed003-output"))
    parser.add_argument("--small", action="store_true", help="3 small plates: minutes on a laptop")
    args = parser.parse_args()
    source = write_screen(args.out / "plates", small=args.small)
    training = train_sites(source, args.out / "model", small=args.small)
    print(training)
    unseen = training.evaluation["metrics"].set_index("split").loc["held-out"]
    print(
        f"control vs 10 µM on {int(unseen['n'])} sites of the unseen {HELD_OUT}: "
        f"{unseen['balanced_accuracy']:.1%} balanced accuracy (chance {unseen['chance']:.0%}), "
        f"{unseen['accuracy']:.1%} correct (majority class {unseen['majority']:.0%})"
    )


if __name__ == "__main__":
    main()
