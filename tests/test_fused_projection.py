"""The projection keeps each field's QC measures and binned images: QC, the illumination fit
and the focus figure are made from them, equal to what the standalone functions make of the
pixels, without reading the projected plate; resumed, changed and older stores stay right."""

from __future__ import annotations

import shutil
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

import cellscale
from cellscale._stages import DamagedOutputError, Ledger
from cellscale.illumination import IlluminationModel, fit_binned, fit_illumination
from cellscale.pipeline import _field_stats as field_stats
from cellscale.pipeline import _focus, _plate_stages, run
from cellscale.quality import (
    QCThresholds,
    flag_images,
    image_metrics,
    present_images,
    qc,
    qc_table,
    saturation_level,
)
from cellscale.synthetic import synthetic_plate
from tests.test_pipeline import screen_config

# -- counting opens of level-0 chunk files of projected.zarr ------------------------------------

_COUNTERS: list[Counter[str]] = []
_LOCK = threading.Lock()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not _COUNTERS:
        return
    path, mode, flags = args
    if isinstance(path, int):
        return
    text = path.decode() if isinstance(path, bytes) else str(path)
    reading = (mode is None and not (flags or 0) & 0o3) or (mode is not None and "r" in mode)
    if reading and _is_level0_chunk(Path(text)):
        with _LOCK:
            for counts in _COUNTERS:
                counts[text] += 1


sys.addaudithook(_audit)


def _is_level0_chunk(path: Path) -> bool:
    """A chunk file of a field image's full-resolution array: ``…projected.zarr/B/03/1/0/…``."""
    parts = path.parts
    if "projected.zarr" not in parts:
        return False
    inner = parts[parts.index("projected.zarr") + 1 :]
    metadata = (".zarray", ".zattrs", ".zgroup", "zarr.json")
    return (
        len(inner) > 4
        and inner[0].isalpha()
        and inner[1].isdigit()
        and inner[2].isdigit()
        and inner[3] == "0"
        and inner[-1] not in metadata
    )


@contextmanager
def chunk_reads() -> Iterator[Counter[str]]:
    """Count, per file, the opens for reading of level-0 projected chunks within the block."""
    counts: Counter[str] = Counter()
    with _LOCK:
        _COUNTERS.append(counts)
    try:
        yield counts
    finally:
        with _LOCK:
            _COUNTERS.remove(counts)


@contextmanager
def reads_within(module: Any, names: tuple[str, ...]) -> Iterator[dict[str, Counter[str]]]:
    """Count the level-0 projected chunk reads made within each named function of ``module``."""
    counts: dict[str, Counter[str]] = {name: Counter() for name in names}

    def wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            with chunk_reads() as seen:
                result = function(*args, **kwargs)
            counts[name].update(seen)
            return result

        return counted

    with pytest.MonkeyPatch.context() as patch:
        for name in names:
            patch.setattr(module, name, wrap(name, getattr(module, name)))
        yield counts


# -- a run with QC and mean illumination ----------------------------------------------------------

_STAGES = ("_project", "quality_control", "illumination")


def _config(out: Path, **changes: Any) -> dict[str, Any]:
    config = screen_config(out, illumination={"method": "mean"}, **changes)
    config["plates"] = config["plates"][:1]
    config["plates"][0]["synthetic"]["fields"] = 2  # 8 fields: enough for a flatfield
    return config


def _run(out: Path, client: Any, **changes: Any) -> tuple[dict[str, str], dict[str, Counter[str]]]:
    """Run; each stage's status, and the projected chunk reads within the image stages."""
    with reads_within(_plate_stages, _STAGES) as counts:
        summary = run(_config(out, **changes), client=client, progress=False)
    return {s.name: s.status for s in summary.stages}, counts


@pytest.fixture(scope="module")
def fused(tmp_path_factory: pytest.TempPathFactory, client: Any) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("fused") / "run"
    _, counts = _run(out, client)
    return out, counts


def _folder(out: Path) -> Path:
    return out / "plates" / "P1"


