"""A run's settings checked against its plates and files, before the first stage runs.

:func:`~cellscale.pipeline.load_config` checks each setting on its own (keys, types,
choices, segmenter options, the batch size). :func:`preflight` checks what needs the
plates or files, and :func:`cellscale.pipeline.run` calls it before it writes anything:

- ``profiles.controls`` (a pandas query) and ``profiles.by`` name only columns the cell
  table will have: ``cell_id``, the standard ``Metadata_Plate``, ``Metadata_Well``,
  ``Metadata_Site``, ``Metadata_Timepoint``, ``Metadata_ObjectNumber``, each plate map's
  columns (read from the file; a synthetic plate's are those of its dose series) and each
  plate's ``metadata`` keys, as ``Metadata_<name>``. ``<Compartment>_AreaShape_…``
  features are known only once cells are measured, so they are not checked.
- ``train.label``, ``train.domain`` and the column of ``train.split.hold_out`` are such
  columns too (or their short names: ``treatment`` for ``Metadata_treatment``).
- A plate's ``metadata`` key does not replace a column its cells already have.
- ``embed.weights`` loads on the CPU into ``embed.model`` taking the plates' channels
  (where the config knows them: synthetic plates), and the network has ``embed.layer``.
  torch is imported only then.
- ``embed.weights: imagenet`` and a cellpose ``segment.options.model`` are on this
  machine (runs never download; the error gives the ``cellscale models --fetch`` command).
- Each plate's ``folder`` is a folder and its ``zarr`` a complete plate; the channels
  the config names (``segment.channel`` …) are among a plate's where the config says
  them (synthetic plates, ``channels`` renamed by a mapping); otherwise the run checks
  them right after ingest.

Every error is a :class:`~cellscale.pipeline.ConfigError` that names the key, with the
name it resembles where a name was typed.
"""

from __future__ import annotations

import ast
import difflib
import re
from pathlib import Path
from typing import Any

from cellscale._hints import as_config_keys
from cellscale.cells import CELL_ID, METADATA_COLUMNS, metadata_column
from cellscale.pipeline._config import (
    ConfigError,
    EmbedConfig,
    PlateConfig,
    ProfilesConfig,
    RunConfig,
    TrainConfig,
    _hint,
)

__all__ = ["cell_columns", "check_channels", "check_column", "preflight", "query_names"]

_QUOTED = re.compile(r"`([^`]*)`")
_FEATURES = "_AreaShape_"  # in the name of every feature column the profiles keep


def preflight(config: RunConfig) -> None:
    """Check what a run needs of its plates and files; nothing is written.

    Raises
    ------
    ConfigError
        Naming the key at fault, and the name it resembles where a name was typed.

    Examples
    --------
    >>> from cellscale.pipeline import load_config
    >>> config = load_config({"output": "out", "plates": [{"name": "P1", "synthetic": {}}],
    ...                       "profiles": {"controls": "Metadata_treatmnet == 'DMSO'"}})
    >>> preflight(config)
    Traceback (most recent call last):
    ...
    cellscale.pipeline._config.ConfigError: profiles.controls: the cell table will have no \
column 'Metadata_treatmnet'; did you mean 'Metadata_treatment'?
    """
    from cellscale.pipeline._analysis_stage import check_analysis

    if not config.plates:
        raise ConfigError("plates: the run names no plates")
    columns = cell_columns(config)
    _check_profiles(config.profiles, columns)
    if config.train.enabled:
        _check_train(config.train, columns)
    check_analysis(config, columns)
    _check_weights(config.embed, _channel_counts(config))
    _check_segmenter_model(config)
    for plate in config.plates:
        names = _channel_names(plate)
        if names is not None:
            check_channels(config, names)
    if config.profiles.features != "measured" and not config.embed.active:
        raise ConfigError(
            f"profiles.features: {config.profiles.features!r} needs embeddings, but the run "
            "makes none; give embed.weights, set embed.enabled: true, or use 'measured'"
        )


