"""Train / validation / test splits by sample groups, so that no well (or batch) leaks.

Cells of one well share its culture, its position on the plate and its imaging: a model
that saw some of a well's cells in training recognises the others by those, not by their
treatment. A :class:`Split` therefore assigns whole groups (wells, by default), never
single rows, to its parts, and is saved as JSON beside a model so that evaluating or
resuming it uses exactly the same groups.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellscale._stages import atomic_path

__all__ = ["PARTS", "WELL", "Split", "split_by_group", "split_by_well"]

#: The parts every split has (``"validation"`` may be empty); a held-out group adds ``"held-out"``.
PARTS = ("train", "validation", "test")

#: The columns that name a well across plates.
WELL = ("Metadata_Plate", "Metadata_Well")

_FORMAT = "cellscale-split/1"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _keys(rows: pd.DataFrame, by: Sequence[str]) -> list[tuple[Any, ...]]:
    """The group of every row, as plain Python tuples (they survive a JSON round trip)."""
    missing = [c for c in by if c not in rows.columns]
    if missing:
        raise ValueError(
            f"the rows lack the grouping columns {missing}; their columns are {list(rows.columns)}"
        )
    columns = [rows[c].tolist() for c in by]
    return [tuple(_plain(v) for v in key) for key in zip(*columns, strict=True)]


@dataclass(frozen=True)
class Split:
    """Disjoint sets of sample groups for training, validation and testing.

    Parameters
    ----------
    by
        The columns whose values form a group (``("Metadata_Plate", "Metadata_Well")``).
    parts
        For each part (``"train"``, ``"validation"``, ``"test"``, and ``"held-out"`` when a
        group was held out), the groups in it.
    held_out
        What was held out, in words (``"Metadata_Batch = 'B2'"``), or ``None``.
    """

    by: tuple[str, ...]
    parts: dict[str, frozenset[tuple[Any, ...]]]
    held_out: str | None = None
    seed: int | None = field(default=None, compare=False)

    def indices(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        """The row positions of each part in ``rows`` (e.g. a dataset's ``.rows``)."""
        keys = _keys(rows, self.by)
        return {
            part: np.flatnonzero(np.fromiter((k in groups for k in keys), bool, len(keys)))
            for part, groups in self.parts.items()
        }

    def check(
        self, rows: pd.DataFrame, *, label: str | None = "label", complete: bool = True
    ) -> None:
        """Raise if the parts overlap, a class has no training rows or rows are left out.

        Parameters
        ----------
        rows
            The samples the split is used on.
        label
            Their class column, or ``None`` not to check classes.
        complete
            Whether every row must belong to a part.
        """
        names = list(self.parts)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                shared = self.parts[first] & self.parts[second]
                if shared:
                    raise ValueError(
                        f"the split's parts {first!r} and {second!r} share {len(shared)} groups "
                        f"of {list(self.by)}, e.g. {sorted(map(str, shared))[:3]}; make the split "
                        "again"
                    )
        where = self.indices(rows)
        if label is not None:
            trained = set(rows[label].iloc[where["train"]])
            absent = sorted(map(str, set(rows[label]) - trained))
            if absent:
                raise ValueError(
                    f"the classes {absent} have no rows in training; give them more wells, or "
                    "leave them out of the rows"
                )
        if complete:
            placed = np.zeros(len(rows), bool)
            for positions in where.values():
                placed[positions] = True
            if not placed.all():
                keys = _keys(rows, self.by)
                lost = sorted({str(keys[i]) for i in np.flatnonzero(~placed)})
                raise ValueError(
                    f"{int((~placed).sum())} rows belong to no part of the split, in groups of "
                    f"{list(self.by)} such as {lost[:3]}: the split was made for other rows; "
                    "make it again from these rows, or pass complete=False"
                )

    def save(self, path: str | Path) -> Path:
        """Write the split as JSON at ``path`` (atomically) and return ``path``."""
        path = Path(path)
        document = {
            "format": _FORMAT,
            "by": list(self.by),
            "held_out": self.held_out,
            "seed": self.seed,
            "parts": {
                part: sorted(map(list, groups), key=str) for part, groups in self.parts.items()
            },
        }
        with atomic_path(path) as partial:
            partial.write_text(json.dumps(document, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Read a split written by :meth:`save`."""
        path = Path(path)
        document = json.loads(path.read_text())
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a split written by Split.save ({_FORMAT})")
        return cls(
            by=tuple(document["by"]),
            parts={
                part: frozenset(tuple(g) for g in groups)
                for part, groups in document["parts"].items()
            },
            held_out=document["held_out"],
            seed=document["seed"],
        )


def _check_fractions(**fractions: float) -> None:
    for name, value in fractions.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be a fraction in [0, 1), got {value}")
    if sum(fractions.values()) >= 1.0:
        raise ValueError(f"{' + '.join(fractions)} must leave rows for training, got {fractions}")


def _group_classes(rows: pd.DataFrame, by: Sequence[str], stratify: str | None) -> pd.Series:
    """Each group's class (its most common one), or one class for all without ``stratify``."""
    keys = pd.Series(_keys(rows, by), index=rows.index)
    if stratify is None:
        return pd.Series("all", index=pd.Index(keys.unique()))
    if stratify not in rows.columns:
        raise ValueError(
            f"the stratify column {stratify!r} is not in the rows; their columns are "
            f"{list(rows.columns)}"
        )
    return rows[stratify].groupby(keys, sort=False).agg(lambda v: v.mode().iloc[0])


def _deal(
    groups: list[Any], test: float, validation: float, rng: np.random.Generator
) -> dict[str, list[Any]]:
    """Deal one class's groups: each part gets its share, at least one where there are enough."""
    order = [groups[i] for i in rng.permutation(len(groups))]
    n = len(order)
    n_test = round(n * test) or int(test > 0 and n >= 2)
    n_validation = round(n * validation) or int(validation > 0 and n - n_test >= 2)
    while n_test + n_validation >= n and n_test + n_validation > 0:
        if n_validation:
            n_validation -= 1
        else:
            n_test -= 1
    return {
        "test": order[:n_test],
        "validation": order[n_test : n_test + n_validation],
        "train": order[n_test + n_validation :],
    }


def _split_groups(
    classes: pd.Series, test: float, validation: float, seed: int
) -> dict[str, frozenset[tuple[Any, ...]]]:
    rng = np.random.default_rng(seed)
    parts: dict[str, set[tuple[Any, ...]]] = {part: set() for part in PARTS}
    by_class = classes.groupby(classes.map(str), sort=True)
    for _, members in by_class:
        for part, groups in _deal(sorted(members.index, key=str), test, validation, rng).items():
            parts[part].update(groups)
    return {part: frozenset(groups) for part, groups in parts.items()}


def split_by_well(
    rows: pd.DataFrame,
    *,
    test: float = 0.2,
    validation: float = 0.0,
    stratify: str | None = "label",
    seed: int = 0,
) -> Split:
    """Split wells (``Metadata_Plate``, ``Metadata_Well``) into train, validation and test.

    Parameters
    ----------
    rows
        One row per sample (a dataset's ``.rows``).
    test, validation
        The fractions of wells in each part, per class.
    stratify
        The class column: each class's wells are dealt apart, so each class has training
        wells, and test (validation) wells where it has at least two (three). ``None``
        deals all wells together.
    seed
        The shuffle's seed: the same rows and seed give the same split.

    Raises
    ------
    ValueError
        If a class would have no training well.

    Examples
    --------
    >>> rows = pd.DataFrame({"Metadata_Plate": "P", "Metadata_Well": ["A1", "A2", "B1", "B2"],
    ...                      "label": ["a", "a", "b", "b"]})
    >>> split = split_by_well(rows, test=0.5)
    >>> [len(part) for part in split.indices(rows).values()]
    [2, 0, 2]
    """
    _check_fractions(test=test, validation=validation)
    parts = _split_groups(_group_classes(rows, WELL, stratify), test, validation, seed)
    split = Split(by=WELL, parts=parts, seed=seed)
    split.check(rows, label=stratify)
    return split


def split_by_group(
    rows: pd.DataFrame,
    column: str,
    held_out: Any | Iterable[Any],
    *,
    test: float = 0.0,
    validation: float = 0.0,
    stratify: str | None = "label",
    part: str = "held-out",
    seed: int = 0,
) -> Split:
    """Hold out every row whose ``column`` is one of ``held_out``; split the rest by well.

    Parameters
    ----------
    rows
        One row per sample (a dataset's ``.rows``).
    column
        The column naming plates, batches or experiments (``"Metadata_Plate"``).
    held_out
        The value, or values, held out entirely.
    test, validation
        The fractions of the remaining wells (per class) kept for testing (held-out wells
        of the batches trained on) and for validation.
    stratify
        As for :func:`split_by_well`.
    part
        The held-out rows' part: ``"held-out"`` (the test part stays empty) or ``"test"``.
    seed
        The shuffle's seed.

    Raises
    ------
    ValueError
        If ``column`` or a held-out value does not exist, or if nothing would be left to
        train on.
    """
    if part not in ("held-out", "test"):
        raise ValueError(f"part must be 'held-out' or 'test', got {part!r}")
    if part == "test" and test:
        raise ValueError("test wells and held-out rows in the 'test' part would mix; pass one")
    if column not in rows.columns:
        raise ValueError(
            f"the column {column!r} is not in the rows; their columns are {list(rows.columns)}"
        )
    values = (
        [held_out]
        if isinstance(held_out, str) or not isinstance(held_out, Iterable)
        else list(held_out)
    )
    present = {_plain(v) for v in rows[column].unique()}
    unknown = [v for v in values if _plain(v) not in present]
    if unknown:
        raise ValueError(
            f"the held-out values {unknown} do not occur in {column!r}; "
            f"it holds {sorted(present, key=str)}"
        )
    out = rows[column].isin(values).to_numpy()
    if out.all():
        raise ValueError(f"holding out {values} of {column!r} leaves no rows to train on")
    _check_fractions(test=test, validation=validation)
    kept = rows[~out]
    wells = _split_groups(_group_classes(kept, WELL, stratify), test, validation, seed)
    by = tuple(dict.fromkeys((*WELL, column)))
    parts = {
        name: frozenset(k for k in _keys(kept, by) if k[: len(WELL)] in groups)
        for name, groups in wells.items()
    }
    parts[part] = frozenset(_keys(rows[out], by))
    description = f"{column} in {[_plain(v) for v in values]}"
    split = Split(by=by, parts=parts, held_out=description, seed=seed)
    split.check(rows, label=stratify)
    return split