def test_qc_and_illumination_of_a_run_equal_the_standalone_functions(
    fused: tuple[Path, Any],
) -> None:
    out, _ = fused
    projected = cellscale.open_plate(_folder(out) / "projected.zarr")
    table = cellscale.read_qc(_folder(out) / "qc.parquet")
    pd.testing.assert_frame_equal(table, qc(projected, progress=False))
    model = IlluminationModel.load(_folder(out) / "illumination.npz")
    _assert_same_model(model, fit_illumination(projected, method="mean", progress=False))


def test_a_run_reads_no_projected_image_for_qc_or_illumination(fused: tuple[Path, Any]) -> None:
    _, counts = fused
    assert counts == {name: Counter() for name in _STAGES}  # the projection kept the numbers


def test_deleted_qc_and_model_are_made_again_from_the_kept_numbers(
    fused: tuple[Path, Any], client: Any
) -> None:
    out, _ = fused
    table = cellscale.read_qc(_folder(out) / "qc.parquet")
    model = IlluminationModel.load(_folder(out) / "illumination.npz")
    (_folder(out) / "qc.parquet").unlink()
    (_folder(out) / "illumination.npz").unlink()
    statuses, counts = _run(out, client)
    assert statuses["qc"] == statuses["illumination"] == "ran"
    assert statuses["project"] == "finished before, checked"
    assert counts == {name: Counter() for name in _STAGES}
    pd.testing.assert_frame_equal(cellscale.read_qc(_folder(out) / "qc.parquet"), table)
    _assert_same_model(IlluminationModel.load(_folder(out) / "illumination.npz"), model)


def test_new_thresholds_flag_again_from_the_kept_measures(
    fused: tuple[Path, Any], client: Any
) -> None:
    out, _ = fused
    before = cellscale.read_qc(_folder(out) / "qc.parquet")
    statuses, counts = _run(out, client, qc={"thresholds": {"dim": 0.0}})
    assert statuses["qc"] == "rewritten: inputs or settings changed"
    assert counts["quality_control"] == Counter()
    table = cellscale.read_qc(_folder(out) / "qc.parquet")
    assert table["dim"].any() and not before["dim"].any()
    pd.testing.assert_frame_equal(table, flag_images(before, QCThresholds(dim=0.0)))
    projected = cellscale.open_plate(_folder(out) / "projected.zarr")
    oracle = qc(projected, thresholds=QCThresholds(dim=0.0), progress=False)
    pd.testing.assert_frame_equal(table, oracle)


def test_a_store_without_the_numbers_gets_them_by_reading_each_field_once(
    fused: tuple[Path, Any], client: Any
) -> None:
    out, _ = fused
    store = _folder(out) / "projected.zarr"
    table = cellscale.read_qc(_folder(out) / "qc.parquet")
    shutil.rmtree(store / field_stats.STATS_GROUP)  # as a store an earlier version wrote
    (_folder(out) / "qc.parquet").unlink()
    statuses, counts = _run(out, client, qc={"thresholds": {"dim": 0.0}})
    assert statuses["qc"] == "ran"
    assert counts["quality_control"] == counts["illumination"] == Counter()
    assert len(counts["_project"]) == 8 * 2  # every field's two channels, once each
    assert set(counts["_project"].values()) == {1}
    pd.testing.assert_frame_equal(cellscale.read_qc(_folder(out) / "qc.parquet"), table)


def test_the_focus_figure_without_qc_reads_no_image(tmp_path: Path, client: Any) -> None:
    out = tmp_path / "run"
    config = screen_config(out, qc={"enabled": False})
    config["plates"] = config["plates"][:1]
    with reads_within(_focus, ("field_quality",)) as counts:
        run(config, client=client, progress=False)
    assert counts["field_quality"] == Counter()
    quality = pd.read_parquet(out / "profiles" / "field_quality.parquet")
    projected = cellscale.open_plate(_folder(out) / "projected.zarr")
    oracle = qc(projected, channels=["cytoplasm"], progress=False)
    np.testing.assert_array_equal(
        quality["focus_laplacian_norm"].to_numpy(), oracle["focus_laplacian_norm"].to_numpy()
    )


# -- the kept numbers against eager oracles, on stores written here ------------------------------


def _write(path: Path, plate: xr.DataArray, **kwargs: Any) -> xr.DataArray:
    cellscale.write_plate(plate, path, records=field_stats.recorder, progress=False, **kwargs)
    return cellscale.open_plate(path)