def cell_columns(config: RunConfig) -> list[str]:
    """The columns of the screen's cell table that profiles can name, features aside.

    Raises
    ------
    ConfigError
        If a plate map cannot be read, or a plate's ``metadata`` key would replace a
        column of its cells.
    """
    columns = [CELL_ID, *METADATA_COLUMNS]
    for i, plate in enumerate(config.plates):
        mapped = [metadata_column(c) for c in _plate_map_columns(plate, f"plates[{i}]")]
        own = _metadata_columns(plate, [*METADATA_COLUMNS, *mapped], f"plates[{i}]")
        columns += [*mapped, *own]
    return list(dict.fromkeys(columns))


def query_names(query: str) -> list[str]:
    """The column names a pandas query uses, in order; backtick-quoted ones included.

    Names called as functions (``abs(x)``) and attributes (``x.str``) are not columns.

    Raises
    ------
    SyntaxError
        If the query is not an expression.

    Examples
    --------
    >>> query_names("Metadata_dose > 0 and `Metadata_cell line`.str.startswith('U')")
    ['Metadata_dose', 'Metadata_cell line']
    """
    quoted: dict[str, str] = {}

    def placeholder(match: re.Match[str]) -> str:
        name = f"_cellscale_quoted_{len(quoted)}"
        quoted[name] = match.group(1)
        return name

    text = _QUOTED.sub(placeholder, query).replace("\n", " ").strip()
    tree = ast.parse(text, mode="eval")
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called]
    names.sort(key=lambda n: n.col_offset)
    return list(dict.fromkeys(quoted.get(n.id, n.id) for n in names))


def _plate_map_columns(plate: PlateConfig, where: str) -> list[str]:
    """The plate-map columns a plate's wells will carry, as the plate map names them.

    A ``zarr`` plate without a ``plate_map`` carries the columns stored with it; opening
    it here is also the check that it is a complete plate.
    """
    if plate.synthetic is not None:
        from cellscale.synthetic import default_plate_map

        return [str(c) for c in default_plate_map(1).columns]
    if plate.folder is not None and not Path(plate.folder).is_dir():
        raise ConfigError(f"{where}.folder: {plate.folder} is not a folder")
    if plate.zarr is not None and plate.plate_map is None:
        import cellscale
        from cellscale.plate import plate_map_columns

        try:
            return plate_map_columns(cellscale.open_plate(plate.zarr))
        except (OSError, ValueError) as err:
            raise ConfigError(f"{where}.zarr: {err}") from err
    if plate.plate_map is None:
        return []
    from cellscale.io import read_plate_map

    try:
        return [
            str(c) for c in read_plate_map(plate.plate_map, well_column=plate.well_column).columns
        ]
    except (OSError, ValueError) as err:
        raise ConfigError(f"{where}.plate_map: {as_config_keys(str(err), plate.name)}") from err


def _metadata_columns(plate: PlateConfig, taken: list[str], where: str) -> list[str]:
    """The columns of a plate's ``metadata`` keys, none of them one of ``taken``."""
    columns = [metadata_column(str(key)) for key in plate.metadata]
    for key, column in zip(plate.metadata, columns, strict=True):
        if column in taken:
            raise ConfigError(
                f"{where}.metadata: the key {key!r} would replace the cells' column {column}; "
                "rename the key"
            )
    return columns


def _check_profiles(profiles: ProfilesConfig, columns: list[str]) -> None:
    if profiles.controls is not None:
        try:
            names = query_names(profiles.controls)
        except SyntaxError as err:
            raise ConfigError(
                f"profiles.controls: {profiles.controls!r} is not a query ({err.msg})"
            ) from err
        for name in names:
            if name != "index":  # a query's name for the table's index
                check_column("profiles.controls", name, columns)
    for i, name in enumerate(profiles.by):
        check_column(f"profiles.by[{i}]", name, columns)


