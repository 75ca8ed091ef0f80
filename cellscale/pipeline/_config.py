"""A run's configuration: the screen's plates and each stage's settings, checked on load.

A config is a dict, a YAML file or a :class:`RunConfig`. Every section is a frozen
dataclass; keys are checked against its fields, so a misspelt key is an error that
suggests the key it resembles, a value of the wrong type names its place in the file,
and every setting left out takes the default shown here.

Examples
--------
>>> config = load_config({"output": "screen", "plates": [{"name": "P1", "synthetic": {}}],
...                       "segment": {"channel": "cytoplasm"}})
>>> config.plates[0].synthetic.wells, config.crops.mask
(8, 'soft')
>>> load_config({"output": "screen", "plates": [], "segmnet": {}})
Traceback (most recent call last):
...
cellscale.pipeline._config.ConfigError: config: unknown key 'segmnet'; did you mean 'segment'?
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cellscale.crops._cut import MASKS

__all__ = [
    "AnalysisConfig",
    "ClusterConfig",
    "ConfigError",
    "CropsConfig",
    "EmbedConfig",
    "IlluminationConfig",
    "MeasureConfig",
    "PCAConfig",
    "PlateConfig",
    "ProfilesConfig",
    "ProjectConfig",
    "QCConfig",
    "ReportConfig",
    "RunConfig",
    "SegmentConfig",
    "SplitConfig",
    "SyntheticSource",
    "TrainConfig",
    "as_dict",
    "load_config",
]


class ConfigError(ValueError):
    """A run configuration that cannot be run: it names the key at fault."""


@dataclass(frozen=True)
class SyntheticSource:
    """A synthetic plate (:func:`cellscale.synthetic.synthetic_plate`) with a dose series.

    ``t_hours`` gives the hours since treatment of its time points (then ``timepoints``
    is their number); by default they are 24, 48, … hours.
    """

    wells: int = 8
    fields: int = 2
    timepoints: int = 1
    t_hours: tuple[float, ...] | None = None
    planes: int = 4
    channels: tuple[str, ...] = ("nuclei", "cytoplasm")
    size: int = 256
    cells_per_field: float = 25.0
    seed: int = 0


@dataclass(frozen=True)
class PlateConfig:
    """One plate of the screen: its images (one source) and their metadata.

    The source is exactly one of ``folder`` (vendor TIFFs, ingested into the run's
    ``raw.zarr``), ``zarr`` (an OME-Zarr HCS plate written by cellscale, read in place and
    never written to) and ``synthetic``. Every option of :func:`cellscale.ingest` has a
    key of the same name: ``pattern`` and ``defaults`` (values of the groups the file
    names lack, ``{"well": "A01"}``), ``channels`` (a list keeps and orders channels; a
    mapping also renames them, ``{"w1": "DNA"}``), ``project_z``, ``on_unmatched``,
    ``fill_missing``, ``on_nonfinite``, ``rgb`` and ``levels``. ``plate_map`` is a CSV/TSV
    whose well column is found by name or given as ``well_column``; with a ``zarr``
    source it annotates the plate for this run only. ``metadata`` holds plate-level values
    (timepoint, replicate, batch …); they become ``Metadata_<key>`` columns of the cell
    table and the profiles.
    """

    name: str
    folder: str | None = None
    zarr: str | None = None
    synthetic: SyntheticSource | None = None
    pattern: str = "imagexpress"
    defaults: dict[str, str] = field(default_factory=dict)
    channels: Any = None
    plate_map: str | None = None
    well_column: str | None = None
    project_z: str | None = None
    on_unmatched: str = "raise"
    fill_missing: bool = False
    on_nonfinite: str = "raise"
    rgb: int | None = None
    levels: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"plate {self.name!r}"
        sources = [k for k in ("folder", "zarr", "synthetic") if getattr(self, k) is not None]
        if len(sources) != 1:
            given = f" (got {sources})" if sources else ""
            raise ConfigError(
                f"{where}: give exactly one of 'folder', 'zarr' and 'synthetic'{given}"
            )
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"plate name {self.name!r} cannot name a folder")
        object.__setattr__(self, "channels", _channels(self.channels, f"{where}: channels"))
        if self.project_z is not None:
            _choose(f"{where}: project_z", self.project_z, ("max",))
        _choose(f"{where}: on_unmatched", self.on_unmatched, ("raise", "warn", "ignore"))
        _choose(f"{where}: on_nonfinite", self.on_nonfinite, ("raise", "keep"))
        if self.rgb is not None and self.rgb not in (0, 1, 2):
            raise ConfigError(
                f"{where}: rgb must be 0, 1 or 2 (the sample to take), got {self.rgb}"
            )
        if self.levels is not None and self.levels < 1:
            raise ConfigError(f"{where}: levels must be at least 1, got {self.levels}")
        if self.folder is None:
            tiff_only: dict[str, Any] = {
                "pattern": "imagexpress",
                "defaults": {},
                "channels": None,
                "project_z": None,
                "on_unmatched": "raise",
                "fill_missing": False,
                "on_nonfinite": "raise",
                "rgb": None,
                "levels": None,
            }
            options = [k for k, default in tiff_only.items() if getattr(self, k) != default]
            if options:
                raise ConfigError(
                    f"{where}: {options} are options of ingesting a TIFF 'folder'; this plate "
                    f"comes from {sources[0]!r}"
                )
        if self.synthetic is not None and (self.plate_map or self.well_column):
            raise ConfigError(
                f"{where}: a synthetic plate has its own dose-series plate map; remove 'plate_map'"
            )


def _channels(value: Any, where: str) -> tuple[str, ...] | dict[str, str] | None:
    """A plate's ``channels`` setting: ``None``, a list of names or a mapping of renames."""
    if value is None:
        return None
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return dict(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(
        f"{where}: expected a list of channels (ids or names) or a mapping of id to new "
        f"name, got {_kind(value)}"
    )


@dataclass(frozen=True)
class ClusterConfig:
    """Where the run computes: ``kind`` and options of :func:`cellscale.start_cluster`."""

    kind: str = "local"
    n_workers: int | None = None
    gpu_workers: int = 1
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _choose("cluster.kind", self.kind, ("local", "slurm"))

    def start(self, logs: Path) -> Any:
        """Start this cluster (:func:`cellscale.start_cluster`): a context giving its client.

        ``logs`` is where its workers' logs go unless ``options`` says otherwise.
        """
        import cellscale

        options = dict(self.options)
        if self.n_workers is not None:
            options["n_workers"] = self.n_workers
        return cellscale.start_cluster(
            self.kind, gpu_workers=self.gpu_workers, default_log_directory=logs, **options
        )


@dataclass(frozen=True)
class ProjectConfig:
    """Z projection (:func:`cellscale.project`)."""

    method: str = "max"
    focus_channel: str | None = None

    def __post_init__(self) -> None:
        _choose("project.method", self.method, ("max", "mean", "middle", "best_focus"))


@dataclass(frozen=True)
class QCConfig:
    """Image quality control (:func:`cellscale.qc`) of the projected plates.

    ``thresholds`` are :class:`cellscale.quality.QCThresholds` fields (``blurry``,
    ``saturated``, ``empty``, ``dim``, ``min_spread``). With ``exclude_flagged``, fields
    with a flagged image are not segmented, so no cells come from them; the report
    lists them either way.
    """

    enabled: bool = True
    exclude_flagged: bool = False
    thresholds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from cellscale.quality import QCThresholds

        known = [f.name for f in dataclasses.fields(QCThresholds)]
        for key in self.thresholds:
            if key not in known:
                raise ConfigError(
                    f"qc.thresholds: unknown key {key!r}{_hint(key, known) or f'; known: {known}'}"
                )
        try:
            QCThresholds(**self.thresholds)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"qc.thresholds: {err}") from err


