"""Synthetic plates: determinism, laziness, schema, sizes and dtypes."""

from __future__ import annotations

import doctest
import importlib

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from cellscale.plate import DIMS, PlateError, image_chunks, validate_plate
from cellscale.synthetic import _model
from cellscale.testing import (
    CHANNEL_KINDS,
    CellModel,
    default_plate_map,
    plate_wells,
    synthetic_labels,
    synthetic_plate,
)
from tests.conftest import raise_if_dask_computes

SMALL = {"fields": 2, "n_z": 3, "shape": (48, 56), "cells_per_field": 6}


def test_same_seed_gives_same_pixels_and_other_seed_other_pixels() -> None:
    first = synthetic_plate(wells=2, seed=7, **SMALL).values
    again = synthetic_plate(wells=2, seed=7, **SMALL).values
    other = synthetic_plate(wells=2, seed=8, **SMALL).values
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_chunk_generated_alone_equals_the_chunk_in_the_whole_plate() -> None:
    plate_map = default_plate_map(plate_wells(96)[:4], concentrations=[1.0, 10.0])
    whole = synthetic_plate(wells=4, n_t=2, plate_map=plate_map, seed=3, **SMALL)
    expected = whole.values
    _model.field_cells.cache_clear()
    alone = synthetic_plate(
        wells=["A03"], n_t=2, channels=["cytoplasm"], plate_map=plate_map, seed=3, **SMALL
    )
    one = alone.isel(t=[1]).values
    np.testing.assert_array_equal(one[:, 0], expected[1:, 2, :, :, 1:2])
    np.testing.assert_array_equal(
        whole.isel(t=1, well=2, field=1, c=0).values, expected[1, 2, 1, :, 0]
    )


def test_channel_pixels_depend_on_the_stain_not_the_channel_name_or_position() -> None:
    default = synthetic_plate(wells=1, channels=3, **SMALL).sel(c="membrane").values
    renamed = synthetic_plate(wells=1, channels={"CellMask": "membrane"}, **SMALL)
    assert list(renamed.coords["c"].values) == ["CellMask"]
    np.testing.assert_array_equal(renamed.sel(c="CellMask").values, default)


def test_building_is_lazy_one_graph_layer_one_plain_task_per_image_for_a_384_well_plate() -> None:
    with raise_if_dask_computes():
        plate = synthetic_plate(
            wells=384, plate_format=384, fields=9, channels=5, shape=(1080, 1080)
        )
        labels = synthetic_labels(plate)
    assert plate.shape == (1, 384, 9, 6, 5, 1080, 1080)
    graph = plate.data.dask
    assert len(graph.layers) == 1
    assert next(iter(graph.layers)).startswith("synthetic-")
    assert not graph.dependencies[next(iter(graph.layers))]
    # One task per (t, well, field, c) image, and none holds pixels: nothing is drawn
    # while the graph is built (how long building takes is benchmarks/bench_synthetic.py's)
    assert len(graph) == plate.data.npartitions == 384 * 9 * 5
    arguments = [arg for task in graph.values() for arg in task[1:]]
    assert not any(isinstance(arg, np.ndarray) for arg in arguments)
    assert labels.data.npartitions == 384 * 9


def test_plate_follows_the_schema() -> None:
    plate = synthetic_plate(wells=["B03", "c4"], n_t=2, **SMALL)
    validate_plate(plate)
    assert plate.dims == DIMS
    assert plate.data.chunksize == image_chunks(plate.shape)
    assert list(plate.coords["well"].values) == ["B03", "C04"]
    assert list(plate.coords["field"].values) == [1, 2]
    assert list(plate.coords["c"].values) == ["nuclei", "cytoplasm"]
    np.testing.assert_allclose(plate.coords["t"].values, [24 * 3600.0, 48 * 3600.0])
    assert plate.attrs["pixel_size_um"] == [0.65, 0.65]
    for column in ("treatment", "concentration", "replicate", "control"):
        assert plate.coords[column].dims == ("well",)
    assert bool(plate.coords["field_present"].all())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_dtypes_span_their_range_and_show_the_cells(dtype: type) -> None:
    plate = synthetic_plate(wells=1, fields=1, n_z=1, dtype=dtype, cells_per_field=8, seed=2)
    assert plate.dtype == np.dtype(dtype)
    image = plate.values[0, 0, 0, 0, 0]
    assert image.dtype == np.dtype(dtype)
    assert image.min() >= 0
    if np.dtype(dtype).kind == "f":
        assert image.max() <= 1.0
    nuclei = synthetic_labels(plate, compartment="nucleus").values[0, 0, 0] > 0
    assert image[nuclei].mean() > 5 * image[~nuclei].mean()


