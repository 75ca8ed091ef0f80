"""Three-channel crops, CNN embeddings, UMAP and outliers: finding the artefacts of a screen.

The reference workflow (seed 004): MCF-7 cells stained for DNA, tubulin and actin
(BBBC021) are embedded by a CNN, the embeddings are mapped with UMAP to look at the screen,
and the images whose embeddings lie far from the others are inspected as artefacts or
novel phenotypes.

Here the screen is synthetic: plates of three stains (nuclei, cytoplasm, membrane) in a
dose series, where some wells are spoiled as a microscope spoils them
(:func:`cellscale.synthetic.with_artefacts`): over-exposed wells on one plate, dust on
another. One ``cellscale.run`` segments and measures the cells, trains a ResNet-18 on
their three-channel crops to tell treated from control cells (seed 004 trains on the
mechanism of action), embeds every cell with it, fits the PCA and, with ``analysis:``,
maps the cells with UMAP, scores every cell by its distance to its neighbours of other
wells and every well against its plate's wells, and writes a report with an interactive
page where each point opens its cell. The example prints the most outlying wells next to
the wells that were spoiled.

    python examples/seed004_outliers.py --out seed004-output          # 2 plates of 24 wells
    python examples/seed004_outliers.py --out seed004-small --small   # minutes

Open ``<out>/run/report/index.html`` for the figures and ``report/explore/index.html``
for the cells.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

import cellscale
from cellscale.synthetic import default_plate_map, synthetic_plate, with_artefacts

CHANNELS = {"DNA": "nuclei", "tubulin": "cytoplasm", "actin": "membrane"}
#: Which wells of which plate are spoiled (their positions in the plate's wells), and how.
SPOILED = {"P1": ("saturated", (2, 7)), "P2": ("debris", (4, 9))}


def screen_design(*, small: bool = False) -> dict[str, Any]:
    """The screen's size: wells per plate, fields, image size, crops and epochs."""
    if small:
        return {"wells": 12, "fields": 1, "shape": 128, "crop": 32, "epochs": 2}
    return {"wells": 24, "fields": 2, "shape": 256, "crop": 48, "epochs": 6}


def write_plates(folder: Path, *, small: bool = False) -> tuple[dict[str, Path], set[Any]]:
    """Each plate, spoiled where :data:`SPOILED` says, as a store; the spoiled wells."""
    design = screen_design(small=small)
    folder.mkdir(parents=True, exist_ok=True)
    stores, spoiled_wells = {}, set()
    for seed, (name, (kind, positions)) in enumerate(SPOILED.items()):
        plate = synthetic_plate(
            design["wells"],
            fields=design["fields"],
            n_z=1,
            channels=CHANNELS,
            shape=(design["shape"],) * 2,
            cells_per_field=18.0 * (design["shape"] / 128) ** 2,
            plate_map=default_plate_map(design["wells"]),
            seed=seed,
            name=name,
        )
        wells = [str(plate.coords["well"].values[i]) for i in positions]
        spoiled, _ = with_artefacts(plate, wells, kind, seed=seed)
        stores[name] = folder / f"{name}.zarr"
        cellscale.write_plate(spoiled, stores[name], progress=False)
        spoiled_wells |= {(name, well) for well in wells}
    return stores, spoiled_wells


def run_config(stores: dict[str, Path], out: Path, *, small: bool = False) -> dict[str, Any]:
    """The run: segment, train on the treatments, embed, PCA, analyse, report."""
    design = screen_design(small=small)
    return {
        "output": str(out),
        "plates": [{"name": name, "zarr": str(store)} for name, store in stores.items()],
        "segment": {"channel": "tubulin", "nuclei_channel": "DNA"},
        "crops": {"size": design["crop"], "mask": "soft"},
        "embed": {"model": "resnet18", "batch_size": 32},
        "train": {
            "enabled": True,
            "label": "treatment",
            "epochs": design["epochs"],
            "batch_size": 32,
            "split": {"test": 0.25, "validation": 0.0},
        },
        "pca": {"n_components": 8},
        "profiles": {"controls": "Metadata_treatment == 'DMSO'"},
        "analysis": {"enabled": True, "outlier_k": 10, "page_cells": 1000},
    }


def outlying_wells(out: Path, spoiled: set[Any]) -> pd.DataFrame:
    """The run's wells, most outlying first, with whether each was spoiled."""
    wells = pd.read_parquet(out / "analysis" / "wells.parquet")
    keys = zip(wells["Metadata_Plate"], wells["Metadata_Well"], strict=True)
    wells["spoiled"] = [key in spoiled for key in keys]
    columns = ["Metadata_Plate", "Metadata_Well", "Outlier_robust_z", "spoiled"]
    return wells.sort_values("Outlier_robust_z", ascending=False)[columns]


def main() -> None:
    """Write the plates, run the screen and print its most outlying wells."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("seed004-output"))
    parser.add_argument("--small", action="store_true", help="a small screen, in minutes")
    args = parser.parse_args()
    stores, spoiled = write_plates(args.out / "plates", small=args.small)
    summary = cellscale.run(run_config(stores, args.out / "run", small=args.small))
    print(summary)
    ranked = outlying_wells(args.out / "run", spoiled)
    n = len(spoiled)
    found = int(ranked.head(n)["spoiled"].sum())
    print(ranked.head(2 * n).to_string(index=False))
    print(f"{found} of the {n} spoiled wells are the {n} most outlying wells")


if __name__ == "__main__":
    main()
