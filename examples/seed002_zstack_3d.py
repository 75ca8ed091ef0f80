"""A 3D network on single-cell crops of Z stacks, trained and tested on disjoint wells.

The reference workflow (seed 002): cells of 3D Cell Painting Z stacks are segmented, a
3D crop is cut around each cell through every plane, and a 3D convolutional network is
trained to predict each cell's treatment, on one set of wells and tested on others (so
that it cannot recognise a well instead of a treatment).

Here the plates are synthetic Z stacks (each field has its own focal plane, and planes
away from it are blurred): a control (DMSO) and 10 µM of a compound that makes cells
larger, longer and fewer. The Z stacks are stored as they are (``raw.zarr``, as a run
ingests them); their maximum projection is segmented and measured, and the cell table's
2D centres cut crops through all the planes of the Z stack. :func:`cellscale.train`
trains ``r3d_18`` (z as the network's time axis) on ``(channels, z, y, x)`` crops of
the training wells and prints its accuracy on the wells it never saw, next to chance.

    python examples/seed002_zstack_3d.py --out seed002-output          # 4 plates, 6 planes
    python examples/seed002_zstack_3d.py --out seed002-small --small   # 1 plate, minutes

``r3d_18`` keeps full resolution through its stem, so it costs about 50 times a 2D
ResNet-18 per crop: the full design wants a GPU (``device="auto"`` takes one). Images are
at 2 µm per pixel (a 10x objective), so cells are about 10 pixels across.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import cellscale
from cellscale.synthetic import default_plate_map, synthetic_plate

LABEL = "concentration"  # DMSO (0) or 10 µM


def screen_design(*, small: bool = False) -> dict[str, Any]:
    """The screen's size: plates, wells, fields, planes, crops and epochs."""
    if small:
        return {
            "plates": 1,
            "wells": 16,
            "fields": 2,
            "planes": 3,
            "shape": 80,
            "crop": 16,
            "epochs": 3,
        }
    return {
        "plates": 4,
        "wells": 24,
        "fields": 4,
        "planes": 6,
        "shape": 256,
        "crop": 24,
        "epochs": 15,
    }


def write_screen(folder: Path, *, small: bool = False, seed: int = 0) -> list[dict[str, Any]]:
    """Write each plate's Z stacks and projection, segment and measure the projection.

    Returns
    -------
    list of dict
        The plates as :func:`cellscale.train` reads them: crops are cut from ``plate``
        (the Z stacks) around the cells of ``cells``, masked by the labels in ``labels``.
    """
    design = screen_design(small=small)
    folder.mkdir(parents=True, exist_ok=True)
    source = []
    for i in range(design["plates"]):
        name = f"zstack-{i + 1}"
        plate = synthetic_plate(
            design["wells"],
            fields=design["fields"],
            n_z=design["planes"],
            t_hours=[72.0],
            shape=(design["shape"],) * 2,
            cells_per_field=30.0 * (design["shape"] / 128) ** 2,
            plate_map=default_plate_map(design["wells"], concentrations=[10.0]),
            pixel_size_um=2.0,
            seed=seed + i,
            name=name,
        )
        raw, projected = folder / f"{name}-raw.zarr", folder / f"{name}-projected.zarr"
        cells = folder / f"{name}-cells.parquet"
        cellscale.write_plate(plate, raw, progress=False)
        cellscale.write_plate(
            cellscale.project(cellscale.open_plate(raw), "max"), projected, progress=False
        )
        labels = cellscale.segment(
            cellscale.open_plate(projected),
            "classical",
            channel="cytoplasm",
            nuclei_channel="nuclei",
        )
        cellscale.write_labels(labels, projected, progress=False)
        cellscale.write_cells(
            cellscale.open_labels(projected), cellscale.open_plate(projected), cells, progress=False
        )
        source.append({"plate": raw, "cells": cells, "labels": projected, "name": name})
    return source


def train_3d(source: list[dict[str, Any]], out: Path, *, small: bool = False, seed: int = 0) -> Any:
    """``r3d_18`` on 3D crops of the training wells, evaluated on the held-out wells."""
    design = screen_design(small=small)
    return cellscale.train(
        source,
        out,
        label=LABEL,
        split={"test": 0.25, "validation": 0.0, "seed": seed},  # by well
        size=design["crop"],
        model="r3d_18",
        epochs=design["epochs"],
        batch_size=16,
        seed=seed,
        progress=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("seed002-output"))
    parser.add_argument("--small", action="store_true", help="1 small plate: minutes on a laptop")
    args = parser.parse_args()
    source = write_screen(args.out / "plates", small=args.small)
    training = train_3d(source, args.out / "model", small=args.small)
    print(training)
    test = training.evaluation["metrics"].set_index("split").loc["test"]
    print(
        f"control vs 10 µM on {int(test['n'])} cells of {int(test['n_wells'])} held-out wells: "
        f"{test['balanced_accuracy']:.1%} balanced accuracy (chance {test['chance']:.0%}), "
        f"{test['accuracy']:.1%} correct (majority class {test['majority']:.0%})"
    )


if __name__ == "__main__":
    main()
