"""The dose × time × replicate screen of the reference workflow, as one cellscale run.

The reference workflow: 18 plates (6 time points × 3 replicates), each with 8 concentrations
× 9 fields × 6 Z planes × 5 channels → max projection → cells segmented on the cytoplasm
channel (seeded by the nuclei) with border cells dropped → count, size, roundness and
eccentricity per condition → 200 × 200 soft-masked crops → a ResNet-50 trained from scratch
on the crops to predict each cell's time point × concentration (weak labels: the condition of
its well, not of the cell; about 60 % accuracy there) → its embeddings → PCA with 20
components → scatter by time and by concentration. Here the plates are synthetic (cells
grow, elongate and dim with concentration and time since treatment) and the run does the
same in one config (its ``train`` section): it trains on a fifth of the wells held out per
condition, reports the network's accuracy on the held-out wells (``training/evaluation``,
and the report's Training section), embeds every cell with the trained weights and prints
the k-nearest-neighbour accuracy of concentration from PC1–5, trained on replicate 1 and
tested on the others, next to chance.

    python examples/seed000_screen.py --out seed000-output          # the full design
    python examples/seed000_screen.py --out seed000-small --small   # 4 small plates, minutes

The full design is 18 plates of 72 fields of 1080 × 1080 pixels (about 10 GB of pixels and
half a million cells); on a laptop's CPU training and embedding with ResNet-50 take days, on
a GPU worker hours. Nothing is downloaded: the network starts from random weights. For your
own screen replace ``synthetic:`` by ``folder:`` and ``plate_map:`` (docs/pipeline.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

import cellscale
from cellscale.profiles import knn_accuracy

HOURS = (6.0, 12.0, 24.0, 48.0, 72.0, 96.0)
CHANNELS = ("nuclei", "cytoplasm", "membrane", "mito", "er")


def screen_config(out: Path, *, small: bool = False) -> dict[str, Any]:
    """The run's config: plates for each time point and replicate (fewer and smaller if small)."""
    hours, replicates = (HOURS[2:4], 2) if small else (HOURS, 3)
    size, fields, planes = (256, 3, 3) if small else (1080, 9, 6)
    plates = [
        {
            "name": f"T{int(h):02d}h-rep{r}",
            "synthetic": {
                "wells": 8,  # DMSO and seven concentrations of one compound
                "fields": fields,
                "t_hours": [h],
                "planes": planes,
                "channels": list(CHANNELS[:2] if small else CHANNELS),
                "size": size,
                "cells_per_field": 25.0 * (size / 256) ** 2,
                "seed": 100 * r + i,
            },
            "metadata": {"hours": h, "rep": r},
        }
        for r in range(1, replicates + 1)
        for i, h in enumerate(hours)
    ]
    return {
        "output": str(out),
        "plates": plates,
        "project": {"method": "max"},
        "segment": {"channel": "cytoplasm", "nuclei_channel": "nuclei", "exclude_border": True},
        "crops": {"size": 48 if small else 200, "mask": "soft"},
        "embed": {"enabled": True, "model": "resnet18" if small else "resnet50", "batch_size": 64},
        "train": {
            "enabled": True,
            "label": ["hours", "concentration"],  # the weak label: the well's condition
            "epochs": 3 if small else 30,
            "batch_size": 64,
            "split": {"test": 0.2, "validation": 0.0 if small else 0.1},
        },
        "pca": {"n_components": 10 if small else 20},
        "profiles": {"controls": "Metadata_treatment == 'DMSO'"},
    }


def concentration_knn(out: Path, *, components: int = 5, k: int = 15) -> tuple[float, float]:
    """kNN accuracy of each cell's concentration from its first PCs: replicate 1 → the others."""
    plates = json.loads((out / "cellscale_run.json").read_text())["plates"]  # config order
    scores = [out / "plates" / p["name"] / "scores.parquet" for p in plates]
    cells = pd.concat([pd.read_parquet(p) for p in scores], ignore_index=True)
    pcs = [f"PC{i}" for i in range(1, components + 1)]
    train = (cells["Metadata_rep"] == 1).to_numpy()
    labels = cells["Metadata_concentration"].to_numpy()
    profiles = cells[pcs].to_numpy()
    return knn_accuracy(profiles[train], labels[train], profiles[~train], labels[~train], k=k)


def held_out_accuracy(out: Path) -> tuple[float, float]:
    """The trained network's accuracy on the held-out wells, and chance (1 / conditions)."""
    metrics = pd.read_parquet(out / "training" / "evaluation" / "metrics.parquet")
    test = metrics.set_index("split").loc["test"]
    return float(test["accuracy"]), float(test["chance"])


def per_condition(out: Path) -> pd.DataFrame:
    """Count, size, roundness and eccentricity per concentration and time (means of wells)."""
    tables = [
        cellscale.read_cells(p / "cells.parquet").compute() for p in (out / "plates").iterdir()
    ]
    wells = cellscale.well_summary(pd.concat(tables, ignore_index=True), compartment="cells")
    wells["hours"] = wells["Metadata_Timepoint"].astype(float) / 3600
    keys = ["Metadata_concentration", "hours"]
    columns = ["n_cells", "mean_area", "mean_roundness", "mean_eccentricity"]
    return wells.groupby(keys)[columns].mean().round(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("seed000-output"))
    parser.add_argument("--small", action="store_true", help="4 small plates: minutes on a laptop")
    args = parser.parse_args()
    summary = cellscale.run(screen_config(args.out, small=args.small))
    print(summary)
    print(per_condition(args.out).to_string())
    trained, guess = held_out_accuracy(args.out)
    print(
        f"time x concentration of held-out wells' cells, trained network: {trained:.1%} "
        f"correct, chance {guess:.1%}"
    )
    accuracy, chance = concentration_knn(args.out)
    print(
        f"concentration from PC1-5, k-nearest neighbours (replicate 1 -> others): "
        f"{accuracy:.1%} correct, chance {chance:.1%}"
    )


if __name__ == "__main__":
    main()
