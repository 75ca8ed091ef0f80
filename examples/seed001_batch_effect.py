"""An autoencoder-classifier with and without a domain-adversarial head, tested on an unseen batch.

The reference workflow (seed 001): cells imaged on several days (batches) are compressed
by an autoencoder-classifier that also predicts each cell's class; a domain-adversarial
variant adds a classifier of the batch behind a gradient-reversal layer, so that the
features stop encoding the imaging day. Some days are held out entirely as "unseen
batches" to test whether the models generalise, and the features are checked for how
well they still tell the batches apart.

Here the screen is synthetic: plates in three batches, each batch with its own channel
gains, offsets and a faint fixed texture (:func:`cellscale.synthetic.with_batch_effect`),
every plate a control (DMSO) and 10 µM of a compound that makes cells larger, longer
and fewer. The cells are segmented and measured, then both models are trained with
:func:`cellscale.train` on crops of the cells of two batches to tell control from
treated cells, and tested on the third. The example prints each model's accuracy on the
unseen batch next to chance, and how well its features predict the batch of the cells
it did not train on (nearest-centroid on held-out wells, all three batches; chance 1/3).

    python examples/seed001_batch_effect.py --out seed001-output          # 6 plates, 15 epochs
    python examples/seed001_batch_effect.py --out seed001-small --small   # 3 plates, minutes

The label is deliberately easy at this size (control against a saturating dose): the
point is the comparison of the two models on a batch neither has seen, not the label.
Each crop is normalised to zero mean and unit variance per channel, which removes most
of a batch's gain and offset; what is left of the batch is its texture, which crops
keep unmasked (``mask="none"``). At ``--small`` both models classify the unseen batch
well above chance and neither model's features predict the batch better than chance,
so the adversarial head has little to remove; ``--strength`` makes the batch effect
stronger. Images are at 2 µm per pixel (a 10x objective), so cells are about 10 pixels
across.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import cellscale
from cellscale.synthetic import default_plate_map, synthetic_screen_plates

BATCHES = ("batch1", "batch2", "batch3")
HELD_OUT = "batch3"
LABEL = "concentration"  # DMSO (0) or 10 µM
STRENGTH = 1.0  # of the batch effect: 1 is clear but realistic
MASK = "none"  # crops keep the background, where a batch's texture shows
MODELS = {
    "autoencoder-classifier": {"reconstruction": 1.0, "adversarial": 0.0},
    "domain-adversarial": {"reconstruction": 1.0, "adversarial": 1.0},
}


def screen_design(*, small: bool = False) -> dict[str, Any]:
    """The screen's size: plates per batch, wells, fields, crops and epochs."""
    if small:
        return {
            "plates_per_batch": 1,
            "wells": 8,
            "fields": 2,
            "shape": 128,
            "crop": 24,
            "epochs": 4,
        }
    return {"plates_per_batch": 2, "wells": 16, "fields": 4, "shape": 256, "crop": 24, "epochs": 15}


def write_screen(
    folder: Path, *, small: bool = False, strength: float = STRENGTH, seed: int = 0
) -> list[dict[str, Path]]:
    """Write, segment and measure the batches' plates; the source :func:`cellscale.train` reads."""
    design = screen_design(small=small)
    plates = synthetic_screen_plates(
        design["plates_per_batch"] * len(BATCHES),
        [b for b in BATCHES for _ in range(design["plates_per_batch"])],
        strength=strength,
        seed=seed,
        wells=design["wells"],
        fields=design["fields"],
        n_z=1,
        t_hours=[72.0],
        shape=(design["shape"],) * 2,
        cells_per_field=30.0 * (design["shape"] / 128) ** 2,
        plate_map=default_plate_map(design["wells"], concentrations=[10.0]),
        pixel_size_um=2.0,
    )
    folder.mkdir(parents=True, exist_ok=True)
    source = []
    for plate in plates:
        store, cells = folder / f"{plate.name}.zarr", folder / f"{plate.name}-cells.parquet"
        cellscale.write_plate(cellscale.project(plate, "max"), store, progress=False)
        labels = cellscale.segment(
            cellscale.open_plate(store), "classical", channel="cytoplasm", nuclei_channel="nuclei"
        )
        cellscale.write_labels(labels, store, progress=False)
        cellscale.write_cells(
            cellscale.open_labels(store), cellscale.open_plate(store), cells, progress=False
        )
        source.append({"plate": store, "cells": cells})
    return source