@dataclass(frozen=True)
class IlluminationConfig:
    """Illumination correction (:func:`cellscale.fit_illumination`), fitted per plate.

    ``method`` is ``"mean"`` (CellProfiler's robust average) or ``"basic"`` (BaSiC);
    ``null`` (the default) corrects nothing. The model is fitted on each projected plate
    and divided out, lazily, before cells are measured and cropped; segmentation sees the
    images as stored. ``channels`` limits it to some channels (all by default).
    """

    method: str | None = None
    channels: tuple[str, ...] | None = None
    darkfield: bool = False

    def __post_init__(self) -> None:
        if self.method is not None:
            _choose("illumination.method", self.method, ("mean", "basic"))


@dataclass(frozen=True)
class SegmentConfig:
    """Segmentation (:func:`cellscale.segment`).

    ``options`` go to the segmenter: its constructor's keywords (``diameter``, ``model``
    …, checked against its signature) and ``fields_per_task``. With ``corrected`` the
    segmenter sees the illumination-corrected images (``illumination.method`` must be
    set), as cells are measured; by default it sees the projected images as stored.
    """

    channel: str | None = None
    method: str = "classical"
    nuclei_channel: str | None = None
    exclude_border: bool = True
    corrected: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from cellscale.segmentation._api import method_options

        _choose("segment.method", self.method, ("classical", "cellpose"))
        known = (*method_options(self.method), "fields_per_task")
        for key in self.options:
            if key not in known:
                raise ConfigError(
                    f"segment.options: the {self.method} segmenter takes no option {key!r}"
                    f"{_hint(str(key), known) or f'; it takes {sorted(known)}'}"
                )


