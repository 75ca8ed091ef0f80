"""Every Python block of the README runs as written, on files the test makes where it names them.

The blocks are run in order in one namespace and one folder, as a reader pasting them
into one session would: ``screen.zarr`` is a synthetic plate with channels ``DNA`` and
``GFP`` and a dose-series plate map, ``MyScreen/2024-04-22/1697`` an ImageXpress folder
with ``map.csv``, ``screen.yaml`` a small screen. ImageNet weights cannot be downloaded
here, so torch's hub cache gets a file of the right name holding a seeded random ResNet-50
(the README says how to fetch the real ones); the blocks run, their numbers mean nothing.
The run example runs as a script, under its ``__main__`` guard. The clusters example
starts a SLURM cluster without site settings; ``tests/test_slurm_cluster.py`` runs those
calls against a real SLURM instead.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

import cellscale
from cellscale.synthetic import synthetic_plate

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
WELLS = ["B02", "B03", "B04", "B05", "C02", "C03", "C04", "C05"]


def python_blocks() -> list[str]:
    """The README's Python blocks, in order."""
    return _BLOCK.findall(README.read_text())


def _blocks_using(text: str) -> list[str]:
    return [block for block in python_blocks() if text in block]


def _plate_map() -> pd.DataFrame:
    controls = ["B02", "B05", "C02", "C05"]
    return pd.DataFrame(
        {
            "treatment": ["DMSO" if w in controls else "drug" for w in WELLS],
            "concentration": [0.0, 1.0, 3.0, 0.0] * 2,
            "control": [w in controls for w in WELLS],
        },
        index=pd.Index(WELLS, name="well"),
    )


def _screen_zarr(folder: Path) -> None:
    plate = synthetic_plate(
        WELLS,
        fields=2,
        n_z=2,
        channels={"DNA": "nuclei", "GFP": "cytoplasm"},
        shape=(256, 256),
        cells_per_field=12,
        plate_map=_plate_map(),
        seed=4,
    )
    cellscale.write_plate(plate, folder / "screen.zarr", progress=False)


def _imagexpress_folder(folder: Path) -> None:
    source = folder / "MyScreen" / "2024-04-22" / "1697"
    source.mkdir(parents=True)
    plate = synthetic_plate(WELLS[:2], fields=1, n_z=1, shape=(64, 64), seed=5)
    for well in WELLS[:2]:
        images = plate.sel(well=well).isel(t=0, z=0, field=0).values
        for c, image in enumerate(images):
            tifffile.imwrite(
                source / f"MyScreen_{well}_s1_w{c + 1}.tif", np.ascontiguousarray(image)
            )
    pd.DataFrame({"well": WELLS[:2], "treatment": ["DMSO", "drug"]}).to_csv(
        folder / "map.csv", index=False
    )


def _imagenet_cache(torch_home: Path) -> None:
    """A random ResNet-50 where torch's hub cache keeps its ImageNet weights."""
    import torch
    import torchvision

    from cellscale.embedding._torch import imagenet_weights

    torch.manual_seed(0)
    _, path = imagenet_weights("resnet50")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)


@pytest.mark.slow
def test_the_readme_library_blocks_run_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.chdir(tmp_path)
    _screen_zarr(tmp_path)
    _imagexpress_folder(tmp_path)
    _imagenet_cache(tmp_path / "torch")
    blocks = [b for b in python_blocks() if "__main__" not in b]
    assert len(blocks) >= 7, "the README lost its library examples"
    namespace: dict[str, Any] = {"__name__": "readme"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as err:  # name the block that broke
            raise AssertionError(f"README python block {i + 1} failed:\n{block}") from err
    assert (tmp_path / "screen_mip.zarr").is_dir() and (tmp_path / "plate.zarr").is_dir()
    scores = cellscale.PCA.load(tmp_path / "pca.npz")
    assert scores.n_components_ == 20
    assert namespace["is_control"].sum() > 0


@pytest.mark.slow
def test_the_readme_run_example_runs_as_a_script(tmp_path: Path) -> None:
    (script_block,) = _blocks_using('cellscale.run("screen.yaml")')
    config = {
        "output": "results",
        "plates": [{"name": "P1", "synthetic": {"wells": 4, "fields": 1, "size": 128}}],
        "cluster": {"n_workers": 1, "options": {"threads_per_worker": 1}},
        "segment": {"channel": "cytoplasm", "nuclei_channel": "nuclei"},
        "profiles": {"controls": "Metadata_treatment == 'DMSO'"},
    }
    (tmp_path / "screen.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "run_screen.py").write_text(script_block)
    done = subprocess.run(
        [sys.executable, "run_screen.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "report:" in done.stdout
    assert (tmp_path / "results" / "report" / "index.html").is_file()
