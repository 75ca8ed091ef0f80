"""UMAP of millions of embeddings: fit on a seeded subsample, transform every row in chunks.

A lazy ``--rows`` × ``--dims`` float32 dask array (a mixture of 20 Gaussian clusters,
generated chunk by chunk from seeds, ``--chunk-rows`` rows per chunk; never held whole)
stands for one plate's embeddings. Measured in one run:

- **warm-up**: a fit on ``--warm-rows`` rows (enough for umap-learn's approximate
  neighbours, the path a large fit takes) and a transform of a few rows, so that numba's
  compilation is timed apart, not in the figures below;
- **fit**: :func:`cellscale.analysis._umap.fit_umap` with ``sample=--sample``, ``seed=0``
  (deterministic, so umap-learn runs on one thread): the subsample gathered chunk by chunk
  from the lazy array, then the fit;
- **baseline fit**: ``umap.UMAP`` with the same settings fitted on the same rows, already in
  memory as one NumPy array;
- **transform**: ``UmapModel.transform`` of all rows, computed chunk by chunk on the threaded
  scheduler (rows per second);
- **baseline transform**: ``reducer.transform`` of one in-memory block of
  ``--chunk-rows`` rows (rows per second);
- the peak resident memory of this process (``VmHWM``) after the fit and at the end, with
  the size of the data as if it were loaded whole.

Run:    nice .venv/bin/python benchmarks/bench_umap.py            # 1 M x 50, fit on 100 k
Smoke:  .venv/bin/python benchmarks/bench_umap.py --rows 20000 --sample 5000 --warm-rows 5000
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _rss import peak_rss_gb  # noqa: E402

from cellscale.analysis._umap import fit_umap  # noqa: E402

CLUSTERS = 20


def embeddings(rows: int, dims: int, chunk_rows: int, seed: int = 0) -> da.Array:
    """A lazy mixture of Gaussian clusters; each chunk is drawn from its own seed when read."""
    centres = np.random.default_rng(seed).normal(0, 3, (CLUSTERS, dims)).astype(np.float32)

    def block(block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None  # dask passes it to functions that take it
        (start, stop), _ = block_info[None]["array-location"]
        rng = np.random.default_rng([seed, start])
        labels = rng.integers(0, CLUSTERS, stop - start)
        return centres[labels] + rng.standard_normal((stop - start, dims), dtype=np.float32)

    chunks = (
        (chunk_rows,) * (rows // chunk_rows) + ((rows % chunk_rows,) if rows % chunk_rows else ()),
        (dims,),
    )
    return da.map_blocks(block, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0), np.float32))


def main() -> None:
    args = _arguments()
    warnings.filterwarnings("ignore", category=UserWarning)
    data = embeddings(args.rows, args.dims, args.chunk_rows)
    whole_gb = args.rows * args.dims * 4 / 1e9
    print(
        f"{args.rows:,} x {args.dims} float32 ({whole_gb:.2f} GB if loaded whole), "
        f"{data.numblocks[0]} chunks of {args.chunk_rows:,} rows; fit on {args.sample:,}",
        flush=True,
    )

    started = time.perf_counter()
    warm = fit_umap(data[: args.warm_rows], sample=args.warm_rows, seed=0)
    warm.transform(np.asarray(data[:1000]))
    print(
        f"warm-up (numba compilation, {args.warm_rows:,}-row fit): "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )

    started = time.perf_counter()
    model = fit_umap(data, sample=args.sample, seed=0)
    fit_s = time.perf_counter() - started
    fit_rss = peak_rss_gb()
    print(
        f"fit_umap (sample gathered from the lazy array + fit): {fit_s:.1f} s, "
        f"peak RSS {fit_rss:.2f} GB",
        flush=True,
    )

    import umap

    training = np.asarray(data[model.sample_rows].compute())
    started = time.perf_counter()
    baseline = umap.UMAP(n_components=2, random_state=0, transform_seed=0, n_jobs=1).fit(training)
    base_fit_s = time.perf_counter() - started
    print(
        f"baseline umap.UMAP().fit on the same rows in memory: {base_fit_s:.1f} s "
        f"-> fit_umap / baseline = {fit_s / base_fit_s:.2f}x",
        flush=True,
    )
    del baseline, training

    block = np.asarray(data[: args.chunk_rows].compute())
    started = time.perf_counter()
    model.reducer.transform(block)
    base_rate = len(block) / (time.perf_counter() - started)
    print(
        f"baseline reducer.transform of one in-memory block of {len(block):,} rows: "
        f"{base_rate:,.0f} rows/s",
        flush=True,
    )

    started = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=args.threads):
        coords = model.transform(data).compute()
    transform_s = time.perf_counter() - started
    rate = args.rows / transform_s
    assert coords.shape == (args.rows, 2) and np.isfinite(coords).all()
    print(
        f"transform of all {args.rows:,} rows in chunks ({args.threads} threads): "
        f"{transform_s:.1f} s, "
        f"{rate:,.0f} rows/s -> {rate / base_rate:.2f}x the in-memory block rate",
        flush=True,
    )
    print(
        f"fit + transform: {fit_s + transform_s:.1f} s; transform rows/s vs fit rows/s: "
        f"{rate / (args.sample / fit_s):.1f}x"
    )
    print(
        f"peak RSS: {peak_rss_gb():.2f} GB "
        f"(after fit {fit_rss:.2f} GB; data whole {whole_gb:.2f} GB)"
    )


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=50)
    parser.add_argument("--sample", type=int, default=100_000, help="rows UMAP is fitted on")
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--warm-rows", type=int, default=5_000, help="rows of the warm-up fit")
    parser.add_argument("--threads", type=int, default=2, help="threads of the transform")
    return parser.parse_args()


if __name__ == "__main__":
    main()