def _plate(dtype: Any = np.uint16, seed: int = 0) -> xr.DataArray:
    raw = synthetic_plate(
        wells=12, fields=2, n_z=3, shape=(64, 64), cells_per_field=6, dtype=dtype, seed=seed
    )
    return cellscale.project(raw, "max")


def _oracle_metrics(plate: xr.DataArray) -> np.ndarray:
    """Every present image's measures, from NumPy pixels in memory."""
    values = plate.values
    level = saturation_level(plate.dtype, None)
    return np.array(
        [
            [image_metrics(values[t, w, f, c], level) for c in range(plate.sizes["c"])]
            for t, w, f in present_images(plate)
        ]
    )


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_kept_measures_equal_an_eager_oracle(tmp_path: Path, dtype: Any) -> None:
    plate = _plate(dtype)
    path = tmp_path / "projected.zarr"
    projected = _write(path, plate)
    with chunk_reads() as reads:
        metrics = field_stats.qc_metrics(projected, path)
        table = qc_table(projected, metrics)
    assert reads == Counter()
    np.testing.assert_array_equal(metrics, _oracle_metrics(plate))
    with chunk_reads() as oracle_reads:
        oracle = qc(projected, progress=False)
    assert len(oracle_reads) == 24 * 2  # what the counting sees of a read of the plate
    pd.testing.assert_frame_equal(table, oracle)
    other = _plate(dtype, seed=5)
    projected = _write(path, other, overwrite=True)
    np.testing.assert_array_equal(field_stats.qc_metrics(projected, path), _oracle_metrics(other))


@pytest.mark.parametrize("method", ["mean", "basic"])
def test_a_fit_from_the_kept_bins_equals_fit_illumination(tmp_path: Path, method: Any) -> None:
    path = tmp_path / "projected.zarr"
    projected = _write(path, _plate())
    with chunk_reads() as reads:
        reader = field_stats.field_reader(projected, path)
        model = fit_binned(projected, reader, method=method, progress=False)
    assert reads == Counter()
    _assert_same_model(model, fit_illumination(projected, method=method, progress=False))
    channel = fit_binned(projected, reader, "nuclei", method, sample=16, progress=False)
    oracle = fit_illumination(projected, "nuclei", method, sample=16, progress=False)
    _assert_same_model(channel, oracle)


def test_numbers_not_made_from_the_stored_pixels_are_never_used(tmp_path: Path) -> None:
    path = tmp_path / "projected.zarr"
    projected = _write(path, _plate())
    kept = field_stats.qc_metrics(projected, path)
    ledger = Ledger.open(zarr.open_group(str(path / field_stats.STATS_GROUP)), "ledger")
    assert ledger is not None
    ledger.mark((0, 3, 1), 12345)  # as if made from other pixels
    with pytest.raises(DamagedOutputError, match=r"statistics of A04/f2/t0 are missing"):
        field_stats.qc_metrics(projected, path)
    with pytest.raises(DamagedOutputError, match=r"A04/f2/t0"):
        field_stats.field_reader(projected, path)
    with chunk_reads() as reads:
        assert field_stats.complete(projected, path, progress=False) == 1
    assert len(reads) == 2 and all("/A/04/2/0/" in p for p in reads)  # its two channels
    np.testing.assert_array_equal(field_stats.qc_metrics(projected, path), kept)
    assert field_stats.complete(projected, path, progress=False) == 0
    record = path / field_stats.STATS_GROUP / "qc" / "c" / "0" / "5" / "0" / "0" / "0"
    record.unlink()
    with pytest.raises(DamagedOutputError, match=r"QC measures of A06/f1/t0.*is missing"):
        field_stats.qc_metrics(projected, path)


def _assert_same_model(model: IlluminationModel, oracle: IlluminationModel) -> None:
    np.testing.assert_array_equal(model.flatfield, oracle.flatfield)
    if oracle.darkfield is None:
        assert model.darkfield is None
    else:
        np.testing.assert_array_equal(model.darkfield, oracle.darkfield)
    assert (model.channels, model.method) == (oracle.channels, oracle.method)
    assert model.params == oracle.params and model.provenance == oracle.provenance
