"""Streaming PCA benchmark: cellscale.PCA(50).fit vs scikit-learn IncrementalPCA on Zarr.

Generates N x 2048 float32 embeddings chunk-wise into an uncompressed Zarr array on disk
(50 well-separated leading directions + isotropic noise), then measures, in one run:

* the sgemm rate (median of repeats) and the GEMM floor N * d^2 multiply-adds at that rate;
* ``cellscale.PCA(50).fit`` of the Zarr array on the threaded scheduler (median of
  ``--repeats``), its peak RSS (measured in a fresh subprocess) and accuracy vs the exact answer;
* the same fit of ``da.from_zarr(path)``, whose chunks zarr's codec pipeline reads;
* the exact answer: the same streaming statistics with float64 products;
* ``cellscale.PCA(50).fit`` on a LocalCluster with 1 worker and with 2 workers (1 thread each);
* scikit-learn ``IncrementalPCA(50, batch_size=65536)`` reading the same Zarr, on the first
  ``--ipca-rows`` rows (its per-row rate is reported; it is NOT run on all rows unless
  ``--ipca-rows`` equals N), with its own exact answer on that prefix for accuracy.

Run:  .venv/bin/python benchmarks/bench_pca.py [--rows 1000000] [--keep]
The data goes to bench-data/pca.zarr (git-ignored) and is deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

D = 2048
K = 50
CHUNK_ROWS = 16384  # 128 MiB Zarr chunks along cells
IPCA_BATCH = 65536
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench-data" / "pca.zarr"


def generate(path: Path, n: int, seed: int = 0) -> None:
    """Write low-rank + noise float32 rows chunk by chunk (never all in memory)."""
    import zarr

    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((D, K)))[0].T.astype(np.float32)
    scales = (20.0 * 0.93 ** np.arange(K)).astype(np.float32)
    arr = zarr.create_array(
        str(path),
        shape=(n, D),
        chunks=(CHUNK_ROWS, D),
        dtype="float32",
        compressors=None,
        overwrite=True,
    )
    for start in range(0, n, CHUNK_ROWS):
        rows = min(CHUNK_ROWS, n - start)
        scores = rng.standard_normal((rows, K), dtype=np.float32) * scales
        block = scores @ basis + rng.standard_normal((rows, D), dtype=np.float32)
        arr[start : start + rows] = block + 5.0


def sgemm_rate(repeats: int = 5) -> float:
    """Multiply-adds per second of X^T X on a 16384 x 2048 float32 block (median)."""
    x = np.random.default_rng(1).standard_normal((16384, D), dtype=np.float32)
    x.T @ x
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        x.T @ x
        times.append(time.perf_counter() - t)
    return 16384 * D * D / statistics.median(times)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_child(mode: str, rows: int) -> dict:
    """Run one fit in a fresh process so its peak RSS is its own."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--rows", str(rows)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(mode: str, rows: int) -> dict:
    import dask.array as da
    import zarr

    import cellscale

    if mode == "ipca":
        from sklearn.decomposition import IncrementalPCA

        z = zarr.open_array(str(DATA), mode="r")
        ipca = IncrementalPCA(K, batch_size=IPCA_BATCH)
        t = time.perf_counter()
        for start in range(0, rows, IPCA_BATCH):
            ipca.partial_fit(z[start : min(rows, start + IPCA_BATCH)])
        seconds = time.perf_counter() - t
        return {
            "seconds": seconds,
            "rss_gb": peak_rss_gb(),
            "ev": ipca.explained_variance_.tolist(),
            "components": ipca.components_.tolist(),
        }
    from cellscale.profiles._io import as_cell_array

    if mode == "via-zarr":  # a dask array over zarr's own reads, codec pipeline and all
        x = da.from_zarr(str(DATA))[:rows]
    else:  # the Zarr array itself, as users pass it (a prefix when rows < N)
        z = zarr.open_array(str(DATA), mode="r")
        x = z if rows == z.shape[0] else as_cell_array(z)[:rows]
    kwargs = {"compute_dtype": np.float64} if mode == "exact" else {}
    if mode.startswith("workers"):
        from distributed import Client, LocalCluster

        n_workers = int(mode[-1])
        with (
            LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster),
        ):
            t = time.perf_counter()
            pca = cellscale.PCA(K).fit(x)
            components = pca.components_  # the eigendecomposition is part of the fit
            seconds = time.perf_counter() - t
    else:
        t = time.perf_counter()
        pca = cellscale.PCA(K, **kwargs).fit(x)
        components = pca.components_  # the eigendecomposition is part of the fit
        seconds = time.perf_counter() - t
    return {
        "seconds": seconds,
        "rss_gb": peak_rss_gb(),
        "ev": pca.explained_variance_.tolist(),
        "components": components.tolist(),
    }


