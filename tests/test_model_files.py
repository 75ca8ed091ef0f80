"""Pretrained models: listed with their files, fetched on request only, checked before a run."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import yaml

from cellscale.cli import main
from cellscale.model_files import fetch_model, local_models
from cellscale.pipeline import ConfigError, load_config
from cellscale.pipeline._preflight import preflight


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Cellpose's model folder and torch's hub cache, both empty, under ``tmp_path``."""
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path / "cellpose"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def _offline(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("Name or service not known")


def test_models_are_listed_where_their_libraries_keep_them(empty_caches: Path) -> None:
    models = {m.name: m for m in local_models()}
    assert models["cpsam"].path == empty_caches / "cellpose" / "cpsam"
    assert models["resnet50"].path.is_relative_to(empty_caches / "torch")
    assert not any(m.available for m in models.values())
    (empty_caches / "cellpose").mkdir()
    (empty_caches / "cellpose" / "cpsam").write_bytes(b"weights")
    assert {m.name for m in local_models() if m.available} == {"cpsam"}
    assert fetch_model("cpsam").available  # already there: nothing is downloaded


def test_fetching_without_internet_says_what_to_fetch_and_where_to_put_it(
    empty_caches: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cellpose.models
    import torch

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _offline)
    monkeypatch.setattr(cellpose.models, "cache_model_path", _offline)
    with pytest.raises(
        OSError, match=r"cellscale models --fetch resnet18` \(it downloads https://"
    ):
        fetch_model("resnet18")
    with pytest.raises(OSError, match=r"copy the file to .*cellpose/cpsam"):
        fetch_model("cpsam")
    with pytest.raises(ValueError, match="no model named 'cyto9'"):
        fetch_model("cyto9")


def test_the_command_lists_models_and_fails_in_one_line_without_internet(
    empty_caches: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "cpsam" in out and "resnet18" in out and "missing" in out
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _offline)
    assert main(["models", "--fetch", "resnet18"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cellscale models: error: could not download")


def _config(tmp_path: Path, **sections: object) -> dict[str, object]:
    return {
        "output": str(tmp_path / "run"),
        "plates": [{"name": "P1", "synthetic": {}}],
        "segment": {"channel": "cytoplasm"},
        **sections,
    }


def test_a_missing_cellpose_model_is_named_before_the_run_starts(empty_caches: Path) -> None:
    config = load_config(_config(empty_caches, segment={"channel": "nuclei", "method": "cellpose"}))
    with pytest.raises(ConfigError, match=r"segment\.options\.model: .*cellscale models --fetch"):
        preflight(config)
    (empty_caches / "cellpose").mkdir()
    (empty_caches / "cellpose" / "cpsam").write_bytes(b"weights")
    preflight(config)


def test_imagenet_weights_are_a_name_not_a_path_and_are_checked_before_the_run(
    empty_caches: Path,
) -> None:
    file = empty_caches / "screen.yaml"
    file.write_text(yaml.safe_dump(_config(empty_caches, embed={"weights": "imagenet"})))
    config = load_config(file)
    assert config.embed.weights == "imagenet"
    with pytest.raises(ConfigError, match=r"embed\.weights: .*cellscale models --fetch resnet18"):
        preflight(config)