def train_models(
    source: list[dict[str, Path]], out: Path, *, small: bool = False, seed: int = 0
) -> dict[str, Any]:
    """Both models, trained on the batches other than :data:`HELD_OUT`."""
    design = screen_design(small=small)
    return {
        name: cellscale.train(
            source,
            out / name,
            label=LABEL,
            domain="Batch",
            split={"hold_out": {"Batch": [HELD_OUT]}, "seed": seed},
            size=design["crop"],
            mask=MASK,
            epochs=design["epochs"],
            batch_size=32,
            seed=seed,
            progress=False,
            reconstruction=heads["reconstruction"],
            adversarial=heads["adversarial"],
        )
        for name, heads in MODELS.items()
    }


def batch_from_features(training: Any, source: list[dict[str, Path]], *, crop: int) -> float:
    """How well the model's features tell apart the batches of the screen's cells (chance 1/3).

    The features of every cell (the wells trained on and the unseen batch) less the mean
    of their class, so that the score measures the batch and not the classes' share of
    each batch's wells; then nearest centroids fitted on half of each batch's wells and
    scored on the others (:func:`cellscale.learning.domain_predictability`), averaged
    over five such halvings.
    """
    from cellscale.learning import CellDataset, ScreenDataset, domain_predictability, predict

    screen = ScreenDataset(
        [
            CellDataset(
                plate["plate"],
                cellscale.read_cells(plate["cells"]),
                LABEL,
                size=crop,
                mask=MASK,
                labels=plate["plate"],
                domain="Batch",
                classes=training.classes,
                domains=training.domains,
            )
            for plate in source
        ]
    )
    _, features = predict(training.model, screen)
    for label in np.unique(screen.targets):
        features[screen.targets == label] -= features[screen.targets == label].mean(axis=0)
    rows = screen.rows
    wells = (
        rows["Metadata_Plate"].astype(str) + "/" + rows["Metadata_Well"].astype(str)
    ).to_numpy()
    batches = rows["domain"].to_numpy()
    return float(
        np.mean([domain_predictability(features, batches, groups=wells, seed=s) for s in range(5)])
    )


def compare(trainings: dict[str, Any], source: list[dict[str, Path]], *, crop: int) -> pd.DataFrame:
    """Each model's accuracy on the unseen batch, and how well its features predict the batch."""
    rows = []
    for name, training in trainings.items():
        metrics = training.evaluation["metrics"].set_index("split")
        unseen = metrics.loc["held-out"]
        rows.append(
            {
                "model": name,
                "unseen_cells": int(unseen["n"]),
                "accuracy": float(unseen["accuracy"]),
                "majority": float(unseen["majority"]),
                "balanced_accuracy": float(unseen["balanced_accuracy"]),
                "chance": float(unseen["chance"]),
                "batch_from_features": batch_from_features(training, source, crop=crop),
                "batch_chance": 1.0 / len(BATCHES),
            }
        )
    return pd.DataFrame(rows).set_index("model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("seed001-output"))
    parser.add_argument("--small", action="store_true", help="3 small plates: minutes on a laptop")
    parser.add_argument("--strength", type=float, default=STRENGTH, help="of the batch effect")
    args = parser.parse_args()
    source = write_screen(args.out / "plates", small=args.small, strength=args.strength)
    trainings = train_models(source, args.out / "models", small=args.small)
    table = compare(trainings, source, crop=screen_design(small=args.small)["crop"])
    seen = [b for b in BATCHES if b != HELD_OUT]
    print(f"control vs 10 µM, trained on {seen}, tested on the unseen {HELD_OUT}:")
    print(table.round(3).to_string())
    for name, row in table.iterrows():
        print(
            f"{name}: unseen batch {row['balanced_accuracy']:.1%} balanced accuracy "
            f"(chance {row['chance']:.0%}); batch from features {row['batch_from_features']:.1%} "
            f"(chance {row['batch_chance']:.0%})"
        )


if __name__ == "__main__":
    main()
