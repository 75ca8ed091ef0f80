"""Ingest's advice in the words of where the user gave the options: keywords, flags or config keys.

An ingest error advises an option as a Python keyword (``pass fill_missing=True``). The
command line and a run's config take the same options under other spellings, so their
errors reword the advice: :func:`as_flags` for ``cellscale ingest`` and :func:`as_config_keys`
for a plate entry of a run config.

Examples
--------
>>> message = "pass on_unmatched='warn' or 'ignore' to leave them out"
>>> as_flags(message)
"pass --on-unmatched warn or 'ignore' to leave them out"
>>> as_config_keys(message, "P1")
"pass `on_unmatched: warn` or 'ignore' to leave them out (keys of plate 'P1' in the config)"
"""

from __future__ import annotations

import re

__all__ = ["as_config_keys", "as_flags"]

_ADVICE = re.compile(
    r"\b(?P<key>on_unmatched|fill_missing|project_z|on_nonfinite|rgb|channels|well_column|defaults)"
    r"=(?P<value>'[^']*'|\[\.\.\.\]|<[^>]*>|\{[^}]*\}|True|False|(?=[\s,;)]|$))"
)
_PAIR = re.compile(r"'([^']*)':\s*'([^']*)'")


def as_flags(message: str) -> str:
    """``message`` with each advised ingest keyword written as its ``cellscale ingest`` flag."""

    def flag(match: re.Match[str]) -> str:
        key, value = match["key"], _plain(match["value"])
        if key == "defaults":
            return " ".join(f"--default {k}={v}" for k, v in _PAIR.findall(match["value"]))
        name = "--" + key.replace("_", "-")
        if value == "True":
            return name
        return f"{name} {value or _placeholder(key)}"

    return _ADVICE.sub(flag, message)


def as_config_keys(message: str, plate: str) -> str:
    """``message`` with each advised ingest keyword written as a key of the plate's entry."""

    def key(match: re.Match[str]) -> str:
        name, value = match["key"], _plain(match["value"])
        if name == "defaults":
            pairs = ", ".join(f"{k}: {v}" for k, v in _PAIR.findall(match["value"]))
            return f"`defaults: {{{pairs}}}`"
        value = value or _placeholder(name)
        return f"`{name}: {value.lower() if value in ('True', 'False') else value}`"

    reworded = _ADVICE.sub(key, message)
    if reworded == message:
        return message
    return f"{reworded} (keys of plate {plate!r} in the config)"


def _plain(value: str) -> str:
    """A keyword's value as written after a flag or a YAML key: no quotes, ``[...]`` as ``...``."""
    if value.startswith("'") and value.endswith("'"):
        return value[1:-1]
    return "..." if value == "[...]" else value


def _placeholder(key: str) -> str:
    return {"well_column": "NAME"}.get(key, "...")
