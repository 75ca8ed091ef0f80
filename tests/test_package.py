"""The package imports cheaply and keeps its heavy optional dependencies optional."""

from __future__ import annotations

import subprocess
import sys

import dask
import pytest

import cellscale
from cellscale._optional import import_optional
from cellscale.config import config_value


def test_import_does_not_pull_torch_or_cellpose() -> None:
    code = (
        "import sys, cellscale; "
        "bad = [m for m in ('torch', 'cellpose', 'torchvision') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_resolve() -> None:
    for name in cellscale.__all__:
        assert getattr(cellscale, name) is not None


def test_config_defaults_and_overrides() -> None:
    assert config_value("zarr.ngff-version") == "0.5"
    with dask.config.set({"cellscale.zarr.ngff-version": "0.4"}):
        assert config_value("zarr.ngff-version") == "0.4"
        assert config_value("zarr.ngff-version", "0.5") == "0.5"


def test_missing_optional_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ImportError, match=r'pip install "cellscale\[gpu\]"'):
        import_optional("torch", "CNN embedding")
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    with pytest.raises(ImportError, match=r"cellscale\[slurm\]"):
        import_optional("dask_jobqueue", "SLURM clusters")