def test_uneven_sizes_and_empty_fields() -> None:
    plate = synthetic_plate(
        wells=["H12", "A01", "D07"],
        fields=3,
        n_t=3,
        n_z=1,
        channels=1,
        shape=(37, 51),
        cells_per_field=0,
        dtype="float32",
    )
    assert plate.shape == (3, 3, 3, 1, 1, 37, 51)
    values = plate.values
    assert np.isfinite(values).all()
    assert not synthetic_labels(plate).values.any()
    odd = synthetic_plate(wells=1, fields=1, n_z=2, shape=(5, 300), cells_per_field=3)
    assert odd.values.shape == (1, 1, 1, 2, 2, 5, 300)


def test_five_stain_plate_like_cell_painting() -> None:
    plate = synthetic_plate(wells=1, fields=1, n_z=1, channels=5, shape=(64, 64), seed=5)
    assert tuple(plate.coords["c"].values) == CHANNEL_KINDS
    images = plate.values[0, 0, 0, 0].astype(float)
    assert len({float(img.std()) for img in images}) == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": np.int64}, "dtype"),
        ({"channels": ["dapi"]}, "unknown stains"),
        ({"channels": 6}, "stains"),
        ({"wells": 97}, "96-well plate"),
        ({"plate_format": 100}, "plate format"),
        ({"shape": (0, 10)}, "shape"),
        ({"t_hours": [24, 24]}, "t_hours"),
        ({"n_t": 2, "t_hours": [1, 2, 3]}, "disagrees"),
        ({"cells_per_field": -1}, "cells_per_field"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict, message: str) -> None:
    params = {"wells": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        synthetic_plate(**params)


def test_cell_model_rejects_non_positive_values() -> None:
    with pytest.raises(PlateError, match="cell_radius_um"):
        CellModel(cell_radius_um=0)


def test_plate_wells_and_default_plate_map() -> None:
    wells = plate_wells(384)
    assert len(wells) == 384 and wells[0] == "A01" and wells[-1] == "P24"
    assert plate_wells(1536)[-1] == "AF48"
    table = default_plate_map(7, treatments=["a", "b"], concentrations=[1.0, 10.0])
    assert list(table.index) == plate_wells(96)[:7]
    assert list(table["treatment"]) == ["DMSO", "a", "a", "b", "b", "DMSO", "a"]
    assert list(table["concentration"]) == [0.0, 1.0, 10.0, 1.0, 10.0, 0.0, 1.0]
    assert list(table["replicate"]) == [1, 1, 1, 1, 1, 2, 2]
    assert list(table["control"]) == [True, False, False, False, False, True, False]


def test_a_user_plate_map_becomes_coordinates() -> None:
    table = pd.DataFrame(
        {"concentration": [0.0, 5.0], "compound": ["none", "x"], "control": [True, False]},
        index=["A01", "A02"],
    )
    plate = synthetic_plate(wells=2, plate_map=table, **SMALL)
    assert list(plate.coords["compound"].values) == ["none", "x"]
    assert "treatment" not in plate.coords


@pytest.mark.parametrize("module", ["_blobs", "_platemap", "_synthetic", "_truth", "_write"])
def test_docstring_examples_run(module: str) -> None:
    imported = importlib.import_module(f"cellscale.synthetic.{module}")
    result = doctest.testmod(imported, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_plate_survives_pickling_for_distributed_workers() -> None:
    plate = synthetic_plate(wells=2, **SMALL)
    shipped = cloudpickle.loads(cloudpickle.dumps(plate))
    np.testing.assert_array_equal(shipped.values, plate.values)
