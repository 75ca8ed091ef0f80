"""``cellscale train CONFIG.yaml``: a training described in a file, checked like a run's config.

The file's keys are :func:`cellscale.train`'s arguments, ``source`` and ``out`` included,
with ``split`` as the run config's ``train.split`` section and an optional ``cluster``
section as a run's (training then runs as one task on a GPU-tagged worker)::

    source: screen-output        # a cellscale run's folder (or a list of plates)
    out: training
    label: [Metadata_Timepoint, Metadata_concentration]
    split: {test: 0.2, validation: 0.1}
    model: resnet50
    size: 96
    epochs: 30

Relative paths are relative to the file's folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cellscale.pipeline._config import (
    ClusterConfig,
    ConfigError,
    TrainConfig,
    _build,
    _choose,
)

__all__ = ["TrainJob", "load_train_job", "run_train_job"]


@dataclass(frozen=True)
class TrainJob(TrainConfig):
    """A training's settings: the arguments of :func:`cellscale.train`, checked.

    The settings of a run's ``train`` section (``enabled`` aside), plus where the cells
    come from and where the training goes, what it is trained on (the run takes these
    from its ``crops`` and ``embed`` sections) and, optionally, the cluster it runs on.
    """

    enabled: bool = True
    source: Any = None
    out: str = ""
    inputs: str = "cells"
    size: int = 64
    mask: str = "soft"
    compartment: str | None = None
    downsample: int = 1
    model: str = "resnet18"
    device: str = "auto"
    precision: str = "auto"
    cluster: ClusterConfig | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source is None or not self.out:
            raise ConfigError("source and out: name the cells to train on and the folder to fill")
        _choose("inputs", self.inputs, ("cells", "fields"))
        _choose("model", self.model, ("resnet18", "resnet50", "r3d_18"))


def load_train_job(source: TrainJob | Mapping[str, Any] | str | os.PathLike[str]) -> TrainJob:
    """A checked :class:`TrainJob` from a job, a dict or a YAML file.

    Raises
    ------
    ConfigError
        On an unknown key (with the key it resembles), a missing ``source``, ``out`` or
        ``label``, a value of the wrong type or an option that does not exist.
    """
    if isinstance(source, TrainJob):
        return source
    if isinstance(source, Mapping):
        job: TrainJob = _build(TrainJob, source, "training config")
        return job
    path = Path(source)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    job = _build(TrainJob, data, str(path))
    return _relative_to(job, path.parent)


def run_train_job(job: TrainJob, *, progress: bool = True, overwrite: bool = False) -> Any:
    """Train as ``job`` says, on its cluster if it names one; the :class:`Training`."""
    import cellscale

    arguments = job.train_arguments()
    source, out, cluster = arguments.pop("source"), arguments.pop("out"), arguments.pop("cluster")
    if cluster is None:
        return cellscale.train(source, out, progress=progress, overwrite=overwrite, **arguments)
    with cluster.start(Path(out) / "logs") as client:
        return cellscale.train(
            source, out, client=client, progress=progress, overwrite=overwrite, **arguments
        )


def _relative_to(job: TrainJob, base: Path) -> TrainJob:
    from dataclasses import replace

    def resolve(path: Any) -> Any:
        return None if path is None else str(base / Path(path).expanduser())

    source = job.source
    if isinstance(source, str):
        source = resolve(source)
    elif isinstance(source, list):
        source = [
            {k: resolve(v) if k in ("plate", "cells", "labels") else v for k, v in p.items()}
            if isinstance(p, Mapping)
            else p
            for p in source
        ]
    return replace(job, source=source, out=str(resolve(job.out)))