def _check_train(train: TrainConfig, columns: list[str]) -> None:
    labels = [train.label] if isinstance(train.label, str) else list(train.label)
    named = [(f"train.label[{i}]", name) for i, name in enumerate(labels)]
    if train.domain is not None:
        named.append(("train.domain", train.domain))
    named += [("train.split.hold_out", str(name)) for name in train.split.hold_out or {}]
    for where, name in named:
        if name not in columns:
            check_column(where, metadata_column(name), columns)


def check_column(where: str, name: str, columns: list[str]) -> None:
    """Refuse a column the cell table will not have, naming the nearest one it will."""
    if name in columns or _FEATURES in name:
        return
    hint = _hint(name, columns) or f"; it will have {columns}"
    raise ConfigError(f"{where}: the cell table will have no column {name!r}{hint}")


def _channel_counts(config: RunConfig) -> list[int | None]:
    """The channel counts of the plates, where the config says (``[None]`` if nowhere)."""
    known = {len(p.synthetic.channels) for p in config.plates if p.synthetic is not None}
    return [*sorted(known)] or [None]


def _check_weights(embed: EmbedConfig, channel_counts: list[int | None]) -> None:
    """The weights file loads into the model with each channel count, and has the layer."""
    if embed.weights is None:
        return
    if embed.weights == "imagenet":
        from cellscale.embedding._torch import check_imagenet_weights

        try:
            check_imagenet_weights(embed.model, allow_download=False)
        except FileNotFoundError as err:
            raise ConfigError(f"embed.weights: {err}") from None
        return
    if not Path(embed.weights).is_file():
        raise ConfigError(
            f"embed.weights: {embed.weights} does not exist. Give the path of a state dict or "
            "TorchScript file of the model, or leave weights out for a seeded random network"
        )
    for channels in channel_counts:
        _check_layer(_network(embed, channels), embed.layer)


def check_channels(config: RunConfig, channels: list[str]) -> None:
    """Every channel the config names is one of the plate's, or a :class:`ConfigError`."""
    named = {
        "segment.channel": config.segment.channel,
        "segment.nuclei_channel": config.segment.nuclei_channel,
        "project.focus_channel": config.project.focus_channel,
    }
    if config.segment.channel is None:
        raise ConfigError(f"segment.channel is required: one of the plate's channels {channels}")
    for where, name in named.items():
        if name is not None and name not in channels:
            close = difflib.get_close_matches(name, channels, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{where}: the plates have no channel {name!r} (they have {channels}){hint}"
            )


def _channel_names(plate: PlateConfig) -> list[str] | None:
    """The plate's channel names where the config alone says them (synthetic, or renamed)."""
    if plate.synthetic is not None:
        return list(plate.synthetic.channels)
    if isinstance(plate.channels, dict):
        return list(plate.channels.values())
    return None


def _check_segmenter_model(config: RunConfig) -> None:
    """A cellpose model named by the config is on this machine (runs never download)."""
    if config.segment.method != "cellpose" or "network" in config.segment.options:
        return
    from cellscale.segmentation._cellpose import weights_path

    options = config.segment.options
    try:
        weights_path(options.get("model", "cpsam"), bool(options.get("allow_download", False)))
    except FileNotFoundError as err:
        raise ConfigError(f"segment.options.model: {err}") from None


def _network(embed: EmbedConfig, channels: int | None) -> Any:
    from cellscale.embedding._torch import load_weights

    try:
        return load_weights(embed.model, str(embed.weights), in_channels=channels)
    except ValueError as err:
        raise ConfigError(f"embed.weights: {err}") from err


def _check_layer(net: Any, layer: str) -> None:
    from cellscale.embedding._torch import find_layer

    try:
        find_layer(net, layer)
    except ValueError as err:
        raise ConfigError(f"embed.layer: {err}") from err
