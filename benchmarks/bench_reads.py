"""How often a run reads each stored byte: file opens per chunk, and bytes read / bytes stored.

Usage::

    python benchmarks/bench_reads.py [--out bench-data/reads] [--wells 4] [--fields 2]

Runs ``cellscale.run`` on one synthetic plate (``--wells`` × ``--fields``, 3 planes,
2 channels, 256², QC, mean illumination correction, cells seeded by nuclei, crops and
ResNet-18 embeddings) on a LocalCluster of threads in this process, so that a Python
audit hook (``sys.addaudithook``, event ``open``) sees every file the run opens: zarr's
store, cellscale's direct chunk-file reads, Parquet, the ledgers. It then sorts the opens
of files under the run folder by what they are, and prints per kind the files there are,
the opens of them for reading, opens per file (median and maximum) and the bytes read
(each open of a chunk file counted as its whole size, as the readers read whole chunks)
over the bytes stored, plus the whole run's ratio.

Kinds: image chunks of ``raw.zarr`` and of ``projected.zarr`` (level 0 and pyramid levels
apart), label chunks, the per-field statistics the projection keeps (QC measures and
binned images), completion ledgers, Zarr metadata, Parquet files, the embeddings'
chunks, and everything else.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_OPENS: Counter[str] = Counter()
_WATCHED: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not _WATCHED:
        return
    path, mode, flags = args
    if isinstance(path, int):
        return
    text = path.decode() if isinstance(path, bytes) else str(path)
    reading = (mode is None and not (flags or 0) & 0o3) or (mode is not None and "r" in mode)
    if reading and text.startswith(_WATCHED[0]):
        _OPENS[text] += 1


def kind(path: Path, out: Path) -> str:
    """What a file of the run folder is, for counting reads."""
    parts = path.relative_to(out).parts
    name = path.name
    if "cellscale_ledger" in parts or "ledger" in parts:
        return "ledgers"
    if name in ("zarr.json", ".zattrs", ".zgroup", ".zarray", ".zmetadata"):
        return "zarr metadata"
    if "cellscale_field_stats" in parts:
        return "per-field statistics"
    if name.endswith(".parquet") or any(p.endswith(".parquet") for p in parts):
        return "parquet"
    store = next((p for p in parts if p.endswith(".zarr")), None)
    if store == "embeddings.zarr":
        return "embedding chunks"
    if store in ("raw.zarr", "projected.zarr"):
        if "cellscale_index" in parts:
            return "plate indexes"
        if "labels" in parts or "cellscale_labels" in parts:
            return "label chunks"
        level = _level(parts, store)
        what = "raw" if store == "raw.zarr" else "projected"
        if level.isdigit():
            return f"{what} image chunks, level {'0' if level == '0' else '1+'}"
    return "other"


def _level(parts: tuple[str, ...], store: str) -> str:
    """An image chunk's pyramid level: ``<store>/<row>/<col>/<field>/<level>/…``."""
    at = parts.index(store) + 4
    return parts[at] if at < len(parts) - 1 and parts[at].isdigit() else "?"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-data" / "reads")
    parser.add_argument("--wells", type=int, default=4)
    parser.add_argument("--fields", type=int, default=2)
    args = parser.parse_args()

    import cellscale

    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    config = {
        "output": str(out),
        "plates": [
            {
                "name": "P1",
                "synthetic": {
                    "wells": args.wells,
                    "fields": args.fields,
                    "planes": 3,
                    "size": 256,
                    "cells_per_field": 20,
                },
            }
        ],
        "illumination": {"method": "mean"},
        "segment": {"channel": "cytoplasm", "nuclei_channel": "nuclei"},
        "crops": {"size": 32},
        "embed": {"enabled": True, "batch_size": 64},
        "pca": {"n_components": 4},
        "profiles": {"controls": "Metadata_treatment == 'DMSO'"},
    }
    sys.addaudithook(_audit)
    _WATCHED.append(str(out))
    with cellscale.start_cluster(
        "local", n_workers=1, gpu_workers=1, processes=False, threads_per_worker=2, quiet=True
    ) as client:
        summary = cellscale.run(config, client=client, progress=False)
    _WATCHED.clear()

    files: dict[str, list[Path]] = {}
    for path in out.rglob("*"):
        if path.is_file():
            files.setdefault(kind(path, out), []).append(path)
    print(f"{summary.fields} fields, {summary.cells} cells; opens for reading per kind of file:")
    print(f"  {'kind':<32}{'files':>7}{'opens':>8}{'per file':>10}{'max':>6}{'read/stored':>13}")
    read_total = stored_total = 0
    for name in sorted(files):
        paths = files[name]
        opens = [_OPENS.get(str(p), 0) for p in paths]
        sizes = [p.stat().st_size for p in paths]
        read = sum(n * s for n, s in zip(opens, sizes, strict=True))
        stored = sum(sizes)
        read_total += read
        stored_total += stored
        print(
            f"  {name:<32}{len(paths):>7}{sum(opens):>8}{statistics.median(opens):>10.1f}"
            f"{max(opens):>6}{read / stored if stored else float('nan'):>13.2f}"
        )
    print(
        f"  {'whole run':<32}{sum(map(len, files.values())):>7}{sum(_OPENS.values()):>8}"
        f"{'':>16}{read_total / stored_total:>13.2f}"
    )


if __name__ == "__main__":
    main()
