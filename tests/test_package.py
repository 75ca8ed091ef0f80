"""The package imports cheaply and keeps its heavy optional dependencies optional."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dask
import pytest

import cellscale
from cellscale._optional import import_optional
from cellscale.config import config_value


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_does_not_pull_torch_cellpose_or_matplotlib() -> None:
    heavy = "('torch', 'cellpose', 'torchvision', 'matplotlib')"
    code = f"import sys, cellscale; print(','.join(m for m in {heavy} if m in sys.modules))"
    assert _run(code) == ""


def test_submodules_are_attributes_of_the_package() -> None:
    code = (
        "import sys, cellscale; "
        "print(cellscale.plots.plate_heatmap.__module__, "
        "cellscale.testing.synthetic_plate.__name__, "
        "'matplotlib' in sys.modules, 'plots' in dir(cellscale))"
    )
    assert _run(code) == "cellscale.plots synthetic_plate True True"


def test_unknown_attribute_names_the_module() -> None:
    with pytest.raises(AttributeError, match="module 'cellscale' has no attribute 'plot'"):
        cellscale.plot  # noqa: B018


def test_type_checkers_see_the_lazy_api(tmp_path: Path) -> None:
    script = tmp_path / "user.py"
    script.write_text(
        "import cellscale\n"
        "cellscale.open_plate(1, 2, 3)\n"
        "cellscale.plots.plate_heatmap({'A01': 1.0}, lable='x')\n"
        "pca: cellscale.PCA = cellscale.PCA(3)\n"
    )
    # Only cellscale's own signatures matter here: skipping the installed packages and
    # the errors inside cellscale keeps the check to a second or two.
    flags = ["--no-site-packages", "--follow-imports=silent", "--cache-dir", "cache"]
    out = subprocess.run(
        [sys.executable, "-m", "mypy", *flags, script.name],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(Path(cellscale.__file__).parents[1])},
    )
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert any(line.startswith("user.py:2:") and '"open_plate"' in line for line in errors), out
    assert any(line.startswith("user.py:3:") and '"lable"' in line for line in errors), out
    assert not any(line.startswith("user.py:4:") for line in errors), out


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