@dataclass(frozen=True)
class MeasureConfig:
    """Per-cell measurement (:func:`cellscale.write_cells`)."""

    intensity: bool = True


@dataclass(frozen=True)
class CropsConfig:
    """Single-cell crops (:func:`cellscale.extract_crops`)."""

    size: int = 64
    mask: str = "soft"
    border: str = "pad"

    def __post_init__(self) -> None:
        _choose("crops.mask", self.mask, MASKS)
        _choose("crops.border", self.border, ("pad", "drop"))
        if self.size < 4:
            raise ConfigError(f"crops.size must be at least 4 pixels, got {self.size}")


@dataclass(frozen=True)
class EmbedConfig:
    """CNN embeddings of single-cell crops (:func:`cellscale.embed`), optional.

    ``enabled`` decides whether crops are cut and embedded: ``null`` (the default) only
    when ``weights`` are given, ``true`` always (without ``weights`` the network is
    randomly initialised from ``seed``, nothing is downloaded: its embeddings mean
    little), ``false`` never. Without embeddings the run makes no PCA of cells and the
    profiles come from the measured features alone. ``weights`` is a state dict or
    TorchScript file of ``model``.
    """

    enabled: bool | None = None
    model: str = "resnet18"
    weights: str | None = None
    layer: str = "avgpool"
    batch_size: int = 64
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        from cellscale.embedding._protocol import check_batch_size
        from cellscale.embedding._torch import ARCHITECTURES

        _choose("embed.model", self.model, ARCHITECTURES)
        _choose("embed.device", self.device, ("auto", "cuda", "cpu"))
        try:
            check_batch_size(self.batch_size)
        except ValueError as err:
            raise ConfigError(f"embed.{err}") from err

    @property
    def active(self) -> bool:
        """Whether the run embeds cells: ``enabled``, or by default whether weights are given."""
        return self.enabled if self.enabled is not None else self.weights is not None


