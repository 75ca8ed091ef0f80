"""Profile quality by mean average precision (copairs): activity and replicate consistency.

Each profile ranks its pairs by similarity; its average precision (AP) is high when the pairs
it should retrieve come first. Per treatment the mean AP (mAP) is tested against copairs' null
of random rankings with the same numbers of pairs, and the p-values are corrected for the
number of treatments (Benjamini-Hochberg), as copairs does.

- **Activity** (phenotypic activity): a treatment's replicates retrieve each other against the
  control profiles; a treatment retrieved is distinguishable from controls.
- **Consistency**: a treatment's replicates retrieve each other against the other treatments'
  profiles (controls left out); a treatment retrieved has a profile of its own.

The computation is copairs' (:func:`copairs.map.average_precision`,
:func:`copairs.map.mean_average_precision`); this module chooses the pairs and reads the result.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cellscale._optional import import_optional
from cellscale.analysis._batch_effects import feature_matrix, require_column
from cellscale.plots import _finish

__all__ = ["MapResult", "mean_average_precision", "plot_map"]

#: Columns of each per-treatment table after the treatment column.
SCORE_COLUMNS = (
    "n_profiles",
    "mean_average_precision",
    "mean_normalized_average_precision",
    "p_value",
    "corrected_p_value",
    "retrieved",
)
#: Most treatments named next to their point in :func:`plot_map`.
MAX_NAMED = 15


@dataclass(frozen=True)
class MapResult:
    """Per-treatment mAP of activity against controls and of replicate consistency.

    Attributes
    ----------
    activity, consistency
        One row per treatment: the treatment column, then ``n_profiles``,
        ``mean_average_precision``, ``mean_normalized_average_precision``, ``p_value``,
        ``corrected_p_value`` (Benjamini-Hochberg over the table's treatments) and
        ``retrieved`` (``corrected_p_value < threshold``). ``consistency`` is empty when
        fewer than two treatments have replicates.
    treatment
        The treatment column.
    threshold
        Corrected p-value below which a treatment counts as retrieved.
    unscored
        Treatments (not controls) without two replicates to pair, so without a score.
    """

    activity: pd.DataFrame
    consistency: pd.DataFrame
    treatment: str
    threshold: float
    unscored: tuple[Any, ...]

    @property
    def activity_fraction(self) -> float:
        """Fraction of scored treatments retrieved against controls (NaN if none scored)."""
        return _fraction(self.activity)

    @property
    def consistency_fraction(self) -> float:
        """Fraction of scored treatments whose replicates retrieve each other (NaN if none)."""
        return _fraction(self.consistency)


def mean_average_precision(
    profiles: Any,
    *,
    controls: str | Mapping[str, Any],
    treatment: str = "Metadata_Treatment",
    replicate_by: str | Sequence[str] = (),
    features: Sequence[str] | None = None,
    distance: str = "cosine",
    null_size: int = 10_000,
    threshold: float = 0.05,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> MapResult:
    """Score every treatment's activity against controls and its replicate consistency.

    Parameters
    ----------
    profiles
        Per-well profiles (``profiles/wells.parquet``) as a pandas DataFrame or pyarrow
        Table: ``Metadata_*`` columns and features.
    controls
        The control profiles: a pandas query (``"Metadata_Treatment == 'DMSO'"``) or a
        mapping of column to value or values (``{"Metadata_Treatment": ["DMSO"]}``).
    treatment
        The column naming each profile's treatment; its replicates share the value.
    replicate_by
        Columns in which two profiles of a treatment must differ to pair as replicates,
        e.g. ``"Metadata_Plate"`` so that only wells of different plates retrieve each
        other; by default any two profiles of a treatment pair.
    features
        Feature columns; by default every numeric column not prefixed ``Metadata_``.
    distance
        copairs' similarity (``"cosine"``, ``"correlation"``, ``"euclidean"`` …).
    null_size
        Random rankings in each null distribution (the smallest p-value is
        ``1 / (null_size + 1)``).
    threshold
        Corrected p-value below which a treatment counts as retrieved.
    seed
        Seed of the null distributions.
    cache_dir
        Where copairs keeps null distributions between calls; by default a temporary
        folder removed afterwards.

    Returns
    -------
    MapResult

    Raises
    ------
    ValueError
        If a column is missing (with the closest name), ``controls`` selects no profile or
        every profile, no treatment has two replicates to pair, or features are not finite.
    """
    copairs_map = import_optional("copairs.map", "mean average precision")
    frame = profiles if isinstance(profiles, pd.DataFrame) else profiles.to_pandas()
    frame = frame.reset_index(drop=True)
    differ = [replicate_by] if isinstance(replicate_by, str) else list(replicate_by)
    meta = _pair_keys(frame, treatment, differ)
    x = feature_matrix(frame, features)
    is_control = _control_rows(frame, controls)
    with tempfile.TemporaryDirectory(prefix="cellscale-copairs-") as scratch:
        run = _Copairs(
            copairs_map, distance, null_size, threshold, seed, Path(cache_dir or scratch)
        )
        activity = run.activity(meta, x, is_control)
        consistency = run.consistency(meta[~is_control], x[~is_control])
    if activity.empty:
        raise ValueError(
            f"no treatment in {treatment!r} has two profiles that pair as replicates"
            + (f" (differing in {differ})" if differ else "")
            + "; mAP needs replicate wells"
        )
    values = frame[treatment].to_numpy()
    activity, consistency = (_named(t, values, treatment) for t in (activity, consistency))
    scored = set(activity[treatment])
    unscored = tuple(v for v in pd.unique(values[~is_control]) if v not in scored)
    return MapResult(activity, consistency, treatment, threshold, unscored)


def plot_map(result: MapResult, *, path: str | os.PathLike[str] | None = None) -> Figure:
    """mAP against -log10 corrected p per treatment, with the threshold and fraction retrieved.

    One panel for activity against controls and, when scored, one for replicate consistency.

    Parameters
    ----------
    result
        :func:`mean_average_precision`'s result.
    path
        Write a PNG here.
    """
    panels = [("activity against controls", result.activity, result.activity_fraction)]
    if len(result.consistency):
        panels.append(("replicate consistency", result.consistency, result.consistency_fraction))
    fig = Figure(figsize=(5.2 * len(panels), 4.4), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (name, table, fraction) in zip(
        fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        height = -np.log10(table["corrected_p_value"].to_numpy(float))
        hits = table["retrieved"].to_numpy(bool)
        mAP = table["mean_average_precision"].to_numpy(float)
        ax.scatter(mAP[hits], height[hits], color="#3b6ea5", label="retrieved", s=28)
        ax.scatter(mAP[~hits], height[~hits], color="0.6", label="not retrieved", s=28)
        if len(table) <= MAX_NAMED:
            for label, px, py in zip(table[result.treatment], mAP, height, strict=True):
                ax.annotate(
                    str(label),
                    (px, py),
                    fontsize="x-small",
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        ax.axhline(
            -np.log10(result.threshold),
            color="#d1495b",
            linestyle="--",
            linewidth=1,
            label=f"corrected p = {result.threshold:g}",
        )
        ax.set(
            xlim=(-0.02, 1.02), xlabel="mean average precision", ylabel="-log10 corrected p-value"
        )
        ax.set_title(
            f"{name}: {int(hits.sum())} of {len(table)} retrieved ({fraction:.0%})",
            fontsize="medium",
        )
        ax.legend(fontsize="x-small", loc="upper left", frameon=False)
    return _finish(fig, path)


@dataclass(frozen=True)
class _Copairs:
    """copairs' average precision and mAP with the settings of one call."""

    module: Any
    distance: str
    null_size: int
    threshold: float
    seed: int
    cache_dir: Path

    def activity(self, meta: pd.DataFrame, x: np.ndarray, is_control: np.ndarray) -> pd.DataFrame:
        """Replicates of a treatment are positives; pairs with a control are negatives.

        Every control gets its own reference index (others share -1), so controls never pair
        as positives, and negatives must differ in both treatment and reference: a
        treatment with a control, never two treatments.
        """
        meta = meta.assign(reference=np.where(is_control, np.arange(len(meta)), -1))
        keys = ["treatment", "reference"]
        return self._map(meta, x, positives_same=keys, negatives_differ=keys)

    def consistency(self, meta: pd.DataFrame, x: np.ndarray) -> pd.DataFrame:
        """Replicates of a treatment are positives; pairs with another treatment negatives."""
        if meta["treatment"].nunique() < 2:
            return _empty_scores()
        meta = meta.reset_index(drop=True)
        return self._map(meta, x, positives_same=["treatment"], negatives_differ=["treatment"])

    def _map(
        self,
        meta: pd.DataFrame,
        x: np.ndarray,
        *,
        positives_same: list[str],
        negatives_differ: list[str],
    ) -> pd.DataFrame:
        copairs = import_optional("copairs.matching", "mean average precision")
        replicates_differ = [c for c in meta.columns if c.startswith("differ_")]
        try:
            ap = self.module.average_precision(
                meta,
                x,
                pos_sameby=positives_same,
                pos_diffby=replicates_differ,
                neg_sameby=[],
                neg_diffby=negatives_differ,
                distance=self.distance,
                progress_bar=False,
            )
        except copairs.UnpairedException:
            return _empty_scores()
        ap = ap.dropna(subset=["average_precision"])
        ap = ap[ap["n_pos_pairs"] > 0]
        if ap.empty:
            return _empty_scores()
        scores = self.module.mean_average_precision(
            ap,
            sameby=["treatment"],
            null_size=self.null_size,
            threshold=self.threshold,
            seed=self.seed,
            progress_bar=False,
            cache_dir=self.cache_dir,
        )
        counts = ap.groupby("treatment").size().rename("n_profiles")
        scores = scores.join(counts, on="treatment").rename(
            columns={"below_corrected_p": "retrieved"}
        )
        return scores[["treatment", *SCORE_COLUMNS]]


def _pair_keys(frame: pd.DataFrame, treatment: str, differ: list[str]) -> pd.DataFrame:
    """Integer codes of the pairing columns under plain names copairs' SQL accepts."""
    keys = {"treatment": treatment} | {f"differ_{i}": c for i, c in enumerate(differ)}
    meta = {}
    for key, column in keys.items():
        require_column(frame, column, "treatment" if key == "treatment" else "replicate_by")
        empty = int(frame[column].isna().sum())
        if empty:
            raise ValueError(
                f"the column {column!r} is empty in {empty} profiles; fill or drop them"
            )
        meta[key] = pd.factorize(frame[column])[0]
    return pd.DataFrame(meta)


def _control_rows(frame: pd.DataFrame, controls: str | Mapping[str, Any]) -> np.ndarray:
    """Boolean mask of the control profiles, checked to select some but not all."""
    if isinstance(controls, str):
        try:
            mask = np.asarray(frame.eval(controls), dtype=bool)
        except pd.errors.UndefinedVariableError as err:
            name = re.search(r"name '([^']+)'", str(err))
            require_column(frame, name.group(1) if name else controls, "controls")
            raise
    else:
        mask = np.ones(len(frame), dtype=bool)
        for column, wanted in controls.items():
            require_column(frame, column, "controls")
            chosen = [wanted] if isinstance(wanted, (str, int, float, bool)) else list(wanted)
            mask &= frame[column].isin(chosen).to_numpy()
    if not mask.any():
        raise ValueError(
            f"controls {controls!r} select no profile; mAP against controls needs control wells"
        )
    if mask.all():
        raise ValueError(
            f"controls {controls!r} select every profile; no treatment is left to score"
        )
    return mask


def _named(table: pd.DataFrame, values: np.ndarray, treatment: str) -> pd.DataFrame:
    """``table`` with treatment codes replaced by the treatment values, best first."""
    uniques = pd.unique(values)
    named = table.assign(treatment=uniques[table["treatment"].to_numpy(int)])
    named = named.rename(columns={"treatment": treatment})
    named = named.sort_values("mean_average_precision", ascending=False, kind="stable")
    return named.reset_index(drop=True)


def _empty_scores() -> pd.DataFrame:
    return pd.DataFrame({"treatment": pd.Series(dtype=np.int64)} | {c: [] for c in SCORE_COLUMNS})


def _fraction(table: pd.DataFrame) -> float:
    return float(table["retrieved"].mean()) if len(table) else float("nan")
