"""Every setting checked before a run writes anything: names with suggestions, weights, sizes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from cellscale.embedding import EmbedderBase, embed
from cellscale.pipeline import ConfigError, load_config, run
from cellscale.pipeline._preflight import cell_columns, preflight, query_names
from cellscale.segmentation._api import method_options


def tiny_config(out: Path, **changes: Any) -> dict[str, Any]:
    """Two small synthetic plates (two channels each), as the pipeline tests make them."""
    config: dict[str, Any] = {
        "output": str(out),
        "plates": [
            {
                "name": f"P{i}",
                "synthetic": {"wells": 4, "fields": 1, "planes": 3, "size": 128, "seed": i},
                "metadata": {"batch": i},
            }
            for i in (1, 2)
        ],
        "segment": {"channel": "cytoplasm", "nuclei_channel": "nuclei"},
        "profiles": {"controls": "Metadata_treatment == 'DMSO'"},
    }
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    return config


def mapped_config(out: Path, plate_map: Path, **metadata: Any) -> dict[str, Any]:
    """One vendor-folder plate with a plate map (the checks see only that the folder exists)."""
    (out.parent / "tiffs").mkdir(exist_ok=True)
    plate = {"name": "IXM", "folder": str(out.parent / "tiffs"), "plate_map": str(plate_map)}
    return {
        "output": str(out),
        "plates": [{**plate, "metadata": metadata}],
        "segment": {"channel": "w2"},
    }


@pytest.fixture
def plate_map(tmp_path: Path) -> Path:
    path = tmp_path / "map.csv"
    path.write_text("Well;compound;dose_uM\nB02;DMSO;0\nB03;taxol;1\n")
    return path


# ---------------------------------------------------------------- segment.options


@pytest.mark.parametrize(
    ("segment", "message"),
    [
        ({"options": {"diamter": 30}}, r"classical segmenter .*'diamter'; did you mean 'diameter'"),
        (
            {"method": "cellpose", "options": {"flow_treshold": 0.5}},
            r"cellpose segmenter .*'flow_treshold'; did you mean 'flow_threshold'\?$",
        ),
        ({"options": {"compartmnet": "nuclei"}}, r"classical .*; did you mean 'compartment'"),
    ],
)
def test_segmenter_options_are_its_constructor_keywords(
    tmp_path: Path, segment: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^segment\.options: the {message}"):
        load_config(tiny_config(tmp_path / "run", segment=segment))


def test_known_segmenter_options_load_without_importing_cellpose() -> None:
    load_config({**tiny_config(Path("o")), "segment": {"options": {"diameter": 12}}})
    cellpose = {"method": "cellpose", "options": {"model": "cpsam", "fields_per_task": 2}}
    load_config({**tiny_config(Path("o")), "segment": cellpose})
    assert {"model", "diameter", "batch_size"} <= set(method_options("cellpose"))
    assert "compartment" in method_options("classical")  # names the one compartment


# ---------------------------------------------------------------- profiles columns


def test_query_names_are_read_by_the_parser() -> None:
    query = "Metadata_dose >= abs(-1) & (`Metadata_cell line`.str.startswith('U') or index < 3)"
    assert query_names(query) == ["Metadata_dose", "Metadata_cell line", "index"]
    assert query_names("Metadata_treatment in ['DMSO', 'none']\n") == ["Metadata_treatment"]
    with pytest.raises(SyntaxError):
        query_names("Metadata_treatment = 'DMSO'")


@pytest.mark.parametrize(
    ("profiles", "message"),
    [
        (
            {"controls": "Metadata_treatmnet == 'DMSO'"},
            r"^profiles\.controls: the cell table will have no column 'Metadata_treatmnet'; "
            r"did you mean 'Metadata_treatment'\?$",
        ),
        ({"controls": "treatment == 'DMSO'"}, r"'treatment'; did you mean 'Metadata_treatment'"),
        (
            {"controls": "Metadata_control & `Metadata_bach` == 1"},
            r"'Metadata_bach'; did you mean 'Metadata_batch'",
        ),
        ({"controls": "Metadata_treatment = 'DMSO'"}, r"^profiles\.controls: .* is not a query"),
        (
            {"by": ["Metadata_Plate", "Metadata_Wel"]},
            r"^profiles\.by\[1\]: .*'Metadata_Wel'; did you mean 'Metadata_Well'\?$",
        ),
        ({"by": ["xyz"]}, r"no column 'xyz'; it will have \['cell_id', 'Metadata_Plate'"),
    ],
)
def test_columns_the_profiles_name_are_checked(
    tmp_path: Path, profiles: dict[str, Any], message: str
) -> None:
    config = load_config(tiny_config(tmp_path / "run", profiles=profiles))
    with pytest.raises(ConfigError, match=message):
        preflight(config)


def test_plate_map_and_metadata_columns_are_the_cells_columns(
    tmp_path: Path, plate_map: Path
) -> None:
    config = load_config(mapped_config(tmp_path / "run", plate_map, replicate=2))
    assert cell_columns(config)[-3:] == [
        "Metadata_compound",
        "Metadata_dose_uM",
        "Metadata_replicate",
    ]
    fine = {"controls": "Metadata_compound == 'DMSO' and Metadata_replicate == 2"}
    preflight(
        load_config({**mapped_config(tmp_path / "run", plate_map, replicate=2), "profiles": fine})
    )
    typo = {"controls": "Metadata_compund == 'DMSO'", "by": ["Metadata_Well"]}
    with pytest.raises(ConfigError, match="did you mean 'Metadata_compound'"):
        preflight(load_config({**mapped_config(tmp_path / "run", plate_map), "profiles": typo}))


def test_features_are_left_to_the_measurement(tmp_path: Path) -> None:
    profiles = {"controls": "Cells_AreaShape_Area > 10", "by": ["Metadata_Well", "Metadata_batch"]}
    preflight(load_config(tiny_config(tmp_path / "run", profiles=profiles)))


def test_a_metadata_key_may_not_replace_a_cell_column(tmp_path: Path, plate_map: Path) -> None:
    config = load_config(mapped_config(tmp_path / "run", plate_map, compound="x"))
    with pytest.raises(
        ConfigError, match=r"^plates\[0\]\.metadata: the key 'compound' would replace .*compound;"
    ):
        preflight(config)


def test_an_unreadable_plate_map_is_named(tmp_path: Path) -> None:
    config = load_config(mapped_config(tmp_path / "run", tmp_path / "absent.csv"))
    with pytest.raises(ConfigError, match=r"^plates\[0\]\.plate_map: .*absent\.csv"):
        preflight(config)


# ---------------------------------------------------------------- embed.weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """State dicts: resnet18 for 2 channels, for 3 channels, and a tiny unrelated network."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    folder = tmp_path_factory.mktemp("weights")
    net = torchvision.models.resnet18()
    paths = {name: folder / f"{name}.pt" for name in ("rgb", "two", "linear", "text")}
    torch.save(net.state_dict(), paths["rgb"])
    net.conv1 = torch.nn.Conv2d(2, 64, 7, stride=2, padding=3, bias=False)
    torch.save({"state_dict": net.state_dict()}, paths["two"])
    torch.save(torch.nn.Linear(3, 3).state_dict(), paths["linear"])
    paths["text"].write_text("not weights")
    return paths