@dataclass(frozen=True)
class SplitConfig:
    """How a training's samples are split (:func:`cellscale.train`): whole wells, never cells.

    ``test`` and ``validation`` are the fractions of each class's wells held out;
    ``hold_out`` holds one column's values out entirely (``{"Metadata_Batch": ["b3"]}``:
    a batch, a plate or an experiment).
    """

    test: float = 0.2
    validation: float = 0.1
    hold_out: dict[str, Any] | None = None
    seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """Train a classifier on the run's cells before embedding them (:func:`cellscale.train`).

    When ``enabled``, every plate is measured first; a classifier of ``embed.model`` is
    trained on crops cut as ``crops`` says (``images: raw`` cuts 3D crops from the Z
    stacks, for ``r3d_18``) to predict ``label`` (a column, or a list of columns joined),
    split by ``split``, evaluated on what it held out; then the cells are embedded with
    its weights (``<output>/training/model/weights.pt``), which replace ``embed.weights``.
    ``domain`` names the batch column for per-batch accuracy and, with ``adversarial``
    > 0, a domain-adversarial head; ``reconstruction`` > 0 adds an autoencoder head.
    ``balance`` draws every class equally often.
    """

    enabled: bool = False
    label: Any = None
    domain: str | None = None
    split: SplitConfig = field(default_factory=SplitConfig)
    images: str = "projected"
    reconstruction: float = 0.0
    adversarial: float = 0.0
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    augment: bool = True
    balance: bool = False
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        _choose("train.images", self.images, ("projected", "raw"))
        if self.enabled and not self.label:
            raise ConfigError("train.label: name the column (or columns) to predict")
        if self.label is not None and not (
            isinstance(self.label, str)
            or (
                isinstance(self.label, list | tuple) and all(isinstance(c, str) for c in self.label)
            )
        ):
            raise ConfigError(
                f"train.label: expected a column or a list of columns, got {self.label!r}"
            )
        if self.adversarial and self.domain is None:
            raise ConfigError("train.adversarial needs train.domain, the batch column")
        if self.epochs < 1:
            raise ConfigError(f"train.epochs must be at least 1, got {self.epochs}")

    def train_arguments(self) -> dict[str, Any]:
        """The section's settings as :func:`cellscale.train`'s keyword arguments."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del values["enabled"]
        return {**values, "split": as_dict(self.split)}


@dataclass(frozen=True)
class PCAConfig:
    """Exact PCA of the embeddings (:class:`cellscale.PCA`)."""

    n_components: int = 10


@dataclass(frozen=True)
class ProfilesConfig:
    """Per-well profiles, made in pycytominer's order (:func:`cellscale.profile_wells`).

    Each plate's cells are aggregated per group of ``by`` (``aggregate``: ``median`` or
    ``mean``) and annotated with their metadata; each plate's wells are normalised
    against its control wells (``normalize``: ``standardize``, ``robustize``,
    ``mad_robustize`` as pycytominer defines them, or ``none``), the whole screen
    together unless ``per_plate``; then the ``feature_select`` operations run in order
    (:func:`cellscale.feature_select`).

    ``features`` names what is profiled: ``measured`` (the cell table's features, the
    default), ``embeddings`` (aggregated CNN embeddings, ``Embedding_0`` …; needs
    ``embed.enabled`` or ``embed.weights``) or ``both``. ``controls`` is a pandas query
    on the wells' metadata (``"Metadata_treatment == 'DMSO'"``); ``None`` normalises
    against all wells.
    """

    features: str = "measured"
    aggregate: str = "median"
    controls: str | None = None
    normalize: str = "standardize"
    per_plate: bool = True
    by: tuple[str, ...] = ("Metadata_Plate", "Metadata_Well")
    feature_select: tuple[str, ...] = (
        "variance_threshold",
        "frequency_threshold",
        "correlation_threshold",
        "drop_na_columns",
        "blocklist",
    )

    def __post_init__(self) -> None:
        from cellscale.profiles._feature_select import OPERATIONS

        _choose("profiles.features", self.features, ("measured", "embeddings", "both"))
        _choose("profiles.aggregate", self.aggregate, ("median", "mean"))
        _choose(
            "profiles.normalize",
            self.normalize,
            ("standardize", "robustize", "mad_robustize", "none"),
        )
        for i, operation in enumerate(self.feature_select):
            _choose(f"profiles.feature_select[{i}]", operation, tuple(OPERATIONS))


@dataclass(frozen=True)
class AnalysisConfig:
    """Analyses of the embeddings and profiles, drawn into the report (:mod:`cellscale.analysis`).

    When ``enabled`` (it needs ``pip install "cellscale[analysis]"``): ``umap`` maps the
    cells' PCA scores (runs that embed; fitted on ``umap_sample`` seeded cells of the whole
    screen, after sphering on the control cells with ``sphere``) and the well profiles
    to two dimensions; ``outliers`` scores every cell by its distance to its
    ``outlier_k``-th neighbour in PCA space within its plate, and every well by its
    cells; ``batch`` names the column whose effect is measured against ``treatment``'s
    before and after normalisation; ``map`` scores each treatment against the
    ``profiles.controls`` wells and its replicates against the other treatments (mean
    average precision); ``gradcamo`` scores the attention of the network the run trained
    (``train.enabled``) inside each cell; the report gains a page of ``page_cells``
    cells and every well whose points open their crops.
    """

    enabled: bool = False
    umap: bool = True
    umap_sample: int = 100_000
    sphere: bool = False
    outliers: bool = True
    outlier_k: int = 10
    batch: str | None = None
    treatment: str | None = None
    map: bool = True
    gradcamo: bool = True
    page_cells: int = 2_000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("umap_sample", "outlier_k", "page_cells"):
            if getattr(self, name) < 1:
                raise ConfigError(f"analysis.{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class ReportConfig:
    """What the HTML report shows."""

    overlays_per_condition: int = 1
    crops_per_gallery: int = 16


@dataclass(frozen=True)
class RunConfig:
    """A whole run: where its outputs go, the screen's plates and every stage's settings."""

    output: str
    plates: tuple[PlateConfig, ...]
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    project: ProjectConfig = field(default_factory=ProjectConfig)
    qc: QCConfig = field(default_factory=QCConfig)
    illumination: IlluminationConfig = field(default_factory=IlluminationConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    crops: CropsConfig = field(default_factory=CropsConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pca: PCAConfig = field(default_factory=PCAConfig)
    profiles: ProfilesConfig = field(default_factory=ProfilesConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self) -> None:
        names = [p.name for p in self.plates]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"plates: the names {repeated} are used more than once")
        if self.segment.corrected and self.illumination.method is None:
            raise ConfigError(
                "segment.corrected: the run corrects no illumination; set illumination.method "
                "('mean' or 'basic') or leave corrected out"
            )


def load_config(source: RunConfig | Mapping[str, Any] | str | os.PathLike[str]) -> RunConfig:
    """A checked :class:`RunConfig` from a config object, a dict or a YAML file.

    Relative paths in a YAML file (``output``, plate folders and maps, weights) are
    relative to the file's folder.

    Raises
    ------
    ConfigError
        On an unknown key (with the key it resembles), a missing required key, a value
        of the wrong type or an option that does not exist.
    """
    if isinstance(source, RunConfig):
        return source
    if isinstance(source, Mapping):
        return _build(RunConfig, source, "config")
    path = Path(source)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    config = _build(RunConfig, data, str(path))
    return _relative_to(config, path.parent)


def as_dict(config: Any) -> Any:
    """The config as plain JSON-ready values (tuples become lists)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: as_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {str(k): as_dict(v) for k, v in config.items()}
    if isinstance(config, list | tuple):
        return [as_dict(v) for v in config]
    return config