def accuracy(result: dict, exact: dict, leading: int = 10) -> tuple[float, float]:
    """Max relative error of the leading explained variances; largest principal angle (deg)."""
    ev, ev0 = np.array(result["ev"][:leading]), np.array(exact["ev"][:leading])
    a, b = np.array(result["components"][:leading]), np.array(exact["components"][:leading])
    cosines = np.linalg.svd(a @ b.T, compute_uv=False)
    angle = float(np.degrees(np.arccos(np.clip(cosines.min(), -1, 1))))
    return float(np.max(np.abs(ev / ev0 - 1))), angle


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ipca-rows", type=int, default=131_072)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows)))
        return
    n = args.rows
    DATA.parent.mkdir(exist_ok=True)
    t = time.perf_counter()
    generate(DATA, n)
    subprocess.run(["sync"], check=True)  # no writeback of the new store during the fits
    print(
        f"generated {n:,} x {D} float32 ({n * D * 4 / 1e9:.1f} GB) "
        f"in {time.perf_counter() - t:.0f} s"
    )
    try:
        rate = sgemm_rate()
        floor = n * D * D / rate
        print(f"sgemm {2 * rate / 1e9:.0f} GFLOP/s -> GEMM floor {floor:.1f} s for {n:,} rows")
        runs = [run_child("cellscale", n) for _ in range(args.repeats)]
        fit = statistics.median(r["seconds"] for r in runs)
        via_zarr = run_child("via-zarr", n)
        exact = run_child("exact", n)
        ev_err, angle = accuracy(runs[0], exact)
        print(
            f"cellscale.PCA(50).fit: median {fit:.1f} s of {args.repeats} "
            f"({fit / floor:.2f}x GEMM floor), peak RSS {max(r['rss_gb'] for r in runs):.2f} GB, "
            f"EV rel err {ev_err:.1e}, max angle {angle:.2e} deg (leading 10)"
        )
        print(
            f"same fit on da.from_zarr (zarr's codec pipeline reads the chunks): "
            f"{via_zarr['seconds']:.1f} s ({via_zarr['seconds'] / floor:.2f}x GEMM floor)"
        )
        print(f"exact float64 pass: {exact['seconds']:.1f} s, peak RSS {exact['rss_gb']:.2f} GB")
        one, two = run_child("workers1", n), run_child("workers2", n)
        print(
            f"LocalCluster 1 worker: {one['seconds']:.1f} s; 2 workers: {two['seconds']:.1f} s "
            f"(speed-up {one['seconds'] / two['seconds']:.2f}x)"
        )
        m = min(args.ipca_rows, n)
        ipca = run_child("ipca", m)
        exact_m = run_child("exact", m)
        own_m = run_child("cellscale", m)
        ev_i, angle_i = accuracy(ipca, exact_m)
        per_row = ipca["seconds"] / m
        print(
            f"IncrementalPCA(50, batch_size=65536), first {m:,} rows: {ipca['seconds']:.1f} s "
            f"({per_row * 1e6:.1f} us/row); cellscale on the same rows {own_m['seconds']:.1f} s "
            f"({ipca['seconds'] / own_m['seconds']:.1f}x faster); IPCA peak RSS "
            f"{ipca['rss_gb']:.2f} GB, EV rel err {ev_i:.1e}, max angle {angle_i:.2e} deg "
            "(leading 10, vs exact on those rows)"
        )
        print(
            f"IncrementalPCA extrapolated to {n:,} rows at that rate: {per_row * n:.0f} s "
            f"({per_row * n / fit:.0f}x cellscale's measured {fit:.1f} s) [extrapolation]"
        )
    finally:
        if not args.keep:
            shutil.rmtree(DATA, ignore_errors=True)


if __name__ == "__main__":
    main()