def _with_weights(tmp_path: Path, path: Path, **embed: Any) -> Any:
    return load_config(tiny_config(tmp_path / "run", embed={"weights": str(path), **embed}))


def test_weights_that_fit_the_model_and_the_plates_channels_pass(
    tmp_path: Path, weights: dict[str, Path], plate_map: Path
) -> None:
    preflight(_with_weights(tmp_path, weights["two"]))
    folder_plate = mapped_config(tmp_path / "run", plate_map)
    folder_plate["embed"] = {"weights": str(weights["rgb"])}
    preflight(load_config(folder_plate))  # channels unknown: the file's own are taken


@pytest.mark.parametrize(
    ("file", "message"),
    [
        (
            "rgb",
            r"do not fit resnet18 with 2 input channels: shape mismatches \['conv1\.weight "
            r"is \(64, 3, 7, 7\) in the file but \(64, 2, 7, 7\) in the network'\]$",
        ),
        (
            "linear",
            r"do not fit resnet18 .*: missing keys \['conv1\.weight', 'bn1\.weight', "
            r"'bn1\.bias'\] and \d+ more; unexpected keys \['weight', 'bias'\]$",
        ),
        ("text", r"text\.pt is not a torch state dict or TorchScript file"),
    ],
)
def test_weights_that_do_not_fit_name_the_file_and_the_keys(
    tmp_path: Path, weights: dict[str, Path], file: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^embed\.weights: .*{message}") as caught:
        preflight(_with_weights(tmp_path, weights[file]))
    assert "\n" not in str(caught.value)
    assert str(weights[file]) in str(caught.value)


def test_a_layer_the_weighted_model_lacks_is_named(
    tmp_path: Path, weights: dict[str, Path]
) -> None:
    config = _with_weights(tmp_path, weights["two"], layer="avgpol")
    with pytest.raises(ConfigError, match=r"^embed\.layer: .*'avgpol'; did you mean 'avgpool'\?"):
        preflight(config)


def test_the_checks_import_torch_only_for_weights(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from cellscale.pipeline import load_config\n"
        "from cellscale.pipeline._preflight import preflight\n"
        f"preflight(load_config({tiny_config(tmp_path / 'run')!r}))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


# ---------------------------------------------------------------- batch_size


@pytest.mark.parametrize(
    ("batch_size", "message"),
    [
        (-1, r"^embed\.batch_size must be a whole number of at least 1, got -1$"),
        (0, r"at least 1, got 0"),
        (2.5, r"^embed\.batch_size: expected int, got float 2\.5$"),
    ],
)
def test_the_batch_size_is_a_positive_whole_number(
    tmp_path: Path, batch_size: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(tiny_config(tmp_path / "run", embed={"batch_size": batch_size}))


class _Zeros(EmbedderBase):
    n_features = 2

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros((len(batch), 2), np.float32)


def _crops() -> xr.DataArray:
    data = da.zeros((6, 2, 8, 8), chunks=(3, 2, 8, 8), dtype=np.uint16)
    return xr.DataArray(data, dims=("cell", "c", "y", "x"), coords={"cell_id": ("cell", range(6))})


def test_embed_refuses_a_batch_size_below_one() -> None:
    with pytest.raises(ValueError, match="batch_size must be a whole number of at least 1, got -1"):
        embed(_crops(), _Zeros(), batch_size=-1)
    model = _Zeros()
    model.batch_size = 0
    with pytest.raises(ValueError, match="at least 1, got 0"):
        embed(_crops(), model)
    assert embed(_crops(), _Zeros(), batch_size=4).values.shape == (6, 2)


def test_the_torch_embedder_refuses_a_batch_size_below_one() -> None:
    pytest.importorskip("torch")
    from cellscale.embedding import TorchEmbedder

    with pytest.raises(ValueError, match="at least 1, got -1"):
        TorchEmbedder("resnet18", in_channels=2, batch_size=-1)
    with pytest.raises(ValueError, match="at least 1, got 0"):
        embed(_crops(), "resnet18", batch_size=0, device="cpu")


# ---------------------------------------------------------------- in run(), before any write


@pytest.mark.parametrize(
    "changes",
    [
        {"segment": {"options": {"diamter": 30}}},
        {"profiles": {"controls": "Metadata_treatmnet == 'DMSO'"}},
        {"profiles": {"by": ["Metadata_Plate", "Metadata_Wel"]}},
        {"embed": {"batch_size": -1}},
    ],
)
def test_a_run_stops_on_a_bad_setting_before_it_writes(
    tmp_path: Path, changes: dict[str, Any]
) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"^(segment|profiles|embed)\.[a-z_]+"):
        run(tiny_config(out, **changes), progress=False)
    assert not (out / "plates").exists()
    assert not out.exists()


def test_a_run_stops_on_weights_that_do_not_fit_before_it_writes(
    tmp_path: Path, weights: dict[str, Path]
) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"^embed\.weights: .*rgb\.pt do not fit"):
        run(tiny_config(out, embed={"weights": str(weights["rgb"])}), progress=False)
    assert not (out / "plates").exists()