def _choose(where: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(
            f"{where} must be one of {list(options)}, got {value!r}{_hint(value, options)}"
        )


def _hint(key: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _build(cls: type, data: Any, where: str, prefix: str = "") -> Any:
    """An instance of the dataclass ``cls`` from the mapping ``data``, checked.

    ``where`` names the mapping in errors (the file, or the key path of a section);
    ``prefix`` is the key path its own keys are named with.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of settings, got {_kind(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            known = f"; known keys: {sorted(fields)}"
            hint = _hint(str(key), fields)
            raise ConfigError(f"{where}: unknown key {key!r}{hint or known}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        here = f"{prefix}{name}"
        if name in data:
            values[name] = _convert(hints[name], data[name], here)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: the key {name!r} is required")
    return cls(**values)


def _convert(kind: Any, value: Any, where: str) -> Any:
    """``value`` as the annotated type ``kind``, or a :class:`ConfigError` naming ``where``."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _convert(inner, value, where)
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, where, f"{where}.")  # type: ignore[arg-type]
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {_kind(value)}")
        (item,) = typing.get_args(kind)[:1]
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {_kind(value)}")
        return dict(value)
    if kind is Any:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _relative_to(config: RunConfig, base: Path) -> RunConfig:
    def resolve(path: str | None) -> str | None:
        return None if path is None else str(base / Path(path).expanduser())

    plates = tuple(
        dataclasses.replace(
            p, folder=resolve(p.folder), zarr=resolve(p.zarr), plate_map=resolve(p.plate_map)
        )
        for p in config.plates
    )
    weights = config.embed.weights
    embed = dataclasses.replace(
        config.embed, weights=weights if weights == "imagenet" else resolve(weights)
    )
    return dataclasses.replace(
        config, output=str(resolve(config.output)), plates=plates, embed=embed
    )
